//! Shutdown signals for Hipache's binaries: SIGTERM or SIGINT starts a
//! drain; a second one exits the process at once, with status 1
//! (linkerd-signal's and kubert's rule).
//!
//! The proxy and the syncer stop the same way, so the rule is written once,
//! here. It is a crate of its own because neither existing home fits: the
//! `hipache` crate is the whole proxy (hyper, rustls, its Redis client),
//! which the syncer must not link, and `hipache-schema` is the Redis
//! contract, std and serde only, with no I/O and no runtime. This crate
//! needs nothing but tokio's signal handling and `tracing`. What a drain
//! means stays with each binary: the proxy hands the future to
//! `Proxy::serve`, the syncer cancels its `CancellationToken` when the
//! future completes.
//!
//! # Layout
//! - [`signal`]: completes on the first SIGTERM or SIGINT.
//! - [`signal_or`]: the same, or when another event starts the drain (the
//!   proxy's memory watch).

use std::future::Future;

/// Completes on the first SIGTERM or SIGINT. A second signal exits the
/// process at once.
pub async fn signal() {
    signal_or(std::future::pending()).await;
}

/// Completes on the first SIGTERM or SIGINT, or when `other` completes:
/// either starts the drain. From then on, a SIGTERM or SIGINT exits the
/// process at once (status 1). Must run inside a tokio runtime, which the
/// second-signal watch is spawned on.
pub async fn signal_or(other: impl Future<Output = ()>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        other.await;
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
        () = other => {}
    }
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        tracing::warn!("second signal: exiting without finishing the drain");
        std::process::exit(1);
    });
}
