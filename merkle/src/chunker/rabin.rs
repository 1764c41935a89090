//! `rabin-MIN-AVG-MAX`: content-defined cuts from a Rabin fingerprint, as Kubo makes them.
//!
//! Kubo uses whyrusleeping/chunker (a 2015 fork of restic/chunker) with its own polynomial.
//! What decides a cut, all of it reproduced here:
//!
//! - The fingerprint of a window of [`RABIN_WINDOW`] (16) bytes is that window read as a
//!   polynomial over GF(2), most significant byte first, modulo [`KUBO_RABIN_POLYNOMIAL`]
//!   (degree 53). It rolls one byte at a time with 256-entry tables computed from the
//!   polynomial at first use: one removes the byte leaving the window, one reduces after
//!   shifting in the next.
//! - A chunk's first `MIN - 16` bytes are skipped without being hashed; the next 16 fill the
//!   window. After each later byte, from the chunk's `MIN`th on, the chunk is cut if the
//!   fingerprint's low `floor(log2(AVG))` bits are all zero, or if the chunk has reached `MAX`.
//! - After a cut everything starts over: the window is reset, so a cut depends only on the
//!   bytes of its own chunk. At the end of the stream whatever is left is the last chunk.

use std::borrow::Cow;
use std::fmt;
use std::io::{self, Read};
use std::sync::OnceLock;

use super::{Chunker, ChunkerSpecError, Lookahead};

/// The irreducible polynomial of degree 53 that Kubo's `rabin` chunker uses
/// (`0x3df305dfb2a805`).
pub const KUBO_RABIN_POLYNOMIAL: u64 = 17_437_180_132_763_653;

/// The fingerprint window, in bytes.
pub const RABIN_WINDOW: usize = 16;

/// The fingerprint the reference starts each chunk with: its window is reset to fifteen zero
/// bytes and a one, and that lone one leaves the window as the sixteenth real byte enters.
const START_DIGEST: u64 = 1;

/// Polynomial degrees the table method handles in 64-bit arithmetic.
const DEGREES: std::ops::RangeInclusive<u32> = 8..=56;

/// Lookup tables for one polynomial.
#[derive(Clone)]
struct Tables {
    /// `out[b]`: the fingerprint of `b` followed by fifteen zero bytes, which is what a byte
    /// `b` contributes when it is about to leave the window.
    out: [u64; 256],
    /// `reduce[t]`: cancels the eight bits `t` that a shift pushed above the polynomial's
    /// degree and adds their remainder, so one XOR reduces the shifted fingerprint.
    reduce: [u64; 256],
    /// `roll[b]`: `out[b]` shifted by one byte and reduced, so that removing a leaving byte
    /// and appending the next take one XOR each, off the critical path (see
    /// [`Tables::slide`]).
    roll: [u64; 256],
    /// The polynomial's degree minus eight: where those eight bits sit before the shift.
    shift: u32,
}

/// The degree of a non-zero polynomial.
fn degree(p: u64) -> u32 {
    63 - p.leading_zeros()
}

/// `x mod p` over GF(2); `p` must not be zero.
fn pol_mod(mut x: u64, p: u64) -> u64 {
    let dp = degree(p);
    while x != 0 && degree(x) >= dp {
        x ^= p << (degree(x) - dp);
    }
    x
}

impl Tables {
    /// `pol`'s degree must be in [`DEGREES`].
    fn build(pol: u64) -> Tables {
        let deg = degree(pol);
        let mut out = [0u64; 256];
        let mut reduce = [0u64; 256];
        for (b, (out, reduce)) in (0u64..).zip(out.iter_mut().zip(reduce.iter_mut())) {
            let mut h = pol_mod(b, pol);
            for _ in 1..RABIN_WINDOW {
                h = pol_mod(h << 8, pol);
            }
            *out = h;
            *reduce = pol_mod(b << deg, pol) | (b << deg);
        }
        let mut tables = Tables { out, reduce, roll: [0; 256], shift: deg - 8 };
        for b in 0..=255u8 {
            let i = usize::from(b);
            tables.roll[i] = tables.push(tables.out[i], 0);
        }
        tables
    }

    fn kubo() -> &'static Tables {
        static KUBO: OnceLock<Tables> = OnceLock::new();
        KUBO.get_or_init(|| Tables::build(KUBO_RABIN_POLYNOMIAL))
    }

    /// Appends `byte` to the fingerprint `digest` (which is always below `2^degree`).
    #[inline(always)]
    fn push(&self, digest: u64, byte: u8) -> u64 {
        // The invariant makes the top bits fit a byte; `as u8` keeps the index in range.
        let top = (digest >> self.shift) as u8;
        ((digest << 8) | u64::from(byte)) ^ self.reduce[usize::from(top)]
    }

    /// Slides the window one byte: `old` leaves, `new` enters. The same as
    /// `push(digest ^ out[old], new)`, since both steps are linear over GF(2), but only the
    /// reduction of `digest` itself is on the loop's dependency chain.
    #[inline(always)]
    fn slide(&self, digest: u64, old: u8, new: u8) -> u64 {
        let top = (digest >> self.shift) as u8;
        let shifted = ((digest << 8) | u64::from(new)) ^ self.roll[usize::from(old)];
        shifted ^ self.reduce[usize::from(top)]
    }
}

/// Kubo's `rabin` chunker. Chunks are between `min` and `max` bytes (the last may be shorter)
/// and `avg` sets how often the fingerprint cuts.
pub struct RabinChunker<R> {
    input: Lookahead<R>,
    tables: Cow<'static, Tables>,
    min: usize,
    mask: u64,
    last_fingerprint: u64,
}

impl<R: Read> RabinChunker<R> {
    /// Kubo's chunker with its polynomial. Needs `min` ≥ [`RABIN_WINDOW`], `avg` ≥ 1 and
    /// `max` ≥ `min`; Kubo's stricter string rules (`min < avg < max ≤ MAX_CHUNK_SIZE`) are enforced
    /// where chunker strings are parsed ([`super::ChunkerSpec`]).
    pub fn new(reader: R, min: usize, avg: usize, max: usize) -> Result<Self, ChunkerSpecError> {
        Self::with_polynomial(reader, KUBO_RABIN_POLYNOMIAL, min, avg, max)
    }

    /// The same algorithm with another polynomial (of degree 8 to 56), for instance to check
    /// it against the reference implementation's published test vectors. The tables are
    /// computed from the polynomial.
    pub fn with_polynomial(
        reader: R,
        polynomial: u64,
        min: usize,
        avg: usize,
        max: usize,
    ) -> Result<Self, ChunkerSpecError> {
        let fail = |reason: String| ChunkerSpecError { spec: format!("rabin-{min}-{avg}-{max}"), reason };
        if polynomial == 0 || !DEGREES.contains(&degree(polynomial)) {
            return Err(fail(format!("polynomial {polynomial:#x} must have a degree from 8 to 56")));
        }
        if min < RABIN_WINDOW {
            return Err(fail(format!("rabin min must be at least {RABIN_WINDOW}")));
        }
        if avg == 0 {
            return Err(fail("rabin avg must be at least 1".into()));
        }
        if max < min {
            return Err(fail("rabin max must not be smaller than rabin min".into()));
        }
        let tables = if polynomial == KUBO_RABIN_POLYNOMIAL {
            Cow::Borrowed(Tables::kubo())
        } else {
            Cow::Owned(Tables::build(polynomial))
        };
        Ok(Self::from_parts(reader, tables, min, avg, max))
    }

    /// Kubo's polynomial with parameters that were validated already.
    pub(super) fn kubo_unchecked(reader: R, min: usize, avg: usize, max: usize) -> Self {
        Self::from_parts(reader, Cow::Borrowed(Tables::kubo()), min, avg, max)
    }

    fn from_parts(reader: R, tables: Cow<'static, Tables>, min: usize, avg: usize, max: usize) -> Self {
        let min = min.max(RABIN_WINDOW);
        // The low floor(log2(avg)) bits, as the reference derives them from avg.
        let mask = (1u64 << avg.max(1).ilog2()) - 1;
        RabinChunker { input: Lookahead::new(reader, max.max(min)), tables, min, mask, last_fingerprint: START_DIGEST }
    }

    /// The fingerprint at the end of the last chunk handed out (the reference calls it the
    /// chunk's `Cut`): the fingerprint of the chunk's last 16 bytes, or, for a last chunk that
    /// ended before its window was full, what the reference's partly filled window holds
    /// (1 if no byte reached it).
    pub fn last_fingerprint(&self) -> u64 {
        self.last_fingerprint
    }
}

/// Where the chunk at the start of `data` ends, and the fingerprint there. `data` holds the
/// next `max` bytes of the stream, or all that is left of it if that is less.
fn find_cut(tables: &Tables, min: usize, mask: u64, data: &[u8]) -> (usize, u64) {
    let len = data.len();
    let skip = min - RABIN_WINDOW;
    let mut digest = START_DIGEST;
    if len <= skip {
        return (len, digest);
    }
    let warm_end = len.min(min);
    for (k, &byte) in data[skip..warm_end].iter().enumerate() {
        if k == RABIN_WINDOW - 1 {
            // The reset window's one byte leaves as the sixteenth real byte enters.
            digest ^= tables.out[1];
        }
        digest = tables.push(digest, byte);
    }
    if len < min || digest & mask == 0 {
        return (warm_end, digest);
    }
    let leaving = &data[skip..len - RABIN_WINDOW];
    let entering = &data[min..];
    for (i, (&old, &new)) in leaving.iter().zip(entering).enumerate() {
        digest = tables.slide(digest, old, new);
        if digest & mask == 0 {
            return (min + i + 1, digest);
        }
    }
    (len, digest)
}

impl<R: Read + Send> Chunker for RabinChunker<R> {
    fn next_chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        let data = self.input.fill()?;
        if data.is_empty() {
            return Ok(None);
        }
        let (cut, fingerprint) = find_cut(&self.tables, self.min, self.mask, data);
        self.last_fingerprint = fingerprint;
        Ok(Some(self.input.take(cut)))
    }
}

impl<R> fmt::Debug for RabinChunker<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabinChunker")
            .field("min", &self.min)
            .field("mask", &format_args!("{:#x}", self.mask))
            .field("max", &self.input.want)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fingerprint of `window` computed byte by byte with plain polynomial division.
    fn fingerprint(window: &[u8], pol: u64) -> u64 {
        window.iter().fold(0, |h, &b| pol_mod((h << 8) | u64::from(b), pol))
    }

    fn bytes(len: usize) -> Vec<u8> {
        (0..len as u64).map(|i| (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8).collect()
    }

    #[test]
    fn kubo_polynomial_has_degree_53() {
        assert_eq!(degree(KUBO_RABIN_POLYNOMIAL), 53);
        let tables = Tables::kubo();
        assert_eq!(tables.shift, 45);
        assert_eq!(tables.out[0], 0);
        assert_eq!(
            tables.out[1],
            fingerprint(&[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], KUBO_RABIN_POLYNOMIAL)
        );
    }

    #[test]
    fn rolling_fingerprint_is_the_window_fingerprint() {
        let tables = Tables::kubo();
        let data = bytes(5000);
        let byte_back = |i: usize, back: usize| i.checked_sub(back).map_or(0, |j| data[j]);
        let mut digest = 0;
        for (i, &b) in data.iter().enumerate() {
            let old = byte_back(i, RABIN_WINDOW);
            let unfolded = tables.push(digest ^ tables.out[usize::from(old)], b);
            assert_eq!(tables.slide(digest, old, b), unfolded);
            digest = unfolded;
            let start = (i + 1).saturating_sub(RABIN_WINDOW);
            assert_eq!(digest, fingerprint(&data[start..=i], KUBO_RABIN_POLYNOMIAL), "at {i}");
        }
    }

    #[test]
    fn cuts_respect_min_and_max() {
        let tables = Tables::kubo();
        let data = bytes(1000);
        // Too short to reach the window: all of it, with the reset fingerprint.
        assert_eq!(find_cut(tables, 100, u64::MAX, &data[..84]), (84, START_DIGEST));
        // A mask that never matches: cut at the end of what is in view (the max).
        assert_eq!(find_cut(tables, 100, u64::MAX, &data[..300]).0, 300);
        // A mask that always matches: cut at the min, with the window's fingerprint.
        let (cut, fp) = find_cut(tables, 100, 0, &data);
        assert_eq!((cut, fp), (100, fingerprint(&data[84..100], KUBO_RABIN_POLYNOMIAL)));
    }
}
