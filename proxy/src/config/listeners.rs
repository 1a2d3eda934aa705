//! The listeners: `server.{port, address, address6, https}` in the 0.3
//! layout, top-level `http` and `https` in the 0.4 one.
//!
//! A file using both layouts for listeners is refused: Hipache 0.4 merged
//! them silently and dropped `server.address6`, a trap.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use serde_json::{json, Map, Value};

use super::defaults;
use super::raw::{self, join, list_items, Obj};
use super::reading::{Builder, Key, Kind};
use super::{Config, HttpsListener};

impl Builder<'_> {
    /// The listeners of whichever layout the file uses (0.4 when neither).
    pub(super) fn listeners(&mut self, top: &Obj<'_>, server: Option<&Obj<'_>>) {
        let has04 = top.has("http") || top.has("https");
        // The parts of `server` are the 0.3 layout's listener keys.
        let keys03: Vec<&str> = server
            .map(|s| {
                s.declared()
                    .iter()
                    .filter(|k| matches!(k.kind, Kind::Part(_)) && s.has(k.name))
                    .map(|k| k.name)
                    .collect()
            })
            .unwrap_or_default();
        match (has04, keys03.is_empty(), server) {
            (true, false, _) => {
                for k in keys03 {
                    self.ctx.err(
                        join("server", k),
                        "0.3 layout key, but this file also has the 0.4 `http`/`https` sections: \
                         use one layout (server.port -> http.port, server.address(6) -> http.bind \
                         and https.bind, server.https -> https)",
                    );
                }
                self.layout04(top);
            }
            (false, false, Some(server)) => self.layout03(server),
            _ => self.layout04(top),
        }
    }

    /// `server.{port, address, address6, https}`.
    fn layout03(&mut self, s: &Obj<'_>) {
        let port = self.port(s, defaults::HTTP_PORT);
        // Hipache 0.3 listened on server.address (default 0.0.0.0) and on
        // server.address6 (default ::1); an empty list means none.
        let mut ips: Vec<(IpAddr, String)> = Vec::new();
        for (key, default) in [
            ("address", defaults::ADDRESS_03),
            ("address6", defaults::ADDRESS6_03),
        ] {
            match s.get(key) {
                None => ips.extend(default.iter().map(|ip| (*ip, s.key(key)))),
                Some(v) => {
                    for (k, item) in list_items(&s.key(key), v) {
                        if let Some(ip) = raw::listen_ip(&mut self.ctx, &k, item) {
                            ips.push((ip, k));
                        }
                    }
                }
            }
        }
        for (ip, key) in &ips {
            self.add_http(SocketAddr::new(*ip, port), key.clone());
        }
        let Some(h) = s.child(&mut self.ctx, "https") else {
            return;
        };
        let port = self.port(&h, defaults::HTTPS_PORT);
        let key = self.path(&h, "key");
        let cert = self.path(&h, "cert");
        let ca = self.ca(&h);
        self.read_keys(&h);
        self.require(&h, "key", key.is_some(), "a private key file (PEM)");
        self.require(&h, "cert", cert.is_some(), "a certificate chain file (PEM)");
        if let (Some(key_path), Some(cert_path)) = (key, cert) {
            for (ip, from) in &ips {
                self.add_https(
                    HttpsListener {
                        address: SocketAddr::new(*ip, port),
                        key: key_path.clone(),
                        cert: cert_path.clone(),
                        ca: ca.clone(),
                    },
                    from.clone(),
                );
            }
        }
        h.finish(&mut self.ctx);
    }

    /// `http {port, bind}`, `https {port, bind, key, cert, ca}`.
    fn layout04(&mut self, top: &Obj<'_>) {
        self.http04(top);
        if let Some(h) = top.child(&mut self.ctx, "https") {
            self.https04(&h);
            h.finish(&mut self.ctx);
        }
    }

    /// `http {port, bind}`; without a `bind`, Hipache 0.4's loopback.
    fn http04(&mut self, top: &Obj<'_>) {
        let http = top.child(&mut self.ctx, "http");
        let port = match &http {
            Some(h) => self.port(h, defaults::HTTP_PORT),
            None => defaults::HTTP_PORT,
        };
        let binds = http
            .as_ref()
            .and_then(|h| h.get("bind").map(|v| (v, h.keys_of("bind"))));
        match binds {
            None => {
                for ip in defaults::HTTP_BIND_04 {
                    self.add_http(SocketAddr::new(ip, port), "http.bind".to_owned());
                }
            }
            Some((v, known)) => {
                for (key, item) in list_items("http.bind", v) {
                    if let Some((addr, bind)) = self.bind_item(&key, item, port, known) {
                        self.add_http(addr, key);
                        if let Some(bind) = bind {
                            bind.finish(&mut self.ctx);
                        }
                    }
                }
            }
        }
        if let Some(h) = &http {
            h.finish(&mut self.ctx);
        }
    }

    /// `https {port, bind, key, cert, ca}`: a bind without its own key or
    /// certificate uses the section's; the section needs them unless every
    /// bind has its own.
    fn https04(&mut self, h: &Obj<'_>) {
        let port = self.port(h, defaults::HTTPS_PORT);
        let key = self.path(h, "key");
        let cert = self.path(h, "cert");
        let ca = self.ca(h);
        self.read_keys(h);
        let items = h
            .get("bind")
            .map(|v| list_items("https.bind", v))
            .unwrap_or_default();
        if items.is_empty() && key.is_some() && cert.is_some() {
            self.ctx.warn(
                "https has a key and certificate but no `bind`: no HTTPS listener (as in Hipache 0.4); \
                 add https.bind such as [\"0.0.0.0\"]",
            );
        }
        let mut key_missing = items.is_empty() && key.is_none();
        let mut cert_missing = items.is_empty() && cert.is_none();
        for (bkey, item) in items {
            let Some((address, bind)) = self.bind_item(&bkey, item, port, h.keys_of("bind")) else {
                continue;
            };
            let (bind_key, bind_cert, bind_ca) = match &bind {
                Some(b) => {
                    self.read_keys(b);
                    let ca = if b.has("ca") { Some(self.ca(b)) } else { None };
                    (self.path(b, "key"), self.path(b, "cert"), ca)
                }
                None => (None, None, None),
            };
            let lkey = bind_key.or_else(|| key.clone());
            let lcert = bind_cert.or_else(|| cert.clone());
            key_missing |= lkey.is_none();
            cert_missing |= lcert.is_none();
            if let (Some(key), Some(cert)) = (lkey, lcert) {
                let ca = bind_ca.unwrap_or_else(|| ca.clone());
                let listener = HttpsListener {
                    address,
                    key,
                    cert,
                    ca,
                };
                self.add_https(listener, bkey);
            }
            if let Some(b) = bind {
                b.finish(&mut self.ctx);
            }
        }
        self.require(
            h,
            "key",
            !key_missing,
            "a private key file (PEM), here or on every https.bind",
        );
        self.require(
            h,
            "cert",
            !cert_missing,
            "a certificate chain file (PEM), here or on every https.bind",
        );
    }

    /// The object's `port`, else `default` (also when it is bad: the error
    /// is recorded).
    fn port(&mut self, obj: &Obj<'_>, default: u16) -> u16 {
        match obj.get("port") {
            Some(v) => raw::port(&mut self.ctx, &obj.key("port"), v).unwrap_or(default),
            None => default,
        }
    }

    /// A bind element: an address string, or an object with `address` and
    /// optional overrides (returned for the caller to read and finish).
    fn bind_item<'v>(
        &mut self,
        key: &str,
        item: &'v Value,
        port: u16,
        known: &'static [Key],
    ) -> Option<(SocketAddr, Option<Obj<'v>>)> {
        match item {
            Value::Object(_) => {
                let obj = Obj::new(&mut self.ctx, key.to_owned(), item, known)?;
                let port = match obj.get("port") {
                    Some(v) => raw::port(&mut self.ctx, &obj.key("port"), v),
                    None => Some(port),
                };
                let ip = match obj.get("address") {
                    Some(v) => raw::listen_ip(&mut self.ctx, &obj.key("address"), v),
                    None => {
                        self.ctx
                            .err(obj.key("address"), "missing: the IP address to listen on");
                        None
                    }
                };
                match (ip, port) {
                    (Some(ip), Some(port)) => Some((SocketAddr::new(ip, port), Some(obj))),
                    _ => {
                        obj.finish(&mut self.ctx);
                        None
                    }
                }
            }
            other => raw::listen_ip(&mut self.ctx, key, other)
                .map(|ip| (SocketAddr::new(ip, port), None)),
        }
    }

    /// `ca`: a path or a list of paths.
    fn ca(&mut self, obj: &Obj<'_>) -> Vec<PathBuf> {
        let Some(v) = obj.get("ca") else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (k, item) in list_items(&obj.key("ca"), v) {
            if let Some(s) = raw::string(&mut self.ctx, &k, item) {
                self.files.push((k, PathBuf::from(&s)));
                out.push(PathBuf::from(s));
            }
        }
        out
    }

    fn require(&mut self, obj: &Obj<'_>, key: &str, present: bool, what: &str) {
        if !present && self.ctx.errors.iter().all(|e| e.key != obj.key(key)) {
            self.ctx
                .err(obj.key(key), format!("missing: HTTPS needs {what}"));
        }
    }

    fn add_http(&mut self, addr: SocketAddr, key: String) {
        self.cfg.http.push(addr);
        self.listeners.push((addr, key));
    }

    fn add_https(&mut self, l: HttpsListener, key: String) {
        self.listeners.push((l.address, key));
        self.cfg.https.push(l);
    }

    /// The same address and port twice (port 0 aside) is an error at the
    /// second.
    pub(super) fn check_duplicates(&mut self) {
        for (i, (addr, key)) in self.listeners.iter().enumerate() {
            if addr.port() == 0 {
                continue;
            }
            if let Some((_, first)) = self.listeners[..i].iter().find(|(a, _)| a == addr) {
                self.ctx.errors.push(super::ConfigError::new(
                    key.clone(),
                    format!("{addr} is already a listener (from {first})"),
                ));
            }
        }
    }
}

/// The listeners as `--dry` prints them: the 0.4 layout, a bind per
/// address; no `https` section without an HTTPS listener.
pub(super) fn show(c: &Config, doc: &mut Map<String, Value>) {
    let http: Vec<Value> = c
        .http
        .iter()
        .map(|a| json!({"address": a.ip().to_string(), "port": a.port()}))
        .collect();
    doc.insert("http".to_owned(), json!({ "bind": http }));
    if c.https.is_empty() {
        return;
    }
    let https: Vec<Value> = c
        .https
        .iter()
        .map(|l| {
            json!({
                "address": l.address.ip().to_string(),
                "port": l.address.port(),
                "key": l.key.display().to_string(),
                "cert": l.cert.display().to_string(),
                "ca": l.ca.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            })
        })
        .collect();
    doc.insert("https".to_owned(), json!({ "bind": https }));
}
