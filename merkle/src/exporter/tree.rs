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
        RAW => Ok(Stat { cid: *cid, kind: NodeKind::File, size: file_size(source, cid)?, target: None }),
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
            Ok(Stat { cid: *cid, kind, size, target })
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
/// errors.
pub fn list<'s, S: BlockSource + ?Sized>(source: &'s S, cid: &Cid) -> Result<DirList<'s>, ExportError> {
    if cid.codec() != DAG_PB {
        return Err(ExportError::NotADirectory(*cid));
    }
    let data = source.get(cid)?;
    let d = decode(cid, &data)?;
    let parent = *cid;
    match kind_of(cid, &d)? {
        NodeKind::Directory => Ok(Box::new(d.node.links.into_iter().map(move |l| {
            check_entry_name(&parent, l.name())?;
            Ok(item(l))
        }))),
        NodeKind::HamtDirectory => {
            let entries = hamt::Entries::new(source, d.node, d.fs)?;
            Ok(Box::new(entries.map(move |r| {
                let (name, mut link) = r?;
                check_entry_name(&parent, &name)?;
                link.name = Some(name);
                Ok(item(link))
            })))
        }
        _ => Err(ExportError::NotADirectory(*cid)),
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

/// A depth-first walk of a UnixFS tree: each directory is yielded before its entries,
/// entries in directory order. Holds one listing iterator per level.
pub struct Walker<'s, S: BlockSource + ?Sized> {
    source: &'s S,
    root: Option<Cid>,
    stack: Vec<(String, DirList<'s>)>,
}

impl<S: BlockSource + ?Sized> std::fmt::Debug for Walker<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Walker").field("depth", &self.stack.len()).finish()
    }
}

impl<'s, S: BlockSource + ?Sized> Walker<'s, S> {
    /// Starts a walk at `root`.
    pub fn new(source: &'s S, root: &Cid) -> Self {
        Walker { source, root: Some(*root), stack: Vec::new() }
    }

    fn enter(&mut self, path: String, stat: Stat) -> Result<WalkItem, ExportError> {
        if stat.kind.is_dir() {
            if self.stack.len() >= MAX_DEPTH {
                return Err(ExportError::TooDeep(stat.cid));
            }
            let entries = list(self.source, &stat.cid)?;
            self.stack.push((path.clone(), entries));
        }
        Ok(WalkItem { path, stat })
    }
}

impl<S: BlockSource + ?Sized> Iterator for Walker<'_, S> {
    type Item = Result<WalkItem, ExportError>;

    fn next(&mut self) -> Option<Self::Item> {
        let result = if let Some(root) = self.root.take() {
            stat(self.source, &root).and_then(|s| self.enter(String::new(), s))
        } else {
            loop {
                let (prefix, entries) = self.stack.last_mut()?;
                match entries.next() {
                    None => {
                        self.stack.pop();
                    }
                    Some(Err(e)) => break Err(e),
                    Some(Ok(entry)) => {
                        let path = if prefix.is_empty() { entry.name } else { format!("{prefix}/{}", entry.name) };
                        break stat(self.source, &entry.cid).and_then(|s| self.enter(path, s));
                    }
                }
            }
        };
        if result.is_err() {
            self.stack.clear();
        }
        Some(result)
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
