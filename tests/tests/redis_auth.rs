//! Redis access with credentials and TLS: AUTH with an ACL user, a
//! password, `rediss://` with a private CA; and secrets never printed.

use std::time::Duration;

use hipache_tests::backend::Backend;
use hipache_tests::client::get;
use hipache_tests::free_port;
use hipache_tests::proxy::TestProxy;
use hipache_tests::redis::RedisServer;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_user_with_password() {
    let redis = RedisServer::start();
    let backend = Backend::start("acl").await;
    redis
        .rpush_frontend("acl.test", "acl", &[backend.url()])
        .await;
    let _: () = redis
        .query(&[
            "ACL", "SETUSER", "proxy", "on", ">s3cret", "~*", "&*", "+@all",
        ])
        .await;
    // The default user can no longer get in without a password.
    let _: () = redis.query(&["ACL", "SETUSER", "default", "off"]).await;
    let url = format!("redis://proxy:s3cret@127.0.0.1:{}", redis.port());
    let proxy = TestProxy::start(&url, json!({})).await;
    assert_eq!(
        get(proxy.addr(), "acl.test", "/").await.backend(),
        Some("acl")
    );

    let wrong = format!("redis://proxy:wrong@127.0.0.1:{}", redis.port());
    let proxy = TestProxy::start(&wrong, json!({})).await;
    let resp = get(proxy.addr(), "acl.test", "/").await;
    assert_eq!(
        resp.status, 503,
        "bad credentials: routes unavailable, not a hang"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_with_a_private_ca() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("ca cert");
    let key = rcgen::KeyPair::generate().expect("server key");
    let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
    let cert = params.signed_by(&key, &issuer).expect("server cert");
    let write = |name: &str, text: String| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write pem");
        p.display().to_string()
    };
    let ca_path = write("ca.pem", ca.pem());
    let cert_path = write("redis.pem", cert.pem());
    let key_path = write("redis.key", key.serialize_pem());
    let tls_port = free_port();
    let redis = RedisServer::start_with_args(&[
        "--tls-port".into(),
        tls_port.to_string(),
        "--tls-cert-file".into(),
        cert_path,
        "--tls-key-file".into(),
        key_path,
        "--tls-ca-cert-file".into(),
        ca_path.clone(),
        "--tls-auth-clients".into(),
        "no".into(),
    ]);
    let backend = Backend::start("tls").await;
    redis
        .rpush_frontend("tls-redis.test", "t", &[backend.url()])
        .await;

    let url = format!("rediss://localhost:{tls_port}");
    let proxy = TestProxy::start(&url, json!({"redisCa": ca_path})).await;
    assert_eq!(
        get(proxy.addr(), "tls-redis.test", "/").await.backend(),
        Some("tls")
    );

    // Without the CA the server is not trusted: no routes, answered fast.
    let proxy = TestProxy::start(&url, json!({})).await;
    let started = std::time::Instant::now();
    let resp = get(proxy.addr(), "tls-redis.test", "/").await;
    assert_eq!(resp.status, 503);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_never_reach_logs_or_dry_output() {
    let redis = RedisServer::start();
    let _: () = redis
        .query(&["CONFIG", "SET", "requirepass", "hunter2-secret"])
        .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("config.json");
    let text = json!({
        "http": {"port": 0, "bind": ["127.0.0.1"]},
        "driver": format!("redis://:hunter2-secret@127.0.0.1:{}", redis.port()),
        "server": {"accessLog": null, "adminAddress": null, "workers": 0},
    });
    std::fs::write(&config, text.to_string()).expect("write config");
    let bin = hipache_tests::proxy::binary_path();

    let dry = std::process::Command::new(&bin)
        .arg("--dry")
        .arg("-c")
        .arg(&config)
        .output()
        .expect("run --dry");
    let out =
        String::from_utf8_lossy(&dry.stdout).into_owned() + &String::from_utf8_lossy(&dry.stderr);
    assert!(dry.status.success(), "{out}");
    assert!(
        !out.contains("hunter2-secret"),
        "--dry printed the password: {out}"
    );
    assert!(
        out.contains("***"),
        "--dry shows the password censored: {out}"
    );

    // Run it with debug logs for a moment, then stop it and read every line.
    let mut child = std::process::Command::new(&bin)
        .arg("-c")
        .arg(&config)
        .env("HIPACHE_LOG", "debug")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start hipache");
    std::thread::sleep(Duration::from_millis(1500));
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while child.try_wait().ok().flatten().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let output = child.wait_with_output().expect("collect output");
    let logs = String::from_utf8_lossy(&output.stderr).into_owned()
        + &String::from_utf8_lossy(&output.stdout);
    assert!(
        logs.contains("connected to Redis"),
        "the proxy connected: {logs}"
    );
    assert!(
        !logs.contains("hunter2-secret"),
        "a log line shows the password: {logs}"
    );
}
