//! A proxy with an HTTPS listener on a self-signed certificate, a client
//! that trusts it, and one raw request at a time over TLS
//! (`Connection: close`), read to the end and parsed.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::proxy::{config_json, TestProxy};
use crate::redis::RedisServer;

/// Bound on a handshake and on reading one answer.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// A redis-server and a proxy on it with plain HTTP and HTTPS listeners;
/// the certificate names `names`.
pub struct HttpsProxy {
    pub redis: RedisServer,
    pub proxy: TestProxy,
    /// Trusts the proxy's certificate.
    pub client: Arc<rustls::ClientConfig>,
    _certs: tempfile::TempDir,
}

/// An answer read over TLS.
pub struct HttpsResp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl HttpsResp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A TLS client configuration that trusts `cert` alone.
pub fn trusting(cert: &rustls::pki_types::CertificateDer<'_>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(cert.clone().into_owned())
        .expect("trust the certificate");
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    Arc::new(client)
}

impl HttpsProxy {
    pub async fn start(names: &[&str]) -> HttpsProxy {
        Self::start_with(names, json!({})).await
    }

    /// [`HttpsProxy::start`] with `server_extra` merged into `server`.
    pub async fn start_with(names: &[&str], server_extra: serde_json::Value) -> HttpsProxy {
        let redis = RedisServer::start();
        let certs = tempfile::tempdir().expect("temporary directory");
        let key = rcgen::KeyPair::generate().expect("key");
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("certificate parameters");
        let cert = params.self_signed(&key).expect("certificate");
        let (cert_path, key_path) = (certs.path().join("c.pem"), certs.path().join("k.pem"));
        std::fs::write(&cert_path, cert.pem()).expect("write certificate");
        std::fs::write(&key_path, key.serialize_pem()).expect("write key");
        let mut config = config_json(&redis.url(), server_extra);
        config["https"] =
            json!({"bind": ["127.0.0.1"], "port": 0, "cert": cert_path, "key": key_path});
        let proxy = TestProxy::start_with(config).await;
        HttpsProxy {
            redis,
            proxy,
            client: trusting(cert.der()),
            _certs: certs,
        }
    }

    /// `METHOD path` with `Host: host` and `headers`, over TLS with SNI
    /// `sni`.
    pub async fn request(
        &self,
        sni: &str,
        method: &str,
        path: &str,
        host: &str,
        headers: &[(String, String)],
    ) -> HttpsResp {
        self.request_after(b"", sni, method, path, host, headers)
            .await
    }

    /// [`HttpsProxy::request`] with `preamble` sent on the TCP connection
    /// before the TLS handshake (a PROXY protocol header).
    pub async fn request_after(
        &self,
        preamble: &[u8],
        sni: &str,
        method: &str,
        path: &str,
        host: &str,
        headers: &[(String, String)],
    ) -> HttpsResp {
        let what = format!("{method} https://{host}{path}");
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let exchange = async {
            let mut tcp = tokio::net::TcpStream::connect(self.proxy.https_addr())
                .await
                .expect("connect to the HTTPS listener");
            tcp.write_all(preamble).await.expect("write the preamble");
            let name =
                rustls::pki_types::ServerName::try_from(sni.to_owned()).expect("server name");
            let mut tls = tokio_rustls::TlsConnector::from(self.client.clone())
                .connect(name, tcp)
                .await
                .expect("TLS handshake");
            tls.write_all(head.as_bytes())
                .await
                .expect("write the request");
            let mut raw = Vec::new();
            // A peer closing without close_notify still delivered the answer.
            let _ = tls.read_to_end(&mut raw).await;
            raw
        };
        let raw = tokio::time::timeout(DEADLINE, exchange)
            .await
            .unwrap_or_else(|_| panic!("{what}: no answer within {DEADLINE:?}"));
        let mut parsed = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut parsed);
        let offset = match resp.parse(&raw) {
            Ok(httparse::Status::Complete(n)) => n,
            other => panic!(
                "{what}: not an HTTP answer ({other:?}): {:?}",
                String::from_utf8_lossy(&raw)
            ),
        };
        let mut headers = HeaderMap::new();
        for h in resp.headers.iter() {
            headers.append(
                HeaderName::from_bytes(h.name.as_bytes()).expect("header name"),
                HeaderValue::from_bytes(h.value).expect("header value"),
            );
        }
        HttpsResp {
            status: resp.code.expect("a status"),
            headers,
            body: String::from_utf8_lossy(&raw[offset..]).into_owned(),
        }
    }

    /// `GET path` over HTTPS (SNI and Host `host`).
    pub async fn get(&self, host: &str, path: &str) -> HttpsResp {
        self.request(host, "GET", path, host, &[]).await
    }
}
