//! The raw file: JSON or YAML read into a `serde_json::Value`, objects
//! checked against their declared keys, and typed getters that record a
//! [`ConfigError`] instead of stopping.
//!
//! We deliberately do not use serde derive on structs here (Sōzu's
//! FileConfig does): derive stops at the first bad field, and an operator
//! must see every problem of a file at once.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use serde_json::{Map, Value};

use super::error::ConfigErrors;
use super::reading::Key;
pub use super::reading::{show, Ctx};

/// How to read the text of a configuration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    Json,
    Yaml,
    /// JSON, and YAML when the text is not JSON.
    #[default]
    Auto,
}

impl Format {
    /// `.yaml`/`.yml` files are YAML; anything else is [`Format::Auto`].
    pub fn from_path(path: &std::path::Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml") => {
                Format::Yaml
            }
            _ => Format::Auto,
        }
    }
}

/// Key used for errors about the document as a whole.
pub const FILE_KEY: &str = "(file)";

/// Reads the text into a JSON value, in the given format.
pub fn read_document(text: &str, format: Format) -> Result<Value, ConfigErrors> {
    let value = match format {
        Format::Json => {
            serde_json::from_str(text).map_err(|e| ConfigErrors::one(FILE_KEY, json_msg(&e)))?
        }
        Format::Yaml => serde_yaml::from_str(text)
            .map_err(|e| ConfigErrors::one(FILE_KEY, format!("not valid YAML: {e}")))?,
        Format::Auto => match serde_json::from_str::<Value>(text) {
            Ok(v) => v,
            Err(json_err) => match serde_yaml::from_str::<Value>(text) {
                Ok(v) => v,
                Err(yaml_err) => {
                    let looks_json = text.trim_start().starts_with(['{', '[']);
                    let msg = if looks_json {
                        json_msg(&json_err)
                    } else {
                        format!("neither JSON nor YAML: {yaml_err}")
                    };
                    return Err(ConfigErrors::one(FILE_KEY, msg));
                }
            },
        },
    };
    match value {
        Value::Object(_) => Ok(value),
        Value::Null => Err(ConfigErrors::one(
            FILE_KEY,
            "the document is empty: expected an object such as {\"server\": {...}}",
        )),
        other => Err(ConfigErrors::one(
            FILE_KEY,
            format!("expected an object at the top level, got {}", kind(&other)),
        )),
    }
}

fn json_msg(e: &serde_json::Error) -> String {
    format!("not valid JSON: {e}")
}

/// `parent.key`, or `key` at the top level.
pub fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// An object of the file with the keys declared for it; reading a key
/// marks it as known, and [`Obj::finish`] reports the others.
pub struct Obj<'a> {
    pub path: String,
    map: &'a Map<String, Value>,
    known: &'static [Key],
}

impl<'a> Obj<'a> {
    /// `None` (with an error) when `value` is not an object.
    pub fn new(
        ctx: &mut Ctx,
        path: String,
        value: &'a Value,
        known: &'static [Key],
    ) -> Option<Self> {
        match value {
            Value::Object(map) => Some(Self { path, map, known }),
            other => {
                ctx.expected(path, "an object", other);
                None
            }
        }
    }

    /// The keys this object may hold.
    pub fn declared(&self) -> &'static [Key] {
        self.known
    }

    /// The keys declared for the object (or each object of the list) at
    /// `key`.
    pub fn keys_of(&self, key: &str) -> &'static [Key] {
        match self.known.iter().find(|k| k.name == key) {
            Some(k) => k.keys,
            None => {
                debug_assert!(false, "{key} is not declared");
                &[]
            }
        }
    }

    /// The object at `key`, when present (`None` with an error when it is
    /// not an object).
    pub fn child(&self, ctx: &mut Ctx, key: &str) -> Option<Obj<'a>> {
        let v = self.get(key)?;
        Obj::new(ctx, self.key(key), v, self.keys_of(key))
    }

    /// The value at `key`, `null` included.
    pub fn raw(&self, key: &str) -> Option<&'a Value> {
        debug_assert!(
            self.known.iter().any(|k| k.name == key),
            "{key} is not declared"
        );
        self.map.get(key)
    }

    /// The value at `key`; `null` counts as absent (Hipache's `undefined`).
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.raw(key).filter(|v| !v.is_null())
    }

    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub fn key(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// Reports every key not declared.
    pub fn finish(&self, ctx: &mut Ctx) {
        for key in self.map.keys() {
            if !self.known.iter().any(|k| k.name == key) {
                let hint = closest(key, self.known.iter().map(|k| &k.name))
                    .map(|k| format!(" (did you mean {k:?}?)"))
                    .unwrap_or_default();
                ctx.err(self.key(key), format!("unknown key{hint}"));
            }
        }
    }
}

/// The known key closest to a typo, if close enough to suggest.
fn closest<'k>(
    key: &str,
    known: impl IntoIterator<Item = &'k &'static str>,
) -> Option<&'static str> {
    let lower = key.to_ascii_lowercase();
    known
        .into_iter()
        .map(|k| (edit_distance(&lower, &k.to_ascii_lowercase()), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The elements of a list with their keys; a single value stands for a list
/// of one (Hipache wrapped non-lists), keyed without an index.
pub fn list_items<'a>(key: &str, v: &'a Value) -> Vec<(String, &'a Value)> {
    match v {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| (format!("{key}[{i}]"), item))
            .collect(),
        Value::Null => Vec::new(),
        other => vec![(key.to_owned(), other)],
    }
}

/// A number from a JSON number or a numeric string (Hipache configs have
/// `"port": "80"`, which node accepted).
fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
        _ => None,
    }
}

/// A whole number in `min..=max`.
pub fn uint(ctx: &mut Ctx, key: &str, v: &Value, min: u64, max: u64) -> Option<u64> {
    let parsed = match v {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= u64::MAX as f64)
                .map(|f| f as u64)
        }),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    match parsed {
        Some(n) if (min..=max).contains(&n) => Some(n),
        _ => {
            let range = if max == u64::MAX {
                format!(">= {min}")
            } else {
                format!("between {min} and {max}")
            };
            ctx.expected(key, &format!("a whole number {range}"), v);
            None
        }
    }
}

pub fn port(ctx: &mut Ctx, key: &str, v: &Value) -> Option<u16> {
    uint(ctx, key, v, 0, u64::from(u16::MAX)).and_then(|p| u16::try_from(p).ok())
}

pub fn usize_in(ctx: &mut Ctx, key: &str, v: &Value, min: usize, max: usize) -> Option<usize> {
    uint(ctx, key, v, min as u64, max as u64).and_then(|n| usize::try_from(n).ok())
}

pub fn boolean(ctx: &mut Ctx, key: &str, v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        other => {
            ctx.expected(key, "true or false", other);
            None
        }
    }
}

/// A non-empty string; numbers are accepted as their text (user ids).
pub fn string(ctx: &mut Ctx, key: &str, v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::String(_) => {
            ctx.err(key, "must not be empty");
            None
        }
        other => {
            ctx.expected(key, "a string", other);
            None
        }
    }
}

/// Seconds, whole or fractional, `>= 0`.
pub fn seconds(ctx: &mut Ctx, key: &str, v: &Value) -> Option<Duration> {
    match number(v) {
        Some(f) if (0.0..=1e9).contains(&f) => Some(Duration::from_secs_f64(f)),
        _ => {
            ctx.expected(key, "a number of seconds >= 0", v);
            None
        }
    }
}

/// Whole seconds (Redis EXPIRE takes no fractions), `>= 1`.
pub fn whole_seconds(ctx: &mut Ctx, key: &str, v: &Value) -> Option<Duration> {
    uint(ctx, key, v, 1, u64::from(u32::MAX)).map(Duration::from_secs)
}

/// A size in bytes: a whole number, or a string such as `"512MiB"`,
/// `"512MB"`, `"64k"` (k/M/G/T are powers of 1000, Ki/Mi/Gi/Ti of 1024).
pub fn bytes(ctx: &mut Ctx, key: &str, v: &Value) -> Option<u64> {
    let parsed = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => parse_size(s),
        _ => None,
    };
    if parsed.is_none() {
        let what = "a size in bytes (a whole number, or a string like \"512MiB\" or \"64k\")";
        ctx.expected(key, what, v);
    }
    parsed
}

/// Parses `"512MiB"`, `"512 MB"`, `"64k"`, `"1Gi"`, `"1024"`.
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let unit = unit.trim().to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let mult: u64 = match unit {
        "" => 1,
        "k" => 1_000,
        "ki" => 1 << 10,
        "m" => 1_000_000,
        "mi" => 1 << 20,
        "g" => 1_000_000_000,
        "gi" => 1 << 30,
        "t" => 1_000_000_000_000,
        "ti" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// An IP address to listen on: a literal (`127.0.0.1`, `::`, `[::1]`) or
/// `localhost` (127.0.0.1), which node resolved for Hipache.
pub fn listen_ip(ctx: &mut Ctx, key: &str, v: &Value) -> Option<IpAddr> {
    let parsed = match v {
        Value::String(s) => {
            let s = s.trim();
            let inner = s
                .strip_prefix('[')
                .and_then(|s| s.strip_suffix(']'))
                .unwrap_or(s);
            if inner.eq_ignore_ascii_case("localhost") {
                Some(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
            } else {
                inner.parse::<IpAddr>().ok()
            }
        }
        _ => None,
    };
    if parsed.is_none() {
        let what = "an IP address to listen on (such as \"0.0.0.0\" or \"::\")";
        ctx.expected(key, what, v);
    }
    parsed
}

/// `10.0.0.0/8`, `fd00::/8`, or a single address (`/32`, `/128`).
pub fn parse_net(text: &str) -> Option<IpNet> {
    let text = text.trim();
    if let Ok(net) = text.parse::<IpNet>() {
        return Some(net.trunc());
    }
    text.parse::<IpAddr>().ok().map(IpNet::from)
}

/// `ip:port` or `[v6]:port`.
pub fn parse_socket_addr(text: &str) -> Option<SocketAddr> {
    let text = text.trim();
    if let Ok(a) = text.parse::<SocketAddr>() {
        return Some(a);
    }
    let (host, port) = text.rsplit_once(':')?;
    if host.eq_ignore_ascii_case("localhost") {
        let port = port.parse().ok()?;
        return Some(SocketAddr::new(
            IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            port,
        ));
    }
    None
}

/// Seconds as JSON: whole when whole.
pub fn seconds_json(d: Duration) -> Value {
    if d.subsec_nanos() == 0 {
        Value::from(d.as_secs())
    } else {
        Value::from(d.as_secs_f64())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512MiB"), Some(512 << 20));
        assert_eq!(parse_size("512MB"), Some(512_000_000));
        assert_eq!(parse_size("512 mb"), Some(512_000_000));
        assert_eq!(parse_size("64k"), Some(64_000));
        assert_eq!(parse_size("1Gi"), Some(1 << 30));
        assert_eq!(parse_size("1024"), Some(1024));
        assert_eq!(parse_size("10B"), Some(10));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_size("-1"), None);
        assert_eq!(parse_size("1.5G"), None);
        assert_eq!(parse_size("99999999999Ti"), None);
    }

    #[test]
    fn typo_hints() {
        assert_eq!(closest("prot", &["port", "workers"]), Some("port"));
        assert_eq!(closest("maxsockets", &["maxSockets"]), Some("maxSockets"));
        assert_eq!(closest("zzzzzz", &["port"]), None);
    }

    #[test]
    fn formats() {
        assert!(read_document("{\"a\": 1}", Format::Json).is_ok());
        assert!(read_document("a: 1", Format::Json).is_err());
        assert!(read_document("a: 1", Format::Auto).is_ok());
        assert!(read_document("a: 1", Format::Yaml).is_ok());
        let e = read_document("{\"a\": ", Format::Auto).unwrap_err();
        assert!(e.to_string().starts_with("(file): not valid JSON"), "{e}");
        assert!(read_document("", Format::Auto).is_err());
        assert!(read_document("[1]", Format::Auto).is_err());
        assert!(read_document("just text", Format::Auto).is_err());
    }
}
