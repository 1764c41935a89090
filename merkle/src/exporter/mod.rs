//! Reading data back out of a UnixFS DAG.
//!
//! - [`stat`] tells what a CID is (file, directory, sharded directory, symlink, raw block).
//! - [`resolve`] follows a path such as `a/b.txt` from a root, through plain and
//!   HAMT-sharded directories, touching only the blocks on the way.
//! - [`FileSegments`] streams any byte range of a file, fetching only the blocks that
//!   overlap the range; [`read_range`] writes such a range to a writer.
//! - [`list`] lists a directory's entries; [`Walker`] walks a whole tree depth-first. Their
//!   cursors ([`DirCursor`], [`WalkCursor`]) hold no source and keep their place at a block
//!   being fetched, for readers that let their thread go while it comes.
//!
//! Everything is pulled through a [`BlockSource`](crate::BlockSource), one block at a time. Memory holds one
//! decoded node per tree level. Hand-made DAGs cannot make a reader loop: depth is bounded
//! by [`MAX_DEPTH`], and declared sizes are checked against what the children deliver.

mod file;
mod tree;

pub use file::{read_range, read_to_vec, FileSegments, READ_AHEAD};
pub use tree::{list, resolve, stat, DirCursor, DirItem, DirList, NodeKind, Stat, WalkCursor, WalkItem, Walker};

use cid::Cid;

use crate::dagpb::DagPbError;
use crate::hamt::HamtError;
use crate::source::SourceError;
use crate::unixfs::UnixFsError;

/// The deepest a DAG may be before reading it is refused (protects against cycles in
/// hand-made DAGs and stack exhaustion).
pub const MAX_DEPTH: usize = 64;

/// Why reading a DAG failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// A block could not be had.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// A block is not valid dag-pb.
    #[error("block {cid}: {err}")]
    DagPb {
        /// The block.
        cid: Cid,
        /// What is wrong (boxed to keep the error small).
        err: Box<DagPbError>,
    },
    /// A dag-pb block is not valid UnixFS.
    #[error("block {cid}: {err}")]
    UnixFs {
        /// The block.
        cid: Cid,
        /// What is wrong.
        err: UnixFsError,
    },
    /// A sharded directory is malformed.
    #[error(transparent)]
    Hamt(#[from] HamtError),
    /// The CID's codec cannot be read as UnixFS.
    #[error("{0} is neither dag-pb nor raw, so it cannot be read as UnixFS")]
    NotUnixFs(Cid),
    /// A file was expected.
    #[error("{0} is not a file")]
    NotAFile(Cid),
    /// A directory was expected.
    #[error("{0} is not a directory")]
    NotADirectory(Cid),
    /// A path component does not exist.
    #[error("no link named {name:?} under {parent}")]
    NoSuchLink {
        /// The directory searched.
        parent: Cid,
        /// The missing name.
        name: String,
    },
    /// The DAG nests deeper than [`MAX_DEPTH`] (or loops).
    #[error("DAG under {0} is deeper than {MAX_DEPTH} levels (or contains a cycle)")]
    TooDeep(Cid),
    /// Sizes declared by a node disagree with its children or data.
    #[error("block {cid} declares {declared} bytes but holds {actual}")]
    SizeMismatch {
        /// The node.
        cid: Cid,
        /// What it (or its parent) declared.
        declared: u64,
        /// What it actually holds.
        actual: u64,
    },
    /// A file node's `blocksizes` do not match its links.
    #[error("block {cid} has {links} links but {sizes} blocksizes")]
    BlocksizesMismatch {
        /// The node.
        cid: Cid,
        /// Number of links.
        links: usize,
        /// Number of blocksizes.
        sizes: usize,
    },
    /// A directory entry name that would escape or is not a single path component.
    #[error("unsafe entry name {name:?} in directory {parent}")]
    UnsafeName {
        /// The directory.
        parent: Cid,
        /// The offending name.
        name: String,
    },
    /// Writing the output failed.
    #[error("writing output: {0}")]
    Write(#[from] std::io::Error),
}

impl ExportError {
    /// The block the read stopped at because it is to be fetched
    /// ([`SourceError::Pending`]), if that is why it stopped.
    pub fn pending(&self) -> Option<Cid> {
        match self {
            ExportError::Source(e) | ExportError::Hamt(HamtError::Source(e)) => e.pending(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::FileSegments;
    use crate::dagpb::{PbLink, PbNode};
    use crate::hash::{CidFormat, DAG_PB, RAW};
    use crate::source::MemoryBlocks;
    use crate::unixfs::UnixFs;
    use crate::Block;

    #[test]
    fn errors_stay_small() {
        // Results carrying this error are returned on every block read; keep them cheap.
        assert!(std::mem::size_of::<super::ExportError>() <= 128);
    }

    /// A file node of 40,000 links (each to the same one-byte leaf): a read of its last byte
    /// holds one span, not forty thousand; a read of all of it gets every byte.
    #[test]
    fn a_read_holds_spans_for_the_blocks_it_reads_not_every_link() {
        let mut blocks = MemoryBlocks::new();
        let leaf = CidFormat::default().cid(RAW, b"x");
        blocks.insert(Block::new_unchecked(leaf, Bytes::from_static(b"x")));
        let n = 40_000u64;
        let link = PbLink { cid: leaf, name: Some(String::new()), tsize: Some(1) };
        let node =
            PbNode { links: vec![link; n as usize], data: Some(UnixFs::file_node(vec![1; n as usize]).to_bytes()) };
        let data = Bytes::from(node.encode());
        let root = CidFormat::default().cid(DAG_PB, &data);
        blocks.insert(Block::new_unchecked(root, data));

        let mut last = FileSegments::new(&blocks, &root, n - 1, Some(1)).unwrap();
        assert_eq!(last.spans_held(), 1);
        assert_eq!(&last.next().unwrap().unwrap()[..], b"x");
        assert!(last.next().is_none());
        let all: usize = FileSegments::new(&blocks, &root, 0, None).unwrap().map(|s| s.unwrap().len()).sum();
        assert_eq!(all as u64, n);
    }

    /// Found by the `dag_walk` fuzz target: empty children inside the range were read, so a
    /// file of three levels of 100 empty children (each of 100 empty children...) between its
    /// first and last byte read a million blocks for four bytes. Now only the root and the
    /// leaf holding bytes are read.
    #[test]
    fn empty_children_are_not_read() {
        let mut blocks = MemoryBlocks::new();
        let mut put = |data: Bytes, codec| {
            let cid = CidFormat::default().cid(codec, &data);
            blocks.insert(Block::new_unchecked(cid, data));
            cid
        };
        let leaf = put(Bytes::from_static(b"abc"), RAW);
        let mut empty = put(Bytes::new(), RAW);
        for _ in 0..3 {
            let link = PbLink { cid: empty, name: Some(String::new()), tsize: Some(0) };
            let node = PbNode { links: vec![link; 100], data: Some(UnixFs::file_node(vec![0; 100]).to_bytes()) };
            empty = put(Bytes::from(node.encode()), DAG_PB);
        }
        let mut fs = UnixFs::file_node(vec![0, 3]);
        fs.data = Some(Bytes::from_static(b"x"));
        fs.filesize = Some(4);
        let links = vec![PbLink::new(empty, "", 0), PbLink::new(leaf, "", 3)];
        let root = put(Bytes::from(PbNode { links, data: Some(fs.to_bytes()) }.encode()), DAG_PB);
        blocks.reset_reads();
        let read: Vec<u8> =
            FileSegments::new(&blocks, &root, 0, None).unwrap().flat_map(|s| s.unwrap().to_vec()).collect();
        assert_eq!(read, b"xabc");
        assert_eq!(blocks.reads(), 2, "the root and the leaf");
    }
}
