//! A real Redis Sentinel deployment on loopback: one master, replicas,
//! three `redis-server --sentinel` processes (what `redis-sentinel` is),
//! each on a free port, killed on drop; or the same of Valkey
//! (`valkey-server`, `valkey-server --sentinel`).
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The master's name in every Sentinel's configuration.
pub const MASTER: &str = "hipache";
/// How long a Sentinel waits before it calls a silent master down. Short,
/// so that a killed master is replaced in about two seconds; long enough
/// that two loaded cores do not make a live one look dead.
const DOWN_AFTER_MS: u64 = 1000;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

struct Process {
    binary: &'static str,
    port: u16,
    args: Vec<String>,
    child: Option<Child>,
}

impl Process {
    fn spawn(&mut self) {
        let child = Command::new(self.binary)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{} is installed: {e}", self.binary));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !answers_ping(self.port) {
            assert!(
                Instant::now() < deadline,
                "redis-server {:?} did not answer PING within 10 s",
                self.args
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn answers_ping(port: u16) -> bool {
    let Ok(client) = redis::Client::open(format!("redis://127.0.0.1:{port}")) else {
        return false;
    };
    let Ok(mut c) = client.get_connection_with_timeout(Duration::from_millis(200)) else {
        return false;
    };
    redis::cmd("PING").query::<String>(&mut c).is_ok()
}

pub struct Cluster {
    servers: Vec<Process>,
    sentinels: Vec<Process>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// A master, `replicas` replicas of it and three Sentinels that know
    /// all of them and each other (waited for, bounded).
    pub async fn start(replicas: usize) -> Self {
        Self::start_with("redis-server", replicas).await
    }

    /// [`Cluster::start`] with another server binary (`valkey-server`).
    pub async fn start_with(binary: &'static str, replicas: usize) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let data = |port: u16, master: Option<u16>| {
            // Each server its own directory: a replica writes the RDB it
            // receives there before loading it.
            let node_dir = dir.path().join(format!("node-{port}"));
            std::fs::create_dir_all(&node_dir).expect("a server directory");
            let mut args: Vec<String> = [
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--repl-diskless-sync-delay",
                "0",
                "--dir",
                &node_dir.display().to_string(),
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
            if let Some(m) = master {
                args.extend(["--replicaof".into(), "127.0.0.1".into(), m.to_string()]);
            }
            Process {
                binary,
                port,
                args,
                child: None,
            }
        };
        let master = free_port();
        let mut servers = vec![data(master, None)];
        for _ in 0..replicas {
            servers.push(data(free_port(), Some(master)));
        }
        for s in &mut servers {
            s.spawn();
        }
        let mut sentinels = Vec::new();
        for i in 0..3 {
            let port = free_port();
            let conf: PathBuf = dir.path().join(format!("sentinel-{i}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                     sentinel monitor {MASTER} 127.0.0.1 {master} 2\n\
                     sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}\n\
                     sentinel failover-timeout {MASTER} 3000\n\
                     sentinel parallel-syncs {MASTER} 1\n",
                    dir = dir.path().display()
                ),
            )
            .expect("write sentinel.conf");
            let mut p = Process {
                binary,
                port,
                args: vec![conf.display().to_string(), "--sentinel".into()],
                child: None,
            };
            p.spawn();
            sentinels.push(p);
        }
        let cluster = Self {
            servers,
            sentinels,
            _dir: dir,
        };
        cluster.wait_settled(replicas).await;
        cluster
    }

    /// `redis+sentinel://` for every Sentinel, the master's name, and
    /// `extra` (`?read_from=master`, `#prefix`...).
    pub fn url(&self, extra: &str) -> String {
        let nodes: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        format!("redis+sentinel://{}/{MASTER}{extra}", nodes.join(","))
    }

    pub fn sentinel_ports(&self) -> Vec<u16> {
        self.sentinels.iter().map(|s| s.port).collect()
    }

    /// Runs one command on the server at `port`, as redis-cli would; a
    /// connection a failover closes under it (Sentinel kills the clients
    /// of the servers it reconfigures) is tried again, for up to 5 s.
    pub async fn cli<T: redis::FromRedisValue>(&self, port: u16, args: &[&str]) -> T {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).expect("url");
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            let mut cmd = redis::cmd(args[0]);
            for a in &args[1..] {
                cmd.arg(*a);
            }
            let result = match client.get_multiplexed_async_connection().await {
                Ok(mut c) => cmd.query_async(&mut c).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(v) => return v,
                Err(e)
                    if (e.is_io_error() || e.is_connection_dropped()) && Instant::now() < end =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("{args:?} on 127.0.0.1:{port}: {e}"),
            }
        }
    }

    /// The master's port as the first Sentinel that answers names it.
    pub async fn master_port(&self) -> u16 {
        for s in &self.sentinels {
            if s.child.is_none() {
                continue;
            }
            let addr: Option<(String, u16)> = self
                .cli(s.port, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER])
                .await;
            if let Some((_, port)) = addr {
                return port;
            }
        }
        panic!("no Sentinel names the master");
    }

    /// The master's port, once every live Sentinel names the same one and
    /// that server says it is the master; panics after `deadline`.
    pub async fn settled_master(&self, deadline: Duration) -> u16 {
        let end = Instant::now() + deadline;
        loop {
            let mut named = Vec::new();
            for s in self.sentinels.iter().filter(|s| s.child.is_some()) {
                let addr: Option<(String, u16)> = self
                    .cli(s.port, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER])
                    .await;
                named.push(addr.map(|a| a.1));
            }
            if let Some(Some(port)) = named.first().copied() {
                if named.iter().all(|n| *n == Some(port)) && self.is_master(port).await {
                    return port;
                }
            }
            assert!(
                Instant::now() < end,
                "no settled master after {deadline:?}: {named:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn is_master(&self, port: u16) -> bool {
        let Some(server) = self.servers.iter().find(|s| s.port == port) else {
            return false;
        };
        if server.child.is_none() {
            return false;
        }
        let role: Vec<redis::Value> = self.cli(port, &["ROLE"]).await;
        matches!(role.first(), Some(redis::Value::BulkString(b)) if b == b"master")
    }

    /// Waits until every Sentinel knows the other two and `replicas`
    /// linked replicas: before that a failover cannot be agreed on.
    async fn wait_settled(&self, replicas: usize) {
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            let mut ok = true;
            let mut seen = Vec::new();
            for s in &self.sentinels {
                let peers: Vec<redis::Value> =
                    self.cli(s.port, &["SENTINEL", "SENTINELS", MASTER]).await;
                let linked: Vec<std::collections::HashMap<String, String>> =
                    self.cli(s.port, &["SENTINEL", "REPLICAS", MASTER]).await;
                seen.push(format!(
                    "{}: {} peers, replicas {:?}",
                    s.port,
                    peers.len(),
                    linked
                        .iter()
                        .map(|r| (r.get("port"), r.get("flags"), r.get("master-link-status")))
                        .collect::<Vec<_>>()
                ));
                let linked = linked
                    .iter()
                    .filter(|r| r.get("master-link-status").is_some_and(|v| v == "ok"))
                    .filter(|r| r.get("flags").is_some_and(|f| !f.contains("down")))
                    .count();
                ok &= peers.len() == 2 && linked == replicas;
            }
            if ok {
                return;
            }
            assert!(
                Instant::now() < end,
                "the Sentinels did not discover each other and {replicas} linked replicas within 20 s: {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `SENTINEL FAILOVER` (retried while one is still in progress), then
    /// waits for the new master: its port.
    pub async fn failover(&self) -> u16 {
        let old = self.settled_master(Duration::from_secs(20)).await;
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            let client =
                redis::Client::open(format!("redis://127.0.0.1:{}", self.sentinels[0].port))
                    .expect("url");
            let mut c = client
                .get_multiplexed_async_connection()
                .await
                .expect("sentinel");
            let r: redis::RedisResult<String> = redis::cmd("SENTINEL")
                .arg("FAILOVER")
                .arg(MASTER)
                .query_async(&mut c)
                .await;
            match r {
                Ok(_) => break,
                // -INPROG, or -NOGOOD while the last failover's replica
                // still syncs.
                Err(e) => assert!(Instant::now() < end, "SENTINEL FAILOVER: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        loop {
            let now = self.settled_master(Duration::from_secs(20)).await;
            if now != old {
                return now;
            }
            assert!(
                Instant::now() < end,
                "the master did not change within 20 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until every live server but the master says (`ROLE`) it is
    /// a replica linked to the master: after a failover, before the next.
    pub async fn wait_replicas_linked(&self) {
        let end = Instant::now() + Duration::from_secs(20);
        let master = self.settled_master(Duration::from_secs(20)).await;
        loop {
            let mut linked = true;
            for s in self
                .servers
                .iter()
                .filter(|s| s.child.is_some() && s.port != master)
            {
                let role: Vec<redis::Value> = self.cli(s.port, &["ROLE"]).await;
                let text = |i: usize| match role.get(i) {
                    Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
                    Some(redis::Value::Int(n)) => n.to_string(),
                    _ => String::new(),
                };
                linked &=
                    text(0) == "slave" && text(2) == master.to_string() && text(3) == "connected";
            }
            if linked {
                return;
            }
            assert!(
                Instant::now() < end,
                "the replicas did not link to {master} within 20 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL of the server at `port`.
    pub fn kill(&mut self, port: u16) {
        if let Some(s) = self.servers.iter_mut().find(|s| s.port == port) {
            s.stop();
        }
    }

    /// Starts the server at `port` again, empty, as a replica of
    /// `master` (as a restarted pod asks the Sentinels first).
    pub fn restart_as_replica(&mut self, port: u16, master: u16) {
        let s = self
            .servers
            .iter_mut()
            .find(|s| s.port == port)
            .expect("a server of the cluster");
        s.stop();
        // The twelve arguments every server has; a former `--replicaof` goes.
        s.args.truncate(12);
        s.args
            .extend(["--replicaof".into(), "127.0.0.1".into(), master.to_string()]);
        s.spawn();
    }

    /// Stops every Sentinel (the servers keep running).
    pub fn stop_sentinels(&mut self) {
        for s in &mut self.sentinels {
            s.stop();
        }
    }

    /// Starts the Sentinels again on their ports, with the configuration
    /// they rewrote.
    pub fn start_sentinels(&mut self) {
        for s in &mut self.sentinels {
            s.spawn();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for p in self.sentinels.iter_mut().chain(self.servers.iter_mut()) {
            p.stop();
        }
    }
}
