//! Signals and the drain. SIGTERM or SIGINT start a drain; a second one
//! aborts (the rule is [`hipache_signal`]'s, shared with the syncer);
//! SIGUSR1 is the proxy's.
//!
//! The drain ([`crate::Proxy::serve`] once its shutdown future completes, [`drain`] from the graceful step on): `/readyz`
//! answers 503 at once, the accept loops stop (in a worker, the shared
//! listening sockets stay open in the master and the other workers, so no
//! queued connection is lost), then, after [`FIRST_REQUEST_GRACE`] for
//! connections accepted at the last moment, hyper-util's `GracefulShutdown` sends
//! HTTP/2 GOAWAY, closes idle keep-alive connections and closes busy ones
//! after their in-flight request, all bounded by `drainTimeout`. Upgraded
//! tunnels (WebSocket) are not HTTP connections any more: they stay open
//! until the drain timeout ends, even when they are all that is left (a
//! WebSocket application gets the whole drain to finish its exchange, as
//! its HTTP neighbours do), then get a close frame (1001 "going away") and
//! are closed. A tunnel that ends on its own ends the wait early.

use std::time::Duration;

use hyper_util::server::graceful::GracefulShutdown;

pub use hipache_signal::{signal, signal_or};

/// Installs tokio's handler for SIGUSR1 for the life of the process, so
/// that a SIGUSR1 arriving before (or without) an access log to reopen is
/// ignored instead of killing the process (its default action).
pub fn ignore_usr1_until_handled() {
    use tokio::signal::unix::{signal, SignalKind};
    if let Err(e) = signal(SignalKind::user_defined1()) {
        tracing::warn!(error = %e, "cannot install a SIGUSR1 handler");
    }
}

/// After the drain timeout, how long tunnels get to send their close frames
/// and see the other side's answer (each lingers for at most twice
/// [`crate::forward::upgrade::CLOSE_LINGER`]).
pub const TUNNEL_CLOSE_GRACE: Duration = Duration::from_secs(3);

/// At the start of a drain, once accepting stopped, how long before idle
/// connections are closed: a connection accepted just before has had no
/// time to send its first request, and a client does not retry a request
/// on a new connection that the server closed unused. Busy and keep-alive
/// connections keep being served meanwhile; readiness is already false.
pub const FIRST_REQUEST_GRACE: Duration = Duration::from_millis(500);

/// Once accepting stopped: after [`FIRST_REQUEST_GRACE`], HTTP/2
/// connections get GOAWAY, idle HTTP/1 ones close and busy ones close after
/// their in-flight request, all within `timeout`; then the tunnels (see
/// [`close_tunnels`]).
pub async fn drain(
    graceful: GracefulShutdown,
    tunnel_close: &tokio::sync::watch::Sender<bool>,
    timeout: Duration,
) {
    let deadline = tokio::time::Instant::now() + timeout;
    // Connections accepted just before the accept loops stopped have not
    // sent their request yet: closing them now as idle would fail a
    // request that a client never retries on a fresh connection.
    tokio::time::sleep(FIRST_REQUEST_GRACE.min(timeout)).await;
    if tokio::time::timeout_at(deadline, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(timeout = ?timeout, "drain timeout reached; closing remaining connections");
    }
    close_tunnels(tunnel_close, deadline).await;
}

/// Once the drain's HTTP connections are done: upgraded tunnels stay open
/// until the drain deadline (they may end on their own), then get their
/// close frames (see [`crate::forward::upgrade`]) and at most
/// [`TUNNEL_CLOSE_GRACE`] to finish.
async fn close_tunnels(close: &tokio::sync::watch::Sender<bool>, deadline: tokio::time::Instant) {
    let open = close.receiver_count();
    if open == 0 {
        return;
    }
    tracing::info!(
        tunnels = open,
        "waiting for upgraded tunnels until the drain timeout"
    );
    if tokio::time::timeout_at(deadline, close.closed())
        .await
        .is_ok()
    {
        return;
    }
    tracing::info!(
        tunnels = close.receiver_count(),
        "drain timeout: closing upgraded tunnels (WebSocket 1001 going away)"
    );
    let _ = close.send(true);
    if tokio::time::timeout(TUNNEL_CLOSE_GRACE, close.closed())
        .await
        .is_err()
    {
        tracing::warn!(
            tunnels = close.receiver_count(),
            "tunnels did not close in time"
        );
    }
}
