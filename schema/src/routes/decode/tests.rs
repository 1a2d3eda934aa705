use super::*;
use serde_json::json;

fn ok(v: Value) -> RouteDocument {
    decode(v.to_string().as_bytes()).unwrap_or_else(|e| panic!("{e:?}"))
}

/// The errors of a document, as `pointer: message` lines.
fn errors(v: Value) -> Vec<String> {
    match decode(v.to_string().as_bytes()) {
        Ok(_) => panic!("accepted: {v}"),
        Err(e) => e.iter().map(ToString::to_string).collect(),
    }
}

fn with_rule(rule: Value) -> Value {
    json!({ "id": "t", "rules": [rule] })
}

#[test]
fn the_documented_example_decodes() {
    let text = include_str!("../../../../docs/routes.md");
    let start = text.find("```json\n").expect("example") + 8;
    let end = start + text[start..].find("```").expect("end");
    let d = decode(&text.as_bytes()[start..end]).expect("valid");
    assert_eq!(d.id, "k8s:shop/storefront");
    assert!(d.is_syncer_owned());
    assert_eq!(d.rules.len(), 4);
    assert_eq!(d.backends.len(), 4, "positions count every rule's backends");
    assert_eq!(d.backends[2].position, 2);
    let r1 = &d.rules[1];
    assert_eq!(
        d.rule_backends(r1).map(|(_, w)| w).collect::<Vec<_>>(),
        [90, 10]
    );
    assert_eq!(r1.timeouts.request, Some(Duration::from_secs(10)));
    assert_eq!(
        r1.retry.as_ref().map(|r| r.codes.clone()),
        Some(vec![502, 503])
    );
    let redirect = d.rules[2].filters.redirect.as_ref().expect("redirect");
    assert_eq!(redirect.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(d.rules[3].max_body_size, Some(1_048_576));
}

#[test]
fn every_error_is_listed_with_its_pointer() {
    let e = errors(json!({
        "id": "",
        "extra": 1,
        "rules": [
            { "matches": [{ "path": { "type": "Regex", "value": "/" } }] },
            { "backends": [{ "url": "ftp://x" }, { "weight": 2 }] },
            { "filters": [{ "type": "RequestRedirect", "statusCode": 300 }] },
            { "timeouts": { "request": "1s", "backendRequest": "2s" }, "retry": { "attempts": 11 } }
        ]
    }));
    let expected = [
        "/extra: unknown field",
        "/id: must not be empty",
        "/rules/0/matches/0/path/type: must be Exact",
        "/rules/1/backends/0/url: backend URL must start with http",
        "/rules/1/backends/1: needs exactly one of url and invalid",
        "/rules/2/filters/0/statusCode: must be 301",
        "/rules/3/timeouts/backendRequest: must not be longer than request",
        "/rules/3/retry/attempts: must be an integer from 0 to 10",
    ];
    assert_eq!(e.len(), expected.len(), "{e:#?}");
    for (got, want) in e.iter().zip(expected) {
        assert!(got.starts_with(want), "{got:?} should start with {want:?}");
    }
}

#[test]
fn not_json_and_wrong_shapes() {
    assert!(errors(json!([]))[0].starts_with("/: must be an object"));
    let e = decode(b"{\"id\": ").expect_err("not JSON");
    assert!(
        e[0].to_string().starts_with("/: not a JSON document"),
        "{e:?}"
    );
    assert_eq!(errors(json!({ "id": "t" })), ["/rules: required"]);
    assert!(errors(json!({ "id": "t", "rules": {} }))[0].starts_with("/rules: must be an array"));
    assert!(errors(json!({ "id": "t", "rules": [], "version": 2 }))[0]
        .starts_with("/version: unknown version"));
    assert!(decode(&vec![b' '; limits::DOCUMENT_BYTES + 1]).is_err());
}

#[test]
fn semantic_checks_schema_cannot_make() {
    let cases = [
        (
            json!({ "matches": [{ "path": { "type": "RegularExpression", "value": "(" } }] }),
            "/rules/0/matches/0/path/value: not a valid regular expression",
        ),
        (
            json!({ "matches": [{ "path": { "type": "Exact", "value": "/a" } }], "filters": [{ "type": "URLRewrite", "path": { "type": "ReplacePrefixMatch", "value": "/" } }] }),
            "/rules/0/filters/0/path/type: ReplacePrefixMatch needs",
        ),
        (
            json!({ "filters": [{ "type": "RequestHeaderModifier", "set": [{ "name": "a", "value": "1" }, { "name": "A", "value": "2" }] }] }),
            "/rules/0/filters/0/set/1/name: repeats",
        ),
        (
            json!({ "filters": [{ "type": "RequestHeaderModifier", "remove": ["Host"] }] }),
            "/rules/0/filters/0/remove/0: host cannot be changed",
        ),
        (
            json!({ "filters": [{ "type": "ResponseHeaderModifier", "add": [{ "name": "content-length", "value": "1" }] }] }),
            "/rules/0/filters/0/add/0/name: content-length cannot",
        ),
        (
            json!({ "filters": [{ "type": "URLRewrite", "hostname": "a" }, { "type": "RequestRedirect" }] }),
            "/rules/0/filters: a rule cannot have both",
        ),
        (
            json!({ "filters": [{ "type": "RequestHeaderModifier" }, { "type": "RequestHeaderModifier" }] }),
            "/rules/0/filters/1/type: a rule has at most one",
        ),
        (
            json!({ "matches": [{ "headers": [{ "name": "x", "value": "1" }, { "name": "X", "value": "2" }] }] }),
            "/rules/0/matches/0/headers/1/name: repeats",
        ),
        (
            json!({ "matches": [{ "path": { "value": "/a/../b" } }] }),
            "/rules/0/matches/0/path/value: must be a path",
        ),
        (
            json!({ "filters": [{ "type": "RequestMirror", "url": "http://m:80", "percent": 5, "fraction": { "numerator": 1 } }] }),
            "/rules/0/filters/0: percent and fraction",
        ),
        (
            json!({ "filters": [{ "type": "RequestMirror", "url": "http://m:80", "fraction": { "numerator": 3, "denominator": 2 } }] }),
            "/rules/0/filters/0/fraction/numerator: must not exceed",
        ),
        (
            json!({ "filters": [{ "type": "RequestRedirect", "hostname": "a.com:80" }] }),
            "/rules/0/filters/0/hostname: must be a host name",
        ),
        (
            json!({ "filters": [{ "type": "RequestHeaderModifier", "set": [{ "name": "x", "value": "a\u{1}b" }] }] }),
            "/rules/0/filters/0/set/0/value: must be an HTTP field value",
        ),
        (
            json!({ "policies": { "geoBlock": ["FR"] } }),
            "/rules/0/policies/geoBlock: unknown field",
        ),
        (
            json!({ "protocol": "spdy" }),
            "/rules/0/protocol: must be http/1.1",
        ),
        (
            json!({ "matches": [{ "method": "G ET" }] }),
            "/rules/0/matches/0/method: must be an HTTP method",
        ),
        (
            json!({ "backends": [{ "url": "http://a:80", "weight": 1_000_001 }] }),
            "/rules/0/backends/0/weight: must be an integer from 0 to 1000000",
        ),
        (
            json!({ "timeouts": { "request": "10 seconds" } }),
            "/rules/0/timeouts/request: must be a duration",
        ),
    ];
    for (rule, want) in cases {
        let e = errors(with_rule(rule.clone()));
        assert!(
            e.iter().any(|g| g.starts_with(want)),
            "{rule}: {e:#?} lacks {want:?}"
        );
    }
}

#[test]
fn backends_weights_and_invalid_ones() {
    let d = ok(with_rule(json!({ "backends": [
        { "url": "http://a:80", "weight": 0 },
        { "invalid": "Service shop/b not found", "weight": 3 },
        { "url": "https://c" }
    ] })));
    let got: Vec<(bool, u32)> = d
        .rule_backends(&d.rules[0])
        .map(|(b, w)| (b.url.is_ok(), w))
        .collect();
    assert_eq!(got, [(true, 0), (false, 3), (true, 1)]);
    assert_eq!(d.backends[1].url, Err(BackendUrlError::Declared));
    assert_eq!(d.backends[2].url.as_ref().map(|u| u.port), Ok(443));
}

#[test]
fn filters_decode_to_the_model() {
    let d = ok(with_rule(json!({
        "matches": [{ "path": { "value": "/p" } }],
        "filters": [
            { "type": "RequestHeaderModifier", "set": [{ "name": "X-Set", "value": "1" }], "add": [{ "name": "x-add", "value": "2" }], "remove": ["x-gone"] },
            { "type": "ResponseHeaderModifier", "remove": ["server"] },
            { "type": "URLRewrite", "hostname": "Internal.Example", "path": { "type": "ReplacePrefixMatch", "value": "/q" } },
            { "type": "RequestMirror", "url": "http://m:81", "fraction": { "numerator": 1, "denominator": 4 } },
            { "type": "RequestMirror", "url": "http://n:82" }
        ],
        "retry": { "codes": [503], "backoff": "50ms" },
        "protocol": "h2c"
    })));
    let r = &d.rules[0];
    let h = r.filters.request_headers.as_ref().expect("request headers");
    assert_eq!(h.set[0].0.as_str(), "x-set");
    assert_eq!(h.remove[0].as_str(), "x-gone");
    let rw = r.filters.rewrite.as_ref().expect("rewrite");
    assert_eq!(rw.hostname.as_deref(), Some("internal.example"));
    assert_eq!(rw.path, Some(PathModifier::Prefix("/q".into())));
    let m: Vec<(u32, u32)> = r
        .filters
        .mirrors
        .iter()
        .map(|m| (m.numerator, m.denominator))
        .collect();
    assert_eq!(m, [(1, 4), (100, 100)]);
    let retry = r.retry.as_ref().expect("retry");
    assert_eq!(
        (retry.attempts, retry.backoff_before(3)),
        (1, Duration::from_millis(200))
    );
    assert_eq!(
        r.protocol,
        Protocol::H2c,
        "the model holds every protocol; the proxy decides what it serves"
    );
    let mut headers = http::HeaderMap::new();
    headers.insert("x-gone", HeaderValue::from_static("a"));
    headers.insert("x-set", HeaderValue::from_static("old"));
    headers.insert("x-add", HeaderValue::from_static("1"));
    h.apply(&mut headers);
    assert!(!headers.contains_key("x-gone"));
    assert_eq!(headers["x-set"], "1");
    assert_eq!(headers.get_all("x-add").iter().count(), 2);
}

#[test]
fn zero_timeouts_disable() {
    let d = ok(with_rule(
        json!({ "timeouts": { "request": "0s", "backendRequest": "5s" } }),
    ));
    assert_eq!(d.rules[0].timeouts.request, None);
    assert_eq!(
        d.rules[0].timeouts.backend_request,
        Some(Duration::from_secs(5))
    );
}

#[test]
fn a_huge_regex_is_refused() {
    let e = errors(with_rule(
        json!({ "matches": [{ "path": { "type": "RegularExpression", "value": "/(a{1000}){1000}" } }] }),
    ));
    assert!(e[0].contains("not a valid regular expression"), "{e:?}");
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn decode_never_panics_on_near_documents(
            path in ".{0,12}", kind in "(Exact|PathPrefix|RegularExpression|x)",
            header in ".{0,8}", weight in any::<i64>(), url in ".{0,16}",
        ) {
            let v = json!({ "id": "t", "rules": [{
                "matches": [{ "path": { "type": kind, "value": path }, "headers": [{ "name": header, "value": header }] }],
                "backends": [{ "url": url, "weight": weight }],
                "filters": [{ "type": "URLRewrite", "path": { "type": "ReplacePrefixMatch", "value": path } }]
            }] });
            if let Ok(d) = decode(v.to_string().as_bytes()) {
                prop_assert_eq!(d.rules.len(), 1);
            }
        }
    }
}
