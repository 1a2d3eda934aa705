//! Backend URLs: `http://host[:port]` or `https://host[:port]`.

use std::fmt;

use thiserror::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// A parsed backend. Paths and queries in the stored URL are ignored, as
/// Hipache ignored them: the request path is forwarded unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BackendUrl {
    pub scheme: Scheme,
    /// Host name or IP address; IPv6 addresses without brackets.
    pub host: String,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BackendUrlError {
    #[error("backend URL must start with http:// or https://")]
    Scheme,
    #[error("backend URL has no host")]
    NoHost,
    #[error("backend URL has an invalid port")]
    Port,
    #[error("backend URL has an invalid character")]
    InvalidChar,
    /// An `unavailable:<reason>` placeholder: a deliberate non-backend
    /// (the syncer writes it for a path with no ready endpoint).
    #[error("placeholder for an unavailable backend")]
    Unavailable,
    /// The element starts like a path rule (`/…` or `=…`) that does not
    /// parse: never widened to a backend for every path.
    #[error("backend element has an invalid path rule")]
    PathRule,
    /// A route document's `{"invalid": "<reason>"}`: a backend its writer
    /// knows cannot be used (its share of requests answers 500).
    #[error("backend declared invalid")]
    Declared,
}

/// Prefix of a placeholder element that is never a backend.
pub const UNAVAILABLE_PREFIX: &str = "unavailable:";

impl BackendUrl {
    pub fn parse(raw: &str) -> Result<Self, BackendUrlError> {
        let raw = raw.trim();
        if raw.starts_with(UNAVAILABLE_PREFIX) {
            return Err(BackendUrlError::Unavailable);
        }
        let (scheme, rest) = if let Some(rest) = strip_prefix_ci(raw, "http://") {
            (Scheme::Http, rest)
        } else if let Some(rest) = strip_prefix_ci(raw, "https://") {
            (Scheme::Https, rest)
        } else {
            return Err(BackendUrlError::Scheme);
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        // Userinfo is not supported: it would leak into logs and headers.
        if authority.contains('@') {
            return Err(BackendUrlError::InvalidChar);
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let end = v6.find(']').ok_or(BackendUrlError::NoHost)?;
            let ip: std::net::Ipv6Addr = v6[..end].parse().map_err(|_| BackendUrlError::NoHost)?;
            (ip.to_string(), &v6[end + 1..])
        } else {
            match authority.rfind(':') {
                Some(i) => (authority[..i].to_ascii_lowercase(), &authority[i..]),
                None => (authority.to_ascii_lowercase(), ""),
            }
        };
        if host.is_empty() {
            return Err(BackendUrlError::NoHost);
        }
        if !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':'))
        {
            return Err(BackendUrlError::InvalidChar);
        }
        let port = match port.strip_prefix(':') {
            None if port.is_empty() => scheme.default_port(),
            Some("") => scheme.default_port(),
            Some(p) if p.bytes().all(|b| b.is_ascii_digit()) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or(BackendUrlError::Port)?,
            _ => return Err(BackendUrlError::Port),
        };
        Ok(Self { scheme, host, port })
    }

    /// `host:port`, with brackets around an IPv6 address: the form for
    /// `connect` and for an upstream `Host` of our own.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for BackendUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme.as_str(), self.authority())
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hipache_backends() {
        let b = BackendUrl::parse("http://10.0.0.42:8080").unwrap();
        assert_eq!(
            (b.scheme, b.host.as_str(), b.port),
            (Scheme::Http, "10.0.0.42", 8080)
        );
        assert_eq!(BackendUrl::parse("http://example.com").unwrap().port, 80);
        assert_eq!(BackendUrl::parse("https://example.com/").unwrap().port, 443);
        assert_eq!(
            BackendUrl::parse("HTTP://Example.com:81/x")
                .unwrap()
                .to_string(),
            "http://example.com:81"
        );
        let v6 = BackendUrl::parse("http://[::1]:9000").unwrap();
        assert_eq!(v6.authority(), "[::1]:9000");
        assert_eq!(v6.to_string(), "http://[::1]:9000");
    }

    #[test]
    fn placeholders_are_not_backends() {
        assert_eq!(
            BackendUrl::parse("unavailable:no-ready-endpoints"),
            Err(BackendUrlError::Unavailable)
        );
    }

    #[test]
    fn rejects_bad_backends() {
        assert_eq!(
            BackendUrl::parse("10.0.0.1:80"),
            Err(BackendUrlError::Scheme)
        );
        assert_eq!(BackendUrl::parse("ftp://x"), Err(BackendUrlError::Scheme));
        assert_eq!(BackendUrl::parse("http://"), Err(BackendUrlError::NoHost));
        assert_eq!(BackendUrl::parse("http://a:0"), Err(BackendUrlError::Port));
        assert_eq!(
            BackendUrl::parse("http://a:70000"),
            Err(BackendUrlError::Port)
        );
        assert_eq!(BackendUrl::parse("http://a:b"), Err(BackendUrlError::Port));
        assert_eq!(
            BackendUrl::parse("http://u:p@a"),
            Err(BackendUrlError::InvalidChar)
        );
        assert_eq!(
            BackendUrl::parse("http://a b"),
            Err(BackendUrlError::InvalidChar)
        );
    }
}
