//! What a lookup finds, and the one rule every store finds it by: from
//! the candidate frontends read for a request host (exact, wildcards,
//! catch-all) to the route that serves the request.

use std::sync::Arc;

use hipache_schema::entry::Selection;
use hipache_schema::routes::{Match, RequestView, RouteDocument, Rule, Selected};
use hipache_schema::{BackendEntry, Frontend, PathMatch};

use crate::error::ProxyError;
use crate::metrics::LookupOutcome;

/// The routes of one frontend host: Hipache's list, or a route document.
#[derive(Debug, Clone)]
pub enum Table {
    List(Arc<Frontend>),
    Document(Arc<RouteDocument>),
}

impl Table {
    /// Element 0 of a list, the `id` of a document.
    pub fn identifier(&self) -> &str {
        match self {
            Table::List(f) => &f.identifier,
            Table::Document(d) => &d.id,
        }
    }

    /// Every backend, by position (what `dead:` sets count).
    pub fn backends(&self) -> &[BackendEntry] {
        match self {
            Table::List(f) => &f.backends,
            Table::Document(d) => &d.backends,
        }
    }
}

/// Which backends of its table serve a request.
#[derive(Debug, Clone)]
pub enum Served {
    /// A list's path group (`None`: the plain entries).
    Group(Option<PathMatch>),
    /// A document's rule, and the match of it that held.
    Rule(Selected),
}

/// The result of a successful lookup.
#[derive(Debug, Clone)]
pub struct Route {
    /// The matched frontend host (`a.example.com`, `*.example.com`, `*`).
    pub frontend_host: String,
    pub table: Table,
    pub served: Served,
    /// Positions marked dead for this request: the union of
    /// `dead:<request host>` and `dead:<frontend host>`.
    pub dead: Vec<usize>,
}

impl Route {
    pub fn is_dead(&self, position: usize) -> bool {
        self.dead.contains(&position)
    }

    /// The document's rule serving this request, with the match that held.
    pub fn rule(&self) -> Option<(&RouteDocument, &Rule, &Match)> {
        match (&self.table, &self.served) {
            (Table::Document(d), Served::Rule(s)) => {
                let rule = &d.rules[s.rule];
                Some((d, rule, &rule.matches[s.matched]))
            }
            _ => None,
        }
    }

    /// Runs `f` over the backends that may serve this request, in position
    /// order (no allocation: the iterator lives on the stack).
    pub fn with_candidates<R>(
        &self,
        f: impl FnOnce(&mut dyn Iterator<Item = &BackendEntry>) -> R,
    ) -> R {
        match (&self.table, &self.served, self.rule()) {
            (Table::List(l), Served::Group(g), _) => f(&mut l.group(g.as_ref())),
            (_, _, Some((d, rule, _))) => f(&mut d.rule_backends(rule).map(|(b, _)| b)),
            _ => f(&mut std::iter::empty()),
        }
    }
}

/// One candidate as read from the store: the frontend host, its routes
/// (or why its document was refused), and its own dead set. Hosts with
/// neither a list nor a document are not candidates.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub host: String,
    pub table: Result<Table, Arc<str>>,
    pub dead: Vec<usize>,
}

/// How a lookup ended.
#[derive(Debug)]
pub enum Resolved {
    Found(Route),
    /// Some frontend exists for the host, but none covers this request.
    NotCovered,
    /// No frontend at all for the host.
    Unknown,
}

/// The lookup rule shared by every store: the first candidate whose table
/// covers the request wins; its dead marks are unioned with the request
/// host's. A wildcard frontend written by the syncer covers one label only
/// (Kubernetes' rule; see `Frontend::covers`). A refused document stops
/// the lookup with its error: routing around a broken policy (to a
/// wildcard or `*`) could expose what it guarded.
pub fn resolve(
    host: &str,
    candidates: &[Candidate],
    request_dead: &[usize],
    req: &RequestView<'_>,
) -> Result<Resolved, ProxyError> {
    let mut known = false;
    for c in candidates {
        let table = c
            .table
            .as_ref()
            .map_err(|e| ProxyError::BadDocument(e.clone()))?;
        let served = match table {
            Table::List(frontend) => {
                if !frontend.covers(&c.host, host) {
                    continue;
                }
                known = true;
                match frontend.select(req.path) {
                    Selection::NoMatch => continue,
                    Selection::Group(g) => Served::Group(g.cloned()),
                }
            }
            Table::Document(d) => {
                known = true;
                match d.select(req) {
                    None => continue,
                    Some(s) => Served::Rule(s),
                }
            }
        };
        let mut dead = c.dead.clone();
        for &p in request_dead {
            if !dead.contains(&p) {
                dead.push(p);
            }
        }
        return Ok(Resolved::Found(Route {
            frontend_host: c.host.clone(),
            table: table.clone(),
            served,
            dead,
        }));
    }
    Ok(match known {
        true => Resolved::NotCovered,
        false => Resolved::Unknown,
    })
}

/// Logs the backends of a frontend that do not parse (they are skipped).
pub(super) fn log_invalid_backends(frontend_host: &str, frontend: &Frontend) {
    for b in frontend.backends.iter().filter(|b| b.is_invalid()) {
        tracing::warn!(frontend = frontend_host, backend = %b.raw, "invalid backend URL skipped");
    }
}

/// How a lookup ended, for the metrics.
pub fn outcome(host: &str, result: &Result<Resolved, ProxyError>) -> LookupOutcome {
    match result {
        Err(_) => LookupOutcome::Error,
        Ok(Resolved::Unknown | Resolved::NotCovered) => LookupOutcome::NotFound,
        Ok(Resolved::Found(r)) if r.frontend_host == "*" => LookupOutcome::CatchAll,
        Ok(Resolved::Found(r)) if r.frontend_host == host => LookupOutcome::Exact,
        Ok(Resolved::Found(_)) => LookupOutcome::Wildcard,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(host: &str, list: &[&str], dead: &[usize]) -> Candidate {
        Candidate {
            host: host.into(),
            table: Ok(Table::List(Arc::new(Frontend::decode(list).expect("list")))),
            dead: dead.to_vec(),
        }
    }

    fn doc(host: &str, json: &str) -> Candidate {
        let d = hipache_schema::routes::decode(json.as_bytes()).expect("document");
        Candidate {
            host: host.into(),
            table: Ok(Table::Document(Arc::new(d))),
            dead: Vec::new(),
        }
    }

    fn get(
        path: &str,
        f: impl FnOnce(&RequestView<'_>) -> Result<Resolved, ProxyError>,
    ) -> Result<Resolved, ProxyError> {
        let headers = http::HeaderMap::new();
        f(&RequestView {
            method: &http::Method::GET,
            path,
            query: None,
            headers: &headers,
        })
    }

    fn found(r: Result<Resolved, ProxyError>) -> Route {
        match r {
            Ok(Resolved::Found(r)) => r,
            other => panic!("not found: {other:?}"),
        }
    }

    #[test]
    fn first_covering_candidate_wins_and_dead_sets_union() {
        let cands = [
            cand("*.x.com", &["w", "http://a", "http://b"], &[0]),
            cand("*", &["all"], &[]),
        ];
        let r = found(get("/", |v| resolve("a.x.com", &cands, &[1, 0], v)));
        assert_eq!(r.frontend_host, "*.x.com");
        assert_eq!(r.dead, [0, 1]);
    }

    #[test]
    fn unmatched_paths_fall_through_then_are_not_covered() {
        let cands = [
            cand("a.com", &["k8s:x/y", "/api http://a"], &[]),
            cand("*", &["all", "http://c"], &[]),
        ];
        let r = found(get("/web", |v| resolve("a.com", &cands, &[], v)));
        assert_eq!(r.frontend_host, "*");
        let only = [cand("a.com", &["k8s:x/y", "/api http://a"], &[])];
        assert!(matches!(
            get("/web", |v| resolve("a.com", &only, &[], v)),
            Ok(Resolved::NotCovered)
        ));
        assert!(matches!(
            get("/", |v| resolve("a.com", &[], &[], v)),
            Ok(Resolved::Unknown)
        ));
    }

    #[test]
    fn documents_serve_rules_and_fall_through_like_lists() {
        let cands = [
            doc(
                "a.com",
                r#"{"id":"d","rules":[{"matches":[{"path":{"value":"/api"}}],"backends":[{"url":"http://a:1"},{"url":"http://b:2"}]}]}"#,
            ),
            cand("*", &["all", "http://c"], &[]),
        ];
        let r = found(get("/api/x", |v| resolve("a.com", &cands, &[], v)));
        assert_eq!(r.table.identifier(), "d");
        assert_eq!(r.with_candidates(|c| c.count()), 2);
        assert!(r.rule().is_some());
        let r = found(get("/web", |v| resolve("a.com", &cands, &[], v)));
        assert_eq!(r.frontend_host, "*");
    }

    #[test]
    fn a_refused_document_fails_closed() {
        let cands = [
            Candidate {
                host: "a.com".into(),
                table: Err("/rules: required".into()),
                dead: Vec::new(),
            },
            cand("*", &["all", "http://c"], &[]),
        ];
        let e = get("/", |v| resolve("a.com", &cands, &[], v)).expect_err("refused");
        assert_eq!(e.status(), http::StatusCode::SERVICE_UNAVAILABLE);
    }
}
