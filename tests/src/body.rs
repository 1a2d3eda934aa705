//! Streaming checksums and generated request bodies, so that large transfers
//! are checked byte for byte without ever being held in memory.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

/// Size of one generated chunk.
const CHUNK: usize = 64 * 1024;

/// An order-sensitive 64-bit checksum over a byte stream, independent of
/// how the stream is split into chunks. Not cryptographic: it detects lost,
/// duplicated, reordered or altered bytes, which is what the tests need.
#[derive(Debug, Clone, Default)]
pub struct Checksum {
    len: u64,
    state: u64,
    pending: [u8; 8],
    pending_len: usize,
}

impl Checksum {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next bytes of the stream.
    pub fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if self.pending_len > 0 {
            let take = (8 - self.pending_len).min(data.len());
            self.pending[self.pending_len..self.pending_len + take].copy_from_slice(&data[..take]);
            self.pending_len += take;
            data = &data[take..];
            if self.pending_len < 8 {
                return;
            }
            let word = u64::from_le_bytes(self.pending);
            self.mix(word);
            self.pending_len = 0;
        }
        let mut words = data.chunks_exact(8);
        for word in &mut words {
            let mut buf = [0u8; 8];
            buf.copy_from_slice(word);
            self.mix(u64::from_le_bytes(buf));
        }
        let rest = words.remainder();
        self.pending[..rest.len()].copy_from_slice(rest);
        self.pending_len = rest.len();
    }

    fn mix(&mut self, word: u64) {
        self.state = (self.state.rotate_left(23) ^ word).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    /// Bytes fed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The checksum of everything fed so far (the length is mixed in).
    pub fn value(&self) -> u64 {
        let mut copy = self.clone();
        let mut tail = [0u8; 8];
        tail[..self.pending_len].copy_from_slice(&self.pending[..self.pending_len]);
        copy.mix(u64::from_le_bytes(tail));
        copy.mix(self.len);
        copy.state
    }
}

/// Checksum of a whole buffer.
pub fn checksum(data: &[u8]) -> u64 {
    let mut sum = Checksum::new();
    sum.update(data);
    sum.value()
}

/// Deterministic pseudo-random bytes (xorshift64*), for bodies that must
/// not compress or repeat.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut out = vec![0u8; len];
    rng.fill(&mut out);
    out
}

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let word = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
}

/// A request body of `len` pseudo-random bytes produced chunk by chunk as
/// the connection asks for them, so a 200 MB upload costs 64 KiB here.
/// The checksum of what was actually produced is readable through
/// [`GeneratedBody::sent`] once the transfer is over.
pub struct GeneratedBody {
    remaining: u64,
    exact_len: bool,
    rng: Rng,
    sent: Arc<Mutex<Checksum>>,
}

impl GeneratedBody {
    /// A body announcing its length (sent with `Content-Length`).
    pub fn new(len: u64, seed: u64) -> Self {
        Self {
            remaining: len,
            exact_len: true,
            rng: Rng::new(seed),
            sent: Arc::default(),
        }
    }

    /// The same bytes without an announced length (sent chunked).
    pub fn chunked(mut self) -> Self {
        self.exact_len = false;
        self
    }

    /// Shared view of the checksum of the bytes produced so far.
    pub fn sent(&self) -> Arc<Mutex<Checksum>> {
        self.sent.clone()
    }
}

impl Body for GeneratedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = self.remaining.min(CHUNK as u64) as usize;
        let mut buf = vec![0u8; n];
        self.rng.fill(&mut buf);
        self.remaining -= n as u64;
        self.sent.lock().expect("checksum lock").update(&buf);
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(buf)))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        if self.exact_len {
            SizeHint::with_exact(self.remaining)
        } else {
            SizeHint::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_ignores_chunking_but_not_order() {
        let data = random_bytes(1000, 7);
        let whole = checksum(&data);
        let mut split = Checksum::new();
        for part in data.chunks(3) {
            split.update(part);
        }
        assert_eq!(split.value(), whole);
        assert_eq!(split.len(), 1000);
        let mut swapped = data.clone();
        swapped.swap(10, 500);
        assert_ne!(checksum(&swapped), whole);
        assert_ne!(checksum(&data[..999]), whole);
    }
}
