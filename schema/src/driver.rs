//! Redis driver URLs, `redis://[[user]:password@]host[:port][/db][#prefix]`
//! (`rediss://` for TLS), and `redis+sentinel://` for a server found
//! through Redis Sentinel ([`sentinel`]): the one parser behind the proxy's
//! `driver` and the syncer's `--redis-url`, so that both read the same
//! server, database and key prefix out of the same text.
//!
//! Hipache's forms are kept: `redis:` alone means every default, user info
//! without a `:` is the password, and the user, the password and the
//! `#prefix` are percent-decoded (`hipache%3A` is the prefix `hipache:`).
//! Unlike a general URL parser, the host is taken as written (no IDNA, no
//! percent-decoding, IPv6 literals in brackets) and query parameters are
//! refused instead of ignored.
//!
//! Two forms go out again: [`RedisUrl::censored`], the only one that may
//! appear in logs and dry-run output, and [`RedisUrl::server_url`], the
//! server alone for a Redis client library that takes a URL. Both escape
//! what they must, so either parses back to the same parts (the password
//! aside).

use std::fmt;
use std::net::Ipv6Addr;

use thiserror::Error;

pub mod sentinel;

pub use sentinel::{ReadFrom, Sentinel, DEFAULT_SENTINEL_PORT};

/// Host when the URL has none (Hipache's default: a local Redis).
pub const DEFAULT_HOST: &str = "127.0.0.1";
/// Port when the URL has none: Redis's own default.
pub const DEFAULT_PORT: u16 = 6379;
/// Database when the URL has no `/db`: Redis's default database.
pub const DEFAULT_DB: i64 = 0;

/// What stands for the password in [`RedisUrl::censored`].
pub const CENSORED_PASSWORD: &str = "***";

/// One parsed Redis driver URL. `Debug` shows the censored form.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    /// `rediss://`.
    pub tls: bool,
    /// A host name or IPv4 address as written, or an IPv6 address in its
    /// canonical form without brackets.
    pub host: String,
    pub port: u16,
    pub db: i64,
    /// The ACL user name, percent-decoded; `None` when empty.
    pub username: Option<String>,
    /// The password, percent-decoded; `None` when empty.
    pub password: Option<String>,
    /// The key prefix (`#prefix`), percent-decoded; empty for none.
    pub prefix: String,
    /// For `redis+sentinel://`: the Sentinels that name the server, which
    /// is then not `host:port` (those are the first Sentinel's) but the
    /// address they give; see [`RedisUrl::at`].
    pub sentinel: Option<Box<Sentinel>>,
}

/// Why a driver URL was refused. Messages never repeat the password.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RedisUrlError {
    #[error("expected redis://[[user]:password@]host[:port][/db][#prefix], rediss://... or redis+sentinel://...")]
    NoScheme,
    #[error("unsupported scheme {0:?}: expected redis://, rediss://, redis+sentinel:// or rediss+sentinel://")]
    Scheme(String),
    #[error("expected redis://... after the scheme")]
    NoSlashes,
    #[error(
        "query parameters are not supported: give the database as /db \
         and the password as :password@"
    )]
    Query,
    #[error("database {0:?} is not a number >= 0")]
    Database(String),
    #[error("the {0} has a bad %-escape")]
    Escape(&'static str),
    #[error("{0:?}: missing ']' after an IPv6 address")]
    UnclosedBracket(String),
    #[error("{0:?} is not an IPv6 address")]
    Ipv6(String),
    #[error("{0:?}: expected ':port' after ']'")]
    AfterBracket(String),
    #[error("{0:?} is not a host name")]
    Host(String),
    #[error("port {0:?} is not a number between 1 and 65535")]
    Port(String),
    #[error("{0}")]
    Sentinel(#[from] sentinel::SentinelUrlError),
}

impl Default for RedisUrl {
    /// What `redis:` means: the local Redis, database 0, no prefix.
    fn default() -> Self {
        Self {
            tls: false,
            host: DEFAULT_HOST.to_owned(),
            port: DEFAULT_PORT,
            db: DEFAULT_DB,
            username: None,
            password: None,
            prefix: String::new(),
            sentinel: None,
        }
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.censored())
    }
}

impl std::str::FromStr for RedisUrl {
    type Err = RedisUrlError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl RedisUrl {
    /// Parses `redis://…` or `rediss://…` (the scheme in any case,
    /// surrounding white space ignored).
    pub fn parse(text: &str) -> Result<Self, RedisUrlError> {
        let text = text.trim();
        let (scheme, rest) = text.split_once(':').ok_or(RedisUrlError::NoScheme)?;
        let (tls, sentinel) = match scheme.to_ascii_lowercase().as_str() {
            "redis" => (false, false),
            "rediss" => (true, false),
            "redis+sentinel" => (false, true),
            "rediss+sentinel" => (true, true),
            _ => return Err(RedisUrlError::Scheme(scheme.to_owned())),
        };
        let mut url = Self {
            tls,
            ..Self::default()
        };
        // Hipache accepted `redis:` with everything defaulted.
        let rest = match rest.strip_prefix("//") {
            Some(r) => r,
            None if rest.is_empty() && !sentinel => return Ok(url),
            None => return Err(RedisUrlError::NoSlashes),
        };
        let (rest, prefix) = match rest.split_once('#') {
            Some((r, p)) => (r, Some(p)),
            None => (rest, None),
        };
        if let Some(p) = prefix {
            url.prefix = percent_decode(p).ok_or(RedisUrlError::Escape("#prefix"))?;
        }
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        if query.is_some() && !sentinel {
            return Err(RedisUrlError::Query);
        }
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((userinfo, hostport)) => (Some(userinfo), hostport),
            None => (None, authority),
        };
        if let Some(userinfo) = userinfo {
            // Hipache took the password as what follows the first ':' of
            // the user info, or the whole user info without one.
            let (user, password) = userinfo.split_once(':').unwrap_or(("", userinfo));
            let user = percent_decode(user).ok_or(RedisUrlError::Escape("user name"))?;
            let password = percent_decode(password).ok_or(RedisUrlError::Escape("password"))?;
            url.username = (!user.is_empty()).then_some(user);
            url.password = (!password.is_empty()).then_some(password);
        }
        let db = if sentinel {
            let parsed = Sentinel::parse(hostport, path, query.unwrap_or(""))?;
            (url.host, url.port) = parsed.sentinel.nodes[0].clone();
            url.sentinel = Some(Box::new(parsed.sentinel));
            parsed.db
        } else {
            let (host, port) = split_host_port(hostport)?;
            if let Some(host) = host {
                url.host = host;
            }
            if let Some(port) = port {
                url.port = port;
            }
            path.to_owned()
        };
        if !db.is_empty() {
            url.db = match db.parse::<i64>() {
                Ok(db) if db >= 0 => db,
                _ => return Err(RedisUrlError::Database(db)),
            };
        }
        Ok(url)
    }

    /// The server at `host:port` with this URL's credentials, database and
    /// prefix: what a Sentinel URL means once the Sentinels named the
    /// server (TLS if this URL asks for it).
    pub fn at(&self, host: &str, port: u16) -> Self {
        Self {
            host: host.to_owned(),
            port,
            sentinel: None,
            ..self.clone()
        }
    }

    /// The URL with the password replaced by [`CENSORED_PASSWORD`]: the only
    /// form that may appear in logs and dry-run output. It always names the
    /// port and the database, and parses back to the same parts.
    pub fn censored(&self) -> String {
        let password = self
            .password
            .as_ref()
            .map(|_| Password::Verbatim(CENSORED_PASSWORD));
        let mut out = self.origin(password);
        out.push('/');
        if let Some(s) = &self.sentinel {
            escape(&s.master, USERINFO_SAFE, &mut out);
            out.push('/');
        }
        out.push_str(&self.db.to_string());
        if let Some(s) = &self.sentinel {
            s.write_query(CENSORED_PASSWORD, &mut out);
        }
        if !self.prefix.is_empty() {
            out.push('#');
            escape(&self.prefix, FRAGMENT_SAFE, &mut out);
        }
        out
    }

    /// The server alone, password included, for a Redis client library that
    /// opens a URL: no `#prefix` (redis-rs reads the fragment as its own
    /// `#insecure` option), the database only when not 0, user and password
    /// escaped. Never log it: log [`RedisUrl::censored`]. A Sentinel URL
    /// has no one server: open the server [`RedisUrl::at`] the address the
    /// Sentinels give.
    pub fn server_url(&self) -> String {
        let mut out = self.origin(self.password.as_deref().map(Password::Escaped));
        if self.db != DEFAULT_DB {
            out.push('/');
            out.push_str(&self.db.to_string());
        }
        out
    }

    /// `redis://[user:[password]@]host:port`, or for a Sentinel URL
    /// `redis+sentinel://[user:[password]@]host:port,host:port...`.
    fn origin(&self, password: Option<Password<'_>>) -> String {
        let mut out = String::from(if self.tls { "rediss" } else { "redis" });
        if self.sentinel.is_some() {
            out.push_str("+sentinel");
        }
        out.push_str("://");
        if self.username.is_some() || password.is_some() {
            if let Some(user) = &self.username {
                escape(user, USERINFO_SAFE, &mut out);
            }
            // Always the ':', even with no password: user info without one
            // would be read as the password.
            out.push(':');
            match password {
                Some(Password::Escaped(p)) => escape(p, USERINFO_SAFE, &mut out),
                Some(Password::Verbatim(p)) => out.push_str(p),
                None => {}
            }
            out.push('@');
        }
        match &self.sentinel {
            Some(s) => {
                for (i, (host, port)) in s.nodes.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_host_port(host, *port, &mut out);
                }
            }
            None => write_host_port(&self.host, self.port, &mut out),
        }
        out
    }
}

/// `host:port`, an IPv6 host in brackets.
fn write_host_port(host: &str, port: u16, out: &mut String) {
    if host.contains(':') {
        out.push('[');
        out.push_str(host);
        out.push(']');
    } else {
        out.push_str(host);
    }
    out.push(':');
    out.push_str(&port.to_string());
}

/// The password part of [`RedisUrl::origin`].
enum Password<'a> {
    /// The real password, escaped on the way out.
    Escaped(&'a str),
    /// A stand-in such as [`CENSORED_PASSWORD`], written as is.
    Verbatim(&'a str),
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`, `:port` or nothing.
pub(crate) fn split_host_port(text: &str) -> Result<(Option<String>, Option<u16>), RedisUrlError> {
    if let Some(rest) = text.strip_prefix('[') {
        let Some((h, after)) = rest.split_once(']') else {
            return Err(RedisUrlError::UnclosedBracket(text.to_owned()));
        };
        let Ok(ip) = h.parse::<Ipv6Addr>() else {
            return Err(RedisUrlError::Ipv6(h.to_owned()));
        };
        let port = match after {
            "" => None,
            _ => match after.strip_prefix(':') {
                Some(p) => Some(p),
                None => return Err(RedisUrlError::AfterBracket(text.to_owned())),
            },
        };
        // The canonical form (RFC 5952), as other URL parsers write it.
        return Ok((Some(ip.to_string()), parse_port(port)?));
    }
    let (host, port) = text
        .split_once(':')
        .map_or((text, None), |(h, p)| (h, Some(p)));
    if host.contains(|c: char| c.is_whitespace() || c == '/' || c == '@') {
        return Err(RedisUrlError::Host(host.to_owned()));
    }
    Ok((
        (!host.is_empty()).then(|| host.to_owned()),
        parse_port(port)?,
    ))
}

/// A port after `:`; none or empty: the default.
fn parse_port(port: Option<&str>) -> Result<Option<u16>, RedisUrlError> {
    match port {
        None | Some("") => Ok(None),
        Some(p) => match p.parse::<u16>() {
            Ok(p) if p > 0 => Ok(Some(p)),
            _ => Err(RedisUrlError::Port(p.to_owned())),
        },
    }
}

/// Decodes `%XX` escapes; `None` on a malformed escape or a result that is
/// not UTF-8 (stricter than browsers, which keep a bad escape as is: a
/// typo in a password or prefix should be an error, not another secret).
pub(crate) fn percent_decode(text: &str) -> Option<String> {
    if !text.contains('%') {
        return Some(text.to_owned());
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Characters kept as they are in a user name or password: RFC 3986's
/// unreserved ones. Everything else is escaped, so the text survives this
/// parser and any other URL parser alike.
pub(crate) const USERINFO_SAFE: &[u8] = b"-._~";

/// Characters kept in the `#prefix` besides letters and digits: what RFC
/// 3986 allows in a fragment, except `,` (the proxy's `--driver` separates
/// URLs with it) and `%`. `hipache:` stays readable.
const FRAGMENT_SAFE: &[u8] = b"-._~!$&'()*+;=:@/?";

/// Appends `text` with every byte that is not ASCII alphanumeric nor in
/// `safe` written as `%XX`.
pub(crate) fn escape(text: &str, safe: &[u8], out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric() || safe.contains(&b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(text: &str) -> RedisUrl {
        RedisUrl::parse(text).unwrap()
    }

    #[test]
    fn everything_defaulted() {
        for text in ["redis:", "redis://", "redis:///", "REDIS://", " redis:// "] {
            assert_eq!(parse(text), RedisUrl::default(), "{text}");
        }
        assert!(parse("rediss:").tls);
        assert_eq!(RedisUrl::default().censored(), "redis://127.0.0.1:6379/0");
        assert_eq!(RedisUrl::default().server_url(), "redis://127.0.0.1:6379");
    }

    #[test]
    fn full_url() {
        let r = parse("rediss://alice:s3cr%40t@redis.example:6380/4#hipache:");
        assert!(r.tls);
        assert_eq!(r.username.as_deref(), Some("alice"));
        assert_eq!(r.password.as_deref(), Some("s3cr@t"));
        assert_eq!((r.host.as_str(), r.port, r.db), ("redis.example", 6380, 4));
        assert_eq!(r.prefix, "hipache:");
        assert_eq!(
            r.censored(),
            "rediss://alice:***@redis.example:6380/4#hipache:"
        );
        assert_eq!(format!("{r:?}"), r.censored(), "Debug censors");
        assert_eq!(
            r.server_url(),
            "rediss://alice:s3cr%40t@redis.example:6380/4"
        );
    }

    #[test]
    fn escaped_prefix_is_decoded() {
        // What the chart writes for `redis.keyPrefix: "hipache:"`.
        assert_eq!(
            parse("redis://127.0.0.1:6379#hipache%3A").prefix,
            "hipache:"
        );
        assert_eq!(parse("redis://h#a%2Cb%20c%25").prefix, "a,b c%");
        assert_eq!(
            parse("redis://h#a%2Cb%20c%25").censored(),
            "redis://h:6379/0#a%2Cb%20c%25"
        );
        assert_eq!(parse("redis://h#").prefix, "");
    }

    #[test]
    fn password_only_and_user_only_forms() {
        let r = parse("redis://:pw@h");
        assert_eq!(
            (r.username.as_deref(), r.password.as_deref()),
            (None, Some("pw"))
        );
        // Hipache: user info without ':' is the password.
        let r = parse("redis://pw@h:7000");
        assert_eq!(
            (r.username.as_deref(), r.password.as_deref(), r.port),
            (None, Some("pw"), 7000)
        );
        assert_eq!(r.censored(), "redis://:***@h:7000/0");
        // An ACL user with the password given elsewhere (the chart's form).
        let r = parse("redis://bob:@h");
        assert_eq!(
            (r.username.as_deref(), r.password.as_deref()),
            (Some("bob"), None)
        );
        assert_eq!(r.censored(), "redis://bob:@h:6379/0");
        assert_eq!(parse(&r.censored()), r);
        // The last '@' ends the user info; the first ':' splits it.
        let r = parse("redis://u:p@ss:w@h");
        assert_eq!(
            (r.username.as_deref(), r.password.as_deref()),
            (Some("u"), Some("p@ss:w"))
        );
        assert_eq!(r.server_url(), "redis://u:p%40ss%3Aw@h:6379");
    }

    #[test]
    fn ipv6_host() {
        let r = parse("redis://[::1]:6390/2");
        assert_eq!((r.host.as_str(), r.port, r.db), ("::1", 6390, 2));
        assert_eq!(r.censored(), "redis://[::1]:6390/2");
        assert_eq!(parse("redis://[FE80:0:0:0:0:0:0:1]").host, "fe80::1");
    }

    #[test]
    fn bad_urls() {
        for (text, want) in [
            ("localhost", RedisUrlError::NoScheme),
            ("mysql://x", RedisUrlError::Scheme("mysql".into())),
            ("file:x", RedisUrlError::Scheme("file".into())),
            ("redis:h", RedisUrlError::NoSlashes),
            ("redis://h?db=1", RedisUrlError::Query),
            ("redis://h/x", RedisUrlError::Database("x".into())),
            ("redis://h/-1", RedisUrlError::Database("-1".into())),
            ("redis://h/1/2", RedisUrlError::Database("1/2".into())),
            ("redis://a:%zz@h", RedisUrlError::Escape("password")),
            ("redis://%ff%fe@h", RedisUrlError::Escape("password")),
            ("redis://%4@h", RedisUrlError::Escape("password")),
            ("redis://%+1:x@h", RedisUrlError::Escape("user name")),
            ("redis://h#%", RedisUrlError::Escape("#prefix")),
            (
                "redis://[::1",
                RedisUrlError::UnclosedBracket("[::1".into()),
            ),
            ("redis://[nope]", RedisUrlError::Ipv6("nope".into())),
            (
                "redis://[::1]x",
                RedisUrlError::AfterBracket("[::1]x".into()),
            ),
            ("redis://a b", RedisUrlError::Host("a b".into())),
            ("redis://h:99999", RedisUrlError::Port("99999".into())),
            ("redis://h:0", RedisUrlError::Port("0".into())),
            ("redis://h:abc", RedisUrlError::Port("abc".into())),
        ] {
            assert_eq!(RedisUrl::parse(text), Err(want), "{text}");
        }
    }

    #[test]
    fn errors_never_show_the_password() {
        for text in [
            "redis://:hunter2@h:x",
            "redis://:hunter2@h/x",
            "redis://:hunter2%@h",
        ] {
            let e = RedisUrl::parse(text).unwrap_err().to_string();
            assert!(!e.contains("hunter2"), "{e}");
        }
    }

    /// Escapes every byte of `text` that is not alphanumeric (or all of
    /// them): independent of the module's own escaping.
    fn escape_for_test(text: &str, all: bool) -> String {
        text.bytes()
            .map(|b| {
                if !all && b.is_ascii_alphanumeric() {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02x}")
                }
            })
            .collect()
    }

    fn host() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z0-9][a-z0-9._-]{0,30}",
            "[A-Za-z0-9]{1,10}(\\.[A-Za-z0-9-]{1,10}){0,3}",
            any::<[u8; 4]>().prop_map(|o| std::net::Ipv4Addr::from(o).to_string()),
            any::<u128>().prop_map(|b| Ipv6Addr::from(b).to_string()),
        ]
    }

    fn secret() -> impl Strategy<Value = Option<String>> {
        proptest::option::of(any::<String>().prop_filter("empty means none", |s| !s.is_empty()))
    }

    prop_compose! {
        fn redis_url()(
            tls in any::<bool>(),
            host in host(),
            port in 1..=u16::MAX,
            db in 0..=i64::MAX,
            username in secret(),
            password in secret(),
            prefix in any::<String>(),
        ) -> RedisUrl {
            RedisUrl { tls, host, port, db, username, password, prefix, sentinel: None }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// A URL built from its parts, with any characters escaped, parses
        /// back to the same parts.
        #[test]
        fn parts_round_trip(url in redis_url(), all in any::<bool>(), explicit in any::<bool>()) {
            let scheme = if url.tls { "rediss" } else { "redis" };
            let user = url.username.as_deref().map(|u| escape_for_test(u, all));
            let password = url.password.as_deref().map(|p| escape_for_test(p, all));
            let auth = match (user, password) {
                (None, None) => String::new(),
                (Some(u), None) => format!("{u}:@"),
                (None, Some(p)) if explicit => format!(":{p}@"),
                // Hipache's form: user info without ':' is the password.
                (None, Some(p)) => format!("{p}@"),
                (Some(u), Some(p)) => format!("{u}:{p}@"),
            };
            let host = if url.host.contains(':') { format!("[{}]", url.host) } else { url.host.clone() };
            let prefix = if url.prefix.is_empty() && !explicit {
                String::new()
            } else {
                format!("#{}", escape_for_test(&url.prefix, all))
            };
            let text = format!("{scheme}://{auth}{host}:{}/{}{prefix}", url.port, url.db);
            prop_assert_eq!(RedisUrl::parse(&text), Ok(url), "{}", text);
        }

        /// The censored and server forms parse back to the same parts, but
        /// for the password and the prefix they leave out.
        #[test]
        fn written_forms_round_trip(url in redis_url()) {
            let censored = RedisUrl::parse(&url.censored()).unwrap();
            prop_assert_eq!(&censored, &RedisUrl {
                password: url.password.as_ref().map(|_| CENSORED_PASSWORD.to_owned()),
                ..url.clone()
            });
            // Nothing of the password shows: another one censors the same.
            let other = RedisUrl { password: Some("other".to_owned()), ..url.clone() };
            prop_assert_eq!(url.censored() == other.censored(), url.password.is_some());
            let server = RedisUrl::parse(&url.server_url()).unwrap();
            prop_assert_eq!(server, RedisUrl { prefix: String::new(), ..url });
        }

        #[test]
        fn parse_never_panics(text in "(?s)(redis|rediss|REDIS|x)?:?(//)?.{0,60}") {
            let _ = RedisUrl::parse(&text);
        }
    }
}
