//! CAR (Content Addressable aRchive) reading and writing.
//!
//! One job, past 700 lines: the reader, the writer and its resumable walk (with or without
//! repeats) share the format's limits, and about 170 lines are unit tests of the walk (the
//! rest are in `tests/it/car.rs`).
//!
//! A CARv1 is a varint-prefixed DAG-CBOR header `{roots: [CID...], version: 1}` followed by
//! sections, each a varint length and then a CID's bytes and the block's bytes. A CARv2 wraps
//! a CARv1 payload between an 11-byte pragma plus a 40-byte header and an optional index;
//! [`CarReader`] reads the payload of a CARv2 and ignores its index.
//!
//! Reading is strict and bounded: every block is hashed and compared with its CID
//! ([`Block::verified`]); no declared length is trusted for an allocation beyond
//! [`MAX_HEADER_LEN`] or [`MAX_SECTION_LEN`], and data is read in bounded steps, so a
//! truncated or hostile stream ends in a [`CarError`], never in a panic or a huge allocation.
//!
//! [`CarWriter`] writes CARv1 with a header byte-identical to the one in Kubo's `ipfs dag
//! export` output (canonical DAG-CBOR: `roots` sorts before `version`, being shorter). [`write_dag`] writes a whole DAG in the order of
//! Kubo's `ipfs dag export` and of a trustless gateway's `order=dfs&dups=n`: depth-first,
//! pre-order, links in encoded order, each block once, identity-hashed blocks left out.

use std::collections::HashSet;
use std::fmt;
use std::io::{self, Read, Write};

use bytes::Bytes;
use cid::Cid;
use ipld_core::ipld::Ipld;

use crate::block::{Block, BlockError};
use crate::dagpb::put_varint;
use crate::hash::{self, CidError, IDENTITY};
use crate::links::{links, LinksError};
use crate::source::{BlockSource, SourceError};

/// The largest CAR header accepted, in bytes (the limit go-car uses by default).
pub const MAX_HEADER_LEN: u64 = 32 << 20;

/// The largest block [`CarWriter`] writes and [`CarReader`] reads: 4 MiB.
///
/// Well above what IPFS importers make (Kubo chunks files into 256 KiB blocks by default and
/// refuses blocks over 1 MiB unless told otherwise).
pub const MAX_BLOCK_LEN: usize = 4 << 20;

/// Room for the CID within a section, on top of [`MAX_BLOCK_LEN`]. The longest CID Cairn
/// accepts (CIDv1, two varints of at most 9 bytes each, a multihash code varint, a length
/// varint and a 128-byte identity digest) is well under this.
pub const MAX_CID_LEN: usize = 256;

/// The largest section (CID plus block) accepted: [`MAX_BLOCK_LEN`] + [`MAX_CID_LEN`].
pub const MAX_SECTION_LEN: u64 = (MAX_BLOCK_LEN + MAX_CID_LEN) as u64;

/// The 11 bytes every CARv2 starts with: a CARv1-style header `{version: 2}`.
pub const CARV2_PRAGMA: [u8; 11] = [0x0a, 0xa1, 0x67, b'v', b'e', b'r', b's', b'i', b'o', b'n', 0x02];

/// Length of the fixed CARv2 header after the pragma.
const CARV2_HEADER_LEN: u64 = 40;

/// Initial capacity cap when reading a declared length, so that a lie costs nothing.
const READ_CHUNK: u64 = 64 << 10;

/// Everything that can go wrong reading or writing a CAR.
///
/// Section indices count from 0; byte offsets are from the start of the stream (for a CARv2,
/// of the whole file, not of its payload).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CarError {
    /// The underlying reader or writer failed.
    #[error("CAR I/O error: {0}")]
    Io(#[from] io::Error),
    /// The stream ends in the middle of something.
    #[error("CAR is truncated: the data ends at byte {offset}, inside the {what}")]
    Truncated {
        /// Where the data ended.
        offset: u64,
        /// What was being read (header, section, ...).
        what: &'static str,
    },
    /// A length prefix is not a valid unsigned varint (over 10 bytes or over 64 bits).
    #[error("malformed varint at byte {offset}")]
    BadVarint {
        /// Where the varint starts.
        offset: u64,
    },
    /// The header declares a length over [`MAX_HEADER_LEN`].
    #[error("CAR header declares {len} bytes; at most {max} are accepted")]
    HeaderTooLarge {
        /// The declared length.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// The header is not the DAG-CBOR map `{roots: [CID...], version: 1}`.
    #[error("invalid CAR header: {0}")]
    InvalidHeader(String),
    /// The header names a version other than 1 (or 2 through the CARv2 pragma).
    #[error("CAR version {0} is not supported (Cairn reads CARv1, and CARv2 through its pragma)")]
    UnsupportedVersion(i128),
    /// The CARv2 wrapper is inconsistent (bad offsets, nested CARv2).
    #[error("invalid CARv2: {0}")]
    InvalidCarV2(String),
    /// A section declares length zero; a section holds at least a CID.
    #[error("section {index} at byte {offset} has length zero")]
    ZeroLengthSection {
        /// The section's index.
        index: u64,
        /// Where its length prefix starts.
        offset: u64,
    },
    /// A section declares a length over [`MAX_SECTION_LEN`].
    #[error("section {index} at byte {offset} declares {len} bytes; at most {max} are accepted")]
    SectionTooLarge {
        /// The section's index.
        index: u64,
        /// Where its length prefix starts.
        offset: u64,
        /// The declared length.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// A section does not start with a valid CID.
    #[error("section {index} at byte {offset} has an invalid CID: {source}")]
    InvalidCid {
        /// The section's index.
        index: u64,
        /// Where the section starts.
        offset: u64,
        /// What is wrong with the CID.
        source: CidError,
    },
    /// A section's CID uses a codec or hash function Cairn cannot handle, so the block
    /// cannot be verified.
    #[error("section {index} at byte {offset}: the block cannot be verified: {source}")]
    UnsupportedCid {
        /// The section's index.
        index: u64,
        /// Where the section starts.
        offset: u64,
        /// The unsupported codec or hash.
        source: CidError,
    },
    /// A block's bytes do not hash to its CID.
    #[error("section {index} at byte {offset}: block {cid} does not match its hash")]
    HashMismatch {
        /// The section's index.
        index: u64,
        /// Where the section starts.
        offset: u64,
        /// The CID the block was stored under.
        cid: Cid,
    },
    /// A block is over [`MAX_BLOCK_LEN`] bytes: found in a section (whose CID is short
    /// enough for the section to pass [`MAX_SECTION_LEN`]) or given to [`CarWriter`].
    #[error("block {cid} has {len} bytes; at most {MAX_BLOCK_LEN} are allowed in a CAR")]
    BlockTooLarge {
        /// The block's CID.
        cid: Cid,
        /// Its length.
        len: usize,
    },
    /// [`write_dag`] could not get a block of the DAG.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// [`write_dag`] could not read the links of a block of the DAG.
    #[error("cannot follow the links of block {cid}: {source}")]
    Links {
        /// The block.
        cid: Cid,
        /// What is wrong with it (boxed to keep `CarError` small).
        source: Box<LinksError>,
    },
    /// A walk that sends repeated blocks again ([`DagWalk::with_duplicates`]) reached its
    /// budget: repeated links can make such a walk exponentially long.
    #[error("the walk repeats blocks past its budget of {blocks} repeated blocks or {bytes} repeated bytes")]
    TooManyDuplicates {
        /// The budget's count of repeated blocks.
        blocks: u64,
        /// The budget's bytes of repeated blocks.
        bytes: u64,
    },
}

impl CarError {
    /// The block a walk stopped at because it is to be fetched ([`SourceError::Pending`]),
    /// if that is why it stopped.
    pub fn pending(&self) -> Option<Cid> {
        match self {
            CarError::Source(e) => e.pending(),
            _ => None,
        }
    }

    /// Whether the reader can go on after this error: true for errors about one block's
    /// content ([`CarError::InvalidCid`], [`CarError::UnsupportedCid`],
    /// [`CarError::HashMismatch`], [`CarError::BlockTooLarge`]), whose section was read whole.
    pub fn is_block_error(&self) -> bool {
        matches!(
            self,
            CarError::InvalidCid { .. }
                | CarError::UnsupportedCid { .. }
                | CarError::HashMismatch { .. }
                | CarError::BlockTooLarge { .. }
        )
    }
}

/// Reads a CARv1 (or the CARv1 payload of a CARv2), verifying every block.
///
/// The reader pulls one byte at a time for varints: wrap files and sockets in a
/// [`std::io::BufReader`].
///
/// After an error about one block ([`CarError::is_block_error`]) the reader has consumed
/// that section and the next call reads the following one. After any other error, and at
/// the end of the data, it returns `Ok(None)` (and the iterator `None`) from then on.
pub struct CarReader<R> {
    inner: io::Take<R>,
    roots: Vec<Cid>,
    version: u8,
    offset: u64,
    index: u64,
    done: bool,
}

impl<R> fmt::Debug for CarReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CarReader")
            .field("roots", &self.roots)
            .field("version", &self.version)
            .field("offset", &self.offset)
            .field("index", &self.index)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl<R: Read> CarReader<R> {
    /// Reads and checks the header.
    ///
    /// The header must be exactly `{roots: [CID...], version: 1}` in strict DAG-CBOR with
    /// nothing after it; `roots` may be empty. A CARv2 is recognised by its pragma and its
    /// CARv1 payload is read instead.
    pub fn new(r: R) -> Result<Self, CarError> {
        let mut this =
            CarReader { inner: r.take(u64::MAX), roots: Vec::new(), version: 1, offset: 0, index: 0, done: false };
        let header = this.read_header_block()?;
        let header = if header[..] == CARV2_PRAGMA[1..] {
            this.enter_v2_payload()?;
            let inner = this.read_header_block()?;
            if inner[..] == CARV2_PRAGMA[1..] {
                return Err(CarError::InvalidCarV2("the payload is itself a CARv2".into()));
            }
            this.version = 2;
            inner
        } else {
            header
        };
        this.roots = parse_header(&header)?;
        Ok(this)
    }

    /// The header's root CIDs.
    pub fn roots(&self) -> &[Cid] {
        &self.roots
    }

    /// 1 for a CARv1, 2 for a CARv2 (whose CARv1 payload is being read).
    pub fn version(&self) -> u8 {
        self.version
    }

    /// How many bytes of the stream were read so far.
    pub fn position(&self) -> u64 {
        self.offset
    }

    /// The next block, verified against its CID, or `None` at the end of the CAR.
    pub fn next_block(&mut self) -> Result<Option<Block>, CarError> {
        if self.done {
            return Ok(None);
        }
        let result = self.read_section();
        match &result {
            Ok(None) => self.done = true,
            Err(e) if !e.is_block_error() => self.done = true,
            _ => {}
        }
        result
    }

    /// Gives back the underlying reader, positioned after what was read.
    pub fn into_inner(self) -> R {
        self.inner.into_inner()
    }

    fn read_section(&mut self) -> Result<Option<Block>, CarError> {
        let offset = self.offset;
        let index = self.index;
        let Some(len) = self.read_varint("section length")? else {
            if self.version == 2 && self.inner.limit() > 0 {
                return Err(CarError::Truncated { offset, what: "CARv2 data payload" });
            }
            return Ok(None);
        };
        if len == 0 {
            return Err(CarError::ZeroLengthSection { index, offset });
        }
        if len > MAX_SECTION_LEN {
            return Err(CarError::SectionTooLarge { index, offset, len, max: MAX_SECTION_LEN });
        }
        let buf = self.read_exact_vec(len, "section")?;
        self.index += 1;
        let mut rest = &buf[..];
        let cid = match Cid::read_bytes(&mut rest) {
            Ok(cid) => cid,
            Err(e) => {
                let source = hash::parse_cid_bytes(&buf).err().unwrap_or(CidError::Malformed(e.to_string()));
                return Err(CarError::InvalidCid { index, offset, source });
            }
        };
        if rest.len() > MAX_BLOCK_LEN {
            return Err(CarError::BlockTooLarge { cid, len: rest.len() });
        }
        let cid_len = buf.len() - rest.len();
        let data = Bytes::from(buf).slice(cid_len..);
        match Block::verified(cid, data) {
            Ok(block) => Ok(Some(block)),
            Err(BlockError::HashMismatch { cid }) => Err(CarError::HashMismatch { index, offset, cid }),
            Err(BlockError::Cid(source)) => Err(CarError::UnsupportedCid { index, offset, source }),
        }
    }

    /// Reads a header length and the header bytes.
    fn read_header_block(&mut self) -> Result<Vec<u8>, CarError> {
        let len = self
            .read_varint("header length")?
            .ok_or(CarError::Truncated { offset: self.offset, what: "header length" })?;
        if len == 0 {
            return Err(CarError::InvalidHeader("header length is zero".into()));
        }
        if len > MAX_HEADER_LEN {
            return Err(CarError::HeaderTooLarge { len, max: MAX_HEADER_LEN });
        }
        self.read_exact_vec(len, "header")
    }

    /// After the pragma: reads the CARv2 header, skips to the payload and bounds reading to it.
    fn enter_v2_payload(&mut self) -> Result<(), CarError> {
        let h = self.read_exact_vec(CARV2_HEADER_LEN, "CARv2 header")?;
        let field = |at: usize| {
            let mut le = [0u8; 8];
            le.copy_from_slice(&h[at..at + 8]);
            u64::from_le_bytes(le)
        };
        let (data_offset, data_size) = (field(16), field(24));
        if data_offset < self.offset {
            return Err(CarError::InvalidCarV2(format!(
                "data offset {data_offset} points inside the {}-byte CARv2 header",
                self.offset
            )));
        }
        let gap = data_offset - self.offset;
        let skipped = io::copy(&mut (&mut self.inner).take(gap), &mut io::sink())?;
        self.offset += skipped;
        if skipped < gap {
            return Err(CarError::Truncated { offset: self.offset, what: "padding before the CARv2 payload" });
        }
        self.inner.set_limit(data_size);
        Ok(())
    }

    /// Reads one byte; `None` at the end of the data.
    fn read_byte(&mut self) -> Result<Option<u8>, CarError> {
        let mut b = [0u8; 1];
        loop {
            match self.inner.read(&mut b) {
                Ok(0) => return Ok(None),
                Ok(_) => {
                    self.offset += 1;
                    return Ok(Some(b[0]));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Reads an unsigned LEB128 varint; `None` if the data ends before its first byte.
    fn read_varint(&mut self, what: &'static str) -> Result<Option<u64>, CarError> {
        let start = self.offset;
        let mut value = 0u64;
        for i in 0..10 {
            let Some(b) = self.read_byte()? else {
                return if i == 0 { Ok(None) } else { Err(CarError::Truncated { offset: self.offset, what }) };
            };
            if i == 9 && b > 1 {
                return Err(CarError::BadVarint { offset: start });
            }
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(Some(value));
            }
        }
        Err(CarError::BadVarint { offset: start })
    }

    /// Reads exactly `len` bytes, growing the buffer only as data actually arrives.
    fn read_exact_vec(&mut self, len: u64, what: &'static str) -> Result<Vec<u8>, CarError> {
        let mut buf = Vec::with_capacity(len.min(READ_CHUNK) as usize);
        (&mut self.inner).take(len).read_to_end(&mut buf)?;
        self.offset += buf.len() as u64;
        if (buf.len() as u64) < len {
            return Err(CarError::Truncated { offset: self.offset, what });
        }
        Ok(buf)
    }
}

impl<R: Read> Iterator for CarReader<R> {
    type Item = Result<Block, CarError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_block().transpose()
    }
}

/// Checks a CARv1 header and returns its roots.
fn parse_header(bytes: &[u8]) -> Result<Vec<Cid>, CarError> {
    // Before decoding: a header of nested arrays that claim billions of items would otherwise
    // make the decoder hold a MiB per level (`check_cbor_counts`).
    crate::links::check_cbor_counts(bytes)
        .map_err(|e| CarError::InvalidHeader(format!("not a single strict DAG-CBOR value: {e}")))?;
    let value: Ipld = serde_ipld_dagcbor::from_slice(bytes)
        .map_err(|e| CarError::InvalidHeader(format!("not a single strict DAG-CBOR value: {e}")))?;
    let Ipld::Map(map) = value else {
        return Err(CarError::InvalidHeader("not a map".into()));
    };
    match map.get("version") {
        Some(Ipld::Integer(1)) => {}
        Some(Ipld::Integer(v)) => return Err(CarError::UnsupportedVersion(*v)),
        Some(_) => return Err(CarError::InvalidHeader("version is not an integer".into())),
        None => return Err(CarError::InvalidHeader("no version".into())),
    }
    if let Some(key) = map.keys().find(|k| *k != "roots" && *k != "version") {
        return Err(CarError::InvalidHeader(format!("unexpected key {key:?}")));
    }
    match map.get("roots") {
        Some(Ipld::List(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Ipld::Link(cid) => Ok(*cid),
                _ => Err(CarError::InvalidHeader(format!("root {i} is not a CID"))),
            })
            .collect(),
        Some(_) => Err(CarError::InvalidHeader("roots is not a list".into())),
        None => Err(CarError::InvalidHeader("no roots".into())),
    }
}

/// The DAG-CBOR bytes of a CARv1 header with these roots.
fn encode_header(roots: &[Cid]) -> Result<Vec<u8>, CarError> {
    let map = [
        ("roots".to_string(), Ipld::List(roots.iter().copied().map(Ipld::Link).collect())),
        ("version".to_string(), Ipld::Integer(1)),
    ];
    serde_ipld_dagcbor::to_vec(&Ipld::Map(map.into_iter().collect()))
        .map_err(|e| CarError::Io(io::Error::other(format!("encoding the CAR header: {e}"))))
}

/// Writes a CARv1.
pub struct CarWriter<W> {
    w: W,
    written: u64,
    blocks: u64,
    seen: HashSet<Vec<u8>>,
}

impl<W> fmt::Debug for CarWriter<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CarWriter")
            .field("written", &self.written)
            .field("blocks", &self.blocks)
            .finish_non_exhaustive()
    }
}

impl<W: Write> CarWriter<W> {
    /// Writes the header naming `roots` (which may be empty) and returns the writer.
    pub fn new(mut w: W, roots: &[Cid]) -> Result<Self, CarError> {
        let header = encode_header(roots)?;
        let mut prefix = Vec::with_capacity(10);
        put_varint(&mut prefix, header.len() as u64);
        w.write_all(&prefix)?;
        w.write_all(&header)?;
        let written = (prefix.len() + header.len()) as u64;
        Ok(CarWriter { w, written, blocks: 0, seen: HashSet::new() })
    }

    /// Appends one block. Nothing is deduplicated: a block written twice appears twice.
    pub fn write_block(&mut self, block: &Block) -> Result<(), CarError> {
        self.write_section(block.cid(), block.data())
    }

    /// Appends one block unless a block with the same multihash was already written by this
    /// method or [`CarWriter::write_dag`]; identity CIDs are never written. Returns whether the
    /// block was written.
    pub fn write_block_once(&mut self, cid: &Cid, data: &[u8]) -> Result<bool, CarError> {
        if cid.hash().code() == IDENTITY || !self.seen.insert(cid.hash().to_bytes()) {
            return Ok(false);
        }
        self.write_section(cid, data)?;
        Ok(true)
    }

    /// Appends the DAG under `root`: depth-first, pre-order (a block, then the subtree of
    /// each of its links in encoded order), as Kubo's `ipfs dag export` does.
    ///
    /// A block is written only the first time its multihash is met in any `write_dag` call on
    /// this writer. Blocks with identity CIDs are not written (their data is in their CID, and
    /// a trustless gateway must leave them out), but their links are followed.
    ///
    /// The source is trusted to return bytes that match the CID ([`BlockSource`]'s contract);
    /// they are not hashed again. A missing block ends the walk with [`CarError::Source`],
    /// with the blocks before it already written.
    pub fn write_dag<S: BlockSource + ?Sized>(&mut self, source: &S, root: &Cid) -> Result<(), CarError> {
        self.write_walk(source, &mut DagWalk::new(*root))
    }

    /// Goes on with `walk`, writing each block it reaches that this writer has not written.
    /// When the source cannot give a block now (an error, such as
    /// [`SourceError::Pending`]), the walk stops *at* that block: called again with the same
    /// walk, once the block can be had, it goes on from there, and the CAR is the same as if
    /// it had never stopped.
    pub fn write_walk<S: BlockSource + ?Sized>(&mut self, source: &S, walk: &mut DagWalk) -> Result<(), CarError> {
        loop {
            let cid = match walk.next.take() {
                Some(cid) => cid,
                None => {
                    let Some(top) = walk.stack.last_mut() else { return Ok(()) };
                    match top.next() {
                        Some(child) => child,
                        None => {
                            walk.stack.pop();
                            continue;
                        }
                    }
                }
            };
            match self.visit(source, &cid, walk) {
                Ok(Some(children)) => walk.stack.push(children.into_iter()),
                Ok(None) => {}
                Err(e) => {
                    walk.next = Some(cid);
                    return Err(e);
                }
            }
        }
    }

    /// Writes a block of a DAG walk and returns its links; `None` if it was seen before and
    /// the walk leaves repeats out. A walk that sends repeats writes a seen block again (and
    /// spends its budget on it), except its own root when something before the walk wrote it.
    /// A block the source cannot give is not marked seen, so that it can be visited again.
    fn visit<S: BlockSource + ?Sized>(
        &mut self,
        source: &S,
        cid: &Cid,
        walk: &mut DagWalk,
    ) -> Result<Option<Vec<Cid>>, CarError> {
        let key = cid.hash().to_bytes();
        let seen = self.seen.contains(&key);
        let is_root = !walk.started;
        if seen && !is_root && walk.budget.is_none() {
            return Ok(None);
        }
        let data = if cid.hash().code() == IDENTITY {
            Bytes::copy_from_slice(cid.hash().digest())
        } else {
            source.get(cid)?
        };
        let write = cid.hash().code() != IDENTITY && !(seen && is_root);
        if let (true, true, Some(budget)) = (seen, write, walk.budget.as_mut()) {
            budget.spend(data.len() as u64)?;
        }
        walk.started = true;
        self.seen.insert(key);
        if write {
            self.write_section(cid, &data)?;
        }
        let children = links(cid, &data).map_err(|e| CarError::Links { cid: *cid, source: Box::new(e) })?;
        Ok(Some(children))
    }

    fn write_section(&mut self, cid: &Cid, data: &[u8]) -> Result<(), CarError> {
        if data.len() > MAX_BLOCK_LEN {
            return Err(CarError::BlockTooLarge { cid: *cid, len: data.len() });
        }
        let cid_bytes = cid.to_bytes();
        let mut head = Vec::with_capacity(10 + cid_bytes.len());
        put_varint(&mut head, (cid_bytes.len() + data.len()) as u64);
        head.extend_from_slice(&cid_bytes);
        self.w.write_all(&head)?;
        self.w.write_all(data)?;
        self.written += (head.len() + data.len()) as u64;
        self.blocks += 1;
        Ok(())
    }

    /// Bytes written so far, header included.
    pub fn bytes_written(&self) -> u64 {
        self.written
    }

    /// Blocks written so far.
    pub fn blocks_written(&self) -> u64 {
        self.blocks
    }

    /// Flushes and gives back the underlying writer.
    pub fn finish(mut self) -> Result<W, CarError> {
        self.w.flush()?;
        Ok(self.w)
    }
}

/// Where a depth-first walk of a DAG stands ([`CarWriter::write_walk`]): the block to visit
/// next, and the links still to follow at each level above it. It holds CIDs only, at most
/// one block's links per level.
#[derive(Debug, Clone)]
pub struct DagWalk {
    stack: Vec<std::vec::IntoIter<Cid>>,
    next: Option<Cid>,
    /// Whether the root has been visited.
    started: bool,
    /// For a walk that sends repeated blocks again, what it may still repeat.
    budget: Option<DupBudget>,
}

/// What a walk that sends repeated blocks again ([`DagWalk::with_duplicates`]) may repeat:
/// repeated links can make such a walk exponentially longer than its DAG (a chain of 64
/// blocks each linking twice to the next is walked 2^64 times), so it has a bound in count
/// and bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DupBudget {
    /// Repeated blocks it may still write.
    blocks: u64,
    /// Repeated bytes it may still write.
    bytes: u64,
    /// What it started with, for the error.
    limit: (u64, u64),
}

impl DupBudget {
    /// A budget of `blocks` repeated blocks and `bytes` repeated bytes.
    pub fn new(blocks: u64, bytes: u64) -> DupBudget {
        DupBudget { blocks, bytes, limit: (blocks, bytes) }
    }

    fn spend(&mut self, len: u64) -> Result<(), CarError> {
        if self.blocks == 0 || self.bytes < len {
            return Err(CarError::TooManyDuplicates { blocks: self.limit.0, bytes: self.limit.1 });
        }
        self.blocks -= 1;
        self.bytes -= len;
        Ok(())
    }
}

impl DagWalk {
    /// A walk that starts at `root` and writes each block once.
    pub fn new(root: Cid) -> DagWalk {
        DagWalk { stack: Vec::new(), next: Some(root), started: false, budget: None }
    }

    /// A walk that starts at `root` and writes a block each time a link leads to it (the
    /// trustless gateway's `dups=y`), within `budget`. Its root is not written again when
    /// something before the walk wrote it (the path that led to it).
    pub fn with_duplicates(root: Cid, budget: DupBudget) -> DagWalk {
        DagWalk { budget: Some(budget), ..DagWalk::new(root) }
    }

    /// Whether the walk has visited everything.
    pub fn is_done(&self) -> bool {
        self.next.is_none() && self.stack.iter().all(|level| level.len() == 0)
    }
}

/// Writes a CARv1 with `root` as its only root and the DAG under it as its blocks, in the
/// order described at [`CarWriter::write_dag`]; returns the flushed writer.
pub fn write_dag<S: BlockSource + ?Sized, W: Write>(source: &S, root: &Cid, w: W) -> Result<W, CarError> {
    let mut car = CarWriter::new(w, std::slice::from_ref(root))?;
    car.write_dag(source, root)?;
    car.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::{CidFormat, HashAlg, RAW};

    fn raw_block(data: &'static [u8]) -> Block {
        let cid = CidFormat { version: 1, hash: HashAlg::Sha2_256 }.cid(RAW, data);
        Block::new_unchecked(cid, Bytes::from_static(data))
    }

    #[test]
    fn header_is_canonical_dag_cbor() {
        let b = raw_block(b"x");
        let mut car = CarWriter::new(Vec::new(), &[*b.cid()]).unwrap();
        car.write_block(&b).unwrap();
        let bytes = car.finish().unwrap();
        // varint 0x3a, map(2), "roots", array(1), tag 42, bytes(37) 0x00 + 36-byte CID, "version", 1
        assert_eq!(&bytes[..8], &[0x3a, 0xa2, 0x65, b'r', b'o', b'o', b't', b's']);
        assert_eq!(&bytes[8..13], &[0x81, 0xd8, 0x2a, 0x58, 0x25]);
        assert_eq!(&bytes[50..59], &[0x67, b'v', b'e', b'r', b's', b'i', b'o', b'n', 0x01]);
        let mut r = CarReader::new(&bytes[..]).unwrap();
        assert_eq!(r.roots(), &[*b.cid()]);
        assert_eq!(r.next_block().unwrap(), Some(b));
        assert_eq!(r.next_block().unwrap(), None);
    }

    #[test]
    fn errors_stay_small() {
        // Under clippy's `result_large_err` threshold, so that callers need no boxing.
        assert!(std::mem::size_of::<CarError>() < 128, "{}", std::mem::size_of::<CarError>());
        assert!(std::mem::size_of::<LinksError>() <= 40);
    }

    #[test]
    fn zero_roots_are_allowed() {
        let bytes = CarWriter::new(Vec::new(), &[]).unwrap().finish().unwrap();
        let mut r = CarReader::new(&bytes[..]).unwrap();
        assert!(r.roots().is_empty());
        assert!(r.next_block().unwrap().is_none());
    }

    /// A walk that stops at every block its source says is on its way, and goes on from it
    /// when asked again, writes the same CAR as one that never stopped.
    #[test]
    fn a_walk_stopped_at_pending_blocks_goes_on_from_them() {
        use crate::importer::{import_bytes, ImportOptions};
        use crate::source::{BlockSource, MemoryBlocks, SourceError};
        use std::cell::RefCell;

        /// Says each block is on its way the first time it is asked for.
        struct Late<'a>(&'a MemoryBlocks, RefCell<std::collections::HashSet<Cid>>);
        impl BlockSource for Late<'_> {
            fn get(&self, cid: &Cid) -> Result<Bytes, SourceError> {
                if self.1.borrow_mut().insert(*cid) {
                    return Err(SourceError::Pending(*cid));
                }
                self.0.get(cid)
            }
        }
        let data: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
        let mut blocks = MemoryBlocks::new();
        let opts = ImportOptions { chunker: crate::chunker::ChunkerSpec::Size(1000), ..ImportOptions::default() };
        let root = import_bytes(&data, &opts, &mut blocks).unwrap().cid;
        let whole = write_dag(&blocks, &root, Vec::new()).unwrap();

        let late = Late(&blocks, RefCell::default());
        let mut car = CarWriter::new(Vec::new(), &[root]).unwrap();
        let mut walk = DagWalk::new(root);
        let mut stops = 0;
        while let Err(e) = car.write_walk(&late, &mut walk) {
            assert!(matches!(e, CarError::Source(SourceError::Pending(_))), "{e}");
            stops += 1;
        }
        assert!(walk.is_done());
        assert_eq!(stops, blocks.len(), "one stop a block");
        assert!(car.finish().unwrap() == whole, "the CAR differs from one written without stopping");
    }

    /// A dag-pb block with these links (named `0`, `1`, ...) and no data.
    fn pb_block(links: &[Cid]) -> Block {
        use crate::dagpb::{PbLink, PbNode};
        let node = PbNode {
            links: links.iter().enumerate().map(|(i, c)| PbLink::new(*c, i.to_string(), 1)).collect(),
            data: None,
        };
        let data = Bytes::from(node.encode());
        let cid = CidFormat { version: 1, hash: HashAlg::Sha2_256 }.cid(crate::hash::DAG_PB, &data);
        Block::new_unchecked(cid, data)
    }

    fn cids_in(car: &[u8]) -> Vec<Cid> {
        let mut r = CarReader::new(car).unwrap();
        let mut out = Vec::new();
        while let Some(b) = r.next_block().unwrap() {
            out.push(*b.cid());
        }
        out
    }

    /// `dups=y`: a block is written each time a link leads to it, in depth-first order; the
    /// same walk without repeats writes it once.
    #[test]
    fn a_walk_with_duplicates_writes_a_block_each_time_it_is_reached() {
        use crate::source::MemoryBlocks;
        let (a, b) = (raw_block(b"a"), raw_block(b"b"));
        let dir = pb_block(&[*a.cid(), *b.cid(), *a.cid()]);
        let root = pb_block(&[*dir.cid(), *dir.cid()]);
        let mut blocks = MemoryBlocks::new();
        for blk in [&a, &b, &dir, &root] {
            blocks.insert(blk.clone());
        }
        let mut car = CarWriter::new(Vec::new(), &[*root.cid()]).unwrap();
        car.write_walk(&blocks, &mut DagWalk::with_duplicates(*root.cid(), DupBudget::new(100, 1 << 20))).unwrap();
        let (r, d, a, b) = (*root.cid(), *dir.cid(), *a.cid(), *b.cid());
        assert_eq!(cids_in(&car.finish().unwrap()), vec![r, d, a, b, a, d, a, b, a]);

        let once = write_dag(&blocks, &r, Vec::new()).unwrap();
        assert_eq!(cids_in(&once), vec![r, d, a, b]);
    }

    /// Repeated links make a walk with duplicates exponential: a chain of 48 blocks each
    /// linking twice to the next would be 2^48 sections. The budget ends it with an error
    /// after as many repeats as it allows, in count or in bytes.
    #[test]
    fn a_walk_with_duplicates_stops_at_its_budget() {
        use crate::source::MemoryBlocks;
        let mut blocks = MemoryBlocks::new();
        let mut top = raw_block(b"leaf");
        blocks.insert(top.clone());
        for _ in 0..48 {
            top = pb_block(&[*top.cid(), *top.cid()]);
            blocks.insert(top.clone());
        }
        for (budget, most) in [(DupBudget::new(1000, u64::MAX), 1000 + 49), (DupBudget::new(u64::MAX, 4096), 49 + 4096)]
        {
            let mut car = CarWriter::new(Vec::new(), &[*top.cid()]).unwrap();
            let err = car.write_walk(&blocks, &mut DagWalk::with_duplicates(*top.cid(), budget)).unwrap_err();
            assert!(matches!(err, CarError::TooManyDuplicates { .. }), "{err}");
            assert!(car.blocks_written() <= most, "{} sections", car.blocks_written());
            assert!(car.blocks_written() > 49, "no repeat was written before the budget ran out");
        }
    }

    /// The path's blocks come before the walk of its terminal: a terminal already written
    /// is not written again, with or without repeats, and the walk still goes under it.
    #[test]
    fn a_walk_does_not_write_its_root_again() {
        use crate::source::MemoryBlocks;
        let leaf = raw_block(b"leaf");
        let file = pb_block(&[*leaf.cid(), *leaf.cid()]);
        let mut blocks = MemoryBlocks::new();
        blocks.insert(leaf.clone());
        blocks.insert(file.clone());
        for dups in [false, true] {
            let mut car = CarWriter::new(Vec::new(), &[*file.cid()]).unwrap();
            car.write_block_once(file.cid(), file.data()).unwrap();
            let mut walk = match dups {
                true => DagWalk::with_duplicates(*file.cid(), DupBudget::new(10, 1 << 20)),
                false => DagWalk::new(*file.cid()),
            };
            car.write_walk(&blocks, &mut walk).unwrap();
            let want = match dups {
                true => vec![*file.cid(), *leaf.cid(), *leaf.cid()],
                false => vec![*file.cid(), *leaf.cid()],
            };
            assert_eq!(cids_in(&car.finish().unwrap()), want, "dups {dups}");
        }
    }
}
