//! Path routes with Kubernetes Ingress semantics.
//!
//! `Exact` matches the whole path; `Prefix` matches element-wise on `/`
//! (`/foo` matches `/foo` and `/foo/bar`, never `/foobar`; a trailing slash
//! in the rule is ignored). Ingress `ImplementationSpecific` is written as
//! `Prefix` by the syncer. Among the rules that match, the longest path
//! wins and `Exact` beats `Prefix` of the same length.

use std::cmp::Ordering;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PathKind {
    Exact,
    Prefix,
}

/// A path condition on a backend entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PathMatch {
    pub kind: PathKind,
    /// Starts with `/`.
    pub path: String,
}

impl PathMatch {
    pub fn exact(path: impl Into<String>) -> Self {
        Self {
            kind: PathKind::Exact,
            path: path.into(),
        }
    }

    pub fn prefix(path: impl Into<String>) -> Self {
        Self {
            kind: PathKind::Prefix,
            path: path.into(),
        }
    }

    /// Parses the textual form used in `frontend:` lists: `=/exact` or
    /// `/prefix`.
    pub fn parse(spec: &str) -> Option<Self> {
        let (kind, path) = match spec.strip_prefix('=') {
            Some(path) => (PathKind::Exact, path),
            None => (PathKind::Prefix, spec),
        };
        (path.starts_with('/')
            && !path
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control()))
        .then(|| Self {
            kind,
            path: path.to_owned(),
        })
    }

    /// Whether a request path (without the query string) matches.
    pub fn matches(&self, request_path: &str) -> bool {
        match self.kind {
            PathKind::Exact => request_path == self.path,
            PathKind::Prefix => {
                let rule = self.path.trim_end_matches('/');
                if rule.is_empty() {
                    return true;
                }
                match request_path.strip_prefix(rule) {
                    Some(rest) => rest.is_empty() || rest.starts_with('/'),
                    None => false,
                }
            }
        }
    }

    /// Precedence between two matching rules: greater wins.
    pub fn precedence(&self, other: &Self) -> Ordering {
        self.path
            .len()
            .cmp(&other.path.len())
            .then_with(|| match (self.kind, other.kind) {
                (PathKind::Exact, PathKind::Prefix) => Ordering::Greater,
                (PathKind::Prefix, PathKind::Exact) => Ordering::Less,
                _ => Ordering::Equal,
            })
    }
}

impl fmt::Display for PathMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            PathKind::Exact => write!(f, "={}", self.path),
            PathKind::Prefix => f.write_str(&self.path),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_matches_element_wise() {
        let foo = PathMatch::prefix("/foo");
        assert!(foo.matches("/foo"));
        assert!(foo.matches("/foo/"));
        assert!(foo.matches("/foo/bar"));
        assert!(!foo.matches("/foobar"));
        assert!(!foo.matches("/"));
        let foo_slash = PathMatch::prefix("/foo/");
        assert!(foo_slash.matches("/foo"));
        assert!(foo_slash.matches("/foo/bar"));
        assert!(!foo_slash.matches("/foobar"));
        assert!(PathMatch::prefix("/").matches("/anything/at/all"));
        assert!(PathMatch::prefix("/aaa/bbb").matches("/aaa/bbb/ccc"));
        assert!(!PathMatch::prefix("/aaa/bbb").matches("/aaa/bbbxyz"));
    }

    #[test]
    fn exact_matches_whole_path() {
        let foo = PathMatch::exact("/foo");
        assert!(foo.matches("/foo"));
        assert!(!foo.matches("/foo/"));
        assert!(!foo.matches("/foo/bar"));
    }

    #[test]
    fn longest_wins_then_exact() {
        let p = PathMatch::prefix("/foo");
        let e = PathMatch::exact("/foo");
        let longer = PathMatch::prefix("/foo/bar");
        assert_eq!(e.precedence(&p), Ordering::Greater);
        assert_eq!(longer.precedence(&e), Ordering::Greater);
    }

    #[test]
    fn textual_form_round_trips() {
        for spec in ["=/login", "/api", "/"] {
            assert_eq!(PathMatch::parse(spec).unwrap().to_string(), spec);
        }
        assert_eq!(PathMatch::parse("api"), None);
        assert_eq!(PathMatch::parse("=api"), None);
    }
}
