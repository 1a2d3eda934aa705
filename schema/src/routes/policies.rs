//! Access policies of a route document (`docs/policies.md`): who may
//! reach a rule's backends and what every answer carries.
//!
//! A document holds policies at its top level (for every rule of the host)
//! and per rule; a rule's policy of one kind replaces the host's of that
//! kind. Decoding merges them, so each [`super::Rule`] holds its effective
//! policies and a request looks at one place.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};
use ipnet::IpNet;

use crate::backend::BackendUrl;

/// The effective policies of a rule. Every kind is optional; `Arc`s keep
/// merging (host into rule) cheap.
#[derive(Debug, Clone, Default)]
pub struct Policies {
    /// Only these client networks may pass (403 otherwise).
    pub ip_allow: Option<Arc<Vec<IpNet>>>,
    /// These client networks may not pass (403), checked after the allow-list.
    pub ip_deny: Option<Arc<Vec<IpNet>>>,
    pub basic_auth: Option<Arc<BasicAuth>>,
    pub forward_auth: Option<Arc<ForwardAuth>>,
    pub rate_limit: Option<Arc<RateLimit>>,
    pub affinity: Option<Arc<Affinity>>,
    pub cors: Option<Arc<Cors>>,
    pub hsts: Option<Hsts>,
    /// Set on every answer of the host (proxy's own answers included).
    pub security_headers: Option<Arc<Vec<(HeaderName, HeaderValue)>>>,
    /// Error pages by status, instead of the global ones.
    pub error_pages: Option<Arc<ErrorPages>>,
}

/// A host's own error pages: `(status, page)`.
pub type ErrorPages = Vec<(u16, Arc<str>)>;

impl Policies {
    /// `rule`'s policies over `host`'s: each kind the rule sets replaces
    /// the host's.
    pub fn over(rule: &Policies, host: &Policies) -> Policies {
        fn pick<T: Clone>(r: &Option<T>, h: &Option<T>) -> Option<T> {
            r.clone().or_else(|| h.clone())
        }
        Policies {
            ip_allow: pick(&rule.ip_allow, &host.ip_allow),
            ip_deny: pick(&rule.ip_deny, &host.ip_deny),
            basic_auth: pick(&rule.basic_auth, &host.basic_auth),
            forward_auth: pick(&rule.forward_auth, &host.forward_auth),
            rate_limit: pick(&rule.rate_limit, &host.rate_limit),
            affinity: pick(&rule.affinity, &host.affinity),
            cors: pick(&rule.cors, &host.cors),
            hsts: pick(&rule.hsts, &host.hsts),
            security_headers: pick(&rule.security_headers, &host.security_headers),
            error_pages: pick(&rule.error_pages, &host.error_pages),
        }
    }

    /// Whether a request needs anything checked before its backend.
    pub fn admits_all(&self) -> bool {
        self.ip_allow.is_none()
            && self.ip_deny.is_none()
            && self.basic_auth.is_none()
            && self.forward_auth.is_none()
            && self.rate_limit.is_none()
            && self.cors.is_none()
    }

    /// The error page for a status, when the host has its own.
    pub fn error_page(&self, status: u16) -> Option<&Arc<str>> {
        let pages = self.error_pages.as_ref()?;
        pages.iter().find(|(s, _)| *s == status).map(|(_, p)| p)
    }
}

/// A unique number per decoded policy, so that what a proxy remembers of
/// one (verified credentials) can never be taken for another's after a
/// document changes.
pub fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// HTTP Basic authentication against htpasswd-style entries.
#[derive(Debug, Clone)]
pub struct BasicAuth {
    /// Unique per decode (see [`next_id`]).
    pub id: u64,
    pub realm: String,
    /// `(user, hash)`: bcrypt (`$2y$`, `$2a$`, `$2b$`), SHA-256/512 crypt
    /// (`$5$`, `$6$`), Apache MD5 (`$apr1$`) or SHA-1 (`{SHA}`). Plain text
    /// is refused when decoding.
    pub users: Vec<(String, String)>,
}

/// The hash schemes [`BasicAuth`] entries may use, by prefix.
pub const PASSWORD_HASH_PREFIXES: &[&str] =
    &["$2y$", "$2a$", "$2b$", "$5$", "$6$", "$apr1$", "{SHA}"];

/// A subrequest to an authentication service decides (ingress-nginx's
/// `auth-url`, Traefik's ForwardAuth, oauth2-proxy's `/oauth2/auth`).
#[derive(Debug, Clone)]
pub struct ForwardAuth {
    /// As written (`http://oauth2-proxy.auth:4180/oauth2/auth`).
    pub url: String,
    /// Where to connect.
    pub backend: BackendUrl,
    /// The origin-form target sent (`/oauth2/auth`).
    pub target: String,
    pub method: Method,
    /// Request headers copied to the subrequest (default: `cookie`,
    /// `authorization`).
    pub request_headers: Vec<HeaderName>,
    /// Headers of a 2xx answer copied to the request sent upstream.
    pub response_headers: Vec<HeaderName>,
    /// Where a 401 sends the client (a 302 with `rd=<original URL>`).
    pub sign_in: Option<String>,
    pub timeout: Duration,
}

/// The default time an authentication service has to answer.
pub const FORWARD_AUTH_TIMEOUT: Duration = Duration::from_secs(5);

/// A rate limit shared by every proxy of the fleet through Redis (GCRA:
/// `requests` per `period` on average, `burst` more at once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit {
    pub requests: u32,
    pub period: Duration,
    pub burst: u32,
    /// One bucket per client address, or one for everyone.
    pub key: RateKey,
    /// What the bucket is shared by: `host` (a host-wide policy: every
    /// rule of the host), `rule:<name>` (a named rule's own: rules of one
    /// name share it) or `rule:#<index>` (an unnamed rule's own).
    pub scope: String,
    pub on_redis_down: OnRedisDown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateKey {
    Client,
    All,
}

/// What a rate limit does while Redis cannot be asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnRedisDown {
    /// Each proxy limits alone with the same parameters.
    Local,
    Allow,
    /// Refuse (fail closed).
    Deny,
}

/// Which backend a client keeps going to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Affinity {
    /// A cookie names the backend; set when missing or when its backend is
    /// gone, dead or invalid.
    Cookie(AffinityCookie),
    /// Consistent hashing of a request header's value.
    Header(HeaderName),
    /// Consistent hashing of the client address.
    ClientAddress,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AffinityCookie {
    pub name: String,
    /// `Max-Age`; `None`: a session cookie.
    pub ttl: Option<Duration>,
    pub path: String,
    pub same_site: Option<SameSite>,
    pub secure: bool,
    pub http_only: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    Strict,
    Lax,
    None,
}

impl SameSite {
    pub fn as_str(self) -> &'static str {
        match self {
            SameSite::Strict => "Strict",
            SameSite::Lax => "Lax",
            SameSite::None => "None",
        }
    }
}

/// Cross-origin resource sharing (Gateway API's HTTPCORSFilter).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cors {
    /// `*`, an origin (`https://app.example.com`), or one with a wildcard
    /// host part (`https://*.example.com`).
    pub allow_origins: Vec<String>,
    /// Empty: `GET`, `HEAD`, `POST`; `*` allowed.
    pub allow_methods: Vec<String>,
    pub allow_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub allow_credentials: bool,
    /// Seconds a preflight may be cached (`Access-Control-Max-Age`).
    pub max_age: Option<u64>,
}

impl Cors {
    /// Whether an `Origin` is allowed.
    pub fn allows(&self, origin: &str) -> bool {
        self.allow_origins.iter().any(|o| origin_matches(o, origin))
    }

    /// Whether `*` is among the origins (then `Access-Control-Allow-Origin:
    /// *` unless credentials are allowed).
    pub fn any_origin(&self) -> bool {
        self.allow_origins.iter().any(|o| o == "*")
    }
}

/// `pattern` (`*`, `https://a.com`, `https://*.a.com`) against an `Origin`
/// (`scheme://host[:port]`); a wildcard covers one or more labels, never
/// the bare domain.
fn origin_matches(pattern: &str, origin: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    let origin = origin.to_ascii_lowercase();
    match pattern.split_once("://*.") {
        Some((scheme, domain)) => origin
            .strip_prefix(scheme)
            .and_then(|o| o.strip_prefix("://"))
            .and_then(|host| host.strip_suffix(domain))
            .is_some_and(|label| label.len() > 1 && label.ends_with('.')),
        None => pattern.eq_ignore_ascii_case(&origin),
    }
}

/// `Strict-Transport-Security` on the host's HTTPS answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hsts {
    pub max_age: u64,
    pub include_subdomains: bool,
    pub preload: bool,
}

impl Hsts {
    pub fn header_value(&self) -> String {
        let mut v = format!("max-age={}", self.max_age);
        if self.include_subdomains {
            v.push_str("; includeSubDomains");
        }
        if self.preload {
            v.push_str("; preload");
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_with_wildcards() {
        assert!(origin_matches(
            "https://*.example.com",
            "https://a.example.com"
        ));
        assert!(origin_matches(
            "https://*.example.com",
            "https://a.b.example.com"
        ));
        assert!(!origin_matches(
            "https://*.example.com",
            "https://example.com"
        ));
        assert!(!origin_matches(
            "https://*.example.com",
            "http://a.example.com"
        ));
        assert!(!origin_matches(
            "https://*.example.com",
            "https://aexample.com"
        ));
        assert!(origin_matches(
            "https://App.example.com",
            "https://app.example.com"
        ));
        assert!(origin_matches("*", "null"));
        assert!(!origin_matches("https://a.com", "https://a.com.evil.net"));
    }

    #[test]
    fn rule_policies_replace_the_hosts_by_kind() {
        let host = Policies {
            hsts: Some(Hsts {
                max_age: 1,
                include_subdomains: false,
                preload: false,
            }),
            ip_allow: Some(Arc::new(vec!["10.0.0.0/8".parse().expect("net")])),
            ..Policies::default()
        };
        let rule = Policies {
            ip_allow: Some(Arc::new(Vec::new())),
            ..Policies::default()
        };
        let p = Policies::over(&rule, &host);
        assert_eq!(p.ip_allow.as_ref().map(|l| l.len()), Some(0));
        assert_eq!(p.hsts.map(|h| h.max_age), Some(1));
        assert!(!p.admits_all());
        assert!(Policies::default().admits_all());
    }
}
