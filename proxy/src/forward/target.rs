//! The request target checked before routing, and the path a route is
//! chosen by, normalised once so that the path which chose the route is the
//! path the backend sees.
//!
//! Backends and frameworks resolve `/public/../admin`, `/%61dmin` and
//! `//admin` to `/admin`; a proxy that matched path rules against the text
//! as sent would route (and, with per-rule policies, protect) one path
//! while the backend serves another. So, as nginx does before its location
//! match (and Envoy with `normalize_path` and `merge_slashes`):
//!
//! - percent-encoded unreserved characters (RFC 3986 §2.3: letters,
//!   digits, `-` `.` `_` `~`) are decoded, other escapes get upper-case hex
//!   (§6.2.2.1); `%2F` stays encoded, since many applications use it inside
//!   one segment;
//! - empty segments (`//`) are merged;
//! - dot segments are removed (§5.2.4), never above the root;
//! - an invalid escape (`%zz`, a lone `%`) or an encoded NUL is refused
//!   with a 400.
//!
//! The query string is left as sent. A path needing none of this (the
//! common case) is not copied.

use std::borrow::Cow;

use http::uri::PathAndQuery;
use http::{Method, Request};

use super::headers::chunked_only;
use super::MAX_URI_LENGTH;
use crate::error::ProxyError;

/// What routing needs of a request target, checked.
pub struct Target<'a> {
    /// The normalised path, which routes the request.
    pub path: Cow<'a, str>,
    /// The origin-form target to send upstream when normalising changed
    /// the path; `None`: the target as received.
    pub normalized: Option<PathAndQuery>,
}

/// Checks what a request asks for before it is routed: the target's
/// length (414 above [`MAX_URI_LENGTH`]), its form (CONNECT and asterisk
/// form are refused), its path (normalised) and its framing (a transfer
/// coding other than one `chunked` is a 501). The body limit depends on
/// the route: see [`check_declared_length`].
pub fn check<B>(req: &Request<B>) -> Result<Target<'_>, ProxyError> {
    let uri = req.uri();
    if uri.path_and_query().map_or(0, |p| p.as_str().len()) > MAX_URI_LENGTH {
        return Err(ProxyError::UriTooLong);
    }
    if req.method() == Method::CONNECT {
        return Err(ProxyError::BadRequest("CONNECT is not supported"));
    }
    if uri.path() == "*" {
        return Err(ProxyError::BadRequest(
            "asterisk-form targets are not supported",
        ));
    }
    let path = normalize_path(uri.path())?;
    // Changed: normalised, or an empty path that became `/`.
    let changed = matches!(path, Cow::Owned(_)) || path.len() != uri.path().len();
    let normalized = match changed {
        true => Some(with_query(&path, uri.query())?),
        false => None,
    };
    if !chunked_only(req.headers()) {
        return Err(ProxyError::TransferCoding);
    }
    Ok(Target { path, normalized })
}

/// A declared body (`Content-Length`) larger than the route's limit is a
/// 413 before anything is sent; a streamed one is cut at the limit.
pub fn check_declared_length(
    headers: &http::HeaderMap,
    limit: Option<u64>,
) -> Result<(), ProxyError> {
    match (limit, content_length(headers)) {
        (Some(limit), Some(len)) if len > limit => Err(ProxyError::BodyTooLarge),
        _ => Ok(()),
    }
}

fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The normalised form of `path` (a request path without its query).
pub fn normalize_path(path: &str) -> Result<Cow<'_, str>, ProxyError> {
    // An absolute-form target may have an empty path, which means `/`
    // (RFC 9112 §3.2.2); any other path starts with `/`.
    if path.is_empty() {
        return Ok(Cow::Borrowed("/"));
    }
    if !path.starts_with('/') {
        return Err(ProxyError::BadRequest("path does not start with /"));
    }
    let bytes = path.as_bytes();
    let needs_work = bytes.contains(&b'%')
        || bytes
            .windows(2)
            .any(|w| w[0] == b'/' && (w[1] == b'/' || w[1] == b'.'));
    if !needs_work {
        return Ok(Cow::Borrowed(path));
    }
    let decoded = decode_unreserved(bytes)?;
    Ok(Cow::Owned(remove_dot_segments(&decoded)))
}

/// The origin-form target for a normalised `path` and the query as sent.
pub fn with_query(path: &str, query: Option<&str>) -> Result<PathAndQuery, ProxyError> {
    let text = match query {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    };
    PathAndQuery::try_from(text).map_err(|_| ProxyError::BadRequest("invalid path"))
}

/// Decodes unreserved escapes and upper-cases the hex of the others.
fn decode_unreserved(bytes: &[u8]) -> Result<String, ProxyError> {
    // Bytes, not chars: a non-ASCII byte of the path is copied as it is.
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b != b'%' {
            out.push(b);
            i += 1;
            continue;
        }
        let value = match bytes.get(i + 1..i + 3) {
            Some(&[hi, lo]) if hi.is_ascii_hexdigit() && lo.is_ascii_hexdigit() => {
                hex_value(hi) << 4 | hex_value(lo)
            }
            _ => return Err(ProxyError::BadRequest("invalid percent-encoding in path")),
        };
        if value == 0 {
            return Err(ProxyError::BadRequest("encoded NUL in path"));
        }
        if value.is_ascii_alphanumeric() || matches!(value, b'-' | b'.' | b'_' | b'~') {
            out.push(value);
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.extend_from_slice(&[
                b'%',
                HEX[usize::from(value >> 4)],
                HEX[usize::from(value & 0xF)],
            ]);
        }
        i += 3;
    }
    // Only ASCII was added to bytes of a `str`: still UTF-8.
    String::from_utf8(out).map_err(|_| ProxyError::BadRequest("invalid path"))
}

fn hex_value(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        _ => digit - b'A' + 10,
    }
}

/// Merges empty segments and resolves `.` and `..` (never above `/`); a
/// trailing slash, or a final dot segment, leaves the path ending in `/`.
fn remove_dot_segments(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    for segment in path.split('/').skip(1) {
        trailing_slash = matches!(segment, "" | "." | "..");
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(path.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if trailing_slash || segments.is_empty() {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(path: &str) -> String {
        match normalize_path(path) {
            Ok(p) => p.into_owned(),
            Err(e) => format!("error: {}", e.reason()),
        }
    }

    #[test]
    fn plain_paths_are_not_copied() {
        for p in ["/", "/a/b", "/a/b/", "/a.b/c.d", "/api/v1.2/x"] {
            assert!(matches!(normalize_path(p), Ok(Cow::Borrowed(_))), "{p}");
            assert_eq!(norm(p), p);
        }
    }

    #[test]
    fn an_empty_path_is_the_root_and_others_start_with_a_slash() {
        assert_eq!(norm(""), "/");
        assert!(norm("admin").starts_with("error:"));
    }

    #[test]
    fn dot_segments_and_empty_segments() {
        for (from, to) in [
            ("/public/../admin", "/admin"),
            ("/a/./b", "/a/b"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/../../etc/passwd", "/etc/passwd"),
            ("//admin", "/admin"),
            ("/a//b///c/", "/a/b/c/"),
            ("/.", "/"),
            ("/..", "/"),
            ("/a/.hidden/..x", "/a/.hidden/..x"),
        ] {
            assert_eq!(norm(from), to, "{from}");
        }
    }

    #[test]
    fn escapes() {
        for (from, to) in [
            ("/%61dmin", "/admin"),
            ("/%2e%2e/admin", "/admin"),
            ("/api/%2E%2E/%2e/admin", "/admin"),
            ("/a%2fb", "/a%2Fb"),
            ("/caf%c3%a9", "/caf%C3%A9"),
            ("/%7euser", "/~user"),
            ("/a%20b", "/a%20b"),
        ] {
            assert_eq!(norm(from), to, "{from}");
        }
        for bad in ["/%", "/%4", "/%zz", "/a%g1", "/%00", "/%+1"] {
            assert!(norm(bad).starts_with("error:"), "{bad}: {}", norm(bad));
        }
    }

    #[test]
    fn normalising_twice_changes_nothing() {
        for p in ["/a/../b/%2e/c//d/", "/%61%2F..", "/x/%2e%2e%2f"] {
            let once = norm(p);
            assert_eq!(norm(&once), once, "{p}");
        }
    }
}
