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
    /// What was read back fails the database's own checksum: the bytes on disk are damaged
    /// (a lasting fault, unlike an I/O error or a lack of file handles).
    #[error("database: {0}")]
    Checksum(String),
    /// The write would take the store past `Datastore.StorageMax`.
    #[error(
        "the repo holds {held} bytes of blocks and this needs {incoming} more, over Datastore.StorageMax \
         ({max} bytes): unpin what is not needed and run `cairn repo gc`, or raise it"
    )]
    Full {
        /// Block bytes held now.
        held: u64,
        /// Block bytes the write would add.
        incoming: u64,
        /// The limit.
        max: u64,
    },
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
        if e.kind() == rocksdb::ErrorKind::Corruption {
            return StoreError::Checksum(e.into_string());
        }
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
    /// The root and what it links to down to this many links below it (at least 1): IPFS
    /// Cluster's `max-depth` pins, which it pins a sharded DAG's shards with (depth 1).
    Depth(u32),
}

impl PinMode {
    /// Kubo's name for the mode. Kubo has no depth-limited pins; IPFS Cluster expects its
    /// `max-depth` pins listed as `recursive`.
    pub fn as_str(self) -> &'static str {
        match self {
            PinMode::Recursive | PinMode::Depth(_) => "recursive",
            PinMode::Direct => "direct",
        }
    }

    /// The mode of IPFS Cluster's and the RPC API's `max-depth`: below 0 recursive, 0 direct,
    /// else limited to that depth.
    pub fn from_max_depth(depth: i64) -> PinMode {
        match u32::try_from(depth) {
            Err(_) if depth < 0 => PinMode::Recursive,
            Err(_) => PinMode::Depth(u32::MAX),
            Ok(0) => PinMode::Direct,
            Ok(n) => PinMode::Depth(n),
        }
    }

    /// How many links below the root the pin reaches: `None` for all of them.
    pub fn max_depth(self) -> Option<u32> {
        match self {
            PinMode::Recursive => None,
            PinMode::Direct => Some(0),
            PinMode::Depth(n) => Some(n),
        }
    }

    /// Whether this pin keeps all that `other` keeps of the same root: a pin is never
    /// replaced by a weaker one of the same owner.
    pub fn covers(self, other: PinMode) -> bool {
        reaches_as_deep(self.max_depth(), other.max_depth())
    }
}

/// Whether a walk `a` levels deep goes at least as deep as one `b` levels deep (`None`: all
/// the way down).
pub(crate) fn reaches_as_deep(a: Option<u32>, b: Option<u32>) -> bool {
    match (a, b) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(a), Some(b)) => a >= b,
    }
}

/// Who holds a pin. Each owner's pins are its own: no owner can replace or remove another's,
/// and a block stays while any owner's pin reaches it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum PinOwner {
    /// The node's operator: the CLI and the RPC API.
    #[default]
    Operator,
    /// A Pinning Service account.
    Service(String),
    /// A followed publisher's mirrored manifests (its peer ID).
    Follow(String),
}

impl PinOwner {
    /// The owner's part of a pin's key: nothing for the operator (so pins written before
    /// owners existed are the operator's), else a 0xff byte and `service:` or `follow:` with
    /// the name. A CID's bytes are self-delimiting, so the key splits back unambiguously.
    fn key_suffix(&self) -> Vec<u8> {
        match self {
            PinOwner::Operator => Vec::new(),
            PinOwner::Service(a) => [&[0xff][..], b"service:", a.as_bytes()].concat(),
            PinOwner::Follow(p) => [&[0xff][..], b"follow:", p.as_bytes()].concat(),
        }
    }

    fn from_suffix(suffix: &[u8]) -> Option<PinOwner> {
        if suffix.is_empty() {
            return Some(PinOwner::Operator);
        }
        let text = std::str::from_utf8(suffix.strip_prefix(&[0xff])?).ok()?;
        if let Some(a) = text.strip_prefix("service:") {
            return Some(PinOwner::Service(a.to_owned()));
        }
        text.strip_prefix("follow:").map(|p| PinOwner::Follow(p.to_owned()))
    }
}

impl std::fmt::Display for PinOwner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PinOwner::Operator => f.write_str("the operator"),
            PinOwner::Service(a) => write!(f, "pinning service account {a:?}"),
            PinOwner::Follow(p) => write!(f, "the follower of {p}"),
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
    /// Who holds it.
    pub owner: PinOwner,
}

/// The key of `owner`'s pin of `cid`.
pub fn pin_key(cid: &Cid, owner: &PinOwner) -> Vec<u8> {
    let mut k = cid.to_bytes();
    k.extend(owner.key_suffix());
    k
}

/// Pin storage. Each owner has at most one pin of a CID; a recursive pin replaces a direct
/// one of the same owner.
pub trait PinStore: Send + Sync {
    /// Writes a pin (replacing its owner's pin of the same CID). Every block written before
    /// the call is durable before the pin is; the pin is durable when the call returns.
    fn put_pin(&self, pin: &Pin) -> Result<(), StoreError>;
    /// `owner`'s pin of `cid`, if any.
    fn get_pin(&self, cid: &Cid, owner: &PinOwner) -> Result<Option<Pin>, StoreError>;
    /// Every owner's pin of `cid`.
    fn pins_of(&self, cid: &Cid) -> Result<Vec<Pin>, StoreError>;
    /// Removes `owner`'s pin of `cid`; returns whether there was one.
    fn remove_pin(&self, cid: &Cid, owner: &PinOwner) -> Result<bool, StoreError>;
    /// Every pin of every owner.
    fn pins(&self) -> Result<Vec<Pin>, StoreError>;
}

/// Encodes a pin record: mode byte (`r`, `d`, or `l` and the depth as 4 bytes big-endian),
/// then the name's UTF-8 bytes.
fn encode_pin(pin: &Pin) -> Vec<u8> {
    let mut v = match pin.mode {
        PinMode::Recursive => vec![b'r'],
        PinMode::Direct | PinMode::Depth(0) => vec![b'd'],
        PinMode::Depth(n) => [&[b'l'][..], &n.to_be_bytes()].concat(),
    };
    if let Some(n) = &pin.name {
        v.extend_from_slice(n.as_bytes());
    }
    v
}

fn decode_pin(key: &[u8], value: &[u8]) -> Result<Pin, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt { table: "pins", reason };
    let mut rest = key;
    let cid = Cid::read_bytes(&mut rest).map_err(|e| corrupt(format!("bad CID key: {e}")))?;
    let owner = PinOwner::from_suffix(rest).ok_or_else(|| corrupt(format!("bad owner for {cid}")))?;
    let (mode, name) = match value.split_first() {
        Some((b'r', name)) => (PinMode::Recursive, name),
        Some((b'd', name)) => (PinMode::Direct, name),
        Some((b'l', rest)) if rest.len() >= 4 => {
            let (depth, name) = rest.split_at(4);
            let depth = u32::from_be_bytes(depth.try_into().expect("4 bytes"));
            if depth == 0 {
                return Err(corrupt(format!("depth 0 for {cid}")));
            }
            (PinMode::Depth(depth), name)
        }
        _ => return Err(corrupt(format!("bad mode for {cid}"))),
    };
    let name = if name.is_empty() {
        None
    } else {
        Some(String::from_utf8(name.to_vec()).map_err(|_| corrupt(format!("bad name for {cid}")))?)
    };
    Ok(Pin { cid, mode, name, owner })
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
        let op = PinOwner::Operator;
        let pin = Pin { cid: *a.cid(), mode: PinMode::Direct, name: Some("ünï".into()), owner: op.clone() };
        s.put_pin(&pin).unwrap();
        assert_eq!(s.get_pin(a.cid(), &op).unwrap(), Some(pin.clone()));
        let rec = Pin { mode: PinMode::Recursive, name: None, ..pin };
        s.put_pin(&rec).unwrap();
        assert_eq!(s.pins().unwrap(), vec![rec.clone()]);
        // Other owners' pins of the same CID stand beside it, each its own.
        let svc = PinOwner::Service("acct".into());
        let fol = PinOwner::Follow("12D3KooWpeer".into());
        for owner in [&svc, &fol] {
            s.put_pin(&Pin { owner: owner.clone(), ..rec.clone() }).unwrap();
        }
        let other = block(b"beta", true);
        s.put_pin(&Pin { cid: *other.cid(), owner: svc.clone(), ..rec.clone() }).unwrap();
        assert_eq!(s.pins_of(a.cid()).unwrap().len(), 3);
        assert_eq!(s.pins().unwrap().len(), 4);
        assert!(s.remove_pin(a.cid(), &svc).unwrap());
        assert!(!s.remove_pin(a.cid(), &svc).unwrap());
        assert_eq!(s.get_pin(a.cid(), &op).unwrap(), Some(rec));
        assert!(s.remove_pin(a.cid(), &op).unwrap());
        assert_eq!(s.pins_of(a.cid()).unwrap().iter().map(|p| p.owner.clone()).collect::<Vec<_>>(), vec![fol.clone()]);
        assert!(s.remove_pin(a.cid(), &fol).unwrap());
        assert!(s.pins_of(a.cid()).unwrap().is_empty());
        assert!(s.remove_pin(other.cid(), &svc).unwrap());
        assert!(s.pins().unwrap().is_empty());
        // A depth-limited pin keeps its depth and name (and a depth past 2^24, all 4 bytes).
        for depth in [1, 70_000_000] {
            let limited =
                Pin { cid: *other.cid(), mode: PinMode::Depth(depth), name: Some("shard".into()), owner: op.clone() };
            s.put_pin(&limited).unwrap();
            assert_eq!(s.get_pin(other.cid(), &op).unwrap(), Some(limited));
        }
        assert!(s.remove_pin(other.cid(), &op).unwrap());
    }

    #[test]
    fn a_pin_record_that_does_not_parse_is_corrupt_not_a_pin() {
        let key = pin_key(block(b"alpha", false).cid(), &PinOwner::Operator);
        for value in [&b""[..], b"x", b"l\0\0", b"l\0\0\0\0name"] {
            assert!(matches!(decode_pin(&key, value), Err(StoreError::Corrupt { .. })), "{value:?}");
        }
        let p = decode_pin(&key, b"l\0\0\0\x02ab").unwrap();
        assert_eq!((p.mode, p.name.as_deref()), (PinMode::Depth(2), Some("ab")));
    }

    #[test]
    fn max_depth_maps_to_modes_and_stronger_pins_cover_weaker() {
        assert_eq!(PinMode::from_max_depth(-1), PinMode::Recursive);
        assert_eq!(PinMode::from_max_depth(0), PinMode::Direct);
        assert_eq!(PinMode::from_max_depth(3), PinMode::Depth(3));
        assert_eq!(PinMode::from_max_depth(1 << 40), PinMode::Depth(u32::MAX));
        assert_eq!(PinMode::Depth(1).as_str(), "recursive");
        assert!(PinMode::Recursive.covers(PinMode::Depth(9)));
        assert!(PinMode::Depth(2).covers(PinMode::Depth(1)));
        assert!(PinMode::Depth(1).covers(PinMode::Direct));
        assert!(!PinMode::Depth(1).covers(PinMode::Depth(2)));
        assert!(!PinMode::Depth(9).covers(PinMode::Recursive));
        assert!(!PinMode::Direct.covers(PinMode::Depth(1)));
    }

    #[test]
    fn memory_store_passes_the_scenarios() {
        let s = MemoryStore::default();
        blocks_scenario(&s);
        pins_scenario(&s);
    }
}
