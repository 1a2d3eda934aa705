//! What a lookup finds, and the one rule every store finds it by: from
//! the candidate frontends read for a request host (exact, wildcards,
//! catch-all) to the route that serves its path.

use std::sync::Arc;

use hipache_schema::entry::Selection;
use hipache_schema::{Frontend, PathMatch};

use crate::error::ProxyError;
use crate::metrics::LookupOutcome;

/// The result of a successful lookup.
#[derive(Debug, Clone)]
pub struct Route {
    /// The matched frontend host (`a.example.com`, `*.example.com`, `*`).
    pub frontend_host: String,
    pub frontend: Arc<Frontend>,
    /// The path rule whose backends serve this request (`None`: the plain
    /// entries).
    pub group: Option<PathMatch>,
    /// Positions marked dead for this request: the union of
    /// `dead:<request host>` and `dead:<frontend host>`.
    pub dead: Vec<usize>,
}

impl Route {
    pub fn is_dead(&self, position: usize) -> bool {
        self.dead.contains(&position)
    }
}

/// One candidate as read from the store: the frontend host, its decoded
/// list (absent or empty: `None`), and its own dead set.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub host: String,
    pub frontend: Option<Arc<Frontend>>,
    pub dead: Vec<usize>,
}

/// The lookup rule shared by every store: the first candidate whose list
/// is non-empty and has backends for this path wins; its dead marks are
/// unioned with the request host's. A wildcard frontend written by the
/// syncer covers one label only (Kubernetes' rule; see `Frontend::covers`).
pub fn resolve(
    host: &str,
    candidates: &[Candidate],
    request_dead: &[usize],
    path: &str,
) -> Option<Route> {
    for c in candidates {
        let Some(frontend) = &c.frontend else {
            continue;
        };
        if !frontend.covers(&c.host, host) {
            continue;
        }
        let group = match frontend.select(path) {
            Selection::NoMatch => continue,
            Selection::Group(g) => g.cloned(),
        };
        let mut dead = c.dead.clone();
        for &p in request_dead {
            if !dead.contains(&p) {
                dead.push(p);
            }
        }
        return Some(Route {
            frontend_host: c.host.clone(),
            frontend: frontend.clone(),
            group,
            dead,
        });
    }
    None
}

/// Logs the backends of a frontend that do not parse (they are skipped).
pub(super) fn log_invalid_backends(frontend_host: &str, frontend: &Frontend) {
    for b in frontend.backends.iter().filter(|b| b.is_invalid()) {
        tracing::warn!(frontend = frontend_host, backend = %b.raw, "invalid backend URL skipped");
    }
}

/// How a lookup ended, for the metrics.
pub fn outcome(host: &str, result: &Result<Option<Route>, ProxyError>) -> LookupOutcome {
    match result {
        Err(_) => LookupOutcome::Error,
        Ok(None) => LookupOutcome::NotFound,
        Ok(Some(r)) if r.frontend_host == "*" => LookupOutcome::CatchAll,
        Ok(Some(r)) if r.frontend_host == host => LookupOutcome::Exact,
        Ok(Some(_)) => LookupOutcome::Wildcard,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(host: &str, list: &[&str], dead: &[usize]) -> Candidate {
        Candidate {
            host: host.into(),
            frontend: Frontend::decode(list).map(Arc::new),
            dead: dead.to_vec(),
        }
    }

    #[test]
    fn first_non_empty_wins_and_dead_sets_union() {
        let r = resolve(
            "a.x.com",
            &[
                cand("a.x.com", &[], &[]),
                cand("*.x.com", &["w", "http://a", "http://b"], &[0]),
                cand("*", &["all"], &[]),
            ],
            &[1, 0],
            "/",
        )
        .expect("route");
        assert_eq!(r.frontend_host, "*.x.com");
        assert_eq!(r.dead, [0, 1]);
    }

    #[test]
    fn path_only_frontend_falls_through() {
        let r = resolve(
            "a.com",
            &[
                cand("a.com", &["k8s:x/y", "/api http://a"], &[]),
                cand("*", &["all", "http://c"], &[]),
            ],
            &[],
            "/web",
        )
        .expect("route");
        assert_eq!(r.frontend_host, "*");
    }
}
