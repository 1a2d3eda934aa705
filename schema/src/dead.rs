//! Dead marks: `dead:` set members and the `dead` channel message.

/// Positions named by a `dead:` set. Members that are not numbers are
/// ignored (someone wrote garbage with redis-cli; it must not break routing).
pub fn positions<S: AsRef<str>>(members: &[S]) -> impl Iterator<Item = usize> + '_ {
    members
        .iter()
        .filter_map(|m| m.as_ref().trim().parse().ok())
}

/// The message published on the `dead` channel for every mark:
/// `<host>;<backend url>;<position>;<backend count>`.
pub fn message(host: &str, backend: &str, position: usize, count: usize) -> String {
    format!("{host};{backend};{position};{count}")
}

/// A parsed `dead` channel message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadMessage {
    pub host: String,
    pub backend: String,
    pub position: usize,
    pub count: usize,
}

/// Parses a `dead` channel message. The backend URL may itself contain `;`
/// in theory, so the host is split off the front and the two numbers off
/// the back.
pub fn parse_message(msg: &str) -> Option<DeadMessage> {
    let (host, rest) = msg.split_once(';')?;
    let (rest, count) = rest.rsplit_once(';')?;
    let (backend, position) = rest.rsplit_once(';')?;
    Some(DeadMessage {
        host: host.to_owned(),
        backend: backend.to_owned(),
        position: position.parse().ok()?,
        count: count.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignores_garbage_members() {
        let p: Vec<usize> = positions(&["0", "x", "2", "-1", " 3 "]).collect();
        assert_eq!(p, [0, 2, 3]);
    }

    #[test]
    fn message_round_trips() {
        let m = message("a.com", "http://1.2.3.4:80", 1, 3);
        assert_eq!(m, "a.com;http://1.2.3.4:80;1;3");
        let p = parse_message(&m).unwrap();
        assert_eq!(
            (p.host.as_str(), p.backend.as_str(), p.position, p.count),
            ("a.com", "http://1.2.3.4:80", 1, 3)
        );
        assert_eq!(parse_message("bad"), None);
    }
}
