//! Where blocks come from when reading a DAG, and an in-memory map of blocks.
//!
//! Readers in this crate take a [`BlockSource`]; `cairn-node` implements it over its
//! store (and the network). [`MemoryBlocks`] serves tests and small tools, and counts the
//! reads it answers so that tests can prove a range read touches only the blocks it needs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use cid::Cid;

use crate::Block;

/// Why a block could not be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// No block with this CID is available.
    #[error("block {0} not found")]
    NotFound(Cid),
    /// The source failed (I/O, network, timeout...).
    #[error("block source failed: {0}")]
    Other(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The block is not here yet and the source does not wait for it: the caller fetches it
    /// elsewhere (on an async runtime, holding no thread) and asks again. Readers that can go
    /// on later from where they stopped say so in their docs.
    #[error("block {0} is to be fetched")]
    Pending(Cid),
}

impl SourceError {
    /// The block a read stopped at because it is to be fetched ([`SourceError::Pending`]).
    pub fn pending(&self) -> Option<Cid> {
        match self {
            SourceError::Pending(cid) => Some(*cid),
            _ => None,
        }
    }
}

/// Something that hands out the bytes of blocks by CID.
///
/// Implementations return bytes that match the CID: a store that verified them on the way
/// in, or a fetcher that verifies them on arrival.
pub trait BlockSource {
    /// The block's bytes.
    fn get(&self, cid: &Cid) -> Result<Bytes, SourceError>;

    /// A hint that `cid` will be asked for soon: a source that fetches from far away may
    /// start on it now, so that a reader walking a file in order does not wait for each block
    /// in turn. Local sources ignore it (the default).
    fn prefetch(&self, _cid: &Cid) {}

    /// A hint that a reader starts on bytes `from .. to` of the file `file`, and that `first`
    /// (a child of the file's root) is the first block below the root it needs: a source that
    /// fetches from far away may fetch the start of that stretch in one request. Local
    /// sources ignore it (the default).
    fn reading(&self, _file: &Cid, _from: u64, _to: u64, _first: &Cid) {}
}

impl<T: BlockSource + ?Sized> BlockSource for &T {
    fn get(&self, cid: &Cid) -> Result<Bytes, SourceError> {
        (**self).get(cid)
    }

    fn prefetch(&self, cid: &Cid) {
        (**self).prefetch(cid);
    }

    fn reading(&self, file: &Cid, from: u64, to: u64, first: &Cid) {
        (**self).reading(file, from, to, first);
    }
}

/// Blocks kept in a map, keyed by multihash so that CIDv0 and CIDv1 of the same bytes meet.
#[derive(Debug, Default)]
pub struct MemoryBlocks {
    map: HashMap<Vec<u8>, Bytes>,
    reads: AtomicUsize,
}

impl MemoryBlocks {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a block; returns false when it was already there.
    pub fn insert(&mut self, block: Block) -> bool {
        let (cid, data) = block.into_parts();
        self.map.insert(cid.hash().to_bytes(), data).is_none()
    }

    /// Whether the block is present.
    pub fn contains(&self, cid: &Cid) -> bool {
        self.map.contains_key(&cid.hash().to_bytes())
    }

    /// Removes a block, returning its bytes.
    pub fn remove(&mut self, cid: &Cid) -> Option<Bytes> {
        self.map.remove(&cid.hash().to_bytes())
    }

    /// Number of distinct blocks.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there are no blocks.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// How many `get` calls were answered so far.
    pub fn reads(&self) -> usize {
        self.reads.load(Ordering::Relaxed)
    }

    /// Sets the read counter back to zero.
    pub fn reset_reads(&self) {
        self.reads.store(0, Ordering::Relaxed);
    }
}

impl BlockSource for MemoryBlocks {
    fn get(&self, cid: &Cid) -> Result<Bytes, SourceError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.map.get(&cid.hash().to_bytes()).cloned().ok_or(SourceError::NotFound(*cid))
    }
}
