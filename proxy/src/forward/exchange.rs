//! One exchange's own record: what the access log and the debug headers
//! need of the request, its access-log entry, and the one place a failed
//! request is logged and answered with an error page.

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};

use super::headers::{set, X_DEBUG, X_DEBUG_ERROR};
use super::policy::Decor;
use super::{upgrade, ConnInfo, ProxyBody};
use crate::accesslog::Entry;
use crate::error::ProxyError;
use crate::routing::Table;
use crate::shared::Shared;

/// Per-request state kept for the access log and debug headers.
pub struct Exchange {
    pub start: Instant,
    pub time: SystemTime,
    /// `x-debug-*` headers go on the answer.
    pub debug: bool,
    pub method: Method,
    /// The request target as sent (only with an access log).
    target: String,
    pub version: Version,
    referer: String,
    user_agent: String,
    /// A gRPC call: errors are answered as gRPC statuses.
    pub grpc: bool,
    /// The matched frontend's routes, once known (for its identifier).
    pub table: OnceLock<Table>,
    /// What every answer carries on a document's host (its policies).
    pub decor: OnceLock<Decor>,
}

impl Exchange {
    /// The record of `req`; the copies only the access log needs are made
    /// only when there is one.
    pub fn new<B>(shared: &Shared, conn: &ConnInfo, req: &Request<B>) -> Self {
        let logging = shared.access_log.is_some();
        let text = |s: Option<&str>| match logging {
            true => s.unwrap_or_default().to_owned(),
            false => String::new(),
        };
        let header = |name| text(req.headers().get(name).and_then(|v| v.to_str().ok()));
        Self {
            start: Instant::now(),
            time: SystemTime::now(),
            debug: shared.config.debug
                || (conn.debug_allowed && req.headers().contains_key(&X_DEBUG)),
            method: req.method().clone(),
            target: text(Some(req.uri().path_and_query().map_or("/", |p| p.as_str()))),
            version: req.version(),
            referer: header(header::REFERER),
            user_agent: header(header::USER_AGENT),
            grpc: super::grpc::is_grpc(req.headers()),
            table: OnceLock::new(),
            decor: OnceLock::new(),
        }
    }

    pub fn identifier(&self) -> Option<&str> {
        self.table.get().map(Table::identifier)
    }

    /// The access-log entry of this exchange as answered now.
    pub fn entry(
        &self,
        conn: &ConnInfo,
        status: StatusCode,
        bytes: u64,
        backend: Option<Duration>,
    ) -> Entry {
        Entry {
            client: conn.peer.ip().to_canonical(),
            time: self.time,
            method: self.method.to_string(),
            target: self.target.clone(),
            version: self.version,
            status: status.as_u16(),
            bytes,
            referer: self.referer.clone(),
            user_agent: self.user_agent.clone(),
            identifier: self.identifier().unwrap_or_default().to_owned(),
            total: self.start.elapsed(),
            backend,
        }
    }
}

/// The one place errors are logged and rendered.
pub fn error_response(
    shared: &Shared,
    conn: &ConnInfo,
    ex: &Exchange,
    e: ProxyError,
) -> Response<ProxyBody> {
    let status = e.status();
    match &e {
        ProxyError::NoHost
        | ProxyError::BadHost(_)
        | ProxyError::NoFrontend
        | ProxyError::NotFound { .. }
        | ProxyError::Denied(_)
        | ProxyError::BadRequest(_) => {
            tracing::debug!(peer = %conn.peer, error = %e, "request refused")
        }
        // Logged once per change of the document, when it was refused.
        ProxyError::BadDocument(_) => {
            tracing::debug!(peer = %conn.peer, error = %e, "request refused: route document refused")
        }
        _ => {
            tracing::warn!(peer = %conn.peer, error = %e, status = status.as_u16(), "request failed")
        }
    }
    if ex.grpc {
        shared
            .metrics
            .grpc_call(Some(super::grpc::code_of(&e) as u32));
        if let Some(log) = &shared.access_log {
            log.log(ex.entry(conn, status, 0, None));
        }
        return super::grpc::error_response(&e);
    }
    let host_page = ex.decor.get().and_then(|d| d.page(status));
    let page = match host_page {
        Some(p) => bytes::Bytes::copy_from_slice(p.as_bytes()),
        None => shared.pages.page(status),
    };
    let page_len = page.len() as u64;
    let mut resp: Response<ProxyBody> = crate::error::page_response(status, page);
    if ex.method == Method::HEAD {
        *resp.body_mut() = ProxyBody::empty();
    }
    let h = resp.headers_mut();
    // After a malformed or refused request the connection's framing can
    // no longer be trusted: answer, then close.
    if matches!(
        e,
        ProxyError::BadRequest(_)
            | ProxyError::BodyTooLarge
            | ProxyError::UriTooLong
            | ProxyError::TransferCoding
    ) {
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    if let ProxyError::Denied(d) = &e {
        for (name, value) in &d.headers {
            h.append(name.clone(), value.clone());
        }
    }
    if matches!(e, ProxyError::WebSocketVersion) {
        h.insert(
            upgrade::SEC_WEBSOCKET_VERSION.clone(),
            HeaderValue::from_static("13"),
        );
    }
    if ex.debug {
        set(h, &X_DEBUG_ERROR, e.reason());
    }
    if let Some(log) = &shared.access_log {
        let bytes = match ex.method {
            Method::HEAD => 0,
            _ => page_len,
        };
        log.log(ex.entry(conn, status, bytes, None));
    }
    resp
}
