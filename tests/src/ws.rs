//! A WebSocket echo backend (tokio-tungstenite) recording the handshake
//! headers it received.

use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use std::sync::Mutex;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::Message;

/// Headers of one handshake, as (name, value) pairs.
pub type Handshake = Vec<(String, String)>;

/// Echoes every text and binary message back, prefixed with nothing;
/// answers pings (tungstenite does) and closes when the client closes.
pub struct WsBackend {
    addr: SocketAddr,
    handshakes: Arc<Mutex<Vec<Handshake>>>,
    task: JoinHandle<()>,
}

impl WsBackend {
    pub async fn start() -> WsBackend {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind ws backend");
        let addr = listener.local_addr().expect("ws backend address");
        let handshakes: Arc<Mutex<Vec<Handshake>>> = Arc::default();
        let seen = handshakes.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    #[allow(clippy::result_large_err)] // tungstenite's callback signature
                    let callback = |req: &Request, resp: Response| {
                        let headers = req
                            .headers()
                            .iter()
                            .map(|(k, v)| {
                                (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned())
                            })
                            .collect();
                        seen.lock().expect("handshake log").push(headers);
                        Ok(resp)
                    };
                    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await
                    else {
                        return;
                    };
                    while let Some(Ok(msg)) = ws.next().await {
                        let echo = match msg {
                            Message::Text(_) | Message::Binary(_) => msg,
                            Message::Close(_) => return,
                            _ => continue,
                        };
                        if ws.send(echo).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        WsBackend {
            addr,
            handshakes,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Headers of every handshake received, in order.
    pub fn handshakes(&self) -> Vec<Handshake> {
        self.handshakes.lock().expect("handshake log").clone()
    }
}

impl Drop for WsBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}
