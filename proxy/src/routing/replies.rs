//! A compact copy of what Redis answered for one lookup, to tell whether
//! the next answer for the host is the same. In strict mode every request
//! reads Redis, and nearly every answer is the one before: when it is, the
//! decoded routes already cached are served as they are (no backend URL
//! parsed again, no new cache entry), and only their read time moves.
//!
//! The comparison is exact (every byte of every reply), never a hash: a
//! changed route is always decoded, and at worst an unchanged one whose
//! replies came in another order (a set) is decoded again.

use redis::Value;

/// The replies of one lookup, flattened: a tag per value, lengths, bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replies(Box<[u8]>);

impl Replies {
    pub fn of(replies: &[Value]) -> Self {
        let mut out = Vec::with_capacity(128);
        for v in replies {
            walk(v, &mut |b: &[u8]| out.extend_from_slice(b));
        }
        Replies(out.into_boxed_slice())
    }

    /// Whether `replies` are these, byte for byte.
    pub fn same_as(&self, replies: &[Value]) -> bool {
        let mut rest: &[u8] = &self.0;
        let mut same = true;
        for v in replies {
            walk(v, &mut |b: &[u8]| {
                if same {
                    match rest.strip_prefix(b) {
                        Some(r) => rest = r,
                        None => same = false,
                    }
                }
            });
            if !same {
                return false;
            }
        }
        rest.is_empty()
    }
}

/// Feeds `v` to `f` as tagged, length-prefixed pieces, so that two
/// different trees never give the same bytes.
fn walk(v: &Value, f: &mut impl FnMut(&[u8])) {
    fn len(f: &mut impl FnMut(&[u8]), n: usize) {
        f(&(n as u64).to_le_bytes());
    }
    match v {
        Value::Nil => f(b"n"),
        Value::Okay => f(b"o"),
        Value::Int(i) => {
            f(b"i");
            f(&i.to_le_bytes());
        }
        Value::BulkString(b) => {
            f(b"b");
            len(f, b.len());
            f(b);
        }
        Value::SimpleString(s) => {
            f(b"s");
            len(f, s.len());
            f(s.as_bytes());
        }
        Value::Array(items) | Value::Set(items) => {
            f(if matches!(v, Value::Set(_)) {
                b"t"
            } else {
                b"a"
            });
            len(f, items.len());
            for item in items {
                walk(item, f);
            }
        }
        // Anything else (an error reply, a RESP3 map or double) is rare
        // here: compared by its debug form.
        other => {
            let text = format!("{other:?}");
            f(b"?");
            len(f, text.len());
            f(text.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn lookup(backend: &str, dead: &[&str]) -> Vec<Value> {
        vec![
            Value::Array(vec![bulk("app"), bulk(backend)]),
            Value::Nil,
            Value::Set(dead.iter().map(|d| bulk(d)).collect()),
            Value::Array(vec![Value::Nil, Value::Nil]),
        ]
    }

    #[test]
    fn the_same_replies_are_the_same() {
        let a = lookup("http://10.0.0.1:80", &["0"]);
        assert!(Replies::of(&a).same_as(&a));
        assert_eq!(Replies::of(&a), Replies::of(&a.clone()));
    }

    #[test]
    fn any_change_is_a_change() {
        let r = Replies::of(&lookup("http://10.0.0.1:80", &["0"]));
        assert!(!r.same_as(&lookup("http://10.0.0.1:81", &["0"])));
        assert!(!r.same_as(&lookup("http://10.0.0.1:80", &[])));
        assert!(!r.same_as(&lookup("http://10.0.0.1:80", &["0", "1"])));
        // Fewer or more replies.
        let full = lookup("http://10.0.0.1:80", &["0"]);
        assert!(!r.same_as(&full[..3]));
        let mut more = full.clone();
        more.push(Value::Nil);
        assert!(!r.same_as(&more));
        // The same bytes split differently are not the same replies.
        let joined = Replies::of(&[bulk("ab"), bulk("c")]);
        assert!(!joined.same_as(&[bulk("a"), bulk("bc")]));
        // A list and a set of the same items differ.
        let list = Replies::of(&[Value::Array(vec![bulk("0")])]);
        assert!(!list.same_as(&[Value::Set(vec![bulk("0")])]));
    }

    #[test]
    fn other_values_compare_by_their_text() {
        let r = Replies::of(&[Value::Double(1.5)]);
        assert!(r.same_as(&[Value::Double(1.5)]));
        assert!(!r.same_as(&[Value::Double(2.5)]));
        assert!(!r.same_as(&[Value::Boolean(true)]));
    }
}
