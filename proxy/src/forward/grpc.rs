//! gRPC over the proxy: what is a gRPC request, its `grpc-timeout`, and the
//! proxy's own errors answered the way gRPC clients read them.
//!
//! A gRPC client does not read an HTML error page: it reads `grpc-status`
//! and `grpc-message`, in a response of status 200 and content type
//! `application/grpc` (a "trailers-only" response: one HEADERS frame that
//! ends the stream). The proxy's errors (no route, no live backend, a
//! backend that timed out or failed, a policy that refused) map to gRPC
//! codes by their HTTP status, as gRPC's own HTTP-to-gRPC table does,
//! except that a host with no route is `NOT_FOUND` rather than that
//! table's `UNIMPLEMENTED`: the service was not found at this address, and
//! a client must not take it for a method its server lacks.

use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{HeaderMap, Response, StatusCode};

use super::ProxyBody;
use crate::error::ProxyError;

pub const GRPC_STATUS: header::HeaderName = header::HeaderName::from_static("grpc-status");
pub const GRPC_MESSAGE: header::HeaderName = header::HeaderName::from_static("grpc-message");
const GRPC_TIMEOUT: header::HeaderName = header::HeaderName::from_static("grpc-timeout");

/// gRPC status codes the proxy answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Unknown = 2,
    DeadlineExceeded = 4,
    NotFound = 5,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    Internal = 13,
    Unavailable = 14,
    Unauthenticated = 16,
}

/// The classes of `hipache_grpc_calls_total`.
pub const CLASSES: [&str; 4] = ["ok", "client_error", "server_error", "missing"];

/// The class of a call's `grpc-status`: `ok` (0); `client_error` for the
/// codes that blame the call (CANCELLED, INVALID_ARGUMENT, NOT_FOUND,
/// ALREADY_EXISTS, PERMISSION_DENIED, FAILED_PRECONDITION, OUT_OF_RANGE,
/// UNAUTHENTICATED); `server_error` for the others (UNKNOWN,
/// DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ABORTED, UNIMPLEMENTED,
/// INTERNAL, UNAVAILABLE, DATA_LOSS, and codes past 16); `missing` for a
/// call that ended without a status (a stream cut short).
pub fn class(code: Option<u32>) -> &'static str {
    match code {
        Some(0) => "ok",
        Some(1 | 3 | 5 | 6 | 7 | 9 | 11 | 16) => "client_error",
        Some(_) => "server_error",
        None => "missing",
    }
}

/// The `grpc-status` of a head or trailers, when there is one.
pub fn status_of(headers: &HeaderMap) -> Option<u32> {
    headers.get(&GRPC_STATUS)?.to_str().ok()?.parse().ok()
}

/// Whether the request is gRPC: `content-type: application/grpc` or
/// `application/grpc+<codec>`.
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .map(HeaderValue::as_bytes)
        .is_some_and(|ct| {
            ct.strip_prefix(b"application/grpc")
                .is_some_and(|rest| rest.is_empty() || rest[0] == b'+' || rest[0] == b';')
        })
}

/// The `grpc-timeout` header: at most 8 digits and a unit (`H`, `M`, `S`,
/// `m`, `u`, `n`); `None` when absent or malformed (the call then has no
/// deadline here, as a server ignores a malformed one).
pub fn timeout(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(&GRPC_TIMEOUT)?.to_str().ok()?;
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The gRPC code of an error the proxy answers with `status`.
pub fn code(status: StatusCode) -> Code {
    match status.as_u16() {
        400 | 414 | 431 => Code::Internal,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::NotFound,
        413 | 429 => Code::ResourceExhausted,
        500 => Code::Internal,
        502 | 503 => Code::Unavailable,
        504 => Code::DeadlineExceeded,
        _ => Code::Unknown,
    }
}

/// The gRPC code of the proxy's error `e`: a host or path without a route
/// is `NOT_FOUND` (Hipache answers an unknown host 400), the rest by the
/// HTTP status.
pub fn code_of(e: &ProxyError) -> Code {
    match e {
        ProxyError::NoFrontend | ProxyError::NotFound { .. } => Code::NotFound,
        _ => code(e.status()),
    }
}

/// The error `e` as a gRPC client reads it: 200, `application/grpc`,
/// `grpc-status` and `grpc-message` (the HTTP status the proxy would have
/// answered and its short reason) in a response with no body.
pub fn error_response(e: &ProxyError) -> Response<ProxyBody> {
    let (status, reason) = (e.status(), e.reason());
    let mut resp = Response::new(ProxyBody::empty());
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    h.insert(GRPC_STATUS, HeaderValue::from(code_of(e) as u16));
    // gRPC's message is percent-encoded; the reasons are ASCII already.
    let message = format!("{} {}", status.as_u16(), reason);
    let encoded: String = message
        .bytes()
        .map(|b| match b {
            b' '..=b'~' if b != b'%' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    if let Ok(v) = HeaderValue::from_str(&encoded) {
        h.insert(GRPC_MESSAGE, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                header::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    #[test]
    fn grpc_requests_are_known_by_their_content_type() {
        for ct in [
            "application/grpc",
            "application/grpc+proto",
            "application/grpc;x=1",
        ] {
            assert!(is_grpc(&headers(&[("content-type", ct)])), "{ct}");
        }
        for ct in ["application/grpc-web", "application/json", "text/html"] {
            assert!(!is_grpc(&headers(&[("content-type", ct)])), "{ct}");
        }
        assert!(!is_grpc(&HeaderMap::new()));
    }

    #[test]
    fn grpc_timeouts_parse_by_unit() {
        let t = |v: &str| timeout(&headers(&[("grpc-timeout", v)]));
        assert_eq!(t("100m"), Some(Duration::from_millis(100)));
        assert_eq!(t("2S"), Some(Duration::from_secs(2)));
        assert_eq!(t("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(t("5M"), Some(Duration::from_secs(300)));
        assert_eq!(t("7u"), Some(Duration::from_micros(7)));
        assert_eq!(t("9n"), Some(Duration::from_nanos(9)));
        for bad in ["", "m", "100", "123456789m", "1x", "-1m", "1.5S"] {
            assert_eq!(t(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn statuses_fall_in_classes() {
        assert_eq!(class(Some(0)), "ok");
        assert_eq!(class(Some(5)), "client_error");
        assert_eq!(class(Some(16)), "client_error");
        assert_eq!(class(Some(14)), "server_error");
        assert_eq!(class(Some(99)), "server_error");
        assert_eq!(class(None), "missing");
        assert_eq!(status_of(&headers(&[("grpc-status", "4")])), Some(4));
        assert_eq!(status_of(&headers(&[("grpc-status", "x")])), None);
    }

    #[test]
    fn proxy_errors_map_to_grpc_codes() {
        assert_eq!(code(StatusCode::NOT_FOUND), Code::NotFound);
        assert_eq!(code(StatusCode::BAD_GATEWAY), Code::Unavailable);
        assert_eq!(code(StatusCode::SERVICE_UNAVAILABLE), Code::Unavailable);
        assert_eq!(code(StatusCode::GATEWAY_TIMEOUT), Code::DeadlineExceeded);
        assert_eq!(code(StatusCode::TOO_MANY_REQUESTS), Code::ResourceExhausted);
        assert_eq!(code(StatusCode::PAYLOAD_TOO_LARGE), Code::ResourceExhausted);
        assert_eq!(code(StatusCode::FORBIDDEN), Code::PermissionDenied);
        assert_eq!(code(StatusCode::UNAUTHORIZED), Code::Unauthenticated);
        assert_eq!(code_of(&ProxyError::NoFrontend), Code::NotFound);
        let resp = error_response(&ProxyError::NoBackend);
        assert_eq!(resp.status(), StatusCode::OK);
        let h = resp.headers();
        assert_eq!(h[header::CONTENT_TYPE], "application/grpc");
        assert_eq!(h[&GRPC_STATUS], "14");
        assert_eq!(h[&GRPC_MESSAGE], "502 no live backend");
        let resp = error_response(&ProxyError::BadDocument("100% wrong".into()));
        assert_eq!(resp.headers()[&GRPC_MESSAGE], "503 100%25 wrong");
    }
}
