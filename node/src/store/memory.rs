//! An in-memory store for unit tests. Nothing survives the process.

use std::collections::BTreeMap;
use std::sync::RwLock;

use bytes::Bytes;
use cairn_merkle::{Block, Cid};

use super::{
    block_key, decode_pin, encode_pin, pin_key, BlockIter, BlockStore, Pin, PinOwner, PinStore, Put, StoreError,
    StoreStats,
};

/// Blocks and pins in ordered maps behind locks.
#[derive(Debug, Default)]
pub struct MemoryStore {
    blocks: RwLock<BTreeMap<Vec<u8>, Bytes>>,
    pins: RwLock<BTreeMap<Vec<u8>, Vec<u8>>>,
}

fn poisoned() -> StoreError {
    StoreError::Db("memory store lock poisoned".into())
}

impl BlockStore for MemoryStore {
    fn get(&self, cid: &Cid) -> Result<Option<Bytes>, StoreError> {
        Ok(self.blocks.read().map_err(|_| poisoned())?.get(&block_key(cid)).cloned())
    }

    fn has(&self, cid: &Cid) -> Result<bool, StoreError> {
        Ok(self.blocks.read().map_err(|_| poisoned())?.contains_key(&block_key(cid)))
    }

    fn put_many(&self, blocks: &[Block]) -> Result<Vec<Put>, StoreError> {
        let mut map = self.blocks.write().map_err(|_| poisoned())?;
        Ok(blocks
            .iter()
            .map(|b| match map.insert(block_key(b.cid()), b.data().clone()) {
                None => Put::New,
                Some(_) => Put::Existed,
            })
            .collect())
    }

    fn delete_keys(&self, keys: &[Vec<u8>]) -> Result<u64, StoreError> {
        let mut map = self.blocks.write().map_err(|_| poisoned())?;
        Ok(keys.iter().filter(|k| map.remove(*k).is_some()).count() as u64)
    }

    fn keys(&self) -> Box<dyn Iterator<Item = Result<Vec<u8>, StoreError>> + '_> {
        match self.blocks.read() {
            Ok(map) => Box::new(map.keys().cloned().collect::<Vec<_>>().into_iter().map(Ok)),
            Err(_) => Box::new(std::iter::once(Err(poisoned()))),
        }
    }

    fn blocks(&self) -> BlockIter<'_> {
        match self.blocks.read() {
            Ok(map) => {
                Box::new(map.iter().map(|(k, v)| (k.clone(), v.clone())).collect::<Vec<_>>().into_iter().map(Ok))
            }
            Err(_) => Box::new(std::iter::once(Err(poisoned()))),
        }
    }

    fn stats(&self) -> Result<StoreStats, StoreError> {
        let map = self.blocks.read().map_err(|_| poisoned())?;
        Ok(StoreStats { blocks: map.len() as u64, bytes: map.values().map(|v| v.len() as u64).sum() })
    }

    fn sync(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

impl PinStore for MemoryStore {
    fn put_pin(&self, pin: &Pin) -> Result<(), StoreError> {
        self.pins.write().map_err(|_| poisoned())?.insert(pin_key(&pin.cid, &pin.owner), encode_pin(pin));
        Ok(())
    }

    fn get_pin(&self, cid: &Cid, owner: &PinOwner) -> Result<Option<Pin>, StoreError> {
        let key = pin_key(cid, owner);
        let map = self.pins.read().map_err(|_| poisoned())?;
        map.get(&key).map(|v| decode_pin(&key, v)).transpose()
    }

    fn pins_of(&self, cid: &Cid) -> Result<Vec<Pin>, StoreError> {
        let prefix = cid.to_bytes();
        let map = self.pins.read().map_err(|_| poisoned())?;
        map.iter().filter(|(k, _)| k.starts_with(&prefix)).map(|(k, v)| decode_pin(k, v)).collect()
    }

    fn remove_pin(&self, cid: &Cid, owner: &PinOwner) -> Result<bool, StoreError> {
        Ok(self.pins.write().map_err(|_| poisoned())?.remove(&pin_key(cid, owner)).is_some())
    }

    fn pins(&self) -> Result<Vec<Pin>, StoreError> {
        let map = self.pins.read().map_err(|_| poisoned())?;
        map.iter().map(|(k, v)| decode_pin(k, v)).collect()
    }
}
