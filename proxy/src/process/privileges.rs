//! Dropping root after binding: to `user` and `group` (0.4 layout keys).

use nix::unistd::{self, Gid, Group, Uid, User};

#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error("user {0:?} does not exist")]
    NoUser(String),
    #[error("group {0:?} does not exist")]
    NoGroup(String),
    #[error("cannot look up {what} {name:?}: {source}")]
    Lookup {
        what: &'static str,
        name: String,
        source: nix::Error,
    },
    #[error("user/group is set but the process is not root (uid {uid}, gid {gid}) and is not already {user}:{group}: start as root, or remove user/group")]
    NotRoot {
        uid: Uid,
        gid: Gid,
        user: String,
        group: String,
    },
    #[error("cannot switch to {what}: {source}")]
    Switch {
        what: &'static str,
        source: nix::Error,
    },
}

/// Switches this process (every thread) to `user` and `group`; the group
/// defaults to the user's primary group. Nothing to do when both are
/// unset. Not root: fine when already that user and group (logged), an
/// error otherwise.
pub fn drop_to(user: Option<&str>, group: Option<&str>) -> Result<(), PrivilegeError> {
    if user.is_none() && group.is_none() {
        return Ok(());
    }
    let target_user = match user {
        Some(name) => Some(
            User::from_name(name)
                .map_err(|source| PrivilegeError::Lookup {
                    what: "user",
                    name: name.to_owned(),
                    source,
                })?
                .ok_or_else(|| PrivilegeError::NoUser(name.to_owned()))?,
        ),
        None => None,
    };
    let gid = match (group, &target_user) {
        (Some(name), _) => {
            Group::from_name(name)
                .map_err(|source| PrivilegeError::Lookup {
                    what: "group",
                    name: name.to_owned(),
                    source,
                })?
                .ok_or_else(|| PrivilegeError::NoGroup(name.to_owned()))?
                .gid
        }
        (None, Some(u)) => u.gid,
        (None, None) => return Ok(()),
    };
    let uid = target_user.as_ref().map(|u| u.uid);
    let user_label = user.unwrap_or("(unchanged)").to_owned();
    let group_label = group.map_or_else(|| format!("gid {gid}"), str::to_owned);
    if !unistd::geteuid().is_root() {
        let (cur_uid, cur_gid) = (unistd::geteuid(), unistd::getegid());
        if uid.is_none_or(|u| u == cur_uid) && cur_gid == gid {
            tracing::info!(user = %user_label, group = %group_label, "already running as the configured user and group");
            return Ok(());
        }
        return Err(PrivilegeError::NotRoot {
            uid: cur_uid,
            gid: cur_gid,
            user: user_label,
            group: group_label,
        });
    }
    let switch = |what| move |source| PrivilegeError::Switch { what, source };
    unistd::setgroups(&[gid]).map_err(switch("supplementary groups"))?;
    unistd::setgid(gid).map_err(switch("group"))?;
    match uid {
        Some(uid) => unistd::setuid(uid).map_err(switch("user"))?,
        None => tracing::warn!("only group is set: the process keeps running as root"),
    }
    tracing::info!(user = %user_label, group = %group_label, "dropped privileges");
    Ok(())
}
