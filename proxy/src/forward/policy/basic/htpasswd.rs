//! Password hashes of htpasswd entries, checked against the password a
//! client sent.
//!
//! Schemes, and who computes them:
//! - bcrypt (`$2y$`, `$2a$`, `$2b$`; Apache's `htpasswd -B`): the `bcrypt`
//!   crate.
//! - SHA-256 and SHA-512 crypt (`$5$`, `$6$`; `htpasswd -2` / `-5`, `mkpasswd`,
//!   `openssl passwd -5` / `-6`): RustCrypto's `sha-crypt`.
//! - SHA-1 (`{SHA}`, `htpasswd -s`): base64 of the SHA-1 digest, with the
//!   `sha1` crate.
//! - Apache MD5 (`$apr1$`, `htpasswd`'s default): written here over the
//!   `md-5` crate. It is the FreeBSD MD5-crypt loop with Apache's magic
//!   string, some forty lines; no maintained crate does it (`pwhash` knows
//!   only `$1$` and has had no release in years, `htpasswd-verify` pulls the
//!   unmaintained `rust-crypto`), and its test vectors below come from
//!   Apache's `htpasswd` and OpenSSL's `passwd -apr1`.
//!
//! Plain-text passwords and crypt(3) DES are refused (a route document
//! cannot even hold them: its decoding accepts only the prefixes above);
//! so are malformed hashes and those whose work factor would let one
//! document tie up the proxy's CPU: bcrypt above cost [`MAX_BCRYPT_COST`],
//! SHA-crypt above [`MAX_SHA_CRYPT_ROUNDS`] rounds.
//!
//! Every comparison of a computed digest with the stored one takes the
//! same time whatever the bytes (`subtle`).

use std::fmt;

use md5::{Digest as _, Md5};
use sha_crypt::{PasswordVerifier as _, ShaCrypt};
use subtle::ConstantTimeEq as _;

/// bcrypt's work factor above which an entry is refused: each step
/// doubles the work, and cost 14 is nearly a second of one core per check
/// (cost 10, `htpasswd -B`'s usual choice, about 50 ms).
pub const MAX_BCRYPT_COST: u32 = 14;

/// SHA-crypt rounds above which an entry is refused (the default is 5,000,
/// under a millisecond; 1,000,000 is about 0.2 s of one core per check).
pub const MAX_SHA_CRYPT_ROUNDS: u32 = 1_000_000;

/// A parsed password hash.
#[derive(Clone)]
pub enum PasswordHash {
    /// The whole `$2?$cost$salthash` string, handed to `bcrypt`.
    Bcrypt(String),
    /// The whole `$5$...` or `$6$...` string, handed to `sha-crypt`.
    ShaCrypt(String),
    /// `$apr1$salt$digest`: the salt and the 22-character encoded digest.
    Apr1 { salt: String, digest: String },
    /// `{SHA}`: the SHA-1 digest.
    Sha1([u8; 20]),
}

/// Why a hash is not usable. Never holds the hash itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashError {
    /// No scheme this proxy checks (plain text, crypt(3) DES, `$1$`, ...).
    UnknownScheme,
    /// A known scheme, but malformed.
    Malformed(&'static str),
    /// A work factor above what is accepted.
    TooCostly(&'static str),
}

impl fmt::Display for HashError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HashError::UnknownScheme => f.write_str(
                "not a hash of a supported scheme ($2y$, $2a$, $2b$, $5$, $6$, $apr1$, {SHA})",
            ),
            HashError::Malformed(what) => write!(f, "malformed hash: {what}"),
            HashError::TooCostly(what) => write!(f, "work factor too high: {what}"),
        }
    }
}

impl fmt::Debug for PasswordHash {
    /// The scheme only: a hash is as good as a password to an offline
    /// attacker and stays out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.scheme())
    }
}

impl PasswordHash {
    /// Parses and checks `hash` (the part after `user:`).
    pub fn parse(hash: &str) -> Result<Self, HashError> {
        if let Some(rest) = ["$2y$", "$2a$", "$2b$"]
            .iter()
            .find_map(|p| hash.strip_prefix(p))
        {
            // `cost$` then 53 characters of bcrypt's base64 (salt, digest).
            let (cost, body) = rest
                .split_once('$')
                .ok_or(HashError::Malformed("bcrypt needs $cost$"))?;
            let cost: u32 = match cost.as_bytes() {
                [a, b] if a.is_ascii_digit() && b.is_ascii_digit() => {
                    u32::from(a - b'0') * 10 + u32::from(b - b'0')
                }
                _ => return Err(HashError::Malformed("bcrypt cost must be two digits")),
            };
            if !(4..=31).contains(&cost) {
                return Err(HashError::Malformed("bcrypt cost must be from 04 to 31"));
            }
            if cost > MAX_BCRYPT_COST {
                return Err(HashError::TooCostly("bcrypt cost above 14"));
            }
            if body.len() != 53 || !body.bytes().all(is_crypt64) {
                return Err(HashError::Malformed("bcrypt salt and digest"));
            }
            return Ok(PasswordHash::Bcrypt(hash.to_owned()));
        }
        if hash.starts_with("$5$") || hash.starts_with("$6$") {
            let fields: Vec<&str> = hash[3..].split('$').collect();
            let (rounds, salt, digest) = match fields.as_slice() {
                [salt, digest] => (None, *salt, *digest),
                [rounds, salt, digest] => (Some(*rounds), *salt, *digest),
                _ => return Err(HashError::Malformed("SHA-crypt needs $salt$digest")),
            };
            if let Some(r) = rounds {
                let n: u32 = r
                    .strip_prefix("rounds=")
                    .and_then(|n| n.parse().ok())
                    .ok_or(HashError::Malformed("SHA-crypt rounds=N"))?;
                if n < 1000 {
                    return Err(HashError::Malformed("SHA-crypt rounds below 1000"));
                }
                if n > MAX_SHA_CRYPT_ROUNDS {
                    return Err(HashError::TooCostly("SHA-crypt rounds above 1000000"));
                }
            }
            let digest_len = if hash.starts_with("$5$") { 43 } else { 86 };
            if salt.len() > 16 || salt.bytes().any(|b| b == b':' || b == b'\n') {
                return Err(HashError::Malformed("SHA-crypt salt"));
            }
            if digest.len() != digest_len || !digest.bytes().all(is_crypt64) {
                return Err(HashError::Malformed("SHA-crypt digest"));
            }
            return Ok(PasswordHash::ShaCrypt(hash.to_owned()));
        }
        if let Some(rest) = hash.strip_prefix(APR1_MAGIC) {
            let (salt, digest) = rest
                .split_once('$')
                .ok_or(HashError::Malformed("$apr1$ needs salt$digest"))?;
            if salt.is_empty() || salt.len() > 8 || !salt.bytes().all(is_crypt64) {
                return Err(HashError::Malformed("$apr1$ salt"));
            }
            if digest.len() != 22 || !digest.bytes().all(is_crypt64) {
                return Err(HashError::Malformed("$apr1$ digest"));
            }
            return Ok(PasswordHash::Apr1 {
                salt: salt.to_owned(),
                digest: digest.to_owned(),
            });
        }
        if let Some(b64) = hash.strip_prefix("{SHA}") {
            let bytes = data_encoding::BASE64
                .decode(b64.as_bytes())
                .map_err(|_| HashError::Malformed("{SHA} must be base64"))?;
            let digest: [u8; 20] = bytes
                .try_into()
                .map_err(|_| HashError::Malformed("{SHA} must be a 20-byte digest"))?;
            return Ok(PasswordHash::Sha1(digest));
        }
        Err(HashError::UnknownScheme)
    }

    /// The scheme's name, for logs and metrics.
    pub fn scheme(&self) -> &'static str {
        match self {
            PasswordHash::Bcrypt(_) => "bcrypt",
            PasswordHash::ShaCrypt(h) if h.starts_with("$5$") => "sha256-crypt",
            PasswordHash::ShaCrypt(_) => "sha512-crypt",
            PasswordHash::Apr1 { .. } => "apr1",
            PasswordHash::Sha1(_) => "sha1",
        }
    }

    /// Whether a check costs milliseconds or more (bcrypt, SHA-crypt): such
    /// checks run off the request threads and their successes are cached.
    pub fn is_slow(&self) -> bool {
        matches!(self, PasswordHash::Bcrypt(_) | PasswordHash::ShaCrypt(_))
    }

    /// Whether `password` is the one hashed.
    pub fn verify(&self, password: &[u8]) -> bool {
        match self {
            PasswordHash::Bcrypt(h) => bcrypt::verify(password, h).unwrap_or(false),
            PasswordHash::ShaCrypt(h) => ShaCrypt::default()
                .verify_password(password, h.as_str())
                .is_ok(),
            PasswordHash::Apr1 { salt, digest } => apr1(password, salt.as_bytes())
                .as_bytes()
                .ct_eq(digest.as_bytes())
                .into(),
            PasswordHash::Sha1(digest) => {
                let computed = sha1::Sha1::digest(password);
                computed.as_slice().ct_eq(digest.as_slice()).into()
            }
        }
    }
}

const APR1_MAGIC: &str = "$apr1$";

/// The alphabet of crypt(3)'s base64 (also bcrypt's, in another order; the
/// set of characters is the same).
const CRYPT64: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn is_crypt64(b: u8) -> bool {
    b == b'.' || b == b'/' || b.is_ascii_alphanumeric()
}

/// Apache's MD5-crypt: the 22-character encoded digest of `password` with
/// `salt` (at most 8 bytes are used).
fn apr1(password: &[u8], salt: &[u8]) -> String {
    let salt = &salt[..salt.len().min(8)];
    let alternate = Md5::new()
        .chain_update(password)
        .chain_update(salt)
        .chain_update(password)
        .finalize();
    let mut ctx = Md5::new()
        .chain_update(password)
        .chain_update(APR1_MAGIC)
        .chain_update(salt);
    let mut left = password.len();
    while left > 0 {
        let n = left.min(16);
        ctx.update(&alternate[..n]);
        left -= n;
    }
    let mut bits = password.len();
    while bits != 0 {
        if bits & 1 == 1 {
            ctx.update([0u8]);
        } else {
            ctx.update(&password[..1]);
        }
        bits >>= 1;
    }
    let mut digest = ctx.finalize();
    for round in 0..1000 {
        let mut ctx = Md5::new();
        if round & 1 == 1 {
            ctx.update(password);
        } else {
            ctx.update(digest);
        }
        if round % 3 != 0 {
            ctx.update(salt);
        }
        if round % 7 != 0 {
            ctx.update(password);
        }
        if round & 1 == 1 {
            ctx.update(digest);
        } else {
            ctx.update(password);
        }
        digest = ctx.finalize();
    }
    let d = digest;
    let mut out = String::with_capacity(22);
    for (a, b, c) in [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)] {
        let v = (u32::from(d[a]) << 16) | (u32::from(d[b]) << 8) | u32::from(d[c]);
        push_crypt64(&mut out, v, 4);
    }
    push_crypt64(&mut out, u32::from(d[11]), 2);
    out
}

/// `n` characters of crypt(3)'s base64 of `v`, least significant first.
fn push_crypt64(out: &mut String, mut v: u32, n: usize) {
    for _ in 0..n {
        out.push(char::from(CRYPT64[(v & 0x3f) as usize]));
        v >>= 6;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `htpasswd -nb...` (Apache 2.4) and `openssl passwd` outputs.
    const VECTORS: &[(&str, &str)] = &[
        (
            "correct horse",
            "$2y$05$/rlgThVOdNXqElPtEnovSOw8T82fTyTkyFecDJZdzc191us3g1L6O",
        ),
        ("b0b:pa$$ word", "$apr1$G/a.trdz$ZWYphjc1p25fi4l3ZuAIr0"),
        ("password", "$apr1$abcdefgh$FBwExRW4dCc8aL.OvjpIE1"),
        ("carol-secret", "{SHA}zDWP8f33jIgtzBU4G57UXp/L1Eg="),
        (
            "dave pass",
            "$6$4WnIPzG4zajCN/KG$0NYQWSuibMFeiHDA/NwKVwMniGmF5xVTEhAJYuC7vRi3rukY0a8F7D7nzf5.x0Oyh8iw1AGupgmkMCcFQuFAg.",
        ),
        (
            "erin pass",
            "$5$UyPyBePhzx06TnbZ$.LcBWFtwpK./2KpaROpJB99hEVdpqku01fq2rzEVoV7",
        ),
        (
            "hello world",
            "$5$saltsalt$iCSto/1y3LK1GxFWJB6bg2L4y8RyFskzzyTdhOwyBe3",
        ),
        (
            "x",
            "$6$rounds=1000$salty$QPFj3.m1ewSFHUWts2qvPd2VXfg4aKrzabKHueCxxs7Q5d5n30gZDU4B/zgMPEeNzRrn.njkD3hejilyZ50u3.",
        ),
    ];

    #[test]
    fn known_hashes_verify_and_wrong_passwords_do_not() {
        for (password, hash) in VECTORS {
            let h = PasswordHash::parse(hash).unwrap_or_else(|e| panic!("{hash}: {e}"));
            assert!(h.verify(password.as_bytes()), "{} {hash}", h.scheme());
            assert!(!h.verify(b"wrong"), "{hash}");
            assert!(!h.verify(b""), "{hash}");
            let mut longer = password.as_bytes().to_vec();
            longer.push(b'!');
            assert!(!h.verify(&longer), "{hash}");
        }
    }

    #[test]
    fn bcrypt_variants_share_the_algorithm() {
        let y = "$2y$05$/rlgThVOdNXqElPtEnovSOw8T82fTyTkyFecDJZdzc191us3g1L6O";
        for prefix in ["$2a$", "$2b$"] {
            let h = PasswordHash::parse(&y.replacen("$2y$", prefix, 1)).expect("parse");
            assert!(h.verify(b"correct horse"));
        }
    }

    #[test]
    fn refused_hashes() {
        for (hash, want) in [
            ("plaintext", HashError::UnknownScheme),
            ("7AI1qEOzrAslw", HashError::UnknownScheme),
            ("$1$abc$def", HashError::UnknownScheme),
            (
                "$2y$15$/rlgThVOdNXqElPtEnovSOw8T82fTyTkyFecDJZdzc191us3g1L6O",
                HashError::TooCostly("bcrypt cost above 14"),
            ),
            (
                "$6$rounds=5000000$salty$QPFj3.m1ewSFHUWts2qvPd2VXfg4aKrzabKHueCxxs7Q5d5n30gZDU4B/zgMPEeNzRrn.njkD3hejilyZ50u3.",
                HashError::TooCostly("SHA-crypt rounds above 1000000"),
            ),
        ] {
            assert_eq!(PasswordHash::parse(hash).err(), Some(want), "{hash}");
        }
        for malformed in [
            "$2y$5$/rlgThVOdNXqElPtEnovSOw8T82fTyTkyFecDJZdzc191us3g1L6O",
            "$2y$05$short",
            "$apr1$G/a.trdz$ZWYphjc1p25fi4l3ZuAIr",
            "$apr1$toolongsalt$ZWYphjc1p25fi4l3ZuAIr0",
            "{SHA}not base64!",
            "{SHA}AAAA",
            "$5$salt",
            "$6$rounds=10$salt$x",
        ] {
            assert!(
                matches!(PasswordHash::parse(malformed), Err(HashError::Malformed(_))),
                "{malformed}"
            );
        }
    }

    #[test]
    fn debug_shows_the_scheme_only() {
        let h = PasswordHash::parse("$apr1$G/a.trdz$ZWYphjc1p25fi4l3ZuAIr0").expect("parse");
        assert_eq!(format!("{h:?}"), "apr1");
    }
}
