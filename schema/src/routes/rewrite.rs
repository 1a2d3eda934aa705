//! Path replacement (for `URLRewrite` and `RequestRedirect`) and the
//! `Location` of a redirect, by Gateway API's rules.

use super::Redirect;
use crate::backend::Scheme;

/// How a filter replaces the request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathModifier {
    /// `ReplaceFullPath`: the whole path.
    Full(String),
    /// `ReplacePrefixMatch`: the matched `PathPrefix`, keeping the rest.
    Prefix(String),
}

impl PathModifier {
    /// The new path for `path`. `matched_prefix` is the value of the
    /// `PathPrefix` that matched (validation guarantees there is one for a
    /// prefix replacement).
    ///
    /// The rest after the prefix keeps its leading `/`, and a replacement's
    /// trailing `/` is not doubled: with the prefix `/foo`, `/foo/x` becomes
    /// `/bar/x` for `/bar` or `/bar/`, `/x` for `/`; `/foo` becomes `/bar`,
    /// or `/` for `/`.
    pub fn apply(&self, path: &str, matched_prefix: Option<&str>) -> String {
        match self {
            PathModifier::Full(p) => p.clone(),
            PathModifier::Prefix(replacement) => {
                let prefix = matched_prefix.unwrap_or("/").trim_end_matches('/');
                let rest = path.get(prefix.len()..).unwrap_or_default();
                let base = replacement.trim_end_matches('/');
                match (base.is_empty(), rest.is_empty()) {
                    (true, true) => "/".to_owned(),
                    (_, true) => replacement.clone(),
                    (true, false) => rest.to_owned(),
                    (false, false) => format!("{base}{rest}"),
                }
            }
        }
    }
}

/// What a redirect needs to know of the request.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    pub scheme: Scheme,
    /// The normalised request host, without a port (IPv6 in brackets).
    pub host: &'a str,
    /// The port the client addressed: the `Host` header's, else the
    /// scheme's default.
    pub port: u16,
    /// The request path, after any rewrite by the redirect's own path.
    pub path: &'a str,
    pub query: Option<&'a str>,
}

impl Redirect {
    /// The `Location` for a request. Unset parts come from the request; the
    /// port defaults to the redirect scheme's well-known port when the
    /// scheme is set, else to the request's; a port that is the scheme's
    /// default is left out. The query is kept.
    pub fn location(&self, origin: &Origin<'_>) -> String {
        let scheme = self.scheme.unwrap_or(origin.scheme);
        let port = match (self.port, self.scheme) {
            (Some(p), _) => p,
            (None, Some(s)) => s.default_port(),
            (None, None) => origin.port,
        };
        let host = self.hostname.as_deref().unwrap_or(origin.host);
        let mut out = format!("{}://{host}", scheme.as_str());
        if port != scheme.default_port() {
            out.push_str(&format!(":{port}"));
        }
        out.push_str(origin.path);
        if let Some(q) = origin.query {
            out.push('?');
            out.push_str(q);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    #[test]
    fn prefix_replacement_edges() {
        let with = |repl: &str, prefix: &str, path: &str| {
            PathModifier::Prefix(repl.into()).apply(path, Some(prefix))
        };
        assert_eq!(with("/one", "/prefix/one", "/prefix/one/two"), "/one/two");
        assert_eq!(with("/one", "/prefix/one", "/prefix/one"), "/one");
        assert_eq!(with("/one", "/prefix/one", "/prefix/one/"), "/one/");
        assert_eq!(with("/", "/strip-prefix", "/strip-prefix/three"), "/three");
        assert_eq!(with("/", "/strip-prefix", "/strip-prefix"), "/");
        assert_eq!(with("/bar/", "/foo", "/foo/x"), "/bar/x");
        assert_eq!(with("/bar", "/foo/", "/foo/x"), "/bar/x");
        assert_eq!(with("/bar", "/", "/x/y"), "/bar/x/y");
        assert_eq!(
            PathModifier::Full("/one".into()).apply("/a/b", None),
            "/one"
        );
    }

    fn redirect(scheme: Option<Scheme>, host: Option<&str>, port: Option<u16>) -> Redirect {
        Redirect {
            scheme,
            hostname: host.map(Into::into),
            port,
            path: None,
            status: StatusCode::FOUND,
        }
    }

    fn origin(scheme: Scheme, port: u16) -> Origin<'static> {
        Origin {
            scheme,
            host: "example.com",
            port,
            path: "/p",
            query: Some("a=1"),
        }
    }

    #[test]
    fn location_ports_follow_gateway_api() {
        let http80 = origin(Scheme::Http, 80);
        assert_eq!(
            redirect(None, None, None).location(&http80),
            "http://example.com/p?a=1"
        );
        assert_eq!(
            redirect(Some(Scheme::Https), None, None).location(&http80),
            "https://example.com/p?a=1",
            "the scheme's port, left out"
        );
        assert_eq!(
            redirect(None, None, None).location(&origin(Scheme::Http, 8080)),
            "http://example.com:8080/p?a=1",
            "no scheme: the request's port"
        );
        assert_eq!(
            redirect(Some(Scheme::Https), None, None).location(&origin(Scheme::Http, 8080)),
            "https://example.com/p?a=1",
            "a scheme: its port, not the request's"
        );
        assert_eq!(
            redirect(Some(Scheme::Https), Some("b.com"), Some(8443)).location(&http80),
            "https://b.com:8443/p?a=1"
        );
        assert_eq!(
            redirect(None, None, Some(443)).location(&http80),
            "http://example.com:443/p?a=1",
            "443 is not http's default"
        );
    }
}
