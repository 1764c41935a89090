//! Deterministic test data: pseudo-random bytes that never repeat a block (so deduplication
//! cannot hide a wrong tree), the same on every machine for the same seed.

use std::io::{BufWriter, Read, Write};
use std::path::Path;

use chacha20::cipher::{KeyIvInit, StreamCipher};
use chacha20::ChaCha20;
use sha2::{Digest, Sha256};

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

/// The bytes IPIP-499's fixtures are made of: the ChaCha20 keystream keyed by the SHA-256 of a
/// seed, with a 12-byte zero nonce and counter 0 (the recipe of Kubo's tests, which the IPIP's
/// fixtures name by seed), `len` bytes of it as a reader.
pub struct Keystream {
    cipher: ChaCha20,
    left: u64,
}

impl std::fmt::Debug for Keystream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keystream").field("left", &self.left).finish_non_exhaustive()
    }
}

impl Keystream {
    /// `len` bytes of the keystream for `seed`.
    pub fn new(seed: &str, len: u64) -> Self {
        let key: [u8; 32] = Sha256::digest(seed.as_bytes()).into();
        Keystream { cipher: ChaCha20::new(&key.into(), &[0u8; 12].into()), left: len }
    }

    /// Fills `buf` with the next bytes of the keystream, whatever is left.
    fn fill(&mut self, buf: &mut [u8]) {
        buf.fill(0);
        self.cipher.apply_keystream(buf);
    }
}

impl Read for Keystream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(usize::try_from(self.left).unwrap_or(usize::MAX));
        self.fill(&mut buf[..n]);
        self.left -= n as u64;
        Ok(n)
    }
}

/// The alphabet IPIP-499's directory fixtures draw names from (39 characters; `0` twice, as in
/// the recipe).
const NAME_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz01234567890-_";

/// The names of an IPIP-499 directory fixture: `count` names drawn in order from the keystream
/// of `seed`, each `name_len` long but the last, `last_len`; each byte picks a character.
pub fn fixture_names(seed: &str, count: usize, name_len: usize, last_len: usize) -> Vec<String> {
    let mut stream = Keystream::new(seed, u64::MAX);
    (0..count)
        .map(|i| {
            let mut raw = vec![0u8; if i + 1 == count { last_len } else { name_len }];
            stream.fill(&mut raw);
            raw.iter().map(|b| NAME_ALPHABET[usize::from(*b) % NAME_ALPHABET.len()] as char).collect()
        })
        .collect()
}
