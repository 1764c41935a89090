//! The `Node` facade: everything the CLI and the gateway do with a repo.
//!
//! Over 700 lines until issue 28's redesign makes it a folder (`write`, `read`, `pins`,
//! `verify`, and the collector).
//!
//! Concurrency: a `Node` is shared by reference. Adds, imports and pins hold the GC lock
//! for reading; `gc` holds it for writing only to start (so no add is half written when it
//! reads the pins), then marks and sweeps beside writers, keeping every block written or
//! pinned meanwhile (see [`Node::gc`]).
//!
//! Crash safety: an add writes its blocks in batches, syncs the write-ahead log, and only
//! then writes the pin (itself a synced write). A crash at any point leaves either no pin
//! or a pin whose blocks are all durable.

use std::collections::HashSet;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use cairn_merkle::car::{CarError, CarReader};
use cairn_merkle::exporter::ExportError;
use cairn_merkle::hash::{self, CidFormat, HashAlg};
use cairn_merkle::importer::{BlockSink, SinkError};
use cairn_merkle::{Block, BlockSource, Cid, SourceError};

use crate::add::{self, AddError, AddOptions, Added};
use crate::config::Profile;
use crate::repo::{Repo, RepoError};
use crate::store::{block_key, key_cid, BlockStore, Pin, PinMode, PinOwner, PinStore, StoreError, StoreStats};

/// Blocks buffered before one batched write.
const WRITE_BATCH_BLOCKS: usize = 256;
/// Bytes buffered before one batched write. Two batches are in memory at once: one being
/// filled and one being written.
const WRITE_BATCH_BYTES: usize = 8 << 20;

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

/// What `repo gc` did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GcReport {
    /// Blocks removed.
    pub removed_blocks: u64,
    /// Bytes of block data removed.
    pub removed_bytes: u64,
    /// Blocks kept because a pin reaches them.
    pub kept_blocks: u64,
    /// Blocks of pinned DAGs that are missing or unreadable and whose links are not known.
    /// While there are any, nothing is removed: the blocks below them cannot be told from
    /// garbage, and they are what a repair from peers would need.
    pub holes: Vec<Cid>,
}

/// What `repo stat` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoStat {
    /// Blocks and block bytes.
    pub store: StoreStats,
    /// Bytes on disk (database files).
    pub disk_bytes: u64,
    /// Number of pins.
    pub pins: u64,
    /// The repo path.
    pub path: PathBuf,
}

/// One block `repo verify` found damaged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corrupt {
    /// A CID naming the block (CIDv1, raw codec, with the stored multihash).
    pub cid: Cid,
    /// What is wrong.
    pub reason: String,
    /// The damage is certain: the bytes were read twice and both times did not match the
    /// hash (or the key is no multihash). Otherwise the block could not be read or checked,
    /// which may pass, and its bytes must be kept.
    pub confirmed: bool,
}

/// How many times a block that fails to read is read before it counts as unreadable.
const READ_TRIES: u32 = 3;

/// Re-reads and re-hashes one block through `read`: its size, or what is wrong with it.
/// A read error is tried again (after `pause`) up to [`READ_TRIES`] times, and a mismatch (of
/// the block's hash, or of the database's checksum) is read a second time before it is
/// believed, so that a passing fault of the disk or the process (EIO, EMFILE) never condemns
/// sound bytes.
#[allow(clippy::result_large_err)] // the error is a damaged block: rare, and reported whole
pub fn examine(
    cid: Cid,
    read: &mut dyn FnMut() -> Result<Option<Bytes>, StoreError>,
    pause: &mut dyn FnMut(std::time::Duration),
) -> Result<Option<u64>, Corrupt> {
    let mut mismatches = 0;
    let mut tries = 0;
    loop {
        tries += 1;
        let last = tries >= READ_TRIES;
        match read() {
            // Deleted since it was listed (a collection ran meanwhile): nothing to check.
            Ok(None) => return Ok(None),
            Ok(Some(data)) => match hash::multihash_matches(cid.hash(), &data) {
                Ok(true) => return Ok(Some(data.len() as u64)),
                Ok(false) => {
                    mismatches += 1;
                    if mismatches >= 2 {
                        let reason = "bytes do not match the hash".to_owned();
                        return Err(Corrupt { cid, reason, confirmed: true });
                    }
                }
                Err(e) => return Err(Corrupt { cid, reason: format!("cannot be checked: {e}"), confirmed: false }),
            },
            Err(StoreError::Checksum(e)) => {
                mismatches += 1;
                if mismatches >= 2 {
                    return Err(Corrupt { cid, reason: format!("unreadable: {e}"), confirmed: true });
                }
            }
            Err(e) if last => {
                let reason = format!("unreadable after {READ_TRIES} tries: {e}");
                return Err(Corrupt { cid, reason, confirmed: false });
            }
            Err(_) => pause(std::time::Duration::from_millis(50 << (2 * tries.min(4)))),
        }
    }
}

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

/// Buffers blocks and hands them in batches to a writer thread ([`write_batched`]), so that
/// storing one batch overlaps reading and hashing the next.
struct BatchSink {
    to_writer: std::sync::mpsc::SyncSender<Vec<Block>>,
    pending: Vec<Block>,
    pending_bytes: usize,
}

impl BatchSink {
    fn flush(&mut self) -> Result<(), SinkError> {
        if !self.pending.is_empty() {
            let batch = std::mem::replace(&mut self.pending, Vec::with_capacity(WRITE_BATCH_BLOCKS));
            self.pending_bytes = 0;
            // The writer stops at its first error; `write_batched` reports that error.
            self.to_writer.send(batch).map_err(|_| "the block writer stopped")?;
        }
        Ok(())
    }
}

impl BlockSink for BatchSink {
    fn put(&mut self, block: Block) -> Result<(), SinkError> {
        self.pending_bytes += block.data().len();
        self.pending.push(block);
        if self.pending.len() >= WRITE_BATCH_BLOCKS || self.pending_bytes >= WRITE_BATCH_BYTES {
            self.flush()?;
        }
        Ok(())
    }
}

/// Runs `work` with a sink that writes to `store` in batches on a second thread (handed
/// over one at a time: the next batch fills while the last is written), then makes what was
/// written durable. Returns `work`'s value
/// and the number of blocks written. A store error (a full disk) is the error returned, even
/// when `work` then failed because the sink refused its blocks.
fn write_batched<T>(
    store: &dyn BlockStore,
    work: impl FnOnce(&mut BatchSink) -> Result<T, NodeError>,
) -> Result<(T, u64), NodeError> {
    std::thread::scope(|scope| {
        let (to_writer, batches) = std::sync::mpsc::sync_channel::<Vec<Block>>(0);
        let writer = scope.spawn(move || -> Result<u64, StoreError> {
            let mut written = 0;
            for batch in batches {
                store.put_many(&batch)?;
                written += batch.len() as u64;
            }
            Ok(written)
        });
        let mut sink = BatchSink { to_writer, pending: Vec::with_capacity(WRITE_BATCH_BLOCKS), pending_bytes: 0 };
        let result = work(&mut sink).and_then(|value| {
            sink.flush().map_err(|e| NodeError::Store(StoreError::Db(e.to_string())))?;
            Ok(value)
        });
        drop(sink);
        let written = writer.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
        let value = result?;
        store.sync()?;
        Ok((value, written))
    })
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
            let Some(peer) = pin.name.as_deref().and_then(|n| n.strip_prefix(crate::follow::PIN_PREFIX)) else {
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
        if cid.hash().code() == hash::IDENTITY || self.store().has(cid).unwrap_or(false) {
            return Ok(());
        }
        fetcher.fetch_async(*cid).await.map(|_| ())
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

    /// Adds `path` into the repo, reporting each entry as `ipfs add` prints it; pins the root
    /// recursively when `pin` is set, after every block is durable.
    pub fn add(
        &self,
        path: &Path,
        opts: &AddOptions,
        pin: bool,
        on_added: &mut dyn FnMut(&Added),
    ) -> Result<Added, NodeError> {
        let _guard = self.shared()?;
        let (root, _) = write_batched(self.store(), |sink| Ok(add::add(path, opts, sink, on_added)?))?;
        if pin {
            self.pin_root(root.cid)?;
        }
        Ok(root)
    }

    /// Adds bytes from a reader (standard input) as one file.
    pub fn add_reader<R: Read + Send>(&self, reader: R, opts: &AddOptions, pin: bool) -> Result<Added, NodeError> {
        let _guard = self.shared()?;
        let (root, _) = write_batched(self.store(), |sink| {
            cairn_merkle::importer::import_file(reader, &opts.import, sink)
                .map_err(|e| AddError::Import { path: PathBuf::from("<stdin>"), source: Box::new(e) }.into())
        })?;
        if pin {
            self.pin_root(root.cid)?;
        }
        Ok(Added { path: root.cid.to_string(), cid: root.cid, size: root.size })
    }

    /// Adds one file's bytes from `reader`, reported under `name` as `add` prints a file
    /// argument, and pins it recursively when `pin` is set. Lets the caller watch the bytes
    /// go by (the CLI's progress bar wraps the reader).
    pub fn add_named_reader<R: Read + Send>(
        &self,
        reader: R,
        name: &str,
        opts: &AddOptions,
        pin: bool,
    ) -> Result<Added, NodeError> {
        let _guard = self.shared()?;
        let (root, _) = write_batched(self.store(), |sink| {
            cairn_merkle::importer::import_file(reader, &opts.import, sink)
                .map_err(|e| AddError::Import { path: PathBuf::from(name), source: Box::new(e) }.into())
        })?;
        if pin {
            self.pin_root(root.cid)?;
        }
        Ok(Added { path: name.to_owned(), cid: root.cid, size: root.size })
    }

    /// Adds an upload (the parts of an API `add`, as they arrive) without touching the file
    /// system: see [`crate::upload`]. Reports each entry as `ipfs add` prints it and returns
    /// the roots, each pinned recursively when `pin` is set, after every block is durable.
    pub fn add_upload<R: Read + Send>(
        &self,
        parts: impl IntoIterator<Item = crate::upload::UploadPart<R>>,
        opts: &AddOptions,
        limits: crate::upload::UploadLimits,
        pin: bool,
        wrap: bool,
        on_added: &mut dyn FnMut(&Added),
    ) -> Result<Vec<Added>, NodeError> {
        let _guard = self.shared()?;
        let (roots, _) = write_batched(self.store(), |sink| {
            let mut upload = crate::upload::Upload::new(opts, limits);
            for part in parts {
                upload.push(part, sink, on_added)?;
            }
            Ok(upload.finish(wrap, sink, on_added)?)
        })?;
        if pin {
            for root in &roots {
                self.pin_root(root.cid)?;
            }
        }
        Ok(roots)
    }

    /// Kubo's `indirect` pins: every block reachable from a recursive pin that is not itself
    /// pinned recursively, each once (by multihash), in walk order. Identity CIDs are left
    /// out, as they are never stored.
    pub fn indirect_pins(&self) -> Result<Vec<Cid>, NodeError> {
        let recursive: Vec<Cid> =
            self.pins_store().pins()?.into_iter().filter(|p| p.mode == PinMode::Recursive).map(|p| p.cid).collect();
        let roots: HashSet<Vec<u8>> = recursive.iter().map(block_key).collect();
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for root in &recursive {
            self.walk_dag(root, &mut seen, &mut |cid| {
                if !roots.contains(&block_key(&cid)) {
                    out.push(cid);
                }
            })?;
        }
        Ok(out)
    }

    /// Every block of the DAG under `root`, the root first, each once (by multihash), in walk
    /// order; identity CIDs are left out. Every block must be present.
    pub fn dag_cids(&self, root: &Cid) -> Result<Vec<Cid>, NodeError> {
        let mut out = Vec::new();
        self.walk_dag(root, &mut HashSet::new(), &mut |cid| out.push(cid))?;
        Ok(out)
    }

    /// The bytes of every distinct block of the DAG under `root` (all must be present).
    pub fn dag_size(&self, root: &Cid) -> Result<u64, NodeError> {
        let mut cids = Vec::new();
        self.walk_dag(root, &mut HashSet::new(), &mut |cid| cids.push(cid))?;
        let mut total = 0u64;
        for cid in cids {
            total += self.store().size(&cid)?.unwrap_or(0);
        }
        Ok(total)
    }

    /// Depth-first, in link order, over blocks not yet in `seen`.
    fn walk_dag(&self, root: &Cid, seen: &mut HashSet<Vec<u8>>, visit: &mut dyn FnMut(Cid)) -> Result<(), NodeError> {
        let mut stack = vec![*root];
        while let Some(cid) = stack.pop() {
            if cid.hash().code() == hash::IDENTITY || !seen.insert(block_key(&cid)) {
                continue;
            }
            visit(cid);
            if cid.codec() == hash::RAW {
                continue;
            }
            let data = self.store().get(&cid)?.ok_or(NodeError::NotFound(cid))?;
            let mut links = cairn_merkle::links::links(&cid, &data)
                .map_err(|e| NodeError::BadPath(cid.to_string(), e.to_string()))?;
            links.reverse();
            stack.extend(links);
        }
        Ok(())
    }

    /// Every block reachable from `root` (root included), checking each is present.
    /// Each block is protected from a collection under way before it is read
    /// ([`crate::store::RocksStore::protect`]): once the walk has seen it, it stays, and a
    /// block a collection took first is missing here, which fails the pin cleanly.
    fn reachable(&self, root: &Cid, into: &mut HashSet<Vec<u8>>) -> Result<(), NodeError> {
        let mut stack = vec![*root];
        while let Some(cid) = stack.pop() {
            let key = block_key(&cid);
            if cid.hash().code() == hash::IDENTITY || !into.insert(key.clone()) {
                continue;
            }
            self.repo.store().protect([key])?;
            let data = self.store().get(&cid)?.ok_or(NodeError::NotFound(cid))?;
            let links = cairn_merkle::links::links(&cid, &data)
                .map_err(|e| NodeError::BadPath(cid.to_string(), e.to_string()))?;
            stack.extend(links);
        }
        Ok(())
    }

    /// Like [`Node::reachable`], for the collector: a block that is missing or cannot be read
    /// or decoded does not stop the walk. A missing raw block has no links; a missing block
    /// the scrub recorded with the links it could still read is walked through them; any
    /// other such block is a hole, added to `holes`.
    fn reachable_past_damage(
        &self,
        root: &Cid,
        damaged: &std::collections::HashMap<Vec<u8>, crate::scrub::Damaged>,
        into: &mut HashSet<Vec<u8>>,
        holes: &mut Vec<Cid>,
    ) -> Result<(), NodeError> {
        let mut stack = vec![*root];
        while let Some(cid) = stack.pop() {
            let key = block_key(&cid);
            if cid.hash().code() == hash::IDENTITY || !into.insert(key.clone()) {
                continue;
            }
            let mut read = self.store().get(&cid);
            for attempt in 1..READ_TRIES {
                if read.is_ok() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(50 << (2 * attempt)));
                read = self.store().get(&cid);
            }
            let links = match read {
                _ if cid.codec() == hash::RAW => Some(Vec::new()),
                Ok(Some(data)) => cairn_merkle::links::links(&cid, &data)
                    .ok()
                    .or_else(|| damaged.get(&key).and_then(|d| d.links.clone())),
                Ok(None) | Err(_) => damaged.get(&key).and_then(|d| d.links.clone()),
            };
            match links {
                Some(links) => stack.extend(links),
                None => holes.push(cid),
            }
        }
        Ok(())
    }

    /// The operator's recursive pin of a root just written (its blocks are all there).
    fn pin_root(&self, cid: Cid) -> Result<(), NodeError> {
        Ok(self.pins_store().put_pin(&Pin { cid, mode: PinMode::Recursive, name: None, owner: PinOwner::Operator })?)
    }

    /// Pins `path`'s CID for the operator. A recursive pin needs every block of the DAG
    /// present.
    pub fn pin_add(&self, path: &IpfsPath, recursive: bool, name: Option<String>) -> Result<Cid, NodeError> {
        self.pin_add_as(PinOwner::Operator, path, recursive, name)
    }

    /// Pins `path`'s CID for `owner`, beside any other owner's pin of it.
    pub fn pin_add_as(
        &self,
        owner: PinOwner,
        path: &IpfsPath,
        recursive: bool,
        name: Option<String>,
    ) -> Result<Cid, NodeError> {
        let _guard = self.shared()?;
        let cid = self.resolve(path)?;
        if recursive {
            // A collection running now read the pins before this one: the walk protects the
            // DAG from it as it goes.
            self.reachable(&cid, &mut HashSet::new())?;
        } else {
            self.repo.store().protect([block_key(&cid)])?;
            if !self.store().has(&cid)? {
                return Err(NodeError::NotFound(cid));
            }
        }
        let mode = if recursive { PinMode::Recursive } else { PinMode::Direct };
        if let Some(existing) = self.pins_store().get_pin(&cid, &owner)? {
            if existing.mode == PinMode::Recursive && mode == PinMode::Direct {
                return Ok(cid);
            }
        }
        self.pins_store().put_pin(&Pin { cid, mode, name, owner })?;
        Ok(cid)
    }

    /// Removes the operator's pin of `path`'s CID. Another owner's pin of it stays, and is
    /// named in the error when the operator has none.
    pub fn pin_rm(&self, path: &IpfsPath) -> Result<Cid, NodeError> {
        self.pin_rm_as(&PinOwner::Operator, path)
    }

    /// Removes `owner`'s pin of `path`'s CID, and no other.
    pub fn pin_rm_as(&self, owner: &PinOwner, path: &IpfsPath) -> Result<Cid, NodeError> {
        let cid = if path.rest.is_empty() { path.root } else { self.resolve(path)? };
        if !self.pins_store().remove_pin(&cid, owner)? {
            if let Some(other) = self.pins_store().pins_of(&cid)?.into_iter().next() {
                return Err(NodeError::PinnedByOther(cid, other.owner.to_string()));
            }
            return Err(NodeError::NotPinned(cid));
        }
        Ok(cid)
    }

    /// The operator's pin of `cid`, if it has one.
    pub fn pin_of(&self, cid: &Cid) -> Result<Option<Pin>, NodeError> {
        Ok(self.pins_store().get_pin(cid, &PinOwner::Operator)?)
    }

    /// `owner`'s pin of `cid`, if it has one.
    pub fn pin_of_owner(&self, cid: &Cid, owner: &PinOwner) -> Result<Option<Pin>, NodeError> {
        Ok(self.pins_store().get_pin(cid, owner)?)
    }

    /// Every owner's pin of `cid`.
    pub fn pins_of(&self, cid: &Cid) -> Result<Vec<Pin>, NodeError> {
        Ok(self.pins_store().pins_of(cid)?)
    }

    /// Every pin.
    pub fn pins(&self) -> Result<Vec<Pin>, NodeError> {
        Ok(self.pins_store().pins()?)
    }

    /// Deletes every block no pin reaches, beside adds, pins, imports, fetches and reads:
    /// they wait only while the collection starts (for those already under way to finish).
    ///
    /// It starts by taking the GC lock for writing, which waits for every add and pin under
    /// way, turns on the store's write protection ([`RocksStore::begin_protect`]: every block
    /// written from then on, and every block a new pin reaches, is kept), and reads the pins.
    /// The lock is then let go: the live blocks are marked from those pins, and the rest are
    /// deleted in batches, each skipping what writers protected meanwhile.
    ///
    /// [`RocksStore::begin_protect`]: crate::store::RocksStore::begin_protect
    ///
    /// Adds under way are waited for up to [`GC_START_WAIT`] ([`Node::gc_within`]); adds
    /// that start meanwhile are not held back.
    pub fn gc(&self) -> Result<GcReport, NodeError> {
        self.gc_within(GC_START_WAIT)
    }

    /// [`Node::gc`], giving up with [`NodeError::Busy`] when adds and pins under way keep the
    /// repo longer than `wait`.
    pub fn gc_within(&self, wait: std::time::Duration) -> Result<GcReport, NodeError> {
        let store = self.repo.store();
        let pins = {
            let _guard = self.exclusive(wait, "repo gc")?;
            store.begin_protect()?;
            self.pins_store().pins()
        };
        let result = pins.map_err(NodeError::from).and_then(|pins| self.collect(pins));
        store.end_protect()?;
        result
    }

    /// The mark and sweep of [`Node::gc`], from `pins`.
    fn collect(&self, pins: Vec<Pin>) -> Result<GcReport, NodeError> {
        let mut live = HashSet::new();
        let mut report = GcReport::default();
        let damaged: std::collections::HashMap<Vec<u8>, crate::scrub::Damaged> =
            crate::scrub::damaged(self)?.into_iter().map(|d| (block_key(&d.cid), d)).collect();
        for pin in pins {
            match pin.mode {
                PinMode::Recursive => self.reachable_past_damage(&pin.cid, &damaged, &mut live, &mut report.holes)?,
                PinMode::Direct => {
                    live.insert(block_key(&pin.cid));
                }
            }
        }
        if !report.holes.is_empty() {
            tracing::warn!(
                holes = report.holes.len(),
                "repo gc: pinned DAGs have blocks missing or unreadable; nothing removed until they are repaired or unpinned"
            );
            report.kept_blocks = self.store().stats()?.blocks;
            return Ok(report);
        }
        let store = self.repo.store();
        let sweep = |doomed: &mut Vec<Vec<u8>>, report: &mut GcReport| -> Result<(), NodeError> {
            let (blocks, bytes) = store.delete_unprotected(doomed)?;
            report.removed_blocks += blocks;
            report.removed_bytes += bytes;
            doomed.clear();
            Ok(())
        };
        let mut doomed = Vec::with_capacity(1024);
        for key in self.store().keys() {
            let key = key?;
            if live.contains(&key) {
                report.kept_blocks += 1;
                continue;
            }
            doomed.push(key);
            if doomed.len() == 1024 {
                sweep(&mut doomed, &mut report)?;
            }
        }
        sweep(&mut doomed, &mut report)?;
        self.store().sync()?;
        store.compact()?;
        Ok(report)
    }

    /// Sizes and counts.
    pub fn stat(&self) -> Result<RepoStat, NodeError> {
        Ok(RepoStat {
            store: self.store().stats()?,
            disk_bytes: self.repo.store().disk_usage()?,
            pins: self.pins_store().pins()?.len() as u64,
            path: self.repo.path().to_owned(),
        })
    }

    /// Re-hashes every block; returns the damaged ones, and the blocks the scrub removed as
    /// corrupt that no peer has supplied again. `on_block` hears each block's size.
    pub fn verify(&self, on_block: &mut dyn FnMut(u64)) -> Result<Vec<Corrupt>, NodeError> {
        let mut bad = Vec::new();
        // Key by key rather than one iterator over the bytes: a block RocksDB cannot read back
        // (a blob whose checksum fails) is then reported, and the scan goes on past it.
        for key in self.store().keys() {
            match self.check_key(&key?) {
                Ok(size) => on_block(size),
                Err(c) => bad.push(c),
            }
        }
        // Unreadable blocks the scrub recorded are still stored, so listed above already.
        bad.extend(crate::scrub::damaged(self)?.into_iter().filter(|d| !d.unreadable).map(|d| Corrupt {
            cid: d.cid,
            reason: format!("removed by the scrub as corrupt ({}); no peer has supplied it since", d.error),
            confirmed: true,
        }));
        Ok(bad)
    }

    /// Re-reads and re-hashes the block stored under `key` (a multihash): its size (0 for a
    /// block deleted since it was listed), or what is wrong with it (see [`examine`]).
    #[allow(clippy::result_large_err)] // as for `examine`
    pub fn check_key(&self, key: &[u8]) -> Result<u64, Corrupt> {
        let Some(cid) = key_cid(key) else {
            let cid = CidFormat { version: 1, hash: HashAlg::Sha2_256 }.cid(hash::RAW, key);
            let reason = "stored under a key that is not a multihash".to_owned();
            return Err(Corrupt { cid, reason, confirmed: true });
        };
        examine(cid, &mut || self.store().get(&cid), &mut std::thread::sleep).map(|n| n.unwrap_or(0))
    }

    /// The bytes of one block.
    pub fn block_get(&self, cid: &Cid) -> Result<Bytes, NodeError> {
        self.store().get(cid)?.ok_or(NodeError::NotFound(*cid))
    }

    /// Stores bytes as a block under `codec` and `format`; returns its CID.
    pub fn block_put(&self, data: Bytes, codec: u64, format: CidFormat) -> Result<Cid, NodeError> {
        let _guard = self.shared()?;
        let cid = format.cid(codec, &data);
        self.store().put_many(&[Block::new_unchecked(cid, data)])?;
        self.store().sync()?;
        Ok(cid)
    }

    /// Removes blocks that no pin holds, each on its own: one result per CID, in order. A
    /// block pinned directly or recursively, or inside a recursively pinned DAG, is refused.
    pub fn block_rm(&self, cids: &[Cid]) -> Result<Vec<Result<(), NodeError>>, NodeError> {
        let _guard = self.exclusive(GC_START_WAIT, "block rm")?;
        let indirect: HashSet<Vec<u8>> = self.indirect_pins()?.iter().map(block_key).collect();
        let mut results = Vec::with_capacity(cids.len());
        for cid in cids {
            results.push(if !self.pins_store().pins_of(cid)?.is_empty() {
                Err(NodeError::Pinned(*cid))
            } else if indirect.contains(&block_key(cid)) {
                Err(NodeError::PinnedIndirectly(*cid))
            } else if self.store().delete_keys(&[block_key(cid)])? == 0 {
                Err(NodeError::NotFound(*cid))
            } else {
                Ok(())
            });
        }
        self.store().sync()?;
        Ok(results)
    }

    /// Imports a CAR: every block verified, then the roots pinned recursively (when `pin`).
    /// Returns the roots and the number of blocks read.
    pub fn dag_import(
        &self,
        input: &mut dyn Read,
        pin: bool,
        on_bytes: &mut dyn FnMut(u64),
    ) -> Result<(Vec<Cid>, u64), NodeError> {
        let _guard = self.shared()?;
        let mut car = CarReader::new(std::io::BufReader::with_capacity(1 << 20, input))?;
        let roots = car.roots().to_vec();
        let (count, _) = write_batched(self.store(), |sink| {
            let mut count = 0;
            while let Some(block) = car.next_block()? {
                on_bytes(block.data().len() as u64);
                sink.put(block).map_err(|e| NodeError::Store(StoreError::Db(e.to_string())))?;
                count += 1;
            }
            Ok(count)
        })?;
        if pin {
            for root in &roots {
                self.reachable(root, &mut HashSet::new())?;
                self.pin_root(*root)?;
            }
        }
        Ok((roots, count))
    }
}
