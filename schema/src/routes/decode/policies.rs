//! Decoding of `policies` objects (a document's and a rule's), with the
//! checks that make a policy enforceable: networks parse, password entries
//! are hashes of a known scheme, URLs are absolute, durations and counts are
//! in range. A policy that does not decode refuses the whole document.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};
use serde_json::{Map, Value};

use super::{Ctx, Ptr};
use crate::backend::BackendUrl;
use crate::routes::policies::*;

const POLICY_KINDS: &[&str] = &[
    "ipAllowList",
    "ipDenyList",
    "basicAuth",
    "forwardAuth",
    "rateLimit",
    "affinity",
    "cors",
    "hsts",
    "securityHeaders",
    "errorPages",
];

impl Ctx {
    /// A `policies` object. `scope` names what a rate limit declared here
    /// is shared by (`host`, or `rule:<name or index>`).
    pub(super) fn policies(&mut self, at: &Ptr, v: &Value, scope: &str) -> Option<Policies> {
        let m = self.object(at, v, POLICY_KINDS)?;
        let mut ok = true;
        let mut p = Policies::default();
        macro_rules! kind {
            ($key:literal, $field:ident, $f:expr) => {
                if let Some(v) = m.get($key) {
                    let decoded = $f(self, &at.key($key), v);
                    ok &= decoded.is_some();
                    p.$field = decoded;
                }
            };
        }
        kind!("ipAllowList", ip_allow, |cx: &mut Self, at: &Ptr, v| cx
            .networks(at, v)
            .map(Arc::new));
        kind!("ipDenyList", ip_deny, |cx: &mut Self, at: &Ptr, v| cx
            .networks(at, v)
            .map(Arc::new));
        kind!("basicAuth", basic_auth, |cx: &mut Self, at: &Ptr, v| cx
            .basic_auth(at, v)
            .map(Arc::new));
        kind!("forwardAuth", forward_auth, |cx: &mut Self, at: &Ptr, v| cx
            .forward_auth(at, v)
            .map(Arc::new));
        kind!("rateLimit", rate_limit, |cx: &mut Self, at: &Ptr, v| cx
            .rate_limit(at, v, scope)
            .map(Arc::new));
        kind!("affinity", affinity, |cx: &mut Self, at: &Ptr, v| cx
            .affinity(at, v)
            .map(Arc::new));
        kind!("cors", cors, |cx: &mut Self, at: &Ptr, v| cx
            .cors(at, v)
            .map(Arc::new));
        kind!("hsts", hsts, Self::hsts);
        kind!(
            "securityHeaders",
            security_headers,
            |cx: &mut Self, at: &Ptr, v| cx.header_pairs(at, v).map(Arc::new)
        );
        kind!("errorPages", error_pages, |cx: &mut Self, at: &Ptr, v| cx
            .error_pages(at, v)
            .map(Arc::new));
        ok.then_some(p)
    }

    fn networks(&mut self, at: &Ptr, v: &Value) -> Option<Vec<ipnet::IpNet>> {
        let list = self.array(at, v, 4096)?;
        let nets: Vec<Option<ipnet::IpNet>> = list
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let at = at.at(i);
                let s = self.string(&at, v)?;
                let net = s
                    .parse::<ipnet::IpNet>()
                    .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
                match net {
                    Ok(n) => Some(n.trunc()),
                    Err(_) => {
                        self.err(
                            &at,
                            "must be an IP address or a network (10.0.0.0/8, 2001:db8::/32)",
                        );
                        None
                    }
                }
            })
            .collect();
        nets.into_iter().collect()
    }

    fn basic_auth(&mut self, at: &Ptr, v: &Value) -> Option<BasicAuth> {
        let m = self.object(at, v, &["realm", "users"])?;
        let realm = self.optional(at, m, "realm", |cx, at, v| {
            let s = cx.string(at, v)?;
            if s.contains(['"', '\\']) || s.chars().any(char::is_control) {
                cx.err(
                    at,
                    "must not hold quotes, backslashes or control characters",
                );
                return None;
            }
            Some(s.to_owned())
        });
        let users = self.required(at, m, "users").and_then(|v| {
            let at = at.key("users");
            let list = self.array(&at, v, 10_000)?;
            let entries: Vec<Option<(String, String)>> = list
                .iter()
                .enumerate()
                .map(|(i, v)| self.htpasswd_entry(&at.at(i), v))
                .collect();
            entries.into_iter().collect::<Option<Vec<_>>>()
        });
        Some(BasicAuth {
            id: next_id(),
            realm: realm?.unwrap_or_else(|| "Restricted".to_owned()),
            users: users?,
        })
    }

    /// `user:hash`; the message never repeats the entry (it may hold a
    /// password written by mistake).
    fn htpasswd_entry(&mut self, at: &Ptr, v: &Value) -> Option<(String, String)> {
        let s = self.string(at, v)?;
        match s.split_once(':') {
            Some((user, hash))
                if !user.is_empty()
                    && PASSWORD_HASH_PREFIXES.iter().any(|p| hash.starts_with(p)) =>
            {
                Some((user.to_owned(), hash.to_owned()))
            }
            _ => {
                let schemes = PASSWORD_HASH_PREFIXES.join(" ");
                self.err(at, format!("must be user:hash with a hash of one of these schemes: {schemes} (plain-text passwords are refused)"));
                None
            }
        }
    }

    fn forward_auth(&mut self, at: &Ptr, v: &Value) -> Option<ForwardAuth> {
        let m = self.object(
            at,
            v,
            &[
                "url",
                "method",
                "requestHeaders",
                "responseHeaders",
                "signIn",
                "timeout",
            ],
        )?;
        let url = self.required(at, m, "url").and_then(|v| {
            let at = at.key("url");
            let s = self.string(&at, v)?;
            let target = s
                .split_once("://")
                .and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..]))
                .unwrap_or("/");
            match BackendUrl::parse(s) {
                Ok(b) if !target.contains('#') => Some((s.to_owned(), b, target.to_owned())),
                Ok(_) => {
                    self.err(&at, "must not hold a fragment");
                    None
                }
                Err(e) => {
                    self.err(&at, e.to_string());
                    None
                }
            }
        });
        let method = self.optional(at, m, "method", |cx, at, v| {
            let s = cx.string(at, v)?;
            match Method::from_bytes(s.as_bytes()) {
                Ok(m) if !s.is_empty() => Some(m),
                _ => {
                    cx.err(at, "must be an HTTP method");
                    None
                }
            }
        });
        let request_headers = self.optional(at, m, "requestHeaders", Self::header_names);
        let response_headers = self.optional(at, m, "responseHeaders", Self::header_names);
        let sign_in = self.optional(at, m, "signIn", |cx, at, v| {
            let s = cx.string(at, v)?;
            let ok = (s.starts_with("https://") || s.starts_with("http://"))
                && HeaderValue::from_str(s).is_ok();
            if !ok {
                cx.err(at, "must be an http:// or https:// URL");
                return None;
            }
            Some(s.to_owned())
        });
        let timeout = self.optional(at, m, "timeout", Self::duration);
        let (url, backend, target) = url?;
        Some(ForwardAuth {
            url,
            backend,
            target,
            method: method?.unwrap_or(Method::GET),
            request_headers: request_headers?
                .unwrap_or_else(|| vec![http::header::COOKIE, http::header::AUTHORIZATION]),
            response_headers: response_headers?.unwrap_or_default(),
            sign_in: sign_in?,
            timeout: timeout?
                .filter(|d| !d.is_zero())
                .unwrap_or(FORWARD_AUTH_TIMEOUT),
        })
    }

    fn header_names(&mut self, at: &Ptr, v: &Value) -> Option<Vec<HeaderName>> {
        let list = self.array(at, v, 64)?;
        let names: Vec<Option<HeaderName>> = list
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let at = at.at(i);
                let s = self.string(&at, v)?;
                match HeaderName::from_bytes(s.as_bytes()) {
                    Ok(h) => Some(h),
                    Err(_) => {
                        self.err(&at, "must be an HTTP header name");
                        None
                    }
                }
            })
            .collect();
        names.into_iter().collect()
    }

    fn rate_limit(&mut self, at: &Ptr, v: &Value, scope: &str) -> Option<RateLimit> {
        let m = self.object(
            at,
            v,
            &["requests", "period", "burst", "key", "onRedisDown"],
        )?;
        let requests = self
            .required(at, m, "requests")
            .and_then(|v| self.uint(&at.key("requests"), v, 1..=1_000_000));
        let period = self.optional(at, m, "period", Self::duration);
        let burst = self.optional(at, m, "burst", |cx, at, v| cx.uint(at, v, 0..=1_000_000));
        let key = self.optional(at, m, "key", |cx, at, v| match cx.string(at, v)? {
            "client" => Some(RateKey::Client),
            "all" => Some(RateKey::All),
            _ => {
                cx.err(at, "must be client or all");
                None
            }
        });
        let down = self.optional(at, m, "onRedisDown", |cx, at, v| {
            match cx.string(at, v)? {
                "local" => Some(OnRedisDown::Local),
                "allow" => Some(OnRedisDown::Allow),
                "deny" => Some(OnRedisDown::Deny),
                _ => {
                    cx.err(at, "must be local, allow or deny");
                    None
                }
            }
        });
        let period = period?.unwrap_or(Duration::from_secs(1));
        if period < Duration::from_millis(1) || period > Duration::from_secs(86_400) {
            self.err(&at.key("period"), "must be from 1ms to 24h");
            return None;
        }
        Some(RateLimit {
            requests: requests? as u32,
            period,
            burst: burst?.unwrap_or(0) as u32,
            key: key?.unwrap_or(RateKey::Client),
            scope: scope.to_owned(),
            on_redis_down: down?.unwrap_or(OnRedisDown::Local),
        })
    }

    fn affinity(&mut self, at: &Ptr, v: &Value) -> Option<Affinity> {
        let m = self.object(at, v, &["cookie", "header", "clientAddress"])?;
        if m.len() != 1 {
            self.err(at, "needs exactly one of cookie, header and clientAddress");
            return None;
        }
        if let Some(v) = m.get("cookie") {
            return self
                .affinity_cookie(&at.key("cookie"), v)
                .map(Affinity::Cookie);
        }
        if let Some(v) = m.get("header") {
            let at = at.key("header");
            let s = self.string(&at, v)?;
            return match HeaderName::from_bytes(s.as_bytes()) {
                Ok(h) => Some(Affinity::Header(h)),
                Err(_) => {
                    self.err(&at, "must be an HTTP header name");
                    None
                }
            };
        }
        match m.get("clientAddress").and_then(Value::as_bool) {
            Some(true) => Some(Affinity::ClientAddress),
            _ => {
                self.err(&at.key("clientAddress"), "must be true");
                None
            }
        }
    }

    fn affinity_cookie(&mut self, at: &Ptr, v: &Value) -> Option<AffinityCookie> {
        let m = self.object(
            at,
            v,
            &["name", "ttl", "path", "sameSite", "secure", "httpOnly"],
        )?;
        let token = |s: &str| !s.is_empty() && s.bytes().all(super::is_tchar);
        let name = self.optional(at, m, "name", |cx, at, v| {
            let s = cx.string(at, v)?;
            if !token(s) {
                cx.err(at, "must be a cookie name (a token)");
                return None;
            }
            Some(s.to_owned())
        });
        let ttl = self.optional(at, m, "ttl", Self::duration);
        let path = self.optional(at, m, "path", |cx, at, v| {
            let s = cx.string(at, v)?;
            if !s.starts_with('/')
                || s.bytes()
                    .any(|b| b == b';' || b.is_ascii_control() || b == b' ')
            {
                cx.err(at, "must be a path starting with / (no ; or spaces)");
                return None;
            }
            Some(s.to_owned())
        });
        let same_site = self.optional(at, m, "sameSite", |cx, at, v| match cx.string(at, v)? {
            "Strict" => Some(SameSite::Strict),
            "Lax" => Some(SameSite::Lax),
            "None" => Some(SameSite::None),
            _ => {
                cx.err(at, "must be Strict, Lax or None");
                None
            }
        });
        let secure = self.optional(at, m, "secure", Self::boolean);
        let http_only = self.optional(at, m, "httpOnly", Self::boolean);
        let same_site = same_site?;
        let secure = secure?.unwrap_or(false);
        if same_site == Some(SameSite::None) && !secure {
            self.err(
                &at.key("sameSite"),
                "SameSite=None needs secure: true (browsers drop it otherwise)",
            );
            return None;
        }
        Some(AffinityCookie {
            name: name?.unwrap_or_else(|| "hipache_affinity".to_owned()),
            ttl: ttl?.filter(|d| !d.is_zero()),
            path: path?.unwrap_or_else(|| "/".to_owned()),
            same_site,
            secure,
            http_only: http_only?.unwrap_or(true),
        })
    }

    fn boolean(&mut self, at: &Ptr, v: &Value) -> Option<bool> {
        let b = v.as_bool();
        if b.is_none() {
            self.err(at, "must be true or false");
        }
        b
    }

    fn cors(&mut self, at: &Ptr, v: &Value) -> Option<Cors> {
        let m = self.object(
            at,
            v,
            &[
                "allowOrigins",
                "allowMethods",
                "allowHeaders",
                "exposeHeaders",
                "allowCredentials",
                "maxAge",
            ],
        )?;
        let origins = self.required(at, m, "allowOrigins").and_then(|v| {
            self.strings(
                &at.key("allowOrigins"),
                v,
                is_origin_pattern,
                "must be *, scheme://host[:port] or scheme://*.domain",
            )
        });
        let methods = self.optional(at, m, "allowMethods", |cx, at, v| {
            cx.strings(
                at,
                v,
                |s| s == "*" || (!s.is_empty() && s.bytes().all(super::is_tchar)),
                "must be an HTTP method or *",
            )
        });
        let header_list = |cx: &mut Self, at: &Ptr, v: &Value| {
            cx.strings(
                at,
                v,
                |s| s == "*" || HeaderName::from_bytes(s.as_bytes()).is_ok(),
                "must be a header name or *",
            )
        };
        let allow_headers = self.optional(at, m, "allowHeaders", header_list);
        let expose_headers = self.optional(at, m, "exposeHeaders", header_list);
        let credentials = self.optional(at, m, "allowCredentials", Self::boolean);
        let max_age = self.optional(at, m, "maxAge", |cx, at, v| {
            cx.uint(at, v, 0..=86_400 * 365)
        });
        Some(Cors {
            allow_origins: origins?,
            allow_methods: methods?.unwrap_or_default(),
            allow_headers: allow_headers?.unwrap_or_default(),
            expose_headers: expose_headers?.unwrap_or_default(),
            allow_credentials: credentials?.unwrap_or(false),
            max_age: max_age?,
        })
    }

    fn strings(
        &mut self,
        at: &Ptr,
        v: &Value,
        valid: impl Fn(&str) -> bool,
        what: &str,
    ) -> Option<Vec<String>> {
        let list = self.array(at, v, 256)?;
        let items: Vec<Option<String>> = list
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let at = at.at(i);
                let s = self.string(&at, v)?;
                if !valid(s) {
                    self.err(&at, what);
                    return None;
                }
                Some(s.to_owned())
            })
            .collect();
        items.into_iter().collect()
    }

    fn hsts(&mut self, at: &Ptr, v: &Value) -> Option<Hsts> {
        let m = self.object(at, v, &["maxAge", "includeSubDomains", "preload"])?;
        let max_age = self
            .required(at, m, "maxAge")
            .and_then(|v| self.uint(&at.key("maxAge"), v, 0..=u64::from(u32::MAX)));
        let sub = self.optional(at, m, "includeSubDomains", Self::boolean);
        let preload = self.optional(at, m, "preload", Self::boolean);
        Some(Hsts {
            max_age: max_age?,
            include_subdomains: sub?.unwrap_or(false),
            preload: preload?.unwrap_or(false),
        })
    }

    fn error_pages(&mut self, at: &Ptr, v: &Value) -> Option<Vec<(u16, Arc<str>)>> {
        let Some(m): Option<&Map<String, Value>> = v.as_object() else {
            self.err(
                at,
                "must be an object of pages by status (\"503\": \"<html>…\")",
            );
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        for (k, v) in m {
            let at = at.key(k);
            let digits = k.len() == 3 && k.bytes().all(|b| b.is_ascii_digit());
            let status = digits
                .then(|| k.parse::<u16>().ok())
                .flatten()
                .filter(|s| (400..=599).contains(s));
            let page = self.string(&at, v);
            match (status, page) {
                (Some(s), Some(p)) if p.len() <= 256 << 10 => out.push((s, Arc::from(p))),
                (Some(_), Some(_)) => {
                    self.err(&at, "at most 256 KiB");
                    ok = false;
                }
                (None, _) => {
                    self.err(&at, "must be keyed by a status from 400 to 599");
                    ok = false;
                }
                _ => ok = false,
            }
        }
        ok.then_some(out)
    }
}

/// `*`, `scheme://host[:port]` or `scheme://*.domain[:port]`.
fn is_origin_pattern(s: &str) -> bool {
    if s == "*" {
        return true;
    }
    let Some((scheme, host)) = s.split_once("://") else {
        return false;
    };
    let host = host.strip_prefix("*.").unwrap_or(host);
    !scheme.is_empty()
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        && !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
}

#[cfg(test)]
mod tests {
    use crate::routes::decode;
    use serde_json::json;

    fn rule_policies(p: serde_json::Value) -> Result<crate::routes::RouteDocument, Vec<String>> {
        let doc = json!({ "id": "t", "rules": [{ "policies": p }] });
        decode(doc.to_string().as_bytes()).map_err(|e| e.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn every_policy_decodes() {
        let d = rule_policies(json!({
            "ipAllowList": ["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"],
            "ipDenyList": ["10.1.0.0/16"],
            "basicAuth": { "realm": "Staff", "users": ["alice:$2y$05$abcdefghijklmnopqrstuu"] },
            "forwardAuth": { "url": "http://auth:4180/oauth2/auth", "responseHeaders": ["x-auth-request-user"], "signIn": "https://auth.example.com/oauth2/start" },
            "rateLimit": { "requests": 10, "period": "1s", "burst": 5 },
            "affinity": { "cookie": { "name": "route", "ttl": "1h", "sameSite": "Lax", "secure": true } },
            "cors": { "allowOrigins": ["https://*.example.com"], "allowCredentials": true, "maxAge": 600 },
            "hsts": { "maxAge": 31536000, "includeSubDomains": true },
            "securityHeaders": [{ "name": "X-Frame-Options", "value": "DENY" }],
            "errorPages": { "503": "<h1>down</h1>" }
        }))
        .expect("valid");
        let p = &d.rules[0].policies;
        assert_eq!(p.ip_allow.as_ref().map(|l| l.len()), Some(3));
        assert_eq!(
            p.basic_auth.as_ref().map(|b| b.realm.as_str()),
            Some("Staff")
        );
        let fa = p.forward_auth.as_ref().expect("forward auth");
        assert_eq!(
            (fa.target.as_str(), fa.backend.port),
            ("/oauth2/auth", 4180)
        );
        assert_eq!(
            fa.request_headers.len(),
            2,
            "cookie and authorization by default"
        );
        let rl = p.rate_limit.as_ref().expect("rate limit");
        assert_eq!(
            (rl.requests, rl.burst, rl.scope.as_str()),
            (10, 5, "rule:#0")
        );
        assert!(p.error_page(503).is_some() && p.error_page(502).is_none());
        assert_eq!(
            p.hsts.map(|h| h.header_value()).as_deref(),
            Some("max-age=31536000; includeSubDomains")
        );
    }

    #[test]
    fn host_policies_apply_to_every_rule_and_rules_replace_them() {
        let doc = json!({
            "id": "t",
            "policies": { "ipAllowList": ["10.0.0.0/8"], "rateLimit": { "requests": 5 } },
            "rules": [
                { "name": "open", "policies": { "ipAllowList": ["0.0.0.0/0", "::/0"] } },
                { "policies": { "rateLimit": { "requests": 1 } } },
                {}
            ]
        });
        let d = decode(doc.to_string().as_bytes()).expect("valid");
        let scopes: Vec<String> = d
            .rules
            .iter()
            .map(|r| r.policies.rate_limit.as_ref().expect("limit").scope.clone())
            .collect();
        assert_eq!(scopes, ["host", "rule:#1", "host"]);
        assert_eq!(
            d.rules[0].policies.ip_allow.as_ref().map(|l| l.len()),
            Some(2)
        );
        assert_eq!(
            d.rules[2].policies.ip_allow.as_ref().map(|l| l.len()),
            Some(1)
        );
    }

    #[test]
    fn bad_policies_are_refused_with_their_pointer() {
        let cases = [
            (
                json!({ "ipAllowList": ["10.0.0.0/33"] }),
                "/rules/0/policies/ipAllowList/0: must be an IP address",
            ),
            (
                json!({ "basicAuth": { "users": ["alice:secret"] } }),
                "/rules/0/policies/basicAuth/users/0: must be user:hash",
            ),
            (
                json!({ "forwardAuth": { "url": "auth:4180" } }),
                "/rules/0/policies/forwardAuth/url: backend URL must start with http",
            ),
            (
                json!({ "rateLimit": { "requests": 0 } }),
                "/rules/0/policies/rateLimit/requests: must be an integer from 1",
            ),
            (
                json!({ "rateLimit": { "requests": 1, "onRedisDown": "open" } }),
                "/rules/0/policies/rateLimit/onRedisDown: must be local",
            ),
            (
                json!({ "affinity": { "cookie": {}, "header": "x" } }),
                "/rules/0/policies/affinity: needs exactly one",
            ),
            (
                json!({ "affinity": { "cookie": { "sameSite": "None" } } }),
                "/rules/0/policies/affinity/cookie/sameSite: SameSite=None needs secure",
            ),
            (
                json!({ "cors": { "allowOrigins": ["example.com"] } }),
                "/rules/0/policies/cors/allowOrigins/0: must be *",
            ),
            (
                json!({ "errorPages": { "200": "x" } }),
                "/rules/0/policies/errorPages/200: must be keyed by a status",
            ),
            (
                json!({ "geoBlock": {} }),
                "/rules/0/policies/geoBlock: unknown field",
            ),
        ];
        for (p, want) in cases {
            let e = rule_policies(p.clone()).expect_err("refused");
            assert!(
                e.iter().any(|g| g.starts_with(want)),
                "{p}: {e:#?} lacks {want:?}"
            );
        }
        let e = rule_policies(json!({ "basicAuth": { "users": ["alice:hunter2"] } }))
            .expect_err("refused");
        assert!(
            e.iter().all(|m| !m.contains("hunter2")),
            "a password is never repeated: {e:?}"
        );
    }
}
