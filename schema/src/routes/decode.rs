//! A route document from JSON, with every error found.
//!
//! Written as a walk over `serde_json::Value` rather than derived with
//! serde: a derived decoder stops at its first error, and `hipache routes
//! check` must list them all, each at its JSON pointer (RFC 6901), so an
//! operator fixes a document in one pass. The walk also applies the checks
//! JSON Schema cannot (regular expressions compile, a prefix replacement
//! needs a prefix match, timeouts are consistent).

use std::fmt;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method, StatusCode};
use regex::{Regex, RegexBuilder};
use serde_json::{Map, Value};

use super::limits;
use super::matching::{Match, PathCond, Pattern, ValueCond};
use super::{
    duration, Filters, HeaderModifier, Mirror, PathModifier, Policies, Protocol, ProxyProtocol,
    Redirect, Retry, Rewrite, RouteDocument, Rule, Timeouts,
};
use crate::backend::{BackendUrl, BackendUrlError, Scheme};
use crate::entry::BackendEntry;
use crate::path::PathMatch;

/// One problem in a document, at a JSON pointer (`/rules/0/matches/1`;
/// empty for the document as a whole).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocError {
    pub pointer: String,
    pub message: String,
}

impl fmt::Display for DocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = if self.pointer.is_empty() {
            "/"
        } else {
            &self.pointer
        };
        write!(f, "{at}: {}", self.message)
    }
}

/// Decodes and validates a document: the model ready to serve, or every
/// error found (at least one).
pub fn decode(json: &[u8]) -> Result<RouteDocument, Vec<DocError>> {
    let root = Ptr(String::new());
    if json.len() > limits::DOCUMENT_BYTES {
        let message = format!("larger than {} bytes", limits::DOCUMENT_BYTES);
        return Err(vec![root.error(message)]);
    }
    let value: Value = serde_json::from_slice(json)
        .map_err(|e| vec![root.error(format!("not a JSON document: {e}"))])?;
    let mut cx = Ctx::default();
    match cx.document(&root, &value) {
        Some(doc) if cx.errors.is_empty() => Ok(doc),
        _ if cx.errors.is_empty() => Err(vec![root.error("invalid document")]),
        _ => Err(cx.errors),
    }
}

/// A JSON pointer being built.
#[derive(Clone)]
struct Ptr(String);

impl Ptr {
    fn key(&self, k: &str) -> Ptr {
        Ptr(format!(
            "{}/{}",
            self.0,
            k.replace('~', "~0").replace('/', "~1")
        ))
    }
    fn at(&self, i: usize) -> Ptr {
        Ptr(format!("{}/{i}", self.0))
    }
    fn error(&self, message: impl Into<String>) -> DocError {
        DocError {
            pointer: self.0.clone(),
            message: message.into(),
        }
    }
}

#[derive(Default)]
struct Ctx {
    errors: Vec<DocError>,
}

const RULE_FIELDS: &[&str] = &[
    "name",
    "matches",
    "backends",
    "filters",
    "timeouts",
    "retry",
    "maxBodySize",
    "protocol",
    "proxyProtocol",
    "policies",
];

/// Headers that filters may not change: the proxy sets `Host` (URLRewrite
/// changes it), and changing framing or hop-by-hop headers would desync
/// the connection.
const PROTECTED_HEADERS: &[&str] = &[
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
];

impl Ctx {
    fn err(&mut self, at: &Ptr, message: impl Into<String>) {
        self.errors.push(at.error(message));
    }

    /// `v` as an object whose fields are all in `fields`.
    fn object<'v>(
        &mut self,
        at: &Ptr,
        v: &'v Value,
        fields: &[&str],
    ) -> Option<&'v Map<String, Value>> {
        let Some(m) = v.as_object() else {
            self.err(at, "must be an object");
            return None;
        };
        for k in m.keys().filter(|k| !fields.contains(&k.as_str())) {
            self.err(
                &at.key(k),
                format!("unknown field; expected one of: {}", fields.join(", ")),
            );
        }
        Some(m)
    }

    fn required<'v>(
        &mut self,
        at: &Ptr,
        m: &'v Map<String, Value>,
        key: &str,
    ) -> Option<&'v Value> {
        let v = m.get(key);
        if v.is_none() {
            self.err(&at.key(key), "required");
        }
        v
    }

    fn string<'v>(&mut self, at: &Ptr, v: &'v Value) -> Option<&'v str> {
        let s = v.as_str();
        if s.is_none() {
            self.err(at, "must be a string");
        }
        s
    }

    fn array<'v>(&mut self, at: &Ptr, v: &'v Value, max: usize) -> Option<&'v [Value]> {
        match v.as_array() {
            Some(a) if a.len() <= max => Some(a),
            Some(_) => {
                self.err(at, format!("at most {max} items"));
                None
            }
            None => {
                self.err(at, "must be an array");
                None
            }
        }
    }

    fn uint(&mut self, at: &Ptr, v: &Value, range: std::ops::RangeInclusive<u64>) -> Option<u64> {
        match v.as_u64() {
            Some(n) if range.contains(&n) => Some(n),
            _ => {
                let (lo, hi) = (range.start(), range.end());
                self.err(at, format!("must be an integer from {lo} to {hi}"));
                None
            }
        }
    }

    /// An optional field decoded by `f`; `Some(None)` when absent.
    fn optional<'v, T>(
        &mut self,
        at: &Ptr,
        m: &'v Map<String, Value>,
        key: &str,
        f: impl FnOnce(&mut Self, &Ptr, &'v Value) -> Option<T>,
    ) -> Option<Option<T>> {
        match m.get(key) {
            None => Some(None),
            Some(v) => f(self, &at.key(key), v).map(Some),
        }
    }

    fn document(&mut self, at: &Ptr, v: &Value) -> Option<RouteDocument> {
        let m = self.object(at, v, &["version", "id", "policies", "rules"])?;
        if let Some(version) = m.get("version") {
            if version.as_u64() != Some(super::VERSION) {
                self.err(
                    &at.key("version"),
                    format!(
                        "unknown version; this proxy reads version {}",
                        super::VERSION
                    ),
                );
            }
        }
        let id = self
            .required(at, m, "id")
            .and_then(|v| self.string(&at.key("id"), v));
        if id == Some("") {
            self.err(&at.key("id"), "must not be empty");
        }
        let rules_at = at.key("rules");
        let list = self
            .required(at, m, "rules")
            .and_then(|v| self.array(&rules_at, v, limits::RULES));
        // Host-wide policies apply to every rule; a rule's own replace them
        // kind by kind.
        let host = self.optional(at, m, "policies", |cx, at, v| cx.policies(at, v, "host"));
        let host = host.flatten().unwrap_or_default();
        let mut backends = Vec::new();
        let mut rules = Vec::new();
        for (i, r) in list.unwrap_or_default().iter().enumerate() {
            if let Some(mut rule) = self.rule(&rules_at.at(i), r, i, &mut backends) {
                rule.policies = Policies::over(&rule.policies, &host);
                rules.push(rule);
            }
        }
        let order = RouteDocument::precedence_order(&rules);
        Some(RouteDocument {
            id: id?.to_owned(),
            rules,
            backends,
            order,
        })
    }

    fn rule(
        &mut self,
        at: &Ptr,
        v: &Value,
        index: usize,
        backends: &mut Vec<BackendEntry>,
    ) -> Option<Rule> {
        let m = self.object(at, v, RULE_FIELDS)?;
        let name = self.optional(at, m, "name", |cx, at, v| {
            cx.string(at, v).map(str::to_owned)
        });
        let scope = match name.as_ref().and_then(|n| n.as_deref()) {
            Some(n) => format!("rule:{n}"),
            None => format!("rule:#{index}"),
        };
        let matches = self.matches(at, m);
        let start = backends.len();
        let mut weights = Vec::new();
        if let Some(list) = m.get("backends") {
            let list_at = at.key("backends");
            for (i, b) in self
                .array(&list_at, list, limits::BACKENDS_PER_RULE)
                .unwrap_or_default()
                .iter()
                .enumerate()
            {
                if let Some((entry, weight)) = self.backend(&list_at.at(i), b, backends.len()) {
                    backends.push(entry);
                    weights.push(weight);
                }
            }
        }
        let filters = match m.get("filters") {
            None => Some(Filters::default()),
            Some(v) => self.filters(
                &at.key("filters"),
                v,
                matches.as_deref().unwrap_or_default(),
            ),
        };
        let timeouts = self.optional(at, m, "timeouts", Self::timeouts);
        let retry = self.optional(at, m, "retry", Self::retry);
        let max_body_size = self.optional(at, m, "maxBodySize", |cx, at, v| {
            cx.uint(at, v, 0..=u64::MAX)
        });
        let protocol = self.optional(at, m, "protocol", Self::protocol);
        let proxy_protocol = self.optional(at, m, "proxyProtocol", |cx, at, v| {
            match cx.string(at, v)? {
                "v1" => Some(ProxyProtocol::V1),
                "v2" => Some(ProxyProtocol::V2),
                _ => {
                    cx.err(at, "must be v1 or v2");
                    None
                }
            }
        });
        let policies = self.optional(at, m, "policies", |cx, at, v| cx.policies(at, v, &scope));
        Some(Rule {
            name: name?,
            matches: matches?,
            backends: start..backends.len(),
            weights,
            filters: filters?,
            timeouts: timeouts?.unwrap_or_default(),
            retry: retry?,
            max_body_size: max_body_size?,
            protocol: protocol?.unwrap_or_default(),
            proxy_protocol: proxy_protocol?,
            policies: policies?.unwrap_or_default(),
        })
    }

    /// A rule's matches; absent or empty: one match of every path.
    fn matches(&mut self, at: &Ptr, m: &Map<String, Value>) -> Option<Vec<Match>> {
        let every_path = || Match {
            path: PathCond::Prefix(PathMatch::prefix("/")),
            headers: Vec::new(),
            query: Vec::new(),
            method: None,
        };
        let Some(v) = m.get("matches") else {
            return Some(vec![every_path()]);
        };
        let at = at.key("matches");
        let list = self.array(&at, v, limits::MATCHES_PER_RULE)?;
        if list.is_empty() {
            return Some(vec![every_path()]);
        }
        let decoded: Vec<Option<Match>> = list
            .iter()
            .enumerate()
            .map(|(i, v)| self.one_match(&at.at(i), v))
            .collect();
        decoded.into_iter().collect()
    }

    fn one_match(&mut self, at: &Ptr, v: &Value) -> Option<Match> {
        let m = self.object(at, v, &["path", "headers", "queryParams", "method"])?;
        let path = match m.get("path") {
            None => Some(PathCond::Prefix(PathMatch::prefix("/"))),
            Some(v) => self.path_cond(&at.key("path"), v),
        };
        let headers = self.conditions(at, m, "headers", true);
        let query = self.conditions(at, m, "queryParams", false);
        let method = self.optional(at, m, "method", |cx, at, v| {
            let s = cx.string(at, v)?;
            let ok = !s.is_empty() && s.bytes().all(is_tchar);
            match ok.then(|| Method::from_bytes(s.as_bytes()).ok()).flatten() {
                Some(m) => Some(m),
                None => {
                    cx.err(at, "must be an HTTP method (a token such as GET)");
                    None
                }
            }
        });
        Some(Match {
            path: path?,
            headers: headers?,
            query: query?,
            method: method?,
        })
    }

    fn path_cond(&mut self, at: &Ptr, v: &Value) -> Option<PathCond> {
        let m = self.object(at, v, &["type", "value"])?;
        let kind = self.optional(at, m, "type", |cx, at, v| {
            let s = cx.string(at, v)?;
            match s {
                "Exact" | "PathPrefix" | "RegularExpression" => Some(s),
                _ => {
                    cx.err(at, "must be Exact, PathPrefix or RegularExpression");
                    None
                }
            }
        })?;
        let value = self.optional(at, m, "value", |cx, at, v| cx.string(at, v))?;
        let value = value.unwrap_or("/");
        let value_at = at.key("value");
        match kind.unwrap_or("PathPrefix") {
            "RegularExpression" => self
                .regex(&value_at, value)
                .map(|re| PathCond::Regex(value.to_owned(), re)),
            kind => {
                if !is_clean_path(value) {
                    self.err(&value_at, "must be a path starting with / with no //, /./, /../, ?, #, spaces or control characters");
                    return None;
                }
                Some(match kind {
                    "Exact" => PathCond::Exact(value.to_owned()),
                    _ => PathCond::Prefix(PathMatch::prefix(value)),
                })
            }
        }
    }

    /// `headers` (names case-insensitive) or `queryParams` (case-sensitive).
    fn conditions(
        &mut self,
        at: &Ptr,
        m: &Map<String, Value>,
        key: &str,
        header: bool,
    ) -> Option<Vec<ValueCond>> {
        let Some(v) = m.get(key) else {
            return Some(Vec::new());
        };
        let at = at.key(key);
        let list = self.array(&at, v, limits::CONDITIONS_PER_MATCH)?;
        let mut out = Vec::new();
        let mut ok = true;
        for (i, c) in list.iter().enumerate() {
            let at = at.at(i);
            match self.condition(&at, c, header) {
                Some(c) if out.iter().any(|o: &ValueCond| o.name == c.name) => {
                    self.err(&at.key("name"), "repeats a name of this match");
                    ok = false;
                }
                Some(c) => out.push(c),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn condition(&mut self, at: &Ptr, v: &Value, header: bool) -> Option<ValueCond> {
        let m = self.object(at, v, &["name", "value", "type"])?;
        let name = self
            .required(at, m, "name")
            .and_then(|v| self.string(&at.key("name"), v));
        let name = match name {
            Some(n) if header => match HeaderName::from_bytes(n.as_bytes()) {
                Ok(h) => Some(h.as_str().to_owned()),
                Err(_) => {
                    self.err(&at.key("name"), "must be an HTTP header name");
                    None
                }
            },
            Some("") => {
                self.err(&at.key("name"), "must not be empty");
                None
            }
            other => other.map(str::to_owned),
        };
        let value = self
            .required(at, m, "value")
            .and_then(|v| self.string(&at.key("value"), v));
        let kind = self.optional(at, m, "type", |cx, at, v| match cx.string(at, v)? {
            s @ ("Exact" | "RegularExpression") => Some(s),
            _ => {
                cx.err(at, "must be Exact or RegularExpression");
                None
            }
        })?;
        let value = value?;
        let pattern = match kind {
            Some("RegularExpression") => {
                Pattern::Regex(value.to_owned(), self.regex(&at.key("value"), value)?)
            }
            _ => Pattern::Exact(value.to_owned()),
        };
        Some(ValueCond {
            name: name?,
            pattern,
        })
    }

    /// Compiles a pattern anchored at both ends, bounded in size.
    fn regex(&mut self, at: &Ptr, pattern: &str) -> Option<Regex> {
        match RegexBuilder::new(&format!("^(?:{pattern})$"))
            .size_limit(limits::REGEX_BYTES)
            .build()
        {
            Ok(re) => Some(re),
            Err(e) => {
                let first = e
                    .to_string()
                    .lines()
                    .last()
                    .unwrap_or_default()
                    .trim()
                    .to_owned();
                self.err(at, format!("not a valid regular expression: {first}"));
                None
            }
        }
    }

    fn backend(&mut self, at: &Ptr, v: &Value, position: usize) -> Option<(BackendEntry, u32)> {
        let m = self.object(at, v, &["url", "invalid", "weight"])?;
        let weight = self.optional(at, m, "weight", |cx, at, v| {
            cx.uint(at, v, 0..=limits::MAX_WEIGHT)
        });
        let entry = match (m.get("url"), m.get("invalid")) {
            (Some(url), None) => {
                let text = self.string(&at.key("url"), url)?;
                match BackendUrl::parse(text) {
                    Ok(u) => Some(BackendEntry {
                        position,
                        raw: text.to_owned(),
                        url_text: text.to_owned(),
                        url: Ok(u),
                        path: None,
                    }),
                    Err(e) => {
                        self.err(&at.key("url"), format!("{e} (an unusable backend is written {{\"invalid\": \"<reason>\"}})"));
                        None
                    }
                }
            }
            (None, Some(reason)) => {
                let reason = self.string(&at.key("invalid"), reason)?;
                let text = format!("invalid: {reason}");
                Some(BackendEntry {
                    position,
                    raw: text.clone(),
                    url_text: text,
                    url: Err(BackendUrlError::Declared),
                    path: None,
                })
            }
            _ => {
                self.err(at, "needs exactly one of url and invalid");
                None
            }
        };
        Some((entry?, weight?.map_or(1, |w| w as u32)))
    }

    fn filters(&mut self, at: &Ptr, v: &Value, matches: &[Match]) -> Option<Filters> {
        let list = self.array(at, v, limits::FILTERS_PER_RULE)?;
        let mut f = Filters::default();
        let mut ok = true;
        for (i, v) in list.iter().enumerate() {
            ok &= self.filter(&at.at(i), v, matches, &mut f).is_some();
        }
        if f.redirect.is_some() && f.rewrite.is_some() {
            self.err(at, "a rule cannot have both RequestRedirect and URLRewrite");
            ok = false;
        }
        ok.then_some(f)
    }

    fn filter(&mut self, at: &Ptr, v: &Value, matches: &[Match], f: &mut Filters) -> Option<()> {
        let kind = v.get("type").and_then(Value::as_str);
        let fields: &[&str] = match kind {
            Some("RequestHeaderModifier" | "ResponseHeaderModifier") => {
                &["type", "set", "add", "remove"]
            }
            Some("RequestRedirect") => {
                &["type", "scheme", "hostname", "port", "path", "statusCode"]
            }
            Some("URLRewrite") => &["type", "hostname", "path"],
            Some("RequestMirror") => &["type", "url", "percent", "fraction"],
            _ => {
                self.err(&at.key("type"), "must be RequestHeaderModifier, ResponseHeaderModifier, RequestRedirect, URLRewrite or RequestMirror");
                return None;
            }
        };
        let kind = kind?;
        let m = self.object(at, v, fields)?;
        let once = |cx: &mut Self, taken: bool| {
            if taken {
                cx.err(
                    &at.key("type"),
                    format!("a rule has at most one {kind} filter"),
                );
            }
            !taken
        };
        match kind {
            "RequestHeaderModifier" => {
                let h = self.header_modifier(at, m);
                if once(self, f.request_headers.is_some()) {
                    f.request_headers = Some(h?);
                }
            }
            "ResponseHeaderModifier" => {
                let h = self.header_modifier(at, m);
                if once(self, f.response_headers.is_some()) {
                    f.response_headers = Some(h?);
                }
            }
            "RequestRedirect" => {
                let r = self.redirect(at, m, matches);
                if once(self, f.redirect.is_some()) {
                    f.redirect = Some(r?);
                }
            }
            "URLRewrite" => {
                let hostname = self.optional(at, m, "hostname", Self::hostname);
                let path =
                    self.optional(at, m, "path", |cx, at, v| cx.path_modifier(at, v, matches));
                if once(self, f.rewrite.is_some()) {
                    f.rewrite = Some(Rewrite {
                        hostname: hostname?,
                        path: path?,
                    });
                }
            }
            _ => f.mirrors.push(self.mirror(at, m)?),
        }
        Some(())
    }

    fn header_modifier(&mut self, at: &Ptr, m: &Map<String, Value>) -> Option<HeaderModifier> {
        let set = self.optional(at, m, "set", Self::header_pairs);
        let add = self.optional(at, m, "add", Self::header_pairs);
        let remove = self.optional(at, m, "remove", |cx, at, v| {
            let list = cx.array(at, v, limits::HEADERS_PER_MODIFIER)?;
            let names: Vec<Option<HeaderName>> = list
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let at = at.at(i);
                    let name = cx.string(&at, v)?;
                    cx.modifiable_name(&at, name)
                })
                .collect();
            names.into_iter().collect()
        });
        Some(HeaderModifier {
            set: set?.unwrap_or_default(),
            add: add?.unwrap_or_default(),
            remove: remove?.unwrap_or_default(),
        })
    }

    fn header_pairs(&mut self, at: &Ptr, v: &Value) -> Option<Vec<(HeaderName, HeaderValue)>> {
        let list = self.array(at, v, limits::HEADERS_PER_MODIFIER)?;
        let mut out: Vec<(HeaderName, HeaderValue)> = Vec::new();
        let mut ok = true;
        for (i, v) in list.iter().enumerate() {
            let at = at.at(i);
            let Some(m) = self.object(&at, v, &["name", "value"]) else {
                ok = false;
                continue;
            };
            let name = self
                .required(&at, m, "name")
                .and_then(|v| self.string(&at.key("name"), v))
                .and_then(|n| self.modifiable_name(&at.key("name"), n));
            let value = self
                .required(&at, m, "value")
                .and_then(|v| self.string(&at.key("value"), v))
                .and_then(|s| match HeaderValue::from_str(s) {
                    Ok(v) => Some(v),
                    Err(_) => {
                        self.err(
                            &at.key("value"),
                            "must be an HTTP field value (no control characters)",
                        );
                        None
                    }
                });
            match (name, value) {
                (Some(n), Some(_)) if out.iter().any(|(o, _)| *o == n) => {
                    self.err(&at.key("name"), "repeats a name of this list");
                    ok = false;
                }
                (Some(n), Some(v)) => out.push((n, v)),
                _ => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn modifiable_name(&mut self, at: &Ptr, name: &str) -> Option<HeaderName> {
        match HeaderName::from_bytes(name.as_bytes()) {
            Ok(h) if PROTECTED_HEADERS.contains(&h.as_str()) => {
                self.err(at, format!("{h} cannot be changed by a header filter"));
                None
            }
            Ok(h) => Some(h),
            Err(_) => {
                self.err(at, "must be an HTTP header name");
                None
            }
        }
    }

    fn redirect(
        &mut self,
        at: &Ptr,
        m: &Map<String, Value>,
        matches: &[Match],
    ) -> Option<Redirect> {
        let scheme = self.optional(at, m, "scheme", |cx, at, v| match cx.string(at, v)? {
            "http" => Some(Scheme::Http),
            "https" => Some(Scheme::Https),
            _ => {
                cx.err(at, "must be http or https");
                None
            }
        });
        let hostname = self.optional(at, m, "hostname", Self::hostname);
        let port = self.optional(at, m, "port", |cx, at, v| {
            cx.uint(at, v, 1..=65535).map(|p| p as u16)
        });
        let path = self.optional(at, m, "path", |cx, at, v| cx.path_modifier(at, v, matches));
        let status = self.optional(at, m, "statusCode", |cx, at, v| match v.as_u64() {
            Some(c @ (301 | 302 | 303 | 307 | 308)) => StatusCode::from_u16(c as u16).ok(),
            _ => {
                cx.err(at, "must be 301, 302, 303, 307 or 308");
                None
            }
        });
        Some(Redirect {
            scheme: scheme?,
            hostname: hostname?,
            port: port?,
            path: path?,
            status: status?.unwrap_or(StatusCode::FOUND),
        })
    }

    /// A precise host name for a redirect or a rewrite (no port, no
    /// wildcard), lower-cased.
    fn hostname(&mut self, at: &Ptr, v: &Value) -> Option<String> {
        let s = self.string(at, v)?;
        let lower = s.to_ascii_lowercase();
        match crate::host::normalize_host(s) {
            Ok(h) if h == lower.trim_end_matches('.') && !h.contains('*') => Some(h),
            _ => {
                self.err(at, "must be a host name without a port or a wildcard");
                None
            }
        }
    }

    fn path_modifier(&mut self, at: &Ptr, v: &Value, matches: &[Match]) -> Option<PathModifier> {
        let m = self.object(at, v, &["type", "value"])?;
        let kind = self
            .required(at, m, "type")
            .and_then(|v| self.string(&at.key("type"), v));
        let value = self
            .required(at, m, "value")
            .and_then(|v| self.string(&at.key("value"), v));
        if let Some(p) = value.filter(|p| !is_clean_path(p)) {
            self.err(&at.key("value"), format!("{p:?} must be a path starting with / with no //, /./, /../, ?, #, spaces or control characters"));
            return None;
        }
        match (kind?, value?) {
            ("ReplaceFullPath", p) => Some(PathModifier::Full(p.to_owned())),
            ("ReplacePrefixMatch", p) => {
                if matches
                    .iter()
                    .any(|m| !matches!(m.path, PathCond::Prefix(_)))
                {
                    self.err(
                        &at.key("type"),
                        "ReplacePrefixMatch needs every match of the rule to be a PathPrefix",
                    );
                    return None;
                }
                Some(PathModifier::Prefix(p.to_owned()))
            }
            _ => {
                self.err(
                    &at.key("type"),
                    "must be ReplaceFullPath or ReplacePrefixMatch",
                );
                None
            }
        }
    }

    fn mirror(&mut self, at: &Ptr, m: &Map<String, Value>) -> Option<Mirror> {
        let url = self.required(at, m, "url").and_then(|v| {
            let text = self.string(&at.key("url"), v)?;
            match BackendUrl::parse(text) {
                Ok(u) => Some((u, text.to_owned())),
                Err(e) => {
                    self.err(&at.key("url"), e.to_string());
                    None
                }
            }
        });
        let share = match (m.get("percent"), m.get("fraction")) {
            (Some(_), Some(_)) => {
                self.err(at, "percent and fraction are alternatives");
                None
            }
            (Some(p), None) => self
                .uint(&at.key("percent"), p, 0..=100)
                .map(|p| (p as u32, 100)),
            (None, Some(f)) => self.fraction(&at.key("fraction"), f),
            (None, None) => Some((100, 100)),
        };
        let (backend, url_text) = url?;
        let (numerator, denominator) = share?;
        Some(Mirror {
            backend,
            url_text,
            numerator,
            denominator,
        })
    }

    fn fraction(&mut self, at: &Ptr, v: &Value) -> Option<(u32, u32)> {
        let m = self.object(at, v, &["numerator", "denominator"])?;
        let max = u64::from(u32::MAX);
        let num = self
            .required(at, m, "numerator")
            .and_then(|v| self.uint(&at.key("numerator"), v, 0..=max));
        let den = self.optional(at, m, "denominator", |cx, at, v| cx.uint(at, v, 1..=max))?;
        let (num, den) = (num?, den.unwrap_or(100));
        if num > den {
            self.err(&at.key("numerator"), "must not exceed the denominator");
            return None;
        }
        Some((num as u32, den as u32))
    }

    fn timeouts(&mut self, at: &Ptr, v: &Value) -> Option<Timeouts> {
        let m = self.object(at, v, &["request", "backendRequest"])?;
        let request = self.optional(at, m, "request", Self::duration)?;
        let backend = self.optional(at, m, "backendRequest", Self::duration)?;
        // Gateway API: a zero duration disables the timeout.
        let nonzero = |d: Option<Duration>| d.filter(|d| !d.is_zero());
        let t = Timeouts {
            request: nonzero(request),
            backend_request: nonzero(backend),
        };
        if let (Some(r), Some(b)) = (t.request, t.backend_request) {
            if b > r {
                self.err(&at.key("backendRequest"), "must not be longer than request");
                return None;
            }
        }
        Some(t)
    }

    fn duration(&mut self, at: &Ptr, v: &Value) -> Option<Duration> {
        let s = self.string(at, v)?;
        let d = duration::parse(s);
        if d.is_none() {
            self.err(
                at,
                "must be a duration such as 500ms, 10s or 1m30s (units h, m, s, ms)",
            );
        }
        d
    }

    fn retry(&mut self, at: &Ptr, v: &Value) -> Option<Retry> {
        let m = self.object(at, v, &["attempts", "codes", "backoff"])?;
        let attempts = self.optional(at, m, "attempts", |cx, at, v| {
            cx.uint(at, v, 0..=limits::MAX_RETRIES)
        });
        let codes = self.optional(at, m, "codes", |cx, at, v| {
            let list = cx.array(at, v, 200)?;
            let codes: Vec<Option<u16>> = list
                .iter()
                .enumerate()
                .map(|(i, c)| cx.uint(&at.at(i), c, 400..=599).map(|c| c as u16))
                .collect();
            codes.into_iter().collect()
        });
        let backoff = self.optional(at, m, "backoff", Self::duration);
        Some(Retry {
            attempts: attempts?.map_or(1, |n| n as u32),
            codes: codes?.unwrap_or_default(),
            backoff: backoff?.unwrap_or(Duration::ZERO),
        })
    }

    fn protocol(&mut self, at: &Ptr, v: &Value) -> Option<Protocol> {
        let s = self.string(at, v)?;
        let p = Protocol::ALL.into_iter().find(|p| p.as_str() == s);
        if p.is_none() {
            self.err(at, "must be http/1.1, h2, h2c or grpc");
        }
        p
    }
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A path as the proxy's normalisation leaves it: a value that is not could
/// never match a request.
fn is_clean_path(p: &str) -> bool {
    p.starts_with('/')
        && !p
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || b == b'?' || b == b'#')
        && !p.contains("//")
        && !p.split('/').any(|seg| seg == "." || seg == "..")
}

mod policies;
#[cfg(test)]
mod tests;
