//! TLS: SNI certificate choice (exact, wildcard, default), reloads from the
//! certificate directory and from Redis, bad certificates, TLS versions,
//! forwarded headers over HTTPS, HTTP/2 (ALPN and h2c), `https://`
//! backends, the HTTPS redirect, and a handshake-rate benchmark.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hipache::metrics::names;
use hipache_tests::backend::Backend;
use hipache_tests::body::{checksum, random_bytes};
use hipache_tests::client::Req;
use hipache_tests::metrics::scrape_until;
use hipache_tests::proxy::{config_json, TestProxy};
use hipache_tests::redis::RedisServer;
use hipache_tests::wait::until;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// How long a reload (directory rescan every 2 s, Redis message) may take.
const RELOAD_DEADLINE: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------- PKI

/// A test CA that issues leaf certificates.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A leaf certificate: PEM texts and the DER the server must present.
#[derive(Clone)]
struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

impl Ca {
    fn new() -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "hipache test CA");
        let key = KeyPair::generate().expect("CA key");
        Ca {
            issuer: CertifiedIssuer::self_signed(params, key).expect("CA certificate"),
        }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    fn leaf(&self, names: &[&str]) -> Leaf {
        let params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("leaf params");
        self.sign(params)
    }

    /// A leaf valid until midnight (UTC) of `(year, month, day)`.
    fn leaf_until(&self, names: &[&str], (y, m, d): (i32, u8, u8)) -> Leaf {
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("leaf params");
        params.not_after = rcgen::date_time_ymd(y, m, d);
        self.sign(params)
    }

    fn sign(&self, params: CertificateParams) -> Leaf {
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("leaf cert");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.issuer.der().clone()).expect("add CA root");
        roots
    }
}

impl Leaf {
    fn write(&self, dir: &Path, stem: &str) -> (String, String) {
        let cert = dir.join(format!("{stem}.crt"));
        let key = dir.join(format!("{stem}.key"));
        std::fs::write(&cert, &self.cert_pem).expect("write cert");
        std::fs::write(&key, &self.key_pem).expect("write key");
        (cert.display().to_string(), key.display().to_string())
    }
}

// ---------------------------------------------------------------- clients

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client trusting `ca`, offering these ALPN protocols.
fn client(ca: &Ca, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let mut c = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(ca.roots())
        .with_no_client_auth();
    c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(c)
}

/// A client that accepts any certificate, to look at which one is served
/// whatever the name.
fn inspecting_client(versions: &[&'static rustls::SupportedProtocolVersion]) -> Arc<ClientConfig> {
    let mut c = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .expect("protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny))
        .with_no_client_auth();
    c.resumption = rustls::client::Resumption::disabled();
    Arc::new(c)
}

#[derive(Debug)]
struct AcceptAny;

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            m,
            c,
            d,
            &provider().signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            m,
            c,
            d,
            &provider().signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

async fn tls_connect(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    sni: &str,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(sni.to_owned()).expect("valid SNI");
    TlsConnector::from(config).connect(name, tcp).await
}

/// The end-entity certificate served for `sni`.
async fn served_cert(addr: SocketAddr, sni: &str) -> CertificateDer<'static> {
    let tls = tls_connect(addr, inspecting_client(&[&rustls::version::TLS13]), sni)
        .await
        .unwrap_or_else(|e| panic!("TLS handshake for {sni}: {e}"));
    tls.get_ref()
        .1
        .peer_certificates()
        .expect("peer certificates")[0]
        .clone()
}

/// One HTTP/1.1 request over TLS; the answer with its body.
async fn https_get(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    host: &str,
    path: &str,
) -> anyhow::Result<(http::response::Parts, Bytes)> {
    let tls = tls_connect(addr, config, host).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    let req = Request::get(path)
        .header("host", host)
        .body(Full::new(Bytes::new()))?;
    let resp = sender.send_request(req).await?;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok((parts, body))
}

// ---------------------------------------------------------------- setup

/// A proxy with one HTTPS listener on a free port, `default` as its
/// certificate, `server_extra` merged into `server`.
async fn tls_proxy(
    redis: &RedisServer,
    dir: &Path,
    default: &Leaf,
    server_extra: Value,
) -> TestProxy {
    let (cert, key) = default.write(dir, "default");
    let mut config = config_json(&redis.url(), server_extra);
    config["https"] = json!({"bind": ["127.0.0.1"], "port": 0, "cert": cert, "key": key});
    TestProxy::start_with(config).await
}

/// Waits until `leaf` is served for `sni`.
async fn wait_served(addr: SocketAddr, sni: &str, leaf: &Leaf, what: &str) {
    until(what, RELOAD_DEADLINE, || async {
        if served_cert(addr, sni).await == leaf.der {
            Ok(())
        } else {
            Err(format!("{sni} still gets another certificate"))
        }
    })
    .await;
}

async fn hset_cert(redis: &RedisServer, host: &str, leaf: &Leaf) {
    let key = format!("tls:{host}");
    let _: i64 = redis
        .query(&["HSET", &key, "cert", &leaf.cert_pem, "key", &leaf.key_pem])
        .await;
    let _: i64 = redis.query(&["PUBLISH", "tls", host]).await;
}

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_picks_exact_wildcard_and_default() {
    let redis = RedisServer::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let certs = tmp.path().join("certs");
    std::fs::create_dir(&certs).expect("certs dir");
    let ca = Ca::new();
    let default = ca.leaf(&["default.test"]);
    let exact = ca.leaf(&["a.example.test"]);
    let wild = ca.leaf(&["*.example.test"]);
    exact.write(&certs, "exact");
    std::fs::write(
        certs.join("wild.pem"),
        format!("{}{}", wild.cert_pem, wild.key_pem),
    )
    .expect("write wild.pem");
    let proxy = tls_proxy(&redis, tmp.path(), &default, json!({"tlsDir": certs})).await;
    let addr = proxy.https_addr();

    assert_eq!(served_cert(addr, "a.example.test").await, exact.der);
    assert_eq!(served_cert(addr, "A.Example.Test").await, exact.der);
    assert_eq!(served_cert(addr, "b.example.test").await, wild.der);
    // One label deep only; the bare domain is not covered.
    assert_eq!(served_cert(addr, "x.b.example.test").await, default.der);
    assert_eq!(served_cert(addr, "example.test").await, default.der);
    assert_eq!(served_cert(addr, "unknown.test").await, default.der);
    // No SNI at all (an IP address as the server name sends none).
    let tls = tls_connect(
        addr,
        inspecting_client(&[&rustls::version::TLS13]),
        "127.0.0.1",
    )
    .await
    .expect("handshake without SNI");
    assert_eq!(
        tls.get_ref().1.peer_certificates().expect("certs")[0],
        default.der
    );
    // A verifying client accepts the exact certificate.
    let backend = Backend::start("exact-backend").await;
    redis
        .rpush_frontend("a.example.test", "a", &[backend.url()])
        .await;
    let (resp, body) = https_get(addr, client(&ca, &[b"http/1.1"]), "a.example.test", "/")
        .await
        .expect("verified HTTPS request");
    assert_eq!(resp.status, 200);
    assert_eq!(&body[..], b"exact-backend");
}

/// `hipache_tls_certificate_expiration_timestamp_seconds`: the notAfter of
/// each certificate from Redis (under its name) and of the default, as a
/// scrape sees it; a certificate removed from Redis loses its series.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_expiry_is_exported_for_redis_certificates_and_the_default() {
    let redis = RedisServer::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new();
    let default_until = (2031, 3, 4);
    let soon = (2027, 1, 2);
    let unix = |(y, m, d): (i32, u8, u8)| rcgen::date_time_ymd(y, m, d).unix_timestamp() as f64;
    let default = ca.leaf_until(&["default.test"], default_until);
    let proxy = tls_proxy(
        &redis,
        tmp.path(),
        &default,
        json!({"adminAddress": "127.0.0.1:0"}),
    )
    .await;
    hset_cert(&redis, "soon.test", &ca.leaf_until(&["soon.test"], soon)).await;
    let expiry = |s: &hipache_tests::metrics::Scrape, certificate: &str| {
        s.value(names::TLS_CERT_EXPIRY, &[("certificate", certificate)])
    };
    let s = scrape_until(
        proxy.admin_addr(),
        "the expiry of soon.test",
        RELOAD_DEADLINE,
        |s| match expiry(s, "soon.test") {
            0.0 => Err("no series for soon.test yet".to_owned()),
            _ => Ok(()),
        },
    )
    .await;
    assert_eq!(expiry(&s, "soon.test"), unix(soon));
    assert_eq!(expiry(&s, "default"), unix(default_until));

    let _: i64 = redis.query(&["DEL", "tls:soon.test"]).await;
    let _: i64 = redis.query(&["PUBLISH", "tls", "soon.test"]).await;
    scrape_until(
        proxy.admin_addr(),
        "soon.test's series gone",
        RELOAD_DEADLINE,
        |s| match s.has(names::TLS_CERT_EXPIRY, &[("certificate", "soon.test")]) {
            true => Err("soon.test still exported".to_owned()),
            false => Ok(()),
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_certificates_reload_without_restart() {
    let redis = RedisServer::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let certs = tmp.path().join("certs");
    std::fs::create_dir(&certs).expect("certs dir");
    let ca = Ca::new();
    let default = ca.leaf(&["default.test"]);
    let proxy = tls_proxy(&redis, tmp.path(), &default, json!({"tlsDir": certs})).await;
    let addr = proxy.https_addr();
    assert_eq!(served_cert(addr, "new.test").await, default.der);

    // Added.
    let first = ca.leaf(&["new.test"]);
    first.write(&certs, "new");
    wait_served(addr, "new.test", &first, "the new certificate is served").await;
    // Changed.
    let second = ca.leaf(&["new.test"]);
    second.write(&certs, "new");
    wait_served(
        addr,
        "new.test",
        &second,
        "the changed certificate is served",
    )
    .await;
    // A bad version (key of another certificate) is skipped: the last
    // good one keeps serving.
    let other = ca.leaf(&["new.test"]);
    std::fs::write(certs.join("new.key"), &other.key_pem).expect("write mismatched key");
    std::fs::write(certs.join("garbage.pem"), "not a certificate").expect("write garbage");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(served_cert(addr, "new.test").await, second.der);
    // Removed.
    std::fs::remove_file(certs.join("new.crt")).expect("remove cert");
    wait_served(
        addr,
        "new.test",
        &default,
        "the removed certificate falls back to the default",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_certificates_reload_without_restart() {
    let redis = RedisServer::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new();
    let default = ca.leaf(&["default.test"]);
    // Loaded at start by SCAN.
    let at_start = ca.leaf(&["start.test"]);
    hset_cert(&redis, "start.test", &at_start).await;
    let proxy = tls_proxy(&redis, tmp.path(), &default, Value::Null).await;
    let addr = proxy.https_addr();
    wait_served(
        addr,
        "start.test",
        &at_start,
        "the certificate in Redis at start is served",
    )
    .await;

    // Added, exact and wildcard, announced on the `tls` channel.
    let added = ca.leaf(&["r.test"]);
    hset_cert(&redis, "r.test", &added).await;
    let wild = ca.leaf(&["*.w.test"]);
    hset_cert(&redis, "*.w.test", &wild).await;
    wait_served(
        addr,
        "r.test",
        &added,
        "the exact certificate added to Redis",
    )
    .await;
    wait_served(
        addr,
        "a.w.test",
        &wild,
        "the wildcard certificate added to Redis",
    )
    .await;

    // A bad certificate is skipped; the old one keeps serving.
    let other = ca.leaf(&["r.test"]);
    let _: i64 = redis
        .query(&[
            "HSET",
            "tls:r.test",
            "cert",
            &added.cert_pem,
            "key",
            &other.key_pem,
        ])
        .await;
    let _: i64 = redis.query(&["PUBLISH", "tls", "r.test"]).await;
    let _: i64 = redis
        .query(&["HSET", "tls:junk.test", "cert", "junk", "key", "junk"])
        .await;
    let _: i64 = redis.query(&["PUBLISH", "tls", "junk.test"]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(served_cert(addr, "r.test").await, added.der);
    assert_eq!(served_cert(addr, "junk.test").await, default.der);

    // Removed: the default again.
    let _: i64 = redis.query(&["DEL", "tls:r.test"]).await;
    let _: i64 = redis.query(&["PUBLISH", "tls", "r.test"]).await;
    wait_served(
        addr,
        "r.test",
        &default,
        "the certificate removed from Redis falls back to the default",
    )
    .await;
    assert_eq!(served_cert(addr, "start.test").await, at_start.der);
}

/// A ClientHello with `version` as its only offer (no supported_versions
/// extension), ECDHE-ECDSA suites, P-256 and X25519.
fn client_hello(version: [u8; 2]) -> Vec<u8> {
    let mut ext = Vec::new();
    let mut push_ext = |ty: u16, data: &[u8]| {
        ext.extend_from_slice(&ty.to_be_bytes());
        ext.extend_from_slice(&(data.len() as u16).to_be_bytes());
        ext.extend_from_slice(data);
    };
    push_ext(0x000a, &[0x00, 0x04, 0x00, 0x1d, 0x00, 0x17]); // supported_groups
    push_ext(0x000b, &[0x01, 0x00]); // ec_point_formats: uncompressed
    push_ext(0x000d, &[0x00, 0x04, 0x04, 0x03, 0x08, 0x04]); // signature_algorithms
    push_ext(0xff01, &[0x00]); // renegotiation_info
    let mut body = Vec::new();
    body.extend_from_slice(&version);
    body.extend_from_slice(&[7u8; 32]); // random
    body.push(0); // session id
    let suites: [u16; 4] = [0xc02b, 0xc02c, 0xc009, 0xc00a];
    body.extend_from_slice(&((suites.len() * 2) as u16).to_be_bytes());
    for s in suites {
        body.extend_from_slice(&s.to_be_bytes());
    }
    body.extend_from_slice(&[1, 0]); // compression: null
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut hs = vec![0x01];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    record.extend_from_slice(&hs);
    record
}

/// The first record the server answers a raw ClientHello with: its
/// content type (0 when the server closed without a word), and the alert
/// description when it is an alert.
async fn first_record(addr: SocketAddr, hello: &[u8]) -> (u8, Option<u8>) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(hello).await.expect("send ClientHello");
    let mut head = [0u8; 7];
    match tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut head)).await {
        Ok(Ok(_)) => (head[0], (head[0] == 0x15).then_some(head[6])),
        // Closed without a word: not a handshake either.
        _ => (0, None),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_1_1_is_refused_and_1_2_accepted() {
    let redis = RedisServer::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new();
    let default = ca.leaf(&["default.test"]);
    let proxy = tls_proxy(&redis, tmp.path(), &default, Value::Null).await;
    let addr = proxy.https_addr();
    // The same hand-built hello with 1.2 gets a ServerHello: the hello is sound.
    let (kind, _) = first_record(addr, &client_hello([0x03, 0x03])).await;
    assert_eq!(
        kind, 0x16,
        "TLS 1.2 ClientHello must get a handshake record"
    );
    // TLS 1.1 and 1.0: a protocol_version alert (70), no handshake.
    for v in [[0x03, 0x02], [0x03, 0x01]] {
        let (kind, alert) = first_record(addr, &client_hello(v)).await;
        assert_eq!(
            (kind, alert),
            (0x15, Some(70)),
            "version {v:?} must get a protocol_version alert, not a ServerHello"
        );
    }
    // rustls clients, TLS 1.2 only then 1.3 only: both negotiate.
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let tls = tls_connect(addr, inspecting_client(&[version]), "default.test")
            .await
            .expect("handshake");
        assert_eq!(tls.get_ref().1.protocol_version(), Some(version.version));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_request_has_forwarded_proto_and_port() {
    let redis = RedisServer::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new();
    let default = ca.leaf(&["site.test"]);
    let proxy = tls_proxy(&redis, tmp.path(), &default, Value::Null).await;
    let backend = Backend::start("plain").await;
    redis
        .rpush_frontend("site.test", "site", &[backend.url()])
        .await;
    let (resp, body) = https_get(
        proxy.https_addr(),
        client(&ca, &[b"http/1.1"]),
        "site.test",
        "/p?q=1",
    )
    .await
    .expect("HTTPS request");
    assert_eq!(resp.status, 200);
    assert_eq!(&body[..], b"plain");
    let seen = backend.last_request();
    assert_eq!(seen.uri, "/p?q=1");
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
    assert_eq!(seen.header("x-forwarded-protocol"), Some("https"));
    let port = proxy.https_addr().port().to_string();
    assert_eq!(seen.header("x-forwarded-port"), Some(port.as_str()));
    // And plain HTTP still says http with its own port.
    let resp = Req::get("site.test", "/")
        .send(proxy.addr())
        .await
        .expect("plain request");
    assert_eq!(resp.status, 200);
    let seen = backend.last_request();
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert_eq!(
        seen.header("x-forwarded-port"),
        Some(proxy.port().to_string().as_str())
    );
}

/// POSTs `body` over an HTTP/2 connection and returns the status and the
/// echoed body.
async fn h2_post<S>(io: S, scheme: &str, authority: &str, body: Vec<u8>) -> (StatusCode, Bytes)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .expect("HTTP/2 handshake");
    tokio::spawn(conn);
    let req = Request::post(format!("{scheme}://{authority}/echo"))
        .body(Full::new(Bytes::from(body)))
        .expect("request");
    let resp = sender.send_request(req).await.expect("HTTP/2 response");
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .expect("response body")
        .to_bytes();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_over_tls_by_alpn_with_bodies() {
    let redis = RedisServer::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new();
    let default = ca.leaf(&["h2.test"]);
    let proxy = tls_proxy(&redis, tmp.path(), &default, Value::Null).await;
    let backend = Backend::builder("echo").echo_body().start().await;
    redis
        .rpush_frontend("h2.test", "h2", &[backend.url()])
        .await;
    let tls = tls_connect(
        proxy.https_addr(),
        client(&ca, &[b"h2", b"http/1.1"]),
        "h2.test",
    )
    .await
    .expect("TLS handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let body = random_bytes(300_000, 7);
    let (status, echoed) = h2_post(tls, "https", "h2.test", body.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(checksum(&echoed), checksum(&body));
    let seen = backend.last_request();
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
    assert_eq!(seen.body_len, body.len() as u64);
    // ALPN http/1.1 only: HTTP/1.1.
    let tls = tls_connect(proxy.https_addr(), client(&ca, &[b"http/1.1"]), "h2.test")
        .await
        .expect("TLS handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_prior_knowledge_on_plain_listener_with_bodies() {
    let redis = RedisServer::start();
    let proxy = TestProxy::start(&redis.url(), Value::Null).await;
    let backend = Backend::builder("echo").echo_body().start().await;
    redis
        .rpush_frontend("h2c.test", "h2c", &[backend.url()])
        .await;
    let tcp = TcpStream::connect(proxy.addr()).await.expect("connect");
    let body = random_bytes(200_000, 9);
    let (status, echoed) = h2_post(tcp, "http", "h2c.test", body.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(checksum(&echoed), checksum(&body));
    assert_eq!(
        backend.last_request().header("x-forwarded-proto"),
        Some("http")
    );
}

/// A backend's TLS acceptor for `leaf`, offering `alpn` (none: no ALPN).
fn backend_acceptor(leaf: &Leaf, alpn: &[&[u8]]) -> TlsAcceptor {
    let key = <rustls::pki_types::PrivateKeyDer<'static> as rustls::pki_types::pem::PemObject>::from_pem_slice(
        leaf.key_pem.as_bytes(),
    )
    .expect("backend key PEM");
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der.clone()], key)
        .expect("backend TLS config");
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsAcceptor::from(Arc::new(config))
}

/// An HTTP/1.1 backend behind TLS with a certificate for `localhost`.
async fn tls_backend(leaf: &Leaf) -> SocketAddr {
    let acceptor = backend_acceptor(leaf, &[]);
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind TLS backend");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let sni = tls.get_ref().1.server_name().unwrap_or("").to_owned();
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let sni = sni.clone();
                    async move {
                        let proto = req
                            .headers()
                            .get("x-forwarded-proto")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned();
                        Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(
                            format!("secure sni={sni} proto={proto}"),
                        ))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    addr
}

/// A backend behind TLS offering `alpn` that answers with the HTTP
/// version it was spoken to in.
async fn alpn_backend(leaf: &Leaf, alpn: &[&[u8]]) -> SocketAddr {
    let acceptor = backend_acceptor(leaf, alpn);
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind TLS backend");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(|req: Request<Incoming>| async move {
                    let version = format!("{:?}", req.version());
                    Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(
                        version,
                    ))))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    addr
}

/// A rule with `"protocol": "h2"` speaks HTTP/2 to an `https://` backend
/// that offers `h2` in ALPN, and HTTP/1.1 to one that does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_backends_get_http2_by_alpn_when_the_rule_asks() {
    let redis = RedisServer::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new();
    let leaf = ca.leaf(&["localhost"]);
    let h2 = alpn_backend(&leaf, &[b"h2", b"http/1.1"]).await;
    let h1 = alpn_backend(&leaf, &[b"http/1.1"]).await;
    let ca_file = tmp.path().join("backend-ca.pem");
    std::fs::write(&ca_file, ca.pem()).expect("write CA");
    let proxy = TestProxy::start(&redis.url(), json!({"backendCa": ca_file})).await;
    for (host, addr, want) in [("h2.test", h2, "HTTP/2.0"), ("h1.test", h1, "HTTP/1.1")] {
        let url = format!("https://localhost:{}", addr.port());
        redis
            .set_routes(
                host,
                &hipache_tests::routes::document(
                    host,
                    json!([{"protocol": "h2", "backends": [{"url": url}]}]),
                ),
            )
            .await;
        for _ in 0..3 {
            let resp = Req::get(host, "/")
                .send(proxy.addr())
                .await
                .expect("request");
            assert_eq!(resp.status, 200, "{}", resp.text());
            assert_eq!(resp.text(), want, "{host}");
        }
    }
    // Without the rule, HTTP/1.1 as before, whatever the backend offers.
    redis
        .rpush_frontend(
            "plain.test",
            "plain",
            &[format!("https://localhost:{}", h2.port())],
        )
        .await;
    let resp = Req::get("plain.test", "/")
        .send(proxy.addr())
        .await
        .expect("request");
    assert_eq!(resp.text(), "HTTP/1.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_backend_verified_with_backend_ca() {
    let redis = RedisServer::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new();
    let backend_addr = tls_backend(&ca.leaf(&["localhost"])).await;
    let ca_file = tmp.path().join("backend-ca.pem");
    std::fs::write(&ca_file, ca.pem()).expect("write CA");
    let url = format!("https://localhost:{}", backend_addr.port());

    // With the CA: proxied, SNI = the backend's host name.
    let proxy = TestProxy::start(&redis.url(), json!({"backendCa": ca_file})).await;
    redis.rpush_frontend("sec.test", "sec", &[url]).await;
    for _ in 0..3 {
        let resp = Req::get("sec.test", "/")
            .send(proxy.addr())
            .await
            .expect("request");
        assert_eq!(resp.status, 200, "{}", resp.text());
        assert_eq!(resp.text(), "secure sni=localhost proto=http");
    }
    proxy.shutdown().await;

    // Without it: the certificate is not trusted, 502.
    let proxy = TestProxy::start(&redis.url(), Value::Null).await;
    let resp = Req::get("sec.test", "/")
        .send(proxy.addr())
        .await
        .expect("request");
    assert_eq!(resp.status, 502);
    proxy.shutdown().await;

    // Verification off: proxied (dangerous, but asked for).
    let proxy = TestProxy::start(&redis.url(), json!({"backendTlsVerify": false})).await;
    let resp = Req::get("sec.test", "/")
        .send(proxy.addr())
        .await
        .expect("request");
    assert_eq!(resp.status, 200);
    // A plain-HTTP backend URL on the TLS port fails as an upstream error.
    redis
        .rpush_frontend(
            "mixed.test",
            "m",
            &[format!("http://127.0.0.1:{}", backend_addr.port())],
        )
        .await;
    let resp = Req::get("mixed.test", "/")
        .timeout(Duration::from_secs(20))
        .send(proxy.addr())
        .await
        .expect("request");
    assert_eq!(resp.status, 502);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_redirects_to_https() {
    let redis = RedisServer::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new();
    let default = ca.leaf(&["site.test"]);
    let proxy = tls_proxy(&redis, tmp.path(), &default, json!({"httpsRedirect": true})).await;
    let backend = Backend::start("b").await;
    redis
        .rpush_frontend("site.test", "site", &[backend.url()])
        .await;
    let port = proxy.https_addr().port();

    let resp = Req::get("Site.Test:8080", "/a/b?c=d")
        .send(proxy.addr())
        .await
        .expect("GET");
    assert_eq!(resp.status, 301);
    assert_eq!(
        resp.header("location"),
        Some(format!("https://Site.Test:{port}/a/b?c=d").as_str())
    );
    let resp = Req::new("POST", "site.test", "/form")
        .body("x=1")
        .send(proxy.addr())
        .await
        .expect("POST");
    assert_eq!(resp.status, 308);
    // Not redirected: __ping__, ACME challenges, and HTTPS itself.
    let resp = Req::get("__ping__", "/")
        .send(proxy.addr())
        .await
        .expect("ping");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "ok");
    let resp = Req::get("site.test", "/.well-known/acme-challenge/tok")
        .send(proxy.addr())
        .await
        .expect("ACME");
    assert_eq!(resp.status, 200);
    let (resp, _) = https_get(
        proxy.https_addr(),
        client(&ca, &[b"http/1.1"]),
        "site.test",
        "/",
    )
    .await
    .expect("HTTPS");
    assert_eq!(resp.status, 200);
    assert_eq!(backend.request_count(), 2);
}

/// Full TLS handshakes per second (no resumption), a few concurrent
/// clients for 3 s. Run: `cargo test -p hipache-tests --test tls -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with --ignored"]
async fn bench_tls_handshake_rate() {
    let redis = RedisServer::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new();
    let default = ca.leaf(&["bench.test"]);
    let proxy = tls_proxy(&redis, tmp.path(), &default, Value::Null).await;
    let addr = proxy.https_addr();
    for (label, version) in [
        ("TLS 1.3", &rustls::version::TLS13),
        ("TLS 1.2", &rustls::version::TLS12),
    ] {
        let config = inspecting_client(&[version]);
        let clients = 4;
        let run = Duration::from_secs(3);
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let config = config.clone();
            tasks.push(tokio::spawn(async move {
                let mut n = 0u64;
                while start.elapsed() < run {
                    let mut tls = tls_connect(addr, config.clone(), "bench.test")
                        .await
                        .expect("handshake");
                    let _ = tls.shutdown().await;
                    n += 1;
                }
                n
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await.expect("bench task");
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{label}: {total} full handshakes in {secs:.2} s with {clients} clients: {:.0} handshakes/s (debug build, client and server on the same 2 cores)",
            total as f64 / secs
        );
        assert!(total > 0);
    }
}
