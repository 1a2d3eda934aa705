//! From the raw document to a validated [`Config`]: defaults, and every
//! problem collected at once. The settings are read as [`super::keys`]
//! declares them; the listeners of both Hipache layouts by
//! [`super::listeners`]; the driver and Hipache's legacy Redis keys here.

use std::path::PathBuf;

use serde_json::Value;

use super::error::ConfigErrors;
use super::keys;
use super::raw::{self, Ctx, Obj};
use super::reading::{Builder, Kind, Options};
use super::{Config, Driver, RedisUrl, RouteCacheMode};

/// The parts of a legacy Redis connection, in the order Hipache named them
/// (`redisHost`, `redisPort`, ...; the host first).
const REDIS_FIELDS: [&str; 4] = ["host", "port", "password", "database"];

pub(super) struct Built {
    pub config: Config,
    pub warnings: Vec<String>,
}

pub(super) fn build(doc: &Value, opts: &Options<'_>) -> Result<Built, ConfigErrors> {
    let mut b = Builder {
        ctx: Ctx::default(),
        cfg: Config::default(),
        opts,
        listeners: Vec::new(),
        files: Vec::new(),
        dirs: Vec::new(),
    };
    b.cfg.http.clear();
    if let Some(top) = Obj::new(&mut b.ctx, String::new(), doc, keys::TOP) {
        b.document(&top);
        top.finish(&mut b.ctx);
    }
    b.check_duplicates();
    b.check_combinations();
    if opts.check_files {
        b.check_files();
    }
    if b.ctx.errors.is_empty() {
        Ok(Built {
            config: b.cfg,
            warnings: b.ctx.warnings,
        })
    } else {
        Err(ConfigErrors {
            file: None,
            errors: b.ctx.errors,
        })
    }
}

impl Builder<'_> {
    fn document(&mut self, top: &Obj<'_>) {
        let server = top.child(&mut self.ctx, "server");
        if let Some(server) = &server {
            self.read_keys(server);
        }
        self.listeners(top, server.as_ref());
        self.read_keys(top);
        self.legacy_redis(top);
        if let Some(server) = &server {
            server.finish(&mut self.ctx);
        }
    }

    /// Reads the settings of `obj` found in the file, in the order of their
    /// declaration, and warns about its ignored keys; parts are left to the
    /// code of their object.
    pub(super) fn read_keys(&mut self, obj: &Obj<'_>) {
        for key in obj.declared() {
            let Some(v) = obj.raw(key.name) else {
                continue;
            };
            if v.is_null() && !key.reads_null {
                continue;
            }
            let path = obj.key(key.name);
            match key.kind {
                Kind::Ignored(warning) => self.ctx.warn(warning(&path, v)),
                kind => kind.read(self, &path, v),
            }
        }
    }

    /// A file the configuration names, checked by [`Builder::check_files`].
    pub(super) fn file(&mut self, key: &str, v: &Value) -> Option<PathBuf> {
        let p = PathBuf::from(raw::string(&mut self.ctx, key, v)?);
        self.files.push((key.to_owned(), p.clone()));
        Some(p)
    }

    /// [`Builder::file`] at `obj.key`, when present.
    pub(super) fn path(&mut self, obj: &Obj<'_>, key: &str) -> Option<PathBuf> {
        let v = obj.get(key)?;
        self.file(&obj.key(key), v)
    }

    /// Hipache's top-level `redis*` keys: an error each next to `driver`,
    /// else the connections they describe.
    fn legacy_redis(&mut self, top: &Obj<'_>) {
        let legacy: Vec<&str> = top
            .declared()
            .iter()
            .map(|k| k.name)
            .filter(|k| k.starts_with("redis") && top.has(k))
            .collect();
        if top.has("driver") {
            for k in legacy {
                self.ctx.err(
                    k,
                    "conflicts with `driver` (Hipache ignored it silently): remove it or put it in the driver URL",
                );
            }
        } else if !legacy.is_empty() {
            self.ctx.warn(
                "the redisHost/redisPort/... keys are deprecated (as in Hipache): \
                 use \"driver\": [\"redis://host:port\", \"redis://masterhost:port\"]",
            );
            self.legacy_connections(top);
        }
    }

    /// Hipache's `redisHost`, ..., `redisMaster*` keys, or the older
    /// `redis {host, port, password, database}` object.
    fn legacy_connections(&mut self, top: &Obj<'_>) {
        let mut read = RedisUrl::default();
        if let Some(r) = top.child(&mut self.ctx, "redis") {
            for k in REDIS_FIELDS {
                if r.has(k) && top.has(&legacy_name("redis", k)) {
                    self.ctx.err(
                        r.key(k),
                        format!("conflicts with {}: use one", legacy_name("redis", k)),
                    );
                }
            }
            self.redis_fields(&mut read, |k| (r.key(k), r.get(k)));
            r.finish(&mut self.ctx);
        }
        self.redis_fields(&mut read, |k| {
            let name = legacy_name("redis", k);
            let v = top.get(&name);
            (name, v)
        });
        let mut write = read.clone();
        if top.has("redisMasterHost") {
            write = RedisUrl::default();
            self.redis_fields(&mut write, |k| {
                let name = legacy_name("redisMaster", k);
                let v = top.get(&name);
                (name, v)
            });
        } else {
            for k in &REDIS_FIELDS[1..] {
                let name = legacy_name("redisMaster", k);
                if top.has(&name) {
                    self.ctx.err(
                        name,
                        "needs redisMasterHost (Hipache ignored it without one)",
                    );
                }
            }
        }
        self.cfg.driver = Driver::Redis { read, write };
    }

    fn redis_fields<'v>(
        &mut self,
        url: &mut RedisUrl,
        field: impl Fn(&str) -> (String, Option<&'v Value>),
    ) {
        let ctx = &mut self.ctx;
        if let (k, Some(v)) = field("host") {
            if let Some(h) = raw::string(ctx, &k, v) {
                url.host = h;
            }
        }
        if let (k, Some(v)) = field("port") {
            match raw::port(ctx, &k, v) {
                Some(0) => ctx.err(k, "a Redis port must be between 1 and 65535"),
                Some(p) => url.port = p,
                None => {}
            }
        }
        if let (k, Some(v)) = field("password") {
            match v {
                // Hipache: an empty password means none.
                Value::String(s) if s.is_empty() => {}
                Value::String(s) => url.password = Some(s.clone()),
                // A secret: its value is never repeated in an error.
                other => ctx.err(&k, format!("expected a string, got {}", raw::kind(other))),
            }
        }
        if let (k, Some(v)) = field("database") {
            if let Some(db) = raw::uint(ctx, &k, v, 0, i64::MAX as u64) {
                url.db = i64::try_from(db).unwrap_or(0);
            }
        }
    }

    /// Settings that are fine alone but not together.
    fn check_combinations(&mut self) {
        if self.cfg.https_redirect && self.cfg.https.is_empty() {
            self.ctx.err(
                "server.httpsRedirect",
                "needs an HTTPS listener to redirect to (https.bind or server.https)",
            );
        }
        if self.cfg.route_cache == RouteCacheMode::Tracking && self.cfg.lru_cache.is_some() {
            self.ctx.err(
                "server.routeCache",
                "\"tracking\" conflicts with server.lruCache (Hipache's TTL cache): use one",
            );
        }
        // The page is served on the admin listener only, never on traffic.
        if self.cfg.status_page && self.cfg.admin.is_none() {
            self.ctx.err(
                "server.statusPage",
                "needs the admin listener (server.adminAddress), the only one it is served on",
            );
        }
    }

    fn check_files(&mut self) {
        for (key, path) in &self.files {
            if !path.is_file() {
                self.ctx
                    .err(key.clone(), format!("{}: no such file", path.display()));
            }
        }
        for (key, dir) in &self.dirs {
            if !dir.is_dir() {
                self.ctx
                    .err(key.clone(), format!("{}: no such directory", dir.display()));
            }
        }
    }
}

/// `redis` + `Port` -> `redisPort`; `database` -> `redisDatabase`.
fn legacy_name(prefix: &str, field: &str) -> String {
    let mut chars = field.chars();
    let first = chars.next().map(|c| c.to_ascii_uppercase());
    let mut out = prefix.to_owned();
    out.extend(first);
    out.extend(chars);
    out
}
