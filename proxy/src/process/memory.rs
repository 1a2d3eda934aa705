//! Resident memory of a process, read from `/proc`, and the single-process
//! memory watch.

use std::time::Duration;

/// How often memory is checked (the master's workers, or a single process
/// itself): cheap (one small `/proc` read), and frequent enough to catch a
/// leak long before it matters.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The resident set size (`VmRSS`) of process `pid`, in bytes.
pub fn rss_bytes(pid: u32) -> std::io::Result<u64> {
    read_rss(&format!("/proc/{pid}/status"))
}

/// This process's resident set size, in bytes.
pub fn own_rss_bytes() -> std::io::Result<u64> {
    read_rss("/proc/self/status")
}

fn read_rss(path: &str) -> std::io::Result<u64> {
    let status = std::fs::read_to_string(path)?;
    parse_vm_rss(&status).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("no VmRSS line in {path}"),
        )
    })
}

/// `VmRSS:   12345 kB` in a `/proc/<pid>/status` text, in bytes.
fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let kib: u64 = line.trim().trim_end_matches("kB").trim().parse().ok()?;
    kib.checked_mul(1024)
}

/// Single-process mode: completes once this process's memory is above
/// `limit` (logged as an error), which starts a drain; never without a
/// limit.
pub async fn watch_self(limit: Option<u64>) {
    let Some(limit) = limit else {
        return std::future::pending().await;
    };
    let start = tokio::time::Instant::now() + CHECK_INTERVAL;
    let mut tick = tokio::time::interval_at(start, CHECK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match own_rss_bytes() {
            Ok(rss) if rss > limit => {
                tracing::error!(
                    rss,
                    limit,
                    "memory above server.memoryLimit: draining and exiting for a restart"
                );
                return;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot read this process's memory; memory watch stopped");
                return std::future::pending().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_vm_rss() {
        let text = "Name:\thipache\nVmPeak:\t  99 kB\nVmRSS:\t   12345 kB\nThreads:\t3\n";
        assert_eq!(parse_vm_rss(text), Some(12345 * 1024));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
        assert_eq!(parse_vm_rss("VmRSS:\tlots kB\n"), None);
    }

    #[test]
    fn reads_own_rss() {
        let rss = own_rss_bytes().expect("own RSS");
        assert!(rss > 0);
        assert_eq!(
            rss_bytes(std::process::id()).map(|r| r > 0).ok(),
            Some(true)
        );
    }
}
