//! The gateway's reads of the DAG. Everything here is synchronous (it runs on blocking
//! threads) and takes a [`BlockSource`], so the same code serves from the store today and
//! through the network's fetcher when blocks are missing.

use std::cell::RefCell;
use std::collections::HashSet;
use std::io::Write;

use bytes::Bytes;
use cairn_node::merkle::car::{CarWriter, DagWalk, DupBudget};
use cairn_node::merkle::exporter::{self, ExportError, FileSegments, NodeKind, Stat};
use cairn_node::merkle::hash::{DAG_PB, IDENTITY};
use cairn_node::merkle::pathing::{self, Followed, PathingError};
use cairn_node::merkle::source::{BlockSource, SourceError};
use cairn_node::merkle::Cid;
use hyper::StatusCode;

use crate::error::HttpError;

/// A source that remembers the blocks read through it, in order, once each.
pub struct Recording<S> {
    inner: S,
    seen: RefCell<HashSet<Cid>>,
    blocks: RefCell<Vec<(Cid, Bytes)>>,
}

impl<S: BlockSource> Recording<S> {
    /// Records reads from `inner`.
    pub fn new(inner: S) -> Self {
        Recording { inner, seen: RefCell::default(), blocks: RefCell::default() }
    }

    /// The blocks read so far, emptying the record (the `seen` set stays).
    pub fn take(&self) -> Vec<(Cid, Bytes)> {
        std::mem::take(&mut *self.blocks.borrow_mut())
    }
}

impl<S: BlockSource> BlockSource for Recording<S> {
    fn get(&self, cid: &Cid) -> Result<Bytes, SourceError> {
        let data = self.inner.get(cid)?;
        if self.seen.borrow_mut().insert(*cid) {
            self.blocks.borrow_mut().push((*cid, data.clone()));
        }
        Ok(data)
    }

    fn prefetch(&self, cid: &Cid) {
        self.inner.prefetch(cid);
    }

    fn reading(&self, file: &Cid, from: u64, to: u64, first: &Cid) {
        self.inner.reading(file, from, to, first);
    }
}

/// A source that counts the blocks read through it (for the request log, which shows that
/// a range read touches only the blocks that cover it).
#[derive(Debug)]
pub struct Counting<S> {
    inner: S,
    reads: std::cell::Cell<u64>,
}

impl<S: BlockSource> Counting<S> {
    /// Counts reads from `inner`.
    pub fn new(inner: S) -> Self {
        Counting { inner, reads: std::cell::Cell::new(0) }
    }

    /// Blocks read so far.
    pub fn reads(&self) -> u64 {
        self.reads.get()
    }
}

impl<S: BlockSource> BlockSource for Counting<S> {
    fn get(&self, cid: &Cid) -> Result<Bytes, SourceError> {
        self.reads.set(self.reads.get() + 1);
        self.inner.get(cid)
    }

    fn prefetch(&self, cid: &Cid) {
        self.inner.prefetch(cid);
    }

    fn reading(&self, file: &Cid, from: u64, to: u64, first: &Cid) {
        self.inner.reading(file, from, to, first);
    }
}

/// Where a content path leads.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The CID the path names.
    pub cid: Cid,
    /// The CID of each level from the root to `cid` (for `X-Ipfs-Roots`).
    pub roots: Vec<Cid>,
    /// What `cid` is, when it is UnixFS.
    pub stat: Option<Stat>,
    /// When the path's root is a signed manifest: who signed it, for people.
    pub signed: Option<String>,
}

/// Follows `segments` from `root`, one name at a time.
pub fn resolve<S: BlockSource>(source: &S, root: &Cid, segments: &[String]) -> Result<Resolved, HttpError> {
    let mut roots = vec![*root];
    let cid = follow_path(source, root, segments, |from, to, used| {
        // One CID per segment: fields inside a block are at that block.
        roots.extend(std::iter::repeat_n(from, used - 1));
        roots.push(to);
    })?;
    let stat = match exporter::stat(source, &cid) {
        Ok(s) => Some(s),
        Err(ExportError::NotUnixFs(_)) => None,
        Err(e) => return Err(e.into()),
    };
    Ok(Resolved { cid, roots, stat, signed: None })
}

/// Follows `segments` from `root`: by name through UnixFS directories, and by field
/// through DAG-CBOR and DAG-JSON blocks as far as a link. `step` hears of each block the path
/// moves to: from where, to where, and over how many segments.
///
/// A path that goes into a value that is not a link (or on past one) is a 501, as the path
/// gateway spec says: the gateway serves blocks, not values inside them.
pub fn follow_path<S: BlockSource>(
    source: &S,
    root: &Cid,
    segments: &[String],
    mut step: impl FnMut(Cid, Cid, usize),
) -> Result<Cid, HttpError> {
    let mut cid = *root;
    let mut at = 0;
    while at < segments.len() {
        let (next, used) = if pathing::traversable(&cid) {
            let data = block_of(source, &cid)?;
            match pathing::follow(&cid, &data, &segments[at..]) {
                Ok(Followed::Link { cid, used }) => (cid, used),
                Ok(Followed::Value { used }) => {
                    let stop = segments[..(at + used).max(1)].join("/");
                    return Err(HttpError::new(
                        StatusCode::NOT_IMPLEMENTED,
                        format!(
                            "the path reaches a value inside {cid} that is not a link (at /{stop}), and goes no \
                             further: paths through DAG-CBOR and DAG-JSON end at links; ask for the block itself"
                        ),
                    ));
                }
                Err(e @ PathingError::NoSuchField { .. }) => {
                    return Err(HttpError::new(StatusCode::NOT_FOUND, e.to_string()))
                }
                Err(e) => return Err(HttpError::internal(e)),
            }
        } else {
            (exporter::resolve(source, &cid, &segments[at])?, 1)
        };
        step(cid, next, used);
        cid = next;
        at += used;
    }
    Ok(cid)
}

/// Up to `n` bytes from the start of a file, for sniffing its type. `body` is the range the
/// response will then read (start and length; `None` for a HEAD): it is opened first, so that
/// the source has the body's first blocks on their way while the head is read, rather than
/// after it. When the body starts at the head, the head comes from that same read.
pub fn file_head<S: BlockSource>(
    source: &S,
    cid: &Cid,
    n: u64,
    body: Option<(u64, u64)>,
) -> Result<Vec<u8>, HttpError> {
    let (start, len) = body.unwrap_or((0, n));
    let mut segments = FileSegments::new(source, cid, start, Some(len))?;
    if start != 0 || len < n.min(segments.file_size()) {
        segments = FileSegments::new(source, cid, 0, Some(n))?;
    }
    let mut head = Vec::with_capacity(n as usize);
    for seg in segments {
        let seg = seg?;
        let take = (n as usize).saturating_sub(head.len()).min(seg.len());
        head.extend_from_slice(&seg[..take]);
        if head.len() as u64 >= n {
            break;
        }
    }
    Ok(head)
}

/// Which part of the terminal DAG a CAR response carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DagScope {
    /// The terminal block alone.
    Block,
    /// What is needed to read the terminal entity: a file's blocks (those covering
    /// `entity-bytes` when given), a directory's node (every shard of a sharded one), or the
    /// block of anything else.
    Entity,
    /// The whole DAG under the terminal.
    All,
}

/// A byte range of a file for `entity-bytes`: `from` may be negative (from the end), `to`
/// may be negative or open (`*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntityBytes {
    /// Start, inclusive; negative counts from the end.
    pub from: i64,
    /// End, inclusive; negative counts from the end; `None` is the end of the file.
    pub to: Option<i64>,
}

impl EntityBytes {
    /// The half-open range `[start, end)` this selects in a file of `size` bytes; empty when
    /// it selects nothing.
    pub fn clamp(&self, size: u64) -> (u64, u64) {
        let at = |v: i64| if v < 0 { size.saturating_sub(v.unsigned_abs()) } else { (v as u64).min(size) };
        let start = at(self.from);
        let end = match self.to {
            None => size,
            Some(t) if t < 0 => at(t).saturating_add(1).min(size),
            Some(t) => (t as u64).saturating_add(1).min(size),
        };
        (start, end.max(start))
    }
}

/// Writes the CAR for `root/segments` with the given scope: first every block met while
/// resolving the path, then the terminal's blocks, each once, depth-first. The header names
/// `car_root` (the terminal, resolved beforehand, as other gateways do; clients are told to
/// verify the blocks against the path they asked for, not the header).
#[allow(clippy::too_many_arguments)]
pub fn write_car<S: BlockSource, W: Write>(
    source: &S,
    car_root: &Cid,
    root: &Cid,
    segments: &[String],
    scope: DagScope,
    bytes: Option<EntityBytes>,
    dups: bool,
    out: W,
) -> Result<W, HttpError> {
    match start_car(source, car_root, root, segments, scope, bytes, dups, out)? {
        CarRest::Done(w) => Ok(w),
        CarRest::Rest(rest) => {
            let (mut car, mut tail) = *rest;
            tail.write(source, &mut car)?;
            Ok(car.finish()?)
        }
    }
}

/// What is left of a CAR after [`start_car`].
#[derive(Debug)]
pub enum CarRest<W: Write> {
    /// Nothing: here is the writer, flushed.
    Done(W),
    /// The terminal's blocks: go on with [`CarTail::write`] (which can stop at a block being
    /// fetched and go on later from where it stopped), then finish the writer.
    Rest(Box<(CarWriter<W>, CarTail)>),
}

/// The long part of a CAR, the terminal's blocks, and where its writing is.
#[derive(Debug)]
pub enum CarTail {
    /// The walk of the terminal's whole DAG (scope `all`, or `entity` of a whole file).
    Walk(DagWalk),
    /// The blocks that hold bytes `at..end` of the file (scope `entity` with a range).
    Range { file: Cid, at: u64, end: u64 },
    /// The shards of a sharded directory (scope `entity`).
    Shards(exporter::DirCursor),
}

impl CarTail {
    /// Writes the rest of the CAR's blocks to `car`. A stop at a block being fetched (or,
    /// through a paced source, for a slow client) keeps the place: called again, it goes on
    /// from there, and the CAR comes out as if it had not stopped.
    pub fn write<S: BlockSource, W: Write>(&mut self, source: &S, car: &mut CarWriter<W>) -> Result<(), HttpError> {
        match self {
            CarTail::Walk(walk) => Ok(car.write_walk(source, walk)?),
            CarTail::Range { file, at, end } => {
                // Reading the range touches exactly the blocks that cover it, in order; gone
                // on with, it reads the path down to `at` again, whose blocks are written
                // already and are not written twice.
                let rec = Recording::new(source);
                if *end > *at {
                    for seg in FileSegments::new(&rec, file, *at, Some(*end - *at))? {
                        let seg = seg?;
                        emit(car, rec.take())?;
                        *at += seg.len() as u64;
                    }
                }
                emit(car, rec.take())
            }
            CarTail::Shards(entries) => {
                let rec = Recording::new(source);
                while let Some(item) = entries.next(&rec) {
                    emit(car, rec.take())?;
                    item?;
                }
                Ok(())
            }
        }
    }
}

/// [`write_car`] up to the terminal's blocks, which can be long and are written by
/// [`CarTail::write`], which goes on from where it stops; what comes before them (the
/// blocks on the path, the terminal's root) is short, and is written again from the start
/// after a stop.
#[allow(clippy::too_many_arguments)]
pub fn start_car<S: BlockSource, W: Write>(
    source: &S,
    car_root: &Cid,
    root: &Cid,
    segments: &[String],
    scope: DagScope,
    bytes: Option<EntityBytes>,
    dups: bool,
    out: W,
) -> Result<CarRest<W>, HttpError> {
    let rec = Recording::new(source);
    let mut car = CarWriter::new(out, std::slice::from_ref(car_root))?;
    let mut path_blocks = Vec::new();
    let terminal = follow_path(&rec, root, segments, |_, _, _| path_blocks.extend(rec.take()))?;
    emit(&mut car, path_blocks)?;
    match scope {
        DagScope::Block => {
            let data = block_of(&rec, &terminal)?;
            car.write_block_once(&terminal, &data)?;
        }
        // The walk reads the source itself: through `rec`, every block would be kept until
        // the response ends.
        DagScope::All => return Ok(CarRest::Rest(Box::new((car, CarTail::Walk(walk(terminal, dups)))))),
        DagScope::Entity => {
            if let Some(tail) = entity(&rec, &mut car, &terminal, bytes, dups)? {
                return Ok(CarRest::Rest(Box::new((car, tail))));
            }
        }
    }
    Ok(CarRest::Done(car.finish()?))
}

/// How many repeated blocks, and how many bytes of them, one `dups=y` CAR may send: a
/// DAG with repeated links can make its walk exponentially long, and past this the
/// response ends with an error rather than going on. A GiB of zeros in 256 KiB chunks
/// repeats one block 4095 times; these leave room for far more.
pub const MAX_REPEATED_BLOCKS: u64 = 1 << 20;
/// See [`MAX_REPEATED_BLOCKS`].
pub const MAX_REPEATED_BYTES: u64 = 16 << 30;

/// The walk of the DAG under `root`: with repeats (`dups=y`) within the bounds above, or
/// each block once.
fn walk(root: Cid, dups: bool) -> DagWalk {
    match dups {
        true => DagWalk::with_duplicates(root, DupBudget::new(MAX_REPEATED_BLOCKS, MAX_REPEATED_BYTES)),
        false => DagWalk::new(root),
    }
}

/// The bytes of one block (an identity CID's are its digest).
pub fn block_of<S: BlockSource>(source: &S, cid: &Cid) -> Result<Bytes, HttpError> {
    if cid.hash().code() == IDENTITY {
        return Ok(Bytes::copy_from_slice(cid.hash().digest()));
    }
    Ok(source.get(cid).map_err(ExportError::Source)?)
}

fn emit<W: Write>(car: &mut CarWriter<W>, blocks: Vec<(Cid, Bytes)>) -> Result<(), HttpError> {
    for (cid, data) in blocks {
        car.write_block_once(&cid, &data)?;
    }
    Ok(())
}

/// Writes the entity's root block and says what is left: the walk of the whole DAG under
/// `terminal` (a whole file), a range of the file's blocks, or a sharded directory's shards,
/// for the caller to write past the record (which would keep every block until the
/// response ends).
fn entity<S: BlockSource, W: Write>(
    rec: &Recording<S>,
    car: &mut CarWriter<W>,
    terminal: &Cid,
    bytes: Option<EntityBytes>,
    dups: bool,
) -> Result<Option<CarTail>, HttpError> {
    if terminal.codec() != DAG_PB {
        let data = block_of(rec, terminal)?;
        car.write_block_once(terminal, &data)?;
        return Ok(None);
    }
    let stat = exporter::stat(rec, terminal)?;
    let root_block = rec.take();
    if stat.kind == NodeKind::File && bytes.is_none() {
        // The walk writes the root itself, then everything under it.
        return Ok(Some(CarTail::Walk(walk(*terminal, dups))));
    }
    emit(car, root_block)?;
    Ok(match stat.kind {
        NodeKind::File => {
            let (at, end) = bytes.map_or((0, stat.size), |range| range.clamp(stat.size));
            Some(CarTail::Range { file: *terminal, at, end })
        }
        NodeKind::HamtDirectory => Some(CarTail::Shards(exporter::DirCursor::open(rec, terminal)?)),
        NodeKind::Directory | NodeKind::Symlink => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_node::merkle::chunker::ChunkerSpec;
    use cairn_node::merkle::importer::{import_bytes, ImportOptions};
    use cairn_node::merkle::MemoryBlocks;

    #[test]
    fn the_gateway_sources_pass_read_ahead_hints_on() {
        // Without them a gateway reader fetching from peers waits for each block in turn.
        let data: Vec<u8> = (0..64 * 1024u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut blocks = MemoryBlocks::new();
        let opts = ImportOptions { chunker: ChunkerSpec::Size(1024), ..Default::default() };
        let root = import_bytes(&data, &opts, &mut blocks).unwrap();
        let logged = Logged(&blocks, Default::default());
        let source = Counting::new(Recording::new(&logged));
        let mut out = Vec::new();
        exporter::read_range(&source, &root.cid, 0, None, &mut out).unwrap();
        assert_eq!(out, data);
        let hints = logged.1.take().iter().filter(|(k, _)| *k == "prefetch").count();
        assert_eq!(hints, 64, "every leaf is hinted before it is read");
    }

    /// Logs what a reader asks of the source, in order.
    struct Logged<'a>(&'a MemoryBlocks, std::cell::RefCell<Vec<(&'static str, Cid)>>);

    impl BlockSource for Logged<'_> {
        fn get(&self, cid: &Cid) -> Result<Bytes, SourceError> {
            self.1.borrow_mut().push(("get", *cid));
            self.0.get(cid)
        }

        fn prefetch(&self, cid: &Cid) {
            self.1.borrow_mut().push(("prefetch", *cid));
        }
    }

    #[test]
    fn the_body_is_on_its_way_before_the_sniffing_head_is_read() {
        // Sniffing waits on the first leaf; a player's startup is then that leaf and the next
        // ones, so the next ones are asked for before, not after it.
        let data: Vec<u8> = (0..64 * 1024u32).map(|i| (i * 13 % 251) as u8).collect();
        let mut blocks = MemoryBlocks::new();
        let opts = ImportOptions { chunker: ChunkerSpec::Size(1024), ..Default::default() };
        let root = import_bytes(&data, &opts, &mut blocks).unwrap();
        let leaves: Vec<Cid> = {
            let node = cairn_node::merkle::dagpb::PbNode::decode(&blocks.get(&root.cid).unwrap()).unwrap();
            node.links.iter().map(|l| l.cid).collect()
        };
        let first_get = |log: &[(&str, Cid)], cid: &Cid| log.iter().position(|(k, c)| *k == "get" && c == cid);
        let hinted = |log: &[(&str, Cid)], cid: &Cid| log.iter().position(|(k, c)| *k == "prefetch" && c == cid);

        // The whole file: the head is the body's first bytes, and the body's next leaves are
        // hinted before the first leaf is read.
        let source = Logged(&blocks, Default::default());
        let len = data.len() as u64;
        assert_eq!(file_head(&source, &root.cid, 512, Some((0, len))).unwrap(), data[..512]);
        let log = source.1.take();
        let read_first = first_get(&log, &leaves[0]).expect("the first leaf is read");
        for leaf in &leaves[1..exporter::READ_AHEAD] {
            assert!(hinted(&log, leaf).is_some_and(|at| at < read_first), "{leaf} is hinted before the head is read");
        }
        assert_eq!(log.iter().filter(|(k, _)| *k == "get").count(), 2, "the root and the first leaf: {log:?}");

        // A range further on: its leaves are hinted before the head (at the start) is read.
        let source = Logged(&blocks, Default::default());
        assert_eq!(file_head(&source, &root.cid, 512, Some((40 * 1024, 4096))).unwrap(), data[..512]);
        let log = source.1.take();
        let read_first = first_get(&log, &leaves[0]).expect("the first leaf is read");
        for leaf in &leaves[40..44] {
            assert!(hinted(&log, leaf).is_some_and(|at| at < read_first), "{leaf} is hinted before the head is read");
        }

        // A HEAD reads the head alone; a body shorter than the head does not cut it short.
        let source = Logged(&blocks, Default::default());
        assert_eq!(file_head(&source, &root.cid, 2048, None).unwrap(), data[..2048]);
        assert!(source.1.take().iter().all(|(_, c)| *c == root.cid || *c == leaves[0] || *c == leaves[1]));
        let source = Logged(&blocks, Default::default());
        assert_eq!(file_head(&source, &root.cid, 2048, Some((0, 100))).unwrap(), data[..2048]);
    }

    #[test]
    fn entity_bytes_clamp_like_the_spec() {
        let r = |from, to| EntityBytes { from, to };
        assert_eq!(r(0, None).clamp(100), (0, 100));
        assert_eq!(r(10, Some(19)).clamp(100), (10, 20));
        assert_eq!(r(-10, None).clamp(100), (90, 100));
        assert_eq!(r(0, Some(-11)).clamp(100), (0, 90));
        assert_eq!(r(50, Some(1000)).clamp(100), (50, 100));
        assert_eq!(r(-1000, Some(5)).clamp(100), (0, 6));
        assert_eq!(r(200, None).clamp(100), (100, 100));
        assert_eq!(r(60, Some(10)).clamp(100), (60, 60));
    }
}
