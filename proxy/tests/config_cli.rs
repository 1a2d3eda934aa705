//! `hipache --dry` end to end: the real binary validating config files.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const ENV: &[&str] = &[
    "HIPACHE_CONFIG",
    "HIPACHE_DRY",
    "HIPACHE_ROUTES",
    "HIPACHE_DRIVER",
    "HIPACHE_HTTP_PORT",
    "HIPACHE_HTTPS_PORT",
    "HIPACHE_ADMIN_ADDRESS",
    "HIPACHE_WORKERS",
    "HIPACHE_LOG_FORMAT",
    "SETTINGS_FLAVOR",
];

fn temp_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("hipache-config-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `hipache` in `dir` with a clean `HIPACHE_*` environment plus `env`.
fn hipache(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hipache"));
    cmd.current_dir(dir).args(args);
    for k in ENV {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn dry_lists_every_error_with_its_key() {
    let dir = temp_dir("bad");
    std::fs::write(
        dir.join("bad.json"),
        r#"{
            "server": {
                "port": "abc",
                "workers": -1,
                "tcpTimeout": "x",
                "trustedProxies": ["10.0.0.0/99"],
                "prot": 80
            },
            "driver": "mysql://x"
        }"#,
    )
    .unwrap();
    let out = hipache(&dir, &["--dry", "-c", "bad.json"], &[]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "must fail; stderr:\n{stderr}");
    for key in [
        "server.port",
        "server.workers",
        "server.tcpTimeout",
        "server.trustedProxies[0]",
        "server.prot",
        "driver",
    ] {
        assert!(
            stderr.lines().any(|l| l.contains(&format!("{key}: "))),
            "no `{key}: ...` line in stderr:\n{stderr}"
        );
    }
}

#[test]
fn dry_prints_the_effective_config_censored() {
    let dir = temp_dir("good");
    std::fs::write(
        dir.join("good.yaml"),
        "server:\n  workers: 2\n  accessLog: '-'\nhttp:\n  port: 8080\n  bind: ['0.0.0.0', '::']\n\
         driver: 'redis://:s3cretpassw0rd@redis.internal:6380/2#hip:'\n",
    )
    .unwrap();
    let out = hipache(&dir, &["--dry", "-c", "good.yaml"], &[]);
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("***"), "{stdout}");
    assert!(stdout.contains("redis.internal:6380/2#hip:"), "{stdout}");
    assert!(stdout.contains("8080"), "{stdout}");
    assert!(
        !stdout.contains("s3cretpassw0rd") && !stderr.contains("s3cretpassw0rd"),
        "the password leaked:\n{stdout}\n{stderr}"
    );
}

#[test]
fn dry_takes_overrides_from_the_environment() {
    let dir = temp_dir("env");
    let out = hipache(
        &dir,
        &["--dry"],
        &[
            ("HIPACHE_DRIVER", "rediss://user:envpassw0rd@env-redis:6390"),
            ("HIPACHE_HTTP_PORT", "8181"),
            ("HIPACHE_WORKERS", "3"),
        ],
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "stderr:\n{}", text(&out.stderr));
    assert!(
        stdout.contains("rediss://user:***@env-redis:6390/0"),
        "{stdout}"
    );
    assert!(stdout.contains("8181"), "{stdout}");
    assert!(!stdout.contains("envpassw0rd"), "{stdout}");
}

#[test]
fn dry_fails_on_a_missing_config_file() {
    let dir = temp_dir("missing");
    let out = hipache(&dir, &["--dry", "-c", "nope.json"], &[]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--config"),
        "{}",
        text(&out.stderr)
    );
}
