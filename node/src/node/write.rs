//! Writing into the repo: adds (files, readers, uploads), `block put` and `dag import`,
//! each storing its blocks in batches on a second thread and syncing them before any pin.

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use cairn_merkle::car::CarReader;
use cairn_merkle::hash::CidFormat;
use cairn_merkle::importer::{BlockSink, SinkError};
use cairn_merkle::{Block, Cid};

use super::{Node, NodeError};
use crate::add::{self, AddError, AddOptions, Added};
use crate::store::{BlockStore, StoreError};

/// Blocks buffered before one batched write.
const WRITE_BATCH_BLOCKS: usize = 256;

/// Bytes buffered before one batched write. Two batches are in memory at once: one being
/// filled and one being written.
const WRITE_BATCH_BYTES: usize = 8 << 20;

/// Buffers blocks and hands them in batches to a writer thread ([`write_batched`]), so that
/// storing one batch overlaps reading and hashing the next.
struct BatchSink {
    to_writer: std::sync::mpsc::SyncSender<Vec<Block>>,
    pending: Vec<Block>,
    pending_bytes: usize,
}

impl BatchSink {
    fn flush(&mut self) -> Result<(), SinkError> {
        if !self.pending.is_empty() {
            let batch = std::mem::replace(&mut self.pending, Vec::with_capacity(WRITE_BATCH_BLOCKS));
            self.pending_bytes = 0;
            // The writer stops at its first error; `write_batched` reports that error.
            self.to_writer.send(batch).map_err(|_| "the block writer stopped")?;
        }
        Ok(())
    }
}

impl BlockSink for BatchSink {
    fn put(&mut self, block: Block) -> Result<(), SinkError> {
        self.pending_bytes += block.data().len();
        self.pending.push(block);
        if self.pending.len() >= WRITE_BATCH_BLOCKS || self.pending_bytes >= WRITE_BATCH_BYTES {
            self.flush()?;
        }
        Ok(())
    }
}

/// Runs `work` with a sink that writes to `store` in batches on a second thread (handed
/// over one at a time: the next batch fills while the last is written), then makes what was
/// written durable. Returns `work`'s value
/// and the number of blocks written. A store error (a full disk) is the error returned, even
/// when `work` then failed because the sink refused its blocks.
fn write_batched<T>(
    store: &dyn BlockStore,
    work: impl FnOnce(&mut BatchSink) -> Result<T, NodeError>,
) -> Result<(T, u64), NodeError> {
    std::thread::scope(|scope| {
        let (to_writer, batches) = std::sync::mpsc::sync_channel::<Vec<Block>>(0);
        let writer = scope.spawn(move || -> Result<u64, StoreError> {
            let mut written = 0;
            for batch in batches {
                store.put_many(&batch)?;
                written += batch.len() as u64;
            }
            Ok(written)
        });
        let mut sink = BatchSink { to_writer, pending: Vec::with_capacity(WRITE_BATCH_BLOCKS), pending_bytes: 0 };
        let result = work(&mut sink).and_then(|value| {
            sink.flush().map_err(|e| NodeError::Store(StoreError::Db(e.to_string())))?;
            Ok(value)
        });
        drop(sink);
        let written = writer.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
        let value = result?;
        store.sync()?;
        Ok((value, written))
    })
}

impl Node {
    /// Adds `path` into the repo, reporting each entry as `ipfs add` prints it; pins the root
    /// recursively when `pin` is set, after every block is durable.
    pub fn add(
        &self,
        path: &Path,
        opts: &AddOptions,
        pin: bool,
        on_added: &mut dyn FnMut(&Added),
    ) -> Result<Added, NodeError> {
        let _guard = self.shared()?;
        let (root, _) = write_batched(self.store(), |sink| Ok(add::add(path, opts, sink, on_added)?))?;
        if pin {
            self.pin_root(root.cid)?;
        }
        Ok(root)
    }

    /// Adds bytes from a reader (standard input) as one file.
    pub fn add_reader<R: Read + Send>(&self, reader: R, opts: &AddOptions, pin: bool) -> Result<Added, NodeError> {
        let _guard = self.shared()?;
        let (root, _) = write_batched(self.store(), |sink| {
            cairn_merkle::importer::import_file(reader, &opts.import, sink)
                .map_err(|e| AddError::Import { path: PathBuf::from("<stdin>"), source: Box::new(e) }.into())
        })?;
        if pin {
            self.pin_root(root.cid)?;
        }
        Ok(Added { path: root.cid.to_string(), cid: root.cid, size: root.size })
    }

    /// Adds one file's bytes from `reader`, reported under `name` as `add` prints a file
    /// argument, and pins it recursively when `pin` is set. Lets the caller watch the bytes
    /// go by (the CLI's progress bar wraps the reader).
    pub fn add_named_reader<R: Read + Send>(
        &self,
        reader: R,
        name: &str,
        opts: &AddOptions,
        pin: bool,
    ) -> Result<Added, NodeError> {
        let _guard = self.shared()?;
        let (root, _) = write_batched(self.store(), |sink| {
            cairn_merkle::importer::import_file(reader, &opts.import, sink)
                .map_err(|e| AddError::Import { path: PathBuf::from(name), source: Box::new(e) }.into())
        })?;
        if pin {
            self.pin_root(root.cid)?;
        }
        Ok(Added { path: name.to_owned(), cid: root.cid, size: root.size })
    }

    /// Adds an upload (the parts of an API `add`, as they arrive) without touching the file
    /// system: see [`crate::upload`]. Reports each entry as `ipfs add` prints it and returns
    /// the roots, each pinned recursively when `pin` is set, after every block is durable.
    pub fn add_upload<R: Read + Send>(
        &self,
        parts: impl IntoIterator<Item = crate::upload::UploadPart<R>>,
        opts: &AddOptions,
        limits: crate::upload::UploadLimits,
        pin: bool,
        wrap: bool,
        on_added: &mut dyn FnMut(&Added),
    ) -> Result<Vec<Added>, NodeError> {
        let _guard = self.shared()?;
        let (roots, _) = write_batched(self.store(), |sink| {
            let mut upload = crate::upload::Upload::new(opts, limits);
            for part in parts {
                upload.push(part, sink, on_added)?;
            }
            Ok(upload.finish(wrap, sink, on_added)?)
        })?;
        if pin {
            for root in &roots {
                self.pin_root(root.cid)?;
            }
        }
        Ok(roots)
    }

    /// Stores bytes as a block under `codec` and `format`; returns its CID.
    pub fn block_put(&self, data: Bytes, codec: u64, format: CidFormat) -> Result<Cid, NodeError> {
        self.put_block(Block::new_unchecked(format.cid(codec, &data), data))
    }

    /// Stores a block whose CID the caller made from its bytes (`block put`,
    /// [`crate::block_put::BlockPut::block`]) and makes it durable; returns its CID. An
    /// identity block is not stored: its CID holds it.
    pub fn put_block(&self, block: Block) -> Result<Cid, NodeError> {
        let cid = *block.cid();
        if cid.hash().code() == cairn_merkle::hash::IDENTITY {
            return Ok(cid);
        }
        let _guard = self.shared()?;
        self.store().put_many(&[block])?;
        self.store().sync()?;
        Ok(cid)
    }

    /// Imports a CAR: every block verified, then the roots pinned recursively (when `pin`).
    /// Returns the roots and the number of blocks read.
    pub fn dag_import(
        &self,
        input: &mut dyn Read,
        pin: bool,
        on_bytes: &mut dyn FnMut(u64),
    ) -> Result<(Vec<Cid>, u64), NodeError> {
        let _guard = self.shared()?;
        let mut car = CarReader::new(std::io::BufReader::with_capacity(1 << 20, input))?;
        let roots = car.roots().to_vec();
        let (count, _) = write_batched(self.store(), |sink| {
            let mut count = 0;
            while let Some(block) = car.next_block()? {
                on_bytes(block.data().len() as u64);
                sink.put(block).map_err(|e| NodeError::Store(StoreError::Db(e.to_string())))?;
                count += 1;
            }
            Ok(count)
        })?;
        if pin {
            for root in &roots {
                self.reachable(root, None, &mut HashSet::new())?;
                self.pin_root(*root)?;
            }
        }
        Ok((roots, count))
    }
}
