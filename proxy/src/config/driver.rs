//! Driver URLs: `redis://[[user]:password@]host[:port][/db][#prefix]`,
//! `rediss://` for TLS, `redis+sentinel://host[:port],.../<master>...` for
//! a server found through Sentinel, and `file:<path>` for a YAML routes
//! file.
//!
//! Redis URLs are parsed and censored by [`hipache_schema::driver`], the
//! parser the syncer uses too, so both read the same prefix from the same
//! text, into the same [`RedisUrl`]; this module adds the `file:` driver and
//! read/write lists.

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
        "redis" | "rediss" | "redis+sentinel" | "rediss+sentinel" => RedisUrl::parse(text)
            .map(DriverUrl::Redis)
            .map_err(|e| e.to_string()),
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

/// Splits a comma-separated driver list (`--driver`, `HIPACHE_DRIVER`)
/// into its URLs. A comma starts a new URL only where a driver scheme
/// follows (`redis://`, `rediss://`, `redis+sentinel://`,
/// `rediss+sentinel://`, `redis:` alone, `file:`), so that the Sentinel
/// addresses of one URL (`redis+sentinel://a:26379,b:26379/m`) stay
/// together.
pub fn split_list(text: &str) -> Vec<&str> {
    let starts_url = |rest: &str| {
        let lower = rest.trim_start().to_ascii_lowercase();
        [
            "redis://",
            "rediss://",
            "redis+sentinel://",
            "rediss+sentinel://",
            "file:",
        ]
        .iter()
        .any(|s| lower.starts_with(s))
            || lower == "redis:"
            || lower.starts_with("redis:,")
    };
    let mut parts = Vec::new();
    let mut start = 0;
    for (i, _) in text.match_indices(',') {
        if starts_url(&text[i + 1..]) {
            parts.push(&text[start..i]);
            start = i + 1;
        }
    }
    parts.push(&text[start..]);
    parts
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
    // Writes go to the master, whatever the URL says of reads.
    if let Some(s) = &mut write.sentinel {
        s.read_from = hipache_schema::ReadFrom::Master;
    }
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
    fn bare_scheme_is_the_default_url() {
        assert_eq!(redis("redis:"), RedisUrl::default());
    }

    #[test]
    fn escaped_prefix_is_decoded() {
        // What the chart writes for `redis.keyPrefix: "hipache:"`.
        assert_eq!(
            redis("redis://127.0.0.1:6379#hipache%3A").prefix,
            "hipache:"
        );
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

    #[test]
    fn a_driver_list_keeps_sentinel_addresses_together() {
        assert_eq!(
            split_list("redis+sentinel://a:26379,b,c:1/m/2,redis://w:6379"),
            ["redis+sentinel://a:26379,b,c:1/m/2", "redis://w:6379"]
        );
        assert_eq!(
            split_list("redis://r, redis://w"),
            ["redis://r", " redis://w"]
        );
        assert_eq!(split_list("redis:,redis:"), ["redis:", "redis:"]);
        assert_eq!(split_list("redis://r,file:x"), ["redis://r", "file:x"]);
        // A Sentinel host named like a scheme, without "//", stays a host.
        assert_eq!(
            split_list("redis+sentinel://a,redis:26379/m"),
            ["redis+sentinel://a,redis:26379/m"]
        );
    }

    #[test]
    fn one_sentinel_url_reads_from_replicas_and_writes_to_the_master() {
        let url = redis("redis+sentinel://a,b/mymaster?read_from=replica#p:");
        let Driver::Redis { read, write } = from_urls(vec![DriverUrl::Redis(url)]).unwrap() else {
            panic!("not redis")
        };
        let (r, w) = (read.sentinel.unwrap(), write.sentinel.unwrap());
        assert_eq!(r.read_from, hipache_schema::ReadFrom::Replica);
        assert_eq!(w.read_from, hipache_schema::ReadFrom::Master);
        assert_eq!(
            (r.master.as_str(), write.prefix.as_str()),
            ("mymaster", "p:")
        );
    }
}
