//! A tiny HTTP backend answering its name, with a switchable status code
//! and a request counter.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio_util::sync::CancellationToken;

pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    status: Arc<AtomicU16>,
    hits: Arc<AtomicUsize>,
    stop: CancellationToken,
}

impl Backend {
    pub async fn start(name: &str) -> Backend {
        Self::start_on(name, "127.0.0.1:0".parse().unwrap()).await
    }

    pub async fn start_on(name: &str, addr: SocketAddr) -> Backend {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let status = Arc::new(AtomicU16::new(200));
        let hits = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let (s, h, st, n) = (status.clone(), hits.clone(), stop.clone(), name.to_owned());
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    _ = st.cancelled() => return,
                    r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
                };
                let (s, h, n, st) = (s.clone(), h.clone(), n.clone(), st.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |_req| {
                        h.fetch_add(1, Ordering::SeqCst);
                        let mut r = hyper::Response::new(Full::new(Bytes::from(n.clone())));
                        *r.status_mut() =
                            hyper::StatusCode::from_u16(s.load(Ordering::SeqCst)).unwrap();
                        std::future::ready(Ok::<_, Infallible>(r))
                    });
                    let b = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let conn = b.serve_connection(TokioIo::new(stream), svc);
                    tokio::select! { _ = conn => {}, _ = st.cancelled() => {} }
                });
            }
        });
        Backend {
            name: name.to_owned(),
            addr,
            status,
            hits,
            stop,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_status(&self, code: u16) {
        self.status.store(code, Ordering::SeqCst);
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn stop(&self) {
        self.stop.cancel();
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
