//! `routes resolve HOST [PATH]`: what a request would get, found by the
//! proxy's own route store and lookup (the same candidates, covering rules,
//! path normalisation and dead marks as a request), not by a copy of them.

use std::sync::Arc;

use http::{HeaderName, HeaderValue, Method, Request};
use serde_json::{json, Value};

use super::show::table;
use super::ToolError;
use crate::cli::Output;
use crate::config::Config;
use crate::error::ProxyError;
use crate::metrics::Metrics;
use crate::routing::{outcome, Resolved, Route, RouteStore, Served, Table};
use hipache_schema::routes::{PathCond, RequestView};

/// The request the lookup sees.
fn request(
    host: &str,
    path: &str,
    method: &str,
    headers: &[String],
) -> Result<Request<()>, ToolError> {
    let refused = |what: String| ToolError::Refused(what);
    let method = Method::from_bytes(method.as_bytes())
        .map_err(|_| refused(format!("method {method:?} is not a method")))?;
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .body(())
        .map_err(|e| refused(format!("path {path:?}: {e}")))?;
    for h in headers {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| refused(format!("header {h:?}: expected `NAME: VALUE`")))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| refused(format!("header name {name:?}")))?;
        let value = HeaderValue::from_str(value.trim())
            .map_err(|_| refused(format!("header value of {name}")))?;
        req.headers_mut().append(name, value);
    }
    req.headers_mut().insert(
        http::header::HOST,
        HeaderValue::from_str(host).map_err(|_| refused(format!("host {host:?}")))?,
    );
    Ok(req)
}

/// How the served part of a table reads.
fn served(route: &Route) -> String {
    if let Some((_, rule, matched)) = route.rule() {
        let Served::Rule(s) = &route.served else {
            return String::new();
        };
        let name = rule
            .name
            .as_deref()
            .map(|n| format!(" {n:?}"))
            .unwrap_or_default();
        let path = match &matched.path {
            PathCond::Exact(p) => format!("path = {p}"),
            PathCond::Prefix(p) => format!("path prefix {}", p.path),
            PathCond::Regex(r, _) => format!("path ~ {r}"),
        };
        let mut conds = vec![path];
        if let Some(m) = &matched.method {
            conds.push(format!("method {m}"));
        }
        if !matched.headers.is_empty() {
            conds.push(format!("{} header condition(s)", matched.headers.len()));
        }
        if !matched.query.is_empty() {
            conds.push(format!("{} query condition(s)", matched.query.len()));
        }
        return format!(
            "rule {}{name}, match {} ({})",
            s.rule,
            s.matched,
            conds.join(", ")
        );
    }
    match &route.served {
        Served::Group(Some(p)) => format!("the list's path rule {}", p.path),
        _ => "the list's plain entries (every path)".to_owned(),
    }
}

/// The backends that may serve the request: position, element, weight
/// (`None` for a list's), dead.
fn candidates(route: &Route) -> Vec<(usize, String, Option<u32>, bool)> {
    let weights: Vec<u32> = match (&route.table, route.rule()) {
        (Table::Document(d), Some((_, rule, _))) => d.rule_backends(rule).map(|(_, w)| w).collect(),
        _ => Vec::new(),
    };
    route.with_candidates(|it| {
        it.enumerate()
            .map(|(i, b)| {
                (
                    b.position,
                    b.raw.clone(),
                    weights.get(i).copied(),
                    route.is_dead(b.position),
                )
            })
            .collect()
    })
}

pub async fn run(
    config: &Config,
    raw_host: &str,
    path: &str,
    method: &str,
    headers: &[String],
    out: Output,
) -> Result<(), ToolError> {
    let host = super::redis::host(raw_host)?;
    let req = request(&host, path, method, headers)?;
    let target =
        crate::forward::target::check(&req).map_err(|e| ToolError::Refused(e.to_string()))?;
    let view = RequestView {
        method: req.method(),
        path: &target.path,
        query: req.uri().query(),
        headers: req.headers(),
    };
    let metrics = Arc::new(Metrics::new(0));
    let store = RouteStore::open(config, metrics)
        .await
        .map_err(ToolError::Failed)?;
    let found = store.lookup(&host, &view).await;
    let how = outcome(&host, &found).label();
    let route = match found {
        Ok(Resolved::Found(route)) => route,
        Ok(Resolved::NotCovered) => {
            return Err(ToolError::Refused(format!(
                "{host}: a frontend exists, but no rule or path of it covers {method} {path} (404)"
            )))
        }
        Ok(Resolved::Unknown) => {
            return Err(ToolError::Refused(format!(
                "{host}: no frontend (no exact, wildcard or * key)"
            )))
        }
        Err(ProxyError::BadDocument(e)) => {
            return Err(ToolError::Refused(format!(
                "{host}: its route document is refused, requests get 503: {e}"
            )))
        }
        Err(e) => return Err(ToolError::Failed(format!("{host}: {e}"))),
    };
    let backends = candidates(&route);
    let kind = match route.table {
        Table::List(_) => "list",
        Table::Document(_) => "document",
    };
    if out.json {
        let list: Vec<Value> = backends
            .iter()
            .map(|(p, b, w, d)| json!({"position": p, "backend": b, "weight": w, "dead": d}))
            .collect();
        let v = json!({
            "host": host,
            "lookup": how,
            "frontend": route.frontend_host,
            "identifier": route.table.identifier(),
            "kind": kind,
            "served_by": served(&route),
            "backends": list,
            "dead": route.dead,
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(());
    }
    println!("request:     {method} {host}{path}");
    println!(
        "frontend:    {} ({how} match, its {kind})",
        route.frontend_host
    );
    println!("identifier:  {}", route.table.identifier());
    println!("served by:   {}", served(&route));
    let rows: Vec<Vec<String>> = backends
        .iter()
        .map(|(p, b, w, d)| {
            vec![
                p.to_string(),
                b.clone(),
                w.map(|w| w.to_string()).unwrap_or_else(|| "-".to_owned()),
                if *d { "dead: skipped" } else { "live" }.to_owned(),
            ]
        })
        .collect();
    table(&["POSITION", "BACKEND", "WEIGHT", "STATE"], &rows);
    if backends.iter().all(|(_, _, _, dead)| *dead) {
        println!("every candidate is marked dead: the request gets 502");
    }
    Ok(())
}
