//! Request errors: who failed, the status code the client gets, whether a
//! retry is safe, and the error pages; and why a proxy could not start.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use parking_lot::RwLock;

/// Why a request could not be proxied. Each error knows its status code.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no Host header")]
    NoHost,
    #[error("invalid Host header: {0}")]
    BadHost(#[from] hipache_schema::HostError),
    #[error("no frontend for this host")]
    NoFrontend,
    /// 404: a known host whose rules do not cover the request, or (with
    /// `server.unknownHostStatus: 404`) a host nobody routes.
    #[error("{}", if *.known_host { "no route for this request" } else { "no frontend for this host" })]
    NotFound { known_host: bool },
    /// The host's route document was refused: 503, never routed around.
    #[error("{0}")]
    BadDocument(Arc<str>),
    /// A route document's backend declared invalid was drawn, or its rule
    /// has no backend with a weight (Gateway API: 500).
    #[error("the rule's backend is invalid")]
    InvalidBackend,
    /// Refused by an access policy (403, 401, 429, a sign-in redirect...).
    #[error("refused by policy: {}", .0.reason)]
    Denied(Box<crate::forward::policy::Denial>),
    #[error("no live backend")]
    NoBackend,
    #[error("route store unavailable: {0}")]
    RoutesUnavailable(String),
    #[error("cannot connect to backend: {0}")]
    Connect(std::io::Error),
    #[error("timed out connecting to backend")]
    ConnectTimeout,
    #[error("backend connection limit reached")]
    PoolTimeout,
    #[error("backend failed: {0}")]
    Upstream(String),
    /// An HTTP/2 backend refused the stream before processing it
    /// (REFUSED_STREAM, or its GOAWAY ended below it).
    #[error("backend refused the stream: {0}")]
    StreamRefused(String),
    #[error("backend response timed out")]
    UpstreamTimeout,
    #[error("request body too large")]
    BodyTooLarge,
    #[error("request URI too long")]
    UriTooLong,
    #[error("request rejected: {0}")]
    BadRequest(&'static str),
    #[error("unsupported WebSocket version")]
    WebSocketVersion,
    #[error("transfer coding other than one chunked")]
    TransferCoding,
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoHost
            | ProxyError::BadHost(_)
            | ProxyError::NoFrontend
            | ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ProxyError::NoBackend
            | ProxyError::Connect(_)
            | ProxyError::ConnectTimeout
            | ProxyError::Upstream(_)
            | ProxyError::StreamRefused(_) => StatusCode::BAD_GATEWAY,
            ProxyError::RoutesUnavailable(_)
            | ProxyError::PoolTimeout
            | ProxyError::BadDocument(_) => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::NotFound { .. } => StatusCode::NOT_FOUND,
            ProxyError::InvalidBackend => StatusCode::INTERNAL_SERVER_ERROR,
            ProxyError::Denied(d) => d.status,
            ProxyError::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::UriTooLong => StatusCode::URI_TOO_LONG,
            ProxyError::WebSocketVersion => StatusCode::UPGRADE_REQUIRED,
            ProxyError::TransferCoding => StatusCode::NOT_IMPLEMENTED,
        }
    }

    /// Failed before any byte of the request reached the backend, so
    /// another backend may be tried with the request intact.
    pub fn retryable(&self) -> bool {
        self.marks_dead() || matches!(self, ProxyError::StreamRefused(_))
    }

    /// The backend is unhealthy (Hipache's passive health rule for
    /// connection failures). A refused HTTP/2 stream is not: the backend
    /// is busy or draining, and said so.
    pub fn marks_dead(&self) -> bool {
        matches!(self, ProxyError::Connect(_) | ProxyError::ConnectTimeout)
    }

    /// The kind of upstream failure, for the metrics; `None` when the
    /// upstream is not at fault.
    pub fn upstream_kind(&self) -> Option<crate::metrics::UpstreamErrorKind> {
        use crate::metrics::UpstreamErrorKind as K;
        match self {
            ProxyError::Connect(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                Some(K::Refused)
            }
            ProxyError::Connect(_) => Some(K::Other),
            ProxyError::ConnectTimeout => Some(K::ConnectTimeout),
            ProxyError::UpstreamTimeout => Some(K::Timeout),
            ProxyError::Upstream(_) => Some(K::Reset),
            ProxyError::StreamRefused(_) => Some(K::Refused),
            _ => None,
        }
    }

    /// Short reason for `x-debug-error` and logs, with no client data in it.
    pub fn reason(&self) -> &str {
        match self {
            ProxyError::NotFound { known_host: true } => "no route",
            ProxyError::NotFound { known_host: false } => "no frontend",
            ProxyError::BadDocument(why) => why,
            ProxyError::InvalidBackend => "invalid backend",
            ProxyError::Denied(d) => d.reason,
            ProxyError::NoHost => "no host",
            ProxyError::BadHost(_) => "invalid host",
            ProxyError::NoFrontend => "no frontend",
            ProxyError::NoBackend => "no live backend",
            ProxyError::RoutesUnavailable(_) => "route store unavailable",
            ProxyError::Connect(_) => "connect failed",
            ProxyError::ConnectTimeout => "connect timeout",
            ProxyError::PoolTimeout => "backend connection limit",
            ProxyError::Upstream(_) => "upstream error",
            ProxyError::StreamRefused(_) => "stream refused",
            ProxyError::UpstreamTimeout => "upstream timeout",
            ProxyError::BodyTooLarge => "body too large",
            ProxyError::UriTooLong => "URI too long",
            ProxyError::BadRequest(why) => why,
            ProxyError::WebSocketVersion => "unsupported WebSocket version",
            ProxyError::TransferCoding => "unsupported transfer coding",
        }
    }
}

impl From<&ProxyError> for StatusCode {
    fn from(e: &ProxyError) -> Self {
        e.status()
    }
}

/// Why a proxy could not start: every cause names what failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("route store: {0}")]
    Routes(String),
    #[error("access log: {0}")]
    AccessLog(std::io::Error),
    #[error("TLS: {0}")]
    Tls(String),
}

/// Error pages: `<staticDir>/error_<code>.html`, else
/// `<staticDir>/error_default.html`, else a built-in page. Files are read
/// once per status and kept: a changed page is served after a restart (or
/// a worker's replacement).
#[derive(Debug, Default)]
pub struct ErrorPages {
    dir: Option<PathBuf>,
    cache: RwLock<std::collections::HashMap<u16, Bytes>>,
}

impl ErrorPages {
    pub fn new(dir: Option<PathBuf>) -> Arc<Self> {
        Arc::new(Self {
            dir,
            cache: RwLock::default(),
        })
    }

    /// The page for a status.
    pub fn page(&self, status: StatusCode) -> Bytes {
        if let Some(page) = self.cache.read().get(&status.as_u16()) {
            return page.clone();
        }
        let page = self
            .dir
            .as_deref()
            .and_then(|dir| read_page(dir, status))
            .unwrap_or_else(|| builtin(status));
        self.cache.write().insert(status.as_u16(), page.clone());
        page
    }
}

/// An error response with this page and no-cache headers.
pub fn page_response<B: From<Bytes>>(status: StatusCode, body: Bytes) -> Response<B> {
    let mut resp = Response::new(B::from(body.clone()));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    resp
}

fn read_page(dir: &Path, status: StatusCode) -> Option<Bytes> {
    let specific = dir.join(format!("error_{}.html", status.as_u16()));
    std::fs::read(specific)
        .or_else(|_| std::fs::read(dir.join("error_default.html")))
        .ok()
        .map(Bytes::from)
}

fn builtin(status: StatusCode) -> Bytes {
    let reason = status.canonical_reason().unwrap_or("Error");
    let code = status.as_u16();
    Bytes::from(format!(
        "<!DOCTYPE html>\n<html><head><title>{code} {reason}</title></head>\
         <body><h1>{code} {reason}</h1><p>hipache</p></body></html>\n"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_fall_back_in_order() {
        let dir = std::env::temp_dir().join(format!("hipache-pages-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(dir.join("error_502.html"), "custom 502").expect("write");
        std::fs::write(dir.join("error_default.html"), "default").expect("write");
        let pages = ErrorPages::new(Some(dir.clone()));
        assert_eq!(pages.page(StatusCode::BAD_GATEWAY), "custom 502");
        assert_eq!(pages.page(StatusCode::BAD_REQUEST), "default");
        let builtin = ErrorPages::new(None).page(StatusCode::GATEWAY_TIMEOUT);
        assert!(std::str::from_utf8(&builtin)
            .expect("utf8")
            .contains("504 Gateway Timeout"));
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn statuses() {
        assert_eq!(ProxyError::NoFrontend.status(), 400);
        assert_eq!(ProxyError::NoBackend.status(), 502);
        assert_eq!(ProxyError::UpstreamTimeout.status(), 504);
        assert!(ProxyError::ConnectTimeout.retryable());
        assert!(!ProxyError::UpstreamTimeout.retryable());
    }
}
