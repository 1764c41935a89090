//! Block and pin storage behind narrow traits.
//!
//! [`BlockStore`] keeps blocks keyed by multihash, so the same bytes under CIDv0 and CIDv1
//! are stored once. [`PinStore`] keeps pins. [`RocksStore`] is the product (one RocksDB
//! database, a column family per concern, block values in blob files); [`MemoryStore`]
//! backs fast unit tests, and the same scenarios run against both.
//!
//! Concurrency: both implementations are `Send + Sync` and take `&self`; RocksDB serialises
//! its own writes. Crash safety: [`BlockStore::sync`] is the durability barrier for blocks, and
//! [`PinStore::put_pin`] makes everything written before it durable before the pin itself, so
//! no crash can leave a pin that names a missing block.

mod memory;
mod rocks;

pub use memory::MemoryStore;
pub use rocks::{RocksStore, RocksTuning};

use bytes::Bytes;
use cairn_merkle::{Block, Cid};

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database reported an error (I/O, corruption, a full disk...).
    #[error("database: {0}")]
    Db(String),
    /// A stored record could not be decoded.
    #[error("corrupt record in {table}: {reason}")]
    Corrupt {
        /// Which table.
        table: &'static str,
        /// What is wrong.
        reason: String,
    },
}

impl From<rocksdb::Error> for StoreError {
    fn from(e: rocksdb::Error) -> Self {
        StoreError::Db(e.into_string())
    }
}

/// Whether a put stored new bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    /// The block was not there before.
    New,
    /// The block was already stored; nothing changed.
    Existed,
}

/// Counts of what a store holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Number of blocks.
    pub blocks: u64,
    /// Bytes of block data.
    pub bytes: u64,
}

/// The key under which a block is stored: its multihash.
pub fn block_key(cid: &Cid) -> Vec<u8> {
    cid.hash().to_bytes()
}

/// A CID that names a stored multihash when the original codec is not known (CIDv1, raw).
pub fn key_cid(key: &[u8]) -> Option<Cid> {
    let mh = cid::multihash::Multihash::<64>::from_bytes(key).ok()?;
    Some(Cid::new_v1(cairn_merkle::hash::RAW, mh))
}

/// Stored blocks as (multihash key, bytes), streamed.
pub type BlockIter<'a> = Box<dyn Iterator<Item = Result<(Vec<u8>, Bytes), StoreError>> + 'a>;

/// Block storage.
pub trait BlockStore: Send + Sync {
    /// The bytes stored under `cid`'s multihash.
    fn get(&self, cid: &Cid) -> Result<Option<Bytes>, StoreError>;
    /// Whether `cid`'s multihash is stored.
    fn has(&self, cid: &Cid) -> Result<bool, StoreError>;
    /// The length of the block stored under `cid`'s multihash, without reading it.
    fn size(&self, cid: &Cid) -> Result<Option<u64>, StoreError> {
        Ok(self.get(cid)?.map(|b| b.len() as u64))
    }
    /// Stores blocks in one atomic batch. Returns one outcome per block.
    fn put_many(&self, blocks: &[Block]) -> Result<Vec<Put>, StoreError>;
    /// Deletes blocks by multihash key; returns how many existed.
    fn delete_keys(&self, keys: &[Vec<u8>]) -> Result<u64, StoreError>;
    /// Every stored key (multihash bytes), in key order.
    fn keys(&self) -> Box<dyn Iterator<Item = Result<Vec<u8>, StoreError>> + '_>;
    /// Every stored block as (key, bytes), in key order.
    fn blocks(&self) -> BlockIter<'_>;
    /// Blocks and bytes held.
    fn stats(&self) -> Result<StoreStats, StoreError>;
    /// Makes everything written so far durable. Until then a crash may drop recent writes
    /// (never partly: a batch persists whole or not at all).
    fn sync(&self) -> Result<(), StoreError>;
}

/// How a root is pinned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PinMode {
    /// The root and everything it links to.
    Recursive,
    /// The root block alone.
    Direct,
}

impl PinMode {
    /// Kubo's name for the mode.
    pub fn as_str(self) -> &'static str {
        match self {
            PinMode::Recursive => "recursive",
            PinMode::Direct => "direct",
        }
    }
}

/// One pin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    /// The pinned root.
    pub cid: Cid,
    /// Recursive or direct.
    pub mode: PinMode,
    /// An optional name.
    pub name: Option<String>,
}

/// Pin storage. A CID has at most one pin; a recursive pin replaces a direct one.
pub trait PinStore: Send + Sync {
    /// Writes a pin (replacing any pin of the same CID). Every block written before the call is
    /// durable before the pin is; the pin is durable when the call returns.
    fn put_pin(&self, pin: &Pin) -> Result<(), StoreError>;
    /// The pin of `cid`, if any.
    fn get_pin(&self, cid: &Cid) -> Result<Option<Pin>, StoreError>;
    /// Removes a pin; returns whether there was one.
    fn remove_pin(&self, cid: &Cid) -> Result<bool, StoreError>;
    /// Every pin.
    fn pins(&self) -> Result<Vec<Pin>, StoreError>;
}

/// Encodes a pin record: mode byte, then the name's UTF-8 bytes.
fn encode_pin(pin: &Pin) -> Vec<u8> {
    let mut v = vec![match pin.mode {
        PinMode::Recursive => b'r',
        PinMode::Direct => b'd',
    }];
    if let Some(n) = &pin.name {
        v.extend_from_slice(n.as_bytes());
    }
    v
}

fn decode_pin(key: &[u8], value: &[u8]) -> Result<Pin, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt { table: "pins", reason };
    let cid = Cid::try_from(key).map_err(|e| corrupt(format!("bad CID key: {e}")))?;
    let mode = match value.first() {
        Some(b'r') => PinMode::Recursive,
        Some(b'd') => PinMode::Direct,
        _ => return Err(corrupt(format!("bad mode for {cid}"))),
    };
    let name = &value[1..];
    let name = if name.is_empty() {
        None
    } else {
        Some(String::from_utf8(name.to_vec()).map_err(|_| corrupt(format!("bad name for {cid}")))?)
    };
    Ok(Pin { cid, mode, name })
}

#[cfg(test)]
pub(crate) mod tests {
    //! Scenarios every store must pass; run against both backends.
    use super::*;
    use cairn_merkle::hash::{CidFormat, DAG_PB, RAW};

    pub fn block(data: &[u8], v1: bool) -> Block {
        let fmt = CidFormat { version: u8::from(v1), ..Default::default() };
        let codec = if v1 { RAW } else { DAG_PB };
        Block::new_unchecked(fmt.cid(codec, data), Bytes::copy_from_slice(data))
    }

    pub fn blocks_scenario(s: &dyn BlockStore) {
        let a = block(b"alpha", false);
        let b = block(b"beta", true);
        assert_eq!(s.put_many(&[a.clone(), b.clone()]).unwrap(), vec![Put::New, Put::New]);
        assert_eq!(s.put_many(std::slice::from_ref(&a)).unwrap(), vec![Put::Existed]);
        assert_eq!(s.get(a.cid()).unwrap().unwrap(), &b"alpha"[..]);
        // The same bytes under another CID version meet the same key.
        let a_v1 = Cid::new_v1(DAG_PB, *a.cid().hash());
        assert!(s.has(&a_v1).unwrap());
        assert_eq!(s.put_many(&[Block::new_unchecked(a_v1, a.data().clone())]).unwrap(), vec![Put::Existed]);
        assert_eq!(s.stats().unwrap(), StoreStats { blocks: 2, bytes: 9 });
        assert_eq!(s.keys().count(), 2);
        assert_eq!(s.delete_keys(&[block_key(a.cid())]).unwrap(), 1);
        assert_eq!(s.delete_keys(&[block_key(a.cid())]).unwrap(), 0);
        assert!(!s.has(a.cid()).unwrap());
        assert_eq!(s.stats().unwrap(), StoreStats { blocks: 1, bytes: 4 });
        let all: Vec<_> = s.blocks().map(|r| r.unwrap()).collect();
        assert_eq!(all, vec![(block_key(b.cid()), b.data().clone())]);
        s.sync().unwrap();
    }

    pub fn pins_scenario(s: &dyn PinStore) {
        let a = block(b"alpha", false);
        let pin = Pin { cid: *a.cid(), mode: PinMode::Direct, name: Some("ünï".into()) };
        s.put_pin(&pin).unwrap();
        assert_eq!(s.get_pin(a.cid()).unwrap(), Some(pin.clone()));
        let rec = Pin { mode: PinMode::Recursive, name: None, ..pin };
        s.put_pin(&rec).unwrap();
        assert_eq!(s.pins().unwrap(), vec![rec]);
        assert!(s.remove_pin(a.cid()).unwrap());
        assert!(!s.remove_pin(a.cid()).unwrap());
        assert!(s.pins().unwrap().is_empty());
    }

    #[test]
    fn memory_store_passes_the_scenarios() {
        let s = MemoryStore::default();
        blocks_scenario(&s);
        pins_scenario(&s);
    }
}
