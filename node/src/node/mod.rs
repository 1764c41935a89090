//! The `Node` facade: everything the CLI and the gateway do with a repo.
//!
//! This file holds the node itself (opening a repo, the fetcher, the sources reads go
//! through, the collector's lock) and its errors; its jobs are in this folder: `write.rs`
//! (adds, `block put`, `dag import`), `pins.rs`, `gc.rs` (the collector, `block rm`),
//! `verify.rs` (`repo verify`, damaged-block records, `repo stat`), and, beside it,
//! `crate::read` (every read: paths, files, listings, trees, tar).
//!
//! Concurrency: a `Node` is shared by reference. Adds, imports and pins hold the GC lock
//! for reading; `gc` holds it for writing only to start (so no add is half written when it
//! reads the pins), then marks and sweeps beside writers, keeping every block written or
//! pinned meanwhile (see [`Node::gc`]).
//!
//! Crash safety: an add writes its blocks in batches, syncs the write-ahead log, and only
//! then writes the pin (itself a synced write). A crash at any point leaves either no pin
//! or a pin whose blocks are all durable.

mod gc;
mod pins;
mod verify;
mod write;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use cairn_merkle::car::CarError;
use cairn_merkle::exporter::ExportError;
use cairn_merkle::hash;
use cairn_merkle::{BlockSource, Cid, SourceError};

use crate::add::AddError;
use crate::config::Profile;
use crate::repo::{Repo, RepoError};
use crate::store::{BlockStore, Pin, PinOwner, PinStore, StoreError};

/// How long a collection (or `block rm`) waits for the adds and pins under way to finish
/// before it gives up; adds that start meanwhile go on.
pub const GC_START_WAIT: std::time::Duration = std::time::Duration::from_secs(600);
/// How often such a wait asks for the lock again.
const EXCLUSIVE_POLL: std::time::Duration = std::time::Duration::from_millis(20);

/// Why a node operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// Opening the repo failed.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Adding failed.
    #[error(transparent)]
    Add(#[from] AddError),
    /// An upload was refused or could not be imported.
    #[error(transparent)]
    Upload(#[from] crate::upload::UploadError),
    /// Reading a DAG failed (boxed to keep results small).
    #[error(transparent)]
    Export(Box<ExportError>),
    /// Reading or writing a CAR failed (boxed to keep results small).
    #[error(transparent)]
    Car(Box<CarError>),
    /// A CID or path did not parse.
    #[error("invalid path {0:?}: {1}")]
    BadPath(String, String),
    /// A block is not in the repo (and this node does not fetch).
    #[error("block {0} not found in the repo")]
    NotFound(Cid),
    /// The pin does not exist.
    #[error("{0} is not pinned")]
    NotPinned(Cid),
    /// A pin update's old CID is not pinned recursively by the operator (Kubo's words, which
    /// a client may look for).
    #[error("'from' cid was not recursively pinned already")]
    NotRecursivelyPinned(Cid),
    /// A pin update's new CID is pinned recursively by the operator already (Kubo's words).
    #[error("'to' cid was already recursively pinned")]
    AlreadyRecursivelyPinned(Cid),
    /// A quota would be passed.
    #[error("over quota: {0}")]
    Quota(String),
    /// Only another owner pins it, and no owner may remove another's pin.
    #[error("{0} is not pinned by you; {1} pins it")]
    PinnedByOther(Cid, String),
    /// The block is pinned and so cannot be removed.
    #[error("{0} is pinned; unpin it first")]
    Pinned(Cid),
    /// The block is inside a recursively pinned DAG and so cannot be removed.
    #[error("{0} is pinned indirectly (inside a recursively pinned DAG); unpin its root first")]
    PinnedIndirectly(Cid),
    /// Output could not be written.
    #[error("{path}: {source}")]
    Output {
        /// The path being written.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Bytes offered as a block do not hash to the CID given.
    #[error(transparent)]
    Block(#[from] cairn_merkle::BlockError),
    /// The GC lock was poisoned by a panic elsewhere.
    #[error("node lock poisoned")]
    Poisoned,
    /// Work that needs the repo to itself could not have it in time.
    #[error("{0}")]
    Busy(String),
}

impl NodeError {
    /// The block a read stopped at because it is to be fetched (a read through
    /// [`Node::reader_nowait`] or [`Node::source_nowait`]), if that is why it stopped.
    pub fn pending(&self) -> Option<Cid> {
        match self {
            NodeError::Export(e) => e.pending(),
            NodeError::Car(e) => e.pending(),
            _ => None,
        }
    }
}

impl From<ExportError> for NodeError {
    fn from(e: ExportError) -> Self {
        NodeError::Export(Box::new(e))
    }
}

impl From<CarError> for NodeError {
    fn from(e: CarError) -> Self {
        NodeError::Car(Box::new(e))
    }
}

/// A parsed `/ipfs/<cid>/a/b`, `<cid>/a/b` or `<cid>` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpfsPath {
    /// The root CID.
    pub root: Cid,
    /// The path below it, `/`-separated, possibly empty.
    pub rest: String,
}

impl std::str::FromStr for IpfsPath {
    type Err = NodeError;
    fn from_str(s: &str) -> Result<Self, NodeError> {
        let trimmed = s.strip_prefix("/ipfs/").unwrap_or(s).trim_start_matches('/');
        let (root, rest) = trimmed.split_once('/').unwrap_or((trimmed, ""));
        let root = hash::parse_cid(root).map_err(|e| NodeError::BadPath(s.to_owned(), e.to_string()))?;
        Ok(IpfsPath { root, rest: rest.to_owned() })
    }
}

pub use gc::GcReport;
pub(crate) use pins::{queue_links, Walk};
pub(crate) use verify::damaged_key;
pub use verify::{damaged, examine, is_damaged, Corrupt, Damaged, RepoStat};

/// The name of a pin a followed publisher's collection holds starts with this, then the
/// publisher's peer ID (see `crate::follow`).
pub const FOLLOW_PIN_PREFIX: &str = "follow ";

/// A node over an open repo.
#[derive(Debug)]
pub struct Node {
    repo: Repo,
    gc_lock: RwLock<()>,
    fetcher: std::sync::OnceLock<Arc<dyn BlockFetcher>>,
}

/// Fetches blocks the store lacks (from the network, while the daemon runs). A fetched block
/// is verified and stored before it is returned.
pub trait BlockFetcher: Send + Sync + std::fmt::Debug {
    /// The block's bytes, or [`SourceError::NotFound`] when no one has it, or
    /// [`SourceError::Other`] when it was not found in time.
    fn fetch(&self, cid: &Cid) -> Result<Bytes, SourceError>;

    /// Starts fetching `cid` in the background, for a reader that will ask for it soon (the
    /// store lacks it). The default does nothing.
    fn prefetch(&self, _cid: &Cid) {}

    /// A reader starts on bytes `from .. to` of the file `file`, and the store lacks the
    /// first block it needs below the root: the fetcher may fetch the start of that stretch
    /// in one request. The default does nothing.
    fn reading(&self, _file: &Cid, _from: u64, _to: u64) {}

    /// [`BlockFetcher::fetch`] for async callers: the wait holds no thread. The default
    /// fetches nothing (the blocking read then reports the block missing).
    fn fetch_async(
        &self,
        _cid: Cid,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Bytes, SourceError>> + Send + '_>> {
        Box::pin(std::future::ready(Ok(Bytes::new())))
    }
}

/// Reads blocks from the node's store for the exporter (identity CIDs answer themselves),
/// and from the node's fetcher, if it has one, when the store lacks them: waiting for the
/// block ([`Node::source`]), or answering [`SourceError::Pending`] at once for the caller to
/// fetch it ([`Node::source_nowait`]).
#[derive(Clone, Copy)]
pub struct StoreSource<'a>(&'a dyn BlockStore, Option<&'a dyn BlockFetcher>, bool);

impl std::fmt::Debug for StoreSource<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreSource")
    }
}

impl BlockSource for StoreSource<'_> {
    fn get(&self, cid: &Cid) -> Result<Bytes, SourceError> {
        if cid.hash().code() == hash::IDENTITY {
            return Ok(Bytes::copy_from_slice(cid.hash().digest()));
        }
        match (self.0.get(cid), self.1) {
            (Ok(Some(b)), _) => Ok(b),
            (Ok(None), Some(fetcher)) if self.2 => fetcher.fetch(cid),
            (Ok(None), Some(_)) => Err(SourceError::Pending(*cid)),
            (Ok(None), None) => Err(SourceError::NotFound(*cid)),
            (Err(e), _) => Err(SourceError::Other(Box::new(e))),
        }
    }

    fn prefetch(&self, cid: &Cid) {
        if let Some(fetcher) = self.1 {
            if cid.hash().code() != hash::IDENTITY && matches!(self.0.has(cid), Ok(false)) {
                fetcher.prefetch(cid);
            }
        }
    }

    fn reading(&self, file: &Cid, from: u64, to: u64, first: &Cid) {
        if let Some(fetcher) = self.1 {
            if first.hash().code() != hash::IDENTITY && matches!(self.0.has(first), Ok(false)) {
                fetcher.reading(file, from, to);
            }
        }
    }
}

impl Node {
    /// Opens the repo at `path`.
    pub fn open(path: &Path) -> Result<Node, NodeError> {
        Node::on(Repo::open(path)?)
    }

    /// Creates a repo at `path` and opens a node on it.
    pub fn init(path: &Path, profile: Profile) -> Result<Node, NodeError> {
        Node::on(Repo::init(path, profile)?)
    }

    fn on(repo: Repo) -> Result<Node, NodeError> {
        let node = Node { repo, gc_lock: RwLock::new(()), fetcher: std::sync::OnceLock::new() };
        node.adopt_legacy_follow_pins()?;
        Ok(node)
    }

    /// Pins an older version made for followed publishers under the operator (named
    /// `follow <peer>`) become the publishers' own. Once per repo: a metadata mark says it
    /// was done, so opening a repo of many pins does not scan them every time.
    fn adopt_legacy_follow_pins(&self) -> Result<(), NodeError> {
        const DONE: &[u8] = b"pins/follow-owners-adopted";
        if self.repo.store().get_meta(DONE)?.is_some() {
            return Ok(());
        }
        for pin in self.pins_store().pins()? {
            let Some(peer) = pin.name.as_deref().and_then(|n| n.strip_prefix(FOLLOW_PIN_PREFIX)) else {
                continue;
            };
            if pin.owner != PinOwner::Operator {
                continue;
            }
            let adopted = Pin { owner: PinOwner::Follow(peer.to_owned()), ..pin.clone() };
            self.pins_store().put_pin(&adopted)?;
            self.pins_store().remove_pin(&pin.cid, &PinOwner::Operator)?;
        }
        self.repo.store().put_meta(DONE, b"1")?;
        Ok(())
    }

    /// Lets reads fetch what the store lacks through `fetcher` (once; later calls are
    /// ignored and return false).
    pub fn attach_fetcher(&self, fetcher: Arc<dyn BlockFetcher>) -> bool {
        self.fetcher.set(fetcher).is_ok()
    }

    /// Whether reads fetch through a fetcher ([`Node::attach_fetcher`]).
    pub fn has_fetcher(&self) -> bool {
        self.fetcher.get().is_some()
    }

    /// Brings `cid`'s block into the store from the fetcher, if the store lacks it, waiting
    /// without holding a thread: the gateway calls this before its blocking read, so that
    /// requests for blocks nobody has wait on the runtime rather than on the blocking pool
    /// (which serves every local read too). Without a fetcher it does nothing.
    pub async fn ensure_local(&self, cid: &Cid) -> Result<(), SourceError> {
        let Some(fetcher) = self.fetcher.get() else { return Ok(()) };
        if self.holds(cid) {
            return Ok(());
        }
        fetcher.fetch_async(*cid).await.map(|_| ())
    }

    /// Whether the store holds `cid`'s block (an identity CID holds its own). A store that
    /// cannot answer is taken not to hold it.
    pub fn holds(&self, cid: &Cid) -> bool {
        cid.hash().code() == hash::IDENTITY || self.store().has(cid).unwrap_or(false)
    }

    /// The repo.
    pub fn repo(&self) -> &Repo {
        &self.repo
    }

    /// The repo, for config edits.
    pub fn repo_mut(&mut self) -> &mut Repo {
        &mut self.repo
    }

    fn store(&self) -> &dyn BlockStore {
        self.repo.store()
    }

    fn pins_store(&self) -> &dyn PinStore {
        self.repo.store()
    }

    /// The store as a [`BlockSource`], for reading DAGs with `cairn_merkle::exporter`.
    pub fn source(&self) -> StoreSource<'_> {
        StoreSource(self.repo.store(), self.fetcher.get().map(|f| &**f), true)
    }

    /// [`Node::source`] for readers that must not hold their thread while a block is fetched:
    /// a block the store lacks (when the node has a fetcher) is answered with
    /// [`SourceError::Pending`] at once. The reader fetches it with [`Node::ensure_local`] (on
    /// the runtime, holding no thread) and reads again.
    pub fn source_nowait(&self) -> StoreSource<'_> {
        StoreSource(self.repo.store(), self.fetcher.get().map(|f| &**f), false)
    }

    fn shared(&self) -> Result<std::sync::RwLockReadGuard<'_, ()>, NodeError> {
        self.gc_lock.read().map_err(|_| NodeError::Poisoned)
    }

    /// The GC lock for writing, once the adds and pins under way are done, waiting up to
    /// `wait`. It is asked for again and again rather than waited on: a writer waiting on the
    /// lock would hold back every new add behind the slowest one under way (an upload that
    /// trickles in), and the repo would stall.
    fn exclusive(
        &self,
        wait: std::time::Duration,
        what: &str,
    ) -> Result<std::sync::RwLockWriteGuard<'_, ()>, NodeError> {
        let deadline = std::time::Instant::now() + wait;
        loop {
            match self.gc_lock.try_write() {
                Ok(guard) => return Ok(guard),
                Err(std::sync::TryLockError::Poisoned(_)) => return Err(NodeError::Poisoned),
                Err(std::sync::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(EXCLUSIVE_POLL);
                }
                Err(std::sync::TryLockError::WouldBlock) => {
                    return Err(NodeError::Busy(format!(
                        "{what}: adds or pins under way held the repo for {} s; try again later",
                        wait.as_secs()
                    )))
                }
            }
        }
    }

    /// The bytes of one block.
    pub fn block_get(&self, cid: &Cid) -> Result<Bytes, NodeError> {
        // An identity CID holds its block, which is never stored.
        if cid.hash().code() == hash::IDENTITY {
            return Ok(Bytes::copy_from_slice(cid.hash().digest()));
        }
        self.store().get(cid)?.ok_or(NodeError::NotFound(*cid))
    }
}
