//! The editing commands: `set`, `add-backend`, `rm-backend`, `rm`. Each
//! validates its input, then changes one host in one transaction (see
//! [`super::redis::Store::update`]), refusing hosts owned elsewhere.

use super::redis::{check_backend, check_identifier, check_owner, host, Change, Store};
use super::ToolError;
use crate::cli::Force;

/// A host with a route document is edited through its document: a list
/// beside it would be ignored by the proxy.
fn refuse_document(host: &str, state: &super::redis::HostState) -> Result<(), ToolError> {
    match state.document {
        Some(_) => Err(ToolError::Refused(format!(
            "{host} is routed by its document (routes:{host}): edit the document, or `routes rm` it first"
        ))),
        None => Ok(()),
    }
}

/// `routes set HOST IDENTIFIER BACKEND...`.
pub async fn set(
    store: &mut Store,
    raw: &str,
    identifier: &str,
    backends: &[String],
    force: Force,
) -> Result<(), ToolError> {
    let host = host(raw)?;
    check_identifier(identifier)?;
    for b in backends {
        check_backend(b)?;
    }
    let mut list = vec![identifier.to_owned()];
    list.extend(backends.iter().cloned());
    let changed = store
        .update(&host, |state| {
            check_owner(&host, state, Some(identifier), force.force)?;
            refuse_document(&host, state)?;
            Ok((state.list.as_ref() != Some(&list)).then(|| Change {
                list: Some(Some(list.clone())),
                // Positions may now name other backends.
                clear_dead: true,
                ..Change::default()
            }))
        })
        .await?;
    report(&host, changed.is_some(), "set");
    Ok(())
}

/// Changes the list of a host that has one (and no document) with `edit`,
/// which gets the list and returns the new one.
async fn edit_list(
    store: &mut Store,
    host: &str,
    force: Force,
    edit: impl Fn(&[String]) -> Result<Vec<String>, ToolError>,
) -> Result<(), ToolError> {
    store
        .update(host, |state| {
            check_owner(host, state, None, force.force)?;
            refuse_document(host, state)?;
            let Some(list) = &state.list else {
                return Err(ToolError::Refused(format!(
                    "no frontend {host}: create it with `routes set {host} IDENTIFIER URL...`"
                )));
            };
            let new = edit(list)?;
            Ok(Some(Change {
                // Positions may now name other backends.
                clear_dead: new.len() < list.len(),
                list: Some(Some(new)),
                ..Change::default()
            }))
        })
        .await
        .map(|_| ())
}

/// `routes add-backend HOST BACKEND`.
pub async fn add_backend(
    store: &mut Store,
    raw: &str,
    backend: &str,
    force: Force,
) -> Result<(), ToolError> {
    let host = host(raw)?;
    check_backend(backend)?;
    edit_list(store, &host, force, |list| {
        let mut list = list.to_vec();
        list.push(backend.to_owned());
        Ok(list)
    })
    .await?;
    report(&host, true, "backend added");
    Ok(())
}

/// `routes rm-backend HOST BACKEND`.
pub async fn rm_backend(
    store: &mut Store,
    raw: &str,
    backend: &str,
    force: Force,
) -> Result<(), ToolError> {
    let host = host(raw)?;
    edit_list(store, &host, force, |list| {
        let kept: Vec<String> = list
            .iter()
            .enumerate()
            .filter(|(i, e)| *i == 0 || e.as_str() != backend)
            .map(|(_, e)| e.clone())
            .collect();
        match kept.len() == list.len() {
            true => Err(ToolError::Refused(format!(
                "{host} has no backend {backend:?}"
            ))),
            false => Ok(kept),
        }
    })
    .await?;
    report(&host, true, "backend removed");
    Ok(())
}

/// `routes rm HOST`.
pub async fn rm(store: &mut Store, raw: &str, force: Force) -> Result<(), ToolError> {
    let host = host(raw)?;
    store
        .update(&host, |state| {
            if !state.exists() {
                return Err(ToolError::Refused(format!("no frontend {host}")));
            }
            check_owner(&host, state, None, force.force)?;
            Ok(Some(Change {
                list: Some(None),
                document: Some(None),
                clear_dead: true,
            }))
        })
        .await?;
    report(&host, true, "removed");
    Ok(())
}

fn report(host: &str, changed: bool, what: &str) {
    match changed {
        true => println!("{host}: {what}"),
        false => println!("{host}: unchanged"),
    }
}
