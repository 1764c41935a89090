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
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use cairn_merkle::exporter::{self, DirItem, ExportError, NodeKind, Stat, Walker};
use cairn_merkle::{BlockSource, Cid};

use crate::node::{IpfsPath, Node, NodeError, StoreSource};

/// Entries whose blocks a listing asks for ahead when it stops at one being fetched, so
/// that the read it starts again finds the next ones on their way.
pub const LIST_AHEAD: usize = 64;

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
        reader.ls_from(&reader.resolve(path)?, 0, each)
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

    /// The entries of the directory `cid` after the first `skip`, one at a time, each with
    /// its stat (`None` for a child that is not UnixFS). Nothing is held between entries.
    ///
    /// A listing that stops at a block being fetched can go on later from the entry it
    /// stopped at: the caller counts the entries `each` heard and passes that as `skip`.
    /// Before it stops, it asks for the blocks of the next [`LIST_AHEAD`] entries, so that
    /// a directory of missing children costs one stop per [`LIST_AHEAD`] entries or so, not
    /// one per entry.
    pub fn ls_from(
        &self,
        cid: &Cid,
        skip: u64,
        each: &mut dyn FnMut(DirItem, Option<Stat>) -> Result<(), NodeError>,
    ) -> Result<(), NodeError> {
        let mut entries = exporter::list(&self.source, cid)?;
        for _ in 0..skip {
            match entries.next() {
                Some(r) => drop(r?),
                None => return Ok(()),
            }
        }
        while let Some(item) = entries.next() {
            let item = item?;
            let stat = match exporter::stat(&self.source, &item.cid) {
                Ok(s) => Some(s),
                Err(ExportError::NotUnixFs(_)) => None,
                Err(e) => {
                    if e.pending().is_some() {
                        for next in entries.by_ref().take(LIST_AHEAD).flatten() {
                            self.source.prefetch(&next.cid);
                        }
                    }
                    return Err(e.into());
                }
            };
            each(item, stat)?;
        }
        Ok(())
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
    /// (what `get` through the RPC API sends): directories, files and symbolic links, in walk
    /// order. `on_bytes` hears of file bytes as they go. Returns the file bytes written.
    pub fn get_tar(
        &self,
        cid: &Cid,
        name: &str,
        out: &mut dyn Write,
        on_bytes: &mut dyn FnMut(u64),
    ) -> Result<u64, NodeError> {
        let io = |e: std::io::Error| NodeError::Output { path: PathBuf::from(name), source: e };
        let mut tar = tar::Builder::new(out);
        let mut total = 0u64;
        for item in Walker::new(&self.source, cid) {
            let item = item?;
            let entry = if item.path.is_empty() { name.to_owned() } else { format!("{name}/{}", item.path) };
            let mut h = tar::Header::new_gnu();
            h.set_mtime(0);
            match item.stat.kind {
                NodeKind::Directory | NodeKind::HamtDirectory => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_mode(0o755);
                    h.set_size(0);
                    tar.append_data(&mut h, &entry, std::io::empty()).map_err(io)?;
                }
                NodeKind::Symlink => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_mode(0o777);
                    h.set_size(0);
                    let to = item.stat.target.clone().unwrap_or_default();
                    tar.append_link(&mut h, &entry, to).map_err(io)?;
                }
                NodeKind::File => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_mode(0o644);
                    h.set_size(item.stat.size);
                    let segments = exporter::FileSegments::new(&self.source, &item.stat.cid, 0, None)?;
                    let mut reader =
                        SegmentReader { segments, current: Bytes::new(), on_bytes: &mut *on_bytes, failed: None };
                    let appended = tar.append_data(&mut h, &entry, &mut reader);
                    // A read stopped at a block being fetched is said as such, not as an
                    // output error.
                    if let Some(e) = reader.failed.take() {
                        return Err(e.into());
                    }
                    appended.map_err(io)?;
                    total += item.stat.size;
                }
            }
        }
        tar.into_inner().map_err(io)?.flush().map_err(io)?;
        Ok(total)
    }
}

/// A file's segments as a `Read`, for the tar writer. A failed read is kept, whole, for
/// the caller to report (the tar writer sees only an I/O error).
struct SegmentReader<'a, I> {
    segments: I,
    current: Bytes,
    on_bytes: &'a mut dyn FnMut(u64),
    failed: Option<ExportError>,
}

impl<I> Read for SegmentReader<'_, I>
where
    I: Iterator<Item = Result<Bytes, ExportError>>,
{
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.segments.next() {
                None => return Ok(0),
                Some(Ok(b)) => {
                    (self.on_bytes)(b.len() as u64);
                    self.current = b;
                }
                Some(Err(e)) => {
                    let io = std::io::Error::other(e.to_string());
                    self.failed = Some(e);
                    return Err(io);
                }
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current = self.current.slice(n..);
        Ok(n)
    }
}
