//! Driver URLs: `redis://[[user]:password@]host[:port][/db][#prefix]`,
//! `rediss://` for TLS, and `file:<path>` for a YAML routes file.

use std::path::{Path, PathBuf};

use super::{Driver, RedisUrl};

/// What one driver URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriverUrl {
    Redis(RedisUrl),
    File(PathBuf),
}

/// Parses one driver URL. A relative `file:` path is resolved against
/// `base_dir` when given (the config file's directory).
pub fn parse_url(text: &str, base_dir: Option<&Path>) -> Result<DriverUrl, String> {
    let text = text.trim();
    let Some((scheme, rest)) = text.split_once(':') else {
        return Err(format!(
            "{text:?} is not a driver URL: expected redis://, rediss:// or file:<path>"
        ));
    };
    match scheme.to_ascii_lowercase().as_str() {
        "redis" => parse_redis(rest, false).map(DriverUrl::Redis),
        "rediss" => parse_redis(rest, true).map(DriverUrl::Redis),
        "file" => parse_file(rest, base_dir).map(DriverUrl::File),
        "etcd" | "etcds" | "memcached" | "zookeeper" => Err(format!(
            "the {scheme} driver of Hipache is not supported: use redis://, rediss:// or file:<path>"
        )),
        _ => Err(format!(
            "unsupported driver scheme {scheme:?}: use redis://, rediss:// or file:<path>"
        )),
    }
}

fn parse_file(rest: &str, base_dir: Option<&Path>) -> Result<PathBuf, String> {
    // `file:///abs/path` (URL form) and `file:/abs/path` or `file:rel/path`.
    let path = match rest.strip_prefix("//") {
        Some(p) if p.starts_with('/') => p,
        Some(_) => {
            return Err(
                "file:// URLs must name an absolute path (file:///etc/routes.yaml); \
                 or write file:<path>"
                    .to_owned(),
            )
        }
        None => rest,
    };
    if path.is_empty() {
        return Err("file: needs a path to a YAML routes file".to_owned());
    }
    let path = PathBuf::from(path);
    Ok(match base_dir {
        Some(base) if path.is_relative() => base.join(path),
        _ => path,
    })
}

fn parse_redis(rest: &str, tls: bool) -> Result<RedisUrl, String> {
    let mut url = RedisUrl {
        tls,
        ..super::build::default_redis()
    };
    // Hipache accepted `redis:` with everything defaulted.
    let rest = match rest.strip_prefix("//") {
        Some(r) => r,
        None if rest.is_empty() => return Ok(url),
        None => return Err("expected redis://... after the scheme".to_owned()),
    };
    let (rest, prefix) = match rest.split_once('#') {
        Some((r, p)) => (r, Some(p)),
        None => (rest, None),
    };
    if let Some(p) = prefix {
        url.prefix = percent_decode(p).ok_or("the #prefix has a bad %-escape")?;
    }
    if rest.contains('?') {
        return Err(
            "query parameters are not supported: give the database as /db \
             and the password as :password@"
                .to_owned(),
        );
    }
    let (authority, path) = match rest.split_once('/') {
        Some((a, p)) => (a, p),
        None => (rest, ""),
    };
    if !path.is_empty() {
        url.db = match path.parse::<i64>() {
            Ok(db) if db >= 0 => db,
            _ => return Err(format!("database {path:?} is not a number >= 0")),
        };
    }
    let hostport = match authority.rsplit_once('@') {
        Some((userinfo, hostport)) => {
            // Hipache took the password as what follows the last ':' of the
            // user info, or the whole user info without one.
            let (user, password) = match userinfo.split_once(':') {
                Some((u, p)) => (u, p),
                None => ("", userinfo),
            };
            let user = percent_decode(user).ok_or("the user name has a bad %-escape")?;
            let password = percent_decode(password).ok_or("the password has a bad %-escape")?;
            url.username = (!user.is_empty()).then_some(user);
            url.password = (!password.is_empty()).then_some(password);
            hostport
        }
        None => authority,
    };
    let (host, port) = split_host_port(hostport)?;
    if let Some(host) = host {
        url.host = host;
    }
    if let Some(port) = port {
        url.port = port;
    }
    Ok(url)
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`, `:port` or nothing.
fn split_host_port(text: &str) -> Result<(Option<String>, Option<u16>), String> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let Some((h, after)) = rest.split_once(']') else {
            return Err(format!("{text:?}: missing ']' after an IPv6 address"));
        };
        if h.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("{h:?} is not an IPv6 address"));
        }
        match after {
            "" => (h, None),
            _ => match after.strip_prefix(':') {
                Some(p) => (h, Some(p)),
                None => return Err(format!("{text:?}: expected ':port' after ']'")),
            },
        }
    } else {
        match text.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (text, None),
        }
    };
    if host.contains(|c: char| c.is_whitespace() || c == '/' || c == '@') {
        return Err(format!("{host:?} is not a host name"));
    }
    let port = match port {
        None | Some("") => None,
        Some(p) => match p.parse::<u16>() {
            Ok(p) if p > 0 => Some(p),
            _ => return Err(format!("port {p:?} is not a number between 1 and 65535")),
        },
    };
    Ok(((!host.is_empty()).then(|| host.to_owned()), port))
}

/// Decodes `%XX` escapes; `None` on a malformed escape or non-UTF-8 result.
fn percent_decode(text: &str) -> Option<String> {
    if !text.contains('%') {
        return Some(text.to_owned());
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Builds the driver from a list of URLs: one URL, or a Redis list whose
/// first element is the read connection and last the write connection.
/// Errors carry the index of the bad element (`None`: the list as a whole).
pub fn from_urls(urls: Vec<DriverUrl>) -> Result<Driver, (Option<usize>, String)> {
    let len = urls.len();
    let mut redis = Vec::with_capacity(len);
    for (i, url) in urls.into_iter().enumerate() {
        match url {
            DriverUrl::File(path) if len == 1 => return Ok(Driver::File(path)),
            DriverUrl::File(_) => {
                return Err((
                    Some(i),
                    "a file: driver must be the only driver URL".to_owned(),
                ))
            }
            DriverUrl::Redis(r) => redis.push(r),
        }
    }
    let mut it = redis.into_iter();
    let Some(read) = it.next() else {
        return Err((None, "needs at least one driver URL".to_owned()));
    };
    let mut write = it.last().unwrap_or_else(|| read.clone());
    // Hipache applied the first URL's #prefix to every connection.
    if write.prefix.is_empty() {
        write.prefix.clone_from(&read.prefix);
    } else if write.prefix != read.prefix {
        return Err((
            Some(len - 1),
            format!(
                "prefix {:?} differs from the read URL's {:?}: reads and dead marks must use one prefix",
                write.prefix, read.prefix
            ),
        ));
    }
    Ok(Driver::Redis { read, write })
}

/// `RedisUrl::censored`: the password replaced by `***`.
pub(super) fn censor(url: &RedisUrl) -> String {
    let scheme = if url.tls { "rediss" } else { "redis" };
    let auth = match (&url.username, &url.password) {
        (None, None) => String::new(),
        (Some(u), None) => format!("{u}@"),
        (None, Some(_)) => ":***@".to_owned(),
        (Some(u), Some(_)) => format!("{u}:***@"),
    };
    let host = if url.host.contains(':') {
        format!("[{}]", url.host)
    } else {
        url.host.clone()
    };
    let prefix = if url.prefix.is_empty() {
        String::new()
    } else {
        format!("#{}", url.prefix)
    };
    format!("{scheme}://{auth}{host}:{}/{}{prefix}", url.port, url.db)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn redis(text: &str) -> RedisUrl {
        match parse_url(text, None).unwrap() {
            DriverUrl::Redis(r) => r,
            other => panic!("not redis: {other:?}"),
        }
    }

    #[test]
    fn everything_defaulted() {
        for text in ["redis:", "redis://", "redis:///", "REDIS://"] {
            let r = redis(text);
            assert_eq!(
                (r.host.as_str(), r.port, r.db),
                ("127.0.0.1", 6379, 0),
                "{text}"
            );
            assert!(!r.tls && r.password.is_none() && r.username.is_none() && r.prefix.is_empty());
        }
    }

    #[test]
    fn full_url() {
        let r = redis("rediss://alice:s3cr%40t@redis.example:6380/4#hipache:");
        assert!(r.tls);
        assert_eq!(r.username.as_deref(), Some("alice"));
        assert_eq!(r.password.as_deref(), Some("s3cr@t"));
        assert_eq!((r.host.as_str(), r.port, r.db), ("redis.example", 6380, 4));
        assert_eq!(r.prefix, "hipache:");
        assert_eq!(
            r.censored(),
            "rediss://alice:***@redis.example:6380/4#hipache:"
        );
    }

    #[test]
    fn password_only_forms() {
        let r = redis("redis://:pw@h");
        assert_eq!(
            (r.username.as_deref(), r.password.as_deref()),
            (None, Some("pw"))
        );
        // Hipache: user info without ':' is the password.
        let r = redis("redis://pw@h:7000");
        assert_eq!(
            (r.username.as_deref(), r.password.as_deref(), r.port),
            (None, Some("pw"), 7000)
        );
        assert_eq!(r.censored(), "redis://:***@h:7000/0");
    }

    #[test]
    fn ipv6_host() {
        let r = redis("redis://[::1]:6390/2");
        assert_eq!((r.host.as_str(), r.port, r.db), ("::1", 6390, 2));
        assert_eq!(r.censored(), "redis://[::1]:6390/2");
    }

    #[test]
    fn bad_urls() {
        for text in [
            "mysql://x",
            "etcd://127.0.0.1:4001",
            "localhost",
            "redis://h:99999",
            "redis://h:abc",
            "redis://h/x",
            "redis://h/-1",
            "redis://h?db=1",
            "redis:h",
            "redis://[::1",
            "file:",
            "file://host/x",
            "redis://a:%zz@h",
        ] {
            assert!(parse_url(text, None).is_err(), "{text} should fail");
        }
    }

    #[test]
    fn file_paths() {
        let base = Path::new("/etc/hipache");
        assert_eq!(
            parse_url("file:routes.yaml", Some(base)).unwrap(),
            DriverUrl::File(PathBuf::from("/etc/hipache/routes.yaml"))
        );
        assert_eq!(
            parse_url("file:/srv/routes.yaml", Some(base)).unwrap(),
            DriverUrl::File(PathBuf::from("/srv/routes.yaml"))
        );
        assert_eq!(
            parse_url("file:///srv/routes.yaml", Some(base)).unwrap(),
            DriverUrl::File(PathBuf::from("/srv/routes.yaml"))
        );
        assert_eq!(
            parse_url("file:routes.yaml", None).unwrap(),
            DriverUrl::File(PathBuf::from("routes.yaml"))
        );
    }

    #[test]
    fn read_write_lists() {
        let urls = vec![
            parse_url("redis://replica:6379#p:", None).unwrap(),
            parse_url("redis://ignored", None).unwrap(),
            parse_url("redis://:pw@master:6380/1", None).unwrap(),
        ];
        let Driver::Redis { read, write } = from_urls(urls).unwrap() else {
            panic!("not redis")
        };
        assert_eq!(read.host, "replica");
        assert_eq!(
            (write.host.as_str(), write.port, write.db),
            ("master", 6380, 1)
        );
        assert_eq!(
            write.prefix, "p:",
            "the read URL's prefix applies to writes"
        );

        let one = vec![parse_url("redis://h", None).unwrap()];
        let Driver::Redis { read, write } = from_urls(one).unwrap() else {
            panic!("not redis")
        };
        assert_eq!(read, write);

        assert!(from_urls(vec![]).is_err());
        let mixed = vec![
            parse_url("redis://h", None).unwrap(),
            parse_url("file:x.yaml", None).unwrap(),
        ];
        assert_eq!(from_urls(mixed).unwrap_err().0, Some(1));
        let prefixes = vec![
            parse_url("redis://a#x", None).unwrap(),
            parse_url("redis://b#y", None).unwrap(),
        ];
        assert!(from_urls(prefixes).is_err());
    }
}
