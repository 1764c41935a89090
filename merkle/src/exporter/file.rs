//! Range reads over a file DAG.

use std::io::Write;

use bytes::Bytes;
use cid::Cid;

use super::{ExportError, MAX_DEPTH};
use crate::dagpb::PbNode;
use crate::hash::{DAG_PB, RAW};
use crate::source::BlockSource;
use crate::unixfs::{DataType, UnixFs};

/// Children of one node announced to the source ahead of the one being read.
pub const READ_AHEAD: usize = 32;

/// A child still to visit: its CID and the file offsets it covers.
#[derive(Debug, Clone, Copy)]
struct Span {
    cid: Cid,
    start: u64,
    len: u64,
}

/// The bytes of a file in `[start, end)`, yielded block by block in file order.
///
/// Only blocks whose span overlaps the range are fetched. Each item is a slice of one
/// leaf (or of a node's inline data). The source is told where the read starts
/// ([`BlockSource::reading`]) and of the next [`READ_AHEAD`] children in range before they
/// are read ([`BlockSource::prefetch`]), so a network source can have them in flight while
/// the reader works through the ones before.
#[derive(Debug)]
pub struct FileSegments<'s, S: ?Sized> {
    source: &'s S,
    /// Children of each open node, with the index of the next one to visit.
    stack: Vec<(Vec<Span>, usize)>,
    start: u64,
    end: u64,
    pending: Option<Bytes>,
    size: u64,
}

impl<'s, S: BlockSource + ?Sized> FileSegments<'s, S> {
    /// Opens the file at `cid` for the range `offset .. offset + len` (to the end when `len`
    /// is `None`); the range is clipped to the file's size.
    pub fn new(source: &'s S, cid: &Cid, offset: u64, len: Option<u64>) -> Result<Self, ExportError> {
        let data = source.get(cid)?;
        let size = size_of_block(cid, &data)?;
        let start = offset.min(size);
        let end = len.map_or(size, |l| start.saturating_add(l).min(size));
        let mut me = FileSegments { source, stack: Vec::new(), start, end, pending: None, size };
        me.pending = me.visit_data(Span { cid: *cid, start: 0, len: size }, data)?;
        if let Some(first) = me.stack.last().and_then(|(children, _)| children.iter().find(|c| me.in_range(c))) {
            source.reading(cid, start, end, &first.cid);
        }
        Ok(me)
    }

    /// The whole file's size.
    pub fn file_size(&self) -> u64 {
        self.size
    }

    /// The clipped range being read.
    pub fn range(&self) -> (u64, u64) {
        (self.start, self.end)
    }

    /// Children held to visit, over every open level (for tests of what a read holds).
    pub fn spans_held(&self) -> usize {
        self.stack.iter().map(|(children, _)| children.len()).sum()
    }

    fn clip(&self, data: &Bytes, at: u64) -> Option<Bytes> {
        let from = self.start.max(at);
        let to = self.end.min(at + data.len() as u64);
        (from < to).then(|| data.slice((from - at) as usize..(to - at) as usize))
    }

    /// Fetches one span; returns its inline bytes in range and pushes its children.
    fn visit(&mut self, span: Span) -> Result<Option<Bytes>, ExportError> {
        let data = self.source.get(&span.cid)?;
        self.visit_data(span, data)
    }

    /// Whether `span` holds bytes of the range. An empty span holds none: reading it would
    /// fetch a block for nothing, and a node of many empty children, each of many empty
    /// children, would read without end and without output.
    fn in_range(&self, span: &Span) -> bool {
        span.len > 0 && span.start < self.end && span.start + span.len > self.start
    }

    /// Tells the source a child in range will be read.
    fn hint(&self, span: &Span) {
        if self.in_range(span) {
            self.source.prefetch(&span.cid);
        }
    }

    fn visit_data(&mut self, span: Span, data: Bytes) -> Result<Option<Bytes>, ExportError> {
        match span.cid.codec() {
            RAW => {
                check_len(&span.cid, span.len, data.len() as u64)?;
                Ok(self.clip(&data, span.start))
            }
            DAG_PB => {
                let (node, fs) = decode_file(&span.cid, &data)?;
                let inline = fs.inline_data();
                let total = inline.len() as u64 + fs.blocksizes.iter().sum::<u64>();
                check_len(&span.cid, span.len, total)?;
                // Only the children the range covers are kept: a read holds spans for the
                // blocks it will read, not for every link a wide node has.
                let mut at = span.start + inline.len() as u64;
                let mut children = Vec::new();
                for (link, &len) in node.links.iter().zip(&fs.blocksizes) {
                    let child = Span { cid: link.cid, start: at, len };
                    if self.in_range(&child) {
                        children.push(child);
                    }
                    at += len;
                }
                if !children.is_empty() {
                    if self.stack.len() >= MAX_DEPTH {
                        return Err(ExportError::TooDeep(span.cid));
                    }
                    for child in children.iter().filter(|c| self.in_range(c)).take(READ_AHEAD) {
                        self.source.prefetch(&child.cid);
                    }
                    self.stack.push((children, 0));
                }
                Ok(self.clip(&inline, span.start))
            }
            _ => Err(ExportError::NotUnixFs(span.cid)),
        }
    }
}

impl<S: BlockSource + ?Sized> Iterator for FileSegments<'_, S> {
    type Item = Result<Bytes, ExportError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(seg) = self.pending.take() {
                return Some(Ok(seg));
            }
            let (children, next) = self.stack.last_mut()?;
            let Some(&span) = children.get(*next) else {
                self.stack.pop();
                continue;
            };
            *next += 1;
            if span.len == 0 || span.start >= self.end || span.start + span.len <= self.start {
                continue;
            }
            // The window of hinted children moves on by one.
            if let Some(ahead) = children.get(*next + READ_AHEAD - 2).filter(|_| *next >= 2).copied() {
                self.hint(&ahead);
            }
            match self.visit(span) {
                Ok(seg) => self.pending = seg,
                Err(e) => {
                    self.stack.clear();
                    return Some(Err(e));
                }
            }
        }
    }
}

fn check_len(cid: &Cid, declared: u64, actual: u64) -> Result<(), ExportError> {
    if declared != actual {
        return Err(ExportError::SizeMismatch { cid: *cid, declared, actual });
    }
    Ok(())
}

/// Decodes a dag-pb file node and checks its sizes are consistent.
fn decode_file(cid: &Cid, data: &Bytes) -> Result<(PbNode, UnixFs), ExportError> {
    let node = PbNode::decode(data).map_err(|err| ExportError::DagPb { cid: *cid, err: Box::new(err) })?;
    let raw = node.data.clone().unwrap_or_default();
    let fs = UnixFs::decode(raw).map_err(|err| ExportError::UnixFs { cid: *cid, err })?;
    match fs.kind().map_err(|err| ExportError::UnixFs { cid: *cid, err })? {
        DataType::File | DataType::Raw => {}
        _ => return Err(ExportError::NotAFile(*cid)),
    }
    if fs.blocksizes.len() != node.links.len() {
        return Err(ExportError::BlocksizesMismatch { cid: *cid, links: node.links.len(), sizes: fs.blocksizes.len() });
    }
    let sum = fs
        .blocksizes
        .iter()
        .try_fold(fs.inline_data().len() as u64, |acc, &b| acc.checked_add(b))
        .ok_or(ExportError::SizeMismatch { cid: *cid, declared: u64::MAX, actual: 0 })?;
    if let Some(declared) = fs.filesize {
        check_len(cid, declared, sum)?;
    }
    Ok((node, fs))
}

/// The size of the file at `cid`, read from its root block alone.
pub(crate) fn file_size<S: BlockSource + ?Sized>(source: &S, cid: &Cid) -> Result<u64, ExportError> {
    size_of_block(cid, &source.get(cid)?)
}

/// The file size a file's root block declares.
fn size_of_block(cid: &Cid, data: &Bytes) -> Result<u64, ExportError> {
    match cid.codec() {
        RAW => Ok(data.len() as u64),
        DAG_PB => {
            let (_, fs) = decode_file(cid, data)?;
            Ok(fs.inline_data().len() as u64 + fs.blocksizes.iter().sum::<u64>())
        }
        _ => Err(ExportError::NotUnixFs(*cid)),
    }
}

/// Writes bytes `offset .. offset + len` of the file at `cid` to `out`; returns how many
/// bytes were written.
pub fn read_range<S: BlockSource + ?Sized, W: Write>(
    source: &S,
    cid: &Cid,
    offset: u64,
    len: Option<u64>,
    mut out: W,
) -> Result<u64, ExportError> {
    let mut written = 0;
    for seg in FileSegments::new(source, cid, offset, len)? {
        let seg = seg?;
        out.write_all(&seg)?;
        written += seg.len() as u64;
    }
    Ok(written)
}

/// Reads a whole file into memory (tests and small files).
pub fn read_to_vec<S: BlockSource + ?Sized>(source: &S, cid: &Cid) -> Result<Vec<u8>, ExportError> {
    let mut v = Vec::new();
    read_range(source, cid, 0, None, &mut v)?;
    Ok(v)
}
