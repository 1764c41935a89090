//! Directories and symlinks.

use bytes::Bytes;
use cid::Cid;

use super::{BlockSink, FileSummary, ImportError, ImportOptions};
use crate::dagpb::{PbLink, PbNode};
use crate::hamt;
use crate::hash::DAG_PB;
use crate::unixfs::UnixFs;
use crate::Block;

/// One child of a directory being built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The entry's name (one path component).
    pub name: String,
    /// The child's root CID.
    pub cid: Cid,
    /// The child's cumulative block size (its link's `Tsize`).
    pub tsize: u64,
    /// Bytes of file content under the child.
    pub size: u64,
}

impl DirEntry {
    /// The entry for an imported child.
    pub fn new(name: impl Into<String>, child: &FileSummary) -> Self {
        DirEntry { name: name.into(), cid: child.cid, tsize: child.tsize, size: child.size }
    }
}

/// Checks that `name` can be one component of a UnixFS path.
pub fn check_name(name: &str) -> Result<(), ImportError> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        return Err(ImportError::BadName(name.to_owned()));
    }
    Ok(())
}

/// Builds a directory node over `entries`, sharding it into a HAMT when
/// [`ImportOptions::sharding`] says so, as Kubo does. Links are sorted by name.
pub fn build_directory(
    mut entries: Vec<DirEntry>,
    opts: &ImportOptions,
    sink: &mut dyn BlockSink,
) -> Result<FileSummary, ImportError> {
    for e in &entries {
        check_name(&e.name)?;
    }
    entries.sort_unstable_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    if let Some(dup) = entries.windows(2).find(|w| w[0].name == w[1].name) {
        return Err(ImportError::DuplicateName(dup[0].name.clone()));
    }
    let size = entries.iter().map(|e| e.size).sum();
    let links: Vec<PbLink> = entries.into_iter().map(|e| PbLink::new(e.cid, e.name, e.tsize)).collect();
    let data = UnixFs::directory().to_bytes();
    if opts.sharding.should_shard(&links, data.len()) {
        let mut blocks = Vec::new();
        let (cid, tsize) = hamt::build(links, opts.hamt_fanout, opts.format, &mut |b| blocks.push(b))?;
        for b in blocks {
            sink.put(b).map_err(ImportError::Sink)?;
        }
        return Ok(FileSummary { cid, size, tsize });
    }
    let tsize_children: u64 = links.iter().filter_map(|l| l.tsize).sum();
    let node = PbNode { links, data: Some(data) };
    let data = Bytes::from(node.encode());
    let cid = opts.format.cid(DAG_PB, &data);
    let tsize = data.len() as u64 + tsize_children;
    sink.put(Block::new_unchecked(cid, data)).map_err(ImportError::Sink)?;
    Ok(FileSummary { cid, size, tsize })
}

/// Makes a symlink node pointing at `target`.
pub fn symlink(target: &str, opts: &ImportOptions, sink: &mut dyn BlockSink) -> Result<FileSummary, ImportError> {
    let node = PbNode { links: vec![], data: Some(UnixFs::symlink(target).to_bytes()) };
    let data = Bytes::from(node.encode());
    let cid = opts.format.cid(DAG_PB, &data);
    let tsize = data.len() as u64;
    sink.put(Block::new_unchecked(cid, data)).map_err(ImportError::Sink)?;
    Ok(FileSummary { cid, size: 0, tsize })
}
