//! Session affinity: which backend of a rule a client keeps going to.
//!
//! - A cookie names the backend (a stable id of its URL). While that
//!   backend is in the rule with a weight, not marked dead and not already
//!   tried by the request, it is chosen; otherwise the usual weighted draw
//!   chooses, and the answer sets the cookie to the new backend. So a
//!   backend leaving the list, or marked dead, moves its sessions.
//! - Consistent hashing of a header's value or of the client address:
//!   weighted rendezvous hashing, so that a backend joining or leaving
//!   moves only the keys it wins or held (about 1/n of them), never the
//!   others.
//!
//! Ids and hashes are FNV-1a (a few lines, written here): stable across
//! builds and processes, so every proxy of the fleet agrees on a cookie
//! and on a key's backend. They need no secrecy: a client that forges a
//! cookie can only pick a backend it could reach anyway.

use std::net::IpAddr;

use hipache_schema::routes::policies::{Affinity, AffinityCookie};
use hipache_schema::BackendEntry;
use http::header::{self, HeaderMap, HeaderValue};

/// What the request asks of backend choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pin {
    /// Cookie affinity: the id the request's cookie names, if any.
    Cookie {
        cookie: AffinityCookie,
        wanted: Option<String>,
    },
    /// Consistent hashing of this key.
    Hash(u64),
}

impl Pin {
    /// The pin of a request under a rule's affinity; `None` when there is
    /// nothing to pin by (no header to hash, no known client address).
    pub fn of(affinity: &Affinity, headers: &HeaderMap, client: Option<IpAddr>) -> Option<Pin> {
        match affinity {
            Affinity::Cookie(cookie) => Some(Pin::Cookie {
                wanted: cookie_value(headers, &cookie.name),
                cookie: cookie.clone(),
            }),
            Affinity::Header(name) => {
                let values: Vec<&[u8]> =
                    headers.get_all(name).iter().map(|v| v.as_bytes()).collect();
                (!values.is_empty()).then(|| Pin::Hash(fnv(&values.concat())))
            }
            Affinity::ClientAddress => client.map(|c| Pin::Hash(fnv(c.to_string().as_bytes()))),
        }
    }

    /// The backend this pin picks among `(backend, weight)` for which
    /// `open` holds; `None`: let the weighted draw choose.
    pub fn pick<'a>(
        &self,
        backends: impl Iterator<Item = (&'a BackendEntry, u32)>,
        open: impl Fn(&BackendEntry) -> bool,
    ) -> Option<&'a BackendEntry> {
        let mut live = backends.filter(|(b, w)| *w > 0 && open(b));
        match self {
            Pin::Cookie { wanted: None, .. } => None,
            Pin::Cookie {
                wanted: Some(id), ..
            } => live
                .find(|(b, _)| b.url.is_ok() && backend_id(b) == *id)
                .map(|(b, _)| b),
            Pin::Hash(key) => live
                .map(|(b, w)| (rendezvous_score(*key, b, w), b))
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .map(|(_, b)| b),
        }
    }

    /// The `Set-Cookie` an answer from `chosen` needs: when the cookie was
    /// missing or named another backend.
    pub fn set_cookie(&self, chosen: &BackendEntry) -> Option<HeaderValue> {
        let Pin::Cookie { cookie, wanted } = self else {
            return None;
        };
        let id = backend_id(chosen);
        if wanted.as_deref() == Some(id.as_str()) || chosen.url.is_err() {
            return None;
        }
        let mut v = format!("{}={id}; Path={}", cookie.name, cookie.path);
        if let Some(ttl) = cookie.ttl {
            v.push_str(&format!("; Max-Age={}", ttl.as_secs().max(1)));
        }
        if let Some(s) = cookie.same_site {
            v.push_str(&format!("; SameSite={}", s.as_str()));
        }
        if cookie.secure {
            v.push_str("; Secure");
        }
        if cookie.http_only {
            v.push_str("; HttpOnly");
        }
        HeaderValue::from_str(&v).ok()
    }
}

/// A backend's stable id: 16 hex digits of FNV-1a over its URL as written.
pub fn backend_id(b: &BackendEntry) -> String {
    format!("{:016x}", fnv(b.url_text.as_bytes()))
}

/// Weighted rendezvous hashing: the backend with the highest
/// `-weight / ln(u)`, `u` uniform in (0, 1) from the key and the backend.
fn rendezvous_score(key: u64, b: &BackendEntry, weight: u32) -> f64 {
    // FNV-1a's high bits barely depend on the last bytes (URLs often
    // differ only there): a finaliser mixes them in (MurmurHash3's fmix64).
    let h = fmix(fnv(
        &[key.to_le_bytes().as_slice(), b.url_text.as_bytes()].concat()
    ));
    // Top 53 bits, shifted off zero: a uniform float in (0, 1).
    let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    -(weight as f64) / u.ln()
}

/// MurmurHash3's 64-bit finaliser: every input bit affects every output bit.
fn fmix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// FNV-1a, 64 bits.
fn fnv(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(n: usize) -> Vec<BackendEntry> {
        (0..n)
            .map(|i| BackendEntry::decode(i, &format!("http://10.0.0.{i}:80")))
            .collect()
    }

    fn cookie_pin(wanted: Option<String>) -> Pin {
        Pin::Cookie {
            cookie: AffinityCookie {
                name: "sticky".into(),
                ttl: Some(std::time::Duration::from_secs(60)),
                path: "/".into(),
                same_site: Some(hipache_schema::routes::policies::SameSite::Lax),
                secure: true,
                http_only: true,
            },
            wanted,
        }
    }

    #[test]
    fn a_cookie_keeps_its_backend_until_it_is_gone() {
        let b = entries(3);
        let pin = cookie_pin(Some(backend_id(&b[2])));
        let all = || b.iter().map(|e| (e, 1));
        assert_eq!(pin.pick(all(), |_| true).map(|e| e.position), Some(2));
        assert!(pin.set_cookie(&b[2]).is_none(), "already pinned there");
        assert!(
            pin.pick(all(), |e| e.position != 2).is_none(),
            "dead: the draw chooses"
        );
        assert!(
            pin.pick(b.iter().map(|e| (e, 0)), |_| true).is_none(),
            "weight 0: drained"
        );
        let set = pin.set_cookie(&b[0]).expect("moved");
        assert_eq!(
            set.to_str().expect("text"),
            format!(
                "sticky={}; Path=/; Max-Age=60; SameSite=Lax; Secure; HttpOnly",
                backend_id(&b[0])
            )
        );
        assert!(cookie_pin(None).pick(all(), |_| true).is_none());
    }

    #[test]
    fn hashing_is_consistent_and_moves_only_the_departed_share() {
        let b = entries(5);
        let keys: Vec<u64> = (0..2000u64).map(|k| fnv(&k.to_le_bytes())).collect();
        let pick = |k: u64, open: &dyn Fn(&BackendEntry) -> bool| {
            Pin::Hash(k)
                .pick(b.iter().map(|e| (e, 1)), open)
                .map(|e| e.position)
        };
        let before: Vec<_> = keys.iter().map(|&k| pick(k, &|_| true)).collect();
        let again: Vec<_> = keys.iter().map(|&k| pick(k, &|_| true)).collect();
        assert_eq!(before, again, "the same key, the same backend");
        let after: Vec<_> = keys
            .iter()
            .map(|&k| pick(k, &|e| e.position != 3))
            .collect();
        let moved = before.iter().zip(&after).filter(|(x, y)| x != y).count();
        let held = before.iter().filter(|x| **x == Some(3)).count();
        assert_eq!(moved, held, "only the keys backend 3 held moved");
        assert!((300..500).contains(&held), "about a fifth of 2000: {held}");
    }

    #[test]
    fn hashing_follows_weights() {
        let b = entries(2);
        let mut first = 0;
        for k in 0..4000u64 {
            let p = Pin::Hash(fnv(&k.to_le_bytes()));
            if p.pick(b.iter().zip([3u32, 1]), |_| true)
                .map(|e| e.position)
                == Some(0)
            {
                first += 1;
            }
        }
        assert!(
            (2800..3200).contains(&first),
            "a 3:1 split of 4000: {first}"
        );
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; sticky=abc"));
        assert_eq!(cookie_value(&h, "sticky").as_deref(), Some("abc"));
        assert_eq!(cookie_value(&h, "stick"), None);
    }
}
