//! The Sentinel form of a driver URL:
//! `redis+sentinel://[user:password@]host[:port][,host[:port]...]/<master>[/db][?params][#prefix]`
//! (`rediss+sentinel://` for TLS to the Sentinels and to the servers).
//!
//! The user and password are the servers' (master and replicas), as in a
//! `redis://` URL; the Sentinels' own credentials, when they require one,
//! are query parameters, so that one URL carries both and either can be
//! left out. The parameters:
//! - `sentinel_username`, `sentinel_password`: what to AUTH with on the
//!   Sentinels (percent-encoded).
//! - `read_from`: `replica` (the default) or `master`: where a reader
//!   reads. Writers always write to the master.
//!
//! Unknown parameters are refused, as a typo in a secret's name should be
//! an error rather than a Sentinel asked without a password.

use thiserror::Error;

use super::{escape, percent_decode, split_host_port, USERINFO_SAFE};

/// Port of a Sentinel address without one: Sentinel's own default.
pub const DEFAULT_SENTINEL_PORT: u16 = 26379;

/// Where a reader reads when the server is found through Sentinel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadFrom {
    /// A replica that is connected to its master, else the master: reads
    /// spread over the replicas and see a write after the replication lag.
    #[default]
    Replica,
    /// The master only: reads see every write at once.
    Master,
}

impl ReadFrom {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Replica => "replica",
            Self::Master => "master",
        }
    }
}

/// The Sentinels of a driver URL and the master they are asked about.
#[derive(Clone, PartialEq, Eq)]
pub struct Sentinel {
    /// Sentinel addresses, in the order given (at least one): host as in
    /// [`super::RedisUrl::host`], and port.
    pub nodes: Vec<(String, u16)>,
    /// The master's name in the Sentinels' configuration
    /// (`sentinel monitor <name> ...`), percent-decoded.
    pub master: String,
    /// The Sentinels' ACL user (`sentinel_username`); `None` when empty.
    pub username: Option<String>,
    /// The Sentinels' password (`sentinel_password`); `None` when empty.
    pub password: Option<String>,
    pub read_from: ReadFrom,
}

impl std::fmt::Debug for Sentinel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sentinel")
            .field("nodes", &self.nodes)
            .field("master", &self.master)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("read_from", &self.read_from)
            .finish()
    }
}

/// Why the Sentinel part of a driver URL was refused. Messages never
/// repeat a password.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SentinelUrlError {
    #[error("a Sentinel URL needs at least one Sentinel address: redis+sentinel://host:26379[,host:26379...]/<master>")]
    NoNode,
    #[error("a Sentinel URL names its master after the addresses: redis+sentinel://host:26379[,...]/<master>[/db]")]
    NoMaster,
    #[error("the master name has a bad %-escape")]
    MasterEscape,
    #[error("the {0} parameter has a bad %-escape")]
    Escape(&'static str),
    #[error("read_from={0:?}: expected replica or master")]
    ReadFrom(String),
    #[error("unknown parameter {0:?}: a Sentinel URL takes sentinel_username, sentinel_password and read_from")]
    Parameter(String),
}

/// What [`Sentinel::parse`] read: the Sentinel part, and the `/db` text.
pub(super) struct Parsed {
    pub sentinel: Sentinel,
    pub db: String,
}

impl Sentinel {
    /// Parses the address list, the path (`master[/db]`) and the query of
    /// a Sentinel URL.
    pub(super) fn parse(
        hosts: &str,
        path: &str,
        query: &str,
    ) -> Result<Parsed, super::RedisUrlError> {
        let mut nodes = Vec::new();
        for node in hosts.split(',') {
            match split_host_port(node)? {
                (Some(host), port) => nodes.push((host, port.unwrap_or(DEFAULT_SENTINEL_PORT))),
                (None, _) => return Err(SentinelUrlError::NoNode.into()),
            }
        }
        let (master, db) = path.split_once('/').unwrap_or((path, ""));
        let master = percent_decode(master).ok_or(SentinelUrlError::MasterEscape)?;
        if master.is_empty() {
            return Err(SentinelUrlError::NoMaster.into());
        }
        let mut sentinel = Sentinel {
            nodes,
            master,
            username: None,
            password: None,
            read_from: ReadFrom::default(),
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            match name {
                "sentinel_username" => {
                    let v = percent_decode(value)
                        .ok_or(SentinelUrlError::Escape("sentinel_username"))?;
                    sentinel.username = (!v.is_empty()).then_some(v);
                }
                "sentinel_password" => {
                    let v = percent_decode(value)
                        .ok_or(SentinelUrlError::Escape("sentinel_password"))?;
                    sentinel.password = (!v.is_empty()).then_some(v);
                }
                "read_from" => {
                    sentinel.read_from = match value {
                        "replica" => ReadFrom::Replica,
                        "master" => ReadFrom::Master,
                        other => return Err(SentinelUrlError::ReadFrom(other.to_owned()).into()),
                    }
                }
                other => return Err(SentinelUrlError::Parameter(other.to_owned()).into()),
            }
        }
        Ok(Parsed {
            sentinel,
            db: db.to_owned(),
        })
    }

    /// Appends the query: the Sentinels' user, `password` for their
    /// password (when there is one), and `read_from`, always.
    pub(super) fn write_query(&self, password: &str, out: &mut String) {
        out.push('?');
        if let Some(user) = &self.username {
            out.push_str("sentinel_username=");
            escape(user, USERINFO_SAFE, out);
            out.push('&');
        }
        if self.password.is_some() {
            out.push_str("sentinel_password=");
            out.push_str(password);
            out.push('&');
        }
        out.push_str("read_from=");
        out.push_str(self.read_from.as_str());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::{RedisUrl, RedisUrlError};
    use super::*;

    fn parse(text: &str) -> RedisUrl {
        RedisUrl::parse(text).unwrap()
    }

    #[test]
    fn full_sentinel_url() {
        let r = parse(
            "rediss+sentinel://proxy:p%40ss@s1.example,[::1]:26380,10.0.0.3:5000/my%20master/3\
             ?sentinel_username=watch&sentinel_password=s%26cret&read_from=master#hipache:",
        );
        let s = r.sentinel.as_ref().unwrap();
        assert!(r.tls);
        assert_eq!(
            s.nodes,
            [
                ("s1.example".to_owned(), 26379),
                ("::1".to_owned(), 26380),
                ("10.0.0.3".to_owned(), 5000)
            ]
        );
        assert_eq!(s.master, "my master");
        assert_eq!(
            (s.username.as_deref(), s.password.as_deref()),
            (Some("watch"), Some("s&cret"))
        );
        assert_eq!(s.read_from, ReadFrom::Master);
        assert_eq!(
            (r.username.as_deref(), r.password.as_deref(), r.db),
            (Some("proxy"), Some("p@ss"), 3)
        );
        assert_eq!(r.prefix, "hipache:");
        assert_eq!(
            r.censored(),
            "rediss+sentinel://proxy:***@s1.example:26379,[::1]:26380,10.0.0.3:5000/my%20master/3\
             ?sentinel_username=watch&sentinel_password=***&read_from=master#hipache:"
        );
        assert!(!format!("{r:?}").contains("cret"));
        assert!(!format!("{s:?}").contains("cret"));
        // The censored form reads back as the same URL, passwords aside.
        let back = parse(&r.censored());
        assert_eq!(back.sentinel.as_ref().unwrap().nodes, s.nodes);
        assert_eq!(
            back.at("h", 1),
            RedisUrl {
                password: Some("***".to_owned()),
                ..r.at("h", 1)
            }
        );
        assert_eq!(back.sentinel.unwrap().password.as_deref(), Some("***"));
    }

    #[test]
    fn defaults_and_the_server_it_names() {
        let r = parse("redis+sentinel://sentinel/mymaster");
        let s = r.sentinel.as_ref().unwrap();
        assert_eq!(s.nodes, [("sentinel".to_owned(), DEFAULT_SENTINEL_PORT)]);
        assert_eq!((s.read_from, r.db, r.tls), (ReadFrom::Replica, 0, false));
        assert_eq!(
            r.censored(),
            "redis+sentinel://sentinel:26379/mymaster/0?read_from=replica"
        );
        let server = r.at("10.1.2.3", 6380);
        assert_eq!(server.sentinel, None);
        assert_eq!(server.server_url(), "redis://10.1.2.3:6380");
    }

    #[test]
    fn bad_sentinel_urls() {
        for (text, want) in [
            ("redis+sentinel:", RedisUrlError::NoSlashes),
            ("redis+sentinel://h", SentinelUrlError::NoMaster.into()),
            ("redis+sentinel://h/", SentinelUrlError::NoMaster.into()),
            ("redis+sentinel://h,/m", SentinelUrlError::NoNode.into()),
            ("redis+sentinel:///m", SentinelUrlError::NoNode.into()),
            (
                "redis+sentinel://h/m/x",
                RedisUrlError::Database("x".into()),
            ),
            (
                "redis+sentinel://h/m%zz",
                SentinelUrlError::MasterEscape.into(),
            ),
            (
                "redis+sentinel://h/m?read_from=any",
                SentinelUrlError::ReadFrom("any".into()).into(),
            ),
            (
                "redis+sentinel://h/m?sentinel_pasword=x",
                SentinelUrlError::Parameter("sentinel_pasword".into()).into(),
            ),
            (
                "redis+sentinel://h/m?sentinel_password=%zz",
                SentinelUrlError::Escape("sentinel_password").into(),
            ),
            ("redis+sentinel://h:0/m", RedisUrlError::Port("0".into())),
        ] {
            assert_eq!(RedisUrl::parse(text), Err(want), "{text}");
        }
        let e = RedisUrl::parse("redis+sentinel://h/m?sentinel_password=hunter2%")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("hunter2"), "{e}");
    }
}
