//! Chunkers: how a byte stream is cut into leaves.
//!
//! Each chunker pulls from a [`std::io::Read`] and hands out one chunk at a time, so memory
//! holds at most one chunk (plus the chunker's own buffer) whatever the stream's length.
//! The names and parameters are Kubo's (`size-N`, `rabin`, `rabin-MIN-AVG-MAX`, `buzhash`),
//! and so are the cut points: the same bytes give the same chunks and so the same CIDs.

use std::io::{self, Read};

/// Kubo's default chunk size (`size-262144`).
pub const DEFAULT_CHUNK_SIZE: usize = 256 * 1024;
/// The largest chunk Cairn will produce or accept as a parameter (Kubo's limit is 1 MiB).
pub const MAX_CHUNK_SIZE: usize = 1024 * 1024;

/// A source of chunks.
pub trait Chunker: Send {
    /// The next chunk, or `None` at the end of the stream. Chunks are never empty.
    fn next_chunk(&mut self) -> io::Result<Option<Vec<u8>>>;
}

/// A chunker named the way Kubo's `--chunker` names it.
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
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("bad chunker {spec:?}: {reason}")]
pub struct ChunkerSpecError {
    /// The string as given.
    pub spec: String,
    /// What is wrong with it.
    pub reason: String,
}
