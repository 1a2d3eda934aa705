//! A real `redis-server` per test, on a free loopback port, killed on drop.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tempfile::TempDir;

use crate::free_port;

/// How long `redis-server` gets to answer PING after it was spawned.
const STARTUP_DEADLINE: Duration = Duration::from_secs(10);
/// How many free ports are tried when `redis-server` cannot bind one (another
/// process may grab a port between our probe and redis's bind).
const BIND_ATTEMPTS: usize = 5;

/// A `redis-server` child process with its own empty data directory.
///
/// Persistence is off (`--save "" --appendonly no`); the process is killed
/// when the value is dropped, also when the test panics.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    extra: Vec<String>,
    dir: TempDir,
}

impl RedisServer {
    /// Starts a `redis-server` on a free loopback port and waits (bounded)
    /// until it answers PING. Panics with redis's own log when it cannot.
    pub fn start() -> Self {
        Self::start_with_args(&[])
    }

    /// [`RedisServer::start`] with extra `redis-server` arguments (TLS
    /// ports, `requirepass`, ...).
    pub fn start_with_args(extra: &[String]) -> Self {
        let dir = tempfile::tempdir().expect("create a temporary directory for redis-server");
        let mut last_error = String::new();
        for _ in 0..BIND_ATTEMPTS {
            let port = free_port();
            match spawn(port, dir.path(), extra) {
                Ok(child) => {
                    return Self {
                        child: Some(child),
                        port,
                        extra: extra.to_vec(),
                        dir,
                    }
                }
                Err(error) => last_error = error,
            }
        }
        panic!("redis-server did not start after {BIND_ATTEMPTS} attempts: {last_error}");
    }

    /// The TCP port redis listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT`: the proxy's `driver` value.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `redis://127.0.0.1:PORT#prefix`: a driver URL with a key prefix.
    pub fn url_with_prefix(&self, prefix: &str) -> String {
        format!("{}#{prefix}", self.url())
    }

    /// A client for this server.
    pub fn client(&self) -> ::redis::Client {
        ::redis::Client::open(self.url()).expect("redis URL of the test server parses")
    }

    /// A fresh multiplexed connection.
    pub async fn conn(&self) -> ::redis::aio::MultiplexedConnection {
        self.client()
            .get_multiplexed_async_connection()
            .await
            .expect("connect to the test redis-server")
    }

    /// Runs one command, e.g. `redis.query::<Vec<String>>(&["SMEMBERS", "dead:a"])`.
    pub async fn query<T: ::redis::FromRedisValue>(&self, args: &[&str]) -> T {
        let mut cmd = ::redis::cmd(args[0]);
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        cmd.query_async(&mut self.conn().await)
            .await
            .unwrap_or_else(|e| panic!("redis command {args:?} failed: {e}"))
    }

    /// Replaces the list `frontend:<host>` by `[identifier, backends...]` in
    /// one MULTI (`host` may be `*.example.com` or `*`).
    pub async fn rpush_frontend<S: AsRef<str>>(
        &self,
        host: &str,
        identifier: &str,
        backends: &[S],
    ) {
        self.rpush_frontend_key(&format!("frontend:{host}"), identifier, backends)
            .await;
    }

    /// Writes a route document at `routes:<host>` (one `SET`, as redis-cli
    /// users do).
    pub async fn set_routes(&self, host: &str, document: &serde_json::Value) {
        let key = format!("routes:{host}");
        let _: () = self.query(&["SET", &key, &document.to_string()]).await;
    }

    /// Like [`Self::rpush_frontend`] with the full key given (for prefixes).
    pub async fn rpush_frontend_key<S: AsRef<str>>(
        &self,
        key: &str,
        identifier: &str,
        backends: &[S],
    ) {
        let mut pipe = ::redis::pipe();
        pipe.atomic().del(key).ignore();
        pipe.cmd("RPUSH").arg(key).arg(identifier);
        for backend in backends {
            pipe.arg(backend.as_ref());
        }
        pipe.ignore();
        let () = pipe
            .query_async(&mut self.conn().await)
            .await
            .unwrap_or_else(|e| panic!("RPUSH {key} failed: {e}"));
    }

    /// Members of the set `dead:<host>` (positions as strings), sorted.
    pub async fn dead_members(&self, host: &str) -> Vec<String> {
        let mut members: Vec<String> = self.query(&["SMEMBERS", &format!("dead:{host}")]).await;
        members.sort();
        members
    }

    /// `TTL` of a key: -2 absent, -1 without expiry, else seconds.
    pub async fn ttl(&self, key: &str) -> i64 {
        self.query(&["TTL", key]).await
    }

    /// Subscribes to `channel`; returns once the subscription is active, so
    /// that nothing published afterwards is missed.
    pub async fn subscribe(&self, channel: &str) -> Subscription {
        let mut pubsub = self
            .client()
            .get_async_pubsub()
            .await
            .expect("open a pub/sub connection to the test redis-server");
        pubsub
            .subscribe(channel)
            .await
            .unwrap_or_else(|e| panic!("SUBSCRIBE {channel} failed: {e}"));
        Subscription {
            stream: pubsub.into_on_message(),
        }
    }

    /// Kills the server (to test a Redis outage); [`Self::restart`] brings
    /// it back on the same port, empty.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port after [`Self::stop`].
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + STARTUP_DEADLINE;
        loop {
            match spawn(self.port, self.dir.path(), &self.extra) {
                Ok(child) => {
                    self.child = Some(child);
                    return;
                }
                Err(error) if Instant::now() > deadline => {
                    panic!(
                        "redis-server did not restart on port {}: {error}",
                        self.port
                    )
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Messages published on one channel.
pub struct Subscription {
    stream: ::redis::aio::PubSubStream,
}

impl Subscription {
    /// The next message's payload, or `None` when none came within `timeout`.
    pub async fn next_within(&mut self, timeout: Duration) -> Option<String> {
        let msg = tokio::time::timeout(timeout, self.stream.next())
            .await
            .ok()??;
        Some(
            msg.get_payload::<String>()
                .expect("pub/sub payload is a string"),
        )
    }

    /// Every message that arrives within `window`.
    pub async fn drain_for(&mut self, window: Duration) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + window;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return out;
            }
            match self.next_within(left).await {
                Some(msg) => out.push(msg),
                None => return out,
            }
        }
    }
}

/// Spawns `redis-server` on `port` and waits until it answers PING; on
/// failure returns redis's log so the caller can retry another port.
fn spawn(port: u16, dir: &Path, extra: &[String]) -> Result<Child, String> {
    let log = dir.join(format!("redis-{port}.log"));
    let mut child = Command::new("redis-server")
        .arg("--port")
        .arg(port.to_string())
        .args(["--bind", "127.0.0.1"])
        .args(["--save", ""])
        .args(["--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .arg("--logfile")
        .arg(&log)
        .args(["--daemonize", "no"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            format!("cannot run redis-server (is it installed and on PATH? scripts/test installs it): {e}")
        })?;
    let deadline = Instant::now() + STARTUP_DEADLINE;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(format!(
                "redis-server on port {port} exited with {status}: {text}"
            ));
        }
        if ping(port) {
            return Ok(child);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(format!("redis-server on port {port} did not answer PING within {STARTUP_DEADLINE:?}: {text}"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// True when a PING on `port` gets `+PONG`.
fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    stream.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}
