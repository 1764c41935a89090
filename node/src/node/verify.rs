//! Checking what the repo holds: `repo verify`, the checks and the damaged-block records
//! that the scrub, the collector and verify share ([`examine`], [`Corrupt`], [`Damaged`]),
//! and `repo stat`.

use std::path::PathBuf;

use bytes::Bytes;
use cairn_merkle::hash::{self, CidFormat, HashAlg};
use cairn_merkle::Cid;

use serde::{Deserialize, Serialize};

use super::{Node, NodeError};
use crate::store::{block_key, key_cid, StoreError, StoreStats};

/// What `repo stat` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoStat {
    /// Blocks and block bytes.
    pub store: StoreStats,
    /// Bytes on disk (database files).
    pub disk_bytes: u64,
    /// Number of pins.
    pub pins: u64,
    /// The repo path.
    pub path: PathBuf,
}

/// One block `repo verify` found damaged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corrupt {
    /// A CID naming the block (CIDv1, raw codec, with the stored multihash).
    pub cid: Cid,
    /// What is wrong.
    pub reason: String,
    /// The damage is certain: the bytes were read twice and both times did not match the
    /// hash (or the key is no multihash). Otherwise the block could not be read or checked,
    /// which may pass, and its bytes must be kept.
    pub confirmed: bool,
}

/// How many times a block that fails to read is read before it counts as unreadable.
pub(super) const READ_TRIES: u32 = 3;

/// Re-reads and re-hashes one block through `read`: its size, or what is wrong with it.
/// A read error is tried again (after `pause`) up to [`READ_TRIES`] times, and a mismatch (of
/// the block's hash, or of the database's checksum) is read a second time before it is
/// believed, so that a passing fault of the disk or the process (EIO, EMFILE) never condemns
/// sound bytes.
#[allow(clippy::result_large_err)] // the error is a damaged block: rare, and reported whole
pub fn examine(
    cid: Cid,
    read: &mut dyn FnMut() -> Result<Option<Bytes>, StoreError>,
    pause: &mut dyn FnMut(std::time::Duration),
) -> Result<Option<u64>, Corrupt> {
    let mut mismatches = 0;
    let mut tries = 0;
    loop {
        tries += 1;
        let last = tries >= READ_TRIES;
        match read() {
            // Deleted since it was listed (a collection ran meanwhile): nothing to check.
            Ok(None) => return Ok(None),
            Ok(Some(data)) => match hash::multihash_matches(cid.hash(), &data) {
                Ok(true) => return Ok(Some(data.len() as u64)),
                Ok(false) => {
                    mismatches += 1;
                    if mismatches >= 2 {
                        let reason = "bytes do not match the hash".to_owned();
                        return Err(Corrupt { cid, reason, confirmed: true });
                    }
                }
                Err(e) => return Err(Corrupt { cid, reason: format!("cannot be checked: {e}"), confirmed: false }),
            },
            Err(StoreError::Checksum(e)) => {
                mismatches += 1;
                if mismatches >= 2 {
                    return Err(Corrupt { cid, reason: format!("unreadable: {e}"), confirmed: true });
                }
            }
            Err(e) if last => {
                let reason = format!("unreadable after {READ_TRIES} tries: {e}");
                return Err(Corrupt { cid, reason, confirmed: false });
            }
            Err(_) => pause(std::time::Duration::from_millis(50 << (2 * tries.min(4)))),
        }
    }
}

impl Node {
    /// Sizes and counts.
    pub fn stat(&self) -> Result<RepoStat, NodeError> {
        Ok(RepoStat {
            store: self.store().stats()?,
            disk_bytes: self.repo.store().disk_usage()?,
            pins: self.pins_store().pins()?.len() as u64,
            path: self.repo.path().to_owned(),
        })
    }

    /// Re-hashes every block; returns the damaged ones, and the blocks the scrub removed as
    /// corrupt that no peer has supplied again. `on_block` hears each block's size.
    pub fn verify(&self, on_block: &mut dyn FnMut(u64)) -> Result<Vec<Corrupt>, NodeError> {
        let mut bad = Vec::new();
        // Key by key rather than one iterator over the bytes: a block RocksDB cannot read back
        // (a blob whose checksum fails) is then reported, and the scan goes on past it.
        for key in self.store().keys() {
            match self.check_key(&key?) {
                Ok(size) => on_block(size),
                Err(c) => bad.push(c),
            }
        }
        // Unreadable blocks the scrub recorded are still stored, so listed above already.
        bad.extend(damaged(self)?.into_iter().filter(|d| !d.unreadable).map(|d| Corrupt {
            cid: d.cid,
            reason: format!("removed by the scrub as corrupt ({}); no peer has supplied it since", d.error),
            confirmed: true,
        }));
        Ok(bad)
    }

    /// Re-reads and re-hashes the block stored under `key` (a multihash): its size (0 for a
    /// block deleted since it was listed), or what is wrong with it (see [`examine`]).
    #[allow(clippy::result_large_err)] // as for `examine`
    pub fn check_key(&self, key: &[u8]) -> Result<u64, Corrupt> {
        let Some(cid) = key_cid(key) else {
            let cid = CidFormat { version: 1, hash: HashAlg::Sha2_256 }.cid(hash::RAW, key);
            let reason = "stored under a key that is not a multihash".to_owned();
            return Err(Corrupt { cid, reason, confirmed: true });
        };
        examine(cid, &mut || self.store().get(&cid), &mut std::thread::sleep).map(|n| n.unwrap_or(0))
    }
}

/// The metadata prefix of damaged-block records.
const DAMAGED: &str = "scrub/damaged/";

/// A block the scrub found damaged and could not fetch again: removed (its bytes did not
/// match its hash, read twice), or kept but unreadable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Damaged {
    /// A CID naming it (CIDv1 raw with its multihash).
    pub cid: Cid,
    /// What was wrong with it.
    pub error: String,
    /// When it was found (Unix milliseconds).
    pub found_ms: u64,
    /// The links its damaged bytes still decoded to as dag-pb, if they did: the collector
    /// walks through them, so that the blocks below a removed one are kept for its repair.
    #[serde(default)]
    pub links: Option<Vec<Cid>>,
    /// It could not be read (or checked) and is still stored: nothing was removed.
    #[serde(default)]
    pub unreadable: bool,
}

/// The metadata key of the damaged-block record of the block stored under `key`.
pub(crate) fn damaged_key(key: &[u8]) -> String {
    format!("{DAMAGED}{}", data_encoding::HEXLOWER.encode(key))
}

/// The blocks the scrub found damaged that no peer has supplied since (removed, or kept but
/// unreadable).
pub fn damaged(node: &Node) -> Result<Vec<Damaged>, NodeError> {
    Ok(node.repo().store().meta_records(DAMAGED, "scrub")?)
}

/// Whether the scrub recorded `cid`'s block as damaged and not yet repaired.
pub fn is_damaged(node: &Node, cid: &Cid) -> Result<bool, NodeError> {
    Ok(node.repo().store().get_meta(damaged_key(&block_key(cid)).as_bytes())?.is_some())
}
