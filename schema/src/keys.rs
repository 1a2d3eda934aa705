//! Key and channel names, and the rule that reads `hchecker_ping`.
//!
//! The driver URL's `#prefix` is glued in front of `frontend:`, `routes:`,
//! `dead:` and `tls:` keys with no separator (Hipache's behaviour); the `dead` channel and
//! `hchecker_ping` are never prefixed.

/// Channel on which every dead mark is published.
pub const DEAD_CHANNEL: &str = "dead";

/// Key an active health checker refreshes with the Unix time every
/// [`HCHECKER_PING_INTERVAL_SECS`] seconds.
pub const HCHECKER_PING: &str = "hchecker_ping";

/// How often a health checker writes [`HCHECKER_PING`].
pub const HCHECKER_PING_INTERVAL_SECS: u64 = 10;

/// While `hchecker_ping` is younger than this, proxies only publish dead
/// events and leave the `dead:` sets to the checker (Hipache's rule).
pub const HCHECKER_FRESH_SECS: u64 = 30;

/// Whether an `hchecker_ping` value (Unix seconds, an integer or, as some
/// checkers write it, a fraction) is younger than [`HCHECKER_FRESH_SECS`]
/// at `now` (Unix seconds). A missing or unreadable value, or one before
/// 1970, is not fresh: proxies then write the `dead:` sets themselves.
pub fn hchecker_is_fresh(ping: Option<&str>, now: u64) -> bool {
    ping.and_then(|p| p.trim().parse::<f64>().ok())
        .is_some_and(|t| t >= 0.0 && (now as f64) - t < HCHECKER_FRESH_SECS as f64)
}

/// The clock `hchecker_ping` is written in and read against: whole Unix
/// seconds (0 if the system clock is before 1970). The one function here
/// that is not pure: it reads the system clock.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Channel on which writers of `tls:` keys publish the host whose
/// certificate changed, so proxies reload it at once.
pub const TLS_CHANNEL: &str = "tls";

/// Fields of a `tls:<host>` hash.
pub const TLS_CERT_FIELD: &str = "cert";
pub const TLS_KEY_FIELD: &str = "key";
/// Who wrote the certificate (`k8s:<namespace>/<ingress>` for the syncer).
pub const TLS_OWNER_FIELD: &str = "owner";

/// Names keys for one key prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `frontend:<host>` (with the prefix); `host` is a normalised host, a
    /// wildcard `*.<domain>` or `*`.
    pub fn frontend(&self, host: &str) -> String {
        format!("{}frontend:{host}", self.prefix)
    }

    /// `dead:<host>` (with the prefix).
    pub fn dead(&self, host: &str) -> String {
        format!("{}dead:{host}", self.prefix)
    }

    /// `tls:<host>` (with the prefix): a hash holding a PEM certificate
    /// chain and key for SNI; `host` may be a wildcard `*.<domain>`.
    pub fn tls(&self, host: &str) -> String {
        format!("{}tls:{host}", self.prefix)
    }

    /// The host part of a `tls:` key, or `None` for another key.
    pub fn tls_host<'a>(&self, key: &'a str) -> Option<&'a str> {
        key.strip_prefix(self.prefix.as_str())?.strip_prefix("tls:")
    }

    /// `SCAN MATCH` pattern for every `frontend:` key under this prefix.
    pub fn frontend_pattern(&self) -> String {
        format!("{}frontend:*", glob_escape(&self.prefix))
    }

    /// `SCAN MATCH` pattern for every `tls:` key under this prefix.
    pub fn tls_pattern(&self) -> String {
        format!("{}tls:*", glob_escape(&self.prefix))
    }

    /// The host part of a `frontend:` key, or `None` for another key.
    pub fn frontend_host<'a>(&self, key: &'a str) -> Option<&'a str> {
        key.strip_prefix(self.prefix.as_str())?
            .strip_prefix("frontend:")
    }

    /// `routes:<host>` (with the prefix): the host's route document.
    pub fn routes(&self, host: &str) -> String {
        format!("{}routes:{host}", self.prefix)
    }

    /// The host part of a `routes:` key, or `None` for another key.
    pub fn routes_host<'a>(&self, key: &'a str) -> Option<&'a str> {
        key.strip_prefix(self.prefix.as_str())?
            .strip_prefix("routes:")
    }

    /// The host whose lookup a key is read by: the host part of a
    /// `frontend:`, `routes:` or `dead:` key.
    pub fn lookup_host<'a>(&self, key: &'a str) -> Option<&'a str> {
        self.frontend_host(key)
            .or_else(|| self.routes_host(key))
            .or_else(|| self.dead_host(key))
    }

    /// The host part of a `dead:` key, or `None` for another key.
    pub fn dead_host<'a>(&self, key: &'a str) -> Option<&'a str> {
        key.strip_prefix(self.prefix.as_str())?
            .strip_prefix("dead:")
    }

    /// `syncer:marker` (with the prefix): written by the syncer with every
    /// full rewrite and watched for; when it is gone, Redis lost what the
    /// syncer wrote (restarted without persistence, flushed, replaced by an
    /// empty server) and the syncer rewrites everything.
    pub fn syncer_marker(&self) -> String {
        format!("{}syncer:marker", self.prefix)
    }
}

/// `s` made literal in a `SCAN MATCH` glob (a key prefix, a searched
/// name): Redis glob's special characters `*?[]\` escaped.
pub fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_specials_are_escaped() {
        assert_eq!(glob_escape("a.b"), "a.b");
        assert_eq!(glob_escape("*.x?[y]\\"), "\\*.x\\?\\[y\\]\\\\");
    }

    #[test]
    fn hchecker_freshness() {
        assert!(hchecker_is_fresh(Some("1000"), 1010));
        assert!(hchecker_is_fresh(Some(" 1000.5 "), 1030));
        assert!(!hchecker_is_fresh(Some("1000"), 1030));
        assert!(!hchecker_is_fresh(Some("-5"), 10));
        assert!(!hchecker_is_fresh(Some("garbage"), 1000));
        assert!(!hchecker_is_fresh(None, 1000));
    }

    #[test]
    fn unix_now_is_after_2024_began() {
        assert!(unix_now() > 1_704_067_200);
    }

    #[test]
    fn scan_patterns_escape_the_prefix() {
        assert_eq!(
            Keys::new("t[1]*").frontend_pattern(),
            "t\\[1\\]\\*frontend:*"
        );
        assert_eq!(Keys::new("a?\\").tls_pattern(), "a\\?\\\\tls:*");
        assert_eq!(Keys::default().frontend_pattern(), "frontend:*");
    }

    #[test]
    fn prefix_is_glued_without_separator() {
        let k = Keys::new("tenant1");
        assert_eq!(k.frontend("a.com"), "tenant1frontend:a.com");
        assert_eq!(k.dead("*.a.com"), "tenant1dead:*.a.com");
        assert_eq!(k.frontend_host("tenant1frontend:a.com"), Some("a.com"));
        assert_eq!(k.frontend_host("frontend:a.com"), None);
        assert_eq!(Keys::default().frontend("*"), "frontend:*");
        assert_eq!(Keys::default().dead_host("dead:x"), Some("x"));
        assert_eq!(k.routes("a.com"), "tenant1routes:a.com");
        assert_eq!(k.lookup_host("tenant1routes:*.a.com"), Some("*.a.com"));
        assert_eq!(k.lookup_host("tenant1dead:a.com"), Some("a.com"));
        assert_eq!(k.lookup_host("tenant1tls:a.com"), None);
    }
}
