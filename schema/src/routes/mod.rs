//! Route documents: per-host traffic rules stored as JSON at
//! `routes:<host>` beside Hipache's `frontend:` lists (`docs/routes.md`).
//!
//! A document is decoded and validated whole ([`decode`]); what comes out
//! is ready to serve requests: regular expressions compiled, the matches of
//! every rule sorted by Gateway API precedence, every backend numbered for
//! dead marks. A document with any error is refused whole, with every
//! error listed, so that a policy is never half-applied.
//!
//! # Layout
//! - this file: the model, as the proxy uses it.
//! - `decode`: JSON to the model, every error with its JSON pointer.
//! - [`matching`]: which rule serves a request, and Gateway API's precedence.
//! - [`policies`]: access policies (IP lists, authentication, rate limits,
//!   affinity, CORS, HSTS, security headers, error pages), host-wide and
//!   per rule.
//! - [`rewrite`]: path replacement and redirect locations.
//! - [`weights`]: the weighted backend draw.
//! - `duration`: Gateway API's duration format (`1m30s`, `500ms`).

mod decode;
mod duration;
pub mod matching;
pub mod policies;
pub mod rewrite;
pub mod weights;

use std::ops::Range;
use std::time::Duration;

use http::{HeaderName, HeaderValue, StatusCode};

use crate::backend::BackendUrl;
use crate::entry::BackendEntry;

pub use decode::{decode, DocError};
pub use matching::{Match, PathCond, Pattern, RequestView, Selected, ValueCond};
pub use policies::Policies;
pub use rewrite::PathModifier;

/// The only document version this model reads.
pub const VERSION: u64 = 1;

/// A validated route document.
#[derive(Debug, Clone)]
pub struct RouteDocument {
    /// Shown in logs, metrics and `x-debug-vhost`; `k8s:` marks the syncer's.
    pub id: String,
    pub rules: Vec<Rule>,
    /// Every backend of every rule, rule by rule in document order; an
    /// entry's `position` is its index here (what `dead:` sets hold).
    pub backends: Vec<BackendEntry>,
    /// `(rule, match)` pairs in precedence order: the first that matches a
    /// request serves it.
    order: Vec<(u32, u32)>,
}

impl RouteDocument {
    /// Whether the syncer owns this document.
    pub fn is_syncer_owned(&self) -> bool {
        self.id.starts_with(crate::entry::SYNCER_IDENTIFIER_PREFIX)
    }

    /// The backends of a rule, with their weights.
    pub fn rule_backends<'a>(
        &'a self,
        rule: &'a Rule,
    ) -> impl Iterator<Item = (&'a BackendEntry, u32)> + Clone + 'a {
        self.backends[rule.backends.clone()]
            .iter()
            .zip(rule.weights.iter().copied())
    }
}

/// One rule: when it applies, where its requests go and what is done to
/// them on the way.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: Option<String>,
    pub matches: Vec<Match>,
    /// Indices into [`RouteDocument::backends`].
    pub backends: Range<usize>,
    /// One weight per backend, in the same order.
    pub weights: Vec<u32>,
    pub filters: Filters,
    pub timeouts: Timeouts,
    pub retry: Option<Retry>,
    pub max_body_size: Option<u64>,
    pub protocol: Protocol,
    /// A PROXY protocol header to send first on each backend connection.
    pub proxy_protocol: Option<ProxyProtocol>,
    /// The rule's effective policies: its own over the host's.
    pub policies: Policies,
}

/// The filters of a rule. Each kind appears at most once (mirrors: any
/// number), so their effect does not depend on the order they were written
/// in: a redirect answers; otherwise the rewrite, then the header changes,
/// shape the request.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    pub request_headers: Option<HeaderModifier>,
    pub response_headers: Option<HeaderModifier>,
    pub redirect: Option<Redirect>,
    pub rewrite: Option<Rewrite>,
    pub mirrors: Vec<Mirror>,
}

/// `set` replaces, `add` appends, `remove` deletes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderModifier {
    pub set: Vec<(HeaderName, HeaderValue)>,
    pub add: Vec<(HeaderName, HeaderValue)>,
    pub remove: Vec<HeaderName>,
}

impl HeaderModifier {
    /// Applies the changes to a header map.
    pub fn apply(&self, headers: &mut http::HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            headers.append(name.clone(), value.clone());
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// `http` or `https`; `None`: the request's.
    pub scheme: Option<crate::backend::Scheme>,
    pub hostname: Option<String>,
    pub port: Option<u16>,
    pub path: Option<PathModifier>,
    pub status: StatusCode,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite {
    pub hostname: Option<String>,
    pub path: Option<PathModifier>,
}

/// A copy of the request sent to `backend` for `numerator / denominator`
/// of the requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    pub backend: BackendUrl,
    pub url_text: String,
    pub numerator: u32,
    pub denominator: u32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// From the request's arrival to the response head, retries included.
    pub request: Option<Duration>,
    /// Each attempt, from sending to the response head.
    pub backend_request: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry {
    /// Retries after the first attempt.
    pub attempts: u32,
    /// Statuses that are retried.
    pub codes: Vec<u16>,
    /// The wait before the first retry, doubled for each further one.
    pub backoff: Duration,
}

impl Retry {
    /// The wait before retry number `n` (1 for the first).
    pub fn backoff_before(&self, n: u32) -> Duration {
        self.backoff
            .saturating_mul(1u32 << n.saturating_sub(1).min(16))
    }
}

/// The protocol a rule's backends speak.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Protocol {
    #[default]
    Http1,
    H2,
    H2c,
    Grpc,
}

impl Protocol {
    pub const ALL: [Protocol; 4] = [Protocol::Http1, Protocol::H2, Protocol::H2c, Protocol::Grpc];

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http1 => "http/1.1",
            Protocol::H2 => "h2",
            Protocol::H2c => "h2c",
            Protocol::Grpc => "grpc",
        }
    }
}

/// The PROXY protocol version a rule sends to its backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyProtocol {
    /// The text form, `PROXY TCP4 ...\r\n`.
    V1,
    /// The binary form.
    V2,
}

/// Limits on a document, so that one tenant's document cannot exhaust a
/// proxy's memory or CPU.
pub mod limits {
    /// Bytes of JSON.
    pub const DOCUMENT_BYTES: usize = 4 << 20;
    pub const RULES: usize = 1024;
    pub const MATCHES_PER_RULE: usize = 64;
    pub const CONDITIONS_PER_MATCH: usize = 16;
    pub const BACKENDS_PER_RULE: usize = 4096;
    pub const FILTERS_PER_RULE: usize = 16;
    pub const HEADERS_PER_MODIFIER: usize = 64;
    pub const MAX_WEIGHT: u64 = 1_000_000;
    pub const MAX_RETRIES: u64 = 10;
    /// Compiled size of one regular expression.
    pub const REGEX_BYTES: usize = 256 << 10;
}
