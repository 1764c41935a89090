//! File import: leaves, then the balanced or trickle tree above them.

use std::collections::VecDeque;
use std::io::Read;

use bytes::Bytes;
use cid::Cid;
use rayon::prelude::*;

use super::{BlockSink, ImportError, ImportOptions, Layout, LEAF_BATCH};
use crate::chunker::Chunker;
use crate::dagpb::{put_varint, varint_len, PbLink, PbNode};
use crate::hash::{CidFormat, DAG_PB, RAW};
use crate::unixfs::{DataType, UnixFs};
use crate::Block;

/// What an imported file (or any subtree of one) amounts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileSummary {
    /// The root's CID.
    pub cid: Cid,
    /// Bytes of file content under the root.
    pub size: u64,
    /// Bytes of all blocks under the root, the root included (a link's `Tsize`).
    pub tsize: u64,
}

/// Imports one file read from `reader` and returns its root.
pub fn import_file<R: Read + Send>(
    reader: R,
    opts: &ImportOptions,
    sink: &mut dyn BlockSink,
) -> Result<FileSummary, ImportError> {
    opts.validate()?;
    let chunker = opts.chunker.build(reader);
    let mut leaves = Leaves::new(chunker, opts, sink);
    let root = match opts.layout {
        Layout::Balanced => balanced(&mut leaves)?,
        Layout::Trickle => trickle_root(&mut leaves)?,
    };
    Ok(root)
}

/// Imports a byte slice held in memory (tests and small tools).
pub fn import_bytes(data: &[u8], opts: &ImportOptions, sink: &mut dyn BlockSink) -> Result<FileSummary, ImportError> {
    import_file(data, opts, sink)
}

/// Encodes a dag-pb UnixFS leaf of type `ty` with a single copy of the chunk.
///
/// The bytes equal `PbNode { data: UnixFs::file_leaf(chunk) }.encode()` for
/// [`DataType::File`], the type Kubo gives the leaves of balanced files; the leaves of its
/// trickle files are [`DataType::Raw`], otherwise the same.
fn encode_leaf(chunk: &[u8], ty: DataType) -> Vec<u8> {
    let n = chunk.len() as u64;
    // UnixFS message: Type, Data (only when non-empty), filesize.
    let mut unixfs_len = 2 + 1 + varint_len(n);
    if n > 0 {
        unixfs_len += 1 + varint_len(n) + chunk.len();
    }
    let mut out = Vec::with_capacity(1 + varint_len(unixfs_len as u64) + unixfs_len);
    out.push(0x0a);
    put_varint(&mut out, unixfs_len as u64);
    out.extend_from_slice(&[0x08, ty as u8]);
    if n > 0 {
        out.push(0x12);
        put_varint(&mut out, n);
        out.extend_from_slice(chunk);
    }
    out.push(0x18);
    put_varint(&mut out, n);
    out
}

/// How many leaves one thread hashes together (the widest SIMD lane count in use).
const HASH_GROUP: usize = 16;

/// Turns a batch of chunks into leaf blocks: encoding and hashing are spread over the
/// rayon pool, and each group of leaves is hashed in lockstep ([`HashAlg::digest_many`]).
///
/// [`HashAlg::digest_many`]: crate::hash::HashAlg::digest_many
fn make_leaves(chunks: Vec<Vec<u8>>, leaf: Leaf, format: CidFormat) -> Vec<(Block, FileSummary)> {
    let raw = leaf == Leaf::RawBlock;
    let codec = if raw { RAW } else { DAG_PB };
    let sizes: Vec<u64> = chunks.iter().map(|c| c.len() as u64).collect();
    let datas: Vec<Bytes> = if raw {
        chunks.into_iter().map(Bytes::from).collect()
    } else {
        let ty = if leaf == Leaf::UnixFsRaw { DataType::Raw } else { DataType::File };
        chunks.into_par_iter().map(|c| Bytes::from(encode_leaf(&c, ty))).collect()
    };
    let hashes: Vec<_> = datas
        .par_chunks(HASH_GROUP)
        .flat_map_iter(|group| {
            let msgs: Vec<&[u8]> = group.iter().map(|d| d.as_ref()).collect();
            format.hash.digest_many(&msgs)
        })
        .collect();
    datas
        .into_iter()
        .zip(hashes)
        .zip(sizes)
        .map(|((data, mh), size)| {
            let cid = format.cid_from_hash(codec, mh);
            let tsize = data.len() as u64;
            (Block::new_unchecked(cid, data), FileSummary { cid, size, tsize })
        })
        .collect()
}

/// Makes an inner file node over `children`.
fn make_node(children: &[FileSummary], format: CidFormat) -> (Block, FileSummary) {
    let links = children.iter().map(|c| PbLink::new(c.cid, "", c.tsize)).collect();
    let fs = UnixFs::file_node(children.iter().map(|c| c.size).collect());
    let node = PbNode { links, data: Some(fs.to_bytes()) };
    let data = Bytes::from(node.encode());
    let cid = format.cid(DAG_PB, &data);
    let size = children.iter().map(|c| c.size).sum();
    let tsize = data.len() as u64 + children.iter().map(|c| c.tsize).sum::<u64>();
    (Block::new_unchecked(cid, data), FileSummary { cid, size, tsize })
}

/// What a leaf is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leaf {
    /// The chunk itself, a raw block (`--raw-leaves`).
    RawBlock,
    /// A dag-pb UnixFS node of type File (Kubo's balanced layout).
    UnixFsFile,
    /// A dag-pb UnixFS node of type Raw (Kubo's trickle layout).
    UnixFsRaw,
}

/// The stream of leaves, produced in batches hashed in parallel, with one-leaf lookahead.
struct Leaves<'a, 's> {
    chunker: Box<dyn Chunker + 'a>,
    /// Chunks read ahead while the previous batch was hashed.
    next_batch: Option<Vec<Vec<u8>>>,
    ready: VecDeque<FileSummary>,
    eof: bool,
    produced: u64,
    leaf: Leaf,
    format: CidFormat,
    max_links: usize,
    sink: &'s mut dyn BlockSink,
}

impl<'a, 's> Leaves<'a, 's> {
    fn new(chunker: Box<dyn Chunker + 'a>, opts: &ImportOptions, sink: &'s mut dyn BlockSink) -> Self {
        Leaves {
            chunker,
            next_batch: None,
            ready: VecDeque::with_capacity(LEAF_BATCH),
            eof: false,
            produced: 0,
            leaf: match (opts.raw_leaves, opts.layout) {
                (true, _) => Leaf::RawBlock,
                (false, Layout::Balanced) => Leaf::UnixFsFile,
                (false, Layout::Trickle) => Leaf::UnixFsRaw,
            },
            format: opts.format,
            max_links: opts.max_links,
            sink,
        }
    }

    fn read_batch(chunker: &mut (dyn Chunker + 'a)) -> std::io::Result<Vec<Vec<u8>>> {
        let mut batch = Vec::with_capacity(LEAF_BATCH);
        while batch.len() < LEAF_BATCH {
            match chunker.next_chunk()? {
                Some(c) => batch.push(c),
                None => break,
            }
        }
        Ok(batch)
    }

    /// Makes sure `ready` holds a leaf unless the input is exhausted.
    fn fill(&mut self) -> Result<(), ImportError> {
        if !self.ready.is_empty() || self.eof {
            return Ok(());
        }
        let batch = match self.next_batch.take() {
            Some(b) => b,
            None => Self::read_batch(self.chunker.as_mut())?,
        };
        if batch.is_empty() {
            self.eof = true;
            return Ok(());
        }
        let (leaf, format) = (self.leaf, self.format);
        let chunker = self.chunker.as_mut();
        let (leaves, next) = rayon::join(|| make_leaves(batch, leaf, format), || Self::read_batch(chunker));
        self.next_batch = Some(next?);
        for (block, summary) in leaves {
            self.sink.put(block).map_err(ImportError::Sink)?;
            self.ready.push_back(summary);
        }
        Ok(())
    }

    fn done(&mut self) -> Result<bool, ImportError> {
        self.fill()?;
        Ok(self.ready.is_empty())
    }

    fn next(&mut self) -> Result<Option<FileSummary>, ImportError> {
        self.fill()?;
        let leaf = self.ready.pop_front();
        self.produced += u64::from(leaf.is_some());
        Ok(leaf)
    }

    fn emit_node(&mut self, children: &[FileSummary]) -> Result<FileSummary, ImportError> {
        let (block, summary) = make_node(children, self.format);
        self.sink.put(block).map_err(ImportError::Sink)?;
        Ok(summary)
    }

    /// An empty file: a leaf with no bytes (a bare empty raw block under raw leaves).
    fn empty_leaf(&mut self) -> Result<FileSummary, ImportError> {
        let (block, summary) = make_leaves(vec![Vec::new()], self.leaf, self.format).remove(0);
        self.sink.put(block).map_err(ImportError::Sink)?;
        Ok(summary)
    }
}

/// Balanced layout, built bottom-up with one pending list per level.
///
/// A full level is only closed into a node when another entry arrives for it, so a file of
/// exactly `max_links^d` leaves ends with one full node per level, as Kubo's layout gives; at
/// the end every level is closed from the bottom, which wraps partial subtrees in nodes of
/// their own just as Kubo's depth-first filling does (a last leaf under a full tree hangs from
/// a chain of one-child nodes as deep as the tree).
fn balanced(leaves: &mut Leaves<'_, '_>) -> Result<FileSummary, ImportError> {
    let max = leaves.max_links;
    let mut levels: Vec<Vec<FileSummary>> = vec![Vec::with_capacity(max)];
    while let Some(leaf) = leaves.next()? {
        push_balanced(leaves, &mut levels, 0, leaf)?;
    }
    if leaves.produced == 0 {
        return leaves.empty_leaf();
    }
    let mut level = 0;
    loop {
        let top = level + 1 == levels.len();
        if top && levels[level].len() == 1 {
            return Ok(levels[level][0]);
        }
        let pending = std::mem::take(&mut levels[level]);
        let node = leaves.emit_node(&pending)?;
        push_balanced(leaves, &mut levels, level + 1, node)?;
        level += 1;
    }
}

/// Puts `entry` on `level`; a level already full is first closed into a node, which goes up
/// the same way.
fn push_balanced(
    leaves: &mut Leaves<'_, '_>,
    levels: &mut Vec<Vec<FileSummary>>,
    mut level: usize,
    mut entry: FileSummary,
) -> Result<(), ImportError> {
    let max = leaves.max_links;
    loop {
        if levels.len() == level {
            levels.push(Vec::with_capacity(max));
        }
        if levels[level].len() < max {
            levels[level].push(entry);
            return Ok(());
        }
        let full = std::mem::take(&mut levels[level]);
        levels[level].push(entry);
        entry = leaves.emit_node(&full)?;
        level += 1;
    }
}

/// How many subtrees of each depth a trickle node holds after its leaves.
const TRICKLE_REPEAT: usize = 4;

fn trickle_root(leaves: &mut Leaves<'_, '_>) -> Result<FileSummary, ImportError> {
    trickle(leaves, None)
}

/// Trickle layout: a layer of leaves, then `TRICKLE_REPEAT` subtrees of each depth
/// 1, 2, ... (up to `max_depth`, exclusive), stopping as soon as input runs out.
fn trickle(leaves: &mut Leaves<'_, '_>, max_depth: Option<usize>) -> Result<FileSummary, ImportError> {
    let mut children = Vec::with_capacity(leaves.max_links);
    while children.len() < leaves.max_links {
        match leaves.next()? {
            Some(leaf) => children.push(leaf),
            None => break,
        }
    }
    let mut depth = 1;
    while max_depth.is_none_or(|m| depth < m) {
        if leaves.done()? {
            break;
        }
        for _ in 0..TRICKLE_REPEAT {
            if leaves.done()? {
                break;
            }
            children.push(trickle(leaves, Some(depth))?);
        }
        depth += 1;
    }
    leaves.emit_node(&children)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_copy_leaf_encoding_matches_generic_encoder() {
        for len in [0usize, 1, 127, 128, 300, 262144] {
            let chunk: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let generic =
                PbNode { links: vec![], data: Some(UnixFs::file_leaf(Bytes::from(chunk.clone())).to_bytes()) };
            assert_eq!(encode_leaf(&chunk, DataType::File), generic.encode(), "len {len}");
        }
    }
}
