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
use crate::hamt::{Sharding, SizeEstimation, DEFAULT_FANOUT};
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
    /// When a directory is sharded.
    pub sharding: Sharding,
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
            sharding: Sharding::default(),
        }
    }
}

/// The import profiles of IPIP-499 (UnixFS CID profiles), by the names Kubo gives them: each
/// fixes every setting that decides a CID, so that two importers that follow one agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Profile {
    /// `unixfs-v1-2025`: CIDv1, raw leaves, chunks of 1 MiB, 1024 links per file node, a
    /// directory sharded once its dag-pb block would pass 256 KiB. What new data should use.
    UnixfsV1_2025,
    /// `unixfs-v0-2015` (also `legacy-cid-v0`): CIDv0, UnixFS leaves, chunks of 256 KiB, 174
    /// links per file node, a directory sharded once its names and CIDs pass 256 KiB. Kubo's
    /// defaults, which every CID it made before IPIP-499 follows.
    UnixfsV0_2015,
}

impl Profile {
    /// Every profile with the names it goes by, the canonical name first.
    pub const NAMES: &[(Profile, &[&str])] = &[
        (Profile::UnixfsV1_2025, &["unixfs-v1-2025"]),
        (Profile::UnixfsV0_2015, &["unixfs-v0-2015", "legacy-cid-v0"]),
    ];

    /// The profile's canonical name.
    pub fn name(self) -> &'static str {
        match self {
            Profile::UnixfsV1_2025 => "unixfs-v1-2025",
            Profile::UnixfsV0_2015 => "unixfs-v0-2015",
        }
    }

    /// The import settings the profile fixes.
    pub fn options(self) -> ImportOptions {
        match self {
            Profile::UnixfsV1_2025 => ImportOptions {
                chunker: ChunkerSpec::Size(1024 * 1024),
                layout: Layout::Balanced,
                format: CidFormat { version: 1, hash: HashAlg::Sha2_256 },
                raw_leaves: true,
                max_links: 1024,
                hamt_fanout: DEFAULT_FANOUT,
                sharding: Sharding { estimation: SizeEstimation::Block, ..Sharding::default() },
            },
            Profile::UnixfsV0_2015 => ImportOptions::default(),
        }
    }
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Profile {
    type Err = UnknownProfile;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Profile::NAMES
            .iter()
            .find(|(_, names)| names.contains(&s))
            .map(|(p, _)| *p)
            .ok_or_else(|| UnknownProfile(s.to_owned()))
    }
}

/// The settings of one add that decide CIDs, each `None` when not given: `ipfs add`'s flags,
/// and the `Import.*` config keys, which Kubo applies as if they were flags given (see
/// [`AddFlags::or`] and [`ImportOptions::resolve`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddFlags {
    /// `--cid-version` (`Import.CidVersion`).
    pub cid_version: Option<u8>,
    /// `--raw-leaves` (`Import.UnixFSRawLeaves`).
    pub raw_leaves: Option<bool>,
    /// `--hash` (`Import.HashFunction`).
    pub hash: Option<HashAlg>,
    /// `--chunker` (`Import.UnixFSChunker`).
    pub chunker: Option<ChunkerSpec>,
    /// `--trickle`; `Some(false)` is balanced (`Import.UnixFSDAGLayout`).
    pub trickle: Option<bool>,
    /// `--max-file-links` (`Import.UnixFSFileMaxLinks`).
    pub max_file_links: Option<usize>,
    /// `--max-directory-links`, 0: no limit (`Import.UnixFSDirectoryMaxLinks`).
    pub max_directory_links: Option<usize>,
    /// `--max-hamt-fanout` (`Import.UnixFSHAMTDirectoryMaxFanout`).
    pub max_hamt_fanout: Option<u64>,
    /// `Import.UnixFSHAMTDirectorySizeThreshold` in bytes (config only, in Kubo too).
    pub hamt_threshold: Option<usize>,
    /// `Import.UnixFSHAMTDirectorySizeEstimation` (config only, in Kubo too).
    pub hamt_estimation: Option<SizeEstimation>,
    /// `Import.UnixFSHAMTShardAtThreshold`, Cairn's: shard at the threshold too (`>=`), as
    /// Kubo 0.39 and earlier did.
    pub hamt_at_threshold: Option<bool>,
}

impl AddFlags {
    /// These flags, with each one not given taken from `config`: how Kubo combines `ipfs add`'s
    /// flags with the `Import.*` keys.
    pub fn or(&self, config: &AddFlags) -> AddFlags {
        AddFlags {
            cid_version: self.cid_version.or(config.cid_version),
            raw_leaves: self.raw_leaves.or(config.raw_leaves),
            hash: self.hash.or(config.hash),
            chunker: self.chunker.or(config.chunker),
            trickle: self.trickle.or(config.trickle),
            max_file_links: self.max_file_links.or(config.max_file_links),
            max_directory_links: self.max_directory_links.or(config.max_directory_links),
            max_hamt_fanout: self.max_hamt_fanout.or(config.max_hamt_fanout),
            hamt_threshold: self.hamt_threshold.or(config.hamt_threshold),
            hamt_estimation: self.hamt_estimation.or(config.hamt_estimation),
            hamt_at_threshold: self.hamt_at_threshold.or(config.hamt_at_threshold),
        }
    }
}

/// A profile name that IPIP-499 and Kubo do not define.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown import profile {0:?} (known: unixfs-v1-2025, unixfs-v0-2015, legacy-cid-v0)")]
pub struct UnknownProfile(pub String);

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
    /// A HAMT fanout Kubo does not make.
    #[error("HAMT fanout must be a power of 2, between 8 and 1024 (got {0})")]
    Fanout(u64),
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

    /// The settings of an add, resolved as Kubo 0.43 does: each flag given beats `base` (the
    /// profile's or the config's settings; `None`: Kubo's own defaults), which beats the
    /// defaults. Without `base`, a hash other than sha2-256 implies CIDv1 and CIDv1 implies
    /// raw leaves; with one, its raw-leaves setting stays unless `--raw-leaves` is given (so
    /// `--cid-version=0` under `unixfs-v1-2025` keeps raw leaves, as in Kubo).
    pub fn resolve(base: Option<ImportOptions>, flags: &AddFlags) -> Result<Self, OptionsError> {
        let mut opts = match base {
            Some(b) => {
                let mut o = b;
                if let Some(h) = flags.hash {
                    o.format.hash = h;
                }
                if let Some(v) = flags.cid_version {
                    o.format.version = v;
                }
                if let Some(r) = flags.raw_leaves {
                    o.raw_leaves = r;
                }
                if o.format.version == 0 && o.format.hash != HashAlg::Sha2_256 {
                    return Err(OptionsError::V0Hash(o.format.hash));
                }
                o
            }
            None => ImportOptions::from_flags(flags.cid_version, flags.raw_leaves, flags.hash)?,
        };
        if let Some(c) = flags.chunker {
            opts.chunker = c;
        }
        if let Some(t) = flags.trickle {
            opts.layout = if t { Layout::Trickle } else { Layout::Balanced };
        }
        if let Some(n) = flags.max_file_links {
            opts.max_links = n;
        }
        if let Some(n) = flags.max_directory_links {
            opts.sharding.max_links = n;
        }
        if let Some(f) = flags.max_hamt_fanout {
            opts.hamt_fanout = f;
        }
        if let Some(t) = flags.hamt_threshold {
            opts.sharding.threshold = t;
        }
        if let Some(e) = flags.hamt_estimation {
            opts.sharding.estimation = e;
        }
        if let Some(a) = flags.hamt_at_threshold {
            opts.sharding.at_threshold = a;
        }
        opts.validate()?;
        Ok(opts)
    }

    /// Checks settings that the type system does not.
    pub fn validate(&self) -> Result<(), OptionsError> {
        self.chunker.validate()?;
        if self.max_links < 2 {
            return Err(OptionsError::MaxLinks(self.max_links));
        }
        if !(8..=1024).contains(&self.hamt_fanout) || !self.hamt_fanout.is_power_of_two() {
            return Err(OptionsError::Fanout(self.hamt_fanout));
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
