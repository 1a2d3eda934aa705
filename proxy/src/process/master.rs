//! The master: binds, spawns workers, keeps one live worker per slot,
//! recycles workers above the memory limit, forwards signals, and serves
//! the admin listener. It serves no traffic.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixDatagram;
use std::process::ExitStatus;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use command_fds::{CommandFdExt, FdMapping};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use parking_lot::Mutex;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::admin::{MasterMetrics, MasterState};
use super::{memory, worker};
use crate::config::Config;
use crate::error::StartError;
use crate::server::Listeners;

/// Shortest time between two starts of a worker in one slot: a worker that
/// crashes at once is restarted at most this often.
pub const RESTART_MIN_INTERVAL: Duration = Duration::from_secs(1);

/// Shortest time between two memory recycles of one slot, so that a limit
/// below a fresh worker's footprint recycles slowly instead of in a loop.
pub const RECYCLE_MIN_INTERVAL: Duration = Duration::from_secs(5);

/// Beyond the drain timeout, how long a draining worker (shutdown or
/// recycle) gets before SIGKILL: its tunnels' close frames and exit.
pub const KILL_GRACE: Duration = Duration::from_secs(5);

/// After SIGKILL, how long the master waits for the exits to be reported.
pub const KILL_WAIT: Duration = Duration::from_secs(2);

/// How often the master looks at due restarts and overdue drains.
pub const TICK: Duration = Duration::from_millis(250);

#[derive(Debug, thiserror::Error)]
pub enum MasterError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("cannot start a worker: {0}")]
    Spawn(std::io::Error),
    #[error("cannot set up: {0}")]
    Setup(String),
    #[error("worker {slot} exited during startup ({status}); see its log above")]
    StartupFailed { slot: usize, status: String },
}

/// A worker's part in its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The slot's worker.
    Active,
    /// Started to replace the slot's active worker (memory recycle); takes
    /// over once ready.
    Replacement,
    /// Sent SIGTERM (recycled): draining, its exit is expected.
    Retiring,
}

#[derive(Debug)]
struct Worker {
    slot: usize,
    pid: Pid,
    role: Role,
    /// The private admin port, once the worker reported ready.
    port: Option<u16>,
    /// When it was sent SIGTERM.
    term_sent: Option<Instant>,
}

#[derive(Debug, Default)]
struct Slot {
    last_start: Option<Instant>,
    last_recycle: Option<Instant>,
    /// A restart is due (the active worker died).
    restart: bool,
}

/// What the per-worker tasks report.
#[derive(Debug)]
enum Event {
    Ready {
        id: u64,
        port: u16,
    },
    Exited {
        id: u64,
        status: std::io::Result<ExitStatus>,
    },
}

struct Master {
    /// HTTP then HTTPS sockets, in config order: fds 3.. of every worker.
    sockets: Vec<OwnedFd>,
    slots: Vec<Slot>,
    workers: HashMap<u64, Worker>,
    next_id: u64,
    events: mpsc::UnboundedSender<Event>,
    state: Arc<MasterState>,
    memory_limit: Option<u64>,
    drain_timeout: Duration,
    /// Some worker has been ready once: exits after that are crashes, not
    /// a configuration that cannot start.
    ever_ready: bool,
}

/// Runs the master until SIGTERM/SIGINT and its workers' exit. Returns the
/// process exit code: 0 after a clean shutdown, 1 when a second signal
/// cut the drain short.
pub async fn run(config: Config) -> Result<u8, MasterError> {
    let bound = Listeners::bind(&config)?;
    let mut sockets = Vec::new();
    for l in bound.http.into_iter().chain(bound.https) {
        sockets.push(OwnedFd::from(l));
    }
    let metrics = MasterMetrics::new().map_err(|e| MasterError::Setup(e.to_string()))?;
    let state = Arc::new(MasterState {
        metrics,
        ready: Mutex::new(vec![None; config.workers]),
        draining: Default::default(),
        status_page: config.status_page,
    });
    let admin_task = match bound.admin {
        Some(l) => Some(spawn_admin(l, state.clone())?),
        None => None,
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut master = Master {
        sockets,
        slots: (0..config.workers).map(|_| Slot::default()).collect(),
        workers: HashMap::new(),
        next_id: 0,
        events: tx,
        state: state.clone(),
        memory_limit: config.memory_limit,
        drain_timeout: config.drain_timeout,
        ever_ready: false,
    };
    let signals = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::user_defined1()),
    );
    let (Ok(mut term), Ok(mut int), Ok(mut usr1)) = signals else {
        return Err(MasterError::Setup("cannot install signal handlers".into()));
    };
    tracing::info!(
        workers = config.workers,
        pid = std::process::id(),
        "master started"
    );
    for slot in 0..config.workers {
        master.start(slot, Role::Active)?;
    }
    let supervised = master
        .supervise(&mut rx, &mut term, &mut int, &mut usr1)
        .await;
    let code = master.shutdown(&mut rx, &mut term, &mut int).await;
    if let Some(t) = admin_task {
        t.abort();
    }
    supervised.map(|()| code)
}

/// The master's own admin listener, served in a task of its own.
fn spawn_admin(
    l: std::net::TcpListener,
    state: Arc<MasterState>,
) -> Result<tokio::task::JoinHandle<()>, MasterError> {
    let l = l
        .set_nonblocking(true)
        .and_then(|()| tokio::net::TcpListener::from_std(l))
        .map_err(|e| MasterError::Setup(format!("admin listener: {e}")))?;
    if let Ok(addr) = l.local_addr() {
        tracing::info!(address = %addr, "listening (admin, master)");
    }
    Ok(tokio::spawn(super::admin::serve(l, state)))
}

impl Master {
    /// Runs until SIGTERM or SIGINT (`Ok`) or a worker event that cannot be
    /// handled (`Err`): worker events, SIGUSR1 forwarded to the workers,
    /// and on every tick the restarts due, the overdue kills and the
    /// memory watch.
    async fn supervise(
        &mut self,
        rx: &mut mpsc::UnboundedReceiver<Event>,
        term: &mut tokio::signal::unix::Signal,
        int: &mut tokio::signal::unix::Signal,
        usr1: &mut tokio::signal::unix::Signal,
    ) -> Result<(), MasterError> {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_memory_check = Instant::now();
        loop {
            tokio::select! {
                Some(event) = rx.recv() => self.handle(event)?,
                _ = term.recv() => { tracing::info!("SIGTERM received: stopping the workers"); return Ok(()); }
                _ = int.recv() => { tracing::info!("SIGINT received: stopping the workers"); return Ok(()); }
                _ = usr1.recv() => {
                    tracing::info!("SIGUSR1 received: forwarding to the workers (access log reopen)");
                    self.signal_all(Signal::SIGUSR1);
                }
                _ = tick.tick() => {
                    self.restart_due();
                    self.kill_overdue();
                    if last_memory_check.elapsed() >= memory::CHECK_INTERVAL {
                        last_memory_check = Instant::now();
                        self.check_memory();
                    }
                }
            }
        }
    }

    /// Starts a worker in `slot`.
    fn start(&mut self, slot: usize, role: Role) -> Result<(), MasterError> {
        let (ours, theirs) = UnixDatagram::pair().map_err(MasterError::Spawn)?;
        let mut mappings = Vec::with_capacity(self.sockets.len() + 1);
        for (i, fd) in self.sockets.iter().enumerate() {
            mappings.push(FdMapping {
                parent_fd: fd.try_clone().map_err(MasterError::Spawn)?,
                child_fd: 3 + i as i32,
            });
        }
        let n = mappings.len();
        mappings.push(FdMapping {
            parent_fd: OwnedFd::from(theirs),
            child_fd: 3 + n as i32,
        });
        let exe = std::env::current_exe().map_err(MasterError::Spawn)?;
        let args: Vec<OsString> = std::env::args_os().skip(1).collect();
        let mut cmd = tokio::process::Command::new(exe);
        cmd.args(args)
            .env(super::WORKER_ENV, slot.to_string())
            .env("LISTEN_FDS", (n + 1).to_string())
            .env_remove("LISTEN_PID")
            .env_remove("LISTEN_FDS_FIRST_FD")
            // Its own process group: a terminal's Ctrl-C reaches the master
            // only, which then drains the workers once.
            .process_group(0);
        cmd.fd_mappings(mappings)
            .map_err(|e| MasterError::Spawn(std::io::Error::other(e)))?;
        let mut child = cmd.spawn().map_err(MasterError::Spawn)?;
        let Some(pid) = child.id() else {
            return Err(MasterError::Spawn(std::io::Error::other(
                "worker exited at once",
            )));
        };
        let pid = Pid::from_raw(pid as i32);
        let id = self.next_id;
        self.next_id += 1;
        self.workers.insert(
            id,
            Worker {
                slot,
                pid,
                role,
                port: None,
                term_sent: None,
            },
        );
        self.slots[slot].last_start = Some(Instant::now());
        self.state.metrics.workers.set(self.workers.len() as i64);
        tracing::info!(slot, pid = pid.as_raw(), ?role, "worker started");
        let events = self.events.clone();
        let report = ours
            .set_nonblocking(true)
            .and_then(|()| tokio::net::UnixDatagram::from_std(ours));
        tokio::spawn(async move {
            let mut report = report.ok();
            let mut buf = [0u8; 64];
            loop {
                tokio::select! {
                    r = async { match &report { Some(s) => s.recv(&mut buf).await, None => std::future::pending().await } } => {
                        match r.ok().and_then(|n| worker::parse_ready(&buf[..n])) {
                            Some(port) => { let _ = events.send(Event::Ready { id, port }); }
                            None => tracing::warn!(slot, "unreadable report from a worker"),
                        }
                        report = None;
                    }
                    status = child.wait() => {
                        let _ = events.send(Event::Exited { id, status });
                        return;
                    }
                }
            }
        });
        Ok(())
    }

    fn handle(&mut self, event: Event) -> Result<(), MasterError> {
        match event {
            Event::Ready { id, port } => self.ready(id, port),
            Event::Exited { id, status } => return self.exited(id, status),
        }
        Ok(())
    }

    fn ready(&mut self, id: u64, port: u16) {
        let Some(w) = self.workers.get_mut(&id) else {
            return;
        };
        w.port = Some(port);
        let (slot, role, pid) = (w.slot, w.role, w.pid);
        self.ever_ready = true;
        tracing::info!(slot, pid = pid.as_raw(), "worker ready");
        if role == Role::Replacement {
            // The new worker accepts: the old one may drain now.
            let old: Vec<u64> = self.in_slot(slot, Role::Active);
            for old_id in old {
                self.retire(old_id);
            }
            if let Some(w) = self.workers.get_mut(&id) {
                w.role = Role::Active;
            }
        }
        self.publish();
    }

    fn exited(&mut self, id: u64, status: std::io::Result<ExitStatus>) -> Result<(), MasterError> {
        let Some(w) = self.workers.remove(&id) else {
            return Ok(());
        };
        self.state.metrics.workers.set(self.workers.len() as i64);
        let status = match status {
            Ok(s) => s.to_string(),
            Err(e) => format!("unknown ({e})"),
        };
        let pid = w.pid.as_raw();
        match w.role {
            Role::Retiring => {
                tracing::info!(slot = w.slot, pid, %status, "recycled worker exited");
            }
            Role::Active | Role::Replacement => {
                if !self.ever_ready {
                    tracing::error!(slot = w.slot, pid, %status, "worker exited during startup");
                    return Err(MasterError::StartupFailed {
                        slot: w.slot,
                        status,
                    });
                }
                tracing::warn!(slot = w.slot, pid, %status, role = ?w.role, "worker exited unexpectedly");
                self.state.metrics.worker_restarts.inc();
                if w.role == Role::Active {
                    let waiting = self.in_slot(w.slot, Role::Replacement);
                    match waiting.first() {
                        // Its replacement was already starting: it takes over.
                        Some(r) => {
                            if let Some(r) = self.workers.get_mut(r) {
                                r.role = Role::Active;
                            }
                        }
                        None => self.slots[w.slot].restart = true,
                    }
                }
                self.restart_due();
            }
        }
        self.publish();
        Ok(())
    }

    /// Starts the workers of slots whose restart is due, at most one start
    /// per slot per [`RESTART_MIN_INTERVAL`].
    fn restart_due(&mut self) {
        for slot in 0..self.slots.len() {
            let s = &self.slots[slot];
            if !s.restart
                || s.last_start
                    .is_some_and(|t| t.elapsed() < RESTART_MIN_INTERVAL)
            {
                continue;
            }
            self.slots[slot].restart = false;
            if let Err(e) = self.start(slot, Role::Active) {
                tracing::error!(slot, error = %e, "cannot restart a worker; retrying");
                self.slots[slot].restart = true;
            }
        }
    }

    /// Recycles each ready worker above the memory limit: its replacement
    /// starts first and the old one drains once the new one is ready.
    fn check_memory(&mut self) {
        let Some(limit) = self.memory_limit else {
            return;
        };
        let candidates: Vec<(usize, Pid)> = self
            .workers
            .values()
            .filter(|w| w.role == Role::Active && w.port.is_some())
            .map(|w| (w.slot, w.pid))
            .collect();
        for (slot, pid) in candidates {
            if !self.in_slot(slot, Role::Replacement).is_empty()
                || self.slots[slot]
                    .last_recycle
                    .is_some_and(|t| t.elapsed() < RECYCLE_MIN_INTERVAL)
            {
                continue;
            }
            let rss = match memory::rss_bytes(pid.as_raw() as u32) {
                Ok(rss) => rss,
                Err(e) => {
                    tracing::debug!(slot, error = %e, "cannot read a worker's memory");
                    continue;
                }
            };
            if rss <= limit {
                continue;
            }
            tracing::error!(
                slot,
                pid = pid.as_raw(),
                rss,
                limit,
                "worker above server.memoryLimit: recycling it"
            );
            self.state.metrics.memory_recycles.inc();
            self.slots[slot].last_recycle = Some(Instant::now());
            if let Err(e) = self.start(slot, Role::Replacement) {
                tracing::error!(slot, error = %e, "cannot start a replacement worker");
            }
        }
    }

    /// SIGKILLs retiring workers still alive past their drain.
    fn kill_overdue(&mut self) {
        let limit = self.drain_timeout + KILL_GRACE;
        for w in self.workers.values() {
            if w.term_sent.is_some_and(|t| t.elapsed() > limit) {
                tracing::warn!(
                    slot = w.slot,
                    pid = w.pid.as_raw(),
                    "worker still draining past the drain timeout: killing it"
                );
                let _ = kill(w.pid, Signal::SIGKILL);
            }
        }
    }

    fn retire(&mut self, id: u64) {
        if let Some(w) = self.workers.get_mut(&id) {
            w.role = Role::Retiring;
            w.term_sent = Some(Instant::now());
            tracing::info!(
                slot = w.slot,
                pid = w.pid.as_raw(),
                "draining the recycled worker"
            );
            if let Err(e) = kill(w.pid, Signal::SIGTERM) {
                tracing::warn!(pid = w.pid.as_raw(), error = %e, "cannot signal a worker");
            }
        }
    }

    fn in_slot(&self, slot: usize, role: Role) -> Vec<u64> {
        self.workers
            .iter()
            .filter(|(_, w)| w.slot == slot && w.role == role)
            .map(|(&id, _)| id)
            .collect()
    }

    fn signal_all(&self, sig: Signal) {
        for w in self.workers.values() {
            if let Err(e) = kill(w.pid, sig) {
                tracing::debug!(pid = w.pid.as_raw(), error = %e, "cannot signal a worker");
            }
        }
    }

    /// Updates what `/readyz` and `/metrics` see: each slot's ready active
    /// worker.
    fn publish(&self) {
        let mut ready = vec![None; self.slots.len()];
        for w in self.workers.values() {
            if w.role == Role::Active {
                if let (Some(port), Some(r)) = (w.port, ready.get_mut(w.slot)) {
                    *r = Some(port);
                }
            }
        }
        *self.state.ready.lock() = ready;
    }

    /// SIGTERM to every worker, then waits for their exits (bounded by the
    /// drain timeout and [`KILL_GRACE`], then SIGKILL). A second signal
    /// kills them at once.
    async fn shutdown(
        &mut self,
        rx: &mut mpsc::UnboundedReceiver<Event>,
        term: &mut tokio::signal::unix::Signal,
        int: &mut tokio::signal::unix::Signal,
    ) -> u8 {
        self.state.draining.store(true, Ordering::Release);
        self.signal_all(Signal::SIGTERM);
        let mut code = 0;
        let deadline = Instant::now() + self.drain_timeout + KILL_GRACE;
        let mut kill_deadline: Option<Instant> = None;
        while !self.workers.is_empty() {
            let wake = kill_deadline.unwrap_or(deadline);
            tokio::select! {
                event = rx.recv() => match event {
                    Some(Event::Exited { id, status }) => {
                        if let Some(w) = self.workers.remove(&id) {
                            let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                            tracing::info!(slot = w.slot, pid = w.pid.as_raw(), %status, "worker stopped");
                        }
                        self.state.metrics.workers.set(self.workers.len() as i64);
                    }
                    Some(Event::Ready { .. }) => {}
                    None => break,
                },
                _ = async { tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} } }, if kill_deadline.is_none() => {
                    tracing::warn!("second signal: killing the workers without finishing the drain");
                    code = 1;
                    self.signal_all(Signal::SIGKILL);
                    kill_deadline = Some(Instant::now() + KILL_WAIT);
                }
                () = tokio::time::sleep_until(wake) => {
                    if kill_deadline.is_some() {
                        tracing::error!(left = self.workers.len(), "workers did not exit after SIGKILL");
                        break;
                    }
                    tracing::warn!(left = self.workers.len(), "workers still draining past the drain timeout: killing them");
                    self.signal_all(Signal::SIGKILL);
                    kill_deadline = Some(Instant::now() + KILL_WAIT);
                }
            }
        }
        tracing::info!("master stopped");
        code
    }
}
