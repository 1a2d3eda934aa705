//! Request host normalisation and the frontend lookup order.

use thiserror::Error;

/// Hipache looked at no more than the last six labels of a host when it
/// built wildcard candidates, so that a hostile `a.a.a.a….example.com` costs a
/// bounded number of Redis reads. We keep the same bound and the same order.
pub const MAX_LABELS: usize = 6;

/// Longest host we accept (DNS names are at most 253 bytes; the rest is
/// room for a bracketed IPv6 literal and slack).
pub const MAX_HOST_LEN: usize = 255;

/// Why a `Host` value cannot be routed. Every variant means "400 Bad Request".
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HostError {
    #[error("empty host")]
    Empty,
    #[error("host longer than {MAX_HOST_LEN} bytes")]
    TooLong,
    #[error("invalid character in host")]
    InvalidChar,
    #[error("invalid port in host")]
    InvalidPort,
    #[error("invalid IPv6 literal in host")]
    InvalidIpv6,
}

/// Normalises a `Host` header (or `:authority`) value into the form used in
/// frontend keys: the port is dropped, the name is lower-cased (always;
/// Hipache only did it when a port was present), one trailing dot is
/// dropped, and IPv6 literals keep their brackets (`[::1]:8080` → `[::1]`).
///
/// Only the characters of an RFC 3986 `reg-name` plus `*` are accepted, so a
/// normalised host can never contain a space, a control byte or a `:` that
/// would confuse key names or the `dead` channel message.
pub fn normalize_host(raw: &str) -> Result<String, HostError> {
    let raw = raw.trim_matches(|c| c == ' ' || c == '\t');
    if raw.is_empty() {
        return Err(HostError::Empty);
    }
    if raw.len() > MAX_HOST_LEN {
        return Err(HostError::TooLong);
    }
    if let Some(rest) = raw.strip_prefix('[') {
        let end = rest.find(']').ok_or(HostError::InvalidIpv6)?;
        let (addr, after) = (&rest[..end], &rest[end + 1..]);
        check_port(after)?;
        let ip: std::net::Ipv6Addr = addr.parse().map_err(|_| HostError::InvalidIpv6)?;
        return Ok(format!("[{ip}]"));
    }
    let name = match raw.rfind(':') {
        Some(colon) => {
            check_port(&raw[colon..])?;
            &raw[..colon]
        }
        None => raw,
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return Err(HostError::Empty);
    }
    if !name.bytes().all(is_host_byte) {
        return Err(HostError::InvalidChar);
    }
    Ok(name.to_ascii_lowercase())
}

/// `after` is what follows the host: empty, or `:` and a port number.
fn check_port(after: &str) -> Result<(), HostError> {
    match after.strip_prefix(':') {
        None if after.is_empty() => Ok(()),
        None => Err(HostError::InvalidPort),
        // "host:" with an empty port is allowed by RFC 3986.
        Some("") => Ok(()),
        Some(port) if port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit()) => port
            .parse::<u16>()
            .map(|_| ())
            .map_err(|_| HostError::InvalidPort),
        Some(_) => Err(HostError::InvalidPort),
    }
}

fn is_host_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b'%'
        )
}

/// The frontend hosts to try for a normalised host, first match wins: the
/// host itself, then wildcards from the most to the least specific over the
/// last [`MAX_LABELS`] labels, then the catch-all `*`.
///
/// `a.b.example.com` gives `a.b.example.com`, `*.b.example.com`,
/// `*.example.com`, `*.com`, `*`. A wildcard never matches its bare domain:
/// `example.com` does not try `*.example.com`.
pub fn candidates(host: &str) -> Vec<String> {
    let mut out = Vec::with_capacity(MAX_LABELS + 2);
    out.push(host.to_owned());
    // An IPv6 literal has no labels to strip.
    if !host.starts_with('[') {
        let mut labels: Vec<&str> = host.split('.').collect();
        if labels.len() > MAX_LABELS {
            labels.drain(..labels.len() - MAX_LABELS);
        }
        for start in 1..labels.len() {
            out.push(format!("*.{}", labels[start..].join(".")));
        }
    }
    if host != "*" {
        out.push("*".to_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn normalises_case_port_and_trailing_dot() {
        assert_eq!(
            normalize_host("WWW.Example.COM").unwrap(),
            "www.example.com"
        );
        assert_eq!(normalize_host("Example.com:8080").unwrap(), "example.com");
        assert_eq!(normalize_host("example.com.").unwrap(), "example.com");
        assert_eq!(normalize_host("example.com.:80").unwrap(), "example.com");
        assert_eq!(normalize_host("example.com:").unwrap(), "example.com");
    }

    #[test]
    fn ipv6_literals_keep_brackets() {
        assert_eq!(normalize_host("[::1]:80").unwrap(), "[::1]");
        assert_eq!(normalize_host("[0:0::1]").unwrap(), "[::1]");
        assert_eq!(normalize_host("[::1"), Err(HostError::InvalidIpv6));
        assert_eq!(normalize_host("[zz::1]"), Err(HostError::InvalidIpv6));
        assert_eq!(normalize_host("[::1]x"), Err(HostError::InvalidPort));
    }

    #[test]
    fn rejects_odd_hosts() {
        assert_eq!(normalize_host(""), Err(HostError::Empty));
        assert_eq!(normalize_host(":80"), Err(HostError::Empty));
        assert_eq!(normalize_host("."), Err(HostError::Empty));
        assert_eq!(normalize_host("a b"), Err(HostError::InvalidChar));
        assert_eq!(normalize_host("a/b"), Err(HostError::InvalidChar));
        assert_eq!(normalize_host("héllo"), Err(HostError::InvalidChar));
        assert_eq!(normalize_host("a:99999"), Err(HostError::InvalidPort));
        assert_eq!(normalize_host("a:b"), Err(HostError::InvalidPort));
        assert_eq!(normalize_host(&"a".repeat(300)), Err(HostError::TooLong));
    }

    #[test]
    fn candidate_order() {
        assert_eq!(
            candidates("a.b.example.com"),
            [
                "a.b.example.com",
                "*.b.example.com",
                "*.example.com",
                "*.com",
                "*"
            ]
        );
        assert_eq!(candidates("localhost"), ["localhost", "*"]);
        assert_eq!(candidates("[::1]"), ["[::1]", "*"]);
        assert_eq!(candidates("*"), ["*"]);
    }

    #[test]
    fn wildcards_stop_at_six_labels() {
        let c = candidates("x.a.b.c.d.e.com");
        assert_eq!(
            c,
            [
                "x.a.b.c.d.e.com",
                "*.b.c.d.e.com",
                "*.c.d.e.com",
                "*.d.e.com",
                "*.e.com",
                "*.com",
                "*"
            ]
        );
        assert!(!c.contains(&"*.a.b.c.d.e.com".to_owned()));
    }

    proptest! {
        #[test]
        fn normalise_never_panics_and_is_idempotent(raw in ".{0,300}") {
            if let Ok(host) = normalize_host(&raw) {
                prop_assert_eq!(normalize_host(&host), Ok(host.clone()));
                prop_assert!(!host.contains(':') || host.starts_with('['));
                prop_assert!(!host.bytes().any(|b| b.is_ascii_uppercase()));
            }
        }

        #[test]
        fn candidates_are_bounded_and_end_with_catch_all(host in "[a-z0-9]{1,5}(\\.[a-z0-9]{1,5}){0,12}") {
            let c = candidates(&host);
            prop_assert_eq!(c[0].as_str(), host.as_str());
            prop_assert_eq!(c.last().map(String::as_str), Some("*"));
            prop_assert!(c.len() <= MAX_LABELS + 1);
            for w in &c[1..c.len() - 1] {
                let domain = w.strip_prefix("*.").unwrap();
                let suffix = format!(".{}", domain); prop_assert!(host.ends_with(&suffix));
                prop_assert_ne!(domain, host.as_str());
            }
        }
    }
}
