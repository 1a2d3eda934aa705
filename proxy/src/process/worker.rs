//! A worker's side of the process model: the sockets the master passed,
//! the ready report, and the tie to the master's life.
//!
//! The master passes `LISTEN_FDS` descriptors from fd 3: the plain HTTP
//! listeners in config order, the HTTPS ones, then one end of a datagram
//! socket pair on which the worker reports `ready <port>` (the port of its
//! private admin listener on `127.0.0.1`, from which the master fetches its
//! metrics) once it can serve.

use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::net::UnixDatagram;

use listenfd::ListenFd;
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::config::Config;
use crate::server::{self, Listeners};

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("the master passed {got} sockets, this configuration needs {want}")]
    FdCount { got: usize, want: usize },
    #[error("inherited socket {index}: {source}")]
    Fd {
        index: usize,
        source: std::io::Error,
    },
    #[error("inherited socket {index} is missing")]
    Missing { index: usize },
    #[error("private admin listener: {0}")]
    Admin(std::io::Error),
    #[error("cannot report to the master: {0}")]
    Report(std::io::Error),
    #[error("the master (pid {0}) is gone")]
    Orphan(Pid),
}

/// What a worker inherited from its master.
pub struct Inherited {
    slot: usize,
    fds: ListenFd,
    master: Pid,
}

impl Inherited {
    /// `Some` when this process is a worker (`HIPACHE_WORKER` is set).
    /// Call first thing in `main`, before any thread exists: it reads and
    /// removes `LISTEN_FDS` from the environment. Also asks the kernel for
    /// SIGTERM (a drain) should the master die.
    pub fn from_env() -> Option<Self> {
        let slot = std::env::var(super::WORKER_ENV).ok()?.parse().ok()?;
        let master = nix::unistd::getppid();
        tie_to_master();
        Some(Self {
            slot,
            fds: ListenFd::from_env(),
            master,
        })
    }

    /// This worker's slot (0-based), the `worker` label of its metrics.
    pub fn slot(&self) -> usize {
        self.slot
    }

    /// The traffic listeners the master bound, and a private admin listener
    /// on `127.0.0.1:0` (the master serves the configured one).
    pub fn listeners(&mut self, config: &Config) -> Result<Listeners, WorkerError> {
        let (n_http, n_https) = (config.http.len(), config.https.len());
        let want = n_http + n_https + 1;
        if self.fds.len() != want {
            return Err(WorkerError::FdCount {
                got: self.fds.len(),
                want,
            });
        }
        let mut take = |index: usize| match self.fds.take_tcp_listener(index) {
            Ok(Some(l)) => Ok(l),
            Ok(None) => Err(WorkerError::Missing { index }),
            Err(source) => Err(WorkerError::Fd { index, source }),
        };
        let http = (0..n_http).map(&mut take).collect::<Result<_, _>>()?;
        let https = (n_http..n_http + n_https)
            .map(&mut take)
            .collect::<Result<_, _>>()?;
        let admin = server::listen(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .map_err(WorkerError::Admin)?;
        Ok(Listeners {
            http,
            https,
            admin: Some(admin),
        })
    }

    /// Tells the master this worker serves, with its private admin port.
    /// Call after the privilege drop: also re-arms the parent-death signal
    /// (a credential change clears it) and checks the master still lives.
    pub fn report_ready(&mut self, admin: Option<SocketAddr>) -> Result<(), WorkerError> {
        tie_to_master();
        if nix::unistd::getppid() != self.master {
            return Err(WorkerError::Orphan(self.master));
        }
        let index = self.fds.len().saturating_sub(1);
        let socket: UnixDatagram = match self.fds.take_unix_datagram(index) {
            Ok(Some(s)) => s,
            Ok(None) => return Err(WorkerError::Missing { index }),
            Err(source) => return Err(WorkerError::Fd { index, source }),
        };
        let port = admin.map_or(0, |a| a.port());
        socket
            .send(format!("ready {port}").as_bytes())
            .map_err(WorkerError::Report)?;
        Ok(())
    }
}

/// SIGTERM to this process when the master dies (it then drains and
/// exits instead of serving unsupervised).
fn tie_to_master() {
    if let Err(e) = nix::sys::prctl::set_pdeathsig(Signal::SIGTERM) {
        tracing::warn!(error = %e, "cannot set the parent-death signal");
    }
}

/// The port in a worker's `ready <port>` report.
pub fn parse_ready(message: &[u8]) -> Option<u16> {
    std::str::from_utf8(message)
        .ok()?
        .strip_prefix("ready ")?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ready_reports() {
        assert_eq!(parse_ready(b"ready 40123"), Some(40123));
        assert_eq!(parse_ready(b"ready 0"), Some(0));
        assert_eq!(parse_ready(b"ready x"), None);
        assert_eq!(parse_ready(b"hello"), None);
    }
}
