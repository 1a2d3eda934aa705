//! Forward authentication (`docs/policies.md`, "Forward authentication"):
//! a subrequest to an authentication service decides, as with
//! ingress-nginx's `auth-url`, Traefik's ForwardAuth and oauth2-proxy's
//! `/oauth2/auth`.
//!
//! The subrequest goes to the policy's URL on the proxy's backend pool
//! (pooled keep-alive connections, `https://` verified like a backend's),
//! with the policy's method (GET by default) and no body. It carries:
//! - the request headers the policy names (by default `Cookie` and
//!   `Authorization`), copied as the client sent them;
//! - what the request was: `X-Original-URL` (`scheme://host/path?query`)
//!   and `X-Original-Method` (ingress-nginx), `X-Forwarded-Method`,
//!   `-Proto`, `-Host` and `-Uri` (Traefik; oauth2-proxy reads
//!   `X-Forwarded-Uri`), `X-Forwarded-For` and `X-Real-IP`. These are the
//!   proxy's own: a client's copies are never passed on, even when the
//!   policy names them.
//!
//! Its answer decides:
//! - 2xx: the request goes on; the policy's `responseHeaders` are set on
//!   the request sent upstream from the answer. One the answer lacks is
//!   sent empty, never with a value the client chose (a client cannot
//!   claim to be `X-Auth-Request-User: admin`).
//! - 401 and 403 are the client's answer, with the service's
//!   `WWW-Authenticate`; a 401 becomes a 302 to `signIn` when the policy
//!   has one, with the original URL in its `rd` parameter (unless `signIn`
//!   sets `rd` itself).
//! - Anything else is 500; no answer within the policy's timeout, or no
//!   connection, is 503. Both fail closed, are counted, and are logged
//!   when a service starts failing and when it recovers, not per request.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::LazyLock;

use bytes::Bytes;
use hipache_schema::routes::policies::ForwardAuth;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Request, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use parking_lot::Mutex;

use super::super::authority::routing_host;
use super::super::headers::{X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO, X_REAL_IP};
use super::super::ConnInfo;
use super::Denial;
use crate::error::ProxyError;
use crate::shared::Shared;
use crate::upstream::pool::UpstreamBody;

pub static X_ORIGINAL_URL: HeaderName = HeaderName::from_static("x-original-url");
pub static X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
pub static X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
pub static X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");

/// The most of an answer's body read (and thrown away) so that its
/// connection can serve the next subrequest; a longer body closes it.
const MAX_DRAINED: usize = 64 * 1024;

/// Headers never copied to the subrequest, whatever the policy names:
/// they describe the client's connection or the body it does not get, or
/// are set by the proxy itself.
fn never_copied(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "host"
            | "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "content-length"
            | "expect"
            | "http2-settings"
    ) || name.as_str().starts_with("x-forwarded-")
        || *name == X_ORIGINAL_URL
        || *name == X_ORIGINAL_METHOD
        || *name == X_REAL_IP
}

/// Asks the authentication service about `req` (from `client`): on a 2xx,
/// the headers to add upstream; otherwise the refusal.
pub async fn check<B>(
    shared: &Shared,
    conn: &ConnInfo,
    auth: &ForwardAuth,
    req: &Request<B>,
    client: IpAddr,
) -> Result<Vec<(HeaderName, HeaderValue)>, ProxyError> {
    let original = Original::of(conn, req)?;
    let sub = subrequest(shared, conn, auth, req, &original, client)?;
    let answered = tokio::time::timeout(auth.timeout, ask(shared, auth, sub)).await;
    let outcome = match answered {
        Err(_) => Outcome::Unavailable(format!("no answer within {:?}", auth.timeout)),
        Ok(Err(e)) => Outcome::Unavailable(e.to_string()),
        Ok(Ok((status, headers))) => Outcome::Answered(status, headers),
    };
    health(shared, auth, &outcome);
    match outcome {
        Outcome::Answered(status, headers) => {
            decide(auth, status, &headers, &original).map_err(Into::into)
        }
        Outcome::Unavailable(_) => Err(Denial::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "authentication service unavailable",
        )
        .into()),
    }
}

/// What an answer of the service means for the request.
fn decide(
    auth: &ForwardAuth,
    status: StatusCode,
    answer: &HeaderMap,
    original: &Original,
) -> Result<Vec<(HeaderName, HeaderValue)>, Denial> {
    if status.is_success() {
        return Ok(upstream_headers(auth, answer));
    }
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        return Err(refusal(auth, status, answer, original));
    }
    Err(Denial::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "authentication service answered neither 2xx, 401 nor 403",
    ))
}

/// What the client asked for, as it asked.
struct Original {
    proto: String,
    host: String,
    /// Origin form: path and query.
    uri: String,
}

impl Original {
    fn of<B>(conn: &ConnInfo, req: &Request<B>) -> Result<Self, ProxyError> {
        let host = routing_host(req)?.to_owned();
        let own = if conn.tls { "https" } else { "http" };
        // Behind a trusted proxy that ended TLS, the client's scheme is the
        // one it reports.
        let proto = conn
            .trusted
            .then(|| req.headers().get(&X_FORWARDED_PROTO)?.to_str().ok())
            .flatten()
            .map(|p| {
                p.split(',')
                    .next()
                    .unwrap_or(own)
                    .trim()
                    .to_ascii_lowercase()
            })
            .filter(|p| p == "http" || p == "https")
            .unwrap_or_else(|| own.to_owned());
        let uri = match req.uri().path_and_query() {
            Some(p) if p.as_str().starts_with('/') => p.as_str().to_owned(),
            Some(p) => format!("/{}", p.as_str()),
            None => "/".to_owned(),
        };
        Ok(Original { proto, host, uri })
    }

    fn url(&self) -> String {
        format!("{}://{}{}", self.proto, self.host, self.uri)
    }
}

/// The subrequest's head: see the module documentation.
fn subrequest<B>(
    shared: &Shared,
    conn: &ConnInfo,
    auth: &ForwardAuth,
    req: &Request<B>,
    original: &Original,
    client: IpAddr,
) -> Result<Request<UpstreamBody>, ProxyError> {
    let uri = Uri::try_from(auth.target.as_str())
        .map_err(|_| ProxyError::BadDocument("forward authentication URL".into()))?;
    let mut sub = Request::new(UpstreamBody::default());
    *sub.method_mut() = auth.method.clone();
    *sub.uri_mut() = uri;
    let h = sub.headers_mut();
    for name in auth.request_headers.iter().filter(|n| !never_copied(n)) {
        for value in req.headers().get_all(name) {
            h.append(name.clone(), value.clone());
        }
    }
    let text = |s: &str| HeaderValue::from_str(s).ok();
    let mut set = |name: &HeaderName, value: Option<HeaderValue>| {
        if let Some(v) = value {
            h.insert(name.clone(), v);
        }
    };
    set(&header::HOST, text(&auth.backend.authority()));
    set(&X_ORIGINAL_URL, text(&original.url()));
    set(&X_ORIGINAL_METHOD, text(req.method().as_str()));
    set(&X_FORWARDED_METHOD, text(req.method().as_str()));
    set(&X_FORWARDED_PROTO, text(&original.proto));
    set(&X_FORWARDED_HOST, text(&original.host));
    set(&X_FORWARDED_URI, text(&original.uri));
    set(&X_FORWARDED_FOR, text(&forwarded_for(conn, req.headers())));
    // Unspecified: a trusted proxy did not say who the client is.
    if !client.is_unspecified() {
        set(&X_REAL_IP, text(&client.to_string()));
    }
    if !shared.config.http_keep_alive {
        set(&header::CONNECTION, Some(HeaderValue::from_static("close")));
    }
    Ok(sub)
}

/// `X-Forwarded-For` as the upstream request gets it: a trusted peer's
/// chain with the peer appended, else the peer alone.
fn forwarded_for(conn: &ConnInfo, headers: &HeaderMap) -> String {
    let peer = conn.peer.ip().to_canonical().to_string();
    let prev: Vec<&str> = match conn.trusted {
        true => headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .collect(),
        false => Vec::new(),
    };
    match prev.is_empty() {
        true => peer,
        false => format!("{}, {peer}", prev.join(", ")),
    }
}

/// Sends the subrequest and reads the answer's head; its body is drained
/// so the connection can be pooled again.
async fn ask(
    shared: &Shared,
    auth: &ForwardAuth,
    sub: Request<UpstreamBody>,
) -> Result<(StatusCode, HeaderMap), ProxyError> {
    let mut conn = shared.pool.acquire(&auth.backend).await?;
    let resp = match conn.sender.try_send(sub).await {
        Ok(resp) => resp,
        Err(mut e) => match e.take_message() {
            // A pooled connection found closed before the request left.
            Some(unsent) if conn.reused => {
                conn = shared.pool.reconnect(&auth.backend, conn).await?;
                conn.sender
                    .try_send(unsent)
                    .await
                    .map_err(|e| ProxyError::Upstream(e.into_error().to_string()))?
            }
            _ => return Err(ProxyError::Upstream(e.into_error().to_string())),
        },
    };
    let (parts, body) = resp.into_parts();
    if drain(body).await {
        conn.release();
    }
    Ok((parts.status, parts.headers))
}

/// Reads a body to its end, up to [`MAX_DRAINED`] bytes: whether it ended.
async fn drain(mut body: Incoming) -> bool {
    let mut read = 0;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                read += f.data_ref().map_or(0, Bytes::len);
                if read > MAX_DRAINED {
                    return false;
                }
            }
            Err(_) => return false,
        }
    }
    true
}

/// The configured response headers of a 2xx answer, each in one value
/// (several are joined with `, `); those the answer lacks are left out
/// (every configured name is removed from the request first: see
/// [`super::Admitted::upstream_cleared`]).
fn upstream_headers(auth: &ForwardAuth, answer: &HeaderMap) -> Vec<(HeaderName, HeaderValue)> {
    auth.response_headers
        .iter()
        .filter_map(|name| {
            let mut values = answer.get_all(name).iter();
            let value = match (values.next(), values.next()) {
                (None, _) => return None,
                (Some(v), None) => v.clone(),
                (Some(first), Some(second)) => {
                    let mut joined = first.as_bytes().to_vec();
                    for v in std::iter::once(second).chain(values) {
                        joined.extend_from_slice(b", ");
                        joined.extend_from_slice(v.as_bytes());
                    }
                    HeaderValue::from_bytes(&joined).unwrap_or_else(|_| first.clone())
                }
            };
            Some((name.clone(), value))
        })
        .collect()
}

/// The client's answer to a 401 or 403 of the service.
fn refusal(
    auth: &ForwardAuth,
    status: StatusCode,
    answer: &HeaderMap,
    original: &Original,
) -> Denial {
    if status == StatusCode::UNAUTHORIZED {
        if let Some(location) = auth.sign_in.as_deref().and_then(|s| sign_in(s, original)) {
            return Denial::new(StatusCode::FOUND, "sign-in required")
                .with(header::LOCATION, location);
        }
    }
    let reason = match status {
        StatusCode::UNAUTHORIZED => "authentication service: unauthorized",
        _ => "authentication service: forbidden",
    };
    answer
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .fold(Denial::new(status, reason), |d, v| {
            d.with(header::WWW_AUTHENTICATE, v.clone())
        })
}

/// `sign_in` with `rd=<the original URL, escaped>` added to its query
/// (ingress-nginx's `auth-signin`), unless it has an `rd` already.
fn sign_in(sign_in: &str, original: &Original) -> Option<HeaderValue> {
    let query = sign_in.split_once('?').map(|(_, q)| q);
    let has_rd = query.is_some_and(|q| q.split('&').any(|p| p == "rd" || p.starts_with("rd=")));
    if has_rd {
        return HeaderValue::from_str(sign_in).ok();
    }
    let separator = match query {
        None => "?",
        Some("") => "",
        Some(_) => "&",
    };
    let rd: String = url::form_urlencoded::byte_serialize(original.url().as_bytes()).collect();
    HeaderValue::from_str(&format!("{sign_in}{separator}rd={rd}")).ok()
}

enum Outcome {
    Answered(StatusCode, HeaderMap),
    /// No answer: why.
    Unavailable(String),
}

impl Outcome {
    /// The outcome's label in `hipache_forward_auth_total`.
    fn label(&self) -> &'static str {
        match self {
            Outcome::Answered(s, _) if s.is_success() => "allowed",
            Outcome::Answered(s, _)
                if *s == StatusCode::UNAUTHORIZED || *s == StatusCode::FORBIDDEN =>
            {
                "denied"
            }
            Outcome::Answered(..) => "error",
            Outcome::Unavailable(_) => "unavailable",
        }
    }

    fn failing(&self) -> bool {
        matches!(self.label(), "error" | "unavailable")
    }
}

/// Services seen failing, by URL, with how.
static FAILING: LazyLock<Mutex<HashMap<String, &'static str>>> = LazyLock::new(Mutex::default);

/// Counts the outcome; logs a service that starts failing (or fails
/// otherwise) and one that recovers, once per change.
fn health(shared: &Shared, auth: &ForwardAuth, outcome: &Outcome) {
    shared.metrics.forward_auth(outcome.label());
    let label = outcome.label();
    let mut failing = FAILING.lock();
    match (outcome.failing(), failing.get(&auth.url).copied()) {
        (true, Some(was)) if was == label => {}
        (true, _) => {
            if failing.len() >= 10_000 {
                failing.clear();
            }
            failing.insert(auth.url.clone(), label);
            drop(failing);
            match outcome {
                Outcome::Unavailable(why) => tracing::warn!(
                    url = %auth.url,
                    error = %why,
                    "authentication service unavailable: its requests are answered 503"
                ),
                Outcome::Answered(status, _) => tracing::warn!(
                    url = %auth.url,
                    status = status.as_u16(),
                    "authentication service answers neither 2xx, 401 nor 403: its requests are answered 500"
                ),
            }
        }
        (false, Some(_)) => {
            failing.remove(&auth.url);
            drop(failing);
            tracing::info!(url = %auth.url, "authentication service answers again");
        }
        (false, None) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn policy(sign_in: Option<&str>) -> ForwardAuth {
        ForwardAuth {
            url: "http://auth.internal:4180/oauth2/auth".to_owned(),
            backend: hipache_schema::BackendUrl::parse("http://auth.internal:4180").expect("url"),
            target: "/oauth2/auth".to_owned(),
            method: http::Method::GET,
            request_headers: vec![header::COOKIE, header::AUTHORIZATION],
            response_headers: vec![
                HeaderName::from_static("x-auth-request-user"),
                HeaderName::from_static("x-auth-request-groups"),
            ],
            sign_in: sign_in.map(str::to_owned),
            timeout: Duration::from_secs(1),
        }
    }

    /// What `policy` makes of an answer to a request for `url`.
    fn answer(
        policy: &ForwardAuth,
        status: u16,
        headers: &[(&str, &str)],
        url: &str,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, Denial> {
        let mut h = HeaderMap::new();
        for (n, v) in headers {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        let (proto, rest) = url.split_once("://").expect("absolute URL");
        let (host, uri) = rest.split_at(rest.find('/').expect("a path"));
        let original = Original {
            proto: proto.to_owned(),
            host: host.to_owned(),
            uri: uri.to_owned(),
        };
        decide(
            policy,
            StatusCode::from_u16(status).expect("status"),
            &h,
            &original,
        )
    }

    #[test]
    fn a_2xx_answer_gives_the_configured_headers_it_holds() {
        let got = answer(
            &policy(None),
            202,
            &[
                ("x-auth-request-user", "alice"),
                ("x-auth-request-email", "alice@example.com"),
            ],
            "http://app.example/",
        )
        .expect("allowed");
        assert_eq!(
            got,
            vec![(
                HeaderName::from_static("x-auth-request-user"),
                HeaderValue::from_static("alice")
            )],
            "only configured headers; a missing one is left out (the client's is removed upstream)"
        );
        let groups = answer(
            &policy(None),
            200,
            &[
                ("x-auth-request-groups", "admins"),
                ("x-auth-request-groups", "ops"),
            ],
            "http://app.example/",
        )
        .expect("allowed");
        assert_eq!(groups[0].1, "admins, ops");
    }

    #[test]
    fn a_401_redirects_to_sign_in_with_the_escaped_original_url() {
        let cases = [
            (
                "https://auth.example/oauth2/start",
                "https://auth.example/oauth2/start?rd=https%3A%2F%2Fapp.example%3A8443%2Fa%2Fb%3Fc%3Dd%26e",
            ),
            (
                "https://auth.example/start?x=1",
                "https://auth.example/start?x=1&rd=https%3A%2F%2Fapp.example%3A8443%2Fa%2Fb%3Fc%3Dd%26e",
            ),
            ("https://auth.example/start?rd=/home", "https://auth.example/start?rd=/home"),
        ];
        for (configured, want) in cases {
            let d = answer(
                &policy(Some(configured)),
                401,
                &[("www-authenticate", "Bearer")],
                "https://app.example:8443/a/b?c=d&e",
            )
            .expect_err("refused");
            assert_eq!(d.status, StatusCode::FOUND);
            assert_eq!(d.headers[header::LOCATION], want);
            assert!(d.headers.get(header::WWW_AUTHENTICATE).is_none());
        }
    }

    #[test]
    fn a_401_or_403_is_passed_on_with_www_authenticate() {
        let d = answer(
            &policy(None),
            401,
            &[("www-authenticate", "Bearer realm=\"x\""), ("x-other", "1")],
            "http://app.example/",
        )
        .expect_err("refused");
        assert_eq!(d.status, StatusCode::UNAUTHORIZED);
        assert_eq!(d.headers[header::WWW_AUTHENTICATE], "Bearer realm=\"x\"");
        assert!(d.headers.get("x-other").is_none());
        let d = answer(
            &policy(Some("https://auth.example/start")),
            403,
            &[],
            "http://app.example/",
        )
        .expect_err("refused");
        assert_eq!(d.status, StatusCode::FORBIDDEN, "403 is never a redirect");
    }

    #[test]
    fn forwarding_headers_of_the_client_are_never_copied() {
        for name in [
            "x-forwarded-uri",
            "x-original-url",
            "host",
            "x-real-ip",
            "connection",
        ] {
            assert!(never_copied(&HeaderName::from_static(name)), "{name}");
        }
        assert!(!never_copied(&header::COOKIE));
    }
}
