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
            https,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// The proxy's plain-HTTP address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
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
    _dir: tempfile::TempDir,
    log: PathBuf,
}

impl ProxyProcess {
    /// Writes the config (as [`config_json`], on a free port) to a
    /// temporary file, starts the binary on it and waits until it answers
    /// `Host: __ping__`. Retries on another port when the bind fails.
    pub async fn start(driver: &str, server_extra: Value) -> ProxyProcess {
        let binary = binary_path();
        let dir = tempfile::tempdir().expect("temporary directory for the proxy config");
        let mut last_error = String::new();
        for attempt in 0..3 {
            let port = free_port();
            let mut config = config_json_on_port(driver, port, server_extra.clone());
            // One process with no master: killing it leaves no orphan worker.
            if let Some(server) = config["server"].as_object_mut() {
                server.entry("workers").or_insert(json!(0));
            }
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
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
