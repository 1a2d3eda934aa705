//! A `frontend:` list decoded.
//!
//! Element 0 is the identifier; every further element is a backend. A
//! backend element is either a plain URL (`http://10.0.0.1:8080`, Hipache's
//! form: it serves every path) or our path-route extension, a path rule, one
//! space and a URL: `/api http://10.0.0.2:8080` (Prefix) or
//! `=/login http://10.0.0.3:8080` (Exact). Positions (list index minus one)
//! are kept for every element, parsable or not, because `dead:` sets name
//! backends by position.

use crate::backend::{BackendUrl, BackendUrlError};
use crate::path::PathMatch;

/// Identifiers written by the syncer start with this; everything else
/// belongs to someone else (a redis-cli tenant) and is never touched by it.
pub const SYNCER_IDENTIFIER_PREFIX: &str = "k8s:";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendEntry {
    /// 0-based position among the backends (list index minus one).
    pub position: usize,
    /// The element as stored, for logs and the `dead` channel.
    pub raw: String,
    /// The URL part as stored (the element without its path rule).
    pub url_text: String,
    pub url: Result<BackendUrl, BackendUrlError>,
    /// `None`: serves every path (a plain Hipache entry).
    pub path: Option<PathMatch>,
}

impl BackendEntry {
    /// Decodes one backend element.
    ///
    /// An element that starts like a path rule whose rule does not parse
    /// (`=/lo\u{1}gin http://…`) is invalid: read as a plain element it
    /// would serve every path, a rule failing open.
    pub fn decode(position: usize, raw: &str) -> Self {
        let (path, url_text, bad_rule) = match raw.split_once(' ') {
            Some((spec, url)) if spec.starts_with(['/', '=']) => {
                let rule = PathMatch::parse(spec);
                let bad = rule.is_none();
                (rule, url.trim(), bad)
            }
            _ => (None, raw.trim(), false),
        };
        Self {
            position,
            raw: raw.to_owned(),
            url_text: url_text.to_owned(),
            url: match bad_rule {
                true => Err(crate::backend::BackendUrlError::PathRule),
                false => BackendUrl::parse(url_text),
            },
            path,
        }
    }

    /// A backend element that should have been a URL and is not (a
    /// placeholder is not invalid).
    pub fn is_invalid(&self) -> bool {
        matches!(&self.url, Err(e) if *e != crate::backend::BackendUrlError::Unavailable)
    }

    /// The stored form of a backend element: the inverse of [`decode`].
    ///
    /// [`decode`]: BackendEntry::decode
    pub fn encode(path: Option<&PathMatch>, url: &str) -> String {
        match path {
            Some(p) => format!("{p} {url}"),
            None => url.to_owned(),
        }
    }
}

/// Which backends of a frontend may serve a request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection<'a> {
    /// No rule of this frontend covers the path: try the next candidate.
    NoMatch,
    /// The backends whose path rule equals this one (`None`: the plain
    /// entries that serve every path).
    Group(Option<&'a PathMatch>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frontend {
    pub identifier: String,
    pub backends: Vec<BackendEntry>,
    /// Whether any element carries a path rule; a frontend without them
    /// never looks at the request path.
    pub has_paths: bool,
}

impl Frontend {
    /// Decodes a `frontend:` list. `None` for an empty list, which falls
    /// through to the next candidate exactly like an absent key.
    pub fn decode<S: AsRef<str>>(list: &[S]) -> Option<Self> {
        let (identifier, rest) = list.split_first()?;
        let backends: Vec<BackendEntry> = rest
            .iter()
            .enumerate()
            .map(|(i, raw)| BackendEntry::decode(i, raw.as_ref()))
            .collect();
        let has_paths = backends.iter().any(|b| b.path.is_some());
        Some(Self {
            identifier: identifier.as_ref().to_owned(),
            backends,
            has_paths,
        })
    }

    /// The group of backends that serves `request_path`.
    ///
    /// A frontend holding only its identifier is a match with no backends
    /// (the operator's way to block a host under a wildcard), so it selects
    /// the empty plain group rather than falling through.
    pub fn select(&self, request_path: &str) -> Selection<'_> {
        if !self.has_paths {
            return Selection::Group(None);
        }
        let best = self
            .backends
            .iter()
            .filter_map(|b| b.path.as_ref())
            .filter(|p| p.matches(request_path))
            .max_by(|a, b| a.precedence(b));
        match best {
            Some(p) => Selection::Group(Some(p)),
            None if self.backends.iter().any(|b| b.path.is_none()) => Selection::Group(None),
            None => Selection::NoMatch,
        }
    }

    /// The backends of a group, with their positions.
    pub fn group<'a>(
        &'a self,
        group: Option<&'a PathMatch>,
    ) -> impl Iterator<Item = &'a BackendEntry> + 'a {
        self.backends
            .iter()
            .filter(move |b| b.path.as_ref() == group)
    }

    /// Whether this frontend, found under the candidate key `frontend_host`
    /// for `request_host`, applies. Hipache's wildcards cover any depth
    /// below their domain (`*.example.com` covers `a.b.example.com`);
    /// Kubernetes Ingress wildcards cover exactly one label, so a wildcard
    /// frontend written by the syncer does not cover deeper hosts, which
    /// then fall through to the next candidate.
    pub fn covers(&self, frontend_host: &str, request_host: &str) -> bool {
        match frontend_host.strip_prefix("*.") {
            Some(domain) if self.is_syncer_owned() => request_host
                .strip_suffix(domain)
                .and_then(|h| h.strip_suffix('.'))
                .is_some_and(|label| !label.is_empty() && !label.contains('.')),
            _ => true,
        }
    }

    /// Whether the syncer owns this frontend.
    pub fn is_syncer_owned(&self) -> bool {
        self.identifier.starts_with(SYNCER_IDENTIFIER_PREFIX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes_plain_hipache_list() {
        let f = Frontend::decode(&["myapp", "http://10.0.0.1:80", "http://10.0.0.2"]).unwrap();
        assert_eq!(f.identifier, "myapp");
        assert_eq!(f.backends.len(), 2);
        assert_eq!(f.backends[1].position, 1);
        assert_eq!(f.backends[1].url.as_ref().unwrap().port, 80);
        assert!(!f.has_paths);
        assert_eq!(f.select("/anything"), Selection::Group(None));
        assert!(Frontend::decode::<&str>(&[]).is_none());
    }

    #[test]
    fn identifier_only_is_a_match_without_backends() {
        let f = Frontend::decode(&["blocked"]).unwrap();
        assert_eq!(f.select("/"), Selection::Group(None));
        assert_eq!(f.group(None).count(), 0);
    }

    #[test]
    fn invalid_urls_keep_their_position() {
        let f = Frontend::decode(&["x", "not a url", "http://ok:1"]).unwrap();
        assert!(f.backends[0].url.is_err());
        assert_eq!(f.backends[1].position, 1);
    }

    #[test]
    fn path_routes_select_with_kubernetes_precedence() {
        let f = Frontend::decode(&[
            "k8s:shop/web",
            "http://default:80",
            "/api http://api1:80",
            "/api http://api2:80",
            "=/api http://exact:80",
            "/api/v2 http://v2:80",
        ])
        .unwrap();
        assert!(f.has_paths && f.is_syncer_owned());
        let hosts = |path: &str| -> Vec<String> {
            match f.select(path) {
                Selection::Group(g) => f.group(g).map(|b| b.url.clone().unwrap().host).collect(),
                Selection::NoMatch => vec![],
            }
        };
        assert_eq!(hosts("/api"), ["exact"]);
        assert_eq!(hosts("/api/x"), ["api1", "api2"]);
        assert_eq!(hosts("/api/v2/x"), ["v2"]);
        assert_eq!(hosts("/apix"), ["default"]);
        assert_eq!(hosts("/"), ["default"]);
    }

    #[test]
    fn only_path_routes_fall_through_when_unmatched() {
        let f = Frontend::decode(&["x", "/foo http://a:80"]).unwrap();
        assert_eq!(f.select("/bar"), Selection::NoMatch);
        assert!(matches!(f.select("/foo/bar"), Selection::Group(Some(_))));
    }

    #[test]
    fn syncer_wildcards_cover_one_label_hipache_ones_any() {
        let k8s = Frontend::decode(&["k8s:ns/web", "http://a"]).unwrap();
        let tenant = Frontend::decode(&["tenant", "http://a"]).unwrap();
        assert!(k8s.covers("*.foo.com", "bar.foo.com"));
        assert!(!k8s.covers("*.foo.com", "baz.bar.foo.com"));
        assert!(tenant.covers("*.foo.com", "baz.bar.foo.com"));
        assert!(k8s.covers("*", "anything.at.all"));
        assert!(k8s.covers("bar.foo.com", "bar.foo.com"));
    }

    #[test]
    fn encode_round_trips() {
        let p = PathMatch::exact("/login");
        let raw = BackendEntry::encode(Some(&p), "http://a:80");
        let e = BackendEntry::decode(3, &raw);
        assert_eq!(e.path, Some(p));
        assert_eq!(e.url_text, "http://a:80");
        assert_eq!(BackendEntry::encode(None, "http://a:80"), "http://a:80");
    }

    #[test]
    fn a_bad_path_rule_never_widens_to_every_path() {
        for raw in [
            "=/lo\u{1}gin http://a:80",
            "= http://a:80",
            "=  http://a:80",
            "/a\u{7f} http://a:80",
        ] {
            let e = BackendEntry::decode(0, raw);
            assert_eq!(
                e.url,
                Err(crate::backend::BackendUrlError::PathRule),
                "{raw:?}"
            );
            assert!(e.is_invalid(), "{raw:?}");
        }
        let f = Frontend::decode(&["id", "= http://a:80"]).expect("frontend");
        assert!(
            f.group(None).all(|b| b.url.is_err()),
            "no backend serves every path"
        );
    }

    proptest! {
        #[test]
        fn decode_never_panics(list in proptest::collection::vec(".{0,40}", 0..8), path in "/.{0,20}") {
            if let Some(f) = Frontend::decode(&list) {
                prop_assert_eq!(f.backends.len(), list.len() - 1);
                if let Selection::Group(g) = f.select(&path) {
                    for b in f.group(g) { prop_assert!(b.position < list.len() - 1); }
                }
            }
        }
    }
}
