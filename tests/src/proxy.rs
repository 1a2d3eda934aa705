//! The proxy under test: in-process from its library ([`TestProxy`], for
//! most tests) or as the `hipache` binary ([`ProxyProcess`], for what only a
//! process has: signals, its own access-log file handling).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Map, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::client::Req;
use crate::free_port;

/// How long the proxy gets to drain when a test shuts it down.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);
/// How long the binary gets to answer `Host: __ping__` after it started.
const PROCESS_STARTUP_DEADLINE: Duration = Duration::from_secs(20);

/// The JSON config (0.4 layout) of a test proxy: plain HTTP on an ephemeral
/// loopback port, no admin listener, no access log, `server_extra` merged
/// into `server` (and overriding those defaults).
pub fn config_json(driver: &str, server_extra: Value) -> Value {
    config_json_on_port(driver, 0, server_extra)
}

fn config_json_on_port(driver: &str, port: u16, server_extra: Value) -> Value {
    let mut server = Map::new();
    server.insert("adminAddress".to_owned(), Value::Null);
    server.insert("accessLog".to_owned(), Value::Null);
    match server_extra {
        Value::Object(extra) => server.extend(extra),
        Value::Null => {}
        other => panic!("server_extra must be a JSON object, got {other}"),
    }
    json!({
        "http": {"port": port, "bind": ["127.0.0.1"]},
        "driver": driver,
        "server": Value::Object(server),
    })
}

/// [`config_json`] with the admin listener on `127.0.0.1:0` unless
/// `server_extra` sets `adminAddress` itself.
pub fn config_with_admin(driver: &str, server_extra: Value) -> Value {
    let mut extra = match server_extra {
        Value::Object(extra) => extra,
        Value::Null => Map::new(),
        other => panic!("server_extra must be a JSON object, got {other}"),
    };
    extra.entry("adminAddress").or_insert(json!("127.0.0.1:0"));
    config_json(driver, Value::Object(extra))
}

/// Parses a JSON config text with the proxy's own parser: the same path as
/// a config file, so tests exercise the real key names.
pub fn parse_config(text: &str) -> hipache::config::Config {
    match hipache::config::parse(text, hipache::config::Format::Json) {
        Ok(config) => config,
        Err(errors) => panic!("the test's proxy config was rejected: {errors:?}\n{text}"),
    }
}

/// The proxy running inside the test process, serving until dropped.
pub struct TestProxy {
    addr: SocketAddr,
    /// The admin listener (`/metrics`, `/healthz`, `/readyz`), when the
    /// config has one (see [`TestProxy::start_with_admin`]).
    admin: Option<SocketAddr>,
    /// The HTTPS listeners (an `https` section in the config), in order.
    https: Vec<SocketAddr>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestProxy {
    /// Starts a proxy reading routes from `driver` (a `redis://` URL), with
    /// `server_extra` (a JSON object, or `Value::Null`) merged into the
    /// `server` section, e.g. `json!({"tcpTimeout": 1})`.
    pub async fn start(driver: &str, server_extra: Value) -> TestProxy {
        Self::start_with(config_json(driver, server_extra)).await
    }

    /// Like [`TestProxy::start`] with the admin listener on an ephemeral
    /// loopback port (`adminAddress: "127.0.0.1:0"`, unless `server_extra`
    /// sets it): see [`TestProxy::admin_addr`].
    pub async fn start_with_admin(driver: &str, server_extra: Value) -> TestProxy {
        Self::start_with(config_with_admin(driver, server_extra)).await
    }

    /// Starts a proxy from a whole config document (see [`config_json`]).
    pub async fn start_with(config: Value) -> TestProxy {
        let text = config.to_string();
        let config = parse_config(&text);
        let proxy = hipache::Proxy::bind(config)
            .await
            .unwrap_or_else(|e| panic!("Proxy::bind failed: {e}\nconfig: {text}"));
        let addr = *proxy
            .http_addrs()
            .first()
            .expect("the proxy reports its bound HTTP address");
        let https = proxy.https_addrs().to_vec();
        let admin = proxy.admin_addr();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = rx.await;
            };
            if let Err(e) = proxy.serve(shutdown).await {
                panic!("Proxy::serve returned an error: {e}");
            }
        });
        TestProxy {
            addr,
            admin,
            https,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// The proxy's plain-HTTP address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The admin listener's address; panics when the config has none (start
    /// the proxy with [`TestProxy::start_with_admin`]).
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
            .expect("the proxy has an admin listener (start it with TestProxy::start_with_admin)")
    }

    /// The proxy's listening port (what `X-Forwarded-Port` must say).
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The first HTTPS listener's address (the config needs an `https`
    /// section, e.g. `{"bind": ["127.0.0.1"], "port": 0, "key": .., "cert": ..}`).
    pub fn https_addr(&self) -> SocketAddr {
        *self
            .https
            .first()
            .expect("the proxy config has an HTTPS listener")
    }

    /// Triggers shutdown and waits (bounded) for `serve` to return.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            match tokio::time::timeout(SHUTDOWN_DEADLINE, task).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => panic!("the proxy's serve task failed: {e}"),
                Err(_) => panic!("the proxy did not stop within {SHUTDOWN_DEADLINE:?}"),
            }
        }
    }
}

impl TestProxy {
    /// Triggers the shutdown (what SIGTERM does to the binary) without
    /// waiting: the drain runs while the test observes it.
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Waits for `serve` to return after [`TestProxy::begin_shutdown`],
    /// panicking after `deadline`; returns how long it took.
    pub async fn wait_stopped(mut self, deadline: Duration) -> Duration {
        let start = tokio::time::Instant::now();
        if let Some(task) = self.task.take() {
            match tokio::time::timeout(deadline, task).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => panic!("the proxy's serve task failed: {e}"),
                Err(_) => panic!("the proxy did not stop within {deadline:?}"),
            }
        }
        start.elapsed()
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// The path of the `hipache` binary next to this test executable
/// (`target/<profile>/hipache`; test executables live in
/// `target/<profile>/deps/`). `cargo test` does not build it because this
/// crate depends only on the library: `scripts/test` runs
/// `cargo build -p hipache --bin hipache` first.
pub fn binary_path() -> PathBuf {
    // Benchmarks point this at a release build.
    if let Some(path) = std::env::var_os("HIPACHE_TEST_BINARY") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("path of the test executable");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executable lives in target/<profile>/deps");
    let path = profile_dir.join("hipache");
    assert!(
        path.is_file(),
        "the hipache binary is missing at {}: run `cargo build -p hipache --bin hipache` \
         (scripts/test does) before these tests",
        path.display()
    );
    path
}

/// The `hipache` binary running as a child process (`hipache -c FILE`),
/// killed on drop.
pub struct ProxyProcess {
    child: Child,
    addr: SocketAddr,
    /// The admin listener, when the config names a fixed one.
    admin: Option<SocketAddr>,
    _dir: tempfile::TempDir,
    log: PathBuf,
}

impl ProxyProcess {
    /// Writes the config (as [`config_json`], on a free port) to a
    /// temporary file, starts the binary on it and waits until it answers
    /// `Host: __ping__`. Retries on another port when the bind fails.
    pub async fn start(driver: &str, server_extra: Value) -> ProxyProcess {
        Self::start_config(driver, server_extra, Value::Null, true, &[]).await
    }

    /// Like [`ProxyProcess::start`], with the `server` keys named in
    /// `defaults` left out of the config, so that the binary's own defaults
    /// apply (the harness otherwise turns the admin listener and the access
    /// log off).
    pub async fn start_with_defaults(driver: &str, defaults: &[&str]) -> ProxyProcess {
        Self::start_config(driver, Value::Null, Value::Null, true, defaults).await
    }

    /// Like [`ProxyProcess::start`] as a master with `workers` worker
    /// processes, its admin listener on a free loopback port (see
    /// [`ProxyProcess::admin_addr`]) and `top_extra` merged into the top
    /// level of the config (e.g. `{"user": "nobody"}`). Returns once a
    /// worker answers `Host: __ping__`.
    pub async fn start_workers(
        driver: &str,
        workers: usize,
        server_extra: Value,
        top_extra: Value,
    ) -> ProxyProcess {
        let mut extra = match server_extra {
            Value::Object(extra) => extra,
            Value::Null => Map::new(),
            other => panic!("server_extra must be a JSON object, got {other}"),
        };
        extra.insert("workers".to_owned(), json!(workers));
        extra
            .entry("adminAddress")
            .or_insert_with(|| json!(format!("127.0.0.1:{}", free_port())));
        Self::start_config(driver, Value::Object(extra), top_extra, false, &[]).await
    }

    async fn start_config(
        driver: &str,
        server_extra: Value,
        top_extra: Value,
        single: bool,
        defaults: &[&str],
    ) -> ProxyProcess {
        let binary = binary_path();
        let dir = tempfile::tempdir().expect("temporary directory for the proxy config");
        let mut last_error = String::new();
        for attempt in 0..3 {
            let port = free_port();
            let mut config = config_json_on_port(driver, port, server_extra.clone());
            // One process with no master: killing it leaves no orphan worker.
            if let Some(server) = config["server"].as_object_mut() {
                if single {
                    server.entry("workers").or_insert(json!(0));
                }
                for key in defaults {
                    server.remove(*key);
                }
            }
            if let (Some(top), Value::Object(extra)) = (config.as_object_mut(), &top_extra) {
                top.extend(extra.clone());
            }
            let admin = config["server"]["adminAddress"]
                .as_str()
                .and_then(|a| a.parse().ok())
                .filter(|a: &SocketAddr| a.port() != 0);
            let config_path = dir.path().join("config.json");
            std::fs::write(&config_path, config.to_string()).expect("write the proxy config");
            let log = dir.path().join(format!("hipache-{attempt}.log"));
            let log_file = std::fs::File::create(&log).expect("create the proxy's output file");
            let err_file = log_file.try_clone().expect("clone the output file handle");
            let mut child = Command::new(&binary)
                .arg("-c")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(log_file)
                .stderr(err_file)
                .spawn()
                .unwrap_or_else(|e| panic!("run {}: {e}", binary.display()));
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let deadline = tokio::time::Instant::now() + PROCESS_STARTUP_DEADLINE;
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    last_error = format!(
                        "hipache exited with {status}: {}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                    break;
                }
                let ping = Req::get("__ping__", "/")
                    .timeout(Duration::from_secs(1))
                    .send(addr)
                    .await;
                if ping.is_ok_and(|r| r.status == 200) {
                    return ProxyProcess {
                        child,
                        addr,
                        admin,
                        _dir: dir,
                        log,
                    };
                }
                if tokio::time::Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "hipache did not answer __ping__ on {addr} within {PROCESS_STARTUP_DEADLINE:?}: {}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        panic!("hipache did not start: {last_error}");
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The admin listener's address (set by [`ProxyProcess::start_workers`],
    /// or by a fixed `adminAddress` in the config).
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
            .expect("the proxy process has a fixed admin address (start_workers sets one)")
    }

    /// The pids of this process's children (a master's workers), from
    /// `/proc/<pid>/task/*/children`.
    pub fn children(&self) -> Vec<u32> {
        children_of(self.pid())
    }

    /// Sends a signal by name (`USR1`, `TERM`, ...) through `kill(1)`.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill(1)");
        assert!(status.success(), "kill -{name} {} failed", self.pid());
    }

    /// Waits (bounded) for the process to exit and returns its exit code.
    pub async fn wait_exit(&mut self, deadline: Duration) -> Option<i32> {
        let end = tokio::time::Instant::now() + deadline;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the hipache process") {
                return status.code();
            }
            if tokio::time::Instant::now() > end {
                panic!(
                    "hipache did not exit within {deadline:?}: {}",
                    self.output()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// What the process printed so far (stdout and stderr).
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        // A master's workers first: SIGKILL on the master would orphan them
        // until their parent-death signal drains them.
        for pid in self.children() {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The pids of `pid`'s children, from `/proc/<pid>/task/*/children`
/// (empty once it is gone).
pub fn children_of(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|text| {
            text.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// A `/proc/<pid>/status` field (`Uid:`, `Gid:`, `VmRSS:`, ...), trimmed;
/// `None` once the process is gone.
pub fn proc_status_field(pid: u32, field: &str) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .map(|v| v.trim().to_owned())
}
