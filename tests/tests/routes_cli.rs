//! `hipache routes ...` end to end: the real binary against a real
//! redis-server, as an operator runs it. What each command prints, what it
//! leaves in Redis, its exit code, and the ownership it respects.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use hipache_tests::backend::Backend;
use hipache_tests::client::get;
use hipache_tests::proxy::{binary_path, TestProxy};
use hipache_tests::redis::RedisServer;
use hipache_tests::refused_addr;
use hipache_tests::wait::until;
use serde_json::{json, Value};

const DEADLINE: Duration = Duration::from_secs(10);

/// Runs `hipache --driver DRIVER routes ARGS...` (no config file: the
/// working directory is an empty temporary one).
fn routes(driver: &str, args: &[&str]) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(binary_path());
    cmd.current_dir(dir.path())
        .arg("--driver")
        .arg(driver)
        .arg("routes")
        .args(args)
        .stdin(Stdio::null());
    cmd.output().expect("run hipache routes")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts the exit code, showing both streams when it differs.
#[track_caller]
fn exits(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        stdout(o),
        stderr(o)
    );
}

fn json_of(o: &Output) -> Value {
    exits(o, 0);
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)))
}

async fn list(redis: &RedisServer, host: &str) -> Vec<String> {
    redis
        .query(&["LRANGE", &format!("frontend:{host}"), "0", "-1"])
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_add_remove_get_list_and_dead() {
    let redis = RedisServer::start();
    let d = redis.url();
    exits(
        &routes(
            &d,
            &[
                "set",
                "WWW.Shop.test",
                "shop",
                "http://10.0.0.1:8080",
                "http://10.0.0.2",
            ],
        ),
        0,
    );
    // The host is normalised as request hosts are.
    assert_eq!(
        list(&redis, "www.shop.test").await,
        ["shop", "http://10.0.0.1:8080", "http://10.0.0.2"]
    );
    exits(
        &routes(
            &d,
            &["add-backend", "www.shop.test", "/api http://10.0.0.3"],
        ),
        0,
    );
    let _: i64 = redis.query(&["SADD", "dead:www.shop.test", "1"]).await;
    let _: i64 = redis.query(&["EXPIRE", "dead:www.shop.test", "25"]).await;

    let got = json_of(&routes(&d, &["get", "www.shop.test", "--json"]));
    assert_eq!(got["identifier"], "shop");
    assert_eq!(
        got["backends"][1],
        json!({"position": 1, "backend": "http://10.0.0.2", "dead": true})
    );
    assert_eq!(got["backends"][2]["backend"], "/api http://10.0.0.3");
    assert!(got["dead"]["ttl_seconds"]
        .as_i64()
        .is_some_and(|t| t > 0 && t <= 25));

    let table = routes(&d, &["get", "www.shop.test"]);
    exits(&table, 0);
    assert!(
        stdout(&table)
            .lines()
            .any(|l| l.starts_with("1 ") && l.contains("http://10.0.0.2") && l.contains("dead (")),
        "{}",
        stdout(&table)
    );
    let dead = json_of(&routes(&d, &["dead", "www.shop.test", "--json"]));
    assert_eq!(dead["positions"], json!([1]));

    redis
        .rpush_frontend("other.test", "tenant", &["http://10.1.0.1"])
        .await;
    let all = json_of(&routes(&d, &["list", "--json"]));
    let hosts: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["host"].as_str().unwrap())
        .collect();
    assert_eq!(hosts, ["other.test", "www.shop.test"]);
    let matching = json_of(&routes(&d, &["list", "www.*", "--json"]));
    assert_eq!(matching.as_array().unwrap().len(), 1);
    let readable = stdout(&routes(&d, &["list"]));
    assert!(readable.starts_with("HOST"), "{readable}");
    assert!(
        readable.contains("www.shop.test") && readable.contains("shop"),
        "{readable}"
    );

    // Removing a backend shifts positions: the dead marks go with it.
    exits(
        &routes(&d, &["rm-backend", "www.shop.test", "http://10.0.0.2"]),
        0,
    );
    assert_eq!(
        list(&redis, "www.shop.test").await,
        ["shop", "http://10.0.0.1:8080", "/api http://10.0.0.3"]
    );
    assert!(redis.dead_members("www.shop.test").await.is_empty());
    exits(
        &routes(&d, &["rm-backend", "www.shop.test", "http://10.9.9.9"]),
        1,
    );

    exits(&routes(&d, &["rm", "www.shop.test"]), 0);
    assert!(list(&redis, "www.shop.test").await.is_empty());
    exits(&routes(&d, &["get", "www.shop.test"]), 1);
    exits(&routes(&d, &["rm", "www.shop.test"]), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_input_and_foreign_hosts_are_refused_and_nothing_written() {
    let redis = RedisServer::start();
    let d = redis.url();
    redis
        .rpush_frontend("k.test", "k8s:shop/web", &["http://10.0.0.1"])
        .await;
    redis
        .rpush_frontend("t.test", "tenant", &["http://10.0.0.2"])
        .await;

    let bad = routes(&d, &["set", "n.test", "app", "ftp://10.0.0.3"]);
    exits(&bad, 1);
    assert!(stderr(&bad).contains("ftp://10.0.0.3"), "{}", stderr(&bad));
    exits(
        &routes(&d, &["set", "bad host", "app", "http://10.0.0.3"]),
        1,
    );
    assert!(list(&redis, "n.test").await.is_empty());

    for args in [
        &["set", "k.test", "mine", "http://10.0.0.9"][..],
        &["add-backend", "k.test", "http://10.0.0.9"],
        &["rm-backend", "k.test", "http://10.0.0.1"],
        &["rm", "k.test"],
    ] {
        let o = routes(&d, args);
        exits(&o, 1);
        assert!(
            stderr(&o).contains("owned by the syncer (k8s:shop/web)"),
            "{args:?}: {}",
            stderr(&o)
        );
    }
    assert_eq!(
        list(&redis, "k.test").await,
        ["k8s:shop/web", "http://10.0.0.1"]
    );

    let other = routes(&d, &["set", "t.test", "mine", "http://10.0.0.9"]);
    exits(&other, 1);
    assert!(
        stderr(&other).contains("belongs to \"tenant\""),
        "{}",
        stderr(&other)
    );
    // The owner itself may replace its list; --force anyone's.
    exits(
        &routes(&d, &["set", "t.test", "tenant", "http://10.0.0.8"]),
        0,
    );
    exits(
        &routes(&d, &["set", "k.test", "mine", "http://10.0.0.9", "--force"]),
        0,
    );
    assert_eq!(list(&redis, "k.test").await, ["mine", "http://10.0.0.9"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolve_is_what_the_proxy_serves() {
    let redis = RedisServer::start();
    let d = redis.url();
    let (web, api) = (Backend::start("web").await, Backend::start("api").await);
    redis
        .rpush_frontend(
            "*.app.test",
            "app",
            &[web.url(), format!("/api {}", api.url())],
        )
        .await;
    let proxy = TestProxy::start(&d, json!({})).await;

    for (path, backend) in [("/api/users", &api), ("/", &web)] {
        let got = json_of(&routes(&d, &["resolve", "eu.app.test", path, "--json"]));
        assert_eq!(got["frontend"], "*.app.test");
        assert_eq!(got["lookup"], "wildcard");
        let backends = got["backends"].as_array().unwrap();
        assert_eq!(backends.len(), 1, "{got}");
        let element = backends[0]["backend"].as_str().unwrap();
        assert!(element.ends_with(&backend.url()), "{element}");
        // And the proxy sends that request there.
        let answer = get(proxy.addr(), "eu.app.test", path).await;
        assert_eq!(answer.text(), backend.name(), "{path}");
    }

    // A document: its rule, weights and dead marks.
    redis
        .set_routes(
            "shop.test",
            &json!({"id": "shop", "rules": [
                {"name": "checkout", "matches": [{"path": {"type": "PathPrefix", "value": "/pay"}}],
                 "backends": [{"url": web.url(), "weight": 3}, {"url": api.url(), "weight": 1}]}
            ]}),
        )
        .await;
    let _: i64 = redis.query(&["SADD", "dead:shop.test", "1"]).await;
    let got = json_of(&routes(&d, &["resolve", "shop.test", "/pay/now", "--json"]));
    assert_eq!(got["kind"], "document");
    assert!(
        got["served_by"].as_str().unwrap().contains("\"checkout\""),
        "{got}"
    );
    assert_eq!(got["backends"][0]["weight"], 3);
    assert_eq!(got["backends"][1]["dead"], true);

    let unknown = routes(&d, &["resolve", "nowhere.test"]);
    exits(&unknown, 1);
    assert!(
        stderr(&unknown).contains("no frontend"),
        "{}",
        stderr(&unknown)
    );
    let uncovered = routes(&d, &["resolve", "shop.test", "/elsewhere"]);
    exits(&uncovered, 1);
    assert!(stderr(&uncovered).contains("404"), "{}", stderr(&uncovered));
}

fn write(path: &Path, text: &str) {
    // Through a rename: a watcher never reads half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write routes file");
    std::fs::rename(&tmp, path).expect("rename routes file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_prints_the_difference_applies_it_and_respects_ownership() {
    let redis = RedisServer::start();
    let d = redis.url();
    redis
        .rpush_frontend("k.test", "k8s:ns/web", &["http://10.0.0.1"])
        .await;
    redis
        .rpush_frontend("old.test", "app", &["http://10.0.0.2"])
        .await;
    redis
        .rpush_frontend("a.test", "app", &["http://10.0.0.3"])
        .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("routes.yaml");
    write(
        &file,
        "frontends:\n  a.test: [app, \"http://10.0.0.30\"]\n  n.test: [app, \"http://10.0.0.4\"]\n  k.test: [app, \"http://10.0.0.5\"]\n\
         routes:\n  s.test:\n    id: app\n    rules:\n      - backends: [{ url: \"http://10.0.0.6:8080\" }]\n",
    );
    let f = file.to_str().unwrap();

    // Dry run: the difference, nothing written, 1 for the refused host.
    let dry = routes(&d, &["import", f]);
    exits(&dry, 1);
    let out = stdout(&dry);
    assert!(
        out.contains("~ a.test: list [app, http://10.0.0.3] -> [app, http://10.0.0.30]"),
        "{out}"
    );
    assert!(
        out.contains("+ n.test: list [app, http://10.0.0.4]"),
        "{out}"
    );
    assert!(out.contains("+ s.test: route document"), "{out}");
    assert!(out.contains("! k.test is owned by the syncer"), "{out}");
    assert_eq!(list(&redis, "a.test").await, ["app", "http://10.0.0.3"]);
    assert!(list(&redis, "n.test").await.is_empty());

    let applied = routes(&d, &["import", f, "--apply"]);
    exits(&applied, 1);
    assert_eq!(list(&redis, "a.test").await, ["app", "http://10.0.0.30"]);
    assert_eq!(list(&redis, "n.test").await, ["app", "http://10.0.0.4"]);
    let doc: String = redis.query(&["GET", "routes:s.test"]).await;
    assert_eq!(serde_json::from_str::<Value>(&doc).unwrap()["id"], "app");
    assert_eq!(
        list(&redis, "k.test").await,
        ["k8s:ns/web", "http://10.0.0.1"]
    );
    // Hosts absent from the file are left alone without --prune.
    assert_eq!(list(&redis, "old.test").await, ["app", "http://10.0.0.2"]);

    // Applied again: nothing to do but the refusal.
    let again = stdout(&routes(&d, &["import", f, "--apply"]));
    assert!(again.contains("0 change(s) applied, 1 refused"), "{again}");

    // --prune deletes the host the file does not name, not the syncer's.
    let pruned = routes(&d, &["import", f, "--apply", "--prune"]);
    assert!(
        stdout(&pruned).contains("- old.test"),
        "{}",
        stdout(&pruned)
    );
    assert!(list(&redis, "old.test").await.is_empty());
    assert_eq!(
        list(&redis, "k.test").await,
        ["k8s:ns/web", "http://10.0.0.1"]
    );

    // A file that does not validate writes nothing, and says where.
    write(
        &file,
        "frontends:\n  a.test: [app, \"nope\"]\n  z.test: [app, \"http://10.0.0.7\"]\n",
    );
    let bad = routes(&d, &["import", f, "--apply"]);
    exits(&bad, 1);
    assert!(
        stderr(&bad).contains("frontends.a.test"),
        "{}",
        stderr(&bad)
    );
    assert!(list(&redis, "z.test").await.is_empty());

    // --force takes the syncer's host too.
    write(&file, "frontends:\n  k.test: [app, \"http://10.0.0.5\"]\n");
    exits(&routes(&d, &["import", f, "--apply", "--force"]), 0);
    assert_eq!(list(&redis, "k.test").await, ["app", "http://10.0.0.5"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_then_import_reproduces_redis() {
    let (from, to) = (RedisServer::start(), RedisServer::start());
    from.rpush_frontend(
        "a.test",
        "app",
        &["http://10.0.0.1", "/api http://10.0.0.2"],
    )
    .await;
    from.rpush_frontend("*.w.test", "wild", &["http://10.0.0.3"])
        .await;
    from.set_routes(
        "s.test",
        &json!({"id": "shop", "rules": [{"backends": [{"url": "http://10.0.0.4:8080"}]}]}),
    )
    .await;
    let exported = routes(&from.url(), &["export"]);
    exits(&exported, 0);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("export.yaml");
    std::fs::write(&file, &exported.stdout).unwrap();
    exits(
        &routes(&to.url(), &["import", file.to_str().unwrap(), "--apply"]),
        0,
    );
    let again = routes(&to.url(), &["export", "--format", "json"]);
    let json_from = routes(&from.url(), &["export", "--format", "json"]);
    assert_eq!(json_of(&again), json_of(&json_from));
    assert_eq!(list(&to, "*.w.test").await, ["wild", "http://10.0.0.3"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_watch_keeps_redis_equal_to_the_file() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("routes.yaml");
    write(
        &file,
        "frontends:\n  w1.test: [watched, \"http://10.0.0.1\"]\n  w2.test: [watched, \"http://10.0.0.2\"]\n",
    );
    let mut child = Command::new(binary_path())
        .current_dir(dir.path())
        .args(["--driver", &redis.url(), "routes", "import", "--watch"])
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start routes import --watch");
    let is = |host: &'static str, want: &'static [&'static str]| {
        let redis = &redis;
        async move {
            until(&format!("{host} == {want:?}"), DEADLINE, || async {
                let now = list(redis, host).await;
                match now == want {
                    true => Ok(()),
                    false => Err(format!("{now:?}")),
                }
            })
            .await
        }
    };
    is("w1.test", &["watched", "http://10.0.0.1"]).await;
    is("w2.test", &["watched", "http://10.0.0.2"]).await;

    // A change, and a host removed from the file.
    write(
        &file,
        "frontends:\n  w1.test: [watched, \"http://10.0.0.11\"]\n",
    );
    is("w1.test", &["watched", "http://10.0.0.11"]).await;
    is("w2.test", &[]).await;

    // A broken file changes nothing; the next good one applies.
    write(&file, "frontends: [broken");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        list(&redis, "w1.test").await,
        ["watched", "http://10.0.0.11"]
    );
    write(
        &file,
        "frontends:\n  w1.test: [watched, \"http://10.0.0.12\"]\n",
    );
    is("w1.test", &["watched", "http://10.0.0.12"]).await;

    // SIGTERM stops it cleanly.
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let stopped = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the watcher") {
            break status;
        }
        assert!(
            stopped.elapsed() < DEADLINE,
            "the watcher did not exit on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_acl_user_and_an_unreachable_redis() {
    let redis = RedisServer::start();
    let _: String = redis
        .query(&[
            "ACL",
            "SETUSER",
            "ops",
            "on",
            ">s3cret",
            "~tenant1:*",
            "+@all",
        ])
        .await;
    let driver = format!("redis://ops:s3cret@127.0.0.1:{}#tenant1:", redis.port());
    exits(
        &routes(&driver, &["set", "a.test", "app", "http://10.0.0.1"]),
        0,
    );
    let written: Vec<String> = redis
        .query(&["LRANGE", "tenant1:frontend:a.test", "0", "-1"])
        .await;
    assert_eq!(written, ["app", "http://10.0.0.1"]);
    let listed = json_of(&routes(&driver, &["list", "--json"]));
    assert_eq!(listed[0]["host"], "a.test");

    let wrong = format!("redis://ops:wrong@127.0.0.1:{}#tenant1:", redis.port());
    let denied = routes(&wrong, &["list"]);
    exits(&denied, 2);
    assert!(
        !stderr(&denied).contains("wrong"),
        "password shown: {}",
        stderr(&denied)
    );

    let down = routes(&format!("redis://{}", refused_addr()), &["list"]);
    exits(&down, 2);
    assert!(
        stderr(&down).contains("cannot reach Redis"),
        "{}",
        stderr(&down)
    );
}
