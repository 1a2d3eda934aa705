//! The PROXY protocol header a rule's `proxyProtocol` sends first on each
//! backend connection: the client's address (after any PROXY header a load
//! balancer gave the proxy) and the address it reached the proxy on, so
//! that a backend behind the proxy sees the real client as if the proxy
//! were not there. Built with the ppp crate, which also reads the headers
//! load balancers send the proxy (`server::proxy_protocol`).

use std::net::{IpAddr, SocketAddr};

use hipache_schema::routes::ProxyProtocol;
use ppp::v2;

/// The header of `version` for a connection from `client` to `local`.
/// Mixed address families (an IPv4 client on an IPv6 listener) are both
/// written as IPv6, IPv4 ones as mapped addresses.
pub fn header(version: ProxyProtocol, client: SocketAddr, local: SocketAddr) -> Vec<u8> {
    let (src, dst) = same_family(client, local);
    match version {
        ProxyProtocol::V1 => ppp::v1::Addresses::from((src, dst))
            .to_string()
            .into_bytes(),
        ProxyProtocol::V2 => v2::Builder::with_addresses(
            v2::Version::Two | v2::Command::Proxy,
            v2::Protocol::Stream,
            (src, dst),
        )
        .build()
        .unwrap_or_default(),
    }
}

fn same_family(a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr) {
    let canonical = |s: SocketAddr| SocketAddr::new(s.ip().to_canonical(), s.port());
    let (a, b) = (canonical(a), canonical(b));
    if a.is_ipv4() == b.is_ipv4() {
        return (a, b);
    }
    let v6 = |s: SocketAddr| match s.ip() {
        IpAddr::V4(ip) => SocketAddr::new(IpAddr::V6(ip.to_ipv6_mapped()), s.port()),
        IpAddr::V6(_) => s,
    };
    (v6(a), v6(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_name_the_client_and_the_listener() {
        let client: SocketAddr = "203.0.113.7:51000".parse().expect("addr");
        let local: SocketAddr = "10.0.0.1:80".parse().expect("addr");
        assert_eq!(
            header(ProxyProtocol::V1, client, local),
            b"PROXY TCP4 203.0.113.7 10.0.0.1 51000 80\r\n"
        );
        let v2 = header(ProxyProtocol::V2, client, local);
        assert!(v2.starts_with(b"\r\n\r\n\0\r\nQUIT\n"), "{v2:?}");
        assert_eq!(v2.len(), 16 + 12);
        match ppp::HeaderResult::parse(&v2) {
            ppp::HeaderResult::V2(Ok(h)) => {
                assert_eq!(h.addresses, v2::Addresses::from((client, local)));
            }
            other => panic!("{other:?}"),
        }
        // An IPv4 client on an IPv6 listener: both as IPv6.
        let local6: SocketAddr = "[2001:db8::1]:443".parse().expect("addr");
        let text = String::from_utf8(header(ProxyProtocol::V1, client, local6)).expect("text");
        assert_eq!(
            text,
            "PROXY TCP6 ::ffff:203.0.113.7 2001:db8::1 51000 443\r\n"
        );
    }
}
