//! The proxy's `/metrics` as a user sees it: scraped over HTTP from the
//! admin listener and parsed from the Prometheus text format.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use crate::client::{Req, Resp};
use crate::wait::until;

/// Bound on one admin request.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);

/// One sample line: `name{labels} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// One scrape, parsed.
#[derive(Debug, Clone)]
pub struct Scrape {
    /// The exposition as served.
    pub text: String,
    /// `# TYPE` of every family: name to `counter`, `gauge`, `histogram`...
    pub types: BTreeMap<String, String>,
    pub samples: Vec<Sample>,
}

/// `GET path` on the admin listener.
pub async fn admin_get(admin: SocketAddr, path: &str) -> Resp {
    Req::get(&admin.to_string(), path)
        .timeout(ADMIN_TIMEOUT)
        .send(admin)
        .await
        .unwrap_or_else(|e| panic!("GET http://{admin}{path} failed: {e:#}"))
}

/// Scrapes `http://<admin>/metrics`; panics unless it answers 200 with the
/// Prometheus text content type.
pub async fn scrape(admin: SocketAddr) -> Scrape {
    let resp = admin_get(admin, "/metrics").await;
    assert_eq!(resp.status, 200, "/metrics answers 200: {}", resp.text());
    let content_type = resp.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "/metrics content type is the Prometheus text format, got {content_type:?}"
    );
    Scrape::parse(&resp.text())
}

/// Scrapes until `value` of the scrape satisfies `ok` (bounded by
/// `deadline`), and returns that scrape.
pub async fn scrape_until<F>(admin: SocketAddr, what: &str, deadline: Duration, ok: F) -> Scrape
where
    F: Fn(&Scrape) -> Result<(), String>,
{
    let ok = &ok;
    until(what, deadline, move || async move {
        let s = scrape(admin).await;
        ok(&s).map(|()| s)
    })
    .await
}

impl Scrape {
    /// Parses the text format (the subset the Rust `prometheus` crate
    /// writes: `# HELP`, `# TYPE`, samples without timestamps).
    pub fn parse(text: &str) -> Scrape {
        let mut types = BTreeMap::new();
        let mut samples = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut parts = rest.split_whitespace();
                let name = parts.next().expect("# TYPE has a name");
                let kind = parts.next().expect("# TYPE has a type");
                types.insert(name.to_owned(), kind.to_owned());
            } else if line.starts_with('#') || line.trim().is_empty() {
                continue;
            } else {
                samples.push(parse_sample(line));
            }
        }
        Scrape {
            text: text.to_owned(),
            types,
            samples,
        }
    }

    /// The family names (from `# TYPE` lines).
    pub fn families(&self) -> BTreeSet<String> {
        self.types.keys().cloned().collect()
    }

    /// Sum of the samples named `name` whose labels include all of
    /// `labels` (0 when none match: a counter not yet incremented).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|s| s.value).sum()
    }

    /// Whether at least one sample named `name` has all of `labels`.
    pub fn has(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        self.matching(name, labels).next().is_some()
    }

    /// Samples named `name` whose labels include all of `labels`.
    pub fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// `_count` of a histogram (with label filter).
    pub fn histogram_count(&self, family: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(&format!("{family}_count"), labels)
    }

    /// Every series (sample line) in the scrape.
    pub fn series_count(&self) -> usize {
        self.samples.len()
    }

    /// Series (name and labels) as sortable keys, to compare two scrapes.
    pub fn series(&self) -> BTreeSet<String> {
        self.samples
            .iter()
            .map(|s| format!("{}{:?}", s.name, s.labels))
            .collect()
    }

    /// The family a sample belongs to (`x_bucket`, `x_sum`, `x_count` of a
    /// histogram `x` belong to `x`).
    pub fn family_of(&self, sample_name: &str) -> Option<String> {
        if self.types.contains_key(sample_name) {
            return Some(sample_name.to_owned());
        }
        ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
            let base = sample_name.strip_suffix(suffix)?;
            (self.types.get(base).map(String::as_str) == Some("histogram")).then(|| base.to_owned())
        })
    }
}

/// `name{a="x",b="y"} 1.5` (label values may hold escaped quotes).
fn parse_sample(line: &str) -> Sample {
    let (name_end, mut labels) = match line.find('{') {
        Some(open) => {
            let mut labels = BTreeMap::new();
            let mut rest = &line[open + 1..];
            loop {
                rest = rest.trim_start_matches(',');
                if let Some(after) = rest.strip_prefix('}') {
                    rest = after;
                    break;
                }
                let eq = rest
                    .find("=\"")
                    .unwrap_or_else(|| panic!("label without value in {line:?}"));
                let key = rest[..eq].to_owned();
                let mut value = String::new();
                let mut chars = rest[eq + 2..].char_indices();
                let consumed = loop {
                    match chars.next() {
                        Some((_, '\\')) => match chars.next() {
                            Some((_, 'n')) => value.push('\n'),
                            Some((_, c)) => value.push(c),
                            None => panic!("unterminated label value in {line:?}"),
                        },
                        Some((i, '"')) => break i + 1,
                        Some((_, c)) => value.push(c),
                        None => panic!("unterminated label value in {line:?}"),
                    }
                };
                labels.insert(key, value);
                rest = &rest[eq + 2 + consumed..];
            }
            (open, (labels, rest))
        }
        None => {
            let space = line
                .find(' ')
                .unwrap_or_else(|| panic!("sample without value: {line:?}"));
            (space, (BTreeMap::new(), &line[space..]))
        }
    };
    let value_text = labels.1.split_whitespace().next().unwrap_or_default();
    let value = match value_text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v
            .parse()
            .unwrap_or_else(|_| panic!("sample value {v:?} in {line:?}")),
    };
    Sample {
        name: line[..name_end].to_owned(),
        labels: std::mem::take(&mut labels.0),
        value,
    }
}

/// The syncer's metric names: the string literals of `NAMES` in
/// syncer/src/metrics.rs (read as text: this crate does not link the
/// syncer).
pub fn syncer_names() -> Vec<String> {
    const SYNCER_METRICS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../syncer/src/metrics.rs");
    let text = std::fs::read_to_string(SYNCER_METRICS)
        .unwrap_or_else(|e| panic!("read {SYNCER_METRICS} (the syncer's metric names): {e}"));
    let start = text
        .find("pub const NAMES")
        .unwrap_or_else(|| panic!("{SYNCER_METRICS} defines `pub const NAMES`"));
    let body = &text[start..];
    let open = body.find("= &[").expect("NAMES = &[ ... ]") + 4;
    let close = body[open..].find("];").expect("NAMES ends with ];") + open;
    body[open..close]
        .split('"')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s.to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_text_format() {
        let s = Scrape::parse(
            "# HELP a_total A.\n# TYPE a_total counter\na_total{k=\"x\\\"y\",class=\"2xx\"} 3\n\
             # TYPE h_seconds histogram\nh_seconds_bucket{le=\"+Inf\"} 2\nh_seconds_sum 0.5\nh_seconds_count 2\ng 1\n",
        );
        assert_eq!(s.value("a_total", &[("k", "x\"y")]), 3.0);
        assert_eq!(s.value("a_total", &[("class", "2xx")]), 3.0);
        assert_eq!(s.histogram_count("h_seconds", &[]), 2.0);
        assert_eq!(
            s.family_of("h_seconds_bucket").as_deref(),
            Some("h_seconds")
        );
        assert_eq!(s.value("g", &[]), 1.0);
        assert_eq!(s.types["a_total"], "counter");
        assert_eq!(s.series_count(), 5);
    }
}
