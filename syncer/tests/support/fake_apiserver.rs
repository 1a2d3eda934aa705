//! A fake Kubernetes API server speaking the real HTTP list/watch protocol,
//! backed by an in-memory store that tests mutate.
//!
//! - list: `GET <collection>` answers a `…List` with
//!   `metadata.resourceVersion`; `fieldSelector=metadata.name=…` filters.
//! - watch: `GET <collection>?watch=true&resourceVersion=N` replays the
//!   events after N then streams live ones as chunked JSON lines
//!   (`ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK`); a resourceVersion older
//!   than the last [`FakeApi::compact`] gets `ERROR` 410 Gone, and
//!   [`FakeApi::expire_watches`] sends 410 to every open watch.
//! - get/create/replace (with resourceVersion conflicts, 409)/patch for
//!   leases, events, secrets and Ingress status.
//! - [`FakeApi::stop`] and [`FakeApi::start_again`] simulate a restart on
//!   the same port; the store survives (like etcd).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

type Body = UnsyncBoxBody<Bytes, Infallible>;

#[derive(Clone, Debug)]
enum Live {
    Event {
        rv: u64,
        plural: String,
        ty: &'static str,
        obj: Value,
    },
    Bookmark {
        rv: u64,
    },
    Expire,
}

#[derive(Default)]
struct State {
    rv: u64,
    /// (plural, namespace, name) → object.
    objects: BTreeMap<(String, String, String), Value>,
    log: Vec<(u64, String, &'static str, Value)>,
    compacted: u64,
    /// "METHOD path?query" of every request.
    requests: Vec<String>,
}

pub struct FakeApi {
    state: Arc<Mutex<State>>,
    live: broadcast::Sender<Live>,
    addr: SocketAddr,
    stop: Mutex<CancellationToken>,
}

fn plural_of(kind: &str) -> &'static str {
    match kind {
        "Ingress" => "ingresses",
        "IngressClass" => "ingressclasses",
        "Service" => "services",
        "EndpointSlice" => "endpointslices",
        "Secret" => "secrets",
        "Lease" => "leases",
        "Event" => "events",
        other => panic!("fake API server: unknown kind {other}"),
    }
}

fn kind_of(plural: &str) -> (&'static str, &'static str) {
    match plural {
        "ingresses" => ("Ingress", "networking.k8s.io/v1"),
        "ingressclasses" => ("IngressClass", "networking.k8s.io/v1"),
        "services" => ("Service", "v1"),
        "endpointslices" => ("EndpointSlice", "discovery.k8s.io/v1"),
        "secrets" => ("Secret", "v1"),
        "leases" => ("Lease", "coordination.k8s.io/v1"),
        _ => ("Event", "events.k8s.io/v1"),
    }
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

fn full(code: StatusCode, v: &Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())).boxed_unsync());
    *r.status_mut() = code;
    r.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("application/json"),
    );
    r
}

/// What a request path names.
struct Target {
    plural: String,
    namespace: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

fn parse_path(path: &str) -> Option<Target> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let rest = match *parts.first()? {
        "api" => parts.get(2..)?,
        "apis" => parts.get(3..)?,
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some((*ns).to_owned()), rest),
        _ => (None, rest),
    };
    Some(Target {
        plural: (*rest.first()?).to_owned(),
        namespace,
        name: rest.get(1).map(|s| (*s).to_owned()),
        sub: rest.get(2).map(|s| (*s).to_owned()),
    })
}

fn query(q: &str) -> BTreeMap<String, String> {
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.replace("%3D", "=").replace("%2F", "/")))
        .collect()
}

fn matches(obj: &Value, ns: &Option<String>, field: Option<&String>) -> bool {
    let m = &obj["metadata"];
    if let Some(ns) = ns {
        if m["namespace"].as_str() != Some(ns.as_str()) {
            return false;
        }
    }
    if let Some(f) = field {
        if let Some(name) = f.strip_prefix("metadata.name=") {
            return m["name"].as_str() == Some(name);
        }
    }
    true
}

impl FakeApi {
    pub async fn start() -> Arc<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (live, _) = broadcast::channel(100_000);
        let api = Arc::new(Self {
            state: Arc::new(Mutex::new(State {
                rv: 100,
                ..Default::default()
            })),
            live,
            addr,
            stop: Mutex::new(CancellationToken::new()),
        });
        api.clone().serve(listener);
        api
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kube client pointed at this server.
    pub fn client(&self) -> kube::Client {
        let mut cfg = kube::Config::new(self.url().parse().unwrap());
        cfg.default_namespace = "default".to_owned();
        kube::Client::try_from(cfg).unwrap()
    }

    fn serve(self: Arc<Self>, listener: tokio::net::TcpListener) {
        let stop = self.stop.lock().unwrap().clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    _ = stop.cancelled() => return,
                    r = listener.accept() => match r { Ok(s) => s, Err(_) => continue },
                };
                let api = self.clone();
                let stop = stop.clone();
                tokio::spawn(async move {
                    let api2 = api.clone();
                    let stop2 = stop.clone();
                    let svc = hyper::service::service_fn(move |req| {
                        let api = api2.clone();
                        let stop = stop2.clone();
                        async move { Ok::<_, Infallible>(api.handle(req, stop).await) }
                    });
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let conn = builder.serve_connection(TokioIo::new(stream), svc);
                    tokio::select! {
                        _ = conn => {}
                        _ = stop.cancelled() => {}
                    }
                });
            }
        });
    }

    /// Closes the listener and every connection (watches end abruptly).
    pub fn stop(&self) {
        self.stop.lock().unwrap().cancel();
    }

    /// Listens again on the same port.
    pub async fn start_again(self: &Arc<Self>) {
        *self.stop.lock().unwrap() = CancellationToken::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let listener = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if std::time::Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await
                }
                Err(e) => panic!("cannot rebind {}: {e}", self.addr),
            }
        };
        self.clone().serve(listener);
    }

    /// Creates or replaces an object (ADDED or MODIFIED).
    pub fn apply(&self, obj: impl serde::Serialize) -> Value {
        let mut obj = serde_json::to_value(obj).unwrap();
        let plural = plural_of(obj["kind"].as_str().expect("object has a kind")).to_owned();
        self.put(&plural, &mut obj)
    }

    fn put(&self, plural: &str, obj: &mut Value) -> Value {
        let mut st = self.state.lock().unwrap();
        st.rv += 1;
        let rv = st.rv;
        let ns = obj["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let name = obj["metadata"]["name"]
            .as_str()
            .expect("object has a name")
            .to_owned();
        let key = (plural.to_owned(), ns, name.clone());
        let old = st.objects.get(&key).cloned();
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        if obj["metadata"]["uid"].is_null() {
            obj["metadata"]["uid"] = old
                .as_ref()
                .map(|o| o["metadata"]["uid"].clone())
                .unwrap_or_else(|| json!(format!("uid-{plural}-{name}-{rv}")));
        }
        if obj["metadata"]["creationTimestamp"].is_null() {
            obj["metadata"]["creationTimestamp"] = old
                .as_ref()
                .map(|o| o["metadata"]["creationTimestamp"].clone())
                .unwrap_or_else(|| json!("2024-01-01T00:00:00Z"));
        }
        let (kind, api_version) = kind_of(plural);
        obj["kind"] = json!(kind);
        obj["apiVersion"] = json!(api_version);
        let ty = if old.is_some() { "MODIFIED" } else { "ADDED" };
        st.objects.insert(key, obj.clone());
        st.log.push((rv, plural.to_owned(), ty, obj.clone()));
        let _ = self.live.send(Live::Event {
            rv,
            plural: plural.to_owned(),
            ty,
            obj: obj.clone(),
        });
        obj.clone()
    }

    /// Deletes an object (DELETED); `plural` e.g. "ingresses".
    pub fn delete(&self, plural: &str, ns: &str, name: &str) {
        let mut st = self.state.lock().unwrap();
        let Some(mut obj) = st
            .objects
            .remove(&(plural.to_owned(), ns.to_owned(), name.to_owned()))
        else {
            return;
        };
        st.rv += 1;
        let rv = st.rv;
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        st.log.push((rv, plural.to_owned(), "DELETED", obj.clone()));
        let _ = self.live.send(Live::Event {
            rv,
            plural: plural.to_owned(),
            ty: "DELETED",
            obj,
        });
    }

    pub fn get(&self, plural: &str, ns: &str, name: &str) -> Option<Value> {
        self.state
            .lock()
            .unwrap()
            .objects
            .get(&(plural.to_owned(), ns.to_owned(), name.to_owned()))
            .cloned()
    }

    pub fn list(&self, plural: &str) -> Vec<Value> {
        self.state
            .lock()
            .unwrap()
            .objects
            .iter()
            .filter(|((p, _, _), _)| p == plural)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Sends a BOOKMARK at the current resourceVersion to every watch.
    pub fn bookmark(&self) {
        let rv = self.state.lock().unwrap().rv;
        let _ = self.live.send(Live::Bookmark { rv });
    }

    /// Forgets the history: watches resuming from an older
    /// resourceVersion get 410 Gone.
    pub fn compact(&self) {
        let mut st = self.state.lock().unwrap();
        st.compacted = st.rv + 1;
        st.log.clear();
    }

    /// Every open watch receives `ERROR` 410 Gone and is closed.
    pub fn expire_watches(&self) {
        self.compact();
        let _ = self.live.send(Live::Expire);
    }

    /// Requests seen so far matching `needle` (e.g. "GET /apis/networking.k8s.io/v1/ingresses?").
    pub fn count_requests(&self, needle: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .requests
            .iter()
            .filter(|r| r.contains(needle))
            .count()
    }

    async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        stop: CancellationToken,
    ) -> Response<Body> {
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let q = query(req.uri().query().unwrap_or(""));
        self.state.lock().unwrap().requests.push(format!(
            "{method} {path}?{}",
            req.uri().query().unwrap_or("")
        ));
        let Some(t) = parse_path(&path) else {
            return full(
                StatusCode::NOT_FOUND,
                &status(404, "NotFound", "no such path"),
            );
        };
        let body = req
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        match (method, &t.name, &t.sub) {
            (Method::GET, None, _) if q.get("watch").is_some_and(|w| w == "true" || w == "1") => {
                self.watch(t, q, stop)
            }
            (Method::GET, None, _) => self.list_response(&t, &q),
            (Method::GET, Some(name), _) => {
                match self.get(&t.plural, t.namespace.as_deref().unwrap_or(""), name) {
                    Some(o) => full(StatusCode::OK, &o),
                    None => full(
                        StatusCode::NOT_FOUND,
                        &status(404, "NotFound", &format!("{name} not found")),
                    ),
                }
            }
            (Method::POST, None, _) => {
                let mut obj = body;
                let ns = t.namespace.clone().unwrap_or_default();
                obj["metadata"]["namespace"] = json!(ns);
                let name = obj["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                if self.get(&t.plural, &ns, &name).is_some() {
                    return full(
                        StatusCode::CONFLICT,
                        &status(409, "AlreadyExists", "exists"),
                    );
                }
                let o = self.put(&t.plural, &mut obj);
                full(StatusCode::CREATED, &o)
            }
            (Method::PUT, Some(name), None) => {
                let ns = t.namespace.clone().unwrap_or_default();
                let Some(cur) = self.get(&t.plural, &ns, name) else {
                    return full(StatusCode::NOT_FOUND, &status(404, "NotFound", "not found"));
                };
                let mut obj = body;
                if obj["metadata"]["resourceVersion"] != cur["metadata"]["resourceVersion"] {
                    return full(
                        StatusCode::CONFLICT,
                        &status(409, "Conflict", "the object has been modified"),
                    );
                }
                obj["metadata"]["namespace"] = json!(ns);
                let o = self.put(&t.plural, &mut obj);
                full(StatusCode::OK, &o)
            }
            (Method::PATCH, Some(name), sub) => {
                let ns = t.namespace.clone().unwrap_or_default();
                let Some(mut cur) = self.get(&t.plural, &ns, name) else {
                    return full(StatusCode::NOT_FOUND, &status(404, "NotFound", "not found"));
                };
                if sub.as_deref() == Some("status") {
                    cur["status"] = body["status"].clone();
                } else if let (Some(c), Some(b)) = (cur.as_object_mut(), body.as_object()) {
                    for (k, v) in b {
                        if k != "metadata" {
                            c.insert(k.clone(), v.clone());
                        }
                    }
                }
                let o = self.put(&t.plural, &mut cur);
                full(StatusCode::OK, &o)
            }
            _ => full(
                StatusCode::METHOD_NOT_ALLOWED,
                &status(405, "MethodNotAllowed", "no"),
            ),
        }
    }

    fn list_response(&self, t: &Target, q: &BTreeMap<String, String>) -> Response<Body> {
        let st = self.state.lock().unwrap();
        let items: Vec<Value> = st
            .objects
            .iter()
            .filter(|((p, _, _), o)| {
                *p == t.plural && matches(o, &t.namespace, q.get("fieldSelector"))
            })
            .map(|(_, o)| o.clone())
            .collect();
        let (kind, api_version) = kind_of(&t.plural);
        full(
            StatusCode::OK,
            &json!({"kind": format!("{kind}List"), "apiVersion": api_version,
                    "metadata": {"resourceVersion": st.rv.to_string()}, "items": items}),
        )
    }

    fn watch(
        self: Arc<Self>,
        t: Target,
        q: BTreeMap<String, String>,
        stop: CancellationToken,
    ) -> Response<Body> {
        let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
        let line = |v: Value| Bytes::from(format!("{v}\n"));
        let mut live = self.live.subscribe();
        let from: u64 = q
            .get("resourceVersion")
            .and_then(|r| r.parse().ok())
            .unwrap_or(0);
        let field = q.get("fieldSelector").cloned();
        let (kind, api_version) = kind_of(&t.plural);
        {
            let st = self.state.lock().unwrap();
            if from < st.compacted {
                let _ = tx.send(line(json!({"type": "ERROR", "object": status(410, "Expired", "too old resource version")})));
                drop(tx);
                return stream_response(rx);
            }
            for (rv, p, ty, obj) in &st.log {
                if *rv > from && *p == t.plural && matches(obj, &t.namespace, field.as_ref()) {
                    let _ = tx.send(line(json!({"type": ty, "object": obj})));
                }
            }
        }
        let plural = t.plural.clone();
        let ns = t.namespace.clone();
        tokio::spawn(async move {
            loop {
                let msg = tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tx.closed() => return,
                    m = live.recv() => m,
                };
                match msg {
                    Ok(Live::Event {
                        rv,
                        plural: p,
                        ty,
                        obj,
                    }) => {
                        if rv > from
                            && p == plural
                            && matches(&obj, &ns, field.as_ref())
                            && tx.send(line(json!({"type": ty, "object": obj}))).is_err()
                        {
                            return;
                        }
                    }
                    Ok(Live::Bookmark { rv }) => {
                        let _ = tx.send(line(json!({"type": "BOOKMARK", "object": {
                            "kind": kind, "apiVersion": api_version,
                            "metadata": {"resourceVersion": rv.to_string()}}})));
                    }
                    Ok(Live::Expire) | Err(_) => {
                        let _ = tx.send(line(json!({"type": "ERROR", "object": status(410, "Expired", "too old resource version")})));
                        return;
                    }
                }
            }
        });
        stream_response(rx)
    }
}

fn stream_response(rx: mpsc::UnboundedReceiver<Bytes>) -> Response<Body> {
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    let mut r = Response::new(BodyExt::boxed_unsync(StreamBody::new(stream.boxed())));
    r.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("application/json"),
    );
    r
}
