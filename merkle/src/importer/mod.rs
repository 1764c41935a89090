//! Streaming UnixFS import: bytes in, blocks out as they are made.
//!
//! [`import_file`] pulls chunks from a [`Chunker`](crate::chunker::Chunker), turns each into a
//! leaf, and builds the tree above the leaves with the balanced or trickle layout. Every block
//! goes to a [`BlockSink`] the moment it exists, so memory holds only the leaves in flight
//! (a bounded batch being hashed) and one partly filled node per tree level: it is bounded by
//! the tree's depth times its width, never by the file's size.
//!
//! Leaves are hashed in parallel (rayon) in batches of [`LEAF_BATCH`] chunks while the next
//! batch is read; blocks still reach the sink in file order, so output is deterministic.
//!
//! [`build_directory`] and [`symlink`] make the other node kinds. Walking a file system is
//! I/O and lives in `cairn-node`; this module only sees readers and entries.

mod dir;
mod file;

pub use dir::{build_directory, symlink, DirEntry};
pub use file::{import_bytes, import_file, FileSummary};

use crate::chunker::{ChunkerSpec, ChunkerSpecError};
use crate::hamt::{DEFAULT_FANOUT, SHARDING_THRESHOLD};
use crate::hash::{CidFormat, HashAlg};
use crate::Block;

/// How many chunks are read and hashed together.
pub const LEAF_BATCH: usize = 32;
/// Kubo's default largest number of links in one file node.
pub const DEFAULT_MAX_LINKS: usize = 174;

/// The error a [`BlockSink`] may return; import stops and hands it back.
pub type SinkError = Box<dyn std::error::Error + Send + Sync>;

/// Where imported blocks go: a store, a CAR writer, or nowhere (hash only).
pub trait BlockSink {
    /// Takes one block. Blocks arrive children before parents.
    fn put(&mut self, block: Block) -> Result<(), SinkError>;
}

impl<F: FnMut(Block) -> Result<(), SinkError>> BlockSink for F {
    fn put(&mut self, block: Block) -> Result<(), SinkError> {
        self(block)
    }
}

impl BlockSink for crate::MemoryBlocks {
    fn put(&mut self, block: Block) -> Result<(), SinkError> {
        self.insert(block);
        Ok(())
    }
}

/// A sink that drops every block (for `--only-hash`).
#[derive(Debug, Default, Clone, Copy)]
pub struct Discard;

impl BlockSink for Discard {
    fn put(&mut self, _block: Block) -> Result<(), SinkError> {
        Ok(())
    }
}

/// How a file's leaves are arranged into a tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Layout {
    /// Kubo's default: full nodes of `max_links` children, filled left to right.
    #[default]
    Balanced,
    /// Kubo's `--trickle`: favours reading from the start (streaming media).
    Trickle,
}

/// Everything that decides the CIDs an import produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportOptions {
    /// How bytes are cut into leaves.
    pub chunker: ChunkerSpec,
    /// How leaves are arranged.
    pub layout: Layout,
    /// CID version and hash function.
    pub format: CidFormat,
    /// Leaves are bare raw blocks instead of UnixFS file nodes.
    pub raw_leaves: bool,
    /// Most links in one file node.
    pub max_links: usize,
    /// HAMT fanout for sharded directories.
    pub hamt_fanout: u64,
    /// A directory whose estimated size passes this is sharded.
    pub sharding_threshold: usize,
}

impl Default for ImportOptions {
    /// Kubo's `ipfs add` defaults: CIDv0, sha2-256, size-262144, balanced, dag-pb leaves.
    fn default() -> Self {
        ImportOptions {
            chunker: ChunkerSpec::default(),
            layout: Layout::Balanced,
            format: CidFormat::default(),
            raw_leaves: false,
            max_links: DEFAULT_MAX_LINKS,
            hamt_fanout: DEFAULT_FANOUT,
            sharding_threshold: SHARDING_THRESHOLD,
        }
    }
}

/// Invalid import settings.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum OptionsError {
    /// The chunker string is not usable.
    #[error(transparent)]
    Chunker(#[from] ChunkerSpecError),
    /// CID version other than 0 or 1.
    #[error("unknown CID version {0} (use 0 or 1)")]
    CidVersion(u8),
    /// CIDv0 cannot express this hash.
    #[error("CIDv0 only supports sha2-256; use --cid-version=1 with {0}")]
    V0Hash(HashAlg),
    /// `max_links` below 2.
    #[error("max links {0} is below 2")]
    MaxLinks(usize),
}

impl ImportOptions {
    /// Kubo's `ipfs add --cid-version=1`: CIDv1 and raw leaves.
    pub fn cid_v1() -> Self {
        ImportOptions::from_flags(Some(1), None, None).unwrap_or_default()
    }

    /// Resolves `--cid-version`, `--raw-leaves` and `--hash` the way Kubo does: a hash other
    /// than sha2-256 implies CIDv1, and CIDv1 implies raw leaves unless told otherwise.
    pub fn from_flags(
        cid_version: Option<u8>,
        raw_leaves: Option<bool>,
        hash: Option<HashAlg>,
    ) -> Result<Self, OptionsError> {
        let hash = hash.unwrap_or_default();
        let version = match cid_version {
            Some(v @ (0 | 1)) => v,
            Some(v) => return Err(OptionsError::CidVersion(v)),
            None if hash != HashAlg::Sha2_256 => 1,
            None => 0,
        };
        if version == 0 && hash != HashAlg::Sha2_256 {
            return Err(OptionsError::V0Hash(hash));
        }
        Ok(ImportOptions {
            format: CidFormat { version, hash },
            raw_leaves: raw_leaves.unwrap_or(version > 0),
            ..Default::default()
        })
    }

    /// Checks settings that the type system does not.
    pub fn validate(&self) -> Result<(), OptionsError> {
        self.chunker.validate()?;
        if self.max_links < 2 {
            return Err(OptionsError::MaxLinks(self.max_links));
        }
        if self.format.version > 1 {
            return Err(OptionsError::CidVersion(self.format.version));
        }
        Ok(())
    }
}

/// Why an import stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// Reading the input failed.
    #[error("reading input: {0}")]
    Read(#[from] std::io::Error),
    /// The sink refused a block (for example, the disk is full).
    #[error("storing block: {0}")]
    Sink(#[source] SinkError),
    /// The settings are invalid.
    #[error(transparent)]
    Options(#[from] OptionsError),
    /// A directory could not be sharded.
    #[error(transparent)]
    Hamt(#[from] crate::hamt::HamtError),
    /// Two entries of one directory have the same name.
    #[error("duplicate name {0:?} in directory")]
    DuplicateName(String),
    /// A name that cannot be a directory entry (empty, `.`, `..`, or containing `/` or NUL).
    #[error("invalid entry name {0:?}")]
    BadName(String),
}
