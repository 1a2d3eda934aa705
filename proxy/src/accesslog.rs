//! The access log: Hipache's nginx-style line, one per request, formatted
//! and written by a background task so the request path never waits on a
//! disk. SIGUSR1 reopens the file (for logrotate).
//!
//! ```text
//! 127.0.0.1 - - [16/Feb/2014:00:43:10 +0000] "GET / HTTP/1.1" 200 3236 "<referer>" "<user agent>" "<identifier>" 0.011 0.009
//! ```

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use time::OffsetDateTime;
use tokio::sync::mpsc;

use crate::config::AccessLogTarget;

/// Entries waiting to be written; past this, entries are dropped (and
/// counted in a log line) rather than slowing requests down.
pub const QUEUE: usize = 16 * 1024;

/// One request, as the access log records it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub client: IpAddr,
    pub time: SystemTime,
    pub method: String,
    pub target: String,
    pub version: http::Version,
    pub status: u16,
    pub bytes: u64,
    pub referer: String,
    pub user_agent: String,
    pub identifier: String,
    pub total: Duration,
    pub backend: Option<Duration>,
}

/// The sending side, cheap to clone.
#[derive(Debug, Clone)]
pub struct AccessLog {
    tx: mpsc::Sender<Entry>,
}

impl AccessLog {
    /// Opens the target and starts the writer task.
    pub fn open(target: &AccessLogTarget) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let sink = Sink::open(target)?;
        tokio::spawn(write_loop(sink, rx));
        Ok(Self { tx })
    }

    /// Queues an entry; never waits.
    pub fn log(&self, entry: Entry) {
        if self.tx.try_send(entry).is_err() {
            tracing::warn!("access log queue full: entry dropped");
        }
    }
}

enum Sink {
    Stdout,
    File(PathBuf, std::io::BufWriter<std::fs::File>),
}

impl Sink {
    fn open(target: &AccessLogTarget) -> std::io::Result<Self> {
        Ok(match target {
            AccessLogTarget::Stdout => Sink::Stdout,
            AccessLogTarget::File(path) => Sink::File(path.clone(), open_append(path)?),
        })
    }

    fn write(&mut self, line: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Stdout => std::io::stdout().lock().write_all(line),
            Sink::File(_, f) => f.write_all(line),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Stdout => std::io::stdout().lock().flush(),
            Sink::File(_, f) => f.flush(),
        }
    }

    fn reopen(&mut self) {
        if let Sink::File(path, f) = self {
            let _ = f.flush();
            match open_append(path) {
                Ok(new) => {
                    *f = new;
                    tracing::info!(path = %path.display(), "access log reopened");
                }
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %e, "cannot reopen access log")
                }
            }
        }
    }
}

fn open_append(path: &PathBuf) -> std::io::Result<std::io::BufWriter<std::fs::File>> {
    // Hipache's default lives in /var/log/hipache/: create the folder.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    Ok(std::io::BufWriter::with_capacity(64 * 1024, f))
}

async fn write_loop(mut sink: Sink, mut rx: mpsc::Receiver<Entry>) {
    let mut usr1 =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1()).ok();
    let mut line = Vec::with_capacity(512);
    loop {
        let entry = tokio::select! {
            e = rx.recv() => match e { Some(e) => e, None => break },
            Some(()) = async { match usr1.as_mut() { Some(s) => s.recv().await, None => std::future::pending().await } } => {
                sink.reopen();
                continue;
            }
        };
        // Write everything queued, then flush once.
        let mut next = Some(entry);
        while let Some(e) = next {
            line.clear();
            format_entry(&mut line, &e);
            if let Err(err) = sink.write(&line) {
                tracing::error!(error = %err, "access log write failed");
            }
            next = rx.try_recv().ok();
        }
        if let Err(err) = sink.flush() {
            tracing::error!(error = %err, "access log flush failed");
        }
    }
    let _ = sink.flush();
}

/// Formats one line (with its newline) into `out`.
pub fn format_entry(out: &mut Vec<u8>, e: &Entry) {
    let t = OffsetDateTime::from(e.time);
    let _ = writeln!(
        out,
        "{} - - [{:02}/{}/{:04}:{:02}:{:02}:{:02} +0000] \"{} {} {:?}\" {} {} \"{}\" \"{}\" \"{}\" {:.3} {}",
        e.client,
        t.day(),
        month(t.month()),
        t.year(),
        t.hour(),
        t.minute(),
        t.second(),
        escape(&e.method),
        escape(&e.target),
        e.version,
        e.status,
        e.bytes,
        escape(&e.referer),
        escape(&e.user_agent),
        escape(&e.identifier),
        e.total.as_secs_f64(),
        match e.backend {
            Some(b) => format!("{:.3}", b.as_secs_f64()),
            None => "-".to_owned(),
        },
    );
}

fn month(m: time::Month) -> &'static str {
    use time::Month::*;
    match m {
        January => "Jan",
        February => "Feb",
        March => "Mar",
        April => "Apr",
        May => "May",
        June => "Jun",
        July => "Jul",
        August => "Aug",
        September => "Sep",
        October => "Oct",
        November => "Nov",
        December => "Dec",
    }
}

/// Quotes and control bytes from clients must not break the line format.
fn escape(s: &str) -> std::borrow::Cow<'_, str> {
    if s.bytes()
        .all(|b| b >= 0x20 && b != b'"' && b != b'\\' && b != 0x7f)
    {
        return s.into();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hipache_format() {
        let e = Entry {
            client: "127.0.0.1".parse().expect("ip"),
            time: SystemTime::UNIX_EPOCH + Duration::from_secs(1_392_511_390),
            method: "GET".into(),
            target: "/".into(),
            version: http::Version::HTTP_11,
            status: 200,
            bytes: 3236,
            referer: String::new(),
            user_agent: "curl/8 \"x\"".into(),
            identifier: "myapp".into(),
            total: Duration::from_millis(11),
            backend: Some(Duration::from_millis(9)),
        };
        let mut out = Vec::new();
        format_entry(&mut out, &e);
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            "127.0.0.1 - - [16/Feb/2014:00:43:10 +0000] \"GET / HTTP/1.1\" 200 3236 \"\" \"curl/8 \\\"x\\\"\" \"myapp\" 0.011 0.009\n"
        );
    }
}
