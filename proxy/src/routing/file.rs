//! The routes-file store: frontends and route documents from a YAML file,
//! reloaded when it changes; dead marks kept in memory with their TTL.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use hipache_schema::routes::RequestView;
use hipache_schema::routes_file::RoutesFile;
use hipache_schema::{candidates, Frontend};
use parking_lot::{Mutex, RwLock};

use super::deadmark::DeadMark;
use super::documents::Documents;
use super::route::{log_invalid_backends, resolve, Candidate, Resolved, Table};
use crate::error::ProxyError;
use crate::metrics::Metrics;

/// How often the file's modification time is checked.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Each host's routes: its document (or why it was refused), else its list.
type Frontends = HashMap<String, Result<Table, Arc<str>>>;

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
        let frontends = load(&path, &metrics)?;
        tracing::info!(path = %path.display(), frontends = frontends.len(), "routes file loaded");
        let state = Arc::new(State {
            path,
            frontends: RwLock::new(Arc::new(frontends)),
            dead: Mutex::default(),
            ttl,
        });
        tokio::spawn(watch(Arc::downgrade(&state), metrics.clone()));
        Ok(Self { state, metrics })
    }

    pub fn lookup(&self, host: &str, req: &RequestView<'_>) -> Result<Resolved, ProxyError> {
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
            .filter_map(|h| {
                Some(Candidate {
                    table: frontends.get(&h)?.clone(),
                    dead: dead_of(&h),
                    host: h,
                })
            })
            .collect();
        resolve(host, &cands, &request_dead, req)
    }

    /// The first `limit` frontend hosts containing `needle`, sorted, and
    /// whether that is all of them.
    pub fn search(&self, needle: &str, limit: usize) -> (Vec<String>, bool) {
        let frontends = self.state.frontends.read().clone();
        let mut hosts: Vec<String> = frontends
            .keys()
            .filter(|h| h.contains(needle))
            .cloned()
            .collect();
        hosts.sort();
        let complete = hosts.len() <= limit;
        hosts.truncate(limit);
        (hosts, complete)
    }

    /// A frontend host's routes, or why its document was refused.
    pub fn frontend(&self, host: &str) -> Option<Result<Table, Arc<str>>> {
        self.state.frontends.read().get(host).cloned()
    }

    /// A host's dead positions and how long they stay dead.
    pub fn dead(&self, host: &str) -> (Vec<usize>, Option<Duration>) {
        let now = Instant::now();
        match self.state.dead.lock().get(host) {
            Some((positions, expires)) if *expires > now => {
                (positions.clone(), Some(*expires - now))
            }
            _ => (Vec::new(), None),
        }
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

/// Reads the file. A route document that does not validate is not a file
/// error: its host answers 503, as with Redis, and the other hosts serve.
fn load(path: &PathBuf, metrics: &Arc<Metrics>) -> Result<Frontends, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let file: RoutesFile =
        serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = HashMap::new();
    for (host, list) in file.normalized() {
        if let Some(f) = Frontend::decode(&list) {
            log_invalid_backends(&host, &f);
            out.insert(host, Ok(Table::List(Arc::new(f))));
        }
    }
    let documents = Documents::new(metrics.clone());
    for (host, json) in file.documents() {
        let table = documents.table(&host, json.as_bytes());
        out.insert(host, table);
    }
    Ok(out)
}

fn modified(path: &PathBuf) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Reloads the file when its modification time changes. A file that no
/// longer parses is logged and the previous routes keep serving.
async fn watch(state: std::sync::Weak<State>, metrics: Arc<Metrics>) {
    let mut last = state.upgrade().and_then(|s| modified(&s.path));
    loop {
        tokio::time::sleep(POLL_INTERVAL).await;
        let Some(state) = state.upgrade() else { return };
        let now = modified(&state.path);
        if now == last {
            continue;
        }
        last = now;
        match load(&state.path, &metrics) {
            Ok(frontends) => {
                tracing::info!(path = %state.path.display(), frontends = frontends.len(), "routes file reloaded");
                *state.frontends.write() = Arc::new(frontends);
            }
            Err(e) => tracing::error!(error = %e, "routes file not reloaded; previous routes kept"),
        }
    }
}
