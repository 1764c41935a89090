//! `size-N`: every chunk is N bytes, except a shorter last one.

use std::fmt;
use std::io::{self, Read};

use super::{Chunker, ChunkerSpecError};

/// Kubo's `size-N` chunker: reads N bytes at a time straight into the chunk it returns.
///
/// Short reads are retried until the chunk is full or the stream ends, so the cut points do not
/// depend on how the reader splits its reads. An empty stream yields no chunk at all.
pub struct FixedSizeChunker<R> {
    reader: R,
    size: usize,
    done: bool,
}

impl<R: Read> FixedSizeChunker<R> {
    /// Chunks of `size` bytes. Any size from 1 up is accepted here; Kubo's limit ([`super::MAX_CHUNK_SIZE`]) is
    /// enforced where chunker strings are parsed ([`super::ChunkerSpec`]).
    pub fn new(reader: R, size: usize) -> Result<Self, ChunkerSpecError> {
        if size == 0 {
            return Err(ChunkerSpecError { spec: "size-0".into(), reason: "chunk size must be greater than 0".into() });
        }
        Ok(Self::unchecked(reader, size))
    }

    /// `size` must be at least 1.
    pub(super) fn unchecked(reader: R, size: usize) -> Self {
        FixedSizeChunker { reader, size: size.max(1), done: false }
    }
}

impl<R: Read + Send> Chunker for FixedSizeChunker<R> {
    fn next_chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        if self.done {
            return Ok(None);
        }
        let mut chunk = vec![0u8; self.size];
        let mut filled = 0;
        while filled < chunk.len() {
            match self.reader.read(&mut chunk[filled..]) {
                Ok(0) => {
                    self.done = true;
                    break;
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if filled == 0 {
            return Ok(None);
        }
        if filled < chunk.len() {
            // Only the last chunk is short; give back the space it does not use.
            chunk.truncate(filled);
            chunk.shrink_to_fit();
        }
        Ok(Some(chunk))
    }
}

impl<R> fmt::Debug for FixedSizeChunker<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FixedSizeChunker").field("size", &self.size).field("done", &self.done).finish()
    }
}
