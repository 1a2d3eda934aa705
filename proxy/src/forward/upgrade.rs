//! Upgraded connections (WebSocket): the request is routed, forwarded,
//! dead-marked and retried like any other; after the backend's `101` both
//! directions are piped until one side closes.
//!
//! A tunnel holds no backend connection slot (`maxSockets` counts HTTP
//! exchanges, as Hipache's agent did), never reads Redis again, and is not
//! subject to the request timeout: only to the optional tunnel idle
//! timeout, which counts silence in both directions.
//!
//! Draining: tunnels stay open while a drain lets HTTP requests finish; when
//! the drain timeout ends, a WebSocket tunnel sends a close frame (1001
//! "going away") to the client and a masked one to the backend, then
//! closes both sides.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use data_encoding::BASE64;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use sha1::{Digest, Sha1};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::error::ProxyError;

/// Copy buffer per direction of a tunnel. WebSocket messages are small
/// and most tunnels sit idle, so memory per open tunnel matters more than
/// bulk throughput here: 4 KiB each way instead of tokio's 8 KiB default
/// halves what an idle WebSocket costs.
pub const TUNNEL_BUFFER: usize = 4096;

/// The `Upgrade` value of a request asking for one (`Connection: upgrade`
/// and an `Upgrade` header) that may be relayed: a single protocol among
/// `allowed` (`server.upgradeProtocols`, `websocket` by default; `h2c`
/// never). Any other upgrade request is forwarded as a plain request, its
/// upgrade headers removed with the other hop-by-hop ones: relaying `h2c`
/// would let a client speak HTTP/2 straight to the backend, on paths the
/// route table never sent it to ("h2c smuggling").
pub fn requested(headers: &HeaderMap, allowed: &[String]) -> Option<HeaderValue> {
    let connection_says_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    if !connection_says_upgrade {
        return None;
    }
    let mut values = headers.get_all(header::UPGRADE).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let protocol = value.to_str().ok()?.trim();
    let name = protocol.split('/').next().unwrap_or_default();
    let relayed = !name.eq_ignore_ascii_case("h2c")
        && allowed
            .iter()
            .any(|a| a.eq_ignore_ascii_case(protocol) || a.eq_ignore_ascii_case(name));
    relayed.then(|| value.clone())
}

/// Whether the protocol a backend switched to (its `101`'s `Upgrade`) is
/// the one the client asked for: a backend may not switch to another.
pub fn same_protocol(requested: &HeaderValue, switched: Option<&HeaderValue>) -> bool {
    switched.is_some_and(|s| {
        s.as_bytes()
            .trim_ascii()
            .eq_ignore_ascii_case(requested.as_bytes().trim_ascii())
    })
}

/// An upgrade a client asked for that will be relayed (see [`requested`]),
/// its WebSocket handshake checked.
#[derive(Debug, Clone)]
pub struct Requested {
    /// The `Upgrade` value, as the client sent it.
    pub protocol: HeaderValue,
    /// A WebSocket handshake's key, which the backend's `101` must answer.
    websocket_key: Option<HeaderValue>,
}

impl Requested {
    /// The relayed upgrade of `req`, if any; a WebSocket handshake that
    /// does not check out is the error (see [`check_websocket_request`]).
    pub fn of<B>(req: &Request<B>, allowed: &[String]) -> Result<Option<Self>, ProxyError> {
        let Some(protocol) = requested(req.headers(), allowed) else {
            return Ok(None);
        };
        let websocket_key = match is_websocket(&protocol) {
            true => Some(check_websocket_request(
                req.method(),
                req.version(),
                req.headers(),
            )?),
            false => None,
        };
        Ok(Some(Self {
            protocol,
            websocket_key,
        }))
    }

    /// Whether a backend's `101` answers this upgrade: the same protocol
    /// and, for WebSocket, the accept key of the client's key.
    pub fn switched_by(&self, response: &HeaderMap) -> bool {
        same_protocol(&self.protocol, response.get(header::UPGRADE))
            && self
                .websocket_key
                .as_ref()
                .is_none_or(|k| accepts(k, response))
    }
}

/// The headers of a WebSocket opening handshake (RFC 6455 §4).
pub static SEC_WEBSOCKET_KEY: HeaderName = HeaderName::from_static("sec-websocket-key");
pub static SEC_WEBSOCKET_VERSION: HeaderName = HeaderName::from_static("sec-websocket-version");
pub static SEC_WEBSOCKET_ACCEPT: HeaderName = HeaderName::from_static("sec-websocket-accept");

/// Turns an HTTP/2 client's WebSocket (RFC 8441: `CONNECT` with
/// `:protocol websocket`) into the HTTP/1.1 opening handshake it stands
/// for, in place: `GET`, `Connection: Upgrade`, `Upgrade: websocket`, and
/// a `Sec-WebSocket-Key` of the proxy's own (an HTTP/2 client sends none);
/// the version, subprotocols and extensions stay the client's. The client
/// side of the tunnel stays the request's (hyper's upgrade of the stream).
/// Returns whether `req` was one; [`http2_switched`] turns the backend's
/// `101` into the `200` the client waits for.
pub fn from_extended_connect<B>(req: &mut Request<B>) -> bool {
    let websocket = req.method() == Method::CONNECT
        && req
            .extensions()
            .get::<hyper::ext::Protocol>()
            .is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket"));
    if !websocket {
        return false;
    }
    *req.method_mut() = Method::GET;
    *req.version_mut() = Version::HTTP_11;
    let key: [u8; 16] = rand::random();
    let h = req.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&BASE64.encode(&key)) {
        h.insert(SEC_WEBSOCKET_KEY.clone(), v);
    }
    true
}

/// The answer to an HTTP/2 client's WebSocket once the backend switched:
/// `200`, without the HTTP/1.1 handshake's headers (RFC 8441 §5).
pub fn http2_switched(parts: &mut http::response::Parts) {
    parts.status = http::StatusCode::OK;
    parts.headers.remove(header::UPGRADE);
    parts.headers.remove(header::CONNECTION);
    parts.headers.remove(&SEC_WEBSOCKET_ACCEPT);
}

/// Whether a relayed upgrade is a WebSocket one.
pub fn is_websocket(upgrade: &HeaderValue) -> bool {
    upgrade
        .as_bytes()
        .trim_ascii()
        .eq_ignore_ascii_case(b"websocket")
}

/// Checks a WebSocket opening handshake before anything goes upstream
/// (RFC 6455 §4.1): a `GET` over HTTP/1.1 with one `Sec-WebSocket-Key` of
/// 16 base64 bytes and `Sec-WebSocket-Version: 13` (else 426, which names
/// the version, §4.4). Returns the key, which the backend's `101` must
/// answer (see [`accepts`]).
pub fn check_websocket_request(
    method: &Method,
    version: Version,
    headers: &HeaderMap,
) -> Result<HeaderValue, ProxyError> {
    if method != Method::GET || version != Version::HTTP_11 {
        return Err(ProxyError::BadRequest(
            "a WebSocket handshake is an HTTP/1.1 GET",
        ));
    }
    let key = single(headers, &SEC_WEBSOCKET_KEY)
        .filter(|k| {
            BASE64
                .decode(k.as_bytes())
                .is_ok_and(|nonce| nonce.len() == 16)
        })
        .ok_or(ProxyError::BadRequest("invalid Sec-WebSocket-Key"))?;
    match single(headers, &SEC_WEBSOCKET_VERSION) {
        Some(v) if v.as_bytes().trim_ascii() == b"13" => Ok(key.clone()),
        Some(_) => Err(ProxyError::WebSocketVersion),
        None => Err(ProxyError::BadRequest("no Sec-WebSocket-Version")),
    }
}

fn single<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a HeaderValue> {
    let mut all = headers.get_all(name).iter();
    let first = all.next();
    all.next().is_none().then_some(first).flatten()
}

/// Whether a backend's `101` carries the `Sec-WebSocket-Accept` that
/// answers `key` (base64 of the SHA-1 of the key and the RFC's GUID): the
/// proof that the backend performed this WebSocket handshake, and not some
/// other switch that would make the tunnel a raw pipe into it.
pub fn accepts(key: &HeaderValue, response: &HeaderMap) -> bool {
    const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    let mut sha = Sha1::new();
    sha.update(key.as_bytes().trim_ascii());
    sha.update(GUID);
    let expected = BASE64.encode(&sha.finalize());
    single(response, &SEC_WEBSOCKET_ACCEPT)
        .is_some_and(|v| v.as_bytes().trim_ascii() == expected.as_bytes())
}

/// What a finished tunnel reports.
#[derive(Debug, Clone, Copy, Default)]
pub struct TunnelStats {
    pub to_client: u64,
    pub to_backend: u64,
}

/// How a tunnel learns that the drain timeout ended, and what it sends then.
#[derive(Debug)]
pub struct Close {
    /// Turns `true` at the end of the drain (see [`crate::server`]).
    pub signal: tokio::sync::watch::Receiver<bool>,
    /// The upgrade was `websocket`: close frames are sent before closing.
    /// Other protocols are just closed.
    pub websocket: bool,
}

/// After its close frames, how long a tunnel keeps reading (and
/// discarding) both sides for their answer and end-of-stream, so that the
/// frames are not lost to a TCP reset of unread data.
pub const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// A WebSocket close frame from server to client (unmasked): FIN and the
/// close opcode, a 2-byte payload, status 1001 "going away".
const CLOSE_GOING_AWAY: [u8; 4] = [0x88, 0x02, 0x03, 0xE9];

/// The same close frame from client to server: clients must mask theirs.
fn close_going_away_masked() -> [u8; 8] {
    let key: [u8; 4] = rand::random();
    [
        0x88,
        0x82,
        key[0],
        key[1],
        key[2],
        key[3],
        CLOSE_GOING_AWAY[2] ^ key[0],
        CLOSE_GOING_AWAY[3] ^ key[1],
    ]
}

/// Pipes the two upgraded connections until either side closes, until
/// `idle_timeout` passes with no byte in either direction, or until the
/// drain timeout ends (`close`): a WebSocket then gets a close frame
/// (1001 "going away") on both sides before both are closed.
pub async fn tunnel(
    client: OnUpgrade,
    backend: OnUpgrade,
    idle_timeout: Option<Duration>,
    mut close: Close,
) -> TunnelStats {
    let (client, backend) = match tokio::try_join!(client, backend) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade failed");
            return TunnelStats::default();
        }
    };
    let start = Instant::now();
    let activity = Arc::new(AtomicU64::new(0));
    let mut client = Activity {
        io: TokioIo::new(client),
        start,
        last: activity.clone(),
        read: 0,
    };
    let mut backend = Activity {
        io: TokioIo::new(backend),
        start,
        last: activity.clone(),
        read: 0,
    };
    let drained = {
        let copy = tokio::io::copy_bidirectional_with_sizes(
            &mut client,
            &mut backend,
            TUNNEL_BUFFER,
            TUNNEL_BUFFER,
        );
        tokio::pin!(copy);
        let closing = closing(&mut close.signal);
        tokio::pin!(closing);
        loop {
            let idle_since = start + Duration::from_millis(activity.load(Ordering::Relaxed));
            let idle_end = idle_timeout.map(|limit| idle_since + limit);
            tokio::select! {
                r = &mut copy => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "tunnel ended with an error");
                    }
                    break false;
                }
                () = &mut closing => break true,
                () = sleep_until(idle_end) => {
                    let last = start + Duration::from_millis(activity.load(Ordering::Relaxed));
                    if let Some(limit) = idle_timeout {
                        if last.elapsed() >= limit {
                            tracing::debug!(idle = ?limit, "tunnel idle timeout");
                            break false;
                        }
                    }
                }
            }
        }
    };
    if drained {
        tracing::debug!(
            websocket = close.websocket,
            "drain timeout: closing the tunnel"
        );
        let bye = close_both(&mut client.io, &mut backend.io, close.websocket);
        let _ = tokio::time::timeout(2 * CLOSE_LINGER, bye).await;
    }
    TunnelStats {
        to_client: backend.read,
        to_backend: client.read,
    }
}

/// Completes when the drain timeout ends; never when the sender is gone
/// without having said so.
async fn closing(signal: &mut tokio::sync::watch::Receiver<bool>) {
    if signal.wait_for(|closed| *closed).await.is_err() {
        std::future::pending::<()>().await;
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// Sends the close frames (WebSocket only), shuts both write sides, then
/// reads both until end-of-stream for at most [`CLOSE_LINGER`].
async fn close_both<C, B>(client: &mut C, backend: &mut B, websocket: bool)
where
    C: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    use tokio::io::AsyncWriteExt;
    if websocket {
        let _ = client.write_all(&CLOSE_GOING_AWAY).await;
        let _ = backend.write_all(&close_going_away_masked()).await;
    }
    let _ = client.shutdown().await;
    let _ = backend.shutdown().await;
    let linger = async { tokio::join!(discard(client), discard(backend)) };
    let _ = tokio::time::timeout(CLOSE_LINGER, linger).await;
}

/// Reads and drops everything until end-of-stream or an error.
async fn discard<T: AsyncRead + Unpin>(io: &mut T) {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 1024];
    while matches!(io.read(&mut buf).await, Ok(n) if n > 0) {}
}

/// An I/O wrapper recording the time of the last byte moved, in
/// milliseconds since the tunnel started, and the bytes read from it.
struct Activity<T> {
    io: T,
    start: Instant,
    last: Arc<AtomicU64>,
    read: u64,
}

impl<T> Activity<T> {
    fn touch(&self) {
        self.last
            .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Activity<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.io).poll_read(cx, buf);
        let n = buf.filled().len().saturating_sub(before);
        if n > 0 {
            this.read += n as u64;
            this.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Activity<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upgrade(protocol: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static(protocol));
        h
    }

    #[test]
    fn detects_upgrade_requests() {
        let ws = vec!["websocket".to_owned()];
        let mut h = upgrade("websocket");
        assert_eq!(requested(&h, &ws).expect("upgrade"), "websocket");
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        assert!(requested(&h, &ws).is_none());
    }

    #[test]
    fn only_allowed_protocols_are_relayed_and_h2c_never() {
        let ws = vec!["websocket".to_owned()];
        assert!(requested(&upgrade("WebSocket"), &ws).is_some());
        assert!(requested(&upgrade("h2c"), &ws).is_none());
        assert!(requested(&upgrade("foo/1"), &ws).is_none());
        assert!(requested(&upgrade("websocket, h2c"), &ws).is_none());
        let listed = vec!["foo".to_owned(), "h2c".to_owned()];
        assert!(requested(&upgrade("foo/1"), &listed).is_some());
        assert!(requested(&upgrade("H2C"), &listed).is_none());
    }

    #[test]
    fn a_backend_may_not_switch_to_another_protocol() {
        let ws = HeaderValue::from_static("websocket");
        assert!(same_protocol(
            &ws,
            Some(&HeaderValue::from_static("WebSocket"))
        ));
        assert!(!same_protocol(&ws, Some(&HeaderValue::from_static("h2c"))));
        assert!(!same_protocol(&ws, None));
    }

    #[test]
    fn websocket_handshakes() {
        let mut h = upgrade("websocket");
        h.insert(
            &SEC_WEBSOCKET_KEY,
            HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
        );
        h.insert(&SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        let key = check_websocket_request(&Method::GET, Version::HTTP_11, &h).expect("valid");
        // RFC 6455 §1.3's example.
        let mut resp = HeaderMap::new();
        resp.insert(
            &SEC_WEBSOCKET_ACCEPT,
            HeaderValue::from_static("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        );
        assert!(accepts(&key, &resp));
        resp.insert(&SEC_WEBSOCKET_ACCEPT, HeaderValue::from_static("AAAA"));
        assert!(!accepts(&key, &resp));
        assert!(!accepts(&key, &HeaderMap::new()));

        let post = check_websocket_request(&Method::POST, Version::HTTP_11, &h);
        assert!(matches!(post, Err(ProxyError::BadRequest(_))));
        let mut v8 = h.clone();
        v8.insert(&SEC_WEBSOCKET_VERSION, HeaderValue::from_static("8"));
        let v8 = check_websocket_request(&Method::GET, Version::HTTP_11, &v8);
        assert!(matches!(v8, Err(ProxyError::WebSocketVersion)));
        for bad in [
            "",
            "short",
            "dGhlIHNhbXBsZSBub25jZQ",
            "dGhlIHNhbXBsZSBub25jZXh4eA==",
        ] {
            let mut k = h.clone();
            k.insert(&SEC_WEBSOCKET_KEY, HeaderValue::from_static(bad));
            let r = check_websocket_request(&Method::GET, Version::HTTP_11, &k);
            assert!(matches!(r, Err(ProxyError::BadRequest(_))), "{bad:?}");
        }
        let mut two = h.clone();
        two.append(
            &SEC_WEBSOCKET_KEY,
            HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
        );
        let r = check_websocket_request(&Method::GET, Version::HTTP_11, &two);
        assert!(matches!(r, Err(ProxyError::BadRequest(_))));
    }

    #[test]
    fn masked_close_frame_unmasks_to_1001() {
        let f = close_going_away_masked();
        assert_eq!(&f[..2], &[0x88, 0x82]);
        let code = [f[6] ^ f[2], f[7] ^ f[3]];
        assert_eq!(u16::from_be_bytes(code), 1001);
        assert_eq!(
            u16::from_be_bytes([CLOSE_GOING_AWAY[2], CLOSE_GOING_AWAY[3]]),
            1001
        );
    }
}
