//! Session affinity (docs/policies.md) end to end: a cookie keeps a client
//! on its backend until that backend is marked dead or leaves the rule,
//! and consistent hashing keeps a key on one backend, moving only the keys
//! of a backend that leaves.

use std::collections::HashMap;

use hipache_tests::backend::Backend;
use hipache_tests::client::{Req, Resp};
use hipache_tests::proxy::TestProxy;
use hipache_tests::setup;
use serde_json::{json, Value};

async fn send(proxy: &TestProxy, r: Req) -> Resp {
    r.send(proxy.addr())
        .await
        .expect("request through the proxy")
}

/// `name=value` of the response's affinity cookie, if it set one.
fn set_cookie(resp: &Resp, name: &str) -> Option<String> {
    let v = resp.header("set-cookie")?;
    let pair = v.split(';').next()?.trim();
    pair.starts_with(&format!("{name}="))
        .then(|| pair.to_owned())
}

fn document(backends: &[&Backend], affinity: Value) -> Value {
    let urls: Vec<Value> = backends.iter().map(|b| json!({"url": b.url()})).collect();
    json!({"id": "sticky", "rules": [{"backends": urls, "policies": {"affinity": affinity}}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cookie_keeps_the_client_on_its_backend_until_it_is_dead_or_gone() {
    let (redis, proxy) = setup(json!({})).await;
    let b = [
        Backend::start("b0").await,
        Backend::start("b1").await,
        Backend::start("b2").await,
    ];
    let all: Vec<&Backend> = b.iter().collect();
    let affinity =
        json!({"cookie": {"name": "srv", "ttl": "1h", "sameSite": "Lax", "secure": true}});
    redis
        .set_routes("sticky.test", &document(&all, affinity.clone()))
        .await;

    let first = send(&proxy, Req::get("sticky.test", "/")).await;
    assert_eq!(first.status, 200);
    let cookie = set_cookie(&first, "srv").expect("the first answer pins the client");
    let header = first.header("set-cookie").expect("set-cookie");
    for attr in [
        "Path=/",
        "Max-Age=3600",
        "SameSite=Lax",
        "Secure",
        "HttpOnly",
    ] {
        assert!(header.contains(attr), "{header} lacks {attr}");
    }
    let home = first.served_by();
    for i in 0..30 {
        let r = send(
            &proxy,
            Req::get("sticky.test", "/").header("cookie", &format!("a=1; {cookie}")),
        )
        .await;
        assert_eq!(r.served_by(), home, "request {i} left its backend");
        assert!(
            set_cookie(&r, "srv").is_none(),
            "request {i}: the cookie is already right"
        );
    }

    // Its backend marked dead: the session moves, and the answer says where.
    let position = b
        .iter()
        .position(|x| x.name() == home)
        .expect("home backend");
    let _: i64 = redis
        .query(&["SADD", "dead:sticky.test", &position.to_string()])
        .await;
    let moved = send(
        &proxy,
        Req::get("sticky.test", "/").header("cookie", &cookie),
    )
    .await;
    assert_ne!(moved.served_by(), home, "a dead backend keeps no session");
    let new_cookie = set_cookie(&moved, "srv").expect("the client is re-pinned");
    let new_home = moved.served_by();
    let r = send(
        &proxy,
        Req::get("sticky.test", "/").header("cookie", &new_cookie),
    )
    .await;
    assert_eq!(r.served_by(), new_home);
    let _: i64 = redis.query(&["DEL", "dead:sticky.test"]).await;

    // Its backend taken out of the rule: the same.
    let rest: Vec<&Backend> = b.iter().filter(|x| x.name() != new_home).collect();
    redis
        .set_routes("sticky.test", &document(&rest, affinity))
        .await;
    let r = send(
        &proxy,
        Req::get("sticky.test", "/").header("cookie", &new_cookie),
    )
    .await;
    assert_ne!(
        r.served_by(),
        new_home,
        "a backend that left keeps no session"
    );
    assert!(set_cookie(&r, "srv").is_some());

    // A forged cookie naming nothing in the rule is just a new client.
    let r = send(
        &proxy,
        Req::get("sticky.test", "/").header("cookie", "srv=0000000000000000"),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(set_cookie(&r, "srv").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashing_a_header_is_consistent_and_moves_only_a_departed_backends_keys() {
    let (redis, proxy) = setup(json!({})).await;
    let b = [
        Backend::start("h0").await,
        Backend::start("h1").await,
        Backend::start("h2").await,
        Backend::start("h3").await,
    ];
    let all: Vec<&Backend> = b.iter().collect();
    let affinity = json!({"header": "x-user"});
    redis
        .set_routes("hash.test", &document(&all, affinity.clone()))
        .await;

    let users: Vec<String> = (0..80).map(|i| format!("user-{i}")).collect();
    let mut placed: HashMap<String, String> = HashMap::new();
    for u in &users {
        let r = send(&proxy, Req::get("hash.test", "/").header("x-user", u)).await;
        placed.insert(u.clone(), r.served_by());
        assert!(r.header("set-cookie").is_none(), "hashing sets no cookie");
    }
    let used: std::collections::HashSet<&String> = placed.values().collect();
    assert_eq!(used.len(), 4, "80 keys spread over the 4 backends");
    for u in users.iter().take(20) {
        let r = send(&proxy, Req::get("hash.test", "/").header("x-user", u)).await;
        assert_eq!(r.served_by(), placed[u], "{u} moved without a change");
    }

    let gone = "h2";
    let rest: Vec<&Backend> = b.iter().filter(|x| x.name() != gone).collect();
    redis
        .set_routes("hash.test", &document(&rest, affinity))
        .await;
    for u in &users {
        let r = send(&proxy, Req::get("hash.test", "/").header("x-user", u)).await;
        if placed[u] == gone {
            assert_ne!(r.served_by(), gone);
        } else {
            assert_eq!(
                r.served_by(),
                placed[u],
                "{u} moved though its backend stayed"
            );
        }
    }
}
