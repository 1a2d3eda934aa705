//! docs/metrics.md is true: its tables list exactly the families of
//! `hipache::metrics::names::ALL`, with the types, label names and label
//! values a running proxy's `/metrics` really has, and exactly the syncer's
//! `NAMES` (read from syncer/src/metrics.rs).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use hipache::metrics::names;
use hipache_tests::backend::Backend;
use hipache_tests::client::get;
use hipache_tests::metrics::{scrape, Scrape};
use hipache_tests::proxy::TestProxy;
use hipache_tests::redis::RedisServer;
use http::{Method, StatusCode};
use serde_json::json;

const DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/metrics.md");
const SYNCER_METRICS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../syncer/src/metrics.rs");
/// What the `Exported` column says of families on every scrape.
const ALWAYS: &str = "always";
/// Label rows whose values are exactly the listed ones.
const CLOSED_SET: &str = "this list";

/// One row of a Markdown table: column header to cell text.
type Row = BTreeMap<String, String>;

fn doc_text() -> String {
    std::fs::read_to_string(DOC).unwrap_or_else(|e| panic!("read {DOC}: {e}"))
}

/// The first table after the line `heading`.
fn table_after(text: &str, heading: &str) -> Vec<Row> {
    let mut lines = text.lines().skip_while(|l| l.trim() != heading);
    assert!(lines.next().is_some(), "{DOC} has no {heading:?} section");
    let mut table = lines
        .skip_while(|l| !l.trim_start().starts_with('|'))
        .take_while(|l| l.trim_start().starts_with('|'));
    let header = cells(table.next().expect("a table header"));
    let rule = table.next().expect("a table rule");
    assert!(rule.contains("---"), "second line of a table is its rule");
    table
        .map(|line| {
            let row = cells(line);
            assert_eq!(row.len(), header.len(), "cells of {line:?}");
            header.iter().cloned().zip(row).collect()
        })
        .collect()
}

fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    inner.split('|').map(|c| c.trim().to_owned()).collect()
}

/// The `code` spans of a cell, in order.
fn code_spans(cell: &str) -> Vec<String> {
    cell.split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s.to_owned())
        .collect()
}

/// A documented family.
#[derive(Debug, Clone)]
struct Family {
    name: String,
    kind: String,
    labels: BTreeSet<String>,
    exported: String,
}

fn families(heading: &str) -> Vec<Family> {
    table_after(&doc_text(), heading)
        .into_iter()
        .map(|row| {
            let name = code_spans(&row["Metric"])
                .into_iter()
                .next()
                .unwrap_or_else(|| panic!("a `metric name` in {row:?}"));
            Family {
                name,
                kind: row["Type"].clone(),
                labels: code_spans(&row["Labels"]).into_iter().collect(),
                exported: row.get("Exported").cloned().unwrap_or_default(),
            }
        })
        .collect()
}

fn proxy_families() -> Vec<Family> {
    families("## Proxy metrics")
}

/// The proxy's families and the process's own, as documented.
fn exported_families() -> Vec<Family> {
    let mut all = proxy_families();
    all.extend(families("## Process metrics"));
    all
}

/// Label name to its closed value set (rows bounded by "this list").
fn closed_label_values() -> BTreeMap<String, BTreeSet<String>> {
    table_after(&doc_text(), "## Labels")
        .into_iter()
        .filter(|row| row["Bounded by"] == CLOSED_SET)
        .map(|row| {
            let label = code_spans(&row["Label"]).remove(0);
            (label, code_spans(&row["Values"]).into_iter().collect())
        })
        .collect()
}

/// The number in "whatever the traffic: N series".
fn documented_series_count() -> usize {
    let text = doc_text();
    let marker = "whatever the traffic: ";
    let at = text
        .find(marker)
        .unwrap_or_else(|| panic!("{DOC} states the series count after {marker:?}"));
    text[at + marker.len()..]
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a number of series")
}

/// Checks a scrape against the documented families: every family in it is
/// documented with the same TYPE, and its series carry exactly the
/// documented label names, with values from the closed sets.
fn assert_scrape_matches_docs(scrape: &Scrape, documented: &[Family]) {
    let by_name: BTreeMap<&str, &Family> =
        documented.iter().map(|f| (f.name.as_str(), f)).collect();
    for (name, kind) in &scrape.types {
        let family = by_name
            .get(name.as_str())
            .unwrap_or_else(|| panic!("{name} is exported but not documented in {DOC}"));
        assert_eq!(&family.kind, kind, "TYPE of {name} in {DOC}");
    }
    let closed = closed_label_values();
    let mut labels_seen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for sample in &scrape.samples {
        let family = scrape
            .family_of(&sample.name)
            .unwrap_or_else(|| panic!("sample {} has no # TYPE family", sample.name));
        let names: BTreeSet<String> = sample
            .labels
            .keys()
            .filter(|k| *k != "le")
            .cloned()
            .collect();
        assert_eq!(
            names,
            by_name[family.as_str()].labels,
            "label names of {} (documented in {DOC})",
            sample.name
        );
        for (label, value) in &sample.labels {
            labels_seen
                .entry(label.clone())
                .or_default()
                .insert(value.clone());
            if let Some(allowed) = closed.get(label) {
                assert!(
                    allowed.contains(value),
                    "{}{{{label}=\"{value}\"}}: value not among {allowed:?} in {DOC}",
                    sample.name
                );
            }
        }
    }
    for label in labels_seen.keys().filter(|l| *l != "le") {
        assert!(
            closed.contains_key(label)
                || ["frontend", "version", "certificate"].contains(&label.as_str()),
            "label {label} is not in the Labels table of {DOC}"
        );
    }
}

#[test]
fn docs_list_exactly_names_all_in_order() {
    let documented: Vec<String> = proxy_families().into_iter().map(|f| f.name).collect();
    let all: Vec<String> = names::ALL.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        documented, all,
        "the Proxy metrics table of {DOC} lists names::ALL, in its order"
    );
    let process: Vec<String> = families("## Process metrics")
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert_eq!(
        process,
        names::PROCESS,
        "the Process metrics table of {DOC} lists names::PROCESS, in its order"
    );
}

#[test]
fn names_follow_the_conventions() {
    for family in proxy_families()
        .into_iter()
        .chain(families("## Syncer metrics"))
    {
        let name = &family.name;
        assert!(name.starts_with("hipache_"), "{name}: prefix hipache_");
        match family.kind.as_str() {
            "counter" => assert!(name.ends_with("_total"), "counter {name} ends in _total"),
            "histogram" => assert!(name.ends_with("_seconds"), "histogram {name} is in seconds"),
            "gauge" => assert!(
                !name.ends_with("_total"),
                "gauge {name} does not end in _total"
            ),
            other => panic!("{name}: unknown type {other:?} in {DOC}"),
        }
    }
}

#[test]
fn docs_match_the_registry_with_every_series_touched() {
    // The proxy's own registry with per-frontend series on and one request
    // counted: every family of names::ALL is in the exposition.
    let m = hipache::metrics::Metrics::new(3);
    m.request(
        StatusCode::OK,
        &Method::GET,
        Duration::from_millis(1),
        Some("app"),
    );
    m.set_certificate_expirations(&[("app.test".to_owned(), 2_000_000_000)]);
    let scrape = Scrape::parse(&m.render());
    let documented = exported_families();
    assert_eq!(
        scrape.families(),
        documented.iter().map(|f| f.name.clone()).collect(),
        "families of the registry and of {DOC}"
    );
    assert_scrape_matches_docs(&scrape, &documented);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_proxy_serves_the_documented_families() {
    let redis = RedisServer::start();
    let proxy = TestProxy::start_with_admin(&redis.url(), json!({})).await;
    let documented = exported_families();
    let always: BTreeSet<String> = documented
        .iter()
        .filter(|f| f.exported == ALWAYS)
        .map(|f| f.name.clone())
        .collect();
    let optional: Vec<&Family> = documented.iter().filter(|f| f.exported != ALWAYS).collect();
    assert_eq!(
        optional.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
        [names::FRONTEND_REQUESTS, names::TLS_CERT_EXPIRY],
        "only the per-frontend and the certificate families are optional"
    );
    assert!(
        optional[0].exported.contains("metricsPerFrontend"),
        "{DOC} says which option enables {}",
        optional[0].name
    );
    assert!(
        optional[1].exported.contains("HTTPS listener"),
        "{DOC} says when {} is exported",
        optional[1].name
    );

    let fresh = scrape(proxy.admin_addr()).await;
    assert_eq!(
        fresh.families(),
        always,
        "a fresh proxy exports exactly the families documented as `always`"
    );
    assert_scrape_matches_docs(&fresh, &documented);
    assert_eq!(
        fresh.series_count(),
        documented_series_count(),
        "series count stated in {DOC}"
    );

    // Traffic of every kind changes values, not families or series.
    let backend = Backend::start("app").await;
    redis
        .rpush_frontend("app.test", "app", &[backend.url()])
        .await;
    assert_eq!(get(proxy.addr(), "app.test", "/x").await.status, 200);
    assert_eq!(get(proxy.addr(), "nowhere.test", "/").await.status, 400);
    let after = scrape(proxy.admin_addr()).await;
    assert_eq!(after.families(), always);
    assert_eq!(after.series(), fresh.series());
    assert_scrape_matches_docs(&after, &documented);
    assert!(!after.text.contains(names::FRONTEND_REQUESTS));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_frontend_family_appears_only_when_enabled() {
    let redis = RedisServer::start();
    let proxy = TestProxy::start_with_admin(&redis.url(), json!({"metricsPerFrontend": 2})).await;
    let backend = Backend::start("app").await;
    redis
        .rpush_frontend("app.test", "app", &[backend.url()])
        .await;
    assert_eq!(get(proxy.addr(), "app.test", "/").await.status, 200);
    let s = scrape(proxy.admin_addr()).await;
    assert_eq!(
        s.types.get(names::FRONTEND_REQUESTS).map(String::as_str),
        Some("counter")
    );
    assert_eq!(
        s.value(
            names::FRONTEND_REQUESTS,
            &[("frontend", "app"), ("class", "2xx")]
        ),
        1.0
    );
    let documented: Vec<Family> = exported_families()
        .into_iter()
        .filter(|f| f.name != names::TLS_CERT_EXPIRY)
        .collect();
    assert_eq!(
        s.families(),
        documented.iter().map(|f| f.name.clone()).collect(),
        "with metricsPerFrontend every documented family but the certificates' (no HTTPS listener) is exported"
    );
    assert_scrape_matches_docs(&s, &documented);
}

/// The string literals of `pub const NAMES` in syncer/src/metrics.rs.

#[test]
fn syncer_section_lists_exactly_the_syncer_names() {
    let documented: BTreeSet<String> = families("## Syncer metrics")
        .into_iter()
        .map(|f| f.name)
        .collect();
    let exported: BTreeSet<String> = hipache_tests::metrics::syncer_names().into_iter().collect();
    assert!(!exported.is_empty(), "NAMES parsed from {SYNCER_METRICS}");
    assert_eq!(
        documented, exported,
        "the Syncer metrics table of {DOC} and NAMES in {SYNCER_METRICS}"
    );
}
