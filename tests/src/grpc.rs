//! A real gRPC service (tonic's server machinery and protobuf messages,
//! without code generation) on a free loopback port, speaking h2c, and a
//! tonic client for it through the proxy, over h2c or TLS.
//!
//! The service, `test.Echo`:
//! - `Unary`: answers the message with `from` set to the server's name,
//!   after `delay_ms`.
//! - `Count` (server streaming): `n` messages numbered 0 to n-1, one every
//!   `delay_ms`.
//! - `Sum` (client streaming): how many messages came, and the sum of their
//!   `n`.
//! - `Chat` (bidirectional): each message back as it comes.
//!
//! Metadata `x-served-by` names the server on every answer.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use http::uri::PathAndQuery;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::watch;
use tonic::{Request, Response, Status, Streaming};
use tonic_prost::ProstCodec;

/// The one message of the service.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Msg {
    #[prost(string, tag = "1")]
    pub text: String,
    #[prost(uint32, tag = "2")]
    pub n: u32,
    #[prost(uint32, tag = "3")]
    pub delay_ms: u32,
    #[prost(string, tag = "4")]
    pub from: String,
}

pub const UNARY: &str = "/test.Echo/Unary";
pub const COUNT: &str = "/test.Echo/Count";
pub const SUM: &str = "/test.Echo/Sum";
pub const CHAT: &str = "/test.Echo/Chat";

type MsgStream = Pin<Box<dyn Stream<Item = Result<Msg, Status>> + Send>>;
type Fut<T> = Pin<Box<dyn std::future::Future<Output = Result<Response<T>, Status>> + Send>>;

#[derive(Clone)]
struct Echo {
    name: Arc<str>,
}

fn served_by<T>(name: &str, mut resp: Response<T>) -> Response<T> {
    if let Ok(v) = name.parse() {
        resp.metadata_mut().insert("x-served-by", v);
    }
    resp
}

impl tonic::server::UnaryService<Msg> for Echo {
    type Response = Msg;
    type Future = Fut<Msg>;
    fn call(&mut self, req: Request<Msg>) -> Self::Future {
        let name = self.name.clone();
        Box::pin(async move {
            let mut m = req.into_inner();
            tokio::time::sleep(Duration::from_millis(u64::from(m.delay_ms))).await;
            m.from = name.to_string();
            Ok(served_by(&name, Response::new(m)))
        })
    }
}

struct Count(Echo);

impl tonic::server::ServerStreamingService<Msg> for Count {
    type Response = Msg;
    type ResponseStream = MsgStream;
    type Future = Fut<MsgStream>;
    fn call(&mut self, req: Request<Msg>) -> Self::Future {
        let name = self.0.name.clone();
        Box::pin(async move {
            let m = req.into_inner();
            let delay = Duration::from_millis(u64::from(m.delay_ms));
            let from = name.to_string();
            let stream = futures_util::stream::iter(0..m.n).then(move |i| {
                let from = from.clone();
                async move {
                    tokio::time::sleep(delay).await;
                    Ok(Msg {
                        text: format!("#{i}"),
                        n: i,
                        delay_ms: 0,
                        from,
                    })
                }
            });
            Ok(served_by(
                &name,
                Response::new(Box::pin(stream) as MsgStream),
            ))
        })
    }
}

struct Sum(Echo);

impl tonic::server::ClientStreamingService<Msg> for Sum {
    type Response = Msg;
    type Future = Fut<Msg>;
    fn call(&mut self, req: Request<Streaming<Msg>>) -> Self::Future {
        let name = self.0.name.clone();
        Box::pin(async move {
            let mut stream = req.into_inner();
            let (mut count, mut sum) = (0u32, 0u32);
            while let Some(m) = stream.message().await? {
                count += 1;
                sum = sum.wrapping_add(m.n);
            }
            Ok(served_by(
                &name,
                Response::new(Msg {
                    text: format!("{count} messages"),
                    n: sum,
                    delay_ms: 0,
                    from: name.to_string(),
                }),
            ))
        })
    }
}

struct Chat(Echo);

impl tonic::server::StreamingService<Msg> for Chat {
    type Response = Msg;
    type ResponseStream = MsgStream;
    type Future = Fut<MsgStream>;
    fn call(&mut self, req: Request<Streaming<Msg>>) -> Self::Future {
        let name = self.0.name.clone();
        Box::pin(async move {
            let from = name.to_string();
            let stream = req.into_inner().map(move |m| {
                m.map(|mut m| {
                    m.from = from.clone();
                    m
                })
            });
            Ok(served_by(
                &name,
                Response::new(Box::pin(stream) as MsgStream),
            ))
        })
    }
}

/// The service on its port; [`GrpcServer::kill`] closes every connection
/// at once (a crash), dropping it too.
pub struct GrpcServer {
    pub addr: SocketAddr,
    kill: watch::Sender<bool>,
}

impl GrpcServer {
    pub async fn start(name: &str) -> GrpcServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a gRPC server");
        let addr = listener.local_addr().expect("local address");
        let (kill, killed) = watch::channel(false);
        let echo = Echo { name: name.into() };
        tokio::spawn(async move {
            let mut stop = killed.clone();
            loop {
                let (stream, _) = tokio::select! {
                    r = listener.accept() => match r { Ok(s) => s, Err(_) => continue },
                    _ = stop.changed() => return,
                };
                let echo = echo.clone();
                let mut stop = killed.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: http::Request<Incoming>| {
                            let echo = echo.clone();
                            async move { Ok::<_, std::convert::Infallible>(dispatch(echo, req).await) }
                        },
                    );
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                            .http2_only();
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    tokio::select! {
                        _ = conn => {}
                        _ = stop.changed() => {}
                    }
                });
            }
        });
        GrpcServer { addr, kill }
    }

    /// `http://127.0.0.1:PORT`, as a route document names it.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Closes the listener and every connection, mid-stream or not.
    pub fn kill(&self) {
        let _ = self.kill.send(true);
    }
}

async fn dispatch(echo: Echo, req: http::Request<Incoming>) -> http::Response<tonic::body::Body> {
    let mut grpc = tonic::server::Grpc::new(ProstCodec::<Msg, Msg>::default());
    match req.uri().path() {
        UNARY => grpc.unary(echo, req).await,
        COUNT => grpc.server_streaming(Count(echo), req).await,
        SUM => grpc.client_streaming(Sum(echo), req).await,
        CHAT => grpc.streaming(Chat(echo), req).await,
        _ => Status::unimplemented("no such method").into_http(),
    }
}

/// A tonic client of `test.Echo` at `authority` (the host the proxy routes
/// by), connected to the proxy at `proxy`: h2c, or TLS with ALPN `h2`
/// when `tls` trusts the proxy's certificate.
pub async fn client(
    proxy: SocketAddr,
    authority: &str,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> tonic::client::Grpc<tonic::transport::Channel> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{proxy}"))
        .expect("endpoint")
        .origin(format!("{scheme}://{authority}").parse().expect("origin"));
    let channel = match tls {
        None => endpoint.connect().await.expect("connect to the proxy"),
        Some(config) => {
            let mut config = (*config).clone();
            config.alpn_protocols = vec![b"h2".to_vec()];
            let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
            let name =
                rustls::pki_types::ServerName::try_from(authority.to_owned()).expect("a TLS name");
            let connect = tower::service_fn(move |_: http::Uri| {
                let (connector, name) = (connector.clone(), name.clone());
                async move {
                    let tcp = tokio::net::TcpStream::connect(proxy).await?;
                    let tls = connector.connect(name, tcp).await?;
                    Ok::<_, std::io::Error>(TokioIo::new(tls))
                }
            });
            endpoint
                .connect_with_connector(connect)
                .await
                .expect("connect to the proxy over TLS")
        }
    };
    tonic::client::Grpc::new(channel)
}

/// The codec of every call.
pub fn codec() -> ProstCodec<Msg, Msg> {
    ProstCodec::default()
}

/// A method path for [`tonic::client::Grpc`]'s calls.
pub fn path(method: &'static str) -> PathAndQuery {
    PathAndQuery::from_static(method)
}

/// One unary call.
pub async fn unary(
    client: &mut tonic::client::Grpc<tonic::transport::Channel>,
    msg: Msg,
) -> Result<Response<Msg>, Status> {
    client
        .ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    client.unary(Request::new(msg), path(UNARY), codec()).await
}
