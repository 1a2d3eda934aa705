//! The certificate store: SNI names to certificates, fed by the directory
//! and Redis sources, read lock-free on every handshake.
//!
//! Each source owns one map (name to certificate) and replaces or edits
//! it under a short mutex; every change publishes a merged, immutable
//! snapshot through an `ArcSwap`, which the handshake path only loads.
//! When both sources name one host, the directory wins: it is the
//! operator's file on this machine, Redis is shared by every proxy.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Where a certificate came from; the merge order is the order here (an
/// earlier source wins a name both hold).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    Dir,
    Redis,
}

const SOURCES: [Source; 2] = [Source::Dir, Source::Redis];

/// Names (exact `a.example.com` or wildcard `*.example.com`, normalised)
/// to certificates.
pub type Names = HashMap<String, Arc<CertifiedKey>>;

/// The SNI certificates of every source; shared by all HTTPS listeners.
#[derive(Default)]
pub struct CertStore {
    sources: Mutex<HashMap<Source, Names>>,
    merged: ArcSwap<Names>,
    /// The listeners' default certificates (for their expiry only: each
    /// listener's [`Resolver`] holds its own).
    defaults: Mutex<Vec<Arc<CertifiedKey>>>,
    expiries: super::expiry::Expiries,
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertStore")
            .field("names", &self.merged.load().len())
            .finish()
    }
}

impl CertStore {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Replaces everything `source` provides.
    pub fn replace(&self, source: Source, names: Names) {
        let mut sources = self.sources.lock();
        sources.insert(source, names);
        self.publish(&sources);
    }

    /// Sets (`Some`) or removes (`None`) one name of `source`.
    pub fn set(&self, source: Source, name: &str, cert: Option<Arc<CertifiedKey>>) {
        let mut sources = self.sources.lock();
        let names = sources.entry(source).or_default();
        match cert {
            Some(c) => {
                names.insert(name.to_owned(), c);
            }
            None => {
                names.remove(name);
            }
        }
        self.publish(&sources);
    }

    fn publish(&self, sources: &HashMap<Source, Names>) {
        let mut merged = Names::new();
        for source in SOURCES.iter().rev() {
            if let Some(names) = sources.get(source) {
                merged.extend(names.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
        self.merged.store(Arc::new(merged));
    }

    /// The certificate for an SNI name: the exact name, else the wildcard
    /// one label up (`*.example.com` covers `a.example.com`, not
    /// `b.a.example.com` nor `example.com`).
    pub fn lookup(&self, sni: &str) -> Option<Arc<CertifiedKey>> {
        let name = normalize(sni)?;
        let names = self.merged.load();
        if let Some(c) = names.get(name.as_ref()) {
            return Some(c.clone());
        }
        let (_, parent) = name.split_once('.')?;
        if parent.is_empty() {
            return None;
        }
        names.get(&format!("*.{parent}")).cloned()
    }

    /// Records a listener's default certificate, for [`CertStore::expirations`].
    pub fn add_default(&self, cert: Arc<CertifiedKey>) {
        self.defaults.lock().push(cert);
    }

    /// When the served certificates expire: see [`super::expiry::Expiries::of`]
    /// (each certificate under its first name in alphabetical order).
    pub fn expirations(&self) -> Vec<(String, i64)> {
        let mut named: Vec<(String, Arc<CertifiedKey>)> = self
            .merged
            .load()
            .iter()
            .map(|(name, cert)| (name.clone(), cert.clone()))
            .collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let defaults = self.defaults.lock().clone();
        self.expiries.of(&named, &defaults)
    }

    /// How many names are served (all sources).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.merged.load().len()
    }
}

/// Lower-cased, one trailing dot dropped; `None` when empty. Borrowed
/// when already normal (rustls hands SNI over lower-cased).
pub fn normalize(name: &str) -> Option<std::borrow::Cow<'_, str>> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return None;
    }
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Some(std::borrow::Cow::Owned(name.to_ascii_lowercase()))
    } else {
        Some(std::borrow::Cow::Borrowed(name))
    }
}

/// The certificate resolver of one HTTPS listener: its own default
/// certificate (from `key`/`cert` in the config) plus the shared store.
pub struct Resolver {
    store: Arc<CertStore>,
    default: Option<Arc<CertifiedKey>>,
    listener: String,
    /// Unix second of the last "no certificate" warning: at most one a
    /// second, the others at debug (scanners send any name).
    last_warn: AtomicU64,
}

impl Resolver {
    pub fn new(
        store: Arc<CertStore>,
        default: Option<Arc<CertifiedKey>>,
        listener: impl Into<String>,
    ) -> Self {
        Self {
            store,
            default,
            listener: listener.into(),
            last_warn: AtomicU64::new(0),
        }
    }

    /// The certificate for a handshake with this SNI (`None`: no SNI).
    pub fn choose(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        if let Some(c) = sni.and_then(|n| self.store.lookup(n)) {
            return Some(c);
        }
        if self.default.is_none() {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let sni = sni.unwrap_or("(none)");
            if self.last_warn.swap(now, Ordering::Relaxed) != now {
                tracing::warn!(listener = %self.listener, sni, "TLS handshake refused: no certificate for this name and no default certificate");
            } else {
                tracing::debug!(listener = %self.listener, sni, "TLS handshake refused: no certificate for this name and no default certificate");
            }
        }
        self.default.clone()
    }
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolver")
            .field("listener", &self.listener)
            .field("default", &self.default.is_some())
            .field("store", &self.store)
            .finish()
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.choose(hello.server_name())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn cert(name: &str) -> Arc<CertifiedKey> {
        let c = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
        let loaded = super::super::certs::load(
            c.cert.pem().as_bytes(),
            c.signing_key.serialize_pem().as_bytes(),
            &rustls::crypto::ring::default_provider(),
        )
        .unwrap();
        loaded.key
    }

    fn is(a: &Option<Arc<CertifiedKey>>, b: &Arc<CertifiedKey>) -> bool {
        a.as_ref().is_some_and(|a| Arc::ptr_eq(a, b))
    }

    #[test]
    fn exact_wildcard_and_default() {
        let store = CertStore::new();
        let exact = cert("a.example.com");
        let wild = cert("*.example.com");
        let default = cert("default");
        store.set(Source::Redis, "a.example.com", Some(exact.clone()));
        store.set(Source::Redis, "*.example.com", Some(wild.clone()));
        let r = Resolver::new(store.clone(), Some(default.clone()), "test");
        assert!(is(&r.choose(Some("a.example.com")), &exact));
        assert!(is(&r.choose(Some("A.Example.COM.")), &exact));
        assert!(is(&r.choose(Some("b.example.com")), &wild));
        // One label deep only, and never the bare domain.
        assert!(is(&r.choose(Some("x.b.example.com")), &default));
        assert!(is(&r.choose(Some("example.com")), &default));
        assert!(is(&r.choose(Some("other.org")), &default));
        assert!(is(&r.choose(None), &default));
        assert!(is(&r.choose(Some(".")), &default));
        let none = Resolver::new(store.clone(), None, "test");
        assert!(none.choose(Some("other.org")).is_none());
        assert!(is(&none.choose(Some("b.example.com")), &wild));
        store.set(Source::Redis, "*.example.com", None);
        assert!(none.choose(Some("b.example.com")).is_none());
    }

    #[test]
    fn directory_wins_over_redis() {
        let store = CertStore::new();
        let from_dir = cert("a.test");
        let from_redis = cert("a.test");
        store.set(Source::Redis, "a.test", Some(from_redis.clone()));
        store.replace(
            Source::Dir,
            Names::from([("a.test".to_owned(), from_dir.clone())]),
        );
        assert!(is(&store.lookup("a.test"), &from_dir));
        store.replace(Source::Dir, Names::new());
        assert!(is(&store.lookup("a.test"), &from_redis));
        assert_eq!(store.len(), 1);
    }
}
