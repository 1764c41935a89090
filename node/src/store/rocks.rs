//! The RocksDB store: one database, a column family per concern.
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
//! the memtables hold (`check_space`), so a flush never meets a full disk, which would leave
//! RocksDB waiting for space and the writer hanging.

use std::path::Path;
use std::sync::Mutex;

use bytes::Bytes;
use cairn_merkle::{Block, Cid};
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, FlushOptions, IteratorMode, Options, WriteBatch, WriteOptions, DB,
};

use super::{block_key, decode_pin, encode_pin, BlockIter, BlockStore, Pin, PinStore, Put, StoreError, StoreStats};

const CF_BLOCKS: &str = "blocks";
const CF_INDEX: &str = "index";
const CF_PINS: &str = "pins";
const CF_META: &str = "meta";
const KEY_COUNTERS: &[u8] = b"counters";

/// Free space kept beyond what the memtables will write: table files, manifest, options.
const DISK_RESERVE: u64 = 4 << 20;

/// Memtables of the blocks table: one filling while the other flushes.
pub const MAX_WRITE_BUFFERS: i32 = 2;

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
}

impl Default for RocksTuning {
    fn default() -> Self {
        RocksTuning {
            min_blob_size: 2048,
            blob_file_size: 256 << 20,
            block_cache_bytes: 64 << 20,
            write_buffer_bytes: 64 << 20,
        }
    }
}

/// Blocks and pins in RocksDB.
pub struct RocksStore {
    db: DB,
    /// Serialises writers so that counters stay exact; RocksDB serialises writes anyway.
    counters: Mutex<StoreStats>,
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
        blocks.set_enable_blob_gc(true);
        blocks.set_blob_gc_age_cutoff(0.25);
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
        let store = RocksStore { db, counters: Mutex::new(StoreStats::default()) };
        let counters = match store.db.get_cf(&store.cf(CF_META)?, KEY_COUNTERS)? {
            Some(v) => decode_counters(&v)
                .ok_or_else(|| StoreError::Corrupt { table: "meta", reason: "bad counters".into() })?,
            None => store.recount()?,
        };
        *store.counters.lock().map_err(|_| poisoned())? = counters;
        Ok(store)
    }

    /// Refuses a write of `incoming` bytes that the disk could not hold together with what
    /// the memtables already hold: those bytes must reach disk at the next flush, and a flush
    /// that meets a full disk leaves RocksDB waiting for space, so the add would hang instead
    /// of failing. [`DISK_RESERVE`] more is kept for table files and the manifest.
    fn check_space(&self, incoming: u64) -> Result<(), StoreError> {
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

    /// Writes a batch of block-table changes without the log (see the module docs).
    fn write_unlogged(&self, batch: WriteBatch) -> Result<(), StoreError> {
        let mut wo = WriteOptions::default();
        wo.disable_wal(true);
        self.db.write_opt(batch, &wo)?;
        Ok(())
    }

    /// Flushes the tables block batches write (blocks, index, counters) to disk in one atomic
    /// flush and waits for it; a no-op when nothing was written since the last flush. The
    /// pins table is left alone: its writes go through the log, and flushing it on every pin
    /// would make one tiny table file per pin.
    fn flush_blocks(&self) -> Result<(), StoreError> {
        let cfs = [CF_BLOCKS, CF_INDEX, CF_META].map(|n| self.cf(n)).into_iter().collect::<Result<Vec<_>, _>>()?;
        let mut fo = FlushOptions::default();
        fo.set_wait(true);
        self.db.flush_cfs_opt(&cfs.iter().collect::<Vec<_>>(), &fo)?;
        Ok(())
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
    /// refers to it, so this flushes, then compacts with blob garbage collection forced over
    /// every blob file (normally only the oldest quarter is collected), then restores the
    /// background settings.
    pub fn compact(&self) -> Result<(), StoreError> {
        let mut co = rocksdb::CompactOptions::default();
        co.set_bottommost_level_compaction(rocksdb::BottommostLevelCompaction::Force);
        for name in [CF_BLOCKS, CF_INDEX] {
            let cf = self.cf(name)?;
            self.db.flush_cf(&cf)?;
            if name == CF_BLOCKS {
                self.db.set_options_cf(
                    &cf,
                    &[
                        ("blob_garbage_collection_age_cutoff", "1.0"),
                        ("blob_garbage_collection_force_threshold", "0.0"),
                    ],
                )?;
            }
            self.db.compact_range_cf_opt(&cf, None::<&[u8]>, None::<&[u8]>, &co);
            if name == CF_BLOCKS {
                self.db.set_options_cf(
                    &cf,
                    &[
                        ("blob_garbage_collection_age_cutoff", "0.25"),
                        ("blob_garbage_collection_force_threshold", "1.0"),
                    ],
                )?;
            }
        }
        Ok(())
    }
}

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

    fn put_many(&self, blocks: &[Block]) -> Result<Vec<Put>, StoreError> {
        let (cf_blocks, cf_index, cf_meta) = (self.cf(CF_BLOCKS)?, self.cf(CF_INDEX)?, self.cf(CF_META)?);
        let mut counters = self.counters.lock().map_err(|_| poisoned())?;
        let mut next = *counters;
        let mut batch = WriteBatch::default();
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::with_capacity(blocks.len());
        for b in blocks {
            let key = block_key(b.cid());
            if !seen.insert(key.clone()) || self.has(b.cid())? {
                out.push(Put::Existed);
                continue;
            }
            batch.put_cf(&cf_blocks, &key, b.data());
            batch.put_cf(&cf_index, &key, (b.data().len() as u64).to_le_bytes());
            next.blocks += 1;
            next.bytes += b.data().len() as u64;
            out.push(Put::New);
        }
        if next != *counters {
            self.check_space(next.bytes - counters.bytes)?;
            batch.put_cf(&cf_meta, KEY_COUNTERS, encode_counters(&next));
            self.write_unlogged(batch)?;
            *counters = next;
        }
        Ok(out)
    }

    fn delete_keys(&self, keys: &[Vec<u8>]) -> Result<u64, StoreError> {
        let (cf_blocks, cf_index, cf_meta) = (self.cf(CF_BLOCKS)?, self.cf(CF_INDEX)?, self.cf(CF_META)?);
        let mut counters = self.counters.lock().map_err(|_| poisoned())?;
        let mut next = *counters;
        let mut batch = WriteBatch::default();
        let mut deleted = 0;
        for key in keys {
            if let Some(len) = self.db.get_pinned_cf(&cf_index, key)? {
                next.blocks -= 1;
                next.bytes = next.bytes.saturating_sub(decode_len(&len)?);
                batch.delete_cf(&cf_blocks, key);
                batch.delete_cf(&cf_index, key);
                deleted += 1;
            }
        }
        if deleted > 0 {
            batch.put_cf(&cf_meta, KEY_COUNTERS, encode_counters(&next));
            self.write_unlogged(batch)?;
            *counters = next;
        }
        Ok(deleted)
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
        self.db.put_cf_opt(&self.cf(CF_PINS)?, pin.cid.to_bytes(), encode_pin(pin), &wo)?;
        Ok(())
    }

    fn get_pin(&self, cid: &Cid) -> Result<Option<Pin>, StoreError> {
        let key = cid.to_bytes();
        self.db.get_cf(&self.cf(CF_PINS)?, &key)?.map(|v| decode_pin(&key, &v)).transpose()
    }

    fn remove_pin(&self, cid: &Cid) -> Result<bool, StoreError> {
        let cf = self.cf(CF_PINS)?;
        let key = cid.to_bytes();
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
}
