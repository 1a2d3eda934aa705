//! The PROXY protocol on the listeners: a load balancer in
//! `server.proxyProtocolFrom` opens each connection with a header (v1 text
//! or v2 binary) carrying the client's address, which then stands for the
//! peer everywhere (logs, forwarding headers, allow lists, rate limits).
//!
//! The header is parsed by the `ppp` crate; what is here is reading it off
//! the socket: bytes are read until `ppp` has a whole header, and what
//! arrived after it (the start of the TLS handshake or of the request) is
//! handed back first by [`Prefixed`], so nothing is read past the header
//! and lost. A peer of `proxyProtocolFrom` must send a header: one that
//! sends none, or garbage, is closed (a load balancer that stopped sending
//! it would otherwise make every client look like the balancer). From any
//! other peer a header is not looked for: a forged one is bytes of a bad
//! request.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use ipnet::IpNet;
use ppp::{v1, v2, HeaderResult, PartialResult};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// How long a header may take when `tlsHandshakeTimeout` is off.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest header read: v1 is at most 107 bytes, v2 16 plus its
/// addresses and TLVs; a balancer's TLVs (AWS's VPC endpoint id, Azure's
/// link id, SSL details) fit many times over.
pub const MAX_HEADER: usize = 4096;

/// Whether connections from `peer` must carry a header.
pub fn required(from: &[IpNet], peer: SocketAddr) -> bool {
    let ip = peer.ip().to_canonical();
    from.iter().any(|n| n.contains(&ip))
}

/// Reads the header from `stream` within `timeout`: the client's address
/// (the peer's own for a `LOCAL` or `UNKNOWN` header, a balancer's health
/// check) and the stream with what followed the header.
pub async fn accept<S>(
    mut stream: S,
    peer: SocketAddr,
    timeout: Duration,
) -> Result<(SocketAddr, Prefixed<S>), String>
where
    S: AsyncRead + Unpin,
{
    let mut buf = Vec::with_capacity(256);
    let read = async {
        loop {
            let mut chunk = [0u8; 512];
            let n = stream
                .read(&mut chunk)
                .await
                .map_err(|e| format!("reading the PROXY header: {e}"))?;
            if n == 0 {
                return Err("closed before a PROXY header".to_owned());
            }
            buf.extend_from_slice(&chunk[..n]);
            let parsed = HeaderResult::parse(&buf);
            if parsed.is_incomplete() && buf.len() < MAX_HEADER {
                continue;
            }
            return client(parsed, peer);
        }
    };
    let (client, used) = tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| format!("no PROXY header within {timeout:?}"))??;
    let rest = buf.split_off(used);
    Ok((client, Prefixed::new(rest, stream)))
}

/// The client address of a parsed header, and the header's length.
fn client(parsed: HeaderResult<'_>, peer: SocketAddr) -> Result<(SocketAddr, usize), String> {
    match parsed {
        HeaderResult::V1(Ok(h)) => {
            let addr = match h.addresses {
                v1::Addresses::Tcp4(a) => SocketAddr::from((a.source_address, a.source_port)),
                v1::Addresses::Tcp6(a) => SocketAddr::from((a.source_address, a.source_port)),
                v1::Addresses::Unknown => peer,
            };
            Ok((addr, h.header.len()))
        }
        HeaderResult::V2(Ok(h)) => {
            let addr = match (h.command, h.addresses) {
                (v2::Command::Proxy, v2::Addresses::IPv4(a)) => {
                    SocketAddr::from((a.source_address, a.source_port))
                }
                (v2::Command::Proxy, v2::Addresses::IPv6(a)) => {
                    SocketAddr::from((a.source_address, a.source_port))
                }
                _ => peer,
            };
            Ok((addr, h.len()))
        }
        HeaderResult::V1(Err(e)) => Err(format!("not a PROXY header: {e}")),
        HeaderResult::V2(Err(e)) => Err(format!("not a PROXY header: {e}")),
    }
}

/// A stream that first yields `prefix` (bytes read past a header), then
/// the inner stream's.
pub struct Prefixed<S> {
    prefix: Vec<u8>,
    at: usize,
    inner: S,
}

impl<S> Prefixed<S> {
    pub fn new(prefix: Vec<u8>, inner: S) -> Self {
        Self {
            prefix,
            at: 0,
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.at < this.prefix.len() {
            let left = &this.prefix[this.at..];
            let n = left.len().min(out.remaining());
            out.put_slice(&left[..n]);
            this.at += n;
            if this.at == this.prefix.len() {
                this.prefix = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, out)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, b)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    async fn parse(bytes: &[u8]) -> Result<(SocketAddr, Vec<u8>), String> {
        let (mut client, server) = tokio::io::duplex(64);
        let bytes = bytes.to_vec();
        // Written in small pieces: a header split over packets.
        tokio::spawn(async move {
            for piece in bytes.chunks(7) {
                client.write_all(piece).await.unwrap();
            }
            client.shutdown().await.unwrap();
        });
        let peer: SocketAddr = "10.0.0.1:40000".parse().unwrap();
        let (addr, mut rest) = accept(server, peer, Duration::from_secs(2)).await?;
        let mut after = Vec::new();
        rest.read_to_end(&mut after).await.unwrap();
        Ok((addr, after))
    }

    fn v2(command: u8, family: u8, addresses: &[u8]) -> Vec<u8> {
        let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        h.push(0x20 | command);
        h.push(family);
        h.extend_from_slice(&(addresses.len() as u16).to_be_bytes());
        h.extend_from_slice(addresses);
        h
    }

    #[tokio::test]
    async fn v1_and_v2_headers_give_the_client_and_keep_what_follows() {
        let (addr, rest) = parse(b"PROXY TCP4 203.0.113.7 10.0.0.2 51234 80\r\nGET / HTTP/1.1\r\n")
            .await
            .unwrap();
        assert_eq!(addr, "203.0.113.7:51234".parse().unwrap());
        assert_eq!(rest, b"GET / HTTP/1.1\r\n");
        let (addr, _) = parse(b"PROXY TCP6 2001:db8::7 2001:db8::1 443 8443\r\n")
            .await
            .unwrap();
        assert_eq!(addr, "[2001:db8::7]:443".parse().unwrap());

        let mut ipv4 = vec![198, 51, 100, 9, 10, 0, 0, 2];
        ipv4.extend_from_slice(&40001u16.to_be_bytes());
        ipv4.extend_from_slice(&443u16.to_be_bytes());
        let mut bytes = v2(1, 0x11, &ipv4);
        bytes.extend_from_slice(b"\x16\x03\x01");
        let (addr, rest) = parse(&bytes).await.unwrap();
        assert_eq!(addr, "198.51.100.9:40001".parse().unwrap());
        assert_eq!(rest, b"\x16\x03\x01");
    }

    #[tokio::test]
    async fn local_and_unknown_keep_the_peer() {
        let (addr, _) = parse(&v2(0, 0x00, &[])).await.unwrap();
        assert_eq!(addr, "10.0.0.1:40000".parse().unwrap());
        let (addr, _) = parse(b"PROXY UNKNOWN\r\n").await.unwrap();
        assert_eq!(addr, "10.0.0.1:40000".parse().unwrap());
    }

    #[tokio::test]
    async fn no_header_or_garbage_is_refused() {
        assert!(parse(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await.is_err());
        assert!(parse(b"PROXY TCP4 not-an-ip 10.0.0.2 1 2\r\n")
            .await
            .is_err());
        assert!(parse(b"").await.is_err());
        assert!(parse(&vec![b'P'; MAX_HEADER + 10]).await.is_err());
    }
}
