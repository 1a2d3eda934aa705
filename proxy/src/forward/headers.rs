//! Header handling: hop-by-hop removal (RFC 9110 §7.6.1), the forwarding
//! headers (what a backend is told about the client, and by whom), and the
//! debug headers.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Uri, Version};

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_PROTOCOL: HeaderName = HeaderName::from_static("x-forwarded-protocol");
pub static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub static FORWARDED: HeaderName = HeaderName::from_static("forwarded");
pub static X_DEBUG: HeaderName = HeaderName::from_static("x-debug");
pub static X_DEBUG_ERROR: HeaderName = HeaderName::from_static("x-debug-error");
pub static X_DEBUG_BACKEND_URL: HeaderName = HeaderName::from_static("x-debug-backend-url");
pub static X_DEBUG_BACKEND_ID: HeaderName = HeaderName::from_static("x-debug-backend-id");
pub static X_DEBUG_VHOST: HeaderName = HeaderName::from_static("x-debug-vhost");
pub static X_DEBUG_FRONTEND_KEY: HeaderName = HeaderName::from_static("x-debug-frontend-key");
pub static X_DEBUG_RULE: HeaderName = HeaderName::from_static("x-debug-rule");
pub static X_DEBUG_TIME_TOTAL: HeaderName = HeaderName::from_static("x-debug-time-total");
pub static X_DEBUG_TIME_BACKEND: HeaderName = HeaderName::from_static("x-debug-time-backend");
pub static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
pub static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
pub static HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");

/// Headers that describe one connection, never forwarded. `HTTP2-Settings`
/// belongs to an `h2c` upgrade, which is never relayed.
static HOP_BY_HOP: [&HeaderName; 9] = [
    &header::CONNECTION,
    &KEEP_ALIVE,
    &PROXY_CONNECTION,
    &header::TE,
    &header::TRAILER,
    &header::TRANSFER_ENCODING,
    &header::UPGRADE,
    &header::PROXY_AUTHORIZATION,
    &HTTP2_SETTINGS,
];

/// Removes hop-by-hop headers, including those named in `Connection`.
///
/// One pass over the names finds which are present: most heads carry one
/// hop-by-hop header or none, and a removal (or a lookup) of an absent
/// name costs as much as one of a present name.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let mut present = [false; HOP_BY_HOP.len()];
    for name in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|h| *h == name) {
            present[i] = true;
        }
    }
    if present[0] {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .map(<[u8]>::trim_ascii)
            // The hop-by-hop ones go anyway.
            .filter(|n| {
                !n.is_empty()
                    && !HOP_BY_HOP
                        .iter()
                        .any(|h| n.eq_ignore_ascii_case(h.as_str().as_bytes()))
            })
            .filter_map(|n| HeaderName::from_bytes(n).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for (name, present) in HOP_BY_HOP.iter().zip(present) {
        if present {
            headers.remove(*name);
        }
    }
}

/// Headers a proxy sets to tell a backend who the client is and what it
/// asked for, besides every `x-forwarded-*` one: frameworks (Rails,
/// Django, Spring, Express, ...) build absolute URLs and pick client
/// addresses and certificates from them. From a peer outside
/// `trustedProxies` they are forged by definition and removed.
static SPOOFABLE: [&str; 20] = [
    "forwarded",
    "x-real-ip",
    "x-original-forwarded-for",
    "x-original-host",
    "x-original-url",
    "x-original-uri",
    "x-rewrite-url",
    "x-url-scheme",
    "x-scheme",
    "x-host",
    "front-end-https",
    "x-client-ip",
    "true-client-ip",
    "x-cluster-client-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
    "client-ip",
    "x-client-cert",
    "x-ssl-client-cert",
    "ssl-client-cert",
];

/// A header that only a trusted proxy may send (see [`SPOOFABLE`]).
fn is_spoofable(name: &HeaderName) -> bool {
    let name = name.as_str();
    name.starts_with("x-forwarded-") || name.starts_with("ssl-client-") || SPOOFABLE.contains(&name)
}

/// The head of a request as it goes upstream: origin-form URI with the
/// normalised path when it changed (see [`super::target`]), HTTP/1.1, the
/// Host that chose the route (the authority of an absolute-form or HTTP/2
/// request replaces `Host`, RFC 9112 §3.2.2), hop-by-hop headers removed
/// (a relayed upgrade's put back), the forwarding headers set.
pub fn upstream_head(
    parts: &mut http::request::Parts,
    normalized: Option<PathAndQuery>,
    upgrade: Option<&HeaderValue>,
    keep_alive: bool,
    forwarded: Forwarded,
) {
    if let Some(a) = parts.uri.authority() {
        if let Ok(v) = HeaderValue::from_str(a.as_str()) {
            parts.headers.insert(header::HOST, v);
        }
    }
    // Origin form: most often the path and query as received (no
    // reparsing).
    let mut origin = http::uri::Parts::default();
    origin.path_and_query = Some(normalized.unwrap_or_else(|| {
        match parts.uri.path_and_query() {
            Some(p) if p.as_str().starts_with('/') => p.clone(),
            // An absolute-form target with an empty path (`http://a?q`):
            // its path is `/` (RFC 9112 §3.2.2).
            Some(p) => PathAndQuery::try_from(format!("/{}", p.as_str()))
                .unwrap_or_else(|_| PathAndQuery::from_static("/")),
            None => PathAndQuery::from_static("/"),
        }
    }));
    parts.uri = Uri::from_parts(origin).unwrap_or_else(|_| Uri::from_static("/"));
    parts.version = Version::HTTP_11;
    strip_hop_by_hop_but(&mut parts.headers, upgrade);
    if upgrade.is_none() && !keep_alive {
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    forwarded.apply(&mut parts.headers);
}

/// Whether a request's `Transfer-Encoding`, if any, is one `chunked` and
/// nothing else. hyper frames a body whose last coding is `chunked` and
/// refuses the rest; a coding before it (`gzip, chunked`) or a second
/// `chunked` would reach the backend decoded once and described by no
/// header, so those are refused too (501, RFC 9112 §6.1).
pub fn chunked_only(headers: &HeaderMap) -> bool {
    let mut codings = headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|c| !c.is_empty());
    match codings.next() {
        None => true,
        Some(first) => first.eq_ignore_ascii_case(b"chunked") && codings.next().is_none(),
    }
}

/// Removes hop-by-hop headers; those of a relayed upgrade
/// (`Connection: upgrade` and `Upgrade: <kept>`) are put back.
pub fn strip_hop_by_hop_but(headers: &mut HeaderMap, kept: Option<&HeaderValue>) {
    strip_hop_by_hop(headers);
    if let Some(protocol) = kept {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, protocol.clone());
    }
}

/// What the forwarded headers say about this hop.
pub struct Forwarded {
    pub client: IpAddr,
    pub proto: &'static str,
    pub port: u16,
    /// The peer is in `trustedProxies`.
    pub trusted: bool,
    /// Add an RFC 7239 `Forwarded` element (`server.forwardedHeader`).
    pub rfc7239: bool,
}

impl Forwarded {
    /// Sets `X-Forwarded-For`, `X-Real-IP`, `X-Forwarded-Proto`,
    /// `X-Forwarded-Protocol`, `X-Forwarded-Port`, `X-Forwarded-Host` and,
    /// when configured, `Forwarded`. From a trusted peer, `X-Forwarded-For`
    /// and `Forwarded` are appended to and the others kept when present.
    /// From any other peer every forwarding header it sent is removed first
    /// (see [`SPOOFABLE`]), so the ones the backend sees are ours alone: a
    /// client can spoof neither its address (Hipache's issue #165) nor the
    /// host and scheme a backend builds links from.
    pub fn apply(self, headers: &mut HeaderMap) {
        let client = self.client.to_canonical();
        if !self.trusted {
            let forged: Vec<HeaderName> = headers
                .keys()
                .filter(|n| is_spoofable(n))
                .cloned()
                .collect();
            for name in forged {
                headers.remove(name);
            }
        }
        let client_value = address_value(client);
        match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
            Some(prev) if !prev.trim().is_empty() => {
                let xff = format!("{prev}, {}", client_value.to_str().unwrap_or_default());
                set(headers, &X_FORWARDED_FOR, &xff);
            }
            _ => {
                headers.insert(X_FORWARDED_FOR.clone(), client_value.clone());
            }
        }
        if !headers.contains_key(&X_REAL_IP) {
            headers.insert(X_REAL_IP.clone(), client_value);
        }
        if !headers.contains_key(&X_FORWARDED_PROTO) {
            headers.insert(
                X_FORWARDED_PROTO.clone(),
                HeaderValue::from_static(self.proto),
            );
            headers.insert(
                X_FORWARDED_PROTOCOL.clone(),
                HeaderValue::from_static(self.proto),
            );
        }
        if !headers.contains_key(&X_FORWARDED_PORT) {
            headers.insert(X_FORWARDED_PORT.clone(), HeaderValue::from(self.port));
        }
        // By now `Host` is the host that routed the request (port kept).
        let host_header = headers.get(header::HOST).cloned();
        let host = host_header.as_ref().and_then(|h| h.to_str().ok());
        if self.rfc7239 {
            let element = forwarded_element(client, host, self.proto);
            let value = match headers.get(&FORWARDED).and_then(|v| v.to_str().ok()) {
                Some(prev) if !prev.trim().is_empty() => format!("{prev}, {element}"),
                _ => element,
            };
            set(headers, &FORWARDED, &value);
        }
        if let Some(host) = host_header {
            if !headers.contains_key(&X_FORWARDED_HOST) {
                headers.insert(X_FORWARDED_HOST.clone(), host);
            }
        }
    }
}

/// An address as a header value. IPv4 is written by hand: it is on every
/// request, and `Display` for addresses goes through the formatting
/// machinery (about a tenth of the instructions of forwarding a request).
fn address_value(ip: IpAddr) -> HeaderValue {
    let IpAddr::V4(v4) = ip else {
        return HeaderValue::from_maybe_shared(bytes::Bytes::from(ip.to_string()))
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
    };
    let mut text = Vec::with_capacity(15);
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            text.push(b'.');
        }
        if octet >= 100 {
            text.push(b'0' + octet / 100);
        }
        if octet >= 10 {
            text.push(b'0' + octet / 10 % 10);
        }
        text.push(b'0' + octet % 10);
    }
    HeaderValue::from_maybe_shared(bytes::Bytes::from(text))
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// One RFC 7239 element: `for=…;host=…;proto=…`, with an IPv6 address
/// bracketed and quoted, and the host quoted when it is not a token (a
/// port's `:`).
fn forwarded_element(client: IpAddr, host: Option<&str>, proto: &str) -> String {
    let node = match client {
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("\"[{ip}]\""),
    };
    // Hosts reaching here passed `normalize_host`: no `"` or `\\` to escape.
    let is_token = |h: &str| {
        h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    match host {
        None => format!("for={node};proto={proto}"),
        Some(h) if is_token(h) => format!("for={node};host={h};proto={proto}"),
        Some(h) => format!("for={node};host=\"{h}\";proto={proto}"),
    }
}

/// Sets a header from text known to be a valid value (addresses, numbers).
pub fn set(headers: &mut HeaderMap, name: &HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name.clone(), v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fwd(trusted: bool) -> Forwarded {
        Forwarded {
            client: "::ffff:10.1.2.3".parse().expect("ip"),
            proto: "http",
            port: 8080,
            trusted,
            rfc7239: false,
        }
    }

    #[test]
    fn untrusted_values_are_replaced() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("a.example:8080"));
        h.insert(&X_FORWARDED_FOR, HeaderValue::from_static("1.2.3.4"));
        h.insert(&X_REAL_IP, HeaderValue::from_static("1.2.3.4"));
        fwd(false).apply(&mut h);
        assert_eq!(h[&X_FORWARDED_FOR], "10.1.2.3");
        assert_eq!(h[&X_REAL_IP], "10.1.2.3");
        assert_eq!(h[&X_FORWARDED_PORT], "8080");
        assert_eq!(h[&X_FORWARDED_PROTOCOL], "http");
        assert_eq!(h[&X_FORWARDED_HOST], "a.example:8080");
    }

    #[test]
    fn untrusted_forwarding_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("a.example:8080"));
        for name in [
            "forwarded",
            "x-forwarded-host",
            "x-forwarded-server",
            "x-forwarded-prefix",
            "x-forwarded-ssl",
            "x-original-url",
            "true-client-ip",
            "ssl-client-subject-dn",
        ] {
            h.insert(
                HeaderName::from_static(name),
                HeaderValue::from_static("evil.example"),
            );
        }
        h.insert("x-kept", HeaderValue::from_static("1"));
        fwd(false).apply(&mut h);
        let evil: Vec<_> = h
            .iter()
            .filter(|(_, v)| v.as_bytes() == b"evil.example")
            .map(|(n, _)| n.as_str())
            .collect();
        assert!(evil.is_empty(), "forged headers left: {evil:?}");
        assert_eq!(h[&X_FORWARDED_HOST], "a.example:8080");
        assert!(h.contains_key("x-kept"));
        assert!(
            !h.contains_key(&FORWARDED),
            "no Forwarded unless configured"
        );
    }

    #[test]
    fn trusted_values_are_appended_or_kept() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("a.example:8080"));
        h.insert(&X_FORWARDED_FOR, HeaderValue::from_static("1.2.3.4"));
        h.insert(&X_FORWARDED_HOST, HeaderValue::from_static("outer.example"));
        h.insert(&FORWARDED, HeaderValue::from_static("for=1.2.3.4"));
        let mut f = fwd(true);
        f.rfc7239 = true;
        f.apply(&mut h);
        assert_eq!(h[&X_FORWARDED_FOR], "1.2.3.4, 10.1.2.3");
        assert_eq!(h[&X_FORWARDED_HOST], "outer.example");
        assert_eq!(
            h[&FORWARDED],
            "for=1.2.3.4, for=10.1.2.3;host=\"a.example:8080\";proto=http"
        );
    }

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for text in [
            "0.0.0.0",
            "1.2.3.4",
            "10.0.0.255",
            "100.64.9.99",
            "255.255.255.255",
            "192.168.10.1",
            "2001:db8::1",
            "::1",
        ] {
            let ip: IpAddr = text.parse().expect("ip");
            assert_eq!(address_value(ip), ip.to_string().as_str());
        }
    }

    #[test]
    fn every_connection_option_is_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, Upgrade, TE"),
        );
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert("close", HeaderValue::from_static("a header named close"));
        strip_hop_by_hop(&mut h);
        assert!(!h.contains_key(header::CONNECTION));
        assert!(!h.contains_key(header::TE));
        // RFC 9110 §7.6.1: any field named by a connection option.
        assert!(!h.contains_key("close"));
    }

    #[test]
    fn forwarded_elements_quote_what_is_not_a_token() {
        let v6: IpAddr = "2001:db8::1".parse().expect("ip");
        assert_eq!(
            forwarded_element(v6, Some("a.example"), "https"),
            "for=\"[2001:db8::1]\";host=a.example;proto=https"
        );
    }

    #[test]
    fn one_chunked_coding_only() {
        let te = |values: &[&'static str]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(header::TRANSFER_ENCODING, HeaderValue::from_static(v));
            }
            chunked_only(&h)
        };
        assert!(te(&[]));
        assert!(te(&["chunked"]));
        assert!(te(&["Chunked "]));
        assert!(!te(&["gzip, chunked"]));
        assert!(!te(&["chunked, chunked"]));
        assert!(!te(&["chunked", "chunked"]));
        assert!(!te(&["gzip"]));
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_go() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, X-Custom"),
        );
        h.insert("x-custom", HeaderValue::from_static("1"));
        h.insert(&KEEP_ALIVE, HeaderValue::from_static("5"));
        h.insert(
            &HTTP2_SETTINGS,
            HeaderValue::from_static("AAMAAABkAAQAAP__"),
        );
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }
}
