//! Header handling: hop-by-hop removal (RFC 9110 §7.6.1), the forwarded
//! headers, and the debug headers.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_PROTOCOL: HeaderName = HeaderName::from_static("x-forwarded-protocol");
pub static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
pub static X_DEBUG: HeaderName = HeaderName::from_static("x-debug");
pub static X_DEBUG_ERROR: HeaderName = HeaderName::from_static("x-debug-error");
pub static X_DEBUG_BACKEND_URL: HeaderName = HeaderName::from_static("x-debug-backend-url");
pub static X_DEBUG_BACKEND_ID: HeaderName = HeaderName::from_static("x-debug-backend-id");
pub static X_DEBUG_VHOST: HeaderName = HeaderName::from_static("x-debug-vhost");
pub static X_DEBUG_FRONTEND_KEY: HeaderName = HeaderName::from_static("x-debug-frontend-key");
pub static X_DEBUG_TIME_TOTAL: HeaderName = HeaderName::from_static("x-debug-time-total");
pub static X_DEBUG_TIME_BACKEND: HeaderName = HeaderName::from_static("x-debug-time-backend");
pub static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
pub static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Headers that describe one connection, never forwarded.
static HOP_BY_HOP: [&HeaderName; 8] = [
    &header::CONNECTION,
    &KEEP_ALIVE,
    &PROXY_CONNECTION,
    &header::TE,
    &header::TRAILER,
    &header::TRANSFER_ENCODING,
    &header::UPGRADE,
    &header::PROXY_AUTHORIZATION,
];

/// Removes hop-by-hop headers, including those named in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// What the forwarded headers say about this hop.
pub struct Forwarded<'a> {
    pub client: IpAddr,
    pub proto: &'static str,
    pub port: u16,
    pub trusted: &'a [IpNet],
}

impl Forwarded<'_> {
    /// Sets `X-Forwarded-For` (appending to a trusted incoming value),
    /// `X-Real-IP`, `X-Forwarded-Proto`, `X-Forwarded-Protocol` and
    /// `X-Forwarded-Port`. From an untrusted peer every incoming value is
    /// replaced, so a client cannot spoof its address (Hipache's issue #165).
    pub fn apply(&self, headers: &mut HeaderMap) {
        let client = self.client.to_canonical();
        let trusted = self.trusted.iter().any(|n| n.contains(&client));
        let client_text = client.to_string();
        let xff = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
            Some(prev) if trusted && !prev.trim().is_empty() => format!("{prev}, {client_text}"),
            _ => client_text.clone(),
        };
        set(headers, &X_FORWARDED_FOR, &xff);
        if !(trusted && headers.contains_key(&X_REAL_IP)) {
            set(headers, &X_REAL_IP, &client_text);
        }
        if !(trusted && headers.contains_key(&X_FORWARDED_PROTO)) {
            headers.insert(
                X_FORWARDED_PROTO.clone(),
                HeaderValue::from_static(self.proto),
            );
            headers.insert(
                X_FORWARDED_PROTOCOL.clone(),
                HeaderValue::from_static(self.proto),
            );
        }
        if !(trusted && headers.contains_key(&X_FORWARDED_PORT)) {
            headers.insert(X_FORWARDED_PORT.clone(), HeaderValue::from(self.port));
        }
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

    fn fwd(trusted: &[IpNet]) -> Forwarded<'_> {
        Forwarded {
            client: "::ffff:10.1.2.3".parse().expect("ip"),
            proto: "http",
            port: 8080,
            trusted,
        }
    }

    #[test]
    fn untrusted_values_are_replaced() {
        let mut h = HeaderMap::new();
        h.insert(&X_FORWARDED_FOR, HeaderValue::from_static("1.2.3.4"));
        h.insert(&X_REAL_IP, HeaderValue::from_static("1.2.3.4"));
        fwd(&[]).apply(&mut h);
        assert_eq!(h[&X_FORWARDED_FOR], "10.1.2.3");
        assert_eq!(h[&X_REAL_IP], "10.1.2.3");
        assert_eq!(h[&X_FORWARDED_PORT], "8080");
        assert_eq!(h[&X_FORWARDED_PROTOCOL], "http");
    }

    #[test]
    fn trusted_values_are_appended() {
        let mut h = HeaderMap::new();
        h.insert(&X_FORWARDED_FOR, HeaderValue::from_static("1.2.3.4"));
        let nets = ["10.0.0.0/8".parse().expect("net")];
        fwd(&nets).apply(&mut h);
        assert_eq!(h[&X_FORWARDED_FOR], "1.2.3.4, 10.1.2.3");
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
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }
}
