//! ingress-nginx's annotations (`nginx.ingress.kubernetes.io/*`) on our
//! Ingresses: none is translated yet, so none may pass silently.
//!
//! An Ingress written for ingress-nginx means what its annotations say. One
//! that restricts who gets in (an allow list, authentication, a rate limit,
//! a WAF, or a snippet, which can do any of these) must not be served
//! without that restriction: it is refused whole, and its Event says which
//! annotation and why, unless the operator opts into serving such
//! Ingresses unprotected (`--serve-unsupported-protections`). Every other
//! annotation of the prefix is reported (a Warning Event naming it) and
//! the Ingress is served without it. Snippets are never executed, whatever
//! the flag: configuration is data here, so the injections of
//! ingress-nginx's snippet annotations (CVE-2025-1974, CVE-2026-24512)
//! cannot exist.

use k8s_openapi::api::networking::v1::Ingress;

/// The annotations of ingress-nginx.
pub const PREFIX: &str = "nginx.ingress.kubernetes.io/";

/// ingress-nginx's annotations that decide who may reach the backends
/// (names after the prefix): whole names, then name patterns.
const PROTECTIVE: &[&str] = &[
    "satisfy",
    "enable-modsecurity",
    "enable-owasp-core-rules",
    "modsecurity-transaction-id",
    "global-rate-limit",
    "global-rate-limit-window",
    "global-rate-limit-key",
    "global-rate-limit-ignored-cidrs",
];

/// Whether an annotation (the name after [`PREFIX`]) restricts access:
/// every `auth-*` (basic, digest, external, client certificates), every
/// `*-source-range` (allow and deny lists), every `limit-*` (rate and
/// connection limits), every `*-snippet` (arbitrary configuration), the
/// WAF and global rate limits.
pub fn protects(name: &str) -> bool {
    name.starts_with("auth-")
        || name.ends_with("-source-range")
        || name.starts_with("limit-")
        || name.ends_with("-snippet")
        || name.starts_with("modsecurity-")
        || PROTECTIVE.contains(&name)
}

/// An Ingress's ingress-nginx annotations, by what happens to them (full
/// annotation names, sorted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Found {
    /// They restrict access and are not supported.
    pub protective: Vec<String>,
    /// Not supported; the Ingress is served without them.
    pub ignored: Vec<String>,
}

/// Classifies the ingress-nginx annotations of `ing`.
pub fn found(ing: &Ingress) -> Found {
    let mut out = Found::default();
    let Some(annotations) = &ing.metadata.annotations else {
        return out;
    };
    for name in annotations.keys() {
        let Some(short) = name.strip_prefix(PREFIX) else {
            continue;
        };
        match protects(short) {
            true => out.protective.push(name.clone()),
            false => out.ignored.push(name.clone()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/migrating-from-ingress-nginx.md lists ingress-nginx's
    /// annotations with what the syncer does to each: its "Today" column
    /// is [`protects`], row by row.
    #[test]
    fn the_migration_guide_says_what_the_rule_does() {
        let guide = include_str!("../../../docs/migrating-from-ingress-nginx.md");
        let mut rows = 0;
        for line in guide.lines().filter(|l| l.starts_with("| `")) {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let name = cells[1].trim_matches('`');
            let refused = cells[2].starts_with("refused");
            assert_eq!(refused, protects(name), "{name}: {}", cells[2]);
            rows += 1;
        }
        assert!(rows >= 100, "the guide lists {rows} annotations");
    }

    #[test]
    fn protective_annotations_of_ingress_nginx() {
        for name in [
            "whitelist-source-range",
            "denylist-source-range",
            "auth-type",
            "auth-url",
            "auth-signin",
            "auth-secret",
            "auth-tls-secret",
            "limit-rps",
            "limit-connections",
            "satisfy",
            "configuration-snippet",
            "server-snippet",
            "auth-snippet",
            "enable-modsecurity",
            "modsecurity-snippet",
            "global-rate-limit",
        ] {
            assert!(protects(name), "{name}");
        }
        for name in [
            "rewrite-target",
            "ssl-redirect",
            "proxy-body-size",
            "canary-weight",
            "backend-protocol",
            "enable-cors",
        ] {
            assert!(!protects(name), "{name}");
        }
    }
}
