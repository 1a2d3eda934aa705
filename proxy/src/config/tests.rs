//! Unit tests of the configuration layer: both layouts, YAML, defaults,
//! drivers, overrides, error collection, censoring.

#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::cli::Args;

/// Hipache's `config/config.json` (0.3 layout, with `server.https`).
const HIPACHE_03: &str = r#"{
    "server": {
        "accessLog": "/var/log/nginx/access.log",
        "port": 80,
        "workers": 10,
        "maxSockets": 100,
        "deadBackendTTL": 30,
        "tcpTimeout": 30,
        "retryOnError": 3,
        "deadBackendOn500": true,
        "httpKeepAlive": false,
        "https": {
            "port": 443,
            "key": "/etc/ssl/ssl.key",
            "cert": "/etc/ssl/ssl.crt"
        }
    },
    "redisHost": "127.0.0.1",
    "redisPort": 6379
}"#;

/// Hipache's README example for 0.3 (address lists, redis password).
const HIPACHE_03_README: &str = r#"{
    "server": {
        "accessLog": "/var/log/hipache_access.log",
        "port": 80,
        "workers": 5,
        "maxSockets": 100,
        "deadBackendTTL": 30,
        "address": ["127.0.0.1"],
        "address6": ["::1"],
        "https": {
            "port": 443,
            "key": "/etc/ssl/ssl.key",
            "cert": "/etc/ssl/ssl.crt"
        }
    },
    "redisHost": "127.0.0.1",
    "redisPort": 6379,
    "redisDatabase": 0,
    "redisPassword": "password"
}"#;

/// Hipache's `config/config_test.json` (the old `redis` object, lruCache).
const HIPACHE_TEST: &str = r#"{
    "server": {
        "debug": true,
        "accessLog": "/tmp/proxy2_test_access.log",
        "port": 1080,
        "workers": 2,
        "maxSockets": 100,
        "deadBackendTTL": 30,
        "tcpTimeout": 5,
        "retryOnError": 3,
        "httpKeepAlive": false,
        "lruCache": {
            "size": 5,
            "ttl": 5
        }
    },
    "redis": {
        "port": 6379,
        "host": "127.0.0.1"
    }
}"#;

/// Hipache 0.4's README defaults (its `"passphrase": undefined`, not JSON,
/// dropped).
const HIPACHE_04: &str = r#"{
    "server": {
        "debug": false,
        "workers": 10,
        "maxSockets": 100,
        "tcpTimeout": 30,
        "deadBackendTTL": 30,
        "retryOnError": 3,
        "accessLog": "/var/log/hipache/access.log",
        "httpKeepAlive": false,
        "deadBackendOn500": true,
        "staticDir": null
    },
    "http": {
        "port": 80,
        "bind": ["127.0.0.1"]
    },
    "https": {
        "bind": [],
        "port": 443,
        "ca": [],
        "secureProtocol": "SSLv23_method",
        "secureOptions": 50331648,
        "key": "/etc/ssl/ssl.key",
        "cert": "/etc/ssl/ssl.crt",
        "ciphers": "DH+ECDSA+AESGCM EECDH+aRSA+AESGCM EECDH+ECDSA+SHA384 EECDH+ECDSA+SHA256 EECDH+a RSA+SHA384 EECDH+aRSA+SHA256 EECDH+aRSA+RC4 EECDH EDH+aRSA RC4 !aNULL !eNULL !LOW !3DES !MD5 !EXP !PSK !SRP !DSS !RC4",
        "honorCipherOrder": true
    },
    "driver": "redis:",
    "user": "www-data",
    "group": "www-data"
}"#;

fn sa(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

fn ok(text: &str) -> Config {
    match parse(text, Format::Auto) {
        Ok(c) => c,
        Err(e) => panic!("unexpected errors:\n{e}"),
    }
}

fn errs(text: &str) -> ConfigErrors {
    match parse(text, Format::Auto) {
        Ok(c) => panic!("expected errors, got {c:?}"),
        Err(e) => e,
    }
}

fn redis(c: &Config) -> (&RedisUrl, &RedisUrl) {
    match &c.driver {
        Driver::Redis { read, write } => (read, write),
        other => panic!("not redis: {other:?}"),
    }
}

#[test]
fn empty_object_is_the_defaults() {
    let c = ok("{}");
    assert_eq!(c, Config::default());
}

#[test]
fn every_default() {
    let c = Config::default();
    assert_eq!(c.http, vec![sa("127.0.0.1:80")]);
    assert!(c.https.is_empty());
    assert_eq!((c.user.as_deref(), c.group.as_deref()), (None, None));
    assert_eq!(c.workers, 0);
    assert_eq!(c.max_sockets, 100);
    assert_eq!(c.dead_backend_ttl, Duration::from_secs(30));
    assert_eq!(c.tcp_timeout, Some(Duration::from_secs(30)));
    assert_eq!(c.connect_timeout, Some(Duration::from_secs(5)));
    assert_eq!(c.retry_on_error, 3);
    assert!(c.dead_backend_on_500);
    assert!(c.http_keep_alive);
    assert!(!c.debug);
    assert_eq!(c.lru_cache, None);
    assert_eq!(c.route_cache, RouteCacheMode::Strict);
    assert_eq!(c.static_dir, None);
    assert_eq!(
        c.access_log,
        Some(AccessLogTarget::File("/var/log/hipache/access.log".into()))
    );
    let (read, write) = redis(&c);
    assert_eq!(read, write);
    assert_eq!(read.censored(), "redis://127.0.0.1:6379/0");
    assert!(c.trusted_proxies.is_empty());
    assert_eq!(c.max_body_size, None);
    assert_eq!(c.max_header_size, 64 * 1024);
    assert_eq!(c.max_headers, 100);
    assert_eq!(c.admin, Some(sa("127.0.0.1:10264")));
    assert_eq!(c.drain_timeout, Duration::from_secs(30));
    assert_eq!(c.memory_limit, None);
}

#[test]
fn hipache_03_config() {
    let c = ok(HIPACHE_03);
    // 0.3: server.address defaults to 0.0.0.0, server.address6 to ::1.
    assert_eq!(c.http, vec![sa("0.0.0.0:80"), sa("[::1]:80")]);
    assert_eq!(c.https.len(), 2);
    assert_eq!(c.https[0].address, sa("0.0.0.0:443"));
    assert_eq!(c.https[1].address, sa("[::1]:443"));
    assert_eq!(c.https[0].key, PathBuf::from("/etc/ssl/ssl.key"));
    assert_eq!(c.https[0].cert, PathBuf::from("/etc/ssl/ssl.crt"));
    assert!(c.https[0].ca.is_empty());
    assert_eq!(c.workers, 10);
    assert!(!c.http_keep_alive);
    assert_eq!(
        c.access_log,
        Some(AccessLogTarget::File("/var/log/nginx/access.log".into()))
    );
    let (read, write) = redis(&c);
    assert_eq!(read.censored(), "redis://127.0.0.1:6379/0");
    assert_eq!(read, write);
}

#[test]
fn hipache_03_readme() {
    let (c, warnings) = parse_with_warnings(HIPACHE_03_README, Format::Json).unwrap();
    assert_eq!(c.http, vec![sa("127.0.0.1:80"), sa("[::1]:80")]);
    assert_eq!(c.https.len(), 2);
    let (read, write) = redis(&c);
    assert_eq!(read.password.as_deref(), Some("password"));
    assert_eq!(write.password.as_deref(), Some("password"));
    assert_eq!(read.censored(), "redis://:***@127.0.0.1:6379/0");
    assert!(warnings.iter().any(|w| w.contains("deprecated")));
}

#[test]
fn hipache_test_config() {
    let c = ok(HIPACHE_TEST);
    assert!(c.debug);
    assert_eq!(c.http, vec![sa("0.0.0.0:1080"), sa("[::1]:1080")]);
    assert_eq!(
        c.lru_cache,
        Some(LruCache {
            size: 5,
            ttl: Duration::from_secs(5)
        })
    );
    assert_eq!(c.tcp_timeout, Some(Duration::from_secs(5)));
    assert_eq!(redis(&c).0.censored(), "redis://127.0.0.1:6379/0");
}

#[test]
fn hipache_04_config() {
    let (c, warnings) = parse_with_warnings(HIPACHE_04, Format::Json).unwrap();
    assert_eq!(c.http, vec![sa("127.0.0.1:80")]);
    // https.bind is empty: no HTTPS listener, as in Hipache 0.4.
    assert!(c.https.is_empty());
    assert_eq!(c.user.as_deref(), Some("www-data"));
    assert_eq!(c.group.as_deref(), Some("www-data"));
    assert_eq!(c.static_dir, None);
    assert_eq!(redis(&c).0.censored(), "redis://127.0.0.1:6379/0");
    assert!(warnings.iter().any(|w| w.contains("https.ciphers")));
    assert!(warnings.iter().any(|w| w.contains("no HTTPS listener")));
}

#[test]
fn layout_04_binds() {
    let c = ok(r#"{
        "http": {"port": "8080", "bind": ["0.0.0.0", "::", {"address": "[::1]", "port": 9000}]},
        "https": {
            "port": 8443,
            "key": "/k.pem",
            "cert": "/c.pem",
            "ca": "/ca.pem",
            "bind": [
                "10.0.0.1",
                {"address": "10.0.0.2", "port": 9443, "key": "/k2.pem", "cert": "/c2.pem", "ca": ["/a.pem", "/b.pem"]}
            ]
        },
        "user": 33,
        "group": ""
    }"#);
    assert_eq!(
        c.http,
        vec![sa("0.0.0.0:8080"), sa("[::]:8080"), sa("[::1]:9000")]
    );
    assert_eq!(
        c.https,
        vec![
            HttpsListener {
                address: sa("10.0.0.1:8443"),
                key: "/k.pem".into(),
                cert: "/c.pem".into(),
                ca: vec!["/ca.pem".into()],
            },
            HttpsListener {
                address: sa("10.0.0.2:9443"),
                key: "/k2.pem".into(),
                cert: "/c2.pem".into(),
                ca: vec!["/a.pem".into(), "/b.pem".into()],
            },
        ]
    );
    assert_eq!(c.user.as_deref(), Some("33"));
    assert_eq!(c.group, None);
}

#[test]
fn single_bind_value_is_a_list_of_one() {
    let c = ok(r#"{"http": {"bind": "0.0.0.0", "port": 0}}"#);
    assert_eq!(c.http, vec![sa("0.0.0.0:0")]);
}

#[test]
fn empty_address_lists_mean_no_listener() {
    let c = ok(r#"{"server": {"port": 8080, "address": ["0.0.0.0"], "address6": []}}"#);
    assert_eq!(c.http, vec![sa("0.0.0.0:8080")]);
}

#[test]
fn yaml_both_layouts() {
    let c = parse(
        "server:\n  port: 8080\n  address: [\"0.0.0.0\"]\n  address6: []\n  workers: 2\ndriver: 'redis://:pw@redis:6379/1#p:'\n",
        Format::Yaml,
    )
    .unwrap();
    assert_eq!(c.http, vec![sa("0.0.0.0:8080")]);
    assert_eq!(c.workers, 2);
    assert_eq!(redis(&c).0.censored(), "redis://:***@redis:6379/1#p:");

    let yaml = "
http:
  port: 80
  bind:
    - 0.0.0.0
    - '::'
server:
  tcpTimeout: 0
  memoryLimit: 512MiB
  maxBodySize: 10MB
  trustedProxies: [10.0.0.0/8, 192.168.1.1, 'fd00::/8']
  routeCache: tracking
  adminAddress: '[::]:10264'
  accessLog: '-'
";
    // Auto-detection: not JSON, so YAML.
    let c = parse(yaml, Format::Auto).unwrap();
    assert_eq!(c.http, vec![sa("0.0.0.0:80"), sa("[::]:80")]);
    assert_eq!(c.tcp_timeout, None);
    assert_eq!(c.memory_limit, Some(512 * 1024 * 1024));
    assert_eq!(c.max_body_size, Some(10_000_000));
    assert_eq!(c.trusted_proxies.len(), 3);
    assert_eq!(c.trusted_proxies[1].to_string(), "192.168.1.1/32");
    assert_eq!(c.route_cache, RouteCacheMode::Tracking);
    assert_eq!(c.admin, Some(sa("[::]:10264")));
    assert_eq!(c.access_log, Some(AccessLogTarget::Stdout));
}

#[test]
fn format_from_path() {
    assert_eq!(Format::from_path(Path::new("a.yaml")), Format::Yaml);
    assert_eq!(Format::from_path(Path::new("a.YML")), Format::Yaml);
    assert_eq!(Format::from_path(Path::new("a.json")), Format::Auto);
    assert_eq!(Format::from_path(Path::new("config")), Format::Auto);
}

#[test]
fn our_keys() {
    let c = ok(r#"{"server": {
        "connectTimeout": 2.5,
        "maxHeaderSize": "32KiB",
        "maxHeaders": 50,
        "adminAddress": null,
        "drainTimeout": 10,
        "memoryLimit": 1073741824,
        "accessLog": null,
        "staticDir": "/srv/errors",
        "lruCache": true
    }}"#);
    assert_eq!(c.connect_timeout, Some(Duration::from_millis(2500)));
    assert_eq!(c.max_header_size, 32 * 1024);
    assert_eq!(c.max_headers, 50);
    assert_eq!(c.admin, None);
    assert_eq!(c.drain_timeout, Duration::from_secs(10));
    assert_eq!(c.memory_limit, Some(1 << 30));
    assert_eq!(c.access_log, None);
    assert_eq!(c.static_dir, Some(PathBuf::from("/srv/errors")));
    assert_eq!(c.lru_cache.map(|l| l.size), Some(5));
    assert_eq!(ok(r#"{"server": {"adminAddress": false}}"#).admin, None);
    assert_eq!(
        ok(r#"{"server": {"connectTimeout": 0}}"#).connect_timeout,
        None
    );
}

#[test]
fn security_keys() {
    let d = Config::default();
    assert_eq!(d.upgrade_protocols, vec!["websocket".to_owned()]);
    assert!(!d.forwarded_header);
    assert_eq!(
        d.debug_from,
        DebugFrom::Networks(vec![
            "127.0.0.0/8".parse().expect("net"),
            "::1/128".parse().expect("net")
        ])
    );
    let c = ok(r#"{"server": {
        "upgradeProtocols": ["WebSocket", "foo/2"],
        "forwardedHeader": true,
        "debugFrom": ["10.0.0.0/8", "192.0.2.1"]
    }}"#);
    assert_eq!(c.upgrade_protocols, vec!["websocket", "foo/2"]);
    assert!(c.forwarded_header);
    assert_eq!(
        c.debug_from,
        DebugFrom::Networks(vec![
            "10.0.0.0/8".parse().expect("net"),
            "192.0.2.1/32".parse().expect("net")
        ])
    );
    assert_eq!(
        ok(r#"{"server": {"debugFrom": "any"}}"#).debug_from,
        DebugFrom::Any
    );
    assert_eq!(
        ok(r#"{"server": {"debugFrom": "trusted"}}"#).debug_from,
        d.debug_from
    );
    let e =
        errs(r#"{"server": {"upgradeProtocols": ["h2c", "bad token"], "debugFrom": "everyone"}}"#);
    assert!(e.has_key("server.upgradeProtocols[0]"), "{e}");
    assert!(e.has_key("server.upgradeProtocols[1]"), "{e}");
    assert!(e.has_key("server.debugFrom"), "{e}");
    assert!(e.to_string().contains("h2c is never relayed"), "{e}");
}

#[test]
fn a_password_of_the_wrong_type_is_not_repeated_in_the_error() {
    let e = errs(
        r#"{"redisHost": "h", "redisPassword": 123456789,
            "redisMasterHost": "m", "redisMasterPassword": ["s3cret-value"]}"#,
    );
    let text = e.to_string();
    assert!(e.has_key("redisPassword"), "{text}");
    assert!(e.has_key("redisMasterPassword"), "{text}");
    assert!(
        !text.contains("123456789") && !text.contains("s3cret"),
        "{text}"
    );
}

#[test]
fn null_debug_from_is_the_default() {
    let c = ok(r#"{"server": {"debugFrom": null}}"#);
    assert_eq!(c.debug_from, Config::default().debug_from);
}

#[test]
fn numeric_strings_are_accepted() {
    let c = ok(
        r#"{"server": {"port": "8080", "workers": "3", "tcpTimeout": "15", "deadBackendTTL": "60"},
                  "redisPort": "6380", "redisDatabase": "2"}"#,
    );
    assert_eq!(c.http[0].port(), 8080);
    assert_eq!(c.workers, 3);
    assert_eq!(c.tcp_timeout, Some(Duration::from_secs(15)));
    assert_eq!(c.dead_backend_ttl, Duration::from_secs(60));
    assert_eq!(redis(&c).0.censored(), "redis://127.0.0.1:6380/2");
}

#[test]
fn driver_forms() {
    let c = ok(r#"{"driver": "rediss://bob:secret@r.example:6390/3#hip:"}"#);
    let (read, write) = redis(&c);
    assert!(read.tls);
    assert_eq!(read.username.as_deref(), Some("bob"));
    assert_eq!(read.password.as_deref(), Some("secret"));
    assert_eq!(
        (read.port, read.db, read.prefix.as_str()),
        (6390, 3, "hip:")
    );
    assert_eq!(read, write);

    let c = ok(r#"{"driver": ["redis://replica", "redis://:pw@master:6380"]}"#);
    let (read, write) = redis(&c);
    assert_eq!(
        (read.host.as_str(), read.password.as_deref()),
        ("replica", None)
    );
    assert_eq!(
        (write.host.as_str(), write.port, write.password.as_deref()),
        ("master", 6380, Some("pw"))
    );

    for d in [r#""redis:""#, r#""redis://""#, r#"["redis:"]"#] {
        let c = ok(&format!(r#"{{"driver": {d}}}"#));
        assert_eq!(redis(&c).0.censored(), "redis://127.0.0.1:6379/0", "{d}");
    }

    let c = ok(r#"{"driver": "file:routes.yaml"}"#);
    assert_eq!(c.driver, Driver::File("routes.yaml".into()));
}

#[test]
fn legacy_master_keys() {
    let c = ok(r#"{
        "redisHost": "replica", "redisPort": 6379, "redisDatabase": 1, "redisPassword": "r",
        "redisMasterHost": "master", "redisMasterPort": 6380,
        "redisMasterPassword": "m", "redisMasterDatabase": 2
    }"#);
    let (read, write) = redis(&c);
    assert_eq!(read.censored(), "redis://:***@replica:6379/1");
    assert_eq!(write.censored(), "redis://:***@master:6380/2");
    assert_eq!(write.password.as_deref(), Some("m"));
    // Without redisMasterPort, Hipache used Redis's default port.
    let c = ok(r#"{"redisPort": 7000, "redisMasterHost": "master"}"#);
    assert_eq!(redis(&c).1.port, 6379);
    assert_eq!(redis(&c).0.port, 7000);
}

#[test]
fn file_driver_relative_to_config_dir() {
    let dir = temp_dir("reldriver");
    std::fs::write(dir.join("routes.yaml"), "{}").unwrap();
    std::fs::write(dir.join("config.json"), r#"{"driver": "file:routes.yaml"}"#).unwrap();
    let args = Args {
        config: Some(dir.join("config.json")),
        ..Args::default()
    };
    let loaded = load_from(&args, Path::new("/"), None).unwrap();
    assert_eq!(loaded.config.driver, Driver::File(dir.join("routes.yaml")));
}

#[test]
fn the_brief_errors_each_with_its_key() {
    let cases = [
        (r#"{"server": {"port": "abc"}}"#, "server.port"),
        (r#"{"server": {"workers": -1}}"#, "server.workers"),
        (r#"{"server": {"tcpTimeout": "x"}}"#, "server.tcpTimeout"),
        (r#"{"http": {"bind": ["not-an-ip"]}}"#, "http.bind[0]"),
        (r#"{"driver": "mysql://x"}"#, "driver"),
        (
            r#"{"server": {"trustedProxies": ["10.0.0.0/99"]}}"#,
            "server.trustedProxies[0]",
        ),
        (r#"{"server": {"prot": 80}}"#, "server.prot"),
        (
            r#"{"https": {"bind": ["0.0.0.0"], "key": "/k"}}"#,
            "https.cert",
        ),
        (r#"{"https": {"port": 443, "key": "/k"}}"#, "https.cert"),
        (
            r#"{"server": {"https": {"port": 443, "key": "/k"}}}"#,
            "server.https.cert",
        ),
        (r#"{"server": {"port": 70000}}"#, "server.port"),
        (r#"{"server": {"debug": "yes"}}"#, "server.debug"),
        (
            r#"{"server": {"maxHeaderSize": 100}}"#,
            "server.maxHeaderSize",
        ),
        (r#"{"server": {"routeCache": "lru"}}"#, "server.routeCache"),
        (
            r#"{"server": {"adminAddress": "10264"}}"#,
            "server.adminAddress",
        ),
        (
            r#"{"server": {"memoryLimit": "lots"}}"#,
            "server.memoryLimit",
        ),
        (
            r#"{"server": {"lruCache": {"size": 0}}}"#,
            "server.lruCache.size",
        ),
        (r#"{"driver": ["redis://a", 5]}"#, "driver[1]"),
        (r#"{"driver": []}"#, "driver"),
        (r#"{"driver": "redis://h", "redisHost": "x"}"#, "redisHost"),
        (r#"{"redisMasterPort": 6380}"#, "redisMasterPort"),
        (
            r#"{"http": {"bind": [{"port": 80}]}}"#,
            "http.bind[0].address",
        ),
        (
            r#"{"http": {"bind": [{"address": "::", "prt": 80}]}}"#,
            "http.bind[0].prt",
        ),
        (
            r#"{"server": {"port": 80}, "http": {"port": 81}}"#,
            "server.port",
        ),
        (
            r#"{"http": {"bind": ["0.0.0.0", "0.0.0.0"]}}"#,
            "http.bind[1]",
        ),
        (r#"{"srever": {}}"#, "srever"),
        (r#"{"user": true}"#, "user"),
        (r#"{"server": 5}"#, "server"),
        ("{\"a\": ", "(file)"),
    ];
    for (text, key) in cases {
        let e = errs(text);
        assert!(
            e.has_key(key),
            "{text}: expected an error at {key}, got:\n{e}"
        );
    }
}

#[test]
fn every_error_at_once() {
    let e = errs(
        r#"{
        "server": {
            "port": "abc",
            "workers": -1,
            "tcpTimeout": "x",
            "trustedProxies": ["10.0.0.0/99", "10.0.0.0/8"],
            "prot": 80
        },
        "driver": "mysql://x"
    }"#,
    );
    for key in [
        "server.port",
        "server.workers",
        "server.tcpTimeout",
        "server.trustedProxies[0]",
        "server.prot",
        "driver",
    ] {
        assert!(e.has_key(key), "missing {key} in:\n{e}");
    }
    assert_eq!(e.len(), 6, "{e}");
    // Display: one `<key>: <message>` per line.
    let text = e.to_string();
    assert_eq!(text.lines().count(), 6);
    assert!(text
        .lines()
        .any(|l| l.starts_with("server.prot: unknown key")));
    assert!(text.contains("did you mean \"port\""), "{text}");

    let e = errs(
        r#"{"http": {"bind": ["not-an-ip", "::1"]},
            "https": {"bind": ["0.0.0.0"]}}"#,
    );
    for key in ["http.bind[0]", "https.key", "https.cert"] {
        assert!(e.has_key(key), "missing {key} in:\n{e}");
    }
}

#[test]
fn no_panic_on_odd_documents() {
    for text in [
        "null",
        "[]",
        "42",
        "\"x\"",
        "{\"server\": []}",
        "{\"server\": {\"address\": {\"a\": 1}}}",
        "{\"http\": {\"bind\": [[]]}}",
        "{\"https\": {\"bind\": [null], \"key\": 1, \"cert\": []}}",
        "{\"server\": {\"workers\": 1e300, \"tcpTimeout\": -1, \"port\": 1.5}}",
        "{\"server\": {\"lruCache\": {\"ttl\": 0}}}",
        "{\"driver\": \"redis://[::1\"}",
        "{\"driver\": \"redis://%ff%fe@h\"}",
        "- a\n- b\n",
        "server: {port: [1, 2]}\n",
        "{\"redis\": \"x\"}",
    ] {
        let _ = parse(text, Format::Auto);
        let _ = parse(text, Format::Yaml);
        let _ = parse(text, Format::Json);
    }
}

#[test]
fn censoring() {
    let c = ok(r#"{"driver": ["redis://u:hunter2@r:6379/0#p", "rediss://:hunter3@m"]}"#);
    let out = dry_run_output(&c);
    assert!(
        !out.contains("hunter2") && !out.contains("hunter3"),
        "{out}"
    );
    assert!(out.contains("redis://u:***@r:6379/0#p"), "{out}");
    assert!(out.contains("rediss://:***@m:6379/0#p"), "{out}");
    assert!(
        !format!("{c:?}").contains("hunter2"),
        "Debug must censor too"
    );
}

#[test]
fn dry_output_parses_back_to_the_same_config() {
    for text in [
        "{}",
        HIPACHE_03,
        HIPACHE_04,
        HIPACHE_TEST,
        r#"{"server": {"tcpTimeout": 0, "connectTimeout": 1.5, "accessLog": "-",
            "trustedProxies": ["10.0.0.0/8"], "memoryLimit": "1GiB", "adminAddress": null},
            "driver": ["redis://a#x", "redis://b:6380/2"], "user": "nobody"}"#,
        r#"{"driver": "file:/srv/routes.yaml", "server": {"lruCache": null, "routeCache": "tracking"}}"#,
    ] {
        let c = ok(text);
        let again = ok(&c.censored_display());
        assert_eq!(c, again, "{text}");
    }
}

fn temp_dir(name: &str) -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "hipache-config-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn file_lookup_order() {
    let dir = temp_dir("lookup");
    let args = Args::default();
    // Nothing there: built-in defaults.
    let l = load_from(&args, &dir, None).unwrap();
    assert_eq!((l.path.as_ref(), &l.config), (None, &Config::default()));

    std::fs::write(dir.join("config.json"), r#"{"server": {"workers": 1}}"#).unwrap();
    std::fs::write(
        dir.join("config_test.json"),
        r#"{"server": {"workers": 2}}"#,
    )
    .unwrap();
    let l = load_from(&args, &dir, None).unwrap();
    assert_eq!(l.path, Some(dir.join("config.json")));
    assert_eq!(l.config.workers, 1);
    let l = load_from(&args, &dir, Some("test")).unwrap();
    assert_eq!(l.config.workers, 2);
    // A flavour without its file: built-in defaults, as no file was named.
    let l = load_from(&args, &dir, Some("prod")).unwrap();
    assert_eq!(l.path, None);

    // --config wins, and must exist.
    std::fs::write(dir.join("other.yaml"), "server:\n  workers: 3\n").unwrap();
    let args = Args {
        config: Some("other.yaml".into()),
        ..Args::default()
    };
    assert_eq!(
        load_from(&args, &dir, Some("test")).unwrap().config.workers,
        3
    );
    let args = Args {
        config: Some("missing.json".into()),
        ..Args::default()
    };
    let e = load_from(&args, &dir, None).unwrap_err();
    assert!(e.has_key("--config"), "{e}");
}

#[test]
fn load_checks_named_files() {
    let dir = temp_dir("files");
    std::fs::write(
        dir.join("c.json"),
        r#"{"https": {"bind": ["127.0.0.1"], "key": "/nonexistent/k.pem", "cert": "/nonexistent/c.pem"},
            "server": {"staticDir": "/nonexistent/static"}, "driver": "file:nope.yaml"}"#,
    )
    .unwrap();
    let args = Args {
        config: Some(dir.join("c.json")),
        ..Args::default()
    };
    let e = load_from(&args, &dir, None).unwrap_err();
    for key in ["https.key", "https.cert", "server.staticDir", "driver"] {
        assert!(e.has_key(key), "missing {key} in:\n{e}");
    }
    assert_eq!(e.file, Some(dir.join("c.json")));
}

#[test]
fn overrides() {
    let dir = temp_dir("overrides");
    std::fs::write(dir.join("routes.yaml"), "{}").unwrap();
    std::fs::write(
        dir.join("config.json"),
        r#"{"http": {"bind": ["0.0.0.0", {"address": "::", "port": 81}]}, "driver": "redis://file-host"}"#,
    )
    .unwrap();
    let args = Args {
        http_port: Some(8080),
        admin: Some("0.0.0.0:9191".into()),
        workers: Some(4),
        driver: Some("redis://:pw@r1,redis://r2:6380".into()),
        ..Args::default()
    };
    let c = load_from(&args, &dir, None).unwrap().config;
    assert_eq!(c.http, vec![sa("0.0.0.0:8080"), sa("[::]:8080")]);
    assert_eq!(c.admin, Some(sa("0.0.0.0:9191")));
    assert_eq!(c.workers, 4);
    let (read, write) = redis(&c);
    assert_eq!(
        (read.host.as_str(), write.host.as_str(), write.port),
        ("r1", "r2", 6380)
    );

    let args = Args {
        routes: Some("routes.yaml".into()),
        admin: Some("off".into()),
        ..Args::default()
    };
    let c = load_from(&args, &dir, None).unwrap().config;
    assert_eq!(c.driver, Driver::File(dir.join("routes.yaml")));
    assert_eq!(c.admin, None);

    let args = Args {
        routes: Some("routes.yaml".into()),
        driver: Some("redis:".into()),
        admin: Some("nope".into()),
        workers: Some(100_000),
        ..Args::default()
    };
    let e = load_from(&args, &dir, None).unwrap_err();
    for key in ["--routes", "--admin", "--workers"] {
        assert!(e.has_key(key), "missing {key} in:\n{e}");
    }
    let args = Args {
        driver: Some("mysql://x".into()),
        ..Args::default()
    };
    assert!(load_from(&args, &dir, None)
        .unwrap_err()
        .has_key("--driver"));

    // File errors and flag errors are reported together.
    std::fs::write(dir.join("bad.json"), r#"{"server": {"port": "abc"}}"#).unwrap();
    let args = Args {
        config: Some("bad.json".into()),
        admin: Some("nope".into()),
        ..Args::default()
    };
    let e = load_from(&args, &dir, None).unwrap_err();
    assert!(e.has_key("server.port") && e.has_key("--admin"), "{e}");
}

#[test]
fn https_port_override() {
    let dir = temp_dir("httpsport");
    for f in ["k.pem", "c.pem"] {
        std::fs::write(dir.join(f), "x").unwrap();
    }
    let cfg = format!(
        r#"{{"http": {{"bind": ["127.0.0.1"], "port": 0}}, "https": {{"bind": ["127.0.0.1"], "key": "{}", "cert": "{}"}}}}"#,
        dir.join("k.pem").display(),
        dir.join("c.pem").display()
    );
    std::fs::write(dir.join("config.json"), cfg).unwrap();
    let args = Args {
        https_port: Some(8443),
        ..Args::default()
    };
    let c = load_from(&args, &dir, None).unwrap().config;
    assert_eq!(c.https[0].address, sa("127.0.0.1:8443"));
    assert_eq!(c.http[0], sa("127.0.0.1:0"));
    // Both listeners on one address: refused.
    let args = Args {
        http_port: Some(8443),
        https_port: Some(8443),
        ..Args::default()
    };
    assert!(load_from(&args, &dir, None).is_err());
    let _ = IpAddr::from([0, 0, 0, 0]);
}

#[test]
fn tls_keys() {
    let c = ok("{}");
    assert_eq!(c.tls_dir, None);
    assert_eq!(c.backend_ca, None);
    assert!(c.backend_tls_verify);
    assert!(!c.https_redirect);
    assert_eq!(c.tls_handshake_timeout, Some(Duration::from_secs(10)));
    let text = r#"{"https": {"bind": ["127.0.0.1"], "key": "k.pem", "cert": "c.pem"},
        "server": {"tlsDir": "/etc/hipache/certs", "backendCa": "/etc/ca.pem",
        "backendTlsVerify": false, "httpsRedirect": true, "tlsHandshakeTimeout": 2.5}}"#;
    let c = ok(text);
    assert_eq!(c.tls_dir, Some(PathBuf::from("/etc/hipache/certs")));
    assert_eq!(c.backend_ca, Some(PathBuf::from("/etc/ca.pem")));
    assert!(!c.backend_tls_verify);
    assert!(c.https_redirect);
    assert_eq!(c.tls_handshake_timeout, Some(Duration::from_millis(2500)));
    assert_eq!(ok(&c.censored_display()), c);
    let c = ok(r#"{"server": {"tlsHandshakeTimeout": 0}}"#);
    assert_eq!(c.tls_handshake_timeout, None);
    assert_eq!(ok(&c.censored_display()), c);

    let e = errs(
        r#"{"server": {"tlsDir": 3, "backendCa": "", "backendTlsVerify": "no",
            "httpsRedirect": true, "tlsHandshakeTimeout": -1}}"#,
    );
    let keys: Vec<&str> = e.errors.iter().map(|e| e.key.as_str()).collect();
    for k in [
        "server.tlsDir",
        "server.backendCa",
        "server.backendTlsVerify",
        "server.httpsRedirect",
        "server.tlsHandshakeTimeout",
    ] {
        assert!(keys.contains(&k), "{k} missing from {keys:?}");
    }
}

#[test]
fn tls_files_are_checked_on_load() {
    let dir = temp_dir("tls");
    std::fs::write(
        dir.join("config.json"),
        r#"{"server": {"tlsDir": "missing-dir", "backendCa": "missing-ca.pem"}}"#,
    )
    .unwrap();
    let e = load_from(&Args::default(), &dir, None).unwrap_err();
    let keys: Vec<&str> = e.errors.iter().map(|e| e.key.as_str()).collect();
    assert!(keys.contains(&"server.tlsDir"), "{keys:?}");
    assert!(keys.contains(&"server.backendCa"), "{keys:?}");
}

mod properties {
    //! Whatever the document, parsing returns a config or a non-empty
    //! list of errors, each with a key: never a panic.

    use proptest::prelude::*;
    use serde_json::{Map, Value};

    use super::super::{parse, Format};

    /// Keys that reach real code paths, plus noise.
    const KEYS: &[&str] = &[
        "server",
        "http",
        "https",
        "driver",
        "user",
        "group",
        "port",
        "bind",
        "address",
        "address6",
        "workers",
        "maxSockets",
        "deadBackendTTL",
        "tcpTimeout",
        "retryOnError",
        "deadBackendOn500",
        "httpKeepAlive",
        "lruCache",
        "size",
        "ttl",
        "staticDir",
        "accessLog",
        "key",
        "cert",
        "ca",
        "redisHost",
        "redisPort",
        "redisMasterHost",
        "trustedProxies",
        "maxBodySize",
        "memoryLimit",
        "routeCache",
        "adminAddress",
        "tlsDir",
        "x",
    ];

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            "[a-z0-9:/.#@*\\[\\]-]{0,24}".prop_map(Value::String),
            prop::sample::select(vec![
                "redis://",
                "redis://:pw@h:1/2#p",
                "file:x.yaml",
                "rediss://u:p@[::1]",
                "127.0.0.1",
                "::",
                "0",
                "1e3",
                "512MiB",
                "strict"
            ])
            .prop_map(|s| Value::String(s.to_owned())),
        ]
    }

    fn document() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec((prop::sample::select(KEYS), inner), 0..8).prop_map(|kv| {
                    Value::Object(
                        kv.into_iter()
                            .map(|(k, v)| (k.to_owned(), v))
                            .collect::<Map<_, _>>(),
                    )
                }),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn parse_never_panics(doc in document()) {
            let text = doc.to_string();
            match parse(&text, Format::Json) {
                Ok(_) => {}
                Err(errors) => {
                    prop_assert!(!errors.is_empty());
                    for e in errors.iter() {
                        prop_assert!(!e.message.is_empty());
                    }
                }
            }
        }

        #[test]
        fn arbitrary_text_never_panics(text in ".{0,200}") {
            let _ = parse(&text, Format::Auto);
            let _ = parse(&text, Format::Yaml);
        }
    }
}

#[test]
fn redis_password_override_applies_to_both_connections() {
    let dir = temp_dir("redis-password");
    std::fs::write(
        dir.join("config.json"),
        r#"{"driver": ["redis://:old@r1", "redis://r2"]}"#,
    )
    .unwrap();
    let args = Args {
        redis_password: Some("p@ss:w/rd#1".into()),
        ..Args::default()
    };
    let c = load_from(&args, &dir, None).unwrap().config;
    let (read, write) = redis(&c);
    assert_eq!(read.password.as_deref(), Some("p@ss:w/rd#1"));
    assert_eq!(write.password.as_deref(), Some("p@ss:w/rd#1"));
    assert!(
        !dry_run_output(&c).contains("p@ss"),
        "the password stays censored"
    );
}

#[test]
fn status_token_override_replaces_the_file_and_is_checked() {
    let dir = temp_dir("status-token");
    std::fs::write(
        dir.join("config.json"),
        r#"{"server": {"adminAddress": "127.0.0.1:0", "statusPage": true, "statusToken": "from-file"}}"#,
    )
    .unwrap();
    let args = Args {
        status_token: Some("from-the-environment".into()),
        ..Args::default()
    };
    let c = load_from(&args, &dir, None).unwrap().config;
    assert_eq!(c.status_token.as_deref(), Some("from-the-environment"));
    assert!(!dry_run_output(&c).contains("from-the-environment"));
    let bad = Args {
        status_token: Some("not a token!".into()),
        ..Args::default()
    };
    let errors = load_from(&bad, &dir, None).unwrap_err().to_string();
    assert!(errors.contains("--status-token"), "{errors}");
    assert!(
        !errors.contains("not a token!"),
        "the secret is not repeated: {errors}"
    );
}

mod declarations {
    //! The key declarations held to what they feed: the key tables of
    //! docs/configuration.md, `--dry`, and `Config::default()`.

    use serde_json::{json, Value};

    use super::super::keys;
    use super::super::reading::{Key, Kind};
    use super::super::{parse, Config, Format};

    const DOCS: &str = include_str!("../../../docs/configuration.md");

    /// Every declared key with its dotted path (the keys of a list's
    /// objects after the list's name: `http.bind.address`).
    fn every_key() -> Vec<(String, &'static Key)> {
        fn walk(prefix: &str, keys: &'static [Key], out: &mut Vec<(String, &'static Key)>) {
            for key in keys {
                let path = if prefix.is_empty() {
                    key.name.to_owned()
                } else {
                    format!("{prefix}.{}", key.name)
                };
                out.push((path.clone(), key));
                walk(&path, key.keys, out);
            }
        }
        let mut out = Vec::new();
        walk("", keys::TOP, &mut out);
        out
    }

    /// What the docs must show as the key's default, when it has a row.
    fn documented_default(key: &Key) -> Option<Value> {
        match key.kind {
            Kind::Part(default) => default.map(|f| f()),
            Kind::Ignored(_) => None,
            kind => kind.show(&Config::default()),
        }
    }

    /// A row of a docs table whose first column is `key`.
    struct Row {
        line: usize,
        names: Vec<String>,
        default: Option<String>,
        meaning: String,
    }

    impl Row {
        fn is_for(&self, path: &str) -> bool {
            self.names.iter().any(|n| n == path)
        }
    }

    fn rows() -> Vec<Row> {
        let mut out = Vec::new();
        let mut header: Option<Vec<String>> = None;
        for (i, line) in DOCS.lines().enumerate() {
            let Some(inner) = line.trim().strip_prefix('|') else {
                header = None;
                continue;
            };
            let cells: Vec<String> = inner
                .trim_end_matches('|')
                .split('|')
                .map(|c| c.trim().to_owned())
                .collect();
            let Some(head) = &header else {
                header = Some(cells);
                continue;
            };
            if head[0] != "key" || cells.iter().all(|c| c.chars().all(|ch| ch == '-')) {
                continue;
            }
            let column = |name: &str| {
                let at = head.iter().position(|h| h == name)?;
                cells.get(at).cloned()
            };
            out.push(Row {
                line: i + 1,
                names: cells[0]
                    .split('`')
                    .skip(1)
                    .step_by(2)
                    .map(str::to_owned)
                    .collect(),
                default: column("default"),
                meaning: column("meaning").unwrap_or_default(),
            });
        }
        out
    }

    /// A default cell: JSON in backticks, or `none`/`absent`.
    fn cell_value(cell: &str) -> Value {
        match cell.trim_matches('`') {
            "none" | "absent" => Value::Null,
            text => serde_json::from_str(text)
                .unwrap_or_else(|e| panic!("default {cell:?} is not JSON: {e}")),
        }
    }

    #[test]
    fn every_key_with_a_default_has_its_row_in_the_docs() {
        let rows = rows();
        let mut problems = Vec::new();
        for (path, key) in every_key() {
            let Some(default) = documented_default(key) else {
                continue;
            };
            // The tables of the `server` sections name a key alone.
            let bare = path.strip_prefix("server.").unwrap_or(&path);
            let Some(row) = rows
                .iter()
                .find(|r| r.is_for(&path))
                .or_else(|| rows.iter().find(|r| r.is_for(bare)))
            else {
                problems.push(format!("{path}: no row in docs/configuration.md"));
                continue;
            };
            if !row.meaning.starts_with(key.doc) {
                problems.push(format!(
                    "{path} (line {}): the meaning should begin with {:?}",
                    row.line, key.doc
                ));
            }
            match &row.default {
                Some(cell) if cell_value(cell) != default => problems.push(format!(
                    "{path} (line {}): default {cell}, declared {default}",
                    row.line
                )),
                Some(_) => {}
                None => problems.push(format!("{path} (line {}): no default", row.line)),
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn every_row_of_the_docs_is_a_declared_key() {
        let paths: Vec<String> = every_key().into_iter().map(|(p, _)| p).collect();
        let declared = |name: &str| {
            paths
                .iter()
                .any(|p| p == name || *p == format!("server.{name}"))
        };
        let rows = rows();
        assert!(rows.len() > 40, "the key tables were not found");
        for row in rows {
            assert!(!row.names.is_empty(), "line {}: no key", row.line);
            for name in &row.names {
                assert!(declared(name), "line {}: {name} is not declared", row.line);
            }
        }
    }

    #[test]
    fn every_ignored_key_is_named_in_the_docs() {
        for (path, key) in every_key() {
            if matches!(key.kind, Kind::Ignored(_)) {
                let named = every_key().into_iter().any(|(p, k)| {
                    k.name == key.name
                        && matches!(k.kind, Kind::Ignored(_))
                        && DOCS.contains(&format!("`{p}`"))
                });
                assert!(named, "{path} is ignored, but the docs do not say so");
            }
        }
    }

    #[test]
    fn declarations_are_well_formed() {
        fn check(path: &str, keys: &'static [Key]) {
            for (i, key) in keys.iter().enumerate() {
                let at = format!("{path}.{}", key.name);
                assert!(!key.doc.is_empty(), "{at}: no doc line");
                assert!(
                    keys[..i].iter().all(|k| k.name != key.name),
                    "{at}: declared twice"
                );
                check(&at, key.keys);
            }
        }
        check("", keys::TOP);
    }

    #[test]
    fn each_setting_written_at_its_default_changes_nothing() {
        let mut settings = 0;
        for (path, key) in every_key() {
            let Some(default) = key.kind.show(&Config::default()) else {
                continue;
            };
            settings += 1;
            let doc = match path.split_once('.') {
                Some((section, name)) => json!({ section: { name: default } }),
                None => json!({ path.clone(): default }),
            };
            let parsed =
                parse(&doc.to_string(), Format::Json).unwrap_or_else(|e| panic!("{doc}: {e}"));
            assert_eq!(parsed, Config::default(), "{doc}");
        }
        assert!(settings > 30, "{settings} settings");
    }

    #[test]
    fn listener_defaults_are_what_an_absent_key_means() {
        let defaults = |section: &'static [Key]| -> Value {
            section
                .iter()
                .filter_map(|k| match k.kind {
                    Kind::Part(Some(f)) if !f().is_null() => Some((k.name.to_owned(), f())),
                    _ => None,
                })
                .collect::<serde_json::Map<_, _>>()
                .into()
        };
        let top = |name: &str| {
            keys::TOP
                .iter()
                .find(|k| k.name == name)
                .map(|k| k.keys)
                .unwrap_or_default()
        };
        let http = json!({ "http": defaults(top("http")) });
        assert_eq!(
            parse(&http.to_string(), Format::Json).unwrap(),
            Config::default()
        );
        let server = json!({ "server": defaults(top("server")) });
        assert_eq!(
            parse(&server.to_string(), Format::Json).unwrap(),
            parse(r#"{"server": {"port": 80}}"#, Format::Json).unwrap(),
            "{server}"
        );
    }

    #[test]
    fn secrets_are_censored_by_their_printers() {
        let c = parse(
            r#"{"driver": ["redis://u:hunter2@a", "redis://:hunter2@b"],
                "server": {"statusToken": "hunter2"}}"#,
            Format::Json,
        )
        .unwrap();
        let mut shown = 0;
        for (path, key) in every_key() {
            if !key.secret {
                continue;
            }
            if let Some(v) = key.kind.show(&c) {
                let text = v.to_string();
                assert!(
                    !text.contains("hunter2") && text.contains("***"),
                    "{path}: {text}"
                );
                shown += 1;
            }
        }
        assert!(
            shown > 0,
            "no secret key is printed: the test checks nothing"
        );
    }
}

mod status_page {
    use super::*;

    #[test]
    fn off_by_default_and_needs_the_admin_listener() {
        let c = ok("{}");
        assert!(!c.status_page);
        assert_eq!(c.status_token, None);
        let c = ok(r#"{"server": {"statusPage": true, "statusToken": "a-b.c_d~9"}}"#);
        assert!(c.status_page);
        assert_eq!(c.status_token.as_deref(), Some("a-b.c_d~9"));
        let errors = parse(
            r#"{"server": {"statusPage": true, "adminAddress": null}}"#,
            Format::Json,
        )
        .unwrap_err();
        assert!(
            format!("{errors:?}").contains("server.statusPage"),
            "{errors:?}"
        );
    }

    #[test]
    fn a_bad_token_is_refused_without_repeating_it() {
        for bad in [r#""""#, r#""with space""#, r#""semi;colon""#, "42"] {
            let text = format!(r#"{{"server": {{"statusToken": {bad}}}}}"#);
            let errors = parse(&text, Format::Json).unwrap_err();
            let shown = format!("{errors:?}");
            assert!(shown.contains("server.statusToken"), "{shown}");
            assert!(!shown.contains("semi;colon"), "{shown}");
        }
    }
}
