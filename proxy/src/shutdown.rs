//! Signals: SIGTERM or SIGINT start a drain; a second one aborts. The rule
//! is [`hipache_signal`]'s, shared with the syncer; SIGUSR1 is the proxy's.

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
