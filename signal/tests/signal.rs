//! The drain and abort rule, with real signals. Each case runs in a child
//! process (this test binary started again, running only [`child`]):
//! signal handlers are process-wide, and the second signal ends the process
//! it arrives in.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::pin::Pin;
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::{raise, Signal};

/// Names the case a child process runs.
const CASE: &str = "HIPACHE_SIGNAL_TEST_CASE";

/// Runs `case` in a child process; its exit status code.
fn run_child(case: &str) -> Option<i32> {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["child", "--exact", "--nocapture"])
        .env(CASE, case)
        .output()
        .unwrap();
    if !out.status.success() {
        eprintln!("{case}: {}", String::from_utf8_lossy(&out.stdout));
        eprintln!("{case}: {}", String::from_utf8_lossy(&out.stderr));
    }
    out.status.code()
}

#[test]
fn the_first_signal_starts_the_drain() {
    assert_eq!(run_child("sigterm"), Some(0));
    assert_eq!(run_child("sigint"), Some(0));
}

#[test]
fn another_event_starts_the_drain_too() {
    assert_eq!(run_child("other"), Some(0));
}

#[test]
fn a_second_signal_exits_with_status_1() {
    assert_eq!(run_child("second"), Some(1));
}

/// Polls `drain` once, so that its signal handlers are installed before a
/// signal is raised (without a handler, SIGTERM would kill the process).
async fn install(mut drain: Pin<&mut impl Future<Output = ()>>) {
    tokio::select! {
        biased;
        () = &mut drain => panic!("the drain started without a signal"),
        () = std::future::ready(()) => {}
    }
}

async fn started(drain: Pin<&mut impl Future<Output = ()>>) {
    tokio::time::timeout(Duration::from_secs(10), drain)
        .await
        .expect("the drain starts");
}

/// The child process's side of the tests above; without `CASE` (a normal
/// test run) it does nothing.
#[tokio::test]
async fn child() {
    let Some(case) = std::env::var(CASE).ok() else {
        return;
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let mut drain = std::pin::pin!(hipache_signal::signal_or(async {
        let _ = rx.await;
    }));
    install(drain.as_mut()).await;
    match case.as_str() {
        "sigterm" => raise(Signal::SIGTERM).unwrap(),
        "sigint" => raise(Signal::SIGINT).unwrap(),
        "other" => tx.send(()).unwrap(),
        "second" => {
            raise(Signal::SIGTERM).unwrap();
            started(drain).await;
            raise(Signal::SIGINT).unwrap();
            // The process exits (1) before this ends; returning exits 0.
            tokio::time::sleep(Duration::from_secs(10)).await;
            return;
        }
        other => panic!("unknown case {other}"),
    }
    started(drain).await;
}
