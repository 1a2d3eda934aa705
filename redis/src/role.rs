//! Whether a connection reaches the server it was opened for, by `ROLE`.
//!
//! A Sentinel failover turns the old master into a replica and a replica
//! into the master; Sentinel then closes their clients' connections, but a
//! connection that survives (an older Redis, a proxy in between) would
//! write to a replica (refused, `READONLY`) or read from a replica whose
//! master went away (stale for as long as it lasts). Both binaries ask
//! `ROLE` on every new connection and, for Sentinel URLs, on every probe.

use hipache_schema::ReadFrom;
use redis::aio::ConnectionLike;
use redis::Value;

/// What `ROLE` said that the connection's user cannot take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoleError {
    #[error(
        "the server is a replica, not the master (a failover in progress, or a stale address)"
    )]
    NotMaster,
    #[error(
        "the replica is not linked to its master (replication state {0:?}): its data may be stale"
    )]
    Unlinked(String),
    #[error("the server is a {0}, not a Redis server")]
    Other(String),
    #[error("ROLE: {0}")]
    Command(String),
}

/// Asks `ROLE` on `conn`: a writer (`ReadFrom::Master`) needs the master;
/// a reader of replicas takes the master or a replica whose link to its
/// master is up (`connected`).
pub async fn check_role<C: ConnectionLike + Send>(
    conn: &mut C,
    need: ReadFrom,
) -> Result<(), RoleError> {
    let reply: Value = redis::cmd("ROLE")
        .query_async(conn)
        .await
        .map_err(|e| RoleError::Command(e.to_string()))?;
    judge(&reply, need)
}

fn judge(reply: &Value, need: ReadFrom) -> Result<(), RoleError> {
    let Value::Array(items) = reply else {
        return Err(RoleError::Command(format!("unexpected reply {reply:?}")));
    };
    let text = |i: usize| match items.get(i) {
        Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
        Some(Value::SimpleString(s)) => s.clone(),
        _ => String::new(),
    };
    match (text(0).as_str(), need) {
        ("master", _) => Ok(()),
        ("slave", ReadFrom::Master) => Err(RoleError::NotMaster),
        ("slave", ReadFrom::Replica) => match text(3).as_str() {
            "connected" => Ok(()),
            state => Err(RoleError::Unlinked(state.to_owned())),
        },
        (other, _) => Err(RoleError::Other(other.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn roles_are_judged_for_their_user() {
        let master = Value::Array(vec![bulk("master"), Value::Int(10), Value::Array(vec![])]);
        let replica = |state: &str| {
            Value::Array(vec![
                bulk("slave"),
                bulk("127.0.0.1"),
                Value::Int(6379),
                bulk(state),
                Value::Int(10),
            ])
        };
        let sentinel = Value::Array(vec![bulk("sentinel"), Value::Array(vec![])]);
        assert_eq!(judge(&master, ReadFrom::Master), Ok(()));
        assert_eq!(judge(&master, ReadFrom::Replica), Ok(()));
        assert_eq!(
            judge(&replica("connected"), ReadFrom::Master),
            Err(RoleError::NotMaster)
        );
        assert_eq!(judge(&replica("connected"), ReadFrom::Replica), Ok(()));
        assert_eq!(
            judge(&replica("connect"), ReadFrom::Replica),
            Err(RoleError::Unlinked("connect".into()))
        );
        assert_eq!(
            judge(&sentinel, ReadFrom::Replica),
            Err(RoleError::Other("sentinel".into()))
        );
        assert!(judge(&Value::Nil, ReadFrom::Master).is_err());
    }
}
