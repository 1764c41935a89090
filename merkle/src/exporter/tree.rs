//! Node kinds, path resolution, directory listing and tree walks.

use bytes::Bytes;
use cid::Cid;

use super::file::file_size;
use super::{ExportError, MAX_DEPTH};
use crate::dagpb::{PbLink, PbNode};
use crate::hamt;
use crate::hash::{DAG_PB, RAW};
use crate::source::BlockSource;
use crate::unixfs::{DataType, UnixFs};

/// What a CID points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// A UnixFS file (dag-pb) or a bare raw block.
    File,
    /// A plain directory.
    Directory,
    /// A HAMT-sharded directory.
    HamtDirectory,
    /// A symbolic link.
    Symlink,
}

impl NodeKind {
    /// Whether this is a directory of either kind.
    pub fn is_dir(self) -> bool {
        matches!(self, NodeKind::Directory | NodeKind::HamtDirectory)
    }
}

/// A summary of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// The node's CID.
    pub cid: Cid,
    /// What it is.
    pub kind: NodeKind,
    /// File size for files; target length for symlinks; 0 for directories.
    pub size: u64,
    /// The symlink target, for symlinks.
    pub target: Option<String>,
    /// UnixFS's permission bits, when the node records them.
    pub mode: Option<u32>,
    /// UnixFS's modification time (seconds, nanoseconds), when the node records it.
    pub mtime: Option<(i64, u32)>,
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirItem {
    /// The entry's name.
    pub name: String,
    /// The child's CID.
    pub cid: Cid,
    /// The link's cumulative size, as the directory declares it.
    pub tsize: u64,
}

/// Decoded dag-pb node plus its UnixFS data.
struct Decoded {
    node: PbNode,
    fs: UnixFs,
}

fn decode(cid: &Cid, data: &Bytes) -> Result<Decoded, ExportError> {
    let node = PbNode::decode(data).map_err(|err| ExportError::DagPb { cid: *cid, err: Box::new(err) })?;
    let raw = node.data.clone().unwrap_or_default();
    let fs = UnixFs::decode(raw).map_err(|err| ExportError::UnixFs { cid: *cid, err })?;
    Ok(Decoded { node, fs })
}

fn kind_of(cid: &Cid, d: &Decoded) -> Result<NodeKind, ExportError> {
    Ok(match d.fs.kind().map_err(|err| ExportError::UnixFs { cid: *cid, err })? {
        DataType::File | DataType::Raw => NodeKind::File,
        DataType::Directory => NodeKind::Directory,
        DataType::HamtShard => NodeKind::HamtDirectory,
        DataType::Symlink => NodeKind::Symlink,
        DataType::Metadata => return Err(ExportError::NotAFile(*cid)),
    })
}

/// Tells what `cid` is, reading only its root block (files are sized from it too).
pub fn stat<S: BlockSource + ?Sized>(source: &S, cid: &Cid) -> Result<Stat, ExportError> {
    match cid.codec() {
        RAW => Ok(Stat {
            cid: *cid,
            kind: NodeKind::File,
            size: file_size(source, cid)?,
            target: None,
            mode: None,
            mtime: None,
        }),
        DAG_PB => {
            let data = source.get(cid)?;
            let d = decode(cid, &data)?;
            let kind = kind_of(cid, &d)?;
            let (size, target) = match kind {
                NodeKind::File => {
                    // Sizes come from the block: a sum past 2^64 is a malformed file, not a panic.
                    let size =
                        d.fs.blocksizes.iter().try_fold(d.fs.inline_data().len() as u64, |a, &b| a.checked_add(b));
                    let size = size.ok_or(ExportError::SizeMismatch { cid: *cid, declared: u64::MAX, actual: 0 })?;
                    (size, None)
                }
                NodeKind::Symlink => {
                    let t = String::from_utf8_lossy(&d.fs.inline_data()).into_owned();
                    (t.len() as u64, Some(t))
                }
                _ => (0, None),
            };
            let mtime = d.fs.mtime.as_ref().map(|t| (t.seconds, t.fractional_nanoseconds.unwrap_or(0)));
            Ok(Stat { cid: *cid, kind, size, target, mode: d.fs.mode, mtime })
        }
        _ => Err(ExportError::NotUnixFs(*cid)),
    }
}

fn check_entry_name(parent: &Cid, name: &str) -> Result<(), ExportError> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        return Err(ExportError::UnsafeName { parent: *parent, name: name.to_owned() });
    }
    Ok(())
}

fn item(link: PbLink) -> DirItem {
    DirItem { tsize: link.tsize.unwrap_or(0), name: link.name.unwrap_or_default(), cid: link.cid }
}

/// Follows `path` (components separated by `/`) from `root` and returns the CID it names.
/// Only the directory blocks on the way (and, in sharded directories, the shards on the
/// way) are read.
pub fn resolve<S: BlockSource + ?Sized>(source: &S, root: &Cid, path: &str) -> Result<Cid, ExportError> {
    let mut current = *root;
    for name in path.split('/').filter(|c| !c.is_empty()) {
        if current.codec() != DAG_PB {
            return Err(ExportError::NotADirectory(current));
        }
        let data = source.get(&current)?;
        let d = decode(&current, &data)?;
        let found = match kind_of(&current, &d)? {
            NodeKind::Directory => d.node.links.into_iter().find(|l| l.name() == name),
            NodeKind::HamtDirectory => hamt::lookup(source, &d.node, &d.fs, name)?,
            _ => return Err(ExportError::NotADirectory(current)),
        };
        current = found.ok_or_else(|| ExportError::NoSuchLink { parent: current, name: name.to_owned() })?.cid;
    }
    Ok(current)
}

/// A streamed directory listing.
pub type DirList<'s> = Box<dyn Iterator<Item = Result<DirItem, ExportError>> + 's>;

/// The entries of the directory at `cid`, streamed (a sharded directory is read shard by
/// shard as the iterator advances). Names that are not a single safe path component are
/// errors. Any error ends the listing.
pub fn list<'s, S: BlockSource + ?Sized>(source: &'s S, cid: &Cid) -> Result<DirList<'s>, ExportError> {
    let mut cursor = DirCursor::open(source, cid)?;
    Ok(Box::new(std::iter::from_fn(move || {
        let r = cursor.next(source);
        if matches!(r, Some(Err(_))) {
            cursor.end();
        }
        r
    })))
}

/// Where a listing of one directory is. It holds no source, so a reader can keep it
/// between reads: a listing that stops at a block being fetched ([`ExportError::pending`])
/// keeps its place, and [`DirCursor::next`] called again once the block is in goes on
/// from there. Any other error ends the listing.
#[derive(Debug, Clone)]
pub struct DirCursor {
    parent: Cid,
    links: DirLinks,
}

#[derive(Debug, Clone)]
enum DirLinks {
    Plain(std::vec::IntoIter<PbLink>),
    Sharded(hamt::Cursor),
}

impl DirCursor {
    /// Starts listing the directory `cid`, reading its (root) block.
    pub fn open<S: BlockSource + ?Sized>(source: &S, cid: &Cid) -> Result<Self, ExportError> {
        if cid.codec() != DAG_PB {
            return Err(ExportError::NotADirectory(*cid));
        }
        let data = source.get(cid)?;
        let d = decode(cid, &data)?;
        let links = match kind_of(cid, &d)? {
            NodeKind::Directory => DirLinks::Plain(d.node.links.into_iter()),
            NodeKind::HamtDirectory => DirLinks::Sharded(hamt::Cursor::new(d.node, d.fs)?),
            _ => return Err(ExportError::NotADirectory(*cid)),
        };
        Ok(DirCursor { parent: *cid, links })
    }

    /// The next entry; `None` at the end.
    pub fn next<S: BlockSource + ?Sized>(&mut self, source: &S) -> Option<Result<DirItem, ExportError>> {
        let link = match &mut self.links {
            DirLinks::Plain(links) => links.next()?,
            DirLinks::Sharded(cursor) => match cursor.next(source)? {
                Ok((name, mut link)) => {
                    link.name = Some(name);
                    link
                }
                Err(e) => return Some(Err(e.into())),
            },
        };
        let r = check_entry_name(&self.parent, link.name()).map(|()| item(link));
        if r.is_err() {
            self.end();
        }
        Some(r)
    }

    /// The CIDs of up to `n` entries just ahead (in a sharded directory, those of the shard
    /// being listed): what a reader can ask for before it stops.
    pub fn ahead(&self, n: usize) -> Vec<Cid> {
        match &self.links {
            DirLinks::Plain(links) => links.as_slice().iter().take(n).map(|l| l.cid).collect(),
            DirLinks::Sharded(cursor) => cursor.ahead(n).map(|l| l.cid).collect(),
        }
    }

    /// Ends the listing: [`DirCursor::next`] says `None` from now on.
    pub fn end(&mut self) {
        self.links = DirLinks::Plain(Vec::new().into_iter());
    }
}

/// One node met by a [`Walker`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalkItem {
    /// Path relative to the walk's root, components joined by `/` (empty for the root).
    pub path: String,
    /// What the node is.
    pub stat: Stat,
}

/// Where a depth-first walk of a UnixFS tree is: one [`DirCursor`] per level, and the node
/// it stopped at, if it stopped at one being fetched. Like [`DirCursor`] it holds no source
/// and keeps its place at a block being fetched; any other error ends the walk.
#[derive(Debug, Clone)]
pub struct WalkCursor {
    root: Option<Cid>,
    stack: Vec<(String, DirCursor)>,
    /// The node the walk stopped at (its path and CID), met again first.
    held: Option<(String, Cid)>,
}

impl WalkCursor {
    /// Starts a walk at `root`.
    pub fn new(root: &Cid) -> Self {
        WalkCursor { root: Some(*root), stack: Vec::new(), held: None }
    }

    /// The next node: each directory before its entries, entries in directory order;
    /// `None` at the end.
    pub fn next<S: BlockSource + ?Sized>(&mut self, source: &S) -> Option<Result<WalkItem, ExportError>> {
        let (path, cid) = match (self.root.take(), self.held.take()) {
            (Some(root), _) => (String::new(), root),
            (None, Some(held)) => held,
            (None, None) => loop {
                let (prefix, entries) = self.stack.last_mut()?;
                match entries.next(source) {
                    None => {
                        self.stack.pop();
                    }
                    Some(Err(e)) => return Some(Err(self.stopped(e))),
                    Some(Ok(entry)) => {
                        let path = if prefix.is_empty() { entry.name } else { format!("{prefix}/{}", entry.name) };
                        break (path, entry.cid);
                    }
                }
            },
        };
        match stat(source, &cid).and_then(|s| self.enter(source, path.clone(), s)) {
            Ok(item) => Some(Ok(item)),
            Err(e) => {
                if e.pending().is_some() {
                    self.held = Some((path, cid));
                }
                Some(Err(self.stopped(e)))
            }
        }
    }

    /// Ends the walk at an error other than a block being fetched.
    fn stopped(&mut self, e: ExportError) -> ExportError {
        if e.pending().is_none() {
            self.stack.clear();
            self.held = None;
        }
        e
    }

    /// Ends the walk: [`WalkCursor::next`] says `None` from now on.
    pub fn end(&mut self) {
        *self = WalkCursor { root: None, stack: Vec::new(), held: None };
    }

    fn enter<S: BlockSource + ?Sized>(
        &mut self,
        source: &S,
        path: String,
        stat: Stat,
    ) -> Result<WalkItem, ExportError> {
        if stat.kind.is_dir() {
            if self.stack.len() >= MAX_DEPTH {
                return Err(ExportError::TooDeep(stat.cid));
            }
            let entries = DirCursor::open(source, &stat.cid)?;
            self.stack.push((path.clone(), entries));
        }
        Ok(WalkItem { path, stat })
    }
}

/// A [`WalkCursor`] with its source, as an iterator. Any error, a block being fetched
/// included, is yielded once and ends the walk.
pub struct Walker<'s, S: BlockSource + ?Sized> {
    source: &'s S,
    cursor: WalkCursor,
}

impl<S: BlockSource + ?Sized> std::fmt::Debug for Walker<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Walker").field("cursor", &self.cursor).finish()
    }
}

impl<'s, S: BlockSource + ?Sized> Walker<'s, S> {
    /// Starts a walk at `root`.
    pub fn new(source: &'s S, root: &Cid) -> Self {
        Walker { source, cursor: WalkCursor::new(root) }
    }
}

impl<S: BlockSource + ?Sized> Iterator for Walker<'_, S> {
    type Item = Result<WalkItem, ExportError>;

    fn next(&mut self) -> Option<Self::Item> {
        let r = self.cursor.next(self.source);
        if matches!(r, Some(Err(_))) {
            self.cursor.end();
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::CidFormat;
    use crate::{Block, MemoryBlocks};

    #[test]
    fn a_file_whose_sizes_add_up_past_u64_is_an_error() {
        // Found by the `dag_walk` fuzz target: the sum overflowed (a panic with overflow
        // checks, a wrong size without).
        let fs = UnixFs { blocksizes: vec![u64::MAX, 3], ..UnixFs::file_node(vec![]) };
        let leaf = CidFormat::default().cid(RAW, b"abc");
        let node =
            PbNode { links: vec![PbLink::new(leaf, "", 3), PbLink::new(leaf, "", 3)], data: Some(fs.to_bytes()) };
        let bytes = Bytes::from(node.encode());
        let cid = CidFormat::default().cid(DAG_PB, &bytes);
        let mut blocks = MemoryBlocks::new();
        blocks.insert(Block::new_unchecked(cid, bytes));
        assert!(matches!(stat(&blocks, &cid), Err(ExportError::SizeMismatch { declared: u64::MAX, .. })));
    }
}
