//! The Grafana dashboard (deploy/grafana/hipache-dashboard.json) against a
//! real Prometheus (Debian's `prometheus` binary) scraping a real proxy:
//! every query of every panel evaluates, and every proxy panel returns
//! series. Also `promtool check metrics` on a scrape of `/metrics`.
//!
//! Syncer panels (description starting with `[syncer]`) need a syncer and a
//! Kubernetes API server, so here they only have to evaluate without error
//! and name metrics the syncer exports (`NAMES` in syncer/src/metrics.rs).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hipache::metrics::names;
use hipache_tests::backend::Backend;
use hipache_tests::client::{get, Req};
use hipache_tests::free_port;
use hipache_tests::metrics::scrape;
use hipache_tests::proxy::{config_with_admin, TestProxy};
use hipache_tests::redis::RedisServer;
use hipache_tests::refused_url;
use hipache_tests::wait::until;
use hipache_tests::ws::WsBackend;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const DASHBOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../deploy/grafana/hipache-dashboard.json"
);
/// Marks a panel backed by the syncer's metrics.
const SYNCER_MARK: &str = "[syncer]";
/// Prometheus' job name for the proxy in the test's scrape config.
const JOB: &str = "hipache";
/// Bound on Prometheus starting and scraping.
const PROMETHEUS_DEADLINE: Duration = Duration::from_secs(60);
const STEP: Duration = Duration::from_secs(10);

/// What Grafana would substitute in queries (a 1 s scrape interval makes
/// `$__rate_interval` at least 4 s; a minute keeps every scrape of the test).
const SUBSTITUTIONS: &[(&str, &str)] = &[
    ("$__rate_interval", "1m"),
    ("${__rate_interval}", "1m"),
    ("$__interval", "15s"),
    ("${__interval}", "15s"),
    ("$__range", "5m"),
    ("${job}", ".*"),
    ("$job", ".*"),
    ("${instance}", ".*"),
    ("$instance", ".*"),
    ("${syncer_job}", ".*"),
    ("$syncer_job", ".*"),
    ("${namespace}", ".*"),
    ("$namespace", ".*"),
    ("${pod}", ".*"),
    ("$pod", ".*"),
];

/// Fails with a clear message when a tool is not installed.
fn require_tool(tool: &str) {
    match Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(_) => {}
        Err(e) => panic!(
            "`{tool}` is not installed ({e}): this test needs Debian's `prometheus` package \
             (`apt-get install -y prometheus`; scripts/test installs it)"
        ),
    }
}

/// A `prometheus` server scraping one target every second, on a free port,
/// with its TSDB in a temporary directory; killed on drop.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: SocketAddr) -> Prometheus {
        require_tool("prometheus");
        let dir = tempfile::tempdir().expect("temporary directory for Prometheus");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: {JOB}\n    static_configs:\n      - targets: ['{target}']\n        labels: {{namespace: hipache, pod: hipache-0}}\n"
            ),
        )
        .expect("write prometheus.yml");
        let mut last_error = String::new();
        for attempt in 0..3 {
            let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
            let log = dir.path().join(format!("prometheus-{attempt}.log"));
            let out = std::fs::File::create(&log).expect("Prometheus log file");
            let err = out.try_clone().expect("clone the log file handle");
            let mut child = Command::new("prometheus")
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join(format!("data-{attempt}")).display()
                ))
                .arg(format!("--web.listen-address={addr}"))
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .unwrap_or_else(|e| panic!("run prometheus: {e}"));
            let deadline = std::time::Instant::now() + PROMETHEUS_DEADLINE;
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    last_error = format!("prometheus exited with {status}: {}", read(&log));
                    break;
                }
                if http_ok(addr, "/-/ready") {
                    return Prometheus {
                        child,
                        addr,
                        _dir: dir,
                    };
                }
                if std::time::Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "prometheus not ready on {addr} within {PROMETHEUS_DEADLINE:?}: {}",
                        read(&log)
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("prometheus did not start: {last_error}");
    }

    /// Evaluates `expr` now through `/api/v1/query`: the result vector, or
    /// the error Prometheus reported.
    async fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let path = format!("/api/v1/query?query={}", percent_encode(expr));
        let resp = Req::get(&self.addr.to_string(), &path)
            .timeout(STEP)
            .send(self.addr)
            .await
            .map_err(|e| format!("query {expr}: {e:#}"))?;
        let body: Value = serde_json::from_slice(&resp.body)
            .map_err(|e| format!("query {expr}: not JSON ({e}): {}", resp.text()))?;
        if body["status"] != "success" {
            return Err(format!(
                "{}: {}",
                body["errorType"].as_str().unwrap_or("error"),
                body["error"].as_str().unwrap_or_default()
            ));
        }
        match &body["data"]["result"] {
            Value::Array(series) => Ok(series.clone()),
            // A scalar or string result: one value.
            other => Ok(vec![json!({"metric": {}, "value": other})]),
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// A blocking `GET` answered 200 (for polling before the runtime matters).
fn http_ok(addr: SocketAddr, path: &str) -> bool {
    use std::io::Read;
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}

/// Percent-encodes a query parameter value.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn substitute(expr: &str) -> String {
    let mut out = expr.to_owned();
    for (from, to) in SUBSTITUTIONS {
        out = out.replace(from, to);
    }
    assert!(
        !out.contains('$'),
        "a variable with no test substitution in {expr:?}"
    );
    out
}

/// Every `hipache_*` identifier in a query.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find("hipache_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    out
}

/// The family of a series name (`x_bucket` of histogram `x` is `x`).
fn family(name: &str, known: &BTreeSet<String>) -> Option<String> {
    if known.contains(name) {
        return Some(name.to_owned());
    }
    ["_bucket", "_sum", "_count"]
        .iter()
        .filter_map(|s| name.strip_suffix(s))
        .find(|base| known.contains(*base))
        .map(str::to_owned)
}

struct Panel {
    title: String,
    syncer: bool,
    exprs: Vec<String>,
}

fn panels(dashboard: &Value) -> Vec<Panel> {
    let mut out = Vec::new();
    let mut stack: Vec<&Value> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .collect();
    while let Some(p) = stack.pop() {
        if let Some(nested) = p["panels"].as_array() {
            stack.extend(nested.iter());
        }
        if p["type"] == "row" {
            continue;
        }
        let title = p["title"].as_str().unwrap_or_default().to_owned();
        let exprs: Vec<String> = p["targets"]
            .as_array()
            .unwrap_or_else(|| panic!("panel {title:?} has targets"))
            .iter()
            .map(|t| {
                t["expr"]
                    .as_str()
                    .unwrap_or_else(|| panic!("a target of {title:?} has an expr"))
                    .to_owned()
            })
            .collect();
        assert!(!exprs.is_empty(), "panel {title:?} has a query");
        out.push(Panel {
            syncer: p["description"]
                .as_str()
                .unwrap_or_default()
                .starts_with(SYNCER_MARK),
            title,
            exprs,
        });
    }
    out.reverse();
    out
}

fn load_dashboard() -> Value {
    let text =
        std::fs::read_to_string(DASHBOARD).unwrap_or_else(|e| panic!("read {DASHBOARD}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{DASHBOARD} is not JSON: {e}"))
}

#[test]
fn dashboard_is_a_standalone_grafana_dashboard() {
    let d = load_dashboard();
    assert!(
        d["schemaVersion"].as_u64().is_some_and(|v| v >= 36),
        "schemaVersion"
    );
    assert!(d["uid"].is_string() && d["title"].is_string());
    let vars = d["templating"]["list"].as_array().expect("templating.list");
    let datasource = vars
        .iter()
        .find(|v| v["name"] == "datasource")
        .expect("a `datasource` variable");
    assert_eq!(datasource["type"], "datasource");
    assert_eq!(datasource["query"], "prometheus");
    // Every panel and target uses that variable, never a fixed uid.
    let mut stack: Vec<&Value> = d["panels"].as_array().expect("panels").iter().collect();
    let mut ids = BTreeSet::new();
    while let Some(p) = stack.pop() {
        assert!(
            ids.insert(p["id"].as_u64().expect("panel id")),
            "unique panel ids"
        );
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        for t in p["targets"].as_array().expect("targets") {
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        }
    }
}

#[test]
fn dashboard_names_only_exported_metrics_and_covers_every_family() {
    let proxy: BTreeSet<String> = names::ALL.iter().map(|s| s.to_string()).collect();
    let syncer: BTreeSet<String> = hipache_tests::metrics::syncer_names().into_iter().collect();
    let mut used = BTreeSet::new();
    for panel in panels(&load_dashboard()) {
        for expr in &panel.exprs {
            for name in metric_names(expr) {
                let known = if panel.syncer { &syncer } else { &proxy };
                let f = family(&name, known).unwrap_or_else(|| {
                    panic!(
                        "panel {:?} queries {name}, which the {} does not export",
                        panel.title,
                        if panel.syncer { "syncer" } else { "proxy" }
                    )
                });
                used.insert(f);
            }
        }
    }
    let unused: Vec<_> = proxy
        .iter()
        .chain(&syncer)
        .filter(|n| !used.contains(*n))
        .collect();
    assert!(unused.is_empty(), "families with no panel: {unused:?}");
}

// ------------------------------------------------------------ traffic

/// A self-signed certificate for `tls.test` (files in `dir`) and a client
/// trusting it.
fn tls_files(dir: &Path) -> (String, String, Arc<rustls::ClientConfig>) {
    let key = rcgen::generate_simple_self_signed(vec!["tls.test".to_owned()])
        .expect("self-signed certificate");
    let cert_path = dir.join("tls.crt");
    let key_path = dir.join("tls.key");
    std::fs::write(&cert_path, key.cert.pem()).expect("write cert");
    std::fs::write(&key_path, key.signing_key.serialize_pem()).expect("write key");
    (
        cert_path.display().to_string(),
        key_path.display().to_string(),
        hipache_tests::https::trusting(key.cert.der()),
    )
}

/// One HTTPS request (a completed handshake) and one plain-HTTP request on
/// the HTTPS port (a failed handshake).
async fn tls_traffic(https: SocketAddr, client: Arc<rustls::ClientConfig>) {
    let answer = hipache_tests::client::https_get(https, client, "tls.test").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    hipache_tests::client::plain_http_to_tls_port(https).await;
}

/// Waits until Prometheus has scraped at least `requests` answered requests.
async fn wait_for_requests(prometheus: &Prometheus, requests: f64) {
    until(
        "Prometheus scraped the first round of traffic",
        PROMETHEUS_DEADLINE,
        || async {
            let q = format!("sum(hipache_requests_total{{job=\"{JOB}\"}}) >= {requests}");
            match prometheus.query(&q).await {
                Ok(v) if !v.is_empty() => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_panel_evaluates_against_a_real_prometheus() {
    require_tool("prometheus");
    let redis = RedisServer::start();
    let app = Backend::start("app").await;
    let failing = Backend::builder("failing").status(502).start().await;
    let ws_backend = WsBackend::start().await;
    redis.rpush_frontend("app.test", "app", &[app.url()]).await;
    redis
        .rpush_frontend("fail.test", "fail", &[failing.url()])
        .await;
    redis
        .rpush_frontend("dead.test", "dead", &[refused_url(), app.url()])
        .await;
    redis
        .rpush_frontend("*.wild.test", "wild", &[app.url()])
        .await;
    redis
        .rpush_frontend("ws.test", "ws", &[ws_backend.url()])
        .await;
    redis.rpush_frontend("tls.test", "tls", &[app.url()]).await;
    let dir = tempfile::tempdir().expect("temporary directory");
    let (cert, key, tls_client) = tls_files(dir.path());
    let mut config = config_with_admin(
        &redis.url(),
        json!({"routeCache": "tracking", "metricsPerFrontend": 5}),
    );
    config["https"] = json!({"bind": ["127.0.0.1"], "port": 0, "cert": cert, "key": key});
    let proxy = TestProxy::start_with(config).await;
    let admin = proxy.admin_addr();

    let prometheus = tokio::task::block_in_place(|| Prometheus::start(admin));
    let first = until(
        "Prometheus scraped the proxy",
        PROMETHEUS_DEADLINE,
        || async {
            match prometheus.query(&format!("up{{job=\"{JOB}\"}} == 1")).await {
                Ok(v) if !v.is_empty() => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    );
    first.await;

    // Traffic: successes, a backend 5xx, unknown hosts, wildcard hosts, a
    // refused backend (retry and dead mark), a tracking-cache invalidation,
    // TLS, and a WebSocket left open while the panels are evaluated.
    for i in 0..20 {
        assert_eq!(get(proxy.addr(), "app.test", "/").await.status, 200);
        let post = Req::new("POST", &format!("u{i}.wild.test"), "/")
            .body(vec![b'x'; 100])
            .send(proxy.addr())
            .await
            .expect("POST");
        assert_eq!(post.status, 200);
        assert_eq!(get(proxy.addr(), "dead.test", "/").await.status, 200);
    }
    assert_eq!(get(proxy.addr(), "fail.test", "/").await.status, 502);
    assert_eq!(get(proxy.addr(), "nowhere.test", "/").await.status, 400);
    redis
        .rpush_frontend("app.test", "app", &[app.url(), app.url()])
        .await;
    tls_traffic(proxy.https_addr(), tls_client).await;
    let mut req = format!("ws://{}/", proxy.addr())
        .into_client_request()
        .expect("ws request");
    req.headers_mut()
        .insert("host", "ws.test".parse().expect("host header"));
    let (mut ws, _) = tokio::time::timeout(STEP, tokio_tungstenite::connect_async(req))
        .await
        .expect("WebSocket handshake within the deadline")
        .expect("WebSocket handshake");
    ws.send(Message::text("hello")).await.expect("send");
    let _ = tokio::time::timeout(STEP, ws.next()).await;
    let seen = scrape(admin).await;
    assert!(seen.value(names::DEAD_MARKS, &[("result", "written")]) >= 1.0);
    assert!(seen.value(names::CACHE_INVALIDATIONS, &[]) >= 1.0);
    assert_eq!(seen.value(names::TUNNELS_OPEN, &[]), 1.0);

    // A second round once Prometheus has seen the first, so that series
    // born during the first round (per-frontend ones) show a rate too.
    wait_for_requests(&prometheus, seen.value(names::REQUESTS, &[])).await;
    for _ in 0..10 {
        assert_eq!(get(proxy.addr(), "app.test", "/").await.status, 200);
    }
    assert_eq!(get(proxy.addr(), "fail.test", "/").await.status, 502);
    let seen = scrape(admin).await;

    // Wait until Prometheus holds this state, from a scrape at least two
    // seconds after the traffic.
    let requests = seen.value(names::REQUESTS, &[]);
    let after = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
        + 2.0;
    until(
        "Prometheus scraped after the traffic",
        PROMETHEUS_DEADLINE,
        || async {
            let v = prometheus
                .query(&format!(
                    "sum(hipache_requests_total{{job=\"{JOB}\"}}) >= {requests} \
                     and on() timestamp(up{{job=\"{JOB}\"}}) > {after}"
                ))
                .await;
            match v {
                Ok(v) if !v.is_empty() => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;

    let dashboard = load_dashboard();
    let mut failures = Vec::new();
    let mut report = String::new();
    for panel in panels(&dashboard) {
        for expr in &panel.exprs {
            let q = substitute(expr);
            match prometheus.query(&q).await {
                Err(e) => failures.push(format!("{:?}: {q}: {e}", panel.title)),
                Ok(series) if series.is_empty() && !panel.syncer => {
                    failures.push(format!("{:?}: no series: {q}", panel.title))
                }
                Ok(series) => {
                    let shown: Vec<String> = series
                        .iter()
                        .map(|s| {
                            let labels: BTreeMap<String, String> =
                                serde_json::from_value(s["metric"].clone()).unwrap_or_default();
                            let labels: Vec<String> = labels
                                .iter()
                                .filter(|(k, _)| !["job", "instance"].contains(&k.as_str()))
                                .map(|(k, v)| format!("{k}={v}"))
                                .collect();
                            format!("{{{}}} {}", labels.join(","), s["value"][1])
                        })
                        .collect();
                    report.push_str(&format!(
                        "{}{}: {}\n",
                        if panel.syncer { "[syncer] " } else { "" },
                        panel.title,
                        if shown.is_empty() {
                            "(no series)".to_owned()
                        } else {
                            shown.join("  ")
                        }
                    ));
                }
            }
        }
    }
    // Template variables: label_values(<selector>, <label>) as Grafana runs it.
    for var in dashboard["templating"]["list"]
        .as_array()
        .expect("templating.list")
    {
        let Some(query) = var["definition"].as_str() else {
            continue;
        };
        let inner = query
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .unwrap_or_else(|| panic!("variable query {query:?} is label_values(...)"));
        let (selector, label) = inner
            .rsplit_once(',')
            .expect("label_values(selector, label)");
        let series = prometheus
            .query(&substitute(selector.trim()))
            .await
            .unwrap_or_else(|e| panic!("variable {}: {e}", var["name"]));
        let is_syncer = selector.contains("hipache_syncer_");
        if !is_syncer {
            assert!(
                series.iter().any(|s| s["metric"][label.trim()].is_string()),
                "variable {} has values",
                var["name"]
            );
        }
    }
    eprintln!("What the dashboard shows:\n{report}");
    assert!(
        failures.is_empty(),
        "panels failing against Prometheus:\n{}",
        failures.join("\n")
    );
    ws.close(None).await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_a_scrape() {
    require_tool("promtool");
    let redis = RedisServer::start();
    let app = Backend::start("app").await;
    redis.rpush_frontend("app.test", "app", &[app.url()]).await;
    let proxy = TestProxy::start_with_admin(&redis.url(), json!({"metricsPerFrontend": 2})).await;
    assert_eq!(get(proxy.addr(), "app.test", "/").await.status, 200);
    let text = scrape(proxy.admin_addr()).await.text;

    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .expect("promtool stdin")
        .write_all(text.as_bytes())
        .expect("write the scrape to promtool");
    let out = child.wait_with_output().expect("promtool output");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics: {} {said}",
        out.status
    );
}
