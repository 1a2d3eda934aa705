//! IP allow- and deny-lists, on the client address as the trust model
//! decides it: the peer, or, when the peer is a trusted proxy, the address
//! it reports in `X-Forwarded-For` (the rightmost one that is not itself a
//! trusted proxy, so that a client cannot choose its own address by
//! prepending one).

use std::net::IpAddr;

use hipache_schema::routes::Policies;
use http::{HeaderMap, StatusCode};
use ipnet::IpNet;

use super::super::headers::X_FORWARDED_FOR;
use super::super::ConnInfo;
use super::Denial;

/// The address policies judge a request by; `None` when a trusted proxy
/// reports an entry that is not an address (`unknown`, garbage): the
/// client is then unknown, and policies that need its address refuse
/// rather than judge the entry to its left, which the client wrote.
pub fn client_address(conn: &ConnInfo, headers: &HeaderMap, trusted: &[IpNet]) -> Option<IpAddr> {
    let peer = conn.peer.ip().to_canonical();
    if !conn.trusted {
        return Some(peer);
    }
    let entries: Vec<&str> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .map(|v| v.to_str().unwrap_or("?"))
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    if entries.is_empty() {
        return Some(peer);
    }
    let mut leftmost = peer;
    for entry in entries.into_iter().rev() {
        let addr = parse_entry(entry)?;
        if !trusted.iter().any(|n| n.contains(&addr)) {
            return Some(addr);
        }
        leftmost = addr;
    }
    // Every hop is a trusted proxy: the first of them is the client.
    Some(leftmost)
}

/// An `X-Forwarded-For` entry: an address, `v4:port` or `[v6]:port`.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    if let Ok(a) = entry.parse::<IpAddr>() {
        return Some(a.to_canonical());
    }
    if let Ok(sa) = entry.parse::<std::net::SocketAddr>() {
        return Some(sa.ip().to_canonical());
    }
    entry
        .strip_prefix('[')
        .and_then(|e| e.strip_suffix(']'))
        .and_then(|e| e.parse::<IpAddr>().ok())
}

/// 403 unless the address is in the allow-list (when there is one) and
/// not in the deny-list. An unknown client passes neither list.
pub fn check(p: &Policies, client: Option<IpAddr>) -> Result<(), Denial> {
    if p.ip_allow.is_none() && p.ip_deny.is_none() {
        return Ok(());
    }
    let Some(client) = client else {
        return Err(Denial::new(StatusCode::FORBIDDEN, "client address unknown"));
    };
    let inside = |nets: &[IpNet]| nets.iter().any(|n| n.contains(&client));
    if p.ip_allow.as_ref().is_some_and(|l| !inside(l)) {
        return Err(Denial::new(
            StatusCode::FORBIDDEN,
            "client address not allowed",
        ));
    }
    if p.ip_deny.as_ref().is_some_and(|l| inside(l)) {
        return Err(Denial::new(StatusCode::FORBIDDEN, "client address denied"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn conn(peer: &str, trusted: bool) -> ConnInfo {
        ConnInfo {
            peer: format!("{peer}:1000").parse().expect("peer"),
            local: "127.0.0.1:80".parse().expect("local"),
            tls: false,
            trusted,
            debug_allowed: false,
        }
    }

    #[test]
    fn the_forwarded_address_counts_only_behind_a_trusted_proxy() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().expect("net")];
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            "6.6.6.6, 203.0.113.9, 10.0.0.2".parse().expect("value"),
        );
        let ip = |s: &str| Some(s.parse::<IpAddr>().expect("ip"));
        let behind = client_address(&conn("10.0.0.1", true), &h, &trusted);
        assert_eq!(behind, ip("203.0.113.9"), "rightmost untrusted");
        let direct = client_address(&conn("198.51.100.1", false), &h, &trusted);
        assert_eq!(
            direct,
            ip("198.51.100.1"),
            "a client's own header is ignored"
        );
        for (xff, want) in [
            ("203.0.113.9, unknown", None),
            ("203.0.113.9, 198.51.100.1:5555", ip("198.51.100.1")),
            ("203.0.113.9, [2001:db8::1]:443", ip("2001:db8::1")),
            ("203.0.113.9, garbage, 10.0.0.3", None),
            ("10.0.0.3", ip("10.0.0.3")),
        ] {
            let mut h = HeaderMap::new();
            h.insert("x-forwarded-for", xff.parse().expect("value"));
            let got = client_address(&conn("10.0.0.1", true), &h, &trusted);
            assert_eq!(got, want, "{xff}");
        }
    }

    #[test]
    fn allow_then_deny() {
        let p = Policies {
            ip_allow: Some(Arc::new(vec![
                "10.0.0.0/8".parse().expect("net"),
                "2001:db8::/32".parse().expect("net"),
            ])),
            ip_deny: Some(Arc::new(vec!["10.1.0.0/16".parse().expect("net")])),
            ..Policies::default()
        };
        let ip = |s: &str| Some(s.parse::<IpAddr>().expect("ip"));
        assert!(check(&p, ip("10.2.3.4")).is_ok());
        assert!(check(&p, None).is_err(), "an unknown client is not allowed");
        assert!(check(&p, ip("2001:db8::1")).is_ok());
        assert_eq!(
            check(&p, ip("10.1.3.4")).map_err(|d| d.status),
            Err(StatusCode::FORBIDDEN)
        );
        assert!(check(&p, ip("192.0.2.1")).is_err());
        assert!(check(&Policies::default(), ip("192.0.2.1")).is_ok());
    }
}
