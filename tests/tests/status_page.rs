//! The status page (`server.statusPage`, docs/operations.md#status-page)
//! as a person sees it: rendered by a real headless Chromium against an
//! in-process proxy on a real `redis-server` with real backends; its JSON
//! endpoints read as the page's script reads them. Screenshots are kept
//! under `$CARGO_TARGET_DIR/test-artifacts/status-page/`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hipache_tests::backend::Backend;
use hipache_tests::browser::{dump_dom, element_text, has_element, screenshot};
use hipache_tests::client::{Req, Resp};
use hipache_tests::metrics::admin_get;
use hipache_tests::proxy::{config_with_admin, ProxyProcess, TestProxy};
use hipache_tests::redis::RedisServer;
use hipache_tests::routes::document;
use hipache_tests::wait::{until, within};
use serde_json::{json, Value};

/// Where the screenshots go.
const SUITE: &str = "status-page";
/// Virtual time the page's script gets in Chromium: the first poll fires at
/// 2 s, the second at 4 s.
const TWO_POLLS_MS: u64 = 4_500;
/// Bound on the conditions of these tests.
const DEADLINE: Duration = Duration::from_secs(10);
/// What the issue promises for a search over 100,000 frontends.
const SEARCH_WITHIN: Duration = Duration::from_secs(1);

/// A redis-server and a proxy on it with the status page on, plus
/// `server_extra`.
async fn setup(server_extra: Value) -> (RedisServer, TestProxy) {
    let redis = RedisServer::start();
    let mut extra = json!({"statusPage": true});
    if let (Some(e), Value::Object(more)) = (extra.as_object_mut(), server_extra) {
        e.extend(more);
    }
    let proxy = TestProxy::start_with_admin(&redis.url(), extra).await;
    (redis, proxy)
}

fn page_url(admin: SocketAddr, path_and_query: &str) -> String {
    format!("http://{admin}{path_and_query}")
}

/// A JSON endpoint of the page, as its script reads it.
async fn api(admin: SocketAddr, path_and_query: &str) -> Value {
    let resp = admin_get(admin, path_and_query).await;
    assert_eq!(resp.status, 200, "{path_and_query}: {}", resp.text());
    serde_json::from_str(&resp.text())
        .unwrap_or_else(|e| panic!("{path_and_query} is not JSON ({e}): {}", resp.text()))
}

/// The backend of a frontend answer in the JSON, by URL.
fn backend<'a>(frontend: &'a Value, url: &str) -> &'a Value {
    frontend["backends"]
        .as_array()
        .and_then(|bs| bs.iter().find(|b| b["url"] == url))
        .unwrap_or_else(|| panic!("no backend {url} in {frontend}"))
}

async fn traffic(proxy: &TestProxy, host: &str, n: usize) {
    for _ in 0..n {
        let resp = Req::get(host, "/")
            .timeout(DEADLINE)
            .send(proxy.addr())
            .await
            .expect("a request through the proxy");
        assert_eq!(resp.status, 200, "{}", resp.text());
    }
}

#[tokio::test]
async fn off_by_default() {
    let redis = RedisServer::start();
    let proxy = TestProxy::start_with_admin(&redis.url(), json!({})).await;
    for path in ["/status", "/status/api/overview", "/status/api/search?q=a"] {
        let resp = admin_get(proxy.admin_addr(), path).await;
        assert_eq!(resp.status, 404, "{path}: {}", resp.text());
    }
}

#[tokio::test]
async fn never_on_the_traffic_listener() {
    let (redis, proxy) = setup(json!({})).await;
    let app = Backend::start("app").await;
    redis
        .rpush_frontend("app.example", "app", &[app.url()])
        .await;
    // The admin listener serves it...
    let resp = admin_get(proxy.admin_addr(), "/status").await;
    assert_eq!(resp.status, 200);
    // ...a traffic listener routes `/status` like any path: to the host's
    // backend, or to no one.
    let resp = Req::get("app.example", "/status")
        .send(proxy.addr())
        .await
        .expect("request");
    assert_eq!(resp.status, 200);
    assert_eq!(app.last_request().uri, "/status");
    for host in [proxy.addr().to_string(), "unknown.example".to_owned()] {
        for path in ["/status", "/status/api/overview"] {
            let resp = Req::get(&host, path)
                .send(proxy.addr())
                .await
                .expect("request");
            assert!(
                resp.status == 400 || resp.status == 404,
                "{host}{path}: {}",
                resp.status
            );
            assert!(!resp.text().contains("hipache status"), "{}", resp.text());
            assert!(!resp.text().contains("\"routes\""), "{}", resp.text());
        }
    }
}

#[tokio::test]
async fn a_token_is_required_when_set() {
    let (_redis, proxy) = setup(json!({"statusToken": "t0k3n-x"})).await;
    let admin = proxy.admin_addr();
    let send = |path: &str, header: Option<(&str, &str)>| {
        let mut r = Req::get(&admin.to_string(), path).timeout(DEADLINE);
        if let Some((k, v)) = header {
            r = r.header(k, v);
        }
        async move { r.send(admin).await.expect("admin request") }
    };
    let denied: Vec<Resp> = vec![
        send("/status", None).await,
        send("/status/api/overview", None).await,
        send("/status?token=wrong", None).await,
        send("/status", Some(("authorization", "Bearer wrong"))).await,
        send("/status", Some(("cookie", "hipache_status_token=wrong"))).await,
    ];
    for resp in denied {
        assert_eq!(resp.status, 401);
        assert_eq!(resp.text(), "unauthorized\n");
        assert_eq!(resp.header("set-cookie"), None);
    }
    let bearer = send("/status", Some(("authorization", "Bearer t0k3n-x"))).await;
    assert_eq!(bearer.status, 200);
    assert!(bearer.text().contains("hipache status"));
    let by_query = send("/status?token=t0k3n-x", None).await;
    assert_eq!(by_query.status, 200);
    let cookie = by_query
        .header("set-cookie")
        .expect("a cookie for the script");
    assert!(
        cookie.starts_with("hipache_status_token=t0k3n-x;"),
        "{cookie}"
    );
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let by_cookie = send(
        "/status/api/overview",
        Some(("cookie", "hipache_status_token=t0k3n-x")),
    )
    .await;
    assert_eq!(by_cookie.status, 200);

    // In a browser: the `?token=` visit sets the cookie, and the page's
    // script polls with it (a poll rewrites "updated"; a refused one would
    // say "status page unreachable").
    let dom = dump_dom(&page_url(admin, "/status?token=t0k3n-x"), TWO_POLLS_MS).await;
    let state = element_text(&dom, &["id=\"redis-state\""]);
    assert_eq!(state.as_deref(), Some("Redis connected"), "{dom}");
    let updated = element_text(&dom, &["id=\"updated\""]).unwrap_or_default();
    assert!(updated.starts_with("updated "), "no poll: {updated:?}");
}

#[tokio::test]
async fn a_search_shows_the_host_row() {
    let (redis, proxy) = setup(json!({})).await;
    let app = Backend::start("app").await;
    redis
        .rpush_frontend("shop.example.com", "shop-id", &[app.url()])
        .await;
    redis
        .rpush_frontend("blog.example.com", "blog-id", &[app.url()])
        .await;
    // A hostile identifier: shown as text, never as markup.
    redis
        .rpush_frontend(
            "evil.shop.example.com",
            "<img src=x onerror=alert(1)>",
            &[app.url()],
        )
        .await;
    let admin = proxy.admin_addr();
    let url = page_url(admin, "/status?q=SHOP");
    let dom = dump_dom(&url, 0).await;
    assert!(
        has_element(
            &dom,
            &["class=\"host-row\"", "data-host=\"shop.example.com\""],
            "shop-id"
        ),
        "{dom}"
    );
    assert!(
        has_element(
            &dom,
            &["data-host=\"evil.shop.example.com\""],
            "&lt;img src=x"
        ),
        "{dom}"
    );
    assert!(
        !dom.contains("<img src=\"x\""),
        "markup from Redis was rendered: {dom}"
    );
    assert!(!dom.contains("blog.example.com"), "{dom}");
    screenshot(SUITE, "search", &url, 0).await;

    // Odd characters in a query or a host name: an answer, never a panic.
    for q in ["*", "[a-", "\\", "%00", "é", "<script>"] {
        let path = format!("/status/api/search?q={}", percent(q));
        let found = api(admin, &path).await;
        assert!(found["hosts"].is_array(), "{path}: {found}");
        let path = format!("/status?host={}", percent(q));
        assert_eq!(admin_get(admin, &path).await.status, 200, "{path}");
    }
    let star = api(admin, "/status/api/search?q=*").await;
    assert_eq!(
        star["hosts"],
        json!([]),
        "a glob character is matched literally"
    );
}

/// `text` percent-encoded for a query string.
fn percent(text: &str) -> String {
    text.bytes().map(|b| format!("%{b:02X}")).collect()
}

#[tokio::test]
async fn a_dead_backend_is_shown_dead_with_its_ttl() {
    let (redis, proxy) = setup(json!({})).await;
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    redis
        .rpush_frontend("dead.example", "dead-id", &[a.url(), b.url()])
        .await;
    let _: () = redis.query(&["SADD", "dead:dead.example", "1"]).await;
    let _: () = redis.query(&["EXPIRE", "dead:dead.example", "25"]).await;
    let admin = proxy.admin_addr();
    let url = page_url(admin, "/status?host=dead.example");
    let dom = dump_dom(&url, 0).await;
    let dead_row = element_text(&dom, &[&format!("data-url=\"{}\"", b.url())])
        .unwrap_or_else(|| panic!("no row for {}: {dom}", b.url()));
    assert!(
        dead_row.contains("dead (") && dead_row.contains("s left"),
        "{dead_row}"
    );
    let ttl: f64 = dead_row
        .split("dead (")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a TTL in {dead_row}"));
    assert!((1.0..=25.0).contains(&ttl), "{ttl}");
    let live_row = element_text(&dom, &[&format!("data-url=\"{}\"", a.url())]).expect("row");
    assert!(live_row.contains("live"), "{live_row}");
    assert!(
        has_element(&dom, &["id=\"dead-summary\""], "1 backend(s) marked dead"),
        "{dom}"
    );
    screenshot(SUITE, "dead-backend", &url, 0).await;

    let f = api(admin, "/status/api/frontend?host=dead.example").await;
    assert_eq!(backend(&f, &b.url())["dead"], true);
    assert_eq!(backend(&f, &a.url())["dead"], false);

    // Dead marks name positions: one URL at two positions, one of them
    // dead, stays so after the page's script refreshed the rows.
    redis
        .rpush_frontend("twice.example", "twice-id", &[a.url(), b.url(), b.url()])
        .await;
    let _: () = redis.query(&["SADD", "dead:twice.example", "1"]).await;
    let _: () = redis.query(&["EXPIRE", "dead:twice.example", "25"]).await;
    let dom = dump_dom(&page_url(admin, "/status?host=twice.example"), TWO_POLLS_MS).await;
    let updated = element_text(&dom, &["id=\"updated\""]).unwrap_or_default();
    assert!(updated.starts_with("updated "), "no poll: {updated:?}");
    let state = |position: &str| element_text(&dom, &[&format!("data-position=\"{position}\"")]);
    assert!(state("1").is_some_and(|r| r.contains("dead (")), "{dom}");
    assert!(state("2").is_some_and(|r| r.contains("live")), "{dom}");
}

#[tokio::test]
async fn the_request_rate_moves_after_traffic() {
    let (redis, proxy) = setup(json!({})).await;
    let app = Backend::start("app").await;
    redis
        .rpush_frontend("rate.example", "rate-id", &[app.url()])
        .await;
    let admin = proxy.admin_addr();
    let path = "/status/api/frontend?host=rate.example";
    let before = api(admin, path).await;
    assert_eq!(backend(&before, &app.url())["stats"], Value::Null);
    traffic(&proxy, "rate.example", 20).await;
    let after = api(admin, path).await;
    let stats = &backend(&after, &app.url())["stats"];
    assert_eq!(stats["requests"], 20, "{stats}");
    assert_eq!(stats["failures"], 0, "{stats}");
    assert_eq!(stats["in_flight"], 0, "{stats}");
    assert!(stats["p50"].as_f64().is_some_and(|v| v > 0.0), "{stats}");
    assert!(stats["p99"].as_f64().is_some_and(|v| v > 0.0), "{stats}");

    // In the browser, with traffic flowing while the script polls: its rate
    // cell (the difference between two polls) is no longer a dash.
    let flowing = tokio::spawn({
        let addr = proxy.addr();
        async move {
            loop {
                let _ = Req::get("rate.example", "/").send(addr).await;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    });
    let url = page_url(admin, "/status?host=rate.example");
    let dom = dump_dom(&url, TWO_POLLS_MS).await;
    let shot = screenshot(SUITE, "rate", &url, TWO_POLLS_MS).await;
    flowing.abort();
    let row = format!("data-url=\"{}\"", app.url());
    let rate = element_text(&dom, &[&row])
        .and_then(|_| cell(&dom, &row, "rate"))
        .unwrap_or_else(|| panic!("no rate cell: {dom}"));
    let rate: f64 = rate
        .parse()
        .unwrap_or_else(|_| panic!("the rate is a number after two polls, got {rate:?}: {dom}"));
    assert!(rate > 0.0, "rate {rate}: {dom}");
    let requests: u64 = cell(&dom, &row, "requests")
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("a request count: {dom}"));
    assert!(requests > 20, "{requests}");
    assert!(shot.exists());
}

/// The text of the cell of class `class` in the row whose tag holds `row`.
fn cell(dom: &str, row: &str, class: &str) -> Option<String> {
    let at = dom.find(row)?;
    let rest = &dom[at..];
    let rest = &rest[..rest.find("</tr>")?];
    element_text(rest, &[&format!("class=\"{class}\"")])
}

#[tokio::test]
async fn a_search_over_100000_frontends_answers_within_a_second() {
    let (redis, proxy) = setup(json!({})).await;
    let mut conn = redis.conn().await;
    for chunk in 0..10 {
        let mut pipe = ::redis::pipe();
        for i in chunk * 10_000..(chunk + 1) * 10_000 {
            pipe.cmd("RPUSH")
                .arg(format!("frontend:host-{i}.example"))
                .arg(format!("id-{i}"))
                .arg("http://127.0.0.1:1")
                .ignore();
        }
        let () = within("10,000 RPUSH", DEADLINE, pipe.query_async(&mut conn))
            .await
            .expect("pipelined RPUSH");
    }
    let count: i64 = redis.query(&["DBSIZE"]).await;
    assert_eq!(count, 100_000);
    let admin = proxy.admin_addr();

    // One host, somewhere in the keyspace: the whole of it is scanned
    // (about 50 ms alone; the scan stops at its 300 ms budget, saying so,
    // when the machine is busy with the other tests' browsers: then it is
    // asked again). Every answer comes within a second.
    let mut answers = Vec::new();
    let one = loop {
        let started = Instant::now();
        let one = api(admin, "/status/api/search?q=host-99999.").await;
        let took = started.elapsed();
        assert!(took < SEARCH_WITHIN, "the search took {took:?}: {one}");
        eprintln!("search of one host among 100,000: {took:?} ({one})");
        if one["complete"] == true {
            break one;
        }
        answers.push(one);
        assert!(
            answers.len() < 5,
            "no complete scan in 5 tries: {answers:?}"
        );
    };
    assert_eq!(
        one["hosts"],
        json!([{"host": "host-99999.example", "identifier": "id-99999"}]),
        "{one}"
    );

    // Many matches: the first 50, said to be partial.
    let started = Instant::now();
    let many = api(admin, "/status/api/search?q=host-1").await;
    assert!(started.elapsed() < SEARCH_WITHIN, "{:?}", started.elapsed());
    assert_eq!(many["hosts"].as_array().map(Vec::len), Some(50), "{many}");
    assert_eq!(many["complete"], false);

    // The page itself, over HTTP and in Chromium: a search that finds its
    // 50 hosts in the first calls of the scan, so that the time is the
    // page's, not the budget's.
    let started = Instant::now();
    let page = admin_get(admin, "/status?q=host-7").await;
    let took = started.elapsed();
    assert!(took < SEARCH_WITHIN, "the page took {took:?}");
    assert_eq!(page.text().matches("class=host-row").count(), 50);
    let url = page_url(admin, "/status?q=host-42");
    let started = Instant::now();
    let dom = dump_dom(&url, 0).await;
    eprintln!(
        "Chromium loaded and rendered the search page in {:?}",
        started.elapsed()
    );
    assert_eq!(dom.matches("class=\"host-row\"").count(), 50, "{dom}");
    let first = element_text(&dom, &["class=\"host-row\""]).unwrap_or_default();
    assert!(
        first.starts_with("host-42") && first.contains("id-42"),
        "{first}"
    );
    assert!(
        has_element(&dom, &["id=\"search-summary\""], "more match"),
        "{dom}"
    );
    screenshot(SUITE, "search-100000", &url, 0).await;
}

#[tokio::test]
async fn a_route_document_is_rendered_as_rules() {
    let (redis, proxy) = setup(json!({})).await;
    let (api_b, web) = (Backend::start("api").await, Backend::start("web").await);
    let doc = document(
        "doc-id",
        json!([
            {
                "name": "api-rule",
                "matches": [{"path": {"type": "PathPrefix", "value": "/api"},
                             "headers": [{"name": "x-tier", "value": "gold"}]}],
                "filters": [{"type": "RequestHeaderModifier",
                             "set": [{"name": "x-from", "value": "status"}]}],
                "backends": [{"url": api_b.url(), "weight": 3}, {"url": web.url(), "weight": 1}]
            },
            {"name": "root", "backends": [{"url": web.url()}]}
        ]),
    );
    redis.set_routes("doc.example", &doc).await;
    let url = page_url(proxy.admin_addr(), "/status?host=doc.example");
    let dom = dump_dom(&url, 0).await;
    let rules = element_text(&dom, &["id=\"rules\""]).unwrap_or_else(|| panic!("no rules: {dom}"));
    for shown in [
        "api-rule",
        "path prefix /api",
        "header x-tier = gold",
        "request header set x-from: status",
        &format!("#0 {} weight 3", api_b.url()),
        &format!("#1 {} weight 1", web.url()),
        "root",
    ] {
        assert!(rules.contains(shown), "{shown:?} not in {rules:?}");
    }
    assert!(has_element(&dom, &["id=\"identifier\""], "doc-id"), "{dom}");
    screenshot(SUITE, "route-document", &url, 0).await;
}

#[tokio::test]
async fn a_certificate_is_shown_with_its_expiry() {
    let redis = RedisServer::start();
    let certs = tempfile::tempdir().expect("temporary directory");
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params =
        rcgen::CertificateParams::new(vec!["status.example".to_owned()]).expect("params");
    params.not_after = rcgen::date_time_ymd(2040, 1, 1);
    let cert = params.self_signed(&key).expect("certificate");
    let (cert_path, key_path) = (certs.path().join("c.pem"), certs.path().join("k.pem"));
    std::fs::write(&cert_path, cert.pem()).expect("write certificate");
    std::fs::write(&key_path, key.serialize_pem()).expect("write key");
    let mut config = config_with_admin(&redis.url(), json!({"statusPage": true}));
    config["https"] = json!({"bind": ["127.0.0.1"], "port": 0, "cert": cert_path, "key": key_path});
    let proxy = TestProxy::start_with(config).await;
    let admin = proxy.admin_addr();
    let overview = api(admin, "/status/api/overview").await;
    let certs_shown = overview["certificates"].as_array().expect("certificates");
    let c = certs_shown
        .iter()
        .find(|c| c["not_after"] == 2_208_988_800_i64)
        .unwrap_or_else(|| panic!("the certificate expiring 2040-01-01: {overview}"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let days = (2_208_988_800 - now).div_euclid(86_400);
    assert_eq!(c["days_left"], days, "{c}");
    let url = page_url(admin, "/status");
    let dom = dump_dom(&url, 0).await;
    let table = element_text(&dom, &["id=\"certificates\""]).unwrap_or_else(|| panic!("{dom}"));
    assert!(table.contains("2040-01-01T00:00:00Z"), "{table}");
    assert!(table.contains(&days.to_string()), "{table}");
    screenshot(SUITE, "certificates", &url, 0).await;
}

#[tokio::test]
async fn redis_down_the_page_says_so_and_still_renders() {
    let (mut redis, proxy) = setup(json!({})).await;
    let admin = proxy.admin_addr();
    assert_eq!(
        api(admin, "/status/api/overview").await["routes"]["connected"],
        true
    );
    redis.stop();
    until("the page to see Redis gone", DEADLINE, || async {
        let o = api(admin, "/status/api/overview").await;
        match o["routes"]["connected"] == false {
            true => Ok(()),
            false => Err(o.to_string()),
        }
    })
    .await;
    let url = page_url(admin, "/status?q=any&host=any.example");
    let dom = dump_dom(&url, 0).await;
    assert!(
        has_element(&dom, &["id=\"redis-state\""], "Redis unreachable"),
        "{dom}"
    );
    assert!(
        has_element(&dom, &["id=\"search-error\""], "unreachable"),
        "{dom}"
    );
    assert!(
        has_element(&dom, &["id=\"frontend-error\""], "unreachable"),
        "{dom}"
    );
    screenshot(SUITE, "redis-down", &url, 0).await;
}

#[tokio::test]
async fn with_a_routes_file_the_table_in_memory_is_searched() {
    let app = Backend::start("app").await;
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("routes.yaml");
    let yaml = format!(
        "frontends:\n  files.example.com: [files-id, \"{}\"]\n  other.example.com: [other-id, \"{}\"]\n",
        app.url(),
        app.url()
    );
    std::fs::write(&path, yaml).expect("write the routes file");
    let proxy = TestProxy::start_with_admin(
        &format!("file://{}", path.display()),
        json!({"statusPage": true}),
    )
    .await;
    let admin = proxy.admin_addr();
    let found = api(admin, "/status/api/search?q=files").await;
    assert_eq!(
        found["hosts"],
        json!([{"host": "files.example.com", "identifier": "files-id"}]),
        "{found}"
    );
    traffic(&proxy, "files.example.com", 3).await;
    let f = api(admin, "/status/api/frontend?host=files.example.com").await;
    assert_eq!(backend(&f, &app.url())["stats"]["requests"], 3, "{f}");
    let dom = dump_dom(&page_url(admin, "/status?q=files"), 0).await;
    assert!(
        has_element(&dom, &["data-host=\"files.example.com\""], "files-id"),
        "{dom}"
    );
    assert!(
        has_element(&dom, &["id=\"redis-state\""], "routes file loaded"),
        "{dom}"
    );
}

#[tokio::test]
async fn a_master_forwards_the_page_to_a_worker() {
    let redis = RedisServer::start();
    let app = Backend::start("app").await;
    redis
        .rpush_frontend("workers.example", "workers-id", &[app.url()])
        .await;
    let proxy = ProxyProcess::start_workers(
        &redis.url(),
        2,
        json!({"statusPage": true, "statusToken": "w-token"}),
        Value::Null,
    )
    .await;
    let admin = proxy.admin_addr();
    let page = until("a ready worker answering the page", DEADLINE, || async {
        let resp = Req::get(&admin.to_string(), "/status?q=workers&token=w-token")
            .timeout(DEADLINE)
            .send(admin)
            .await
            .map_err(|e| e.to_string())?;
        match resp.status.as_u16() {
            200 => Ok(resp),
            s => Err(format!("{s}: {}", resp.text())),
        }
    })
    .await;
    assert!(
        page.text().contains("answered by worker "),
        "{}",
        page.text()
    );
    assert!(
        page.text().contains("data-host=\"workers.example\""),
        "{}",
        page.text()
    );
    let cookie = page.header("set-cookie").unwrap_or_default();
    assert!(
        cookie.starts_with("hipache_status_token=w-token;"),
        "{cookie}"
    );
    let denied = admin_get(admin, "/status").await;
    assert_eq!(
        denied.status,
        401,
        "the worker checks the token: {}",
        denied.text()
    );
    assert!(page
        .header("content-security-policy")
        .is_some_and(|c| c.contains("default-src 'none'")));
    let dom = dump_dom(&page_url(admin, "/status?q=workers&token=w-token"), 0).await;
    let by = element_text(&dom, &["id=\"answered-by\""]).unwrap_or_default();
    assert!(by.starts_with("answered by worker "), "{by}");
}
