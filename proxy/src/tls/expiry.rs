//! When served certificates expire, for
//! `hipache_tls_certificate_expiration_timestamp_seconds`: read from each
//! end-entity certificate's `notAfter` (x509-parser), once per certificate,
//! at scrape time.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use rustls::sign::CertifiedKey;

/// At most this many certificates get a series of their own: those that
/// expire first, the ones an alert is about. A proxy serving more (a
/// platform with a certificate per tenant) does not grow its scrape with
/// them.
pub const SERIES_CAP: usize = 1000;

/// The `notAfter` of a certificate's end entity, in Unix seconds; `None`
/// when it does not parse (it was accepted by webpki, so this is unlikely).
pub fn not_after(cert: &CertifiedKey) -> Option<i64> {
    let der = cert.end_entity_cert().ok()?;
    let (_, parsed) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    Some(parsed.validity().not_after.timestamp())
}

/// A certificate seen at the last scrape, by its address: the `Weak` tells
/// a certificate still served from a new one at a reused address.
type Seen = HashMap<usize, (Weak<CertifiedKey>, Option<i64>)>;

/// `not_after` of each certificate seen, so that a scrape parses only the
/// certificates that changed since the last one.
#[derive(Default)]
pub struct Expiries {
    seen: Mutex<Seen>,
}

impl Expiries {
    /// `(label, notAfter)` for the named certificates (each certificate once,
    /// under its first name in order) and the listeners' defaults (one series,
    /// `default`, the earliest of them), at most [`SERIES_CAP`] of them,
    /// those expiring first.
    pub fn of(
        &self,
        named: &[(String, Arc<CertifiedKey>)],
        defaults: &[Arc<CertifiedKey>],
    ) -> Vec<(String, i64)> {
        let mut seen = self.seen.lock();
        let mut next = HashMap::with_capacity(named.len() + defaults.len());
        let mut lookup = |cert: &Arc<CertifiedKey>| {
            let key = Arc::as_ptr(cert) as usize;
            let expiry = match seen.get(&key) {
                Some((weak, expiry)) if weak.ptr_eq(&Arc::downgrade(cert)) => *expiry,
                _ => not_after(cert),
            };
            next.insert(key, (Arc::downgrade(cert), expiry));
            expiry
        };
        let mut out: Vec<(String, i64)> = Vec::new();
        let mut labelled = std::collections::HashSet::new();
        for (name, cert) in named {
            if labelled.insert(Arc::as_ptr(cert) as usize) {
                if let Some(t) = lookup(cert) {
                    out.push((name.clone(), t));
                }
            }
        }
        if let Some(t) = defaults.iter().filter_map(&mut lookup).min() {
            out.push(("default".to_owned(), t));
        }
        *seen = next;
        out.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
        out.truncate(SERIES_CAP);
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn cert(name: &str, not_after: (i32, u8, u8)) -> Arc<CertifiedKey> {
        let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
        params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        let key = rcgen::KeyPair::generate().unwrap();
        let c = params.self_signed(&key).unwrap();
        let loaded = crate::tls::certs::load(
            c.pem().as_bytes(),
            key.serialize_pem().as_bytes(),
            &rustls::crypto::ring::default_provider(),
        )
        .unwrap();
        loaded.key
    }

    #[test]
    fn reads_not_after_once_per_certificate_and_sorts_by_expiry() {
        let a = cert("a.test", (2031, 1, 1));
        let b = cert("b.test", (2030, 6, 1));
        let d1 = cert("default", (2032, 1, 1));
        let d2 = cert("default", (2029, 1, 1));
        // One certificate under two names appears once, under the first.
        let named = vec![
            ("a.test".to_owned(), a.clone()),
            ("www.a.test".to_owned(), a.clone()),
            ("b.test".to_owned(), b.clone()),
        ];
        let e = Expiries::default();
        let got = e.of(&named, &[d1, d2]);
        let ts = |y, m, d| rcgen::date_time_ymd(y, m, d).unix_timestamp();
        assert_eq!(
            got,
            [
                ("default".to_owned(), ts(2029, 1, 1)),
                ("b.test".to_owned(), ts(2030, 6, 1)),
                ("a.test".to_owned(), ts(2031, 1, 1)),
            ]
        );
        // A replaced certificate is read again.
        let b2 = cert("b.test", (2035, 1, 1));
        let named = vec![("b.test".to_owned(), b2)];
        assert_eq!(e.of(&named, &[]), [("b.test".to_owned(), ts(2035, 1, 1))]);
    }
}
