//! The reading commands: `list`, `get`, `dead`, `export`; readable tables
//! by default, one JSON document with `--json`.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::redis::{host, HostState, Store};
use super::ToolError;
use crate::cli::{Format, Output};

/// Prints rows under a header, each column as wide as its widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// The dead positions of a state, as numbers.
fn dead_positions(state: &HostState) -> Vec<usize> {
    let mut p: Vec<usize> = hipache_schema::dead::positions(&state.dead).collect();
    p.sort_unstable();
    p.dedup();
    p
}

/// The backend elements of a host: its list's, else its document's.
fn backend_elements(state: &HostState) -> Vec<String> {
    if let Some(list) = &state.list {
        return list.iter().skip(1).cloned().collect();
    }
    state
        .document
        .as_deref()
        .and_then(|d| crate::routing::documents::compile(d.as_bytes()).ok())
        .map(|doc| doc.backends.iter().map(|b| b.raw.clone()).collect())
        .unwrap_or_default()
}

fn host_json(host: &str, state: &HostState) -> Value {
    let dead = dead_positions(state);
    let backends: Vec<Value> = backend_elements(state)
        .iter()
        .enumerate()
        .map(|(i, b)| json!({"position": i, "backend": b, "dead": dead.contains(&i)}))
        .collect();
    let document = state
        .document
        .as_deref()
        .map(|d| serde_json::from_str::<Value>(d).unwrap_or(Value::String(d.to_owned())));
    json!({
        "host": host,
        "identifier": state.owner(),
        "kind": if state.document.is_some() { "document" } else { "list" },
        "backends": backends,
        "document": document,
        "dead": {"positions": dead, "ttl_seconds": state.dead_ttl},
    })
}

/// `routes list [PATTERN]`.
pub async fn list(store: &mut Store, pattern: Option<&str>, out: Output) -> Result<(), ToolError> {
    let glob = pattern.unwrap_or("*");
    let hosts = store.hosts(glob).await?;
    let states = store.states(&hosts).await?;
    if out.json {
        let all: Vec<Value> = hosts
            .iter()
            .zip(&states)
            .map(|(h, s)| host_json(h, s))
            .collect();
        print_json(&Value::Array(all));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = hosts
        .iter()
        .zip(&states)
        .map(|(h, s)| {
            vec![
                h.clone(),
                s.owner().unwrap_or_default(),
                if s.document.is_some() {
                    "document"
                } else {
                    "list"
                }
                .to_owned(),
                backend_elements(s).len().to_string(),
                dead_positions(s).len().to_string(),
            ]
        })
        .collect();
    table(&["HOST", "IDENTIFIER", "KIND", "BACKENDS", "DEAD"], &rows);
    Ok(())
}

/// `routes get HOST`.
pub async fn get(store: &mut Store, raw: &str, out: Output) -> Result<(), ToolError> {
    let host = host(raw)?;
    let state = store.state(&host).await?;
    if !state.exists() {
        return Err(ToolError::Refused(format!("no frontend {host}")));
    }
    if out.json {
        print_json(&host_json(&host, &state));
        return Ok(());
    }
    println!("host:        {host}");
    println!("identifier:  {}", state.owner().unwrap_or_default());
    backends_table(&state);
    if let Some(doc) = &state.document {
        println!("route document (routes:{host}):");
        let pretty = serde_json::from_str::<Value>(doc)
            .map(|v| serde_json::to_string_pretty(&v).unwrap_or_default())
            .unwrap_or_else(|_| doc.clone());
        for line in pretty.lines() {
            println!("  {line}");
        }
        if let Err(errors) = crate::routing::documents::compile(doc.as_bytes()) {
            println!("  refused by the proxy (its host answers 503):");
            for e in errors {
                println!("    {e}");
            }
        }
    }
    Ok(())
}

fn backends_table(state: &HostState) {
    let dead = dead_positions(state);
    let rows: Vec<Vec<String>> = backend_elements(state)
        .into_iter()
        .enumerate()
        .map(|(i, b)| {
            let status = match (dead.contains(&i), state.dead_ttl) {
                (true, Some(ttl)) => format!("dead ({ttl} s left)"),
                (true, None) => "dead".to_owned(),
                (false, _) => "live".to_owned(),
            };
            vec![i.to_string(), b, status]
        })
        .collect();
    table(&["POSITION", "BACKEND", "STATE"], &rows);
}

/// `routes dead HOST`.
pub async fn dead(store: &mut Store, raw: &str, out: Output) -> Result<(), ToolError> {
    let host = host(raw)?;
    let state = store.state(&host).await?;
    if out.json {
        let v = host_json(&host, &state);
        print_json(&v["dead"]);
        return Ok(());
    }
    let positions = dead_positions(&state);
    if positions.is_empty() {
        println!("{host}: no backend marked dead");
        return Ok(());
    }
    let elements = backend_elements(&state);
    let ttl = state
        .dead_ttl
        .map(|t| format!("{t} s"))
        .unwrap_or_else(|| "no expiry".to_owned());
    let rows: Vec<Vec<String>> = positions
        .iter()
        .map(|p| {
            vec![
                p.to_string(),
                elements
                    .get(*p)
                    .cloned()
                    .unwrap_or_else(|| "(no such backend)".to_owned()),
                ttl.clone(),
            ]
        })
        .collect();
    table(&["POSITION", "BACKEND", "EXPIRES IN"], &rows);
    Ok(())
}

/// The routes-file form of what Redis holds: `frontends` and `routes`.
pub async fn snapshot(store: &mut Store) -> Result<Value, ToolError> {
    let hosts = store.hosts("*").await?;
    let states = store.states(&hosts).await?;
    let mut frontends = BTreeMap::new();
    let mut routes = BTreeMap::new();
    for (h, s) in hosts.iter().zip(states) {
        if let Some(list) = s.list {
            frontends.insert(h.clone(), Value::from(list));
        }
        if let Some(doc) = s.document {
            let v = serde_json::from_str::<Value>(&doc).unwrap_or(Value::String(doc));
            routes.insert(h.clone(), v);
        }
    }
    Ok(json!({"frontends": frontends, "routes": routes}))
}

/// `routes export`.
pub async fn export(store: &mut Store, format: Format) -> Result<(), ToolError> {
    let v = snapshot(store).await?;
    match format {
        Format::Json => print_json(&v),
        Format::Yaml => {
            let text = serde_yaml::to_string(&v)
                .map_err(|e| ToolError::Failed(format!("cannot write YAML: {e}")))?;
            print!("# hipache routes export ({})\n{text}", store.url);
        }
    }
    Ok(())
}
