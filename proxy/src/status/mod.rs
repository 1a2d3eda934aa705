//! The live status page, on the admin listener only: frontends (searched
//! with `SCAN`, never loaded all at once), a host's backends with their
//! dead marks and live statistics, its route document as rules, the
//! Redis connection and route cache, and the served certificates.
//!
//! Hand-written HTML: one page needs no template engine, and everything it
//! uses (style, a small script that polls the JSON endpoints every 2 s) is
//! inline, so it works offline, behind any proxy, with no CDN. Every
//! value that came from Redis is HTML-escaped; the script writes only
//! `textContent`. Off by default (`server.statusPage`), optionally behind
//! a token (`server.statusToken`).
//!
//! # Layout
//! - this file: [`StatusPage`], the requests it answers (`/status`,
//!   `/status/api/overview`, `/status/api/search?q=`,
//!   `/status/api/frontend?host=`).
//! - [`frontends`]: a search over frontend hosts and one host as the store
//!   holds it.
//! - [`stats`]: the bounded registry of per-backend counters the request
//!   path feeds.
//! - [`view`]: what the page shows, as data; the JSON endpoints serialize
//!   it.
//! - [`html`]: the page, rendered from the views.

pub mod frontends;
mod html;
pub mod stats;
pub mod view;

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;

use crate::admin::text;
use crate::config::{Config, Driver};
use crate::metrics::Metrics;
use crate::routing::cache::Mode;
use crate::routing::RouteStore;
use crate::tls::CertStore;
use hipache_schema::status_page::{self as shared_page, Access};

pub use stats::BackendStats;

/// Whether `path` is the page's (the admin listener hands it over).
pub fn is_page_path(path: &str) -> bool {
    path == "/status" || path.starts_with("/status/")
}

/// Everything the page reads.
pub struct StatusPage {
    token: Option<String>,
    store: Arc<RouteStore>,
    metrics: Arc<Metrics>,
    certs: Option<Arc<CertStore>>,
    stats: Arc<BackendStats>,
    /// The Redis URL (censored) or the routes file, as shown.
    source: String,
    /// This worker's slot, when a master started it (the page says which
    /// worker answered).
    worker: Option<usize>,
}

impl StatusPage {
    /// The page of a proxy configured by `config`: `None` when it is off.
    pub fn new(
        config: &Config,
        store: Arc<RouteStore>,
        metrics: Arc<Metrics>,
        certs: Option<Arc<CertStore>>,
        stats: Option<Arc<BackendStats>>,
    ) -> Option<Self> {
        if !config.status_page {
            return None;
        }
        let source = match &config.driver {
            Driver::Redis { read, .. } => read.censored(),
            Driver::File(p) => p.display().to_string(),
        };
        Some(Self {
            token: config.status_token.clone(),
            store,
            metrics,
            certs,
            stats: stats.unwrap_or_default(),
            source,
            worker: std::env::var(crate::process::WORKER_ENV)
                .ok()
                .and_then(|v| v.parse().ok()),
        })
    }

    /// Answers a request for [`is_page_path`].
    pub async fn answer<B>(&self, req: &Request<B>) -> Response<Full<Bytes>> {
        let query = req.uri().query();
        let access = shared_page::check(self.token.as_deref(), req.headers(), query);
        if access == Access::Denied {
            let mut resp = text(StatusCode::UNAUTHORIZED, "unauthorized\n");
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"hipache status\""),
            );
            return resp;
        }
        let param = |name: &str| -> Option<String> {
            url::form_urlencoded::parse(query?.as_bytes())
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        };
        let mut resp = match req.uri().path() {
            "/status" | "/status/" => {
                let overview = self.overview();
                let search = match param("q") {
                    Some(q) => Some(self.search(&q).await),
                    None => None,
                };
                let frontend = match param("host") {
                    Some(h) => Some(self.frontend(&h).await),
                    None => None,
                };
                html_response(html::page(&overview, search.as_ref(), frontend.as_ref()))
            }
            "/status/api/overview" => json(&self.overview()),
            "/status/api/search" => json(&self.search(&param("q").unwrap_or_default()).await),
            "/status/api/frontend" => match param("host") {
                Some(h) => json(&self.frontend(&h).await),
                None => text(StatusCode::BAD_REQUEST, "host= is required\n"),
            },
            _ => text(StatusCode::NOT_FOUND, "not found: /status, /status/api/overview, /status/api/search?q=, /status/api/frontend?host=\n"),
        };
        shared_page::finish(resp.headers_mut(), access, self.token.as_deref());
        resp
    }

    fn overview(&self) -> view::Overview {
        let pid = std::process::id();
        let answered_by = match self.worker {
            Some(slot) => format!("worker {slot} (pid {pid})"),
            None => format!("pid {pid}"),
        };
        let now = hipache_schema::keys::unix_now() as i64;
        let certificates = self
            .certs
            .as_ref()
            .map(|c| c.expirations())
            .unwrap_or_default()
            .into_iter()
            .map(|(name, not_after)| view::Certificate {
                name,
                not_after,
                days_left: (not_after - now).div_euclid(86_400),
            })
            .collect();
        view::Overview {
            answered_by,
            routes: self.routes_state(),
            certificates,
            backends_tracked: self.stats.len(),
            backends_cap: stats::MAX_BACKENDS,
        }
    }

    fn routes_state(&self) -> view::RoutesState {
        match &*self.store {
            RouteStore::Redis(r) => {
                let (mode, entries) = r.cache_state();
                view::RoutesState {
                    driver: "redis",
                    source: self.source.clone(),
                    connected: r.connection().is_some(),
                    cache_mode: match mode {
                        Mode::Strict => "strict".to_owned(),
                        Mode::Tracking => "tracking".to_owned(),
                        Mode::Ttl(ttl) => format!("ttl ({}s)", ttl.as_secs_f64()),
                    },
                    cache_entries: entries,
                    staleness_seconds: self.metrics.staleness.get(),
                }
            }
            RouteStore::File(_) => view::RoutesState {
                driver: "file",
                source: self.source.clone(),
                connected: true,
                cache_mode: "file (in memory)".to_owned(),
                cache_entries: 0,
                staleness_seconds: 0,
            },
        }
    }

    async fn search(&self, q: &str) -> view::Search {
        let started = Instant::now();
        let found = frontends::search(&self.store, q).await;
        view::Search::of(q, found, started.elapsed().as_secs_f64() * 1000.0)
    }

    async fn frontend(&self, host: &str) -> view::Frontend {
        let host = host.trim().to_ascii_lowercase();
        let read = frontends::read(&self.store, &host).await;
        view::Frontend::of(&host, read, Some(&self.stats))
    }
}

fn json<T: serde::Serialize>(value: &T) -> Response<Full<Bytes>> {
    match serde_json::to_vec(value) {
        Ok(body) => {
            let mut resp = Response::new(Full::new(Bytes::from(body)));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            resp
        }
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    }
}

fn html_response(body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(shared_page::CONTENT_SECURITY_POLICY),
    );
    resp
}
