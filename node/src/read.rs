//! Reading DAGs out of the node: paths, files, listings, trees (to disk or as tar) and CAR.
//!
//! Every read goes through a [`Reader`], which reads through one [`StoreSource`]: either
//! waiting for a block the store lacks while the network fetches it ([`Node::reader`], for
//! the CLI and tests), or stopping at once with [`SourceError::Pending`] so that the caller
//! can await the block on its runtime and read again ([`Node::reader_nowait`], for the
//! gateway and the RPC API). The `Node` methods of the same names read through
//! [`Node::reader`].
//!
//! [`SourceError::Pending`]: cairn_merkle::SourceError::Pending

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use cairn_merkle::exporter::{self, DirCursor, DirItem, ExportError, NodeKind, Stat, WalkCursor, Walker};
use cairn_merkle::{BlockSource, Cid};

use crate::node::{IpfsPath, Node, NodeError, StoreSource};

/// Entries whose blocks a listing asks for ahead when it stops at one being fetched, so
/// that the read it starts again finds the next ones on their way.
pub const LIST_AHEAD: usize = 64;

/// Where a listing of one directory is, kept by its reader between reads (see
/// [`Reader::ls_on`]).
#[derive(Debug, Clone)]
pub struct Listing {
    dir: Cid,
    /// Opened at the first read.
    cursor: Option<DirCursor>,
    /// The entry the listing stopped at (its stat's block was being fetched).
    held: Option<DirItem>,
}

impl Listing {
    /// A listing of the directory `dir`, from its first entry.
    pub fn new(dir: Cid) -> Self {
        Listing { dir, cursor: None, held: None }
    }

    /// The directory listed.
    pub fn dir(&self) -> Cid {
        self.dir
    }
}

/// Reads DAGs through one source (see the module docs).
#[derive(Debug, Clone, Copy)]
pub struct Reader<'a> {
    source: StoreSource<'a>,
}

impl Node {
    /// A reader that waits for missing blocks while the node's fetcher (if any) brings them.
    pub fn reader(&self) -> Reader<'_> {
        Reader { source: self.source() }
    }

    /// A reader that stops at a missing block with [`cairn_merkle::SourceError::Pending`]
    /// (when the node has a fetcher), for callers that await the block with
    /// [`Node::ensure_local`] and read again.
    pub fn reader_nowait(&self) -> Reader<'_> {
        Reader { source: self.source_nowait() }
    }

    /// Resolves an IPFS path to the CID it names.
    pub fn resolve(&self, path: &IpfsPath) -> Result<Cid, NodeError> {
        self.reader().resolve(path)
    }

    /// What `path` names (kind, file size, symlink target), reading only its root block.
    pub fn stat_path(&self, path: &IpfsPath) -> Result<Stat, NodeError> {
        self.reader().stat_path(path)
    }

    /// Writes bytes `offset .. offset+len` of the file at `path` to `out`.
    pub fn cat(&self, path: &IpfsPath, offset: u64, len: Option<u64>, out: &mut dyn Write) -> Result<u64, NodeError> {
        let reader = self.reader();
        reader.cat(&reader.resolve(path)?, offset, len, out)
    }

    /// The entries of the directory at `path`, each with its stat; the stat is `None` for a
    /// child that is not UnixFS (a dag-cbor document, say), which is listed all the same.
    pub fn ls(&self, path: &IpfsPath) -> Result<Vec<(DirItem, Option<Stat>)>, NodeError> {
        let mut out = Vec::new();
        self.ls_each(path, &mut |item, stat| {
            out.push((item, stat));
            Ok(())
        })?;
        Ok(out)
    }

    /// [`Node::ls`] one entry at a time: `each` hears every entry in order, and nothing is
    /// held between entries, so a directory of any size is listed in constant memory. An
    /// error from `each` ends the listing.
    pub fn ls_each(
        &self,
        path: &IpfsPath,
        each: &mut dyn FnMut(DirItem, Option<Stat>) -> Result<(), NodeError>,
    ) -> Result<(), NodeError> {
        let reader = self.reader();
        reader.ls_on(&mut Listing::new(reader.resolve(path)?), each)
    }

    /// Writes the file or tree at `path` to `dest`, which must not exist yet (see
    /// [`Reader::get`]).
    pub fn get(&self, path: &IpfsPath, dest: &Path, on_bytes: &mut dyn FnMut(u64)) -> Result<(), NodeError> {
        let reader = self.reader();
        reader.get(&reader.resolve(path)?, dest, on_bytes)
    }

    /// Writes the file or tree at `path` to `out` as a tar archive (see [`Reader::get_tar`]).
    pub fn get_tar(
        &self,
        path: &IpfsPath,
        name: &str,
        out: &mut dyn Write,
        on_bytes: &mut dyn FnMut(u64),
    ) -> Result<u64, NodeError> {
        let reader = self.reader();
        reader.get_tar(&reader.resolve(path)?, name, out, on_bytes)
    }

    /// Writes the DAG under `root` as a CARv1, depth-first from the root.
    pub fn dag_export(&self, root: &Cid, out: &mut dyn Write) -> Result<(), NodeError> {
        cairn_merkle::car::write_dag(&self.source(), root, out)?;
        Ok(())
    }
}

impl<'a> Reader<'a> {
    /// The source this reader reads through.
    pub fn source(&self) -> &StoreSource<'a> {
        &self.source
    }

    /// Resolves an IPFS path to the CID it names.
    pub fn resolve(&self, path: &IpfsPath) -> Result<Cid, NodeError> {
        Ok(exporter::resolve(&self.source, &path.root, &path.rest)?)
    }

    /// What `path` names (kind, file size, symlink target), reading only its root block.
    pub fn stat_path(&self, path: &IpfsPath) -> Result<Stat, NodeError> {
        Ok(exporter::stat(&self.source, &self.resolve(path)?)?)
    }

    /// Writes bytes `offset .. offset+len` of the file `cid` to `out`; returns the bytes
    /// written.
    pub fn cat(&self, cid: &Cid, offset: u64, len: Option<u64>, out: &mut dyn Write) -> Result<u64, NodeError> {
        Ok(exporter::read_range(&self.source, cid, offset, len, out)?)
    }

    /// The entries of the directory `at` names, from where `at` is, one at a time, each with
    /// its stat (`None` for a child that is not UnixFS). Nothing is held between entries but
    /// the listing's place.
    ///
    /// A listing that stops at a block being fetched keeps its place in `at`: called again
    /// once the block is in, it goes on with the entry it stopped at. Before it stops, it
    /// asks for the blocks of the next [`LIST_AHEAD`] entries, so that a directory of missing
    /// children costs one stop per [`LIST_AHEAD`] entries or so, not one per entry. An error
    /// from `each` stops the listing after the entry `each` was given (a caller pausing for
    /// its client goes on with the next one).
    pub fn ls_on(
        &self,
        at: &mut Listing,
        each: &mut dyn FnMut(DirItem, Option<Stat>) -> Result<(), NodeError>,
    ) -> Result<(), NodeError> {
        let cursor = match &mut at.cursor {
            Some(cursor) => cursor,
            none => none.insert(DirCursor::open(&self.source, &at.dir)?),
        };
        loop {
            let item = match at.held.take() {
                Some(item) => item,
                None => match cursor.next(&self.source) {
                    Some(item) => item?,
                    None => return Ok(()),
                },
            };
            let stat = match exporter::stat(&self.source, &item.cid) {
                Ok(s) => Some(s),
                Err(ExportError::NotUnixFs(_)) => None,
                Err(e) => {
                    if e.pending().is_some() {
                        for cid in cursor.ahead(LIST_AHEAD) {
                            self.source.prefetch(&cid);
                        }
                        at.held = Some(item);
                    }
                    return Err(e.into());
                }
            };
            each(item, stat)?;
        }
    }

    /// Writes the file or tree `cid` to `dest`, which must not exist yet.
    ///
    /// Every entry is created fresh (`create_new`, `create_dir`), names are single safe path
    /// components (the walker refuses `..`, `/`, NUL and empty names), and nothing is ever
    /// written through an existing file or symlink; so nothing a DAG holds can make `get`
    /// write outside `dest`. `on_bytes` hears how many file bytes were written.
    pub fn get(&self, cid: &Cid, dest: &Path, on_bytes: &mut dyn FnMut(u64)) -> Result<(), NodeError> {
        let out_err = |p: &Path| {
            let p = p.to_owned();
            move |source| NodeError::Output { path: p, source }
        };
        if fs::symlink_metadata(dest).is_ok() {
            return Err(NodeError::Output {
                path: dest.to_owned(),
                source: std::io::Error::new(std::io::ErrorKind::AlreadyExists, "already exists"),
            });
        }
        for item in Walker::new(&self.source, cid) {
            let item = item?;
            let target = if item.path.is_empty() { dest.to_owned() } else { dest.join(&item.path) };
            match item.stat.kind {
                NodeKind::Directory | NodeKind::HamtDirectory => fs::create_dir(&target).map_err(out_err(&target))?,
                NodeKind::Symlink => {
                    let to = item.stat.target.clone().unwrap_or_default();
                    std::os::unix::fs::symlink(to, &target).map_err(out_err(&target))?
                }
                NodeKind::File => {
                    let f = fs::OpenOptions::new().write(true).create_new(true).open(&target);
                    let mut f = std::io::BufWriter::with_capacity(1 << 20, f.map_err(out_err(&target))?);
                    for seg in exporter::FileSegments::new(&self.source, &item.stat.cid, 0, None)? {
                        let seg = seg?;
                        f.write_all(&seg).map_err(out_err(&target))?;
                        on_bytes(seg.len() as u64);
                    }
                    f.flush().map_err(out_err(&target))?;
                }
            }
        }
        Ok(())
    }

    /// Writes the file or tree `cid` to `out` as a tar archive whose top entry is `name`
    /// (see [`write_tar`]). Returns the file bytes written.
    pub fn get_tar(
        &self,
        cid: &Cid,
        name: &str,
        out: &mut dyn Write,
        on_bytes: &mut dyn FnMut(u64),
    ) -> Result<u64, NodeError> {
        let mut at = Tar::new(cid, name);
        write_tar(&self.source, &mut at, out, on_bytes)?;
        Ok(at.file_bytes)
    }
}

/// Where a tar archive of a tree is, kept by its writer between reads (see [`write_tar`]).
#[derive(Debug, Clone)]
pub struct Tar {
    name: String,
    walk: WalkCursor,
    /// The file being written: its CID, the bytes of it written, and its size.
    file: Option<(Cid, u64, u64)>,
    /// File bytes written so far.
    file_bytes: u64,
}

impl Tar {
    /// A tar of the tree `cid`, its top entry named `name`, from its start.
    pub fn new(cid: &Cid, name: &str) -> Self {
        Tar { name: name.to_owned(), walk: WalkCursor::new(cid), file: None, file_bytes: 0 }
    }
}

/// Writes the tree `at` is of to `out` as a tar archive (what `get` through the RPC API
/// sends): directories, files and symbolic links, in walk order, from where `at` is.
/// `on_bytes` hears of file bytes as they go.
///
/// A write that stops at a block being fetched (reading through a source that says so,
/// [`cairn_merkle::SourceError::Pending`]) flushes `out` and keeps its place in `at`:
/// called again once the block is in, it goes on from the byte it stopped at, and the
/// archive comes out the same as one written without stopping.
pub fn write_tar<S: BlockSource + ?Sized>(
    source: &S,
    at: &mut Tar,
    out: &mut dyn Write,
    on_bytes: &mut dyn FnMut(u64),
) -> Result<(), NodeError> {
    let r = tar_from(source, at, out, on_bytes);
    let flushed = out.flush();
    r?;
    flushed.map_err(|e| NodeError::Output { path: PathBuf::from(&at.name), source: e })
}

fn tar_from<S: BlockSource + ?Sized>(
    source: &S,
    at: &mut Tar,
    out: &mut dyn Write,
    on_bytes: &mut dyn FnMut(u64),
) -> Result<(), NodeError> {
    let name = at.name.clone();
    let io = |e: std::io::Error| NodeError::Output { path: PathBuf::from(&name), source: e };
    loop {
        if let Some((cid, written, size)) = &mut at.file {
            if *written < *size {
                for seg in exporter::FileSegments::new(source, cid, *written, None)? {
                    let seg = seg?;
                    out.write_all(&seg).map_err(io)?;
                    *written += seg.len() as u64;
                    at.file_bytes += seg.len() as u64;
                    on_bytes(seg.len() as u64);
                }
            }
            if *written != *size {
                let why = format!("file {cid} holds {written} bytes, its root says {size}");
                return Err(io(std::io::Error::new(std::io::ErrorKind::InvalidData, why)));
            }
            // Entries are padded to 512-byte records.
            out.write_all(&[0; 512][..((512 - *size % 512) % 512) as usize]).map_err(io)?;
            at.file = None;
        }
        let Some(item) = at.walk.next(source) else {
            // Two empty records end the archive.
            return out.write_all(&[0; 1024]).map_err(io);
        };
        let item = item?;
        let entry = if item.path.is_empty() { name.clone() } else { format!("{name}/{}", item.path) };
        let mut h = tar::Header::new_gnu();
        h.set_mtime(0);
        h.set_size(0);
        let mut header = tar::Builder::new(Vec::new());
        match item.stat.kind {
            NodeKind::Directory | NodeKind::HamtDirectory => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                header.append_data(&mut h, &entry, std::io::empty()).map_err(io)?;
            }
            NodeKind::Symlink => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                let to = item.stat.target.clone().unwrap_or_default();
                header.append_link(&mut h, &entry, to).map_err(io)?;
            }
            NodeKind::File => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(item.stat.size);
                // The header (and any long-name record) alone: the bytes follow.
                header.append_data(&mut h, &entry, std::io::empty()).map_err(io)?;
                at.file = Some((item.stat.cid, 0, item.stat.size));
            }
        }
        out.write_all(&std::mem::take(header.get_mut())).map_err(io)?;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use bytes::Bytes;
    use cairn_merkle::chunker::ChunkerSpec;
    use cairn_merkle::importer::{build_directory, import_bytes, symlink, DirEntry, ImportOptions};
    use cairn_merkle::{MemoryBlocks, SourceError};

    use super::*;

    /// Blocks of which only those in the set (by multihash) have been fetched yet.
    struct Fetched<'a>(&'a MemoryBlocks, &'a HashSet<Vec<u8>>);

    impl BlockSource for Fetched<'_> {
        fn get(&self, cid: &Cid) -> Result<Bytes, SourceError> {
            match self.1.contains(&cid.hash().to_bytes()) {
                true => self.0.get(cid),
                false => Err(SourceError::Pending(*cid)),
            }
        }
    }

    /// A tree with what a tar must carry: a multi-block file, an empty one, a name past
    /// the 100 bytes of a tar header, a symlink, a sharded directory.
    fn tree(blocks: &mut MemoryBlocks) -> (Cid, Vec<(String, Vec<u8>)>) {
        let opts = ImportOptions {
            chunker: ChunkerSpec::Size(1000),
            max_links: 4,
            sharding: cairn_merkle::hamt::Sharding { threshold: 500, ..Default::default() },
            hamt_fanout: 16,
            ..Default::default()
        };
        let mut files = Vec::new();
        // Each file is recorded under its path in the tree and named by its last component.
        let mut file = |path: String, data: Vec<u8>, blocks: &mut MemoryBlocks| {
            let f = import_bytes(&data, &opts, blocks).unwrap();
            let name = path.rsplit('/').next().unwrap_or_default().to_owned();
            files.push((path, data));
            DirEntry::new(name, &f)
        };
        let big = file("big".into(), (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect(), blocks);
        let empty = file("empty".into(), Vec::new(), blocks);
        let long = file("l".repeat(150), b"a long name".to_vec(), blocks);
        let many: Vec<DirEntry> = (0..40).map(|i| file(format!("many/f{i}"), vec![i as u8; 600], blocks)).collect();
        let sharded = build_directory(many, &opts, blocks).unwrap();
        let link = symlink("big", &opts, blocks).unwrap();
        let entries = vec![big, empty, long, DirEntry::new("many", &sharded), DirEntry::new("link", &link)];
        (build_directory(entries, &opts, blocks).unwrap().cid, files)
    }

    /// An archive written stopping at every block in turn, each fetched before it goes on,
    /// is byte for byte the one written without stopping, and that one is what `tar`
    /// itself builds from the same walk.
    #[test]
    fn a_tar_stopped_at_each_block_comes_out_whole() {
        let mut blocks = MemoryBlocks::new();
        let (root, files) = tree(&mut blocks);

        // What the tar crate's own builder makes of the tree.
        let mut want = tar::Builder::new(Vec::new());
        for item in Walker::new(&blocks, &root) {
            let item = item.unwrap();
            let entry = if item.path.is_empty() { "top".to_owned() } else { format!("top/{}", item.path) };
            let mut h = tar::Header::new_gnu();
            h.set_mtime(0);
            h.set_size(0);
            match item.stat.kind {
                NodeKind::File => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_mode(0o644);
                    h.set_size(item.stat.size);
                    let data = exporter::read_to_vec(&blocks, &item.stat.cid).unwrap();
                    want.append_data(&mut h, &entry, &data[..]).unwrap();
                }
                NodeKind::Symlink => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_mode(0o777);
                    want.append_link(&mut h, &entry, item.stat.target.unwrap()).unwrap();
                }
                _ => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_mode(0o755);
                    want.append_data(&mut h, &entry, std::io::empty()).unwrap();
                }
            }
        }
        let want = want.into_inner().unwrap();

        let mut whole = Vec::new();
        write_tar(&blocks, &mut Tar::new(&root, "top"), &mut whole, &mut |_| {}).unwrap();
        assert_eq!(whole, want);

        let mut fetched = HashSet::new();
        let (mut out, mut at, mut stops, mut heard) = (Vec::new(), Tar::new(&root, "top"), 0, 0);
        loop {
            match write_tar(&Fetched(&blocks, &fetched), &mut at, &mut out, &mut |n| heard += n) {
                Ok(()) => break,
                Err(e) => {
                    let cid = e.pending().unwrap_or_else(|| panic!("{e}"));
                    assert!(fetched.insert(cid.hash().to_bytes()), "stopped at {cid} twice");
                    stops += 1;
                }
            }
        }
        assert!(stops > 60, "{stops} stops");
        assert_eq!(out, want);
        let total: usize = files.iter().map(|f| f.1.len()).sum();
        assert_eq!((heard, at.file_bytes), (total as u64, total as u64));

        // And it reads back as the tree.
        let mut archive = tar::Archive::new(&out[..]);
        let mut read = Vec::new();
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            if e.header().entry_type() == tar::EntryType::Regular {
                let path = e.path().unwrap().to_string_lossy().trim_start_matches("top/").to_owned();
                let mut data = Vec::new();
                std::io::Read::read_to_end(&mut e, &mut data).unwrap();
                read.push((path, data));
            }
        }
        read.sort();
        let mut files = files;
        files.sort();
        assert_eq!(read, files);
    }
}
