//! A [`Link`]: one multiplexed Redis connection shared by every user of it
//! (their commands pipeline on it), kept up by a supervisor task.
//!
//! The supervisor connects in the background, so that the proxy starts
//! and keeps serving while Redis is down; probes the connection every
//! [`HEARTBEAT`] and whenever a user reports a failure
//! ([`Dialer::probe`]); and after a loss reconnects with the [`Backoff`].
//! While there is no connection, [`Link::get`] returns `None` at once:
//! nobody waits on a dead Redis. For a Sentinel URL, a master switch the
//! Sentinels announce drops the connection at once and cuts a reconnect
//! pause short.
//!
//! The owner hears about connections and pushes through [`Events`], on the
//! supervisor's task; the supervisor stops when the [`Link`] is dropped.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use redis::aio::MultiplexedConnection;
use redis::{PushInfo, PushKind};
use tokio::sync::{oneshot, watch, Notify};

use super::backoff::Backoff;
use super::target::{Dialer, Pushes};
use super::timeouts::HEARTBEAT;

/// What the owner of a link is told, on the supervisor's task. Each
/// method must return quickly: the supervisor waits for it.
pub trait Events: Send + Sync + 'static {
    /// A connection was made (`tracking`: with client tracking on); called
    /// before it is handed out, so that nothing read on it comes before
    /// what this does.
    fn connected(&self, _tracking: bool) {}
    /// The connection was lost; called after it stopped being handed out.
    fn lost(&self) {}
    /// A RESP3 push other than the disconnection (tracking links only).
    fn push(&self, _push: PushInfo) {}
}

/// No events: a link nobody needs to hear from.
struct Quiet;

impl Events for Quiet {}

pub struct Link {
    state: Arc<State>,
    /// Dropped with the link: the supervisor stops.
    _stop: oneshot::Sender<()>,
}

struct State {
    slot: RwLock<Option<MultiplexedConnection>>,
    connected: watch::Sender<bool>,
    trouble: Notify,
}

impl Link {
    /// Starts the supervisor of a link to `dialer`'s server; `role` names
    /// the link in logs.
    pub fn start(dialer: Dialer, role: &'static str) -> Self {
        Self::start_with_events(dialer, role, Arc::new(Quiet))
    }

    /// [`Link::start`], telling `events` what happens to the connection.
    pub fn start_with_events(dialer: Dialer, role: &'static str, events: Arc<dyn Events>) -> Self {
        let state = Arc::new(State {
            slot: RwLock::new(None),
            connected: watch::Sender::new(false),
            trouble: Notify::new(),
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let supervisor = Supervisor {
            state: state.clone(),
            dialer,
            role,
            events,
        };
        tokio::spawn(async move {
            tokio::select! {
                _ = stopped => {}
                () = supervisor.run() => {}
            }
        });
        Self { state, _stop: stop }
    }

    /// A handle on the connection, or `None` while there is none.
    pub fn get(&self) -> Option<MultiplexedConnection> {
        self.state.slot.read().clone()
    }

    pub fn is_connected(&self) -> bool {
        *self.state.connected.borrow()
    }

    /// Waits until connected, for at most `timeout`; true when connected.
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        let mut rx = self.state.connected.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|c| *c))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// A command failed: the supervisor probes the connection now, and
    /// drops it if Redis does not answer.
    pub fn report_failure(&self) {
        self.state.trouble.notify_one();
    }
}

impl State {
    fn set(&self, conn: Option<MultiplexedConnection>) {
        let up = conn.is_some();
        *self.slot.write() = conn;
        self.connected.send_replace(up);
    }
}

struct Supervisor {
    state: Arc<State>,
    dialer: Dialer,
    role: &'static str,
    events: Arc<dyn Events>,
}

impl Supervisor {
    /// Connects, watches, reconnects: for as long as the link lives.
    async fn run(self) {
        let (target, role) = (self.dialer.redis(), self.role);
        let mut backoff = Backoff::new();
        let mut switches = self.dialer.switches();
        // One warning for connection failures: before the first connection,
        // or after the warning that it was lost.
        let mut warned = false;
        loop {
            let (conn, pushes) = match self.dialer.multiplexed().await {
                Ok(c) => c,
                Err(e) => {
                    if !warned {
                        tracing::warn!(redis = target, role, error = %e, "cannot reach Redis; retrying with backoff");
                        warned = true;
                    }
                    tokio::select! {
                        () = backoff.wait() => {}
                        () = next_switch(&mut switches) => backoff.reset(),
                    }
                    continue;
                }
            };
            backoff.reset();
            let tracking = pushes.is_some();
            self.events.connected(tracking);
            self.state.set(Some(conn.clone()));
            tracing::info!(redis = target, role, tracking, "connected to Redis");
            self.watch(conn, pushes, &mut switches).await;
            self.state.set(None);
            self.events.lost();
            tracing::warn!(
                redis = target,
                role,
                "lost the Redis connection; reconnecting"
            );
            warned = true;
        }
    }

    /// Returns when the connection is gone: closed (a push says so), or
    /// silent for a probe.
    async fn watch(
        &self,
        mut conn: MultiplexedConnection,
        mut pushes: Option<Pushes>,
        switches: &mut Option<watch::Receiver<u64>>,
    ) {
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        if let Some(rx) = switches {
            rx.mark_unchanged();
        }
        loop {
            tokio::select! {
                push = next_push(&mut pushes) => match push {
                    Some(p) if p.kind == PushKind::Disconnection => return,
                    Some(p) => self.events.push(p),
                    None => return,
                },
                () = next_switch(switches) => return,
                () = self.state.trouble.notified() => {
                    if !self.dialer.probe(&mut conn).await {
                        return;
                    }
                }
                _ = heartbeat.tick() => {
                    if !self.dialer.probe(&mut conn).await {
                        return;
                    }
                }
            }
        }
    }
}

/// The next push, or never for a connection without pushes.
async fn next_push(pushes: &mut Option<Pushes>) -> Option<PushInfo> {
    match pushes {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The next master switch, or never without Sentinel (or once the
/// discovery is gone).
async fn next_switch(switches: &mut Option<watch::Receiver<u64>>) {
    if let Some(rx) = switches {
        if rx.changed().await.is_ok() {
            return;
        }
    }
    std::future::pending().await
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::config::RedisUrl;
    use crate::redis_conn::target::Target;

    /// Counts the events it hears.
    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Events for Count {
        fn connected(&self, _tracking: bool) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A port on 127.0.0.1 that refuses connections (bound, then freed).
    fn refused_port() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.local_addr().expect("local address").port()
    }

    #[tokio::test]
    async fn a_link_to_a_refusing_server_never_blocks_and_never_connects() {
        let target = Target {
            url: RedisUrl {
                tls: false,
                host: "127.0.0.1".into(),
                port: refused_port(),
                db: 0,
                username: None,
                password: None,
                prefix: String::new(),
                sentinel: None,
            },
            ca: None,
        };
        let events = Arc::new(Count::default());
        let dialer = Dialer::new(&target, false).expect("dialer");
        let link = Link::start_with_events(dialer, "test", events.clone());
        assert!(link.get().is_none(), "no connection is handed out");
        assert!(!link.wait_connected(Duration::from_millis(300)).await);
        assert!(!link.is_connected());
        link.report_failure();
        assert_eq!(events.0.load(Ordering::Relaxed), 0);
        drop(link);
        // The supervisor's last reference to the events goes with it.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while Arc::strong_count(&events) > 1 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the supervisor outlived its link"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
