//! Chunkers: how a byte stream is cut into leaves.
//!
//! Each chunker pulls from a [`std::io::Read`] and hands out one chunk at a time, so memory
//! holds at most one chunk (plus the chunker's own buffer) whatever the stream's length.
//! The names and parameters are Kubo's (`size-N`, `rabin`, `rabin-MIN-AVG-MAX`, `buzhash`),
//! and so are the cut points: the same bytes give the same chunks and so the same CIDs.
//!
//! - [`FixedSizeChunker`]: `size-N`, every chunk N bytes but the last.
//! - [`RabinChunker`]: `rabin-MIN-AVG-MAX`, a Rabin fingerprint over a 16-byte window.
//! - [`BuzhashChunker`]: `buzhash`, a cyclic-polynomial hash over a 32-byte window.
//!
//! Every chunker is deterministic in the bytes alone: how the reader splits its reads, and
//! whether it returns [`io::ErrorKind::Interrupted`] now and then, never moves a cut.

mod buzhash;
mod fixed;
mod rabin;

use std::fmt;
use std::io::{self, Read};
use std::str::FromStr;

pub use buzhash::{BuzhashChunker, BUZHASH_MAX, BUZHASH_MIN, BUZHASH_TABLE};
pub use fixed::FixedSizeChunker;
pub use rabin::{RabinChunker, KUBO_RABIN_POLYNOMIAL, RABIN_WINDOW};

/// Kubo's default chunk size (`size-262144`).
pub const DEFAULT_CHUNK_SIZE: usize = 256 * 1024;
/// The largest chunk Cairn will produce or accept as a parameter: 2 MiB − 256 bytes, Kubo's
/// limit since v0.40 (boxo `ChunkSizeLimit`: a 2 MiB block, the most Bitswap carries, less room
/// for a leaf's UnixFS wrapping). Kubo v0.39 and earlier stopped at 1 MiB.
pub const MAX_CHUNK_SIZE: usize = 2 * 1024 * 1024 - 256;
/// The smallest `min` Kubo accepts in `rabin-MIN-AVG-MAX` (the fingerprint window's length).
pub const RABIN_MIN_SIZE: usize = RABIN_WINDOW;

/// A source of chunks.
pub trait Chunker: Send {
    /// The next chunk, or `None` at the end of the stream. Chunks are never empty.
    fn next_chunk(&mut self) -> io::Result<Option<Vec<u8>>>;
}

/// A chunker named the way Kubo's `--chunker` names it.
///
/// Parse one with [`str::parse`] (Kubo's rules and error cases), print one with
/// [`fmt::Display`] (the canonical string, which parses back to the same value), and turn one
/// into a [`Chunker`] with [`ChunkerSpec::build`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChunkerSpec {
    /// `size-N`: fixed-size chunks of N bytes.
    Size(usize),
    /// `rabin-MIN-AVG-MAX` (and `rabin`, which is `rabin-87381-262144-393216`).
    Rabin {
        /// Smallest chunk.
        min: usize,
        /// Target average chunk.
        avg: usize,
        /// Largest chunk.
        max: usize,
    },
    /// `buzhash`: content-defined chunks between 128 KiB and 512 KiB.
    Buzhash,
}

impl Default for ChunkerSpec {
    fn default() -> Self {
        ChunkerSpec::Size(DEFAULT_CHUNK_SIZE)
    }
}

/// A `--chunker` string that cannot be used.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("bad chunker {spec:?}: {reason}")]
pub struct ChunkerSpecError {
    /// The string as given.
    pub spec: String,
    /// What is wrong with it.
    pub reason: String,
}

impl ChunkerSpecError {
    fn new(spec: impl Into<String>, reason: impl Into<String>) -> Self {
        ChunkerSpecError { spec: spec.into(), reason: reason.into() }
    }
}

impl ChunkerSpec {
    /// Kubo's `rabin-AVG`: `min` is a third of `avg` and `max` is one and a half `avg`
    /// (integer division, as Kubo does it). `rabin` alone is `rabin_with_avg(262144)`.
    pub fn rabin_with_avg(avg: usize) -> Self {
        ChunkerSpec::Rabin { min: avg / 3, avg, max: avg.saturating_add(avg / 2) }
    }

    /// Checks the rules Kubo applies when it parses a chunker string, for a value that was
    /// built in code rather than parsed: `size-N` needs 1 ≤ N ≤ [`MAX_CHUNK_SIZE`], and
    /// `rabin-MIN-AVG-MAX` needs [`RABIN_MIN_SIZE`] ≤ MIN < AVG < MAX ≤ [`MAX_CHUNK_SIZE`].
    pub fn validate(&self) -> Result<(), ChunkerSpecError> {
        let fail = |reason: String| Err(ChunkerSpecError::new(self.to_string(), reason));
        match *self {
            ChunkerSpec::Size(0) => fail("chunk size must be greater than 0".into()),
            ChunkerSpec::Size(n) if n > MAX_CHUNK_SIZE => fail(too_big(n)),
            ChunkerSpec::Size(_) | ChunkerSpec::Buzhash => Ok(()),
            ChunkerSpec::Rabin { min, avg, max } => {
                if min < RABIN_MIN_SIZE {
                    fail(format!("rabin min must be at least {RABIN_MIN_SIZE} (got {min})"))
                } else if min >= avg {
                    fail("rabin min must be smaller than rabin avg".into())
                } else if avg >= max {
                    fail("rabin avg must be smaller than rabin max".into())
                } else if max > MAX_CHUNK_SIZE {
                    fail(too_big(max))
                } else {
                    Ok(())
                }
            }
        }
    }

    /// The largest chunk this chunker can produce.
    pub fn max_chunk_len(&self) -> usize {
        match *self {
            ChunkerSpec::Size(n) => n,
            ChunkerSpec::Rabin { max, .. } => max,
            ChunkerSpec::Buzhash => BUZHASH_MAX,
        }
    }

    /// A chunker of this kind reading from `reader`.
    ///
    /// A value that [`ChunkerSpec::validate`] rejects (it can only have been built in code: the
    /// parser never returns one) gives a chunker whose every call fails with
    /// [`io::ErrorKind::InvalidInput`].
    pub fn build<'a, R: Read + Send + 'a>(&self, reader: R) -> Box<dyn Chunker + 'a> {
        if let Err(e) = self.validate() {
            return Box::new(Refused(e));
        }
        match *self {
            ChunkerSpec::Size(size) => Box::new(FixedSizeChunker::unchecked(reader, size)),
            ChunkerSpec::Rabin { min, avg, max } => Box::new(RabinChunker::kubo_unchecked(reader, min, avg, max)),
            ChunkerSpec::Buzhash => Box::new(BuzhashChunker::new(reader)),
        }
    }
}

fn too_big(n: usize) -> String {
    format!("chunker parameters may not exceed the maximum chunk size of {MAX_CHUNK_SIZE} (got {n})")
}

impl fmt::Display for ChunkerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ChunkerSpec::Size(n) => write!(f, "size-{n}"),
            ChunkerSpec::Rabin { min, avg, max } => write!(f, "rabin-{min}-{avg}-{max}"),
            ChunkerSpec::Buzhash => f.write_str("buzhash"),
        }
    }
}

/// Parses Kubo's `--chunker` strings, with Kubo's checks:
///
/// - `""` and `default`: `size-262144`.
/// - `size-N`: 1 ≤ N ≤ [`MAX_CHUNK_SIZE`].
/// - `rabin`: `rabin-262144`.
/// - `rabin-AVG`: see [`ChunkerSpec::rabin_with_avg`]; the derived max must not exceed
///   [`MAX_CHUNK_SIZE`]. Kubo takes any AVG here, but one below 48 makes a min below
///   [`RABIN_MIN_SIZE`] (Kubo then never cuts at all), and Cairn refuses it.
/// - `rabin-MIN-AVG-MAX`, each number optionally labelled (`rabin-min:16-avg:32-max:64`):
///   [`RABIN_MIN_SIZE`] ≤ MIN < AVG < MAX ≤ [`MAX_CHUNK_SIZE`].
/// - `buzhash`.
///
/// Numbers are read as Go's `strconv.Atoi` reads them: decimal, with an optional sign.
impl FromStr for ChunkerSpec {
    type Err = ChunkerSpecError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let fail = |reason: String| ChunkerSpecError::new(spec, reason);
        if spec.is_empty() || spec == "default" {
            return Ok(ChunkerSpec::default());
        }
        let parts: Vec<&str> = spec.split('-').collect();
        match parts.as_slice() {
            ["size", n] => {
                let n = parse_number(n).map_err(&fail)?;
                if n <= 0 {
                    return Err(fail("chunk size must be greater than 0".into()));
                }
                let n = to_size(n).map_err(&fail)?;
                if n > MAX_CHUNK_SIZE {
                    return Err(fail(too_big(n)));
                }
                Ok(ChunkerSpec::Size(n))
            }
            ["size", ..] => Err(fail("expected size-N".into())),
            ["rabin"] => Ok(ChunkerSpec::rabin_with_avg(DEFAULT_CHUNK_SIZE)),
            ["rabin", avg] => {
                let avg = parse_number(avg).map_err(&fail)?;
                let chosen = ChunkerSpec::rabin_with_avg(to_size(avg.max(0)).map_err(&fail)?);
                if chosen.max_chunk_len() > MAX_CHUNK_SIZE {
                    return Err(fail(too_big(chosen.max_chunk_len())));
                }
                if avg < 3 * RABIN_MIN_SIZE as i64 {
                    return Err(fail(format!(
                        "rabin avg must be at least {} so that its min (avg/3) is at least \
                         {RABIN_MIN_SIZE}",
                        3 * RABIN_MIN_SIZE
                    )));
                }
                Ok(chosen)
            }
            ["rabin", min, avg, max] => {
                let min = labelled_number(min, "min").map_err(&fail)?;
                if min < RABIN_MIN_SIZE as i64 {
                    return Err(fail(format!("rabin min must be at least {RABIN_MIN_SIZE}")));
                }
                let avg = labelled_number(avg, "avg").map_err(&fail)?;
                let max = labelled_number(max, "max").map_err(&fail)?;
                if min >= avg {
                    return Err(fail("rabin min must be smaller than rabin avg".into()));
                }
                if avg >= max {
                    return Err(fail("rabin avg must be smaller than rabin max".into()));
                }
                let (min, avg, max) = (to_size(min), to_size(avg), to_size(max));
                let (min, avg, max) = (min.map_err(&fail)?, avg.map_err(&fail)?, max.map_err(&fail)?);
                if max > MAX_CHUNK_SIZE {
                    return Err(fail(too_big(max)));
                }
                Ok(ChunkerSpec::Rabin { min, avg, max })
            }
            ["rabin", ..] => Err(fail("expected rabin, rabin-AVG or rabin-MIN-AVG-MAX".into())),
            ["buzhash"] => Ok(ChunkerSpec::Buzhash),
            ["buzhash", ..] => Err(fail("buzhash takes no parameters".into())),
            _ => Err(fail("unrecognized chunker (use size-N, rabin, rabin-MIN-AVG-MAX or buzhash)".into())),
        }
    }
}

/// A decimal integer with an optional sign, as Go's `strconv.Atoi` takes it.
fn parse_number(text: &str) -> Result<i64, String> {
    text.parse::<i64>().map_err(|e| format!("{text:?} is not a number: {e}"))
}

/// `min:16` or `16` for the label `min`.
fn labelled_number(part: &str, label: &str) -> Result<i64, String> {
    let mut pieces = part.split(':');
    let first = pieces.next().unwrap_or_default();
    match pieces.next_back() {
        None => parse_number(first),
        Some(_) if first != label => Err(format!("expected the label {label:?}, got {first:?}")),
        Some(value) => parse_number(value),
    }
}

fn to_size(n: i64) -> Result<usize, String> {
    usize::try_from(n).map_err(|_| format!("{n} is out of range"))
}

/// What [`ChunkerSpec::build`] returns for a spec that fails validation.
struct Refused(ChunkerSpecError);

impl Chunker for Refused {
    fn next_chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        Err(io::Error::new(io::ErrorKind::InvalidInput, self.0.clone()))
    }
}

/// A read-ahead buffer for the content-defined chunkers: it keeps up to `want` bytes of the
/// stream ahead of the current chunk's start in view, so a cut can be searched for in one pass
/// over a plain slice, whatever sizes the reader hands out.
struct Lookahead<R> {
    reader: R,
    /// Zero-filled once, then reused; `start..end` holds unconsumed stream bytes.
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    /// How many bytes ahead a cut search needs (the chunker's largest chunk).
    want: usize,
    eof: bool,
}

impl<R: Read> Lookahead<R> {
    fn new(reader: R, want: usize) -> Self {
        Lookahead { reader, buf: Box::default(), start: 0, end: 0, want: want.max(1), eof: false }
    }

    /// The next `want` bytes of the stream, or fewer if the stream ends first (empty at the
    /// end).
    fn fill(&mut self) -> io::Result<&[u8]> {
        while self.end - self.start < self.want && !self.eof {
            if self.buf.is_empty() {
                // Twice the window, so compaction moves at most one window per window read.
                self.buf = vec![0; self.want.saturating_mul(2).max(64 * 1024)].into_boxed_slice();
            } else if self.start + self.want > self.buf.len() {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            match self.reader.read(&mut self.buf[self.end..]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let stop = self.end.min(self.start + self.want);
        Ok(&self.buf[self.start..stop])
    }

    /// Hands out the next `len` bytes (all in view after [`Lookahead::fill`]) as a chunk.
    fn take(&mut self, len: usize) -> Vec<u8> {
        let stop = self.end.min(self.start + len);
        let chunk = self.buf[self.start..stop].to_vec();
        self.start = stop;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        chunk
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands out one byte per read, failing every other call with `Interrupted`.
    struct Trickle<'a>(&'a [u8], bool);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.1 = !self.1;
            if self.1 {
                return Err(io::ErrorKind::Interrupted.into());
            }
            let n = buf.len().min(self.0.len()).min(1);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn lookahead_shows_want_bytes_and_hands_them_out_in_order() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut look = Lookahead::new(Trickle(&data, false), 40_000);
        let mut out = Vec::new();
        for take in [1, 39_999, 40_000, 12_345, 33_333].into_iter().cycle() {
            let view = look.fill().unwrap();
            let expected = &data[out.len()..data.len().min(out.len() + 40_000)];
            assert_eq!(view, expected);
            if view.is_empty() {
                break;
            }
            let take = take.min(view.len());
            out.extend(look.take(take));
        }
        assert_eq!(out, data);
    }

    #[test]
    fn parse_and_display_agree() {
        for spec in ["size-1", "rabin-16-32-64", "buzhash"] {
            assert_eq!(spec.parse::<ChunkerSpec>().unwrap().to_string(), spec);
        }
    }
}
