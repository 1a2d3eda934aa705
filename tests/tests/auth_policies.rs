//! Basic and forward authentication (`docs/policies.md`) end to end: a real
//! `redis-server` holding route documents, real backends, the proxy
//! in-process (and as its binary, to read what it logs).
//!
//! Basic authentication is checked with every htpasswd scheme it accepts,
//! hashed by the tools people use (Apache's `htpasswd`, OpenSSL's `passwd`,
//! the `bcrypt` crate). Forward authentication talks to a small service
//! written here that follows oauth2-proxy's `/oauth2/auth` contract: 202
//! with `X-Auth-Request-User`/`-Email`/`-Groups` for a valid session
//! cookie, 401 otherwise (403 for a session it refuses).

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hipache_tests::backend::Backend;
use hipache_tests::client::{Req, Resp};
use hipache_tests::metrics::{scrape, Scrape};
use hipache_tests::proxy::{binary_path, config_json, TestProxy};
use hipache_tests::redis::RedisServer;
use hipache_tests::{free_port, refused_url, setup};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Apache's `htpasswd -nbB -C 5 alice 'correct horse'`.
const HTPASSWD_BCRYPT: &str = "$2y$05$/rlgThVOdNXqElPtEnovSOw8T82fTyTkyFecDJZdzc191us3g1L6O";
/// Apache's `htpasswd -nbm bob 'b0b:pa$$ word'` (its default, `$apr1$`).
const HTPASSWD_APR1: &str = "$apr1$G/a.trdz$ZWYphjc1p25fi4l3ZuAIr0";
/// Apache's `htpasswd -nbs carol carol-secret`.
const HTPASSWD_SHA: &str = "{SHA}zDWP8f33jIgtzBU4G57UXp/L1Eg=";

/// `Authorization: Basic …` for `user:password`.
fn basic(user: &str, password: &str) -> String {
    let token = data_encoding::BASE64.encode(format!("{user}:{password}").as_bytes());
    format!("Basic {token}")
}

/// `openssl passwd <args> <password>`: an implementation of the crypt
/// schemes independent of the proxy's.
fn openssl_passwd(args: &[&str], password: &str) -> String {
    let out = Command::new("openssl")
        .arg("passwd")
        .args(args)
        .arg(password)
        .output()
        .expect("run openssl passwd (scripts/test installs openssl)");
    assert!(out.status.success(), "openssl passwd {args:?} failed");
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

/// Apache's `{SHA}` entry, computed by OpenSSL: base64 of the SHA-1 digest.
fn openssl_sha(password: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg("printf %s \"$PW\" | openssl dgst -sha1 -binary | openssl base64 -A")
        .env("PW", password)
        .output()
        .expect("run openssl dgst");
    assert!(out.status.success(), "openssl dgst failed");
    format!(
        "{{SHA}}{}",
        String::from_utf8(out.stdout).expect("utf-8").trim()
    )
}

/// A document with one rule behind these Basic authentication entries.
fn basic_document(realm: &str, users: &[String], backend: &Backend) -> Value {
    json!({
        "id": "basic",
        "rules": [{
            "policies": {"basicAuth": {"realm": realm, "users": users}},
            "backends": [{"url": backend.url()}],
        }],
    })
}

async fn send(proxy: SocketAddr, what: &str, r: Req) -> Resp {
    r.send(proxy)
        .await
        .unwrap_or_else(|e| panic!("{what} through the proxy failed: {e:#}"))
}

async fn get_as(proxy: SocketAddr, host: &str, path: &str, authorization: Option<&str>) -> Resp {
    let mut r = Req::get(host, path);
    if let Some(a) = authorization {
        r = r.header("authorization", a);
    }
    send(proxy, &format!("GET http://{host}{path}"), r).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_checks_every_htpasswd_scheme() {
    let (redis, proxy) = setup(json!({})).await;
    let app = Backend::start("app").await;
    let b2b = bcrypt::hash_with_result("two b", 5)
        .expect("bcrypt")
        .format_for_version(bcrypt::Version::TwoB);
    let b2a = bcrypt::hash_with_result("two a", 5)
        .expect("bcrypt")
        .format_for_version(bcrypt::Version::TwoA);
    // (user, password, hash)
    let users: Vec<(&str, &str, String)> = vec![
        ("alice", "correct horse", HTPASSWD_BCRYPT.to_owned()),
        ("bob", "b0b:pa$$ word", HTPASSWD_APR1.to_owned()),
        ("carol", "carol-secret", HTPASSWD_SHA.to_owned()),
        ("bea", "two b", b2b),
        ("abe", "two a", b2a),
        ("april", "apr one", openssl_passwd(&["-apr1"], "apr one")),
        (
            "sam",
            "sha two five six",
            openssl_passwd(&["-5"], "sha two five six"),
        ),
        (
            "sue",
            "sha five one two",
            openssl_passwd(&["-6"], "sha five one two"),
        ),
        (
            "ron",
            "rounds",
            openssl_passwd(&["-6", "-salt", "rounds=20000$pepper"], "rounds"),
        ),
        ("sid", "sha one", openssl_sha("sha one")),
    ];
    let entries: Vec<String> = users.iter().map(|(u, _, h)| format!("{u}:{h}")).collect();
    redis
        .set_routes("basic.test", &basic_document("Staff area", &entries, &app))
        .await;
    let challenge = "Basic realm=\"Staff area\", charset=\"UTF-8\"";
    for (user, password, hash) in &users {
        let scheme = &hash[..hash.find(['$', '}']).map_or(4, |i| i + 1).min(6)];
        let ok = get_as(
            proxy.addr(),
            "basic.test",
            "/",
            Some(&basic(user, password)),
        )
        .await;
        assert_eq!(
            ok.served_by(),
            "app",
            "{user} ({scheme}) with the right password"
        );
        // Again: from the cache of verified credentials.
        let again = get_as(
            proxy.addr(),
            "basic.test",
            "/",
            Some(&basic(user, password)),
        )
        .await;
        assert_eq!(again.served_by(), "app", "{user} a second time");
        for wrong in [
            format!("{password}x"),
            String::new(),
            password.to_uppercase(),
        ] {
            let r = get_as(proxy.addr(), "basic.test", "/", Some(&basic(user, &wrong))).await;
            assert_eq!(r.status, 401, "{user} ({scheme}) with {wrong:?}");
            assert_eq!(r.header("www-authenticate"), Some(challenge));
        }
    }
    for authorization in [
        None,
        Some("Bearer abc".to_owned()),
        Some(basic("mallory", "correct horse")),
        Some("Basic !!!".to_owned()),
    ] {
        let r = get_as(proxy.addr(), "basic.test", "/", authorization.as_deref()).await;
        assert_eq!(r.status, 401, "{authorization:?}");
        assert_eq!(r.header("www-authenticate"), Some(challenge));
    }
    assert_eq!(
        app.request_count(),
        users.len() * 2,
        "only the authenticated requests reached the backend"
    );
    drop(redis);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_per_rule_and_a_changed_document_revokes_what_was_verified() {
    let (redis, proxy) = setup(json!({})).await;
    let app = Backend::start("app").await;
    let admin = Backend::start("admin").await;
    let document = |hash: &str| {
        json!({
            "id": "rules",
            "rules": [
                {
                    "matches": [{"path": {"value": "/admin"}}],
                    "policies": {"basicAuth": {"realm": "Admin", "users": [format!("root:{hash}")]}},
                    "backends": [{"url": admin.url()}],
                },
                {"backends": [{"url": app.url()}]},
            ],
        })
    };
    let first = bcrypt::hash("first", 5).expect("bcrypt");
    redis.set_routes("rules.test", &document(&first)).await;
    let open = get_as(proxy.addr(), "rules.test", "/", None).await;
    assert_eq!(
        open.served_by(),
        "app",
        "the other rule needs no credentials"
    );
    let refused = get_as(proxy.addr(), "rules.test", "/admin", None).await;
    assert_eq!(refused.status, 401);
    assert_eq!(
        refused.header("www-authenticate"),
        Some("Basic realm=\"Admin\", charset=\"UTF-8\"")
    );
    let creds = basic("root", "first");
    for _ in 0..3 {
        let r = get_as(proxy.addr(), "rules.test", "/admin/x", Some(&creds)).await;
        assert_eq!(r.served_by(), "admin");
    }
    // The password changes: what was verified under the old document no
    // longer opens anything, at once.
    let second = bcrypt::hash("second", 5).expect("bcrypt");
    redis.set_routes("rules.test", &document(&second)).await;
    let old = get_as(proxy.addr(), "rules.test", "/admin", Some(&creds)).await;
    assert_eq!(old.status, 401, "old credentials after the change");
    let new = get_as(
        proxy.addr(),
        "rules.test",
        "/admin",
        Some(&basic("root", "second")),
    )
    .await;
    assert_eq!(new.served_by(), "admin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bcrypt_checks_are_paid_once_per_credentials() {
    let (redis, proxy) = setup(json!({})).await;
    let app = Backend::start("app").await;
    let hash = bcrypt::hash("slow on purpose", 10).expect("bcrypt");
    redis
        .set_routes(
            "cost.test",
            &basic_document("Cost", &[format!("u:{hash}")], &app),
        )
        .await;
    let creds = basic("u", "slow on purpose");
    let start = Instant::now();
    let first = get_as(proxy.addr(), "cost.test", "/", Some(&creds)).await;
    let first_time = start.elapsed();
    assert_eq!(first.served_by(), "app");
    const N: u32 = 20;
    let start = Instant::now();
    for _ in 0..N {
        let r = get_as(proxy.addr(), "cost.test", "/", Some(&creds)).await;
        assert_eq!(r.served_by(), "app");
    }
    let cached_time = start.elapsed() / N;
    let start = Instant::now();
    for _ in 0..3 {
        let r = get_as(proxy.addr(), "cost.test", "/", Some(&basic("u", "wrong"))).await;
        assert_eq!(r.status, 401);
    }
    let wrong_time = start.elapsed() / 3;
    println!(
        "bcrypt cost 10 through the proxy: first request {first_time:?}, cached {cached_time:?}, wrong password {wrong_time:?}"
    );
    assert!(
        cached_time * 3 < first_time,
        "a verified header is not checked again: cached {cached_time:?}, first {first_time:?}"
    );
    assert!(
        cached_time * 3 < wrong_time,
        "failures are never cached: wrong {wrong_time:?}, cached {cached_time:?}"
    );
}

/// The `hipache` binary at debug log level, with an access log and debug
/// headers on every answer; its output is read back by the test.
struct LoggingProxy {
    child: std::process::Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl LoggingProxy {
    async fn start(redis: &RedisServer) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let port = free_port();
        let access_log = dir.path().join("access.log");
        let mut config = config_json(
            &redis.url(),
            json!({
                "accessLog": access_log.to_str().expect("utf-8 path"),
                "debug": true,
                "workers": 0,
            }),
        );
        config["http"]["port"] = json!(port);
        let config_path = dir.path().join("config.json");
        std::fs::write(&config_path, config.to_string()).expect("write config");
        let out = std::fs::File::create(dir.path().join("output.log")).expect("output file");
        let child = Command::new(binary_path())
            .arg("-c")
            .arg(&config_path)
            .env("HIPACHE_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("clone"))
            .stderr(out)
            .spawn()
            .expect("run hipache");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let proxy = LoggingProxy { child, addr, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ping = Req::get("__ping__", "/")
                .timeout(Duration::from_secs(1))
                .send(addr)
                .await;
            if ping.is_ok_and(|r| r.status == 200) {
                return proxy;
            }
            assert!(
                Instant::now() < deadline,
                "hipache did not answer on {addr}: {}",
                proxy.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }

    fn access_log(&self) -> String {
        self.read("access.log")
    }

    /// Its output and its access log.
    fn logs(&self) -> String {
        format!("{}\n{}", self.read("output.log"), self.access_log())
    }
}

impl Drop for LoggingProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_stay_out_of_logs_and_debug_headers() {
    let redis = RedisServer::start();
    let proxy = LoggingProxy::start(&redis).await;
    let app = Backend::start("app").await;
    let password = "Tr0ub4dor&3-unique";
    let hash = bcrypt::hash(password, 5).expect("bcrypt");
    // An entry the proxy refuses (cost too high) is logged, without its hash.
    let costly = "$2y$15$/rlgThVOdNXqElPtEnovSOw8T82fTyTkyFecDJZdzc191us3g1L6O";
    let users = [format!("alice:{hash}"), format!("greedy:{costly}")];
    redis
        .set_routes("secret.test", &basic_document("Secret", &users, &app))
        .await;
    let right = basic("alice", password);
    let wrong_password = "Wr0ng-but-also-secret";
    let wrong = basic("alice", wrong_password);
    let unknown = basic("nobody-at-all", password);
    let greedy = basic("greedy", "correct horse");
    let mut answers = Vec::new();
    for (authorization, status) in [
        (&right, 200),
        (&right, 200),
        (&wrong, 401),
        (&unknown, 401),
        (&greedy, 401),
    ] {
        let r = get_as(proxy.addr, "secret.test", "/", Some(authorization)).await;
        assert_eq!(r.status, status, "{}", r.served_by());
        answers.push(r);
    }
    assert!(
        answers[2].header("x-debug-error").is_some(),
        "debug headers are on: {:?}",
        answers[2].headers
    );
    // The access log is written as answers go: wait for its five lines.
    hipache_tests::wait::until("the access log lines", Duration::from_secs(10), || async {
        let lines = proxy.access_log().lines().count();
        match lines >= answers.len() {
            true => Ok(()),
            false => Err(format!("{lines} lines")),
        }
    })
    .await;
    let logs = proxy.logs();
    assert!(
        logs.contains("greedy") && logs.contains("work factor"),
        "the refused entry is logged: {logs}"
    );
    let secrets = [
        password,
        wrong_password,
        right.trim_start_matches("Basic "),
        wrong.trim_start_matches("Basic "),
        unknown.trim_start_matches("Basic "),
        &hash,
        costly,
        &hash[7..],
    ];
    for secret in secrets {
        assert!(
            !logs.contains(secret),
            "{secret:?} appears in the logs:\n{logs}"
        );
        for r in &answers {
            for (name, value) in &r.headers {
                let v = String::from_utf8_lossy(value.as_bytes());
                assert!(
                    !v.contains(secret),
                    "{secret:?} in the answer's {name}: {v}"
                );
            }
            assert!(!r.text().contains(secret), "{secret:?} in an answer's body");
        }
    }
    assert!(
        !logs.contains("nobody-at-all"),
        "the user of a refused request is not logged"
    );
}

/// How the authentication service answers.
#[derive(Clone, Debug)]
enum Mode {
    /// oauth2-proxy's `/oauth2/auth`: 202 for a session it knows, 403 for
    /// one it refuses, 401 otherwise.
    Contract,
    /// 202 with no header at all.
    Bare,
    /// Always this status.
    Status(u16),
    /// The contract, after this long.
    Slow(Duration),
}

/// A request the service received.
#[derive(Clone, Debug)]
struct Asked {
    method: Method,
    target: String,
    headers: HeaderMap,
}

impl Asked {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A small authentication service following oauth2-proxy's contract.
struct AuthService {
    addr: SocketAddr,
    /// TCP connections accepted.
    accepted: Arc<AtomicUsize>,
    mode: Arc<Mutex<Mode>>,
    asked: Arc<Mutex<Vec<Asked>>>,
    task: JoinHandle<()>,
}

impl AuthService {
    async fn start(mode: Mode) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let mode = Arc::new(Mutex::new(mode));
        let asked = Arc::new(Mutex::new(Vec::new()));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (m, a, n) = (mode.clone(), asked.clone(), accepted.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                n.fetch_add(1, Ordering::SeqCst);
                let (m, a) = (m.clone(), a.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let (m, a) = (m.clone(), a.clone());
                        async move {
                            let (parts, _) = req.into_parts();
                            a.lock().expect("lock").push(Asked {
                                method: parts.method.clone(),
                                target: parts.uri.to_string(),
                                headers: parts.headers.clone(),
                            });
                            let mode = m.lock().expect("lock").clone();
                            Ok::<_, std::convert::Infallible>(answer(mode, &parts.headers).await)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        AuthService {
            addr,
            accepted,
            mode,
            asked,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/oauth2/auth", self.addr)
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().expect("lock") = mode;
    }

    fn asked(&self) -> Vec<Asked> {
        self.asked.lock().expect("lock").clone()
    }

    fn last(&self) -> Asked {
        self.asked().pop().expect("the service was asked")
    }
}

impl Drop for AuthService {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(mode: Mode, headers: &HeaderMap) -> Response<Full<Bytes>> {
    let reply = |status: u16, headers: &[(&str, &str)], body: &'static str| {
        let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
        *r.status_mut() = StatusCode::from_u16(status).expect("status");
        for (n, v) in headers {
            r.headers_mut().append(
                http::HeaderName::from_bytes(n.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        r
    };
    match mode {
        Mode::Status(s) => reply(s, &[], "status"),
        Mode::Bare => reply(202, &[], ""),
        Mode::Slow(d) => {
            tokio::time::sleep(d).await;
            Box::pin(answer(Mode::Contract, headers)).await
        }
        Mode::Contract => {
            let cookies: Vec<&str> = headers
                .get_all("cookie")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            let session = cookies
                .iter()
                .flat_map(|c| c.split(';'))
                .find_map(|c| c.trim().strip_prefix("_oauth2_proxy="));
            match session {
                Some("alice-session") => reply(
                    202,
                    &[
                        ("x-auth-request-user", "alice"),
                        ("x-auth-request-email", "alice@example.com"),
                        ("x-auth-request-groups", "staff"),
                        ("x-auth-request-groups", "ops"),
                        ("x-not-listed", "kept out"),
                    ],
                    "",
                ),
                Some("blocked-session") => reply(403, &[], "Forbidden"),
                _ if headers.contains_key("authorization") => reply(
                    401,
                    &[("www-authenticate", "Bearer error=\"invalid_token\"")],
                    "Unauthorized",
                ),
                _ => reply(401, &[], "Unauthorized"),
            }
        }
    }
}

/// A document whose one rule asks `url`, with these extra settings.
fn forward_document(url: &str, extra: Value, backend: &Backend) -> Value {
    let mut fa = json!({
        "url": url,
        "responseHeaders": ["X-Auth-Request-User", "X-Auth-Request-Email", "X-Auth-Request-Groups"],
    });
    if let (Some(fa), Value::Object(extra)) = (fa.as_object_mut(), extra) {
        fa.extend(extra);
    }
    json!({
        "id": "fwd",
        "rules": [{"policies": {"forwardAuth": fa}, "backends": [{"url": backend.url()}]}],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_auth_follows_oauth2_proxy_contract() {
    let (redis, proxy) = setup(json!({})).await;
    let app = Backend::start("app").await;
    let auth = AuthService::start(Mode::Contract).await;
    redis
        .set_routes("fwd.test", &forward_document(&auth.url(), json!({}), &app))
        .await;

    // A valid session: through, with who it is.
    let r = send(
        proxy.addr(),
        "a signed-in request",
        Req::new("POST", "fwd.test", "/app/page?x=1&y=%20")
            .header("cookie", "theme=dark; _oauth2_proxy=alice-session")
            .header("x-auth-request-user", "admin")
            .header("x-auth-request-email", "forged@example.com")
            .header("x-secret-of-the-app", "not for the auth service")
            .header("x-forwarded-uri", "/forged")
            .body("the body stays with the backend"),
    )
    .await;
    assert_eq!(r.served_by(), "app");
    let upstream = app.last_request();
    assert_eq!(upstream.header("x-auth-request-user"), Some("alice"));
    assert_eq!(
        upstream.header("x-auth-request-email"),
        Some("alice@example.com")
    );
    assert_eq!(upstream.header("x-auth-request-groups"), Some("staff, ops"));
    assert_eq!(upstream.header("x-not-listed"), None);
    assert_eq!(
        upstream.body.as_deref(),
        Some(&b"the body stays with the backend"[..])
    );

    let asked = auth.last();
    assert_eq!(
        asked.method,
        Method::GET,
        "GET by default, whatever the request's method"
    );
    assert_eq!(asked.target, "/oauth2/auth");
    assert_eq!(asked.header("host"), Some(&*auth.addr.to_string()));
    assert_eq!(
        asked.header("x-original-url"),
        Some("http://fwd.test/app/page?x=1&y=%20")
    );
    assert_eq!(asked.header("x-original-method"), Some("POST"));
    assert_eq!(asked.header("x-forwarded-method"), Some("POST"));
    assert_eq!(asked.header("x-forwarded-proto"), Some("http"));
    assert_eq!(asked.header("x-forwarded-host"), Some("fwd.test"));
    assert_eq!(
        asked.header("x-forwarded-uri"),
        Some("/app/page?x=1&y=%20"),
        "the proxy's own, never the client's"
    );
    assert_eq!(asked.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(asked.header("x-real-ip"), Some("127.0.0.1"));
    assert_eq!(
        asked.header("cookie"),
        Some("theme=dark; _oauth2_proxy=alice-session")
    );
    assert_eq!(
        asked.header("x-secret-of-the-app"),
        None,
        "only the listed headers"
    );
    assert_eq!(asked.header("content-length"), None, "no body");

    // No session: the service's 401, and nothing reaches the backend.
    let before = app.request_count();
    let r = get_as(proxy.addr(), "fwd.test", "/app", None).await;
    assert_eq!(r.status, 401);
    let r = get_as(proxy.addr(), "fwd.test", "/app", Some("Bearer expired")).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer error=\"invalid_token\""),
        "the service's challenge is passed on"
    );
    assert_eq!(auth.last().header("authorization"), Some("Bearer expired"));
    // A session the service refuses: 403.
    let r = send(
        proxy.addr(),
        "a refused session",
        Req::get("fwd.test", "/app").header("cookie", "_oauth2_proxy=blocked-session"),
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(
        app.request_count(),
        before,
        "refused requests never reach the backend"
    );

    // A 2xx without the headers: the backend does not see them, and never
    // the client's values.
    auth.set(Mode::Bare);
    let r = send(
        proxy.addr(),
        "a forged identity",
        Req::get("fwd.test", "/").header("x-auth-request-user", "admin"),
    )
    .await;
    assert_eq!(r.served_by(), "app");
    assert_eq!(app.last_request().header("x-auth-request-user"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_auth_sends_401s_to_sign_in_with_the_original_url() {
    let (redis, proxy) = setup(json!({})).await;
    let app = Backend::start("app").await;
    let auth = AuthService::start(Mode::Contract).await;
    redis
        .set_routes(
            "signin.test",
            &forward_document(
                &auth.url(),
                json!({"signIn": "https://auth.example/oauth2/start"}),
                &app,
            ),
        )
        .await;
    let r = get_as(
        proxy.addr(),
        "signin.test",
        "/reports/q?year=2024&x=a%20b",
        None,
    )
    .await;
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("location"),
        Some("https://auth.example/oauth2/start?rd=http%3A%2F%2Fsignin.test%2Freports%2Fq%3Fyear%3D2024%26x%3Da%2520b")
    );
    // A 403 is a refusal, not a reason to sign in again.
    let r = send(
        proxy.addr(),
        "a refused session",
        Req::get("signin.test", "/").header("cookie", "_oauth2_proxy=blocked-session"),
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.header("location"), None);
    let r = send(
        proxy.addr(),
        "a signed-in request",
        Req::get("signin.test", "/").header("cookie", "_oauth2_proxy=alice-session"),
    )
    .await;
    assert_eq!(r.served_by(), "app");
    assert_eq!(app.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_auth_fails_closed() {
    let redis = RedisServer::start();
    let proxy = TestProxy::start_with_admin(&redis.url(), json!({})).await;
    let outcome = |s: &Scrape, o: &str| s.value("hipache_forward_auth_total", &[("outcome", o)]);
    let before = scrape(proxy.admin_addr()).await;
    let app = Backend::start("app").await;
    let auth = AuthService::start(Mode::Status(500)).await;
    let signed_in =
        |host: &str| Req::get(host, "/").header("cookie", "_oauth2_proxy=alice-session");
    let set =
        |host: &'static str, url: String, extra: Value| (host, forward_document(&url, extra, &app));

    // The service answers something it should not: 500.
    let (host, doc) = set("broken.test", auth.url(), json!({}));
    redis.set_routes(host, &doc).await;
    for status in [500, 302, 404, 503] {
        auth.set(Mode::Status(status));
        let r = send(proxy.addr(), "a broken service", signed_in("broken.test")).await;
        assert_eq!(r.status, 500, "the service answered {status}");
    }

    // Nothing listens: 503.
    let (host, doc) = set("down.test", refused_url() + "/oauth2/auth", json!({}));
    redis.set_routes(host, &doc).await;
    let r = send(
        proxy.addr(),
        "a service that is down",
        signed_in("down.test"),
    )
    .await;
    assert_eq!(r.status, 503);

    // Too slow: 503 once the policy's timeout has passed, not later.
    auth.set(Mode::Slow(Duration::from_secs(5)));
    let (host, doc) = set("slow.test", auth.url(), json!({"timeout": "300ms"}));
    redis.set_routes(host, &doc).await;
    let start = Instant::now();
    let r = send(proxy.addr(), "a slow service", signed_in("slow.test")).await;
    let took = start.elapsed();
    assert_eq!(r.status, 503);
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(3),
        "answered after {took:?}"
    );
    assert_eq!(app.request_count(), 0, "no request got through");

    // The service recovers: requests go through again.
    auth.set(Mode::Contract);
    let r = send(proxy.addr(), "a recovered service", signed_in("slow.test")).await;
    assert_eq!(r.served_by(), "app");

    // Counted as they happened: four errors, two unavailable, one allowed.
    let after = scrape(proxy.admin_addr()).await;
    for (o, n) in [
        ("error", 4.0),
        ("unavailable", 2.0),
        ("allowed", 1.0),
        ("denied", 0.0),
    ] {
        assert_eq!(outcome(&after, o) - outcome(&before, o), n, "outcome {o}");
    }
    drop(proxy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_auth_reuses_its_connections() {
    let (redis, proxy) = setup(json!({})).await;
    let app = Backend::start("app").await;
    let auth = AuthService::start(Mode::Contract).await;
    redis
        .set_routes(
            "reuse.test",
            &forward_document(&auth.url(), json!({"method": "HEAD"}), &app),
        )
        .await;
    for i in 0..20 {
        let r = send(
            proxy.addr(),
            "a signed-in request",
            Req::get("reuse.test", &format!("/{i}"))
                .header("cookie", "_oauth2_proxy=alice-session"),
        )
        .await;
        assert_eq!(r.served_by(), "app", "request {i}");
    }
    let asked = auth.asked();
    assert_eq!(asked.len(), 20);
    assert!(
        asked.iter().all(|a| a.method == Method::HEAD),
        "the policy's method"
    );
    let connections = auth.accepted.load(Ordering::SeqCst);
    assert!(
        connections <= 2,
        "20 subrequests on {connections} connections: they are pooled"
    );
    drop((redis, proxy));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_auth_behind_a_trusted_proxy_reports_the_clients_url() {
    let (redis, proxy) = setup(json!({"trustedProxies": ["127.0.0.1/32"]})).await;
    let app = Backend::start("app").await;
    let auth = AuthService::start(Mode::Contract).await;
    redis
        .set_routes(
            "edge.test",
            &forward_document(
                &auth.url(),
                json!({"signIn": "https://auth.example/oauth2/start?theme=dark"}),
                &app,
            ),
        )
        .await;
    // A load balancer in front ended TLS and says who the client is.
    let r = send(
        proxy.addr(),
        "a request through a trusted proxy",
        Req::get("edge.test", "/a?b=c")
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-for", "203.0.113.7"),
    )
    .await;
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("location"),
        Some("https://auth.example/oauth2/start?theme=dark&rd=https%3A%2F%2Fedge.test%2Fa%3Fb%3Dc")
    );
    let asked = auth.last();
    assert_eq!(
        asked.header("x-original-url"),
        Some("https://edge.test/a?b=c")
    );
    assert_eq!(asked.header("x-forwarded-proto"), Some("https"));
    assert_eq!(
        asked.header("x-forwarded-for"),
        Some("203.0.113.7, 127.0.0.1")
    );
    assert_eq!(asked.header("x-real-ip"), Some("203.0.113.7"));
}
