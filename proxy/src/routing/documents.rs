//! Route documents as this proxy serves them: decoded once per change of
//! their bytes, refused whole when they do not validate.
//!
//! In strict mode every lookup reads the document again; decoding it (and
//! compiling its regular expressions) on every request would cost more
//! than the read. So the decoded form is kept per frontend host with the
//! bytes it came from, and reused while Redis returns the same bytes: a
//! comparison of a few kilobytes instead of a parse. The same keeps a
//! refused document to one log line and one count per change, however
//! many requests it answers with 503.

use std::collections::HashMap;
use std::sync::Arc;

use hipache_schema::routes::{self, DocError, RouteDocument};
use parking_lot::RwLock;

use super::route::Table;
use crate::metrics::Metrics;

/// Documents remembered at most; past this an arbitrary tenth is
/// forgotten (and decoded again when next read).
const CAPACITY: usize = 100_000;

/// Decodes a document: every error, at its JSON pointer.
pub fn compile(json: &[u8]) -> Result<RouteDocument, Vec<DocError>> {
    routes::decode(json)
}

/// What a refused document's host answers with: the first error, and how
/// many more there are (`hipache routes check` lists them all).
fn summary(errors: &[DocError]) -> Arc<str> {
    let first = errors.first().map(ToString::to_string).unwrap_or_default();
    // It goes out in `x-debug-error`: printable ASCII only.
    let first: String = first
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    match errors.len() {
        0 | 1 => format!("route document refused: {first}"),
        n => format!("route document refused: {first} (and {} more)", n - 1),
    }
    .into()
}

struct Known {
    json: Box<[u8]>,
    table: Result<Table, Arc<str>>,
}

/// Decoded documents by frontend host.
pub struct Documents {
    known: RwLock<HashMap<String, Known>>,
    metrics: Arc<Metrics>,
}

impl Documents {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            known: RwLock::default(),
            metrics,
        }
    }

    /// The routes of `host`'s document `json`: the decoded form when the
    /// bytes are those seen last, else decoded now (logged and counted
    /// when refused).
    pub fn table(&self, host: &str, json: &[u8]) -> Result<Table, Arc<str>> {
        if let Some(k) = self.known.read().get(host) {
            if *k.json == *json {
                return k.table.clone();
            }
        }
        let table = match compile(json) {
            Ok(doc) => {
                tracing::info!(frontend = host, id = %doc.id, rules = doc.rules.len(), "route document loaded");
                Ok(Table::Document(Arc::new(doc)))
            }
            Err(errors) => {
                let why = summary(&errors);
                tracing::error!(frontend = host, errors = errors.len(), error = %why, "route document refused: its host answers 503 until it is fixed");
                self.metrics.document_errors.inc();
                Err(why)
            }
        };
        let mut known = self.known.write();
        if known.len() >= CAPACITY && !known.contains_key(host) {
            let drop: Vec<String> = known.keys().take(CAPACITY / 10).cloned().collect();
            for k in drop {
                known.remove(&k);
            }
        }
        known.insert(
            host.to_owned(),
            Known {
                json: json.into(),
                table: table.clone(),
            },
        );
        table
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoded_once_per_change_and_refusals_counted_once() {
        let metrics = Arc::new(Metrics::new(0));
        let docs = Documents::new(metrics.clone());
        let good = br#"{"id":"a","rules":[]}"#;
        let bad = br#"{"id":"a"}"#;
        let first = docs.table("a.com", good).expect("valid");
        let again = docs.table("a.com", good).expect("valid");
        match (first, again) {
            (Table::Document(x), Table::Document(y)) => assert!(Arc::ptr_eq(&x, &y), "reused"),
            _ => panic!("not documents"),
        }
        for _ in 0..3 {
            let e = docs.table("a.com", bad).expect_err("refused");
            assert_eq!(&*e, "route document refused: /rules: required");
        }
        assert_eq!(metrics.document_errors.get(), 1);
        assert!(
            docs.table("a.com", good).is_ok(),
            "fixing the document fixes the host"
        );
    }

    #[test]
    fn every_protocol_of_the_model_is_served() {
        let doc = compile(
            br#"{"id":"a","rules":[{"protocol":"grpc"},{"protocol":"h2"},{"protocol":"h2c"},{"protocol":"http/1.1"}]}"#,
        )
        .expect("served");
        assert_eq!(doc.rules.len(), 4);
        let e = compile(br#"{"id":"a","rules":[{"protocol":"spdy"}]}"#).expect_err("refused");
        assert_eq!(e[0].pointer, "/rules/0/protocol");
    }
}
