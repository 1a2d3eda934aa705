//! Route documents and requests as the end-to-end tests write them.

use serde_json::{json, Value};

use crate::client::{Req, Resp};
use crate::proxy::TestProxy;

/// A route document with these rules.
pub fn document(id: &str, rules: Value) -> Value {
    json!({"version": 1, "id": id, "rules": rules})
}

/// A request with extra headers (repeated names go as separate lines).
pub fn req(method: &str, host: &str, path: &str, headers: &[(&str, &str)]) -> Req {
    headers
        .iter()
        .fold(Req::new(method, host, path), |r, (name, value)| {
            r.header(name, value)
        })
}

/// Sends `r` through the proxy; panics (naming the request) on a transport
/// error.
pub async fn send(proxy: &TestProxy, what: &str, r: Req) -> Resp {
    r.send(proxy.addr())
        .await
        .unwrap_or_else(|e| panic!("{what} through the proxy failed: {e:#}"))
}

/// `GET path` on `host` through the proxy.
pub async fn get(proxy: &TestProxy, host: &str, path: &str) -> Resp {
    send(
        proxy,
        &format!("GET http://{host}{path}"),
        Req::get(host, path),
    )
    .await
}
