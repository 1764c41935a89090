//! The RocksDB store: one database, a column family per concern.
//!
//! Over 700 lines for one job: every operation of the store on its one database (the tests
//! are a fifth of it).
//!
//! - `blocks`: multihash → block bytes. Values of 2 KiB and more live in blob files
//!   (integrated BlobDB), so compaction moves small keys and pointers, never file data;
//!   smaller blocks (directory nodes, small files) stay inline in the SST files where a
//!   point lookup finds them in one read. Bloom filters answer `has` for absent blocks
//!   without touching disk.
//! - `index`: multihash → block length. GC and `repo stat` walk this small table instead of
//!   reading every blob.
//! - `pins`: CID → mode and name.
//! - `meta`: repo version and the block counters.
//!
//! Durability. Block writes (blocks, index and counters together, one `WriteBatch` each) skip
//! the write-ahead log: block bytes are written once, to blob files, instead of twice, and a
//! crash or a full disk never leaves gigabytes of log to replay on the next open. They become
//! durable at a flush, and flushes are atomic across the column families (`atomic_flush`), so
//! blocks, index and counters always persist together. [`BlockStore::sync`] flushes, and every
//! pin write syncs first, then writes the pin through the log with fsync: a pin can never reach
//! disk before the blocks it names. A crash loses at most the unpinned blocks written since the
//! last flush, which is what an interrupted `add` leaves anyway.
//!
//! A full disk: every block batch first checks that the disk can take it together with what
//! the memtables hold (`check_space`), so a flush rarely meets a full disk. When one does
//! anyway (another program filled the disk between the check and the flush), RocksDB records a
//! background error and waits for space, and a write that would wait for that flush would wait
//! forever. So the store never lets RocksDB stall a block write: before each batch it waits
//! itself, polling, until the memtables have room (`wait_for_room`), fails as soon as RocksDB
//! reports a new background error, and writes with `no_slowdown`, so that a stall it did not
//! foresee comes back as a retry instead of a block. Flushes are waited for the same way.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use cairn_merkle::{Block, Cid};
use rocksdb::{
    properties, BlockBasedOptions, Cache, ColumnFamilyDescriptor, ErrorKind, FlushOptions, IteratorMode, Options,
    WriteBatch, WriteOptions, DB,
};

use super::{
    block_key, decode_pin, encode_pin, pin_key, BlockIter, BlockStore, Pin, PinOwner, PinStore, Put, StoreError,
    StoreStats,
};

const CF_BLOCKS: &str = "blocks";
const CF_INDEX: &str = "index";
const CF_PINS: &str = "pins";
const CF_META: &str = "meta";
const KEY_COUNTERS: &[u8] = b"counters";

/// Free space kept beyond what the memtables will write: table files, manifest, options.
const DISK_RESERVE: u64 = 4 << 20;

/// Memtables of the blocks table: one filling while the other flushes.
pub const MAX_WRITE_BUFFERS: i32 = 2;

/// How often a writer waiting for a flush looks at RocksDB's state.
const FLUSH_POLL: Duration = Duration::from_millis(2);

/// Knobs for the database; the defaults suit blocks of 1 byte to 1 MiB.
#[derive(Debug, Clone)]
pub struct RocksTuning {
    /// Block values at least this long go to blob files.
    pub min_blob_size: u64,
    /// Target size of one blob file.
    pub blob_file_size: u64,
    /// Shared block cache for SST data and index blocks.
    pub block_cache_bytes: usize,
    /// Memtable size per column family. Block writes wait in memtables until a flush, so
    /// this times [`MAX_WRITE_BUFFERS`] bounds the memory an add uses for them.
    pub write_buffer_bytes: usize,
    /// Write flushed and compacted files (blob files included) with direct I/O when the file
    /// system supports it. Block bytes are written once and read back rarely, so copying them
    /// into the page cache on the way to disk costs CPU for nothing; on a VM that copy alone
    /// held a 1 GiB add to a third of its speed in some runs. Reads stay buffered.
    pub direct_writes: bool,
}

impl Default for RocksTuning {
    fn default() -> Self {
        RocksTuning {
            min_blob_size: 2048,
            blob_file_size: 256 << 20,
            block_cache_bytes: 64 << 20,
            write_buffer_bytes: 32 << 20,
            direct_writes: true,
        }
    }
}

/// Blocks and pins in RocksDB.
pub struct RocksStore {
    db: DB,
    /// Serialises writers so that counters stay exact; RocksDB serialises writes anyway.
    counters: Mutex<StoreStats>,
    /// RocksDB's count of background errors already reported to a writer.
    bg_errors_seen: AtomicU64,
    /// A flush failed and its memtables are still waiting for RocksDB to recover (it retries
    /// once space is free). Writes that would have to wait for them fail instead.
    degraded: AtomicBool,
    /// The blocks table's memtable size.
    write_buffer_bytes: u64,
    /// The most block bytes the store may hold (`Datastore.StorageMax`).
    storage_max: AtomicU64,
    /// While a collection runs: the keys it must not delete (see
    /// [`RocksStore::begin_protect`]). Locked after `counters`, never before.
    protect: Mutex<Option<std::collections::HashSet<Vec<u8>>>>,
    /// Tests turn the free-space check off to make a flush meet a full disk.
    #[cfg(test)]
    skip_space_check: AtomicBool,
}

impl std::fmt::Debug for RocksStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksStore").field("path", &self.db.path()).finish()
    }
}

fn poisoned() -> StoreError {
    StoreError::Db("store lock poisoned by a panic".into())
}

fn encode_counters(s: &StoreStats) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&s.blocks.to_le_bytes());
    v[8..].copy_from_slice(&s.bytes.to_le_bytes());
    v
}

fn decode_counters(v: &[u8]) -> Option<StoreStats> {
    let blocks = u64::from_le_bytes(v.get(..8)?.try_into().ok()?);
    let bytes = u64::from_le_bytes(v.get(8..16)?.try_into().ok()?);
    Some(StoreStats { blocks, bytes })
}

/// Whether the file system under `dir` takes direct I/O: a file opened with `O_DIRECT` there
/// accepts an aligned 4 KiB write. Some (tmpfs on older kernels, some network and FUSE file
/// systems) refuse the flag or the write, and RocksDB would fail its first flush.
fn direct_io_works(dir: &Path) -> bool {
    use rustix::fs::{Mode, OFlags};
    const ALIGN: usize = 4096;
    if std::fs::create_dir_all(dir).is_err() {
        return false;
    }
    let probe = dir.join(".direct-io-probe");
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::DIRECT | OFlags::CLOEXEC;
    let works = rustix::fs::open(&probe, flags, Mode::from_raw_mode(0o600)).is_ok_and(|fd| {
        let buf = vec![0u8; 2 * ALIGN];
        let at = buf.as_ptr().align_offset(ALIGN);
        buf.get(at..at + ALIGN).is_some_and(|page| rustix::io::write(&fd, page).is_ok_and(|n| n == ALIGN))
    });
    let _ = std::fs::remove_file(&probe);
    works
}

impl RocksStore {
    /// Opens (creating if missing) the database at `path`.
    pub fn open(path: &Path, tuning: &RocksTuning) -> Result<Self, StoreError> {
        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.set_max_background_jobs(2);
        db_opts.set_keep_log_file_num(5);
        db_opts.set_max_total_wal_size(256 << 20);
        // Block batches skip the log; flushing every table at once keeps them consistent.
        db_opts.set_atomic_flush(true);
        // Flushes and compactions write their files with direct I/O where the file system
        // takes it: block bytes go from the memtable to the disk without a copy into the page
        // cache (see `RocksTuning::direct_writes`).
        let direct = tuning.direct_writes && direct_io_works(path);
        db_opts.set_use_direct_io_for_flush_and_compaction(direct);

        let cache = Cache::new_lru_cache(tuning.block_cache_bytes);
        let table = |bloom: bool| {
            let mut t = BlockBasedOptions::default();
            t.set_block_cache(&cache);
            t.set_cache_index_and_filter_blocks(true);
            if bloom {
                t.set_bloom_filter(10.0, false);
            }
            t
        };
        let mut blocks = Options::default();
        blocks.set_block_based_table_factory(&table(true));
        blocks.set_write_buffer_size(tuning.write_buffer_bytes);
        blocks.set_max_write_buffer_number(MAX_WRITE_BUFFERS);
        blocks.set_enable_blob_files(true);
        blocks.set_min_blob_size(tuning.min_blob_size);
        blocks.set_blob_file_size(tuning.blob_file_size);
        blocks.set_blob_compression_type(rocksdb::DBCompressionType::None);
        // No blob garbage collection in the background: blocks are only deleted by `repo gc`
        // (and `block rm`), and with it on, every compaction during a large add relocated the
        // blobs of the oldest files, rewriting much of what the add had just written.
        // [`RocksStore::compact`], which `repo gc` runs, collects every blob file.
        blocks.set_enable_blob_gc(false);
        blocks.set_compression_type(rocksdb::DBCompressionType::Lz4);
        blocks.optimize_for_point_lookup(tuning.block_cache_bytes as u64 >> 20);

        let mut small = Options::default();
        small.set_block_based_table_factory(&table(true));
        small.set_compression_type(rocksdb::DBCompressionType::Lz4);

        let cfs = vec![
            ColumnFamilyDescriptor::new(CF_BLOCKS, blocks),
            ColumnFamilyDescriptor::new(CF_INDEX, small.clone()),
            ColumnFamilyDescriptor::new(CF_PINS, small.clone()),
            ColumnFamilyDescriptor::new(CF_META, small),
        ];
        let db = DB::open_cf_descriptors(&db_opts, path, cfs)?;
        let store = RocksStore {
            db,
            counters: Mutex::new(StoreStats::default()),
            bg_errors_seen: AtomicU64::new(0),
            degraded: AtomicBool::new(false),
            write_buffer_bytes: tuning.write_buffer_bytes as u64,
            storage_max: AtomicU64::new(u64::MAX),
            protect: Mutex::new(None),
            #[cfg(test)]
            skip_space_check: AtomicBool::new(false),
        };
        store.bg_errors_seen.store(store.background_errors()?, Ordering::SeqCst);
        let counters = match store.db.get_cf(&store.cf(CF_META)?, KEY_COUNTERS)? {
            Some(v) => decode_counters(&v)
                .ok_or_else(|| StoreError::Corrupt { table: "meta", reason: "bad counters".into() })?,
            None => store.recount()?,
        };
        *store.counters.lock().map_err(|_| poisoned())? = counters;
        Ok(store)
    }

    /// Deletes the blocks under `keys` that exist, with the writers' lock held; how many,
    /// and their bytes.
    fn delete_locked<'k>(
        &self,
        mut counters: std::sync::MutexGuard<'_, StoreStats>,
        keys: impl Iterator<Item = &'k Vec<u8>>,
        deleted: &mut dyn FnMut(&[u8]),
    ) -> Result<(u64, u64), StoreError> {
        let (cf_blocks, cf_index, cf_meta) = (self.cf(CF_BLOCKS)?, self.cf(CF_INDEX)?, self.cf(CF_META)?);
        let mut next = *counters;
        let mut present = Vec::new();
        for key in keys {
            if let Some(len) = self.db.get_pinned_cf(&cf_index, key)? {
                next.blocks -= 1;
                next.bytes = next.bytes.saturating_sub(decode_len(&len)?);
                present.push(key);
            }
        }
        if !present.is_empty() {
            // Tombstones are small; what they take in the memtable is not worth counting.
            self.write_unlogged(0, || {
                let mut batch = WriteBatch::default();
                for key in &present {
                    batch.delete_cf(&cf_blocks, key);
                    batch.delete_cf(&cf_index, key);
                }
                batch.put_cf(&cf_meta, KEY_COUNTERS, encode_counters(&next));
                batch
            })?;
        }
        let bytes = counters.bytes - next.bytes;
        *counters = next;
        present.iter().for_each(|k| deleted(k));
        Ok((present.len() as u64, bytes))
    }

    /// Starts recording, for a collection that runs beside writers, every block key written
    /// (new or already there) and every key [`RocksStore::protect`] is given: the collection
    /// deletes none of them ([`RocksStore::delete_unprotected`]).
    pub fn begin_protect(&self) -> Result<(), StoreError> {
        *self.protect.lock().map_err(|_| poisoned())? = Some(std::collections::HashSet::new());
        Ok(())
    }

    /// Stops recording; returns how many keys were protected.
    pub fn end_protect(&self) -> Result<usize, StoreError> {
        Ok(self.protect.lock().map_err(|_| poisoned())?.take().map_or(0, |p| p.len()))
    }

    /// Whether a collection runs (writes are being protected).
    pub fn protecting(&self) -> bool {
        self.protect.lock().is_ok_and(|p| p.is_some())
    }

    /// Protects `keys` from the running collection, if one runs (a pin's DAG as it is made).
    pub fn protect(&self, keys: impl IntoIterator<Item = Vec<u8>>) -> Result<(), StoreError> {
        if let Some(p) = self.protect.lock().map_err(|_| poisoned())?.as_mut() {
            p.extend(keys);
        }
        Ok(())
    }

    /// Deletes the blocks under `keys` that exist and that no writer protected since
    /// [`RocksStore::begin_protect`]; how many, and their bytes. The check and the delete
    /// hold the writers' lock, so a block written at the same time is either protected first
    /// or written again after.
    /// `deleted` hears each key deleted, once the delete is written.
    pub fn delete_unprotected(
        &self,
        keys: &[Vec<u8>],
        deleted: &mut dyn FnMut(&[u8]),
    ) -> Result<(u64, u64), StoreError> {
        let counters = self.counters.lock().map_err(|_| poisoned())?;
        let protect = self.protect.lock().map_err(|_| poisoned())?;
        let doomed: Vec<&Vec<u8>> = keys.iter().filter(|k| protect.as_ref().is_none_or(|p| !p.contains(*k))).collect();
        drop(protect);
        self.delete_locked(counters, doomed.into_iter(), deleted)
    }

    /// Sets the most block bytes the store may hold: a write that would pass it fails with
    /// [`StoreError::Full`], stores nothing, and leaves everything else as it was.
    pub fn set_storage_max(&self, max: u64) {
        self.storage_max.store(max, Ordering::Relaxed);
    }

    /// Refuses a write of `incoming` bytes that the disk could not hold together with what
    /// the memtables already hold: those bytes must reach disk at the next flush, and a flush
    /// that meets a full disk leaves RocksDB waiting for space, so the add would hang instead
    /// of failing. [`DISK_RESERVE`] more is kept for table files and the manifest.
    fn check_space(&self, incoming: u64) -> Result<(), StoreError> {
        #[cfg(test)]
        if self.skip_space_check.load(Ordering::SeqCst) {
            return Ok(());
        }
        let stat = rustix::fs::statvfs(self.db.path()).map_err(|e| StoreError::Db(format!("statvfs: {e}")))?;
        let free = stat.f_bavail.saturating_mul(stat.f_frsize);
        let pending = self.db.property_int_value("rocksdb.size-all-mem-tables")?.unwrap_or(0);
        let need = incoming.saturating_add(pending).saturating_add(DISK_RESERVE);
        if free < need {
            return Err(StoreError::Db(format!(
                "No space left on device: {free} bytes free under {}, {need} needed to store {incoming} more bytes safely",
                self.db.path().display()
            )));
        }
        Ok(())
    }

    fn background_errors(&self) -> Result<u64, StoreError> {
        Ok(self.db.property_int_value(properties::BACKGROUND_ERRORS)?.unwrap_or(0))
    }

    /// Fails once for every background error RocksDB reported since the last call: a flush
    /// that failed means the blocks it held were not stored.
    fn check_background(&self) -> Result<(), StoreError> {
        let now = self.background_errors()?;
        if self.bg_errors_seen.swap(now, Ordering::SeqCst) >= now {
            return Ok(());
        }
        self.degraded.store(true, Ordering::SeqCst);
        Err(self.flush_failed())
    }

    /// Fails a write that would have to wait for a flush that already failed.
    fn check_degraded(&self) -> Result<(), StoreError> {
        match self.degraded.load(Ordering::SeqCst) {
            true => Err(self.flush_failed()),
            false => Ok(()),
        }
    }

    fn flush_failed(&self) -> StoreError {
        // A database stopped by the error returns it to any write: a no-op delete finds out.
        let mut wo = WriteOptions::default();
        wo.disable_wal(true);
        wo.set_no_slowdown(true);
        let probe = self.cf(CF_META).and_then(|cf| Ok(self.db.delete_cf_opt(&cf, b"", &wo)?));
        let free = rustix::fs::statvfs(self.db.path()).map(|s| s.f_bavail.saturating_mul(s.f_frsize)).unwrap_or(0);
        let budget = self.write_buffer_bytes.saturating_mul(MAX_WRITE_BUFFERS as u64).saturating_add(DISK_RESERVE);
        let cause = match probe {
            Err(e) if !matches!(&e, StoreError::Db(m) if m.contains("Write stall")) => e.to_string(),
            _ if free < budget => format!("No space left on device ({free} bytes free)"),
            _ => "an I/O error (see RocksDB's LOG file)".to_owned(),
        };
        StoreError::Db(format!(
            "a flush under {} failed with {cause}: blocks written since the last flush are not stored, and writes fail until space is freed and the repo is reopened",
            self.db.path().display()
        ))
    }

    fn blocks_memtables(&self) -> Result<(u64, u64), StoreError> {
        let cf = self.cf(CF_BLOCKS)?;
        let imm = self.db.property_int_value_cf(&cf, properties::NUM_IMMUTABLE_MEM_TABLE)?.unwrap_or(0);
        let active = self.db.property_int_value_cf(&cf, properties::CUR_SIZE_ACTIVE_MEM_TABLE)?.unwrap_or(0);
        Ok((imm, active))
    }

    /// Waits until a write of `incoming` bytes would not stall: RocksDB has not stopped
    /// writes, and the active memtable either has room or can be switched because no other
    /// is still flushing. Fails when a background error shows up meanwhile.
    fn wait_for_room(&self, incoming: u64) -> Result<(), StoreError> {
        loop {
            self.check_background()?;
            let stopped = self.db.property_int_value(properties::IS_WRITE_STOPPED)?.unwrap_or(0) > 0;
            let (imm, active) = self.blocks_memtables()?;
            let full = active.saturating_add(incoming) >= self.write_buffer_bytes;
            if imm == 0 {
                self.degraded.store(false, Ordering::SeqCst);
            }
            if !stopped && (imm < (MAX_WRITE_BUFFERS - 1) as u64 || !full) {
                return Ok(());
            }
            self.check_degraded()?;
            std::thread::sleep(FLUSH_POLL);
        }
    }

    /// Writes a batch of block-table changes without the log (see the module docs). `build`
    /// makes the batch, again if RocksDB turns a write away because it would stall.
    fn write_unlogged(&self, incoming: u64, build: impl Fn() -> WriteBatch) -> Result<(), StoreError> {
        let mut wo = WriteOptions::default();
        wo.disable_wal(true);
        wo.set_no_slowdown(true);
        loop {
            self.wait_for_room(incoming)?;
            match self.db.write_opt(build(), &wo) {
                Err(e) if e.kind() == ErrorKind::Incomplete => std::thread::sleep(FLUSH_POLL),
                r => return Ok(r?),
            }
        }
    }

    /// Flushes the tables block batches write (blocks, index, counters) to disk in one atomic
    /// flush and waits for it; a no-op when nothing was written since the last flush. The
    /// pins table is left alone: its writes go through the log, and flushing it on every pin
    /// would make one tiny table file per pin. The wait polls, so that a flush that fails
    /// (a full disk) becomes an error instead of a hang.
    fn flush_blocks(&self) -> Result<(), StoreError> {
        // RocksDB's own flush waits, unbounded, for a running flush first; wait here instead.
        self.wait_flushed()?;
        let cfs = [CF_BLOCKS, CF_INDEX, CF_META].map(|n| self.cf(n)).into_iter().collect::<Result<Vec<_>, _>>()?;
        let mut fo = FlushOptions::default();
        fo.set_wait(false);
        self.db.flush_cfs_opt(&cfs.iter().collect::<Vec<_>>(), &fo)?;
        self.wait_flushed()
    }

    /// Waits until no memtable of the block tables is waiting to be written.
    fn wait_flushed(&self) -> Result<(), StoreError> {
        loop {
            self.check_background()?;
            let mut pending = 0;
            for name in [CF_BLOCKS, CF_INDEX, CF_META] {
                let cf = self.cf(name)?;
                pending += self.db.property_int_value_cf(&cf, properties::NUM_IMMUTABLE_MEM_TABLE)?.unwrap_or(0);
            }
            if pending == 0 {
                self.degraded.store(false, Ordering::SeqCst);
                return Ok(());
            }
            self.check_degraded()?;
            std::thread::sleep(FLUSH_POLL);
        }
    }

    fn cf(&self, name: &'static str) -> Result<std::sync::Arc<rocksdb::BoundColumnFamily<'_>>, StoreError> {
        self.db.cf_handle(name).ok_or_else(|| StoreError::Db(format!("column family {name} missing")))
    }

    /// Recomputes the counters from the index table.
    fn recount(&self) -> Result<StoreStats, StoreError> {
        let mut s = StoreStats::default();
        for item in self.db.iterator_cf(&self.cf(CF_INDEX)?, IteratorMode::Start) {
            let (_, v) = item?;
            s.blocks += 1;
            s.bytes += decode_len(&v)?;
        }
        Ok(s)
    }

    /// Reads a small metadata value.
    pub fn get_meta(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get_cf(&self.cf(CF_META)?, key)?)
    }

    /// Writes a small metadata value durably.
    pub fn put_meta(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db.put_cf_opt(&self.cf(CF_META)?, key, value, &wo)?;
        Ok(())
    }

    /// Stored block keys after `after` (all of them when it is empty), in key order.
    pub fn keys_after(&self, after: &[u8]) -> Box<dyn Iterator<Item = Result<Vec<u8>, StoreError>> + '_> {
        let after = after.to_vec();
        match self.cf(CF_INDEX) {
            Ok(cf) => Box::new(
                self.db
                    .iterator_cf(&cf, IteratorMode::From(&after, rocksdb::Direction::Forward))
                    .map(|r| Ok(r?.0.into_vec()))
                    .filter(move |k| k.as_ref().map_or(true, |k| *k != after)),
            ),
            Err(e) => Box::new(std::iter::once(Err(e))),
        }
    }

    /// Every metadata entry whose key starts with `prefix`, in key order.
    pub fn meta_with_prefix(&self, prefix: &[u8]) -> Result<Vec<MetaEntry>, StoreError> {
        let cf = self.cf(CF_META)?;
        let mut out = Vec::new();
        for item in self.db.iterator_cf(&cf, IteratorMode::From(prefix, rocksdb::Direction::Forward)) {
            let (k, v) = item?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    /// The JSON records stored under `prefix`, decoded; a record that does not decode is
    /// reported as corrupt in `table`.
    pub fn meta_records<T: serde::de::DeserializeOwned>(
        &self,
        prefix: &str,
        table: &'static str,
    ) -> Result<Vec<T>, StoreError> {
        self.meta_with_prefix(prefix.as_bytes())?
            .into_iter()
            .map(|(k, v)| {
                serde_json::from_slice(&v)
                    .map_err(|e| StoreError::Corrupt { table, reason: format!("{}: {e}", String::from_utf8_lossy(&k)) })
            })
            .collect()
    }

    /// Writes and deletes metadata entries in one durable batch.
    pub fn update_meta(&self, put: &[(&[u8], &[u8])], delete: &[&[u8]]) -> Result<(), StoreError> {
        let cf = self.cf(CF_META)?;
        let mut batch = WriteBatch::default();
        for (k, v) in put {
            batch.put_cf(&cf, k, v);
        }
        for k in delete {
            batch.delete_cf(&cf, k);
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db.write_opt(batch, &wo)?;
        Ok(())
    }

    /// Bytes the database occupies on disk (SST and blob files), as RocksDB reports it.
    pub fn disk_usage(&self) -> Result<u64, StoreError> {
        let mut total = 0;
        for name in [CF_BLOCKS, CF_INDEX, CF_PINS, CF_META] {
            let cf = self.cf(name)?;
            for prop in ["rocksdb.total-sst-files-size", "rocksdb.total-blob-file-size"] {
                total += self.db.property_int_value_cf(&cf, prop)?.unwrap_or(0);
            }
        }
        Ok(total)
    }

    /// Compacts the block tables so that deleted blocks give their space back.
    ///
    /// Deletes first live in the memtable, and a blob file is only removed once nothing
    /// refers to it, so this flushes, then compacts with blob garbage collection on and forced
    /// over every blob file, then turns it off again (it never runs in the background, where it
    /// would rewrite blobs during a large add).
    pub fn compact(&self) -> Result<(), StoreError> {
        let mut co = rocksdb::CompactOptions::default();
        co.set_bottommost_level_compaction(rocksdb::BottommostLevelCompaction::Force);
        self.flush_blocks()?;
        for name in [CF_BLOCKS, CF_INDEX] {
            let cf = self.cf(name)?;
            if name == CF_BLOCKS {
                self.db.set_options_cf(
                    &cf,
                    &[
                        ("enable_blob_garbage_collection", "true"),
                        ("blob_garbage_collection_age_cutoff", "1.0"),
                        ("blob_garbage_collection_force_threshold", "0.0"),
                    ],
                )?;
            }
            self.db.compact_range_cf_opt(&cf, None::<&[u8]>, None::<&[u8]>, &co);
            if name == CF_BLOCKS {
                self.db.set_options_cf(&cf, &[("enable_blob_garbage_collection", "false")])?;
            }
        }
        Ok(())
    }
}

/// A metadata entry: (key, value).
pub type MetaEntry = (Vec<u8>, Vec<u8>);

fn decode_len(v: &[u8]) -> Result<u64, StoreError> {
    Ok(u64::from_le_bytes(
        v.try_into().map_err(|_| StoreError::Corrupt { table: "index", reason: "bad length record".into() })?,
    ))
}

impl BlockStore for RocksStore {
    fn get(&self, cid: &Cid) -> Result<Option<Bytes>, StoreError> {
        Ok(self.db.get_pinned_cf(&self.cf(CF_BLOCKS)?, block_key(cid))?.map(|v| Bytes::copy_from_slice(&v)))
    }

    fn has(&self, cid: &Cid) -> Result<bool, StoreError> {
        let index = self.cf(CF_INDEX)?;
        let key = block_key(cid);
        if !self.db.key_may_exist_cf(&index, &key) {
            return Ok(false);
        }
        Ok(self.db.get_pinned_cf(&index, key)?.is_some())
    }

    fn size(&self, cid: &Cid) -> Result<Option<u64>, StoreError> {
        let index = self.cf(CF_INDEX)?;
        let key = block_key(cid);
        if !self.db.key_may_exist_cf(&index, &key) {
            return Ok(None);
        }
        self.db.get_pinned_cf(&index, key)?.map(|v| decode_len(&v)).transpose()
    }

    fn put_many(&self, blocks: &[Block]) -> Result<Vec<Put>, StoreError> {
        let (cf_blocks, cf_index, cf_meta) = (self.cf(CF_BLOCKS)?, self.cf(CF_INDEX)?, self.cf(CF_META)?);
        let mut counters = self.counters.lock().map_err(|_| poisoned())?;
        let mut next = *counters;
        let mut seen = std::collections::HashSet::new();
        let mut new = Vec::new();
        let mut out = Vec::with_capacity(blocks.len());
        if let Some(p) = self.protect.lock().map_err(|_| poisoned())?.as_mut() {
            p.extend(blocks.iter().map(|b| block_key(b.cid())));
        }
        for b in blocks {
            let key = block_key(b.cid());
            if !seen.contains(&key) && !self.has(b.cid())? {
                next.blocks += 1;
                next.bytes += b.data().len() as u64;
                out.push(Put::New);
                new.push((key.clone(), b));
                seen.insert(key);
            } else {
                out.push(Put::Existed);
            }
        }
        if next != *counters {
            let incoming = next.bytes - counters.bytes;
            let max = self.storage_max.load(Ordering::Relaxed);
            if next.bytes > max {
                return Err(StoreError::Full { held: counters.bytes, incoming, max });
            }
            self.check_space(incoming)?;
            // Sized up front: a batch grown by doubling copies its blocks again at every step,
            // each time into freshly faulted pages (a tenth of an add's time, before).
            let capacity: usize = new.iter().map(|(k, b)| 2 * k.len() + b.data().len() + 64).sum::<usize>() + 256;
            self.write_unlogged(incoming, || {
                let mut batch = WriteBatch::with_capacity_bytes(capacity);
                for (key, b) in &new {
                    batch.put_cf(&cf_blocks, key, b.data());
                    batch.put_cf(&cf_index, key, (b.data().len() as u64).to_le_bytes());
                }
                batch.put_cf(&cf_meta, KEY_COUNTERS, encode_counters(&next));
                debug_assert!(batch.size_in_bytes() <= capacity, "{} > {capacity}", batch.size_in_bytes());
                batch
            })?;
            *counters = next;
        }
        Ok(out)
    }

    fn delete_keys(&self, keys: &[Vec<u8>]) -> Result<u64, StoreError> {
        let counters = self.counters.lock().map_err(|_| poisoned())?;
        Ok(self.delete_locked(counters, keys.iter(), &mut |_| {})?.0)
    }

    fn keys(&self) -> Box<dyn Iterator<Item = Result<Vec<u8>, StoreError>> + '_> {
        match self.cf(CF_INDEX) {
            Ok(cf) => Box::new(self.db.iterator_cf(&cf, IteratorMode::Start).map(|r| Ok(r?.0.into_vec()))),
            Err(e) => Box::new(std::iter::once(Err(e))),
        }
    }

    fn blocks(&self) -> BlockIter<'_> {
        match self.cf(CF_BLOCKS) {
            Ok(cf) => Box::new(self.db.iterator_cf(&cf, IteratorMode::Start).map(|r| {
                let (k, v) = r?;
                Ok((k.into_vec(), Bytes::from(v.into_vec())))
            })),
            Err(e) => Box::new(std::iter::once(Err(e))),
        }
    }

    fn stats(&self) -> Result<StoreStats, StoreError> {
        Ok(*self.counters.lock().map_err(|_| poisoned())?)
    }

    fn sync(&self) -> Result<(), StoreError> {
        self.flush_blocks()
    }
}

impl PinStore for RocksStore {
    fn put_pin(&self, pin: &Pin) -> Result<(), StoreError> {
        // The blocks the pin names reach disk before the pin does.
        self.flush_blocks()?;
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db.put_cf_opt(&self.cf(CF_PINS)?, pin_key(&pin.cid, &pin.owner), encode_pin(pin), &wo)?;
        Ok(())
    }

    fn get_pin(&self, cid: &Cid, owner: &PinOwner) -> Result<Option<Pin>, StoreError> {
        let key = pin_key(cid, owner);
        self.db.get_cf(&self.cf(CF_PINS)?, &key)?.map(|v| decode_pin(&key, &v)).transpose()
    }

    fn pins_of(&self, cid: &Cid) -> Result<Vec<Pin>, StoreError> {
        let cf = self.cf(CF_PINS)?;
        let prefix = cid.to_bytes();
        let mut out = Vec::new();
        for r in self.db.iterator_cf(&cf, IteratorMode::From(&prefix, rocksdb::Direction::Forward)) {
            let (k, v) = r?;
            if !k.starts_with(&prefix) {
                break;
            }
            out.push(decode_pin(&k, &v)?);
        }
        Ok(out)
    }

    fn remove_pin(&self, cid: &Cid, owner: &PinOwner) -> Result<bool, StoreError> {
        let cf = self.cf(CF_PINS)?;
        let key = pin_key(cid, owner);
        let existed = self.db.get_pinned_cf(&cf, &key)?.is_some();
        if existed {
            let mut wo = WriteOptions::default();
            wo.set_sync(true);
            self.db.delete_cf_opt(&cf, key, &wo)?;
        }
        Ok(existed)
    }

    fn pins(&self) -> Result<Vec<Pin>, StoreError> {
        let cf = self.cf(CF_PINS)?;
        self.db
            .iterator_cf(&cf, IteratorMode::Start)
            .map(|r| {
                let (k, v) = r?;
                decode_pin(&k, &v)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{blocks_scenario, pins_scenario};
    use super::*;

    #[test]
    fn rocks_store_passes_the_scenarios() {
        let dir = tempfile::tempdir().unwrap();
        let s = RocksStore::open(dir.path(), &RocksTuning::default()).unwrap();
        blocks_scenario(&s);
        pins_scenario(&s);
    }

    #[test]
    fn counters_and_data_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let big = super::super::tests::block(&vec![7u8; 1 << 20], true);
        let small = super::super::tests::block(b"x", false);
        {
            let s = RocksStore::open(dir.path(), &RocksTuning::default()).unwrap();
            s.put_many(&[big.clone(), small.clone()]).unwrap();
            s.sync().unwrap();
        }
        let s = RocksStore::open(dir.path(), &RocksTuning::default()).unwrap();
        assert_eq!(s.stats().unwrap(), StoreStats { blocks: 2, bytes: (1 << 20) + 1 });
        assert_eq!(s.get(big.cid()).unwrap().unwrap(), big.data());
        assert_eq!(s.get(small.cid()).unwrap().unwrap(), small.data());
    }

    /// Blob files are collected only by [`RocksStore::compact`] (what `repo gc` runs): after
    /// three quarters of the blocks are deleted, it gives their space back on disk, and what is
    /// left reads back whole.
    #[test]
    fn compact_gives_back_the_space_of_deleted_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let s = RocksStore::open(dir.path(), &RocksTuning::default()).unwrap();
        let blobs = || -> u64 {
            std::fs::read_dir(dir.path())
                .unwrap()
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().ends_with(".blob"))
                .map(|e| e.metadata().unwrap().len())
                .sum()
        };
        let blocks: Vec<Block> = (0..64).map(|i| numbered_block(i, 256 << 10)).collect();
        s.put_many(&blocks).unwrap();
        s.sync().unwrap();
        assert!(blobs() >= 16 << 20, "{} bytes of blob files", blobs());
        let doomed: Vec<Vec<u8>> = blocks[..48].iter().map(|b| block_key(b.cid())).collect();
        assert_eq!(s.delete_keys(&doomed).unwrap(), 48);
        s.sync().unwrap();
        s.compact().unwrap();
        assert!(blobs() <= 5 << 20, "{} bytes of blob files after compacting", blobs());
        for b in &blocks[48..] {
            assert_eq!(s.get(b.cid()).unwrap().unwrap(), b.data());
        }
        assert!(s.get(blocks[0].cid()).unwrap().is_none());
    }

    /// The setting RocksDB recorded in its newest OPTIONS file for direct flush writes.
    fn direct_flag(dir: &Path) -> bool {
        let newest = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .filter(|n| n.starts_with("OPTIONS-"))
            .max_by_key(|n| n.trim_start_matches("OPTIONS-").parse::<u64>().unwrap_or(0))
            .unwrap();
        let text = std::fs::read_to_string(dir.join(newest)).unwrap();
        let line = text.lines().find(|l| l.trim().starts_with("use_direct_io_for_flush_and_compaction=")).unwrap();
        line.trim().ends_with("=true")
    }

    /// Flushes write with direct I/O where the file system takes it (the probe decides, and
    /// the setting can be turned off); blocks written over several flushes that way read back
    /// whole after a reopen. A directory that cannot exist takes no direct I/O.
    #[test]
    fn flushes_write_with_direct_io_where_the_file_system_takes_it() {
        let dir = tempfile::tempdir().unwrap();
        let works = direct_io_works(dir.path());
        if std::env::var_os("CI").is_some() {
            // CI runs on ext4, which takes direct I/O: the path under test must be the one used.
            assert!(works, "direct I/O refused under {}", dir.path().display());
        }
        assert!(!dir.path().join(".direct-io-probe").exists(), "the probe file is left behind");
        let blocks: Vec<Block> = (0..160).map(|i| numbered_block(i, 512 << 10)).collect();
        {
            let s = RocksStore::open(dir.path(), &RocksTuning::default()).unwrap();
            assert_eq!(direct_flag(dir.path()), works);
            for chunk in blocks.chunks(16) {
                s.put_many(chunk).unwrap();
            }
            s.sync().unwrap();
        }
        let s = RocksStore::open(dir.path(), &RocksTuning { direct_writes: false, ..RocksTuning::default() }).unwrap();
        assert!(!direct_flag(dir.path()));
        assert_eq!(s.stats().unwrap(), StoreStats { blocks: 160, bytes: 160 * (512 << 10) });
        for b in &blocks {
            assert_eq!(s.get(b.cid()).unwrap().unwrap(), b.data());
        }
        let file = dir.path().join("plain");
        std::fs::write(&file, b"x").unwrap();
        assert!(!direct_io_works(&file.join("db")));
    }

    /// A tmpfs of `size` mounted on `dir` for the life of the value; `None` (test skipped)
    /// without the right to mount, except under CI, where the test must run.
    struct SmallFs(std::path::PathBuf);

    impl SmallFs {
        fn mount(dir: &Path, size: &str) -> Option<SmallFs> {
            let ok = std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size}"), "cairn-store-test"])
                .arg(dir)
                .status()
                .is_ok_and(|s| s.success());
            let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
            assert!(ok || !ci, "cannot mount a tmpfs; CI must run this test as root");
            ok.then(|| SmallFs(dir.to_owned()))
        }
    }

    impl Drop for SmallFs {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }

    fn numbered_block(i: u64, len: usize) -> Block {
        let mut data = vec![(i % 251) as u8; len];
        data[..8].copy_from_slice(&i.to_le_bytes());
        super::super::tests::block(&data, true)
    }

    /// Runs `f` on another thread and fails the test if it takes longer than `limit`.
    fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(limit).expect("the store hung instead of failing")
    }

    /// A flush that meets a full disk in the background (the free-space check is off, as if
    /// another program filled the disk after it) makes writes fail with a clear error instead
    /// of hanging; reads go on; once space is freed, the reopened store takes writes again,
    /// and what was flushed before is intact.
    #[test]
    fn background_flush_on_a_full_disk_fails_writes_then_recovers() {
        let mnt = tempfile::tempdir().unwrap();
        // Without the right to mount (and outside CI) there is nothing to test.
        let Some(_fs) = SmallFs::mount(mnt.path(), "24m") else { return };
        // Room that the test gives back later.
        let filler = mnt.path().join("filler");
        std::fs::write(&filler, vec![1u8; 10 << 20]).unwrap();
        let tuning = RocksTuning { write_buffer_bytes: 2 << 20, ..RocksTuning::default() };
        let store = std::sync::Arc::new(RocksStore::open(&mnt.path().join("db"), &tuning).unwrap());
        let first = numbered_block(0, 256 << 10);
        store.put_many(std::slice::from_ref(&first)).unwrap();
        store.sync().unwrap();
        store.skip_space_check.store(true, Ordering::SeqCst);

        let s = store.clone();
        let err = within(Duration::from_secs(60), move || {
            for i in 1..200 {
                if let Err(e) = s.put_many(&[numbered_block(i, 256 << 10)]) {
                    return e.to_string();
                }
            }
            panic!("50 MiB went onto a 24 MiB disk");
        });
        assert!(err.contains("No space left on device"), "unclear error: {err}");

        // Writes that need the failed flush keep failing, promptly.
        let s = store.clone();
        let again = within(Duration::from_secs(60), move || {
            (1000..1040).find_map(|i| s.put_many(&[numbered_block(i, 256 << 10)]).err())
        });
        assert!(again.is_some(), "10 MiB more went into memtables that cannot flush");

        // Reads still work meanwhile.
        assert_eq!(store.get(first.cid()).unwrap().unwrap(), first.data());

        // RocksDB does not resume by itself after a failed blob write: once space is freed,
        // reopening the store (restarting the process) brings writes back, and everything
        // that was flushed before is intact.
        let path = store.db.path().to_owned();
        drop(store);
        std::fs::remove_file(&filler).unwrap();
        let store = within(Duration::from_secs(60), move || RocksStore::open(&path, &tuning).unwrap());
        let late = numbered_block(5000, 1024);
        store.put_many(std::slice::from_ref(&late)).unwrap();
        store.sync().unwrap();
        assert_eq!(store.get(late.cid()).unwrap().unwrap(), late.data());
        assert_eq!(store.get(first.cid()).unwrap().unwrap(), first.data());
    }
}
