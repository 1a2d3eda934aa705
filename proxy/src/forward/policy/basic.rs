//! HTTP Basic authentication (RFC 7617) against a policy's htpasswd-style
//! entries (`docs/policies.md`, "Basic authentication").
//!
//! A decoded policy ([`BasicAuth`], whose `id` is new at every decode) is
//! compiled on its first request: its entries parsed ([`htpasswd`]), its
//! challenge built, and an empty cache of verified credentials made for
//! it. The compiled policy lives as long as the decoded one: a changed
//! document is a new policy with a new, empty cache, so a removed user or
//! a changed password is refused from the change on, and the old cache
//! goes when the old document does.
//!
//! # Cost
//! bcrypt is slow by design (about 50 ms of a core at cost 10, the usual
//! choice of `htpasswd -B`), and a browser sends its credentials with
//! every request. So a verified `Authorization` value is remembered: the
//! cache holds successes only, keyed by a SHA-256 of the value with a
//! random per-policy salt (neither the password nor a plain digest of it
//! is kept), at most [`CACHE_ENTRIES`] per policy, the oldest forgotten
//! first. A request whose credentials were verified once costs a hash of
//! its header and a map lookup.
//!
//! Slow checks (bcrypt, SHA-crypt, `$apr1$`) run on the blocking pool, at
//! most as many at once as the machine has cores; a check that waits
//! longer than [`CHECK_WAIT`] for its turn is answered 503. A flood of
//! wrong passwords costs that much CPU and no more, and never stalls the
//! threads that serve other requests.
//!
//! An unknown user is checked against a stand-in (the policy's first slow
//! entry, if any), so the time a refusal takes does not tell which users
//! exist.
//! Nothing here logs a password, a hash, or the user of a request.

mod htpasswd;

use std::collections::{HashMap, HashSet, VecDeque};
use std::num::NonZeroUsize;
use std::sync::{Arc, LazyLock, OnceLock, Weak};
use std::time::Duration;

use hipache_schema::routes::policies::BasicAuth;
use http::header::{self, HeaderValue};
use http::{HeaderMap, StatusCode};
use parking_lot::Mutex;
use rand::Rng;
use sha2::{Digest as _, Sha256};
use tokio::sync::Semaphore;

use self::htpasswd::PasswordHash;
use super::Denial;

/// Verified credentials remembered per policy.
pub const CACHE_ENTRIES: usize = 1024;

/// How long a slow check may wait for a core before the request is
/// answered 503.
pub const CHECK_WAIT: Duration = Duration::from_secs(5);

/// Longest `Authorization` value looked at; longer ones are refused
/// unread (RFC 7617 credentials are a user name and a password).
const MAX_CREDENTIALS: usize = 4096;

/// Lets the request through when its `Authorization: Basic` credentials
/// match an entry of `auth`; 401 with `WWW-Authenticate` otherwise, 503
/// when the check could not get a core in time.
pub async fn check(auth: &Arc<BasicAuth>, headers: &HeaderMap) -> Result<(), Denial> {
    let cell = compiled(auth);
    let policy = cell.get_or_init(|| Compiled::new(auth));
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(policy.refusal("no credentials"));
    };
    let key = policy.cache_key(value);
    if policy.cache.lock().contains(&key) {
        return Ok(());
    }
    let Some((user, password)) = credentials(value) else {
        return Err(policy.refusal("malformed credentials"));
    };
    let entry = policy.users.get(user.as_str());
    let Some(hash) = entry.or(policy.stand_in.as_ref()).cloned() else {
        // No usable entry at all: nothing to pretend to check.
        return Err(policy.refusal("bad credentials"));
    };
    let matched = if hash.is_slow() {
        slow_verify(hash, password).await?
    } else {
        hash.verify(&password)
    };
    if matched && entry.is_some() {
        policy.cache.lock().insert(key);
        Ok(())
    } else {
        Err(policy.refusal("bad credentials"))
    }
}

/// A policy ready to check requests.
struct Compiled {
    /// `Basic realm="…", charset="UTF-8"`.
    challenge: HeaderValue,
    /// The entries that parsed; the others were logged and refuse.
    users: HashMap<String, PasswordHash>,
    /// What an unknown user's password is checked against.
    stand_in: Option<PasswordHash>,
    salt: [u8; 16],
    cache: Mutex<Verified>,
}

impl Compiled {
    fn new(auth: &BasicAuth) -> Self {
        let mut users = HashMap::with_capacity(auth.users.len());
        let mut stand_in: Option<PasswordHash> = None;
        for (user, hash) in &auth.users {
            match PasswordHash::parse(hash) {
                Ok(h) => {
                    // A slow entry when there is one: most users' cost.
                    if stand_in
                        .as_ref()
                        .is_none_or(|s| !s.is_slow() && h.is_slow())
                    {
                        stand_in = Some(h.clone());
                    }
                    users.insert(user.clone(), h);
                }
                // The user is named by the document, which operators may
                // read; the hash is not repeated.
                Err(e) => tracing::warn!(
                    realm = %auth.realm,
                    user = %user,
                    error = %e,
                    "basic authentication entry refused: this user cannot sign in"
                ),
            }
        }
        let challenge = format!("Basic realm=\"{}\", charset=\"UTF-8\"", auth.realm);
        Compiled {
            challenge: HeaderValue::from_bytes(challenge.as_bytes())
                .unwrap_or_else(|_| HeaderValue::from_static("Basic realm=\"Restricted\"")),
            users,
            stand_in,
            salt: rand::rng().random(),
            cache: Mutex::new(Verified::default()),
        }
    }

    fn refusal(&self, reason: &'static str) -> Denial {
        Denial::new(StatusCode::UNAUTHORIZED, reason)
            .with(header::WWW_AUTHENTICATE, self.challenge.clone())
    }

    fn cache_key(&self, value: &HeaderValue) -> [u8; 32] {
        Sha256::new()
            .chain_update(self.salt)
            .chain_update(value.as_bytes())
            .finalize()
            .into()
    }
}

/// Keys of verified credentials, oldest first.
#[derive(Default)]
struct Verified {
    keys: HashSet<[u8; 32]>,
    order: VecDeque<[u8; 32]>,
}

impl Verified {
    fn contains(&self, key: &[u8; 32]) -> bool {
        self.keys.contains(key)
    }

    fn insert(&mut self, key: [u8; 32]) {
        if !self.keys.insert(key) {
            return;
        }
        self.order.push_back(key);
        while self.order.len() > CACHE_ENTRIES {
            if let Some(old) = self.order.pop_front() {
                self.keys.remove(&old);
            }
        }
    }
}

/// The compiled form of each live policy, by id. An entry goes once its
/// policy is dropped (pruned when another policy is compiled).
static COMPILED: LazyLock<Mutex<HashMap<u64, Slot>>> = LazyLock::new(Mutex::default);

struct Slot {
    source: Weak<BasicAuth>,
    compiled: Arc<OnceLock<Compiled>>,
}

/// The cell of `auth`'s compiled form, filled by its first request
/// (outside the map's lock: parsing ten thousand entries must not hold up
/// other policies' requests).
fn compiled(auth: &Arc<BasicAuth>) -> Arc<OnceLock<Compiled>> {
    let cell = {
        let mut map = COMPILED.lock();
        match map.get(&auth.id) {
            Some(slot) => slot.compiled.clone(),
            None => {
                map.retain(|_, slot| slot.source.strong_count() > 0);
                let compiled = Arc::new(OnceLock::new());
                map.insert(
                    auth.id,
                    Slot {
                        source: Arc::downgrade(auth),
                        compiled: compiled.clone(),
                    },
                );
                compiled
            }
        }
    };
    cell
}

/// Slow checks running at once, at most.
static SLOW_CHECKS: LazyLock<Arc<Semaphore>> = LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    Arc::new(Semaphore::new(cores))
});

/// Runs a slow check on the blocking pool once a core is free.
async fn slow_verify(hash: PasswordHash, password: Vec<u8>) -> Result<bool, Denial> {
    let permit = tokio::time::timeout(CHECK_WAIT, SLOW_CHECKS.clone().acquire_owned())
        .await
        .ok()
        .and_then(Result::ok)
        .ok_or_else(|| {
            Denial::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "password checks are saturated",
            )
        })?;
    let checked = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        hash.verify(&password)
    });
    Ok(checked.await.unwrap_or(false))
}

/// The user and password of a `Basic` value (RFC 7617 §2: the scheme is
/// case-insensitive, the credentials are base64 of `user:password`).
fn credentials(value: &HeaderValue) -> Option<(String, Vec<u8>)> {
    let bytes = value.as_bytes();
    if bytes.len() > MAX_CREDENTIALS || bytes.len() < 6 {
        return None;
    }
    let (scheme, rest) = bytes.split_at(5);
    if !scheme.eq_ignore_ascii_case(b"basic") || !rest.starts_with(b" ") {
        return None;
    }
    let token = rest.trim_ascii();
    // Padding is optional in practice; the rest must be canonical base64.
    let unpadded = token
        .strip_suffix(b"==")
        .or_else(|| token.strip_suffix(b"="));
    let decoded = data_encoding::BASE64_NOPAD
        .decode(unpadded.unwrap_or(token))
        .ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    let user = std::str::from_utf8(&decoded[..colon]).ok()?.to_owned();
    Some((user, decoded[colon + 1..].to_vec()))
}

#[cfg(test)]
mod tests;
