//! PEM certificate chains and private keys into rustls `CertifiedKey`s,
//! with the DNS names (SAN) the certificate is for.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why a certificate could not be loaded. Never fatal at run time: the
/// certificate is logged and skipped.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("no certificate in the PEM data")]
    NoCertificate,
    #[error("invalid certificate PEM: {0}")]
    CertPem(String),
    #[error("no private key in the PEM data (PKCS#8, PKCS#1 or SEC1 expected)")]
    NoKey,
    #[error("private key not usable: {0}")]
    Key(String),
    #[error("the certificate is not valid X.509: {0}")]
    Certificate(String),
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// A certificate ready to serve, and the names it is valid for.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub key: Arc<CertifiedKey>,
    /// DNS names of the subject alternative names, lower-cased, wildcards
    /// (`*.example.com`) included. Empty when the certificate has none.
    pub names: Vec<String>,
}

/// Every certificate of a PEM text, in order (end entity first).
pub fn parse_chain(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::CertPem(e.to_string()))?;
    if chain.is_empty() {
        return Err(CertError::NoCertificate);
    }
    Ok(chain)
}

/// Parses a chain and its private key (they may be in the same text) and
/// checks that the key belongs to the end-entity certificate.
pub fn load(
    cert_pem: &[u8],
    key_pem: &[u8],
    provider: &CryptoProvider,
) -> Result<Loaded, CertError> {
    let chain = parse_chain(cert_pem)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => CertError::NoKey,
        other => CertError::Key(other.to_string()),
    })?;
    let names = dns_names(&chain[0])?;
    let certified =
        CertifiedKey::from_der(chain, key, provider).map_err(|e| CertError::Key(e.to_string()))?;
    Ok(Loaded {
        key: Arc::new(certified),
        names,
    })
}

/// The SAN DNS names of a certificate, lower-cased.
pub fn dns_names(cert: &CertificateDer<'_>) -> Result<Vec<String>, CertError> {
    let parsed =
        webpki::EndEntityCert::try_from(cert).map_err(|e| CertError::Certificate(e.to_string()))?;
    let mut names: Vec<String> = parsed
        .valid_dns_names()
        .map(|n| n.trim_end_matches('.').to_ascii_lowercase())
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}

/// Reads a file for [`load`].
pub fn read(path: &std::path::Path) -> Result<Vec<u8>, CertError> {
    std::fs::read(path).map_err(|source| CertError::Io {
        path: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn provider() -> CryptoProvider {
        rustls::crypto::ring::default_provider()
    }

    fn self_signed(names: &[&str]) -> rcgen::CertifiedKey<rcgen::KeyPair> {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        rcgen::generate_simple_self_signed(names).unwrap()
    }

    #[test]
    fn loads_names_and_key() {
        let c = self_signed(&["a.example.com", "*.Example.org"]);
        let loaded = load(
            c.cert.pem().as_bytes(),
            c.signing_key.serialize_pem().as_bytes(),
            &provider(),
        )
        .unwrap();
        assert_eq!(loaded.names, ["*.example.org", "a.example.com"]);
        // Chain and key in one text.
        let both = format!("{}{}", c.cert.pem(), c.signing_key.serialize_pem());
        assert!(load(both.as_bytes(), both.as_bytes(), &provider()).is_ok());
    }

    #[test]
    fn refuses_bad_input() {
        let a = self_signed(&["a.test"]);
        let b = self_signed(&["b.test"]);
        let p = provider();
        let key_a = a.signing_key.serialize_pem();
        assert!(matches!(
            load(b"garbage", key_a.as_bytes(), &p),
            Err(CertError::NoCertificate)
        ));
        assert!(matches!(
            load(a.cert.pem().as_bytes(), b"", &p),
            Err(CertError::NoKey)
        ));
        // Key of another certificate.
        let key_b = b.signing_key.serialize_pem();
        assert!(matches!(
            load(a.cert.pem().as_bytes(), key_b.as_bytes(), &p),
            Err(CertError::Key(_))
        ));
        // A PEM block whose DER is not a certificate.
        let junk = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(load(junk.as_bytes(), key_a.as_bytes(), &p).is_err());
    }
}
