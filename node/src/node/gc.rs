//! The collector (`repo gc`, and `block rm`): what no pin reaches is removed, while adds
//! and pins go on.

use std::collections::HashSet;

use cairn_merkle::Cid;

use super::{Node, NodeError, GC_START_WAIT};
use crate::store::{block_key, Pin, PinMode};

/// What `repo gc` did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GcReport {
    /// Blocks removed.
    pub removed_blocks: u64,
    /// Bytes of block data removed.
    pub removed_bytes: u64,
    /// Blocks kept because a pin reaches them.
    pub kept_blocks: u64,
    /// Blocks of pinned DAGs that are missing or unreadable and whose links are not known.
    /// While there are any, nothing is removed: the blocks below them cannot be told from
    /// garbage, and they are what a repair from peers would need.
    pub holes: Vec<Cid>,
}

impl Node {
    /// Deletes every block no pin reaches, beside adds, pins, imports, fetches and reads:
    /// they wait only while the collection starts (for those already under way to finish).
    ///
    /// It starts by taking the GC lock for writing, which waits for every add and pin under
    /// way, turns on the store's write protection ([`RocksStore::begin_protect`]: every block
    /// written from then on, and every block a new pin reaches, is kept), and reads the pins.
    /// The lock is then let go: the live blocks are marked from those pins, and the rest are
    /// deleted in batches, each skipping what writers protected meanwhile.
    ///
    /// [`RocksStore::begin_protect`]: crate::store::RocksStore::begin_protect
    ///
    /// Adds under way are waited for up to [`GC_START_WAIT`] ([`Node::gc_within`]); adds
    /// that start meanwhile are not held back.
    pub fn gc(&self) -> Result<GcReport, NodeError> {
        self.gc_within(GC_START_WAIT)
    }

    /// [`Node::gc`], giving up with [`NodeError::Busy`] when adds and pins under way keep the
    /// repo longer than `wait`.
    pub fn gc_within(&self, wait: std::time::Duration) -> Result<GcReport, NodeError> {
        self.gc_waiting(wait, &mut |_| {})
    }

    /// [`Node::gc`], telling `removed` of each block removed, in batches as they go (what
    /// `repo/gc` streams, a line a block). A block is named by its multihash, as the store
    /// keeps it: a CIDv1 with the raw codec.
    pub fn gc_reporting(&self, removed: &mut dyn FnMut(&[Cid])) -> Result<GcReport, NodeError> {
        self.gc_waiting(GC_START_WAIT, removed)
    }

    fn gc_waiting(&self, wait: std::time::Duration, removed: &mut dyn FnMut(&[Cid])) -> Result<GcReport, NodeError> {
        let store = self.repo.store();
        let pins = {
            let _guard = self.exclusive(wait, "repo gc")?;
            store.begin_protect()?;
            self.pins_store().pins()
        };
        let result = pins.map_err(NodeError::from).and_then(|pins| self.collect(pins, removed));
        store.end_protect()?;
        result
    }

    /// The mark and sweep of [`Node::gc`], from `pins`.
    fn collect(&self, pins: Vec<Pin>, removed: &mut dyn FnMut(&[Cid])) -> Result<GcReport, NodeError> {
        let mut live = HashSet::new();
        let mut report = GcReport::default();
        let damaged: std::collections::HashMap<Vec<u8>, super::Damaged> =
            super::damaged(self)?.into_iter().map(|d| (block_key(&d.cid), d)).collect();
        // The recursive walks first: a walk stops at a block already live, which is right only
        // when whatever made it live walked on below it. A direct pin marks its block alone, so
        // one met first would cut short every recursive DAG that holds that block. Depth-limited
        // walks keep their own account of where they have been, and come after.
        for pin in pins.iter().filter(|p| p.mode == PinMode::Recursive) {
            self.reachable_past_damage(&pin.cid, None, &damaged, &mut live, &mut report.holes)?;
        }
        for pin in pins.iter().filter(|p| matches!(p.mode, PinMode::Depth(_))) {
            self.reachable_past_damage(&pin.cid, pin.mode.max_depth(), &damaged, &mut live, &mut report.holes)?;
        }
        live.extend(pins.iter().filter(|p| p.mode == PinMode::Direct).map(|p| block_key(&p.cid)));
        if !report.holes.is_empty() {
            tracing::warn!(
                holes = report.holes.len(),
                "repo gc: pinned DAGs have blocks missing or unreadable; nothing removed until they are repaired or unpinned"
            );
            report.kept_blocks = self.store().stats()?.blocks;
            return Ok(report);
        }
        let store = self.repo.store();
        let mut sweep = |doomed: &mut Vec<Vec<u8>>, report: &mut GcReport| -> Result<(), NodeError> {
            let mut gone = Vec::with_capacity(doomed.len());
            let (blocks, bytes) = store.delete_unprotected(doomed, &mut |k| gone.extend(crate::store::key_cid(k)))?;
            report.removed_blocks += blocks;
            report.removed_bytes += bytes;
            doomed.clear();
            removed(&gone);
            Ok(())
        };
        let mut doomed = Vec::with_capacity(1024);
        for key in self.store().keys() {
            let key = key?;
            if live.contains(&key) {
                report.kept_blocks += 1;
                continue;
            }
            doomed.push(key);
            if doomed.len() == 1024 {
                sweep(&mut doomed, &mut report)?;
            }
        }
        sweep(&mut doomed, &mut report)?;
        self.store().sync()?;
        store.compact()?;
        Ok(report)
    }

    /// Removes blocks that no pin holds, each on its own: one result per CID, in order. A
    /// block pinned directly or recursively, or inside a recursively pinned DAG, is refused.
    pub fn block_rm(&self, cids: &[Cid]) -> Result<Vec<Result<(), NodeError>>, NodeError> {
        let _guard = self.exclusive(GC_START_WAIT, "block rm")?;
        let indirect: HashSet<Vec<u8>> = self.indirect_pins()?.iter().map(block_key).collect();
        let mut results = Vec::with_capacity(cids.len());
        for cid in cids {
            results.push(if !self.pins_store().pins_of(cid)?.is_empty() {
                Err(NodeError::Pinned(*cid))
            } else if indirect.contains(&block_key(cid)) {
                Err(NodeError::PinnedIndirectly(*cid))
            } else if self.store().delete_keys(&[block_key(cid)])? == 0 {
                Err(NodeError::NotFound(*cid))
            } else {
                Ok(())
            });
        }
        self.store().sync()?;
        Ok(results)
    }
}
