//! Fake backends: HTTP servers (hyper) that answer as told and record every
//! request they get, and raw TCP servers that send broken responses.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::body::Checksum;

/// Bodies up to this size are kept whole in [`RecordedRequest::body`].
const KEEP_BODY_UP_TO: usize = 64 * 1024;

/// One request as a backend saw it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: Method,
    /// The request target as received (origin form, e.g. `/a?b=c`).
    pub uri: String,
    pub version: Version,
    pub headers: HeaderMap,
    /// The proxy's side of the connection.
    pub peer: SocketAddr,
    /// Body bytes received (so far, while an echo is still streaming).
    pub body_len: u64,
    /// [`crate::body::checksum`] of the body, once complete.
    pub body_checksum: u64,
    /// The body itself when it is at most 64 KiB.
    pub body: Option<Bytes>,
    /// The whole body was received.
    pub complete: bool,
    /// Why reading the body failed, if it did.
    pub body_error: Option<String>,
}

impl RecordedRequest {
    /// A header's value as text (the first one when repeated).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Every value of a header, in order.
    pub fn header_all(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect()
    }
}

/// How a [`Backend`] answers; see [`Backend::builder`].
#[derive(Debug, Clone)]
pub struct BackendBuilder {
    name: String,
    status: StatusCode,
    headers: Vec<(HeaderName, HeaderValue)>,
    delay: Option<Duration>,
    echo: bool,
}

impl BackendBuilder {
    /// Answer every request with this status.
    pub fn status(mut self, status: u16) -> Self {
        self.status = StatusCode::from_u16(status).expect("valid status code");
        self
    }

    /// Add this header to every response.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((
            HeaderName::from_bytes(name.as_bytes()).expect("valid header name"),
            HeaderValue::from_str(value).expect("valid header value"),
        ));
        self
    }

    /// Wait this long (after reading the request body) before answering.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Answer with the request body, streamed back as it arrives.
    pub fn echo_body(mut self) -> Self {
        self.echo = true;
        self
    }

    /// Binds `127.0.0.1:0` and starts serving.
    pub async fn start(self) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a backend on 127.0.0.1:0");
        let addr = listener.local_addr().expect("backend local address");
        let state = Arc::new(State::default());
        let config = Arc::new(self);
        let task = tokio::spawn(accept_loop(listener, config.clone(), state.clone()));
        Backend {
            addr,
            name: config.name.clone(),
            state,
            task,
        }
    }
}

/// A fake HTTP/1.1 backend on a loopback port; stops accepting on drop.
///
/// By default it answers `200` with its name as the body and an
/// `x-backend: <name>` header.
pub struct Backend {
    addr: SocketAddr,
    name: String,
    state: Arc<State>,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct State {
    /// Set by [`Backend::kill`]: every open connection is dropped.
    killed: tokio::sync::Notify,
    requests: Mutex<Vec<RecordedRequest>>,
    accepted: AtomicUsize,
    open: AtomicUsize,
    max_open: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

impl Backend {
    /// A backend with options, e.g. `Backend::builder("b").status(502).start().await`.
    pub fn builder(name: &str) -> BackendBuilder {
        BackendBuilder {
            name: name.to_owned(),
            status: StatusCode::OK,
            headers: Vec::new(),
            delay: None,
            echo: false,
        }
    }

    /// A backend answering `200 <name>` to everything.
    pub async fn start(name: &str) -> Backend {
        Self::builder(name).start().await
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`: what goes into a `frontend:` list.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state
            .requests
            .lock()
            .expect("backend record lock")
            .clone()
    }

    /// How many requests arrived (counted when their head arrived).
    pub fn request_count(&self) -> usize {
        self.state
            .requests
            .lock()
            .expect("backend record lock")
            .len()
    }

    /// The last request received; panics when there was none.
    pub fn last_request(&self) -> RecordedRequest {
        self.requests()
            .pop()
            .unwrap_or_else(|| panic!("backend {} received no request", self.name))
    }

    /// TCP connections accepted so far.
    pub fn connections_accepted(&self) -> usize {
        self.state.accepted.load(Ordering::SeqCst)
    }

    /// Most TCP connections that were open at the same time.
    pub fn max_open_connections(&self) -> usize {
        self.state.max_open.load(Ordering::SeqCst)
    }

    /// Most requests being handled at the same time.
    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }
}

impl Backend {
    /// Dies like a crashed process: stops listening (new connections are
    /// refused) and drops every open connection, requests in flight
    /// included.
    pub fn kill(&self) {
        self.task.abort();
        self.state.killed.notify_waiters();
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Increments a gauge and its maximum; decrements on drop.
struct GaugeGuard<'a> {
    gauge: &'a AtomicUsize,
}

impl<'a> GaugeGuard<'a> {
    fn enter(gauge: &'a AtomicUsize, max: &AtomicUsize) -> Self {
        let now = gauge.fetch_add(1, Ordering::SeqCst) + 1;
        max.fetch_max(now, Ordering::SeqCst);
        Self { gauge }
    }
}

impl Drop for GaugeGuard<'_> {
    fn drop(&mut self) {
        self.gauge.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn accept_loop(listener: TcpListener, config: Arc<BackendBuilder>, state: Arc<State>) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        state.accepted.fetch_add(1, Ordering::SeqCst);
        let config = config.clone();
        let state = state.clone();
        tokio::spawn(async move {
            let _open = GaugeGuard::enter(&state.open, &state.max_open);
            let killed = state.killed.notified();
            let service = service_fn(|req| handle(req, peer, config.clone(), state.clone()));
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                _ = killed => {}
            }
        });
    }
}

type BackendBody = http_body_util::combinators::BoxBody<Bytes, hyper::Error>;

async fn handle(
    req: Request<Incoming>,
    peer: SocketAddr,
    config: Arc<BackendBuilder>,
    state: Arc<State>,
) -> Result<Response<BackendBody>, Infallible> {
    let state_for_guard = state.clone();
    let _in_flight = GaugeGuard::enter(&state_for_guard.in_flight, &state_for_guard.max_in_flight);
    let (parts, mut body) = req.into_parts();
    let index = {
        let mut requests = state.requests.lock().expect("backend record lock");
        requests.push(RecordedRequest {
            method: parts.method.clone(),
            uri: parts.uri.to_string(),
            version: parts.version,
            headers: parts.headers.clone(),
            peer,
            body_len: 0,
            body_checksum: 0,
            body: None,
            complete: false,
            body_error: None,
        });
        requests.len() - 1
    };
    let mut recorder = BodyRecorder::new(state.clone(), index);

    let body: BackendBody = if config.echo {
        Tap {
            inner: body,
            recorder,
        }
        .boxed()
    } else {
        loop {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        recorder.update(data);
                    }
                }
                Some(Err(error)) => {
                    recorder.fail(error.to_string());
                    break;
                }
                None => {
                    recorder.finish();
                    break;
                }
            }
        }
        http_body_util::Full::new(Bytes::from(config.name.clone()))
            .map_err(|never| match never {})
            .boxed()
    };

    if let Some(delay) = config.delay {
        tokio::time::sleep(delay).await;
    }
    let asked = Asked::of(&parts.headers);
    if let Some(delay) = asked.delay {
        tokio::time::sleep(delay).await;
    }
    let mut response = Response::new(body);
    *response.status_mut() = asked.status.unwrap_or(config.status);
    let headers = response.headers_mut();
    for (name, value) in asked.headers {
        headers.append(name, value);
    }
    headers.insert(
        "x-backend",
        HeaderValue::from_str(&config.name).expect("backend name is a valid header value"),
    );
    headers.insert("content-type", HeaderValue::from_static("text/plain"));
    for (name, value) in &config.headers {
        headers.append(name.clone(), value.clone());
    }
    Ok(response)
}

/// What a request may ask of any [`Backend`] through headers, so that one
/// backend can answer each request of a table test its own way (the proxy
/// forwards these headers like any other):
/// - `x-test-delay-ms: N`: wait N ms before the response head;
/// - `x-test-status: N`: answer with this status;
/// - `x-test-response-header: name: value` (repeatable): add the header.
struct Asked {
    delay: Option<Duration>,
    status: Option<StatusCode>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Asked {
    fn of(h: &HeaderMap) -> Self {
        let text = |name: &str| h.get(name).and_then(|v| v.to_str().ok());
        Asked {
            delay: text("x-test-delay-ms")
                .and_then(|v| v.trim().parse().ok())
                .map(Duration::from_millis),
            status: text("x-test-status")
                .and_then(|v| StatusCode::from_bytes(v.trim().as_bytes()).ok()),
            headers: h
                .get_all("x-test-response-header")
                .iter()
                .filter_map(|v| {
                    let (name, value) = v.to_str().ok()?.split_once(':')?;
                    Some((
                        HeaderName::from_bytes(name.trim().as_bytes()).ok()?,
                        HeaderValue::from_str(value.trim()).ok()?,
                    ))
                })
                .collect(),
        }
    }
}

/// Writes the body's length, checksum and (small) content into the record.
struct BodyRecorder {
    state: Arc<State>,
    index: usize,
    sum: Checksum,
    kept: Vec<u8>,
    done: bool,
}

impl BodyRecorder {
    fn new(state: Arc<State>, index: usize) -> Self {
        Self {
            state,
            index,
            sum: Checksum::new(),
            kept: Vec::new(),
            done: false,
        }
    }

    fn update(&mut self, data: &[u8]) {
        self.sum.update(data);
        if self.kept.len() + data.len() <= KEEP_BODY_UP_TO {
            self.kept.extend_from_slice(data);
        }
        let mut requests = self.state.requests.lock().expect("backend record lock");
        requests[self.index].body_len = self.sum.len();
    }

    fn finish(&mut self) {
        self.done = true;
        let mut requests = self.state.requests.lock().expect("backend record lock");
        let record = &mut requests[self.index];
        record.body_len = self.sum.len();
        record.body_checksum = self.sum.value();
        if self.sum.len() as usize <= KEEP_BODY_UP_TO {
            record.body = Some(Bytes::from(std::mem::take(&mut self.kept)));
        }
        record.complete = true;
    }

    fn fail(&mut self, error: String) {
        self.done = true;
        let mut requests = self.state.requests.lock().expect("backend record lock");
        requests[self.index].body_error = Some(error);
    }
}

impl Drop for BodyRecorder {
    fn drop(&mut self) {
        if !self.done {
            self.fail("body dropped before its end".to_owned());
        }
    }
}

/// The request body passed through to the response, recorded on the way.
struct Tap {
    inner: Incoming,
    recorder: BodyRecorder,
}

impl Body for Tap {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.recorder.update(data);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => {
                this.recorder.fail(error.to_string());
                Poll::Ready(Some(Err(error)))
            }
            Poll::Ready(None) => {
                this.recorder.finish();
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A TCP server that reads a request head and answers every connection
/// with fixed bytes, then closes: for responses no real server would send.
pub struct RawBackend {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl RawBackend {
    /// Answers every connection with `response`, then closes it.
    pub async fn start(response: impl Into<Vec<u8>>) -> RawBackend {
        let response: Arc<[u8]> = response.into().into();
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a raw backend on 127.0.0.1:0");
        let addr = listener.local_addr().expect("raw backend local address");
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                counter.fetch_add(1, Ordering::SeqCst);
                let response = response.clone();
                tokio::spawn(async move {
                    let _ =
                        tokio::time::timeout(Duration::from_secs(5), read_head(&mut stream)).await;
                    let _ = stream.write_all(&response).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        RawBackend {
            addr,
            accepted,
            task,
        }
    }

    /// Declares `Content-Length: 100`, sends 10 bytes, closes.
    pub async fn short_body() -> RawBackend {
        Self::start(&b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n0123456789"[..]).await
    }

    /// Declares `Content-Length: 5`, sends `hello` plus 20 more bytes, closes.
    pub async fn long_body() -> RawBackend {
        Self::start(&b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhelloEXTRA-BYTES-EXTRA"[..]).await
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Connections accepted so far.
    pub fn connections_accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for RawBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A backend that switches protocols, as an `h2c`-capable or custom
/// protocol server would: it records every request head, answers a request
/// carrying `Upgrade: <p>` (or every request, when started with
/// [`SwitchingBackend::always`]) with `101 Switching Protocols` to that
/// protocol and then echoes every byte; anything else gets a plain `200`
/// with the body `plain`.
pub struct SwitchingBackend {
    addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl SwitchingBackend {
    /// Switches when asked to.
    pub async fn start() -> SwitchingBackend {
        Self::spawn(None).await
    }

    /// Answers every request with a `101` to `protocol`, asked or not.
    pub async fn always(protocol: &'static str) -> SwitchingBackend {
        Self::spawn(Some(protocol)).await
    }

    async fn spawn(always: Option<&'static str>) -> SwitchingBackend {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a switching backend on 127.0.0.1:0");
        let addr = listener.local_addr().expect("switching backend address");
        let heads = Arc::new(Mutex::new(Vec::new()));
        let seen = heads.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                let seen = seen.clone();
                tokio::spawn(async move {
                    let Ok(head) =
                        tokio::time::timeout(Duration::from_secs(5), head_text(&mut stream)).await
                    else {
                        return;
                    };
                    seen.lock()
                        .expect("switching backend lock")
                        .push(head.clone());
                    let asked = head.lines().find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.trim()
                            .eq_ignore_ascii_case("upgrade")
                            .then(|| value.trim().to_owned())
                    });
                    let Some(protocol) = always.map(str::to_owned).or(asked) else {
                        let _ = stream
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nplain")
                            .await;
                        let _ = stream.shutdown().await;
                        return;
                    };
                    let switch = format!(
                        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: {protocol}\r\n\r\n"
                    );
                    if stream.write_all(switch.as_bytes()).await.is_err() {
                        return;
                    }
                    let (mut r, mut w) = stream.split();
                    let _ = tokio::time::timeout(
                        Duration::from_secs(10),
                        tokio::io::copy(&mut r, &mut w),
                    )
                    .await;
                });
            }
        });
        SwitchingBackend { addr, heads, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request head received (request line and headers), in order.
    pub fn heads(&self) -> Vec<String> {
        self.heads.lock().expect("switching backend lock").clone()
    }
}

impl Drop for SwitchingBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads a request head and returns it as text (up to the blank line).
async fn head_text(stream: &mut tokio::net::TcpStream) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 1];
    // Byte by byte: what follows the head belongs to the switched protocol.
    while seen.len() < 64 * 1024 && !seen.ends_with(b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(1) => seen.push(buf[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

/// Reads until the end of a request head (`\r\n\r\n`) or 64 KiB.
async fn read_head(stream: &mut tokio::net::TcpStream) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while seen.len() < 64 * 1024 {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                seen.extend_from_slice(&buf[..n]);
                if seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    return;
                }
            }
        }
    }
}
