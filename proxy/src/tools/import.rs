//! `routes import FILE` and `--watch`: Redis made to hold a routes file.
//!
//! The file is validated whole before anything is written (every host, every
//! backend element, every route document, as the proxy would read them).
//! Then each host's difference is planned against what Redis holds, printed,
//! and (with `--apply`) written in one transaction per host, planned again
//! on the state read under WATCH: a host edited meanwhile is never
//! overwritten unseen. A host owned elsewhere (the syncer's `k8s:`, or
//! another identifier than the file's) is refused unless `--force`.
//!
//! Deletions: `--prune` deletes the hosts Redis holds and the file does not
//! (never the syncer's without `--force`). `--watch` also deletes a host
//! removed from the file since the last pass, when Redis still holds it
//! under the identifier the file gave it: it was the file's.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use hipache_schema::routes_file::RoutesFile;
use serde_json::Value;

use super::redis::{check_backend, check_identifier, check_owner, host, Change, HostState, Store};
use super::ToolError;

/// How often `--watch` looks at its file.
pub const WATCH_POLL: Duration = Duration::from_millis(500);
/// How long `--watch` waits before trying a failed pass again.
const RETRY: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Mode {
    pub apply: bool,
    pub prune: bool,
    pub force: bool,
}

/// What the file wants for one host.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Wanted {
    pub list: Option<Vec<String>>,
    pub document: Option<Value>,
}

impl Wanted {
    fn identifier(&self) -> Option<String> {
        if let Some(id) = self.list.as_ref().and_then(|l| l.first()) {
            return Some(id.clone());
        }
        self.document
            .as_ref()?
            .get("id")?
            .as_str()
            .map(str::to_owned)
    }
}

/// Reads and validates a routes file: every error, one per line.
pub fn read(file: &Path) -> Result<BTreeMap<String, Wanted>, ToolError> {
    let (name, bytes) = super::check::read(file)
        .map_err(|e| ToolError::Failed(format!("{}: {e}", file.display())))?;
    let parsed: RoutesFile = serde_yaml::from_slice(&bytes)
        .map_err(|e| ToolError::Refused(format!("{name}: not a routes file: {e}")))?;
    let mut errors = Vec::new();
    let mut wanted: BTreeMap<String, Wanted> = BTreeMap::new();
    for (raw, list) in &parsed.frontends {
        let checked = host(raw).and_then(|h| {
            let id = list.first().map(String::as_str).unwrap_or("");
            check_identifier(id)?;
            list.iter().skip(1).try_for_each(|b| check_backend(b))?;
            Ok(h)
        });
        match checked {
            Ok(h) => wanted.entry(h).or_default().list = Some(list.clone()),
            Err(e) => errors.push(format!("frontends.{raw}: {}", e.message())),
        }
    }
    for (raw, doc) in &parsed.routes {
        let json = doc.to_string();
        let checked = host(raw).and_then(|h| {
            crate::routing::documents::compile(json.as_bytes())
                .map(|_| h)
                .map_err(|errs| {
                    let all: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
                    ToolError::Refused(all.join("; "))
                })
        });
        match checked {
            Ok(h) => wanted.entry(h).or_default().document = Some(doc.clone()),
            Err(e) => errors.push(format!("routes.{raw}: {}", e.message())),
        }
    }
    match errors.is_empty() {
        true => Ok(wanted),
        false => Err(ToolError::Refused(format!(
            "{name} does not validate, nothing written:\n  {}",
            errors.join("\n  ")
        ))),
    }
}

/// One host's step of a pass.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    Nothing,
    /// The change and the line that says it.
    Write(Change, String),
    Refuse(String),
}

fn same_document(current: Option<&str>, wanted: Option<&Value>) -> bool {
    match (current, wanted) {
        (None, None) => true,
        (Some(c), Some(w)) => serde_json::from_str::<Value>(c).is_ok_and(|c| &c == w),
        _ => false,
    }
}

fn show_list(list: &[String]) -> String {
    format!("[{}]", list.join(", "))
}

/// What to do for one host: `wanted` `None` means deleting it (a prune, or
/// a host removed from a watched file).
pub fn plan(host: &str, wanted: Option<&Wanted>, current: &HostState, force: bool) -> Plan {
    let Some(w) = wanted else {
        if !current.exists() {
            return Plan::Nothing;
        }
        return match check_owner(host, current, None, force) {
            Err(e) => Plan::Refuse(format!("! not deleted: {}", e.message())),
            Ok(()) => Plan::Write(
                Change {
                    list: Some(None),
                    document: Some(None),
                    clear_dead: true,
                },
                format!("- {host}"),
            ),
        };
    };
    let list_same = current.list == w.list;
    let doc_same = same_document(current.document.as_deref(), w.document.as_ref());
    if list_same && doc_same {
        return Plan::Nothing;
    }
    if let Err(e) = check_owner(host, current, w.identifier().as_deref(), force) {
        return Plan::Refuse(format!("! {}", e.message()));
    }
    let mut parts = Vec::new();
    if !list_same {
        parts.push(match (&current.list, &w.list) {
            (None, Some(l)) => format!("list {}", show_list(l)),
            (Some(c), Some(l)) => format!("list {} -> {}", show_list(c), show_list(l)),
            (Some(_), None) => "list deleted".to_owned(),
            (None, None) => String::new(),
        });
    }
    if !doc_same {
        parts.push(match (&current.document, &w.document) {
            (None, Some(_)) => "route document".to_owned(),
            (Some(_), Some(_)) => "route document changed".to_owned(),
            _ => "route document deleted".to_owned(),
        });
    }
    let sign = if current.exists() { "~" } else { "+" };
    Plan::Write(
        Change {
            list: (!list_same).then(|| w.list.clone()),
            document: (!doc_same).then(|| w.document.as_ref().map(Value::to_string)),
            // Positions may now name other backends.
            clear_dead: !list_same,
        },
        format!("{sign} {host}: {}", parts.join(", ")),
    )
}

/// One pass over `wanted` (and the deletions `gone`: hosts to delete when
/// Redis still holds them under the given identifier). `Ok(true)`: every
/// host done; `Ok(false)`: some refused.
async fn pass(
    store: &mut Store,
    wanted: &BTreeMap<String, Wanted>,
    gone: &BTreeMap<String, String>,
    mode: Mode,
) -> Result<bool, ToolError> {
    let mut hosts: Vec<String> = wanted.keys().cloned().collect();
    if mode.prune {
        hosts.extend(store.hosts("*").await?);
    }
    hosts.extend(gone.keys().cloned());
    hosts.sort();
    hosts.dedup();
    let states = store.states(&hosts).await?;
    let decide = |h: &str, state: &HostState| match wanted.get(h) {
        Some(w) => plan(h, Some(w), state, mode.force),
        None if mode.prune => plan(h, None, state, mode.force),
        None => match gone.get(h) {
            Some(id) if state.owner().as_deref() == Some(id) => plan(h, None, state, true),
            _ => Plan::Nothing,
        },
    };
    let (mut changes, mut refused) = (0, 0);
    for (h, state) in hosts.iter().zip(&states) {
        match decide(h, state) {
            Plan::Nothing => {}
            Plan::Refuse(line) => {
                refused += 1;
                println!("{line}");
            }
            Plan::Write(_, line) if !mode.apply => {
                changes += 1;
                println!("{line}");
            }
            Plan::Write(..) => {
                // Planned again on the state read under WATCH.
                let outcome = store
                    .update(h, |fresh| match decide(h, fresh) {
                        Plan::Nothing => Ok(None),
                        Plan::Write(change, line) => {
                            println!("{line}");
                            Ok(Some(change))
                        }
                        Plan::Refuse(line) => Err(ToolError::Refused(line)),
                    })
                    .await;
                match outcome {
                    Ok(Some(_)) => changes += 1,
                    Ok(None) => {}
                    Err(ToolError::Refused(line)) => {
                        refused += 1;
                        println!("{line}");
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    }
    let verb = if mode.apply {
        "applied"
    } else {
        "to apply (dry run: --apply writes them)"
    };
    println!(
        "{changes} change(s) {verb}, {refused} refused, {} host(s) in the file",
        wanted.len()
    );
    Ok(refused == 0)
}

/// `routes import FILE [--apply] [--prune]`.
pub async fn once(store: &mut Store, file: &Path, mode: Mode) -> Result<bool, ToolError> {
    let wanted = read(file)?;
    match pass(store, &wanted, &BTreeMap::new(), mode).await? {
        true => Ok(true),
        false => Err(ToolError::Refused(
            "some hosts were refused (see above; --force overrides ownership)".to_owned(),
        )),
    }
}

/// What a file looks like on disk, to notice changes without reading it.
fn stamp(file: &Path) -> Option<(std::time::SystemTime, u64)> {
    let m = std::fs::metadata(file).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// `routes import FILE --watch`: a pass now, then one each time the file
/// changes, until SIGINT or SIGTERM. A file that does not validate is
/// reported and changes nothing; Redis unreachable is reported and tried
/// again at the next change or poll.
pub async fn watch(store: &mut Store, file: &Path, mode: Mode) -> Result<(), ToolError> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| ToolError::Failed(format!("cannot watch for SIGTERM: {e}")))?;
    // The identifiers the file gave its hosts at the last good pass.
    let mut applied: BTreeMap<String, String> = BTreeMap::new();
    let mut seen = None;
    let mut pending = true;
    loop {
        let now = stamp(file);
        if now != seen {
            seen = now;
            pending = true;
        }
        if pending {
            pending = !watch_pass(store, file, mode, &mut applied).await;
        }
        tokio::select! {
            _ = tokio::time::sleep(WATCH_POLL) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = term.recv() => return Ok(()),
        }
    }
}

/// One pass of `--watch`; `false` when it must be tried again (Redis
/// unreachable). A file that does not validate waits for its next change.
async fn watch_pass(
    store: &mut Store,
    file: &Path,
    mode: Mode,
    applied: &mut BTreeMap<String, String>,
) -> bool {
    let wanted = match read(file) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("hipache routes import: {}", e.message());
            return true;
        }
    };
    let gone: BTreeMap<String, String> = applied
        .iter()
        .filter(|(h, _)| !wanted.contains_key(*h))
        .map(|(h, id)| (h.clone(), id.clone()))
        .collect();
    match pass(store, &wanted, &gone, mode).await {
        Ok(_) => {
            *applied = wanted
                .iter()
                .filter_map(|(h, w)| Some((h.clone(), w.identifier()?)))
                .collect();
            true
        }
        Err(e) => {
            eprintln!("hipache routes import: {} (trying again)", e.message());
            // Redis may come back: a new connection, and another pass soon.
            tokio::time::sleep(RETRY).await;
            let _ = store.reconnect().await;
            false
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn state(list: &[&str]) -> HostState {
        HostState {
            list: Some(list.iter().map(|s| s.to_string()).collect()),
            ..HostState::default()
        }
    }

    fn wanted(list: &[&str]) -> Wanted {
        Wanted {
            list: Some(list.iter().map(|s| s.to_string()).collect()),
            document: None,
        }
    }

    #[test]
    fn plans_creations_updates_and_nothing() {
        let w = wanted(&["app", "http://10.0.0.1"]);
        let Plan::Write(change, line) = plan("a.test", Some(&w), &HostState::default(), false)
        else {
            panic!("a creation")
        };
        assert_eq!(line, "+ a.test: list [app, http://10.0.0.1]");
        assert_eq!(change.list, Some(w.list.clone()));
        assert_eq!(change.document, None);
        assert_eq!(
            plan(
                "a.test",
                Some(&w),
                &state(&["app", "http://10.0.0.1"]),
                false
            ),
            Plan::Nothing
        );
        let Plan::Write(_, line) = plan(
            "a.test",
            Some(&w),
            &state(&["app", "http://10.0.0.9"]),
            false,
        ) else {
            panic!("an update")
        };
        assert_eq!(
            line,
            "~ a.test: list [app, http://10.0.0.9] -> [app, http://10.0.0.1]"
        );
    }

    #[test]
    fn refuses_hosts_owned_elsewhere_unless_forced() {
        let w = wanted(&["app", "http://10.0.0.1"]);
        let k8s = state(&["k8s:ns/web", "http://10.0.0.2"]);
        assert!(matches!(
            plan("a.test", Some(&w), &k8s, false),
            Plan::Refuse(_)
        ));
        assert!(matches!(
            plan("a.test", Some(&w), &k8s, true),
            Plan::Write(..)
        ));
        let other = state(&["tenant", "http://10.0.0.3"]);
        assert!(matches!(
            plan("a.test", Some(&w), &other, false),
            Plan::Refuse(_)
        ));
        // Deleting: the syncer's only with force; anyone else's by prune.
        assert!(matches!(plan("a.test", None, &k8s, false), Plan::Refuse(_)));
        assert!(matches!(
            plan("a.test", None, &other, false),
            Plan::Write(..)
        ));
        assert_eq!(
            plan("a.test", None, &HostState::default(), false),
            Plan::Nothing
        );
    }

    #[test]
    fn documents_compare_as_json_not_as_text() {
        let doc: Value = serde_json::json!({"id": "shop", "rules": []});
        let w = Wanted {
            list: None,
            document: Some(doc),
        };
        let current = HostState {
            document: Some("{ \"rules\": [], \"id\": \"shop\" }".to_owned()),
            ..HostState::default()
        };
        assert_eq!(plan("s.test", Some(&w), &current, false), Plan::Nothing);
    }
}
