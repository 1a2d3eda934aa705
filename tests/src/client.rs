//! Clients that talk to the proxy: HTTP/1.1 requests through hyper, one
//! connection per request unless a [`Conn`] is reused, and raw bytes over
//! TCP for requests hyper would refuse to send.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::body::Checksum;

/// Boxed error of request bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The request body type the client sends.
pub type ClientBody = BoxBody<Bytes, BoxError>;

/// Bound on one request and its whole response, unless changed by
/// [`Req::timeout`]: a proxy that hangs fails the test instead of blocking it.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A request to send through the proxy (builder style).
pub struct Req {
    method: Method,
    path: String,
    host: Option<String>,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: ClientBody,
    timeout: Duration,
}

impl Req {
    /// `METHOD path` with `Host: host`.
    pub fn new(method: &str, host: &str, path: &str) -> Self {
        Self {
            method: Method::from_bytes(method.as_bytes()).expect("valid method"),
            path: path.to_owned(),
            host: Some(host.to_owned()),
            headers: Vec::new(),
            body: empty(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// `GET path` with `Host: host`.
    pub fn get(host: &str, path: &str) -> Self {
        Self::new("GET", host, path)
    }

    /// Sends no `Host` header at all.
    pub fn no_host(mut self) -> Self {
        self.host = None;
        self
    }

    /// Adds a header (repeatable).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((
            HeaderName::from_bytes(name.as_bytes()).expect("valid header name"),
            HeaderValue::from_str(value).expect("valid header value"),
        ));
        self
    }

    /// A body sent with `Content-Length`.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = Full::new(body.into())
            .map_err(|never| match never {})
            .boxed();
        self
    }

    /// A streamed body (its size hint decides Content-Length or chunked).
    pub fn stream<B>(mut self, body: B) -> Self
    where
        B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        self.body = body.map_err(Into::into).boxed();
        self
    }

    /// Bound on the whole exchange (default [`DEFAULT_TIMEOUT`]).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn into_request(self) -> (Request<ClientBody>, Duration) {
        let mut request = Request::new(self.body);
        *request.method_mut() = self.method;
        *request.uri_mut() = self.path.parse().expect("valid request path");
        if let Some(host) = self.host {
            request.headers_mut().insert(
                http::header::HOST,
                HeaderValue::from_str(&host).expect("valid host"),
            );
        }
        for (name, value) in self.headers {
            request.headers_mut().append(name, value);
        }
        (request, self.timeout)
    }

    /// Sends the request on a new connection to `addr` and reads the whole
    /// response. Errors on a transport failure, a truncated body or timeout.
    pub async fn send(self, addr: SocketAddr) -> anyhow::Result<Resp> {
        let mut conn = Conn::open(addr).await?;
        conn.send(self).await
    }

    /// Like [`Self::send`] but the response body is only counted and
    /// checksummed as it streams, never held in memory.
    pub async fn send_digest(self, addr: SocketAddr) -> anyhow::Result<DigestResp> {
        let mut conn = Conn::open(addr).await?;
        let (request, timeout) = self.into_request();
        let exchange = async {
            let response = conn
                .sender
                .send_request(request)
                .await
                .context("send request")?;
            let (parts, mut body) = response.into_parts();
            let mut sum = Checksum::new();
            while let Some(frame) = body.frame().await {
                let frame = frame.context("read response body")?;
                if let Some(data) = frame.data_ref() {
                    sum.update(data);
                }
            }
            Ok(DigestResp {
                status: parts.status,
                headers: parts.headers,
                body: sum,
            })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| anyhow!("no complete response within {timeout:?}"))?
    }
}

fn empty() -> ClientBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// A response read in full.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    /// The body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `x-backend` header set by [`crate::backend::Backend`].
    pub fn backend(&self) -> Option<&str> {
        self.header("x-backend")
    }

    /// The name of the backend that answered, or a description of the
    /// answer (status, `x-debug-error`, start of the body) when no backend
    /// did: `assert_eq!(resp.served_by(), "b1")` then fails legibly.
    pub fn served_by(&self) -> String {
        match self.backend() {
            Some(name) => name.to_owned(),
            None => {
                let text = self.text();
                let start: String = text.chars().take(200).collect();
                format!(
                    "<no backend: status {}, x-debug-error {:?}, body {start:?}>",
                    self.status,
                    self.header("x-debug-error")
                )
            }
        }
    }
}

/// A response whose body was only counted and checksummed.
#[derive(Debug, Clone)]
pub struct DigestResp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Checksum,
}

/// `GET path` with `Host: host`; panics on a transport error.
pub async fn get(addr: SocketAddr, host: &str, path: &str) -> Resp {
    Req::get(host, path)
        .send(addr)
        .await
        .unwrap_or_else(|e| panic!("GET http://{host}{path} through {addr} failed: {e:#}"))
}

/// One client connection, for several requests in a row (keep-alive).
pub struct Conn {
    sender: SendRequest<ClientBody>,
}

impl Conn {
    /// Connects to `addr` and completes the HTTP/1.1 handshake.
    pub async fn open(addr: SocketAddr) -> anyhow::Result<Conn> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect to the proxy at {addr}"))?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .context("HTTP/1.1 handshake")?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Conn { sender })
    }

    /// Sends `req` on this connection and reads the whole response.
    pub async fn send(&mut self, req: Req) -> anyhow::Result<Resp> {
        let (request, timeout) = req.into_request();
        let exchange = async {
            self.sender
                .ready()
                .await
                .context("connection not ready (closed by the proxy?)")?;
            let response = self
                .sender
                .send_request(request)
                .await
                .context("send request")?;
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .context("read response body")?
                .to_bytes();
            Ok(Resp {
                status: parts.status,
                version: parts.version,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| anyhow!("no complete response within {timeout:?}"))?
    }

    /// The proxy closed this connection.
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }
}

/// Sends `bytes` on a new TCP connection and returns what came back: one
/// response (head plus `Content-Length` body), or everything up to the
/// close; bounded by 10 s.
pub async fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    raw_within(addr, bytes, Duration::from_secs(10)).await
}

/// [`raw`] with an explicit bound; returns what was read when it passes.
pub async fn raw_within(addr: SocketAddr, bytes: &[u8], deadline: Duration) -> String {
    let mut stream = TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect to the proxy at {addr}: {e}"));
    let _ = stream.write_all(bytes).await;
    let mut seen = Vec::new();
    let _ = tokio::time::timeout(deadline, async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
            if response_complete(&seen) {
                return;
            }
        }
    })
    .await;
    String::from_utf8_lossy(&seen).into_owned()
}

/// Sends raw bytes on a new connection and returns (everything the proxy
/// answered, whether it closed the connection afterwards): reads until the
/// close or until 3 s pass in silence.
pub async fn raw_and_closed(addr: SocketAddr, bytes: &[u8]) -> (String, bool) {
    let mut s = TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect to the proxy at {addr}: {e}"));
    // The proxy may answer and close before it has read everything.
    let _ = s.write_all(bytes).await;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    (String::from_utf8_lossy(&seen).into_owned(), closed)
}

/// The status code of a raw response (`HTTP/1.1 400 Bad Request...`).
pub fn raw_status(response: &str) -> Option<u16> {
    response.split_whitespace().nth(1)?.parse().ok()
}

/// True once `seen` holds a response head and its whole `Content-Length`
/// body (or a chunked body's last chunk).
fn response_complete(seen: &[u8]) -> bool {
    let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&seen[..end]).to_ascii_lowercase();
    let body = &seen[end + 4..];
    for line in head.lines() {
        if let Some(value) = line.strip_prefix("content-length:") {
            return value
                .trim()
                .parse::<usize>()
                .is_ok_and(|len| body.len() >= len);
        }
        if line.starts_with("transfer-encoding:") && line.contains("chunked") {
            return body.ends_with(b"0\r\n\r\n");
        }
    }
    false
}

/// One `GET /` over TLS (a full handshake, verified with `client`, SNI
/// `host`), `Connection: close`; returns the raw answer.
pub async fn https_get(
    addr: SocketAddr,
    client: std::sync::Arc<rustls::ClientConfig>,
    host: &str,
) -> String {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from(host.to_owned()).expect("server name");
    let mut tls = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_rustls::TlsConnector::from(client).connect(name, tcp),
    )
    .await
    .expect("handshake within the deadline")
    .expect("TLS handshake");
    let request = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes())
        .await
        .expect("write request");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// Plain HTTP sent to a TLS port (a failed handshake), read until the
/// proxy closes (bounded).
pub async fn plain_http_to_tls_port(addr: SocketAddr) {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    let _ = tcp
        .write_all(b"GET / HTTP/1.1\r\nHost: tls.test\r\n\r\n")
        .await;
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut sink)).await;
}

/// An HTTP/2 client connection to `addr` with prior knowledge (h2c), its
/// connection driven by a task of its own.
pub async fn h2c<B>(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<B>
where
    B: http_body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tcp = TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    let (send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap_or_else(|e| panic!("HTTP/2 handshake with {addr}: {e}"));
    tokio::spawn(conn);
    send
}
