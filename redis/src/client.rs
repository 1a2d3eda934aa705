//! A `redis::Client` for one server named by a plain driver URL (or the
//! server a Sentinel URL resolved to, [`RedisUrl::at`]).

use hipache_schema::RedisUrl;
use redis::{ConnectionAddr, IntoConnectionInfo, ProtocolVersion, RedisConnectionInfo};

/// A URL and CA that do not make a client.
#[derive(Debug, thiserror::Error)]
#[error("{redis}: {source}")]
pub struct ClientError {
    /// The censored URL.
    pub redis: String,
    pub source: redis::RedisError,
}

/// Plain TCP or TLS (trusting `ca`, PEM, when given, else the bundled web
/// roots) to `url`'s host and port, then AUTH (user and password) and
/// SELECT, and the protocol: RESP3 only when asked, since it needs Redis 6.
pub fn client(
    url: &RedisUrl,
    ca: Option<&[u8]>,
    resp3: bool,
) -> Result<redis::Client, ClientError> {
    let built = connection_info(url, resp3).and_then(|info| match (ca, url.tls) {
        (Some(pem), true) => redis::Client::build_with_tls(
            info,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.to_vec()),
            },
        ),
        _ => redis::Client::open(info),
    });
    built.map_err(|source| ClientError {
        redis: url.censored(),
        source,
    })
}

/// The connection settings of [`client`].
pub fn connection_info(url: &RedisUrl, resp3: bool) -> redis::RedisResult<redis::ConnectionInfo> {
    let addr = if url.tls {
        ConnectionAddr::TcpTls {
            host: url.host.clone(),
            port: url.port,
            insecure: false,
            tls_params: None,
        }
    } else {
        ConnectionAddr::Tcp(url.host.clone(), url.port)
    };
    let mut redis = RedisConnectionInfo::default().set_db(url.db);
    if let Some(user) = &url.username {
        redis = redis.set_username(user);
    }
    if let Some(password) = &url.password {
        redis = redis.set_password(password);
    }
    if resp3 {
        redis = redis.set_protocol(ProtocolVersion::RESP3);
    }
    Ok(addr.into_connection_info()?.set_redis_settings(redis))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn connection_info_carries_auth_db_and_protocol() {
        let url = RedisUrl::parse("redis://proxy:s3cret@127.0.0.1:6379/2").unwrap();
        let info = connection_info(&url, true).unwrap();
        let redis = info.redis_settings();
        assert_eq!(redis.db(), 2);
        assert_eq!(redis.username(), Some("proxy"));
        assert_eq!(redis.password(), Some("s3cret"));
        assert_eq!(redis.protocol(), ProtocolVersion::RESP3);
        let plain = connection_info(&url, false).unwrap();
        assert_eq!(plain.redis_settings().protocol(), ProtocolVersion::RESP2);
    }
}
