//! The store against a real redis-server: diff, ownership, conflicts,
//! resync removing leftovers, redis-cli keys left alone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/redis.rs"]
mod redis_server;

use std::collections::BTreeMap;

use hipache_schema::Keys;
use hipache_syncer::desired::{Desired, TlsEntry};
use hipache_syncer::store::{self, Store};
use redis_server::RedisServer;

fn desired(frontends: &[(&str, &[&str])]) -> Desired {
    Desired {
        frontends: frontends
            .iter()
            .map(|(h, l)| ((*h).to_owned(), l.iter().map(|s| (*s).to_owned()).collect()))
            .collect(),
        ..Default::default()
    }
}

async fn new_store(r: &RedisServer, prefix: &str) -> Store {
    Store::new(
        store::Redis::new(&hipache_schema::RedisUrl::parse(&r.url()).unwrap())
            .connect()
            .await
            .unwrap(),
        Keys::new(prefix),
        None,
    )
}

#[tokio::test]
async fn writes_diffs_and_deletes_owned_frontends() {
    let r = RedisServer::start();
    let mut s = new_store(&r, "").await;
    let d1 = desired(&[
        ("a.com", &["k8s:ns/a", "http://10.0.0.1:80"]),
        (
            "b.com",
            &["k8s:ns/b", "http://10.0.0.2:80", "/api http://10.0.0.3:80"],
        ),
    ]);
    let rep = s.resync(&d1).await.unwrap();
    assert_eq!(rep.written, 2);
    assert_eq!(
        r.list("frontend:a.com").await,
        ["k8s:ns/a", "http://10.0.0.1:80"]
    );
    // Nothing changed: nothing written.
    assert_eq!(s.apply(&d1).await.unwrap().written, 0);
    // One host changes, one goes.
    let d2 = desired(&[("a.com", &["k8s:ns/a", "http://10.0.0.9:80"])]);
    let rep = s.apply(&d2).await.unwrap();
    assert_eq!((rep.written, rep.deleted), (1, 1));
    assert_eq!(
        r.list("frontend:a.com").await,
        ["k8s:ns/a", "http://10.0.0.9:80"]
    );
    let exists: i64 = r.cli(&["EXISTS", "frontend:b.com"]).await;
    assert_eq!(exists, 0);
}

#[tokio::test]
async fn redis_cli_keys_are_never_written_or_deleted() {
    let r = RedisServer::start();
    let _: i64 = r
        .cli(&[
            "RPUSH",
            "frontend:tenant.com",
            "mywebsite",
            "http://192.168.0.42:80",
        ])
        .await;
    let _: () = r.cli(&["SET", "frontend:string.com", "not a list"]).await;
    let mut s = new_store(&r, "").await;
    let d = desired(&[
        ("tenant.com", &["k8s:ns/a", "http://10.0.0.1:80"]),
        ("string.com", &["k8s:ns/a", "http://10.0.0.1:80"]),
        ("mine.com", &["k8s:ns/a", "http://10.0.0.1:80"]),
    ]);
    let rep = s.resync(&d).await.unwrap();
    assert_eq!(rep.written, 1);
    let foreign: Vec<&str> = rep.foreign.iter().map(|(h, _)| h.as_str()).collect();
    assert_eq!(foreign, ["string.com", "tenant.com"]);
    assert_eq!(rep.foreign[1].1, "k8s:ns/a");
    assert_eq!(
        r.list("frontend:tenant.com").await,
        ["mywebsite", "http://192.168.0.42:80"]
    );
    let v: String = r.cli(&["GET", "frontend:string.com"]).await;
    assert_eq!(v, "not a list");
    // Dropping everything deletes only what we own.
    s.resync(&Desired::default()).await.unwrap();
    assert_eq!(r.list("frontend:tenant.com").await.len(), 2);
    assert!(r.list("frontend:mine.com").await.is_empty());
}

#[tokio::test]
async fn resync_repairs_drift_and_removes_leftovers() {
    let r = RedisServer::start();
    // Leftovers of a previous run (another process, deleted Ingresses).
    let _: i64 = r
        .cli(&[
            "RPUSH",
            "frontend:old.com",
            "k8s:ns/gone",
            "http://10.9.9.9:80",
        ])
        .await;
    let _: i64 = r
        .cli(&[
            "RPUSH",
            "frontend:keep.com",
            "k8s:ns/keep",
            "http://10.0.0.1:80",
        ])
        .await;
    let _: () = r
        .cli(&[
            "HSET",
            "tls:old.com",
            "cert",
            "C",
            "key",
            "K",
            "owner",
            "k8s:ns/gone",
        ])
        .await;
    let _: () = r
        .cli(&["HSET", "tls:hand.com", "cert", "C", "key", "K"])
        .await;
    let mut s = new_store(&r, "").await;
    let d = desired(&[("keep.com", &["k8s:ns/keep", "http://10.0.0.1:80"])]);
    let rep = s.resync(&d).await.unwrap();
    assert_eq!((rep.written, rep.deleted), (0, 2));
    assert!(r.list("frontend:old.com").await.is_empty());
    let old_tls: i64 = r.cli(&["EXISTS", "tls:old.com"]).await;
    let hand_tls: i64 = r.cli(&["EXISTS", "tls:hand.com"]).await;
    assert_eq!((old_tls, hand_tls), (0, 1));
    // Drift: someone edits an owned key by hand; apply() trusts its memory,
    // resync() repairs.
    let _: i64 = r
        .cli(&["RPUSH", "frontend:keep.com", "http://6.6.6.6:80"])
        .await;
    assert_eq!(s.apply(&d).await.unwrap().written, 0);
    assert_eq!(s.resync(&d).await.unwrap().written, 1);
    assert_eq!(
        r.list("frontend:keep.com").await,
        ["k8s:ns/keep", "http://10.0.0.1:80"]
    );
}

#[tokio::test]
async fn a_redis_cli_write_during_our_transaction_wins() {
    // The WATCH makes our EXEC abort when the key changed after our read;
    // the retry then sees the new, foreign owner and leaves it alone. We
    // simulate the race by writing between resync (which owns the key) and
    // apply: apply's read sees the foreign owner.
    let r = RedisServer::start();
    let mut s = new_store(&r, "").await;
    s.resync(&desired(&[(
        "race.com",
        &["k8s:ns/a", "http://10.0.0.1:80"],
    )]))
    .await
    .unwrap();
    let _: i64 = r.cli(&["DEL", "frontend:race.com"]).await;
    let _: i64 = r
        .cli(&["RPUSH", "frontend:race.com", "tenant", "http://1.1.1.1:80"])
        .await;
    let rep = s
        .apply(&desired(&[(
            "race.com",
            &["k8s:ns/a", "http://10.0.0.2:80"],
        )]))
        .await
        .unwrap();
    assert_eq!(rep.foreign.len(), 1);
    assert_eq!(
        r.list("frontend:race.com").await,
        ["tenant", "http://1.1.1.1:80"]
    );
    // And a delete of a key that became foreign leaves it too.
    s.apply(&Desired::default()).await.unwrap();
    assert_eq!(
        r.list("frontend:race.com").await,
        ["tenant", "http://1.1.1.1:80"]
    );
}

#[tokio::test]
async fn prefix_dead_sets_and_namespace_scope() {
    let r = RedisServer::start();
    let con = store::Redis::new(&hipache_schema::RedisUrl::parse(&r.url()).unwrap())
        .connect()
        .await
        .unwrap();
    let mut s = Store::new(con, Keys::new("t1"), Some("team"));
    let _: i64 = r
        .cli(&[
            "RPUSH",
            "t1frontend:other.com",
            "k8s:otherns/x",
            "http://10.0.0.7:80",
        ])
        .await;
    let _: i64 = r
        .cli(&[
            "RPUSH",
            "frontend:a.com",
            "k8s:team/x",
            "http://10.0.0.7:80",
        ])
        .await;
    let d = desired(&[(
        "a.com",
        &["k8s:team/a", "http://10.0.0.1:80", "http://10.0.0.2:80"],
    )]);
    s.resync(&d).await.unwrap();
    assert_eq!(r.list("t1frontend:a.com").await.len(), 3);
    // Unprefixed key and another namespace's key: untouched.
    assert_eq!(r.list("frontend:a.com").await.len(), 2);
    assert_eq!(r.list("t1frontend:other.com").await.len(), 2);
    // A change of backends clears the dead set (positions moved).
    let _: i64 = r.cli(&["SADD", "t1dead:a.com", "1"]).await;
    s.apply(&desired(&[(
        "a.com",
        &["k8s:team/a", "http://10.0.0.2:80"],
    )]))
    .await
    .unwrap();
    let dead: i64 = r.cli(&["EXISTS", "t1dead:a.com"]).await;
    assert_eq!(dead, 0);
}

#[tokio::test]
async fn tls_entries_written_published_and_removed() {
    let r = RedisServer::start();
    let mut sub = r.client().get_async_pubsub().await.unwrap();
    sub.subscribe("tls").await.unwrap();
    let mut s = new_store(&r, "").await;
    let mut d = Desired::default();
    d.tls.insert(
        "a.com".into(),
        TlsEntry {
            owner: "k8s:ns/a".into(),
            cert: "CERT".into(),
            key: "KEY".into(),
        },
    );
    d.tls.insert(
        "hand.com".into(),
        TlsEntry {
            owner: "k8s:ns/a".into(),
            cert: "CERT".into(),
            key: "KEY".into(),
        },
    );
    let _: () = r
        .cli(&[
            "HSET",
            "tls:hand.com",
            "cert",
            "HANDCERT",
            "key",
            "HANDKEY",
            "owner",
            "ops",
        ])
        .await;
    let rep = s.resync(&d).await.unwrap();
    assert_eq!(rep.foreign_tls.len(), 1);
    let h: BTreeMap<String, String> = r.cli(&["HGETALL", "tls:a.com"]).await;
    assert_eq!(h["cert"], "CERT");
    assert_eq!(h["owner"], "k8s:ns/a");
    let hand: BTreeMap<String, String> = r.cli(&["HGETALL", "tls:hand.com"]).await;
    assert_eq!(hand["cert"], "HANDCERT");
    use futures_util::StreamExt;
    let mut msgs = sub.on_message();
    let m = tokio::time::timeout(std::time::Duration::from_secs(5), msgs.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.get_payload::<String>().unwrap(), "a.com");
    drop(msgs);
    s.apply(&Desired::default()).await.unwrap();
    let exists: i64 = r.cli(&["EXISTS", "tls:a.com"]).await;
    assert_eq!(exists, 0);
    let mut msgs = sub.on_message();
    let m = tokio::time::timeout(std::time::Duration::from_secs(5), msgs.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.get_payload::<String>().unwrap(), "a.com");
}

#[tokio::test]
async fn survives_a_redis_restart() {
    let mut r = RedisServer::start();
    let mut s = new_store(&r, "").await;
    let d = desired(&[("a.com", &["k8s:ns/a", "http://10.0.0.1:80"])]);
    s.resync(&d).await.unwrap();
    r.restart();
    // The restarted Redis is empty; the connection manager reconnects and
    // a resync rewrites everything.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match s.resync(&d).await {
            Ok(rep) => {
                assert_eq!(rep.written, 1);
                break;
            }
            Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await
            }
            Err(e) => panic!("no reconnect: {e}"),
        }
    }
    assert_eq!(r.list("frontend:a.com").await.len(), 2);
}

#[tokio::test]
async fn watch_aborts_our_write_when_redis_cli_writes_in_between() {
    let r = RedisServer::start();
    let mut s = new_store(&r, "").await;
    s.resync(&desired(&[(
        "race.com",
        &["k8s:ns/a", "http://10.0.0.1:80"],
    )]))
    .await
    .unwrap();
    // Between our read (owned by k8s:) and our EXEC, a tenant takes the key
    // over with redis-cli, once.
    let client = r.client();
    let mut fired = false;
    s.set_before_exec(Some(Box::new(move |key: &str| {
        if !fired && key == "frontend:race.com" {
            fired = true;
            let mut c = client.get_connection().unwrap();
            let _: () = redis::pipe()
                .del(key)
                .rpush(key, &["tenant", "http://1.1.1.1:80"])
                .query(&mut c)
                .unwrap();
        }
    })));
    let rep = s
        .apply(&desired(&[(
            "race.com",
            &["k8s:ns/a", "http://10.0.0.2:80"],
        )]))
        .await
        .unwrap();
    // EXEC aborted, the retry saw the new owner: left alone, reported.
    assert_eq!(rep.written, 0);
    assert_eq!(rep.foreign.len(), 1);
    assert_eq!(
        r.list("frontend:race.com").await,
        ["tenant", "http://1.1.1.1:80"]
    );
}
