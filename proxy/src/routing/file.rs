//! The routes-file store: frontends from a YAML file, reloaded when it
//! changes; dead marks kept in memory with their TTL.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use hipache_schema::routes_file::RoutesFile;
use hipache_schema::{candidates, Frontend};
use parking_lot::{Mutex, RwLock};

use super::deadmark::DeadMark;
use super::route::{log_invalid_backends, resolve, Candidate, Route};
use crate::metrics::Metrics;

/// How often the file's modification time is checked.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

type Frontends = HashMap<String, Arc<Frontend>>;

pub struct FileStore {
    state: Arc<State>,
    metrics: Arc<Metrics>,
}

struct State {
    path: PathBuf,
    frontends: RwLock<Arc<Frontends>>,
    dead: Mutex<HashMap<String, (Vec<usize>, Instant)>>,
    ttl: Duration,
}

impl FileStore {
    /// Loads the file (an error if it cannot be read or parsed) and starts
    /// watching it.
    pub fn open(path: PathBuf, ttl: Duration, metrics: Arc<Metrics>) -> Result<Self, String> {
        let frontends = load(&path)?;
        tracing::info!(path = %path.display(), frontends = frontends.len(), "routes file loaded");
        let state = Arc::new(State {
            path,
            frontends: RwLock::new(Arc::new(frontends)),
            dead: Mutex::default(),
            ttl,
        });
        tokio::spawn(watch(Arc::downgrade(&state)));
        Ok(Self { state, metrics })
    }

    pub fn lookup(&self, host: &str, path: &str) -> Option<Route> {
        let frontends = self.state.frontends.read().clone();
        let now = Instant::now();
        let dead = self.state.dead.lock();
        let dead_of = |h: &str| match dead.get(h) {
            Some((positions, expires)) if *expires > now => positions.clone(),
            _ => Vec::new(),
        };
        let request_dead = dead_of(host);
        let cands: Vec<Candidate> = candidates(host)
            .into_iter()
            .map(|h| Candidate {
                frontend: frontends.get(&h).cloned(),
                dead: dead_of(&h),
                host: h,
            })
            .collect();
        resolve(host, &cands, &request_dead, path)
    }

    pub fn mark_dead(&self, mark: DeadMark) {
        tracing::info!(host = %mark.host, backend = %mark.backend, position = mark.position, "backend marked dead");
        self.metrics.dead_mark("written");
        let mut dead = self.state.dead.lock();
        let now = Instant::now();
        dead.retain(|_, (_, expires)| *expires > now);
        let entry = dead.entry(mark.host).or_insert_with(|| (Vec::new(), now));
        if !entry.0.contains(&mark.position) {
            entry.0.push(mark.position);
        }
        entry.1 = now + self.state.ttl;
    }
}

fn load(path: &PathBuf) -> Result<Frontends, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let file: RoutesFile =
        serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = HashMap::new();
    for (host, list) in file.normalized() {
        if let Some(f) = Frontend::decode(&list) {
            log_invalid_backends(&host, &f);
            out.insert(host, Arc::new(f));
        }
    }
    Ok(out)
}

fn modified(path: &PathBuf) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Reloads the file when its modification time changes. A file that no
/// longer parses is logged and the previous routes keep serving.
async fn watch(state: std::sync::Weak<State>) {
    let mut last = state.upgrade().and_then(|s| modified(&s.path));
    loop {
        tokio::time::sleep(POLL_INTERVAL).await;
        let Some(state) = state.upgrade() else { return };
        let now = modified(&state.path);
        if now == last {
            continue;
        }
        last = now;
        match load(&state.path) {
            Ok(frontends) => {
                tracing::info!(path = %state.path.display(), frontends = frontends.len(), "routes file reloaded");
                *state.frontends.write() = Arc::new(frontends);
            }
            Err(e) => tracing::error!(error = %e, "routes file not reloaded; previous routes kept"),
        }
    }
}
