//! A real headless Chromium (Debian's `chromium`) loading a page as a
//! person would: `--dump-dom` gives the DOM after the page's scripts ran
//! for a virtual time budget, `--screenshot` a PNG kept as a test artifact.
//!
//! Each run gets its own profile directory (runs may be parallel), is
//! bounded by [`RUN_TIMEOUT`] and killed after it.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Bound on one Chromium run (its start-up is most of it).
pub const RUN_TIMEOUT: Duration = Duration::from_secs(60);
/// The window of screenshots.
const WINDOW: &str = "1280,900";

/// The Chromium binary: `$CHROMIUM`, else `chromium` (`scripts/test`
/// installs it).
fn binary() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".to_owned())
}

/// Where screenshots go: `$CARGO_TARGET_DIR/test-artifacts/<suite>/`, else
/// `target/test-artifacts/<suite>/` of the workspace.
pub fn artifacts_dir(suite: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("test-artifacts").join(suite);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

/// The DOM of `url` after its scripts ran for `virtual_ms` of virtual time
/// (timers fire as if that much time passed; network waits are real); 0:
/// as soon as the page loaded.
pub async fn dump_dom(url: &str, virtual_ms: u64) -> String {
    let budget = budget(virtual_ms);
    let mut args = vec!["--dump-dom", url];
    args.extend(budget.as_deref());
    let out = run(&args).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// `--virtual-time-budget=<ms>`, none for 0 (Chromium never ends with a
/// budget of 0).
fn budget(virtual_ms: u64) -> Option<String> {
    (virtual_ms > 0).then(|| format!("--virtual-time-budget={virtual_ms}"))
}

/// A screenshot of `url` (after `virtual_ms` of virtual time) written to
/// `<artifacts_dir(suite)>/<name>.png`; returns its path.
pub async fn screenshot(suite: &str, name: &str, url: &str, virtual_ms: u64) -> PathBuf {
    let path = artifacts_dir(suite).join(format!("{name}.png"));
    let _ = std::fs::remove_file(&path);
    let shot = format!("--screenshot={}", path.display());
    let window = format!("--window-size={WINDOW}");
    let budget = budget(virtual_ms);
    let mut args = vec![shot.as_str(), window.as_str(), "--hide-scrollbars", url];
    args.extend(budget.as_deref());
    run(&args).await;
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    assert!(
        size > 0,
        "Chromium wrote no screenshot at {}",
        path.display()
    );
    path
}

/// Runs Chromium headless with `args` (in a blocking task), killed after
/// [`RUN_TIMEOUT`]; returns its standard output.
async fn run(args: &[&str]) -> Vec<u8> {
    let profile = tempfile::tempdir().expect("a Chromium profile directory");
    let mut cmd = Command::new(binary());
    cmd.args([
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .args(args)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let what = format!("{} {}", binary(), args.join(" "));
    let out = tokio::task::spawn_blocking(move || {
        let mut child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start {}: {e} (scripts/test installs chromium)",
                binary()
            )
        });
        let started = Instant::now();
        // Read the pipes on their own threads so a full pipe never blocks
        // the child while we wait for it.
        let mut stdout = child.stdout.take().expect("piped stdout");
        let mut stderr = child.stderr.take().expect("piped stderr");
        let out = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = std::io::Read::read_to_end(&mut stdout, &mut buf);
            buf
        });
        let err = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = std::io::Read::read_to_end(&mut stderr, &mut buf);
            buf
        });
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if started.elapsed() < RUN_TIMEOUT => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
            }
        };
        let stdout = out.join().unwrap_or_default();
        let stderr = err.join().unwrap_or_default();
        (status, stdout, stderr)
    })
    .await
    .expect("the Chromium task");
    drop(profile);
    match out {
        (Some(status), stdout, _) if status.success() => stdout,
        (Some(status), _, stderr) => panic!(
            "{what} exited with {status}: {}",
            String::from_utf8_lossy(&stderr)
        ),
        (None, _, stderr) => panic!(
            "{what} did not finish within {RUN_TIMEOUT:?}; killed: {}",
            String::from_utf8_lossy(&stderr)
        ),
    }
}

/// Whether `dom` holds an element whose opening tag contains every one of
/// `attrs` and whose text (up to its closing tag) contains `text`: enough
/// to assert what a person sees without an HTML parser.
pub fn has_element(dom: &str, attrs: &[&str], text: &str) -> bool {
    element_text(dom, attrs).is_some_and(|t| t.contains(text))
}

/// The text up to the next `</tr>`, `</td>`, `</p>`... of the first
/// element whose opening tag contains every one of `attrs`, tags
/// stripped.
pub fn element_text(dom: &str, attrs: &[&str]) -> Option<String> {
    let mut rest = dom;
    while let Some(at) = rest.find('<') {
        let tag_end = rest[at..].find('>')? + at;
        let tag = &rest[at..=tag_end];
        if !tag.starts_with("</") && attrs.iter().all(|a| tag.contains(a)) {
            let name: String = tag[1..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            let close = format!("</{name}>");
            let body = &rest[tag_end + 1..];
            let end = body.find(&close).unwrap_or(body.len());
            return Some(strip_tags(&body[..end]));
        }
        rest = &rest[tag_end + 1..];
    }
    None
}

fn strip_tags(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => {
                in_tag = true;
                out.push(' ');
            }
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}
