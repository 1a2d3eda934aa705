//! The syncer's status page, on the admin listener only (`--status-page`,
//! optionally `--status-token`): the hosts it writes, the Ingress behind
//! each path, and the problems it reports as Events, from the last pass
//! written to Redis. Hand-written HTML like the proxy's page (one page, no
//! template engine, nothing loaded from elsewhere); a small inline script
//! reloads its content every 2 s. `/status/api/hosts?q=` answers the same
//! data as JSON.
//!
//! Gateway API routes are not read by this syncer yet; the page says so.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::UNIX_EPOCH;

use bytes::Bytes;
use hipache_schema::status_page::{self as shared_page, escape_html as escape, Access};
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use serde::Serialize;
use tokio::sync::watch;

use crate::status::Outcome;

/// Most host rows a page or an answer lists; a search narrows them.
pub const MAX_HOSTS: usize = 500;
/// Most Events a page lists.
pub const MAX_EVENTS: usize = 1000;
/// What the page says of Gateway API.
pub const GATEWAY_API: &str =
    "Gateway API routes (HTTPRoute, GRPCRoute) are not read by this syncer yet: only networking.k8s.io/v1 Ingress.";

/// What the page reads: the last written pass and whether this replica
/// leads.
pub struct StatusPage {
    token: Option<String>,
    outcome: watch::Receiver<Outcome>,
    leader: watch::Receiver<bool>,
    identity: String,
}

/// What the page shows, as data (the HTML renders it, the JSON endpoint
/// serializes it).
#[derive(Debug, Serialize)]
pub struct View {
    pub identity: String,
    pub leader: bool,
    /// Unix seconds of the last pass written to Redis (this replica's).
    pub written_at: Option<u64>,
    pub query: String,
    /// Hosts matching the query, at most [`MAX_HOSTS`].
    pub hosts: Vec<HostView>,
    /// Every host written, and how many match the query.
    pub hosts_total: usize,
    pub hosts_matching: usize,
    pub ingresses: usize,
    pub events: Vec<EventView>,
    pub events_total: usize,
    pub gateway_api: &'static str,
}

#[derive(Debug, Serialize)]
pub struct HostView {
    pub host: String,
    pub routes: Vec<RouteView>,
}

#[derive(Debug, Serialize)]
pub struct RouteView {
    pub path: String,
    /// `namespace/name`.
    pub ingress: String,
    pub backends: usize,
    /// The reasons of the Events of that Ingress.
    pub problems: Vec<&'static str>,
}

#[derive(Debug, Serialize)]
pub struct EventView {
    pub ingress: String,
    pub reason: &'static str,
    pub message: String,
}

impl StatusPage {
    pub fn new(
        token: Option<String>,
        outcome: watch::Receiver<Outcome>,
        leader: watch::Receiver<bool>,
        identity: String,
    ) -> Self {
        Self {
            token,
            outcome,
            leader,
            identity,
        }
    }

    /// Whether `path` is the page's.
    pub fn is_page_path(path: &str) -> bool {
        path == "/status" || path.starts_with("/status/")
    }

    /// Answers a request for [`StatusPage::is_page_path`].
    pub fn answer<B>(&self, req: &Request<B>) -> Response<Full<Bytes>> {
        let query = req.uri().query();
        let access = shared_page::check(self.token.as_deref(), req.headers(), query);
        if access == Access::Denied {
            let mut resp = plain(StatusCode::UNAUTHORIZED, "unauthorized\n");
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"hipache-syncer status\""),
            );
            return resp;
        }
        let q = query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .find_map(|p| p.strip_prefix("q="))
            .map(|v| {
                let v = v.replace('+', " ");
                percent_decode(&v)
            })
            .unwrap_or_default();
        let mut resp = match req.uri().path() {
            "/status" | "/status/" => {
                let mut resp = body(html(&self.view(&q)), "text/html; charset=utf-8");
                resp.headers_mut().insert(
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static(shared_page::CONTENT_SECURITY_POLICY),
                );
                resp
            }
            "/status/api/hosts" => match serde_json::to_vec(&self.view(&q)) {
                Ok(json) => body(json, "application/json"),
                Err(e) => plain(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
            },
            _ => plain(
                StatusCode::NOT_FOUND,
                "not found: /status, /status/api/hosts?q=\n",
            ),
        };
        shared_page::finish(resp.headers_mut(), access, self.token.as_deref());
        resp
    }

    /// The view of the last pass, hosts filtered by `q` (contained,
    /// case-insensitive).
    pub fn view(&self, q: &str) -> View {
        let outcome = self.outcome.borrow().clone();
        let needle = q.trim().to_ascii_lowercase();
        let mut problems: BTreeMap<String, Vec<&'static str>> = BTreeMap::new();
        for r in &outcome.reports {
            let reasons = problems.entry(r.ingress.to_string()).or_default();
            if !reasons.contains(&r.kind.reason()) {
                reasons.push(r.kind.reason());
            }
        }
        let matching: Vec<_> = outcome
            .sources
            .iter()
            .filter(|(host, _)| host.contains(&needle))
            .collect();
        let hosts = matching
            .iter()
            .take(MAX_HOSTS)
            .map(|(host, routes)| HostView {
                host: (*host).clone(),
                routes: routes
                    .iter()
                    .map(|r| {
                        let ingress = r.ingress.to_string();
                        RouteView {
                            path: r.path.clone(),
                            problems: problems.get(&ingress).cloned().unwrap_or_default(),
                            ingress,
                            backends: r.backends,
                        }
                    })
                    .collect(),
            })
            .collect();
        View {
            identity: self.identity.clone(),
            leader: *self.leader.borrow(),
            written_at: outcome
                .written_at
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_secs()),
            query: q.to_owned(),
            hosts,
            hosts_total: outcome.sources.len(),
            hosts_matching: matching.len(),
            ingresses: outcome.ingresses.len(),
            events: outcome
                .reports
                .iter()
                .take(MAX_EVENTS)
                .map(|r| EventView {
                    ingress: r.ingress.to_string(),
                    reason: r.kind.reason(),
                    message: r.message.clone(),
                })
                .collect(),
            events_total: outcome.reports.len(),
            gateway_api: GATEWAY_API,
        }
    }
}

fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

fn plain(status: StatusCode, text: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut resp = body(text, "text/plain; charset=utf-8");
    *resp.status_mut() = status;
    resp
}

fn body(content: impl Into<Bytes>, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(content.into()));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}\
h1{font-size:1.4em;margin:0}h2{font-size:1.15em;margin-top:1.5em}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}\
th{background:#f3f3f3}.ok{color:#070}.bad{color:#b00;font-weight:bold}.muted{color:#777}\
header{display:flex;gap:1em;align-items:baseline}input[type=search]{width:22em}";

/// Reloads the page's content every 2 s (the server renders it; the
/// script swaps `#main` for the new one).
const SCRIPT: &str = r#"
(function () {
  setInterval(function () {
    fetch(location.href).then(function (r) { return r.text(); }).then(function (t) {
      var next = new DOMParser().parseFromString(t, 'text/html').getElementById('main');
      var main = document.getElementById('main');
      if (!next || !main) return;
      main.replaceWith(next);
      document.getElementById('updated').textContent = 'updated ' + new Date().toLocaleTimeString();
    }).catch(function () {});
  }, 2000);
})();
"#;

fn html(v: &View) -> String {
    let mut h = String::with_capacity(16 * 1024);
    let _ = write!(
        h,
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>hipache-syncer status</title>\
         <style>{STYLE}</style></head><body><header><h1>hipache-syncer status</h1>\
         <span class=muted>{}</span><span id=updated class=muted>rendered by the server</span></header><main id=main>",
        escape(&v.identity)
    );
    let _ = write!(
        h,
        "<p id=leadership class={}>{}</p>",
        if v.leader { "ok" } else { "muted" },
        if v.leader {
            "This replica leads: it writes Redis, statuses and Events."
        } else {
            "This replica is a follower: it writes nothing; the leader's page shows what is written."
        }
    );
    let _ = write!(
        h,
        "<p id=summary>{} host(s) written for {} Ingress(es), {} problem(s) reported; last written {}</p>",
        v.hosts_total,
        v.ingresses,
        v.events_total,
        v.written_at
            .map_or("never (by this replica)".to_owned(), |t| {
                let at = i64::try_from(t)
                    .ok()
                    .and_then(|t| k8s_openapi::jiff::Timestamp::from_second(t).ok());
                match at {
                    Some(at) => format!("at {at}"),
                    None => format!("at Unix time {t}"),
                }
            }),
    );
    let _ = write!(
        h,
        "<form method=get action=/status><input type=search name=q placeholder=\"host contains…\" value=\"{}\"> <button>Search</button></form>",
        escape(&v.query)
    );
    let _ = write!(
        h,
        "<h2>Hosts</h2><p class=muted>{} of {} host(s) match{}</p>\
         <table id=hosts><tr><th>host</th><th>path</th><th>Ingress</th><th>backends</th><th>problems</th></tr>",
        v.hosts_matching,
        v.hosts_total,
        if v.hosts.len() < v.hosts_matching {
            format!("; the first {} shown, refine the search", v.hosts.len())
        } else {
            String::new()
        }
    );
    for host in &v.hosts {
        for (i, r) in host.routes.iter().enumerate() {
            let _ = write!(
                h,
                "<tr class=host-route data-host=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td class={}>{}</td><td class=bad>{}</td></tr>",
                escape(&host.host),
                if i == 0 { escape(&host.host) } else { String::new() },
                escape(&r.path),
                escape(&r.ingress),
                if r.backends == 0 { "bad" } else { "ok" },
                r.backends,
                r.problems.join(", "),
            );
        }
    }
    h.push_str("</table><h2>Events</h2>");
    if v.events.is_empty() {
        h.push_str("<p id=no-events class=ok>No problem reported.</p>");
    } else {
        h.push_str("<table id=events><tr><th>Ingress</th><th>reason</th><th>message</th></tr>");
        for e in &v.events {
            let _ = write!(
                h,
                "<tr class=event><td>{}</td><td class=bad>{}</td><td>{}</td></tr>",
                escape(&e.ingress),
                e.reason,
                escape(&e.message)
            );
        }
        h.push_str("</table>");
    }
    let _ = write!(
        h,
        "<h2>Gateway API</h2><p id=gateway-api class=muted>{}</p></main><script>{SCRIPT}</script></body></html>",
        escape(v.gateway_api)
    );
    h
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::desired::{HostRoute, ObjectKey, Report, ReportKind};

    fn page(outcome: Outcome, token: Option<&str>) -> StatusPage {
        let (_, outcome) = watch::channel(outcome);
        let (_, leader) = watch::channel(true);
        StatusPage::new(token.map(str::to_owned), outcome, leader, "pod-1".into())
    }

    fn outcome() -> Outcome {
        let key = ObjectKey::new("ns", "<web>");
        Outcome {
            sources: [(
                "www.example.com".to_owned(),
                vec![HostRoute {
                    path: "/ (Prefix)".into(),
                    ingress: key.clone(),
                    backends: 0,
                }],
            )]
            .into_iter()
            .collect(),
            reports: vec![Report {
                ingress: key,
                kind: ReportKind::MissingService,
                message: "service <x> not found".into(),
            }],
            ..Outcome::default()
        }
    }

    fn get(page: &StatusPage, uri: &str) -> Response<Full<Bytes>> {
        page.answer(&Request::get(uri).body(()).unwrap())
    }

    #[test]
    fn hosts_ingresses_and_events_escaped() {
        let p = page(outcome(), None);
        let v = p.view("WWW");
        assert_eq!(v.hosts.len(), 1);
        assert_eq!(v.hosts[0].routes[0].problems, vec!["ServiceNotFound"]);
        let text = html(&v);
        assert!(
            text.contains("ns/&lt;web&gt;") && !text.contains("<web>"),
            "{text}"
        );
        assert!(text.contains("service &lt;x&gt; not found"), "{text}");
        assert!(text.contains("Gateway API routes"), "{text}");
        assert!(p.view("nothing").hosts.is_empty());
        assert_eq!(get(&p, "/status?q=www").status(), StatusCode::OK);
        assert_eq!(get(&p, "/status/api/hosts").status(), StatusCode::OK);
    }

    #[test]
    fn a_token_when_set() {
        let p = page(outcome(), Some("tok"));
        assert_eq!(get(&p, "/status").status(), StatusCode::UNAUTHORIZED);
        let ok = get(&p, "/status?token=tok");
        assert_eq!(ok.status(), StatusCode::OK);
        assert!(ok.headers().contains_key(header::SET_COOKIE));
    }

    #[test]
    fn queries_are_decoded() {
        assert_eq!(percent_decode("a%2Eb%zz%"), "a.b%zz%");
    }
}
