//! Deterministic test data: pseudo-random bytes that never repeat a block (so deduplication
//! cannot hide a wrong tree), the same on every machine for the same seed.

use std::io::{BufWriter, Write};
use std::path::Path;

/// xorshift64*: a tiny deterministic byte stream; different seeds give different files.
#[derive(Debug, Clone)]
pub struct Prng(u64);

impl Prng {
    /// A stream for `seed`.
    pub fn new(seed: u64) -> Prng {
        // Never zero (xorshift's fixed point); mix the seed so near seeds differ at once.
        Prng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 8 bytes, as a number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Fills `buf` with the next bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// `len` bytes of the stream for `seed`.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    Prng::new(seed).fill(&mut v);
    v
}

/// Writes `len` bytes of the stream for `seed` to `path`.
pub fn write_random(path: &Path, len: u64, seed: u64) -> std::io::Result<()> {
    let mut rng = Prng::new(seed);
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut buf = vec![0u8; 1 << 16];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        rng.fill(&mut buf[..n]);
        out.write_all(&buf[..n])?;
        left -= n as u64;
    }
    out.flush()
}
