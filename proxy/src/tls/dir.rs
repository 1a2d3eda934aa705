//! The certificate directory (`server.tlsDir`): `<name>.pem` holding a
//! chain and its key, or a `<name>.crt` + `<name>.key` pair. The names
//! served are the certificate's SAN DNS names. Rescanned every
//! [`RESCAN_INTERVAL`]; a file is re-read only when its size or mtime
//! changed, so new, changed and removed certificates take effect without a
//! restart. A file that does not load is logged once and skipped, and the
//! certificate it held before keeps serving.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;

use super::certs::{self, Loaded};
use super::store::{CertStore, Names, Source};

/// How often the directory is scanned for changes.
pub const RESCAN_INTERVAL: Duration = Duration::from_secs(2);

/// What identifies one version of a file pair.
type Stamp = Vec<(u64, Option<SystemTime>)>;

struct Entry {
    stamp: Stamp,
    /// The last version that loaded (kept when a newer version is bad).
    loaded: Option<Loaded>,
}

/// The directory's state between scans.
pub struct DirSource {
    dir: PathBuf,
    provider: Arc<CryptoProvider>,
    /// By certificate file name (`a.pem`, `a.crt`), sorted.
    entries: BTreeMap<String, Entry>,
    warned_unreadable: bool,
}

impl DirSource {
    pub fn new(dir: PathBuf, provider: Arc<CryptoProvider>) -> Self {
        Self {
            dir,
            provider,
            entries: BTreeMap::new(),
            warned_unreadable: false,
        }
    }

    /// Loads the directory now, then rescans it in the background until
    /// the store is dropped.
    pub fn spawn(mut self, store: &Arc<CertStore>) {
        if let Some(names) = self.scan() {
            store.replace(Source::Dir, names);
        }
        let weak: Weak<CertStore> = Arc::downgrade(store);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RESCAN_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(store) = weak.upgrade() else { return };
                let dir = std::mem::take(&mut self);
                let (back, names) = tokio::task::spawn_blocking(move || {
                    let mut dir = dir;
                    let names = dir.scan();
                    (dir, names)
                })
                .await
                .unwrap_or_else(|_| (DirSource::default(), None));
                self = back;
                if let Some(names) = names {
                    store.replace(Source::Dir, names);
                }
            }
        });
    }

    /// Rescans; `Some(names)` when anything changed.
    pub fn scan(&mut self) -> Option<Names> {
        let files = match list(&self.dir) {
            Ok(f) => {
                self.warned_unreadable = false;
                f
            }
            Err(e) => {
                if !self.warned_unreadable {
                    tracing::warn!(dir = %self.dir.display(), error = %e, "cannot read the TLS certificate directory; keeping the certificates loaded");
                    self.warned_unreadable = true;
                }
                return None;
            }
        };
        let mut changed = false;
        let before = self.entries.len();
        self.entries.retain(|name, _| files.contains_key(name));
        if self.entries.len() != before {
            changed = true;
        }
        for (name, (cert, key)) in files {
            let stamp = stamp(&cert, &key);
            if self.entries.get(&name).is_some_and(|e| e.stamp == stamp) {
                continue;
            }
            let result = certs::read(&cert).and_then(|c| {
                let k = if key == cert {
                    c.clone()
                } else {
                    certs::read(&key)?
                };
                certs::load(&c, &k, &self.provider)
            });
            let entry = self.entries.entry(name.clone()).or_insert(Entry {
                stamp: Vec::new(),
                loaded: None,
            });
            entry.stamp = stamp;
            match result {
                Ok(loaded) if loaded.names.is_empty() => {
                    tracing::warn!(file = %cert.display(), "TLS certificate has no DNS name (subject alternative name): skipped");
                }
                Ok(loaded) => {
                    tracing::info!(file = %cert.display(), names = ?loaded.names, "TLS certificate loaded");
                    entry.loaded = Some(loaded);
                    changed = true;
                }
                Err(e) => {
                    let kept = if entry.loaded.is_some() {
                        "; the previous version keeps serving"
                    } else {
                        ""
                    };
                    tracing::warn!(file = %cert.display(), error = %e, "TLS certificate skipped{kept}");
                }
            }
        }
        changed.then(|| self.names())
    }

    /// Every name of every loaded file; for a name in two files, the first
    /// file by name wins.
    fn names(&self) -> Names {
        let mut names = Names::new();
        for loaded in self.entries.values().filter_map(|e| e.loaded.as_ref()) {
            for n in &loaded.names {
                names.entry(n.clone()).or_insert_with(|| loaded.key.clone());
            }
        }
        names
    }
}

impl Default for DirSource {
    fn default() -> Self {
        Self::new(
            PathBuf::new(),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
    }
}

/// Certificate files by name, with the file holding their key:
/// `x.pem` (itself), `x.crt` with `x.key`. A `.crt` without its `.key` is
/// ignored with a log line.
fn list(dir: &Path) -> std::io::Result<HashMap<String, (PathBuf, PathBuf)>> {
    let mut out = HashMap::new();
    for entry in std::fs::read_dir(dir)? {
        let Ok(entry) = entry else { continue };
        let path = entry.path();
        let Some(file) = path.file_name().and_then(|f| f.to_str()) else {
            continue;
        };
        if file.starts_with('.') || !path.is_file() {
            continue;
        }
        match path.extension().and_then(|e| e.to_str()) {
            Some("pem") => {
                out.insert(file.to_owned(), (path.clone(), path));
            }
            Some("crt") => {
                let key = path.with_extension("key");
                if key.is_file() {
                    out.insert(file.to_owned(), (path, key));
                } else {
                    tracing::debug!(file = %path.display(), "certificate without its .key file: not loaded yet");
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

fn stamp(cert: &Path, key: &Path) -> Stamp {
    [cert, key]
        .iter()
        .map(|p| match std::fs::metadata(p) {
            Ok(m) => (m.len(), m.modified().ok()),
            Err(_) => (0, None),
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn write_cert(dir: &Path, file: &str, names: &[&str]) {
        let c = rcgen::generate_simple_self_signed(
            names.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
        .unwrap();
        let text = format!("{}{}", c.cert.pem(), c.signing_key.serialize_pem());
        std::fs::write(dir.join(file), text).unwrap();
    }

    #[test]
    fn scans_adds_changes_and_removes() {
        let tmp = tempfile::tempdir().unwrap();
        let mut src = DirSource::new(
            tmp.path().to_owned(),
            Arc::new(rustls::crypto::ring::default_provider()),
        );
        assert!(src.scan().is_none());
        write_cert(tmp.path(), "a.pem", &["a.test", "*.a.test"]);
        let names = src.scan().unwrap();
        assert_eq!(names.len(), 2);
        assert!(src.scan().is_none(), "unchanged files are not re-read");
        // A bad new version keeps the old one.
        std::fs::write(tmp.path().join("a.pem"), "not a certificate at all").unwrap();
        assert!(src.scan().is_none());
        assert_eq!(src.names().len(), 2);
        // A .crt without .key is ignored until the key arrives.
        let c = rcgen::generate_simple_self_signed(vec!["b.test".to_owned()]).unwrap();
        std::fs::write(tmp.path().join("b.crt"), c.cert.pem()).unwrap();
        assert!(src.scan().is_none());
        std::fs::write(tmp.path().join("b.key"), c.signing_key.serialize_pem()).unwrap();
        assert!(src.scan().unwrap().contains_key("b.test"));
        std::fs::remove_file(tmp.path().join("a.pem")).unwrap();
        let names = src.scan().unwrap();
        assert_eq!(names.keys().collect::<Vec<_>>(), ["b.test"]);
    }
}
