//! Which rule of a document serves a request.
//!
//! The matches of every rule are sorted once, when the document is
//! decoded, in Gateway API's precedence order (`docs/routes.md`,
//! Precedence); a request is then served by the first match that holds, so
//! a lookup stops at the first hit and never compares candidates.

use std::borrow::Cow;
use std::cmp::Ordering;

use regex::Regex;

use super::RouteDocument;
use crate::path::PathMatch;

/// What matching looks at in a request.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    pub method: &'a http::Method,
    /// The normalised path, without the query.
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a http::HeaderMap,
}

/// One match: every field must hold.
#[derive(Debug, Clone)]
pub struct Match {
    pub path: PathCond,
    pub headers: Vec<ValueCond>,
    pub query: Vec<ValueCond>,
    pub method: Option<http::Method>,
}

#[derive(Debug, Clone)]
pub enum PathCond {
    Exact(String),
    Prefix(PathMatch),
    /// The pattern as written, and compiled anchored.
    Regex(String, Regex),
}

/// A header or query parameter condition: `name` is lower-cased for
/// headers, as written for query parameters.
#[derive(Debug, Clone)]
pub struct ValueCond {
    pub name: String,
    pub pattern: Pattern,
}

#[derive(Debug, Clone)]
pub enum Pattern {
    Exact(String),
    Regex(String, Regex),
}

impl Pattern {
    pub fn matches(&self, value: &str) -> bool {
        match self {
            Pattern::Exact(v) => v == value,
            Pattern::Regex(_, re) => re.is_match(value),
        }
    }
}

/// The rule that serves a request, and which of its matches held (a
/// prefix replacement needs the prefix that matched).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selected {
    pub rule: usize,
    pub matched: usize,
}

impl PathCond {
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathCond::Exact(p) => p == path,
            PathCond::Prefix(p) => p.matches(path),
            PathCond::Regex(_, re) => re.is_match(path),
        }
    }

    /// Gateway API's path precedence: Exact first (longest first), then
    /// PathPrefix and RegularExpression by the length of their value, a
    /// prefix before a pattern of the same length.
    fn rank(&self) -> (u8, usize, u8) {
        match self {
            PathCond::Exact(p) => (2, p.len(), 1),
            PathCond::Prefix(p) => (1, p.path.trim_end_matches('/').len(), 1),
            PathCond::Regex(p, _) => (1, p.len(), 0),
        }
    }
}

impl Match {
    /// Whether the request satisfies every field of this match.
    pub fn matches(&self, req: &RequestView<'_>) -> bool {
        if self.method.as_ref().is_some_and(|m| m != req.method) {
            return false;
        }
        if !self.path.matches(req.path) {
            return false;
        }
        self.headers
            .iter()
            .all(|c| header_value(req.headers, &c.name).is_some_and(|v| c.pattern.matches(&v)))
            && self
                .query
                .iter()
                .all(|c| query_value(req.query, &c.name).is_some_and(|v| c.pattern.matches(&v)))
    }

    /// Orders matches by Gateway API precedence, the higher first.
    pub fn precedence(&self, other: &Match) -> Ordering {
        self.path
            .rank()
            .cmp(&other.path.rank())
            .then(self.method.is_some().cmp(&other.method.is_some()))
            .then(self.headers.len().cmp(&other.headers.len()))
            .then(self.query.len().cmp(&other.query.len()))
    }
}

/// The values of a header sent several times, joined with `,` (RFC 9110's
/// combination); `None` when absent or not text.
fn header_value<'h>(headers: &'h http::HeaderMap, name: &str) -> Option<Cow<'h, str>> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?.to_str().ok()?;
    let mut joined: Option<String> = None;
    for v in values {
        let s = joined.get_or_insert_with(|| first.to_owned());
        s.push(',');
        s.push_str(v.to_str().ok()?);
    }
    Some(joined.map_or(Cow::Borrowed(first), Cow::Owned))
}

/// The first value of a query parameter, percent-decoded (`+` stays a
/// plus: only forms encode spaces so).
fn query_value<'q>(query: Option<&'q str>, name: &str) -> Option<Cow<'q, str>> {
    query?
        .split('&')
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .find(|(k, _)| decode(k) == name)
        .map(|(_, v)| decode(v))
}

fn decode(s: &str) -> Cow<'_, str> {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy()
}

impl RouteDocument {
    /// The rule and match that serve a request, by precedence; `None`: no
    /// rule covers it.
    pub fn select(&self, req: &RequestView<'_>) -> Option<Selected> {
        self.order.iter().find_map(|&(rule, m)| {
            let (rule, matched) = (rule as usize, m as usize);
            self.rules[rule].matches[matched]
                .matches(req)
                .then_some(Selected { rule, matched })
        })
    }

    /// The matches of a document's rules in precedence order: higher
    /// precedence first, document order (rule, then match) on ties.
    pub(super) fn precedence_order(rules: &[super::Rule]) -> Vec<(u32, u32)> {
        let mut order: Vec<(u32, u32)> = rules
            .iter()
            .enumerate()
            .flat_map(|(r, rule)| (0..rule.matches.len()).map(move |m| (r as u32, m as u32)))
            .collect();
        // A stable sort keeps document order among equals.
        order.sort_by(|a, b| {
            let ma = &rules[a.0 as usize].matches[a.1 as usize];
            let mb = &rules[b.0 as usize].matches[b.1 as usize];
            mb.precedence(ma)
        });
        order
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::decode;

    fn doc(rules: serde_json::Value) -> RouteDocument {
        let text = serde_json::json!({ "id": "t", "rules": rules }).to_string();
        decode(text.as_bytes()).expect("valid document")
    }

    struct Req {
        method: http::Method,
        path: String,
        query: Option<String>,
        headers: http::HeaderMap,
    }

    fn req(target: &str) -> Req {
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
            None => (target.to_owned(), None),
        };
        Req {
            method: http::Method::GET,
            path,
            query,
            headers: http::HeaderMap::new(),
        }
    }

    impl Req {
        fn header(mut self, name: &'static str, value: &'static str) -> Self {
            self.headers
                .append(name, http::HeaderValue::from_static(value));
            self
        }
        fn method(mut self, m: http::Method) -> Self {
            self.method = m;
            self
        }
        fn view(&self) -> RequestView<'_> {
            RequestView {
                method: &self.method,
                path: &self.path,
                query: self.query.as_deref(),
                headers: &self.headers,
            }
        }
    }

    /// The name of the rule that serves the request.
    fn served(d: &RouteDocument, r: &Req) -> Option<String> {
        d.select(&r.view())
            .map(|s| d.rules[s.rule].name.clone().unwrap_or_default())
    }

    fn rule(name: &str, matches: serde_json::Value) -> serde_json::Value {
        serde_json::json!({ "name": name, "matches": matches, "backends": [{ "url": "http://a:80" }] })
    }

    #[test]
    fn path_types_and_precedence() {
        let d = doc(serde_json::json!([
            rule("root", serde_json::json!([{ "path": { "value": "/" } }])),
            rule(
                "prefix",
                serde_json::json!([{ "path": { "type": "PathPrefix", "value": "/api/" } }])
            ),
            rule(
                "exact",
                serde_json::json!([{ "path": { "type": "Exact", "value": "/api" } }])
            ),
            rule(
                "regex",
                serde_json::json!([{ "path": { "type": "RegularExpression", "value": "/api/v[0-9]+/.*" } }])
            ),
            rule(
                "longer",
                serde_json::json!([{ "path": { "value": "/api/v1/users/all" } }])
            ),
        ]));
        let s = |t: &str| served(&d, &req(t));
        assert_eq!(s("/api").as_deref(), Some("exact"));
        assert_eq!(s("/api/").as_deref(), Some("prefix"));
        assert_eq!(s("/apix").as_deref(), Some("root"));
        assert_eq!(
            s("/api/v2/x").as_deref(),
            Some("regex"),
            "a longer pattern beats a shorter prefix"
        );
        assert_eq!(
            s("/api/v1/users/all/7").as_deref(),
            Some("longer"),
            "the longest value wins"
        );
        assert_eq!(
            s("/api/vx/y").as_deref(),
            Some("prefix"),
            "an anchored pattern that fails"
        );
    }

    #[test]
    fn a_prefix_beats_a_pattern_of_the_same_length_and_ties_keep_document_order() {
        let d = doc(serde_json::json!([
            rule(
                "pattern",
                serde_json::json!([{ "path": { "type": "RegularExpression", "value": "/ab" } }])
            ),
            rule(
                "prefix",
                serde_json::json!([{ "path": { "value": "/ab" } }])
            ),
            rule("first", serde_json::json!([{ "path": { "value": "/x" } }])),
            rule("second", serde_json::json!([{ "path": { "value": "/x" } }])),
        ]));
        assert_eq!(served(&d, &req("/ab")).as_deref(), Some("prefix"));
        assert_eq!(served(&d, &req("/x")).as_deref(), Some("first"));
    }

    #[test]
    fn method_then_headers_then_query_break_ties() {
        let d = doc(serde_json::json!([
            rule("plain", serde_json::json!([{ "path": { "value": "/" } }])),
            rule(
                "query2",
                serde_json::json!([{ "queryParams": [{ "name": "a", "value": "1" }, { "name": "b", "value": "2" }] }])
            ),
            rule(
                "header1",
                serde_json::json!([{ "headers": [{ "name": "X-A", "value": "1" }] }])
            ),
            rule("method", serde_json::json!([{ "method": "POST" }])),
        ]));
        let both = req("/?a=1&b=2").header("x-a", "1");
        assert_eq!(served(&d, &both).as_deref(), Some("header1"));
        assert_eq!(
            served(&d, &both.method(http::Method::POST)).as_deref(),
            Some("method")
        );
        assert_eq!(served(&d, &req("/?a=1&b=2")).as_deref(), Some("query2"));
        assert_eq!(served(&d, &req("/?a=1")).as_deref(), Some("plain"));
    }

    #[test]
    fn matches_are_ored_and_fields_anded() {
        let d = doc(serde_json::json!([rule(
            "either",
            serde_json::json!([
                { "path": { "value": "/a" }, "headers": [{ "name": "v", "value": "1" }] },
                { "path": { "value": "/b" }, "method": "PUT" }
            ])
        ),]));
        assert!(served(&d, &req("/a").header("v", "1")).is_some());
        assert!(
            served(&d, &req("/a")).is_none(),
            "the header is required with /a"
        );
        assert!(served(&d, &req("/b").method(http::Method::PUT)).is_some());
        assert!(
            served(&d, &req("/b").header("v", "1")).is_none(),
            "PUT is required with /b"
        );
        let s = d
            .select(&req("/b").method(http::Method::PUT).view())
            .expect("match");
        assert_eq!(s.matched, 1);
    }

    #[test]
    fn header_and_query_values() {
        let d = doc(serde_json::json!([
            rule(
                "re",
                serde_json::json!([{ "headers": [{ "name": "x-v", "type": "RegularExpression", "value": "v[12]" }] }])
            ),
            rule(
                "q",
                serde_json::json!([{ "queryParams": [{ "name": "q a", "value": "x/y" }] }])
            ),
            rule(
                "joined",
                serde_json::json!([{ "headers": [{ "name": "x-j", "value": "a,b" }] }])
            ),
        ]));
        assert_eq!(
            served(&d, &req("/").header("X-V", "v2")).as_deref(),
            Some("re")
        );
        assert!(
            served(&d, &req("/").header("x-v", "v23")).is_none(),
            "anchored"
        );
        assert_eq!(served(&d, &req("/?q%20a=x%2Fy")).as_deref(), Some("q"));
        assert!(
            served(&d, &req("/?Q%20a=x%2Fy")).is_none(),
            "query names are case-sensitive"
        );
        assert!(
            served(&d, &req("/?q%20a=z&q%20a=x%2Fy")).is_none(),
            "the first occurrence counts"
        );
        assert_eq!(
            served(&d, &req("/").header("x-j", "a").header("x-j", "b")).as_deref(),
            Some("joined")
        );
    }

    #[test]
    fn default_match_is_every_path() {
        let d = doc(serde_json::json!([{ "backends": [{ "url": "http://a:80" }] }]));
        assert!(d.select(&req("/anything/at/all").view()).is_some());
        let empty = doc(serde_json::json!([]));
        assert!(empty.select(&req("/").view()).is_none());
    }
}
