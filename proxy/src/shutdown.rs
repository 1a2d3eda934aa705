//! Signals: SIGTERM or SIGINT start a drain; a second one aborts.

use std::future::Future;

/// Completes on the first SIGTERM or SIGINT. A second signal exits the
/// process at once.
pub async fn signal() {
    signal_or(std::future::pending()).await;
}

/// Completes on the first SIGTERM or SIGINT, or when `other` completes
/// (the memory watch of a single process): either starts the drain. From
/// then on, a SIGTERM or SIGINT exits the process at once (status 1).
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

/// Installs tokio's handler for SIGUSR1 for the life of the process, so
/// that a SIGUSR1 arriving before (or without) an access log to reopen is
/// ignored instead of killing the process (its default action).
pub fn ignore_usr1_until_handled() {
    use tokio::signal::unix::{signal, SignalKind};
    if let Err(e) = signal(SignalKind::user_defined1()) {
        tracing::warn!(error = %e, "cannot install a SIGUSR1 handler");
    }
}
