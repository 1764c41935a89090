//! Pins: adding and removing them (each owner its own), listing them, and the walks of
//! the DAGs they reach.

use std::collections::HashSet;

use cairn_merkle::Cid;

use cairn_merkle::hash;

use super::verify::READ_TRIES;
use super::{IpfsPath, Node, NodeError};
use crate::store::{block_key, Pin, PinMode, PinOwner};

impl Node {
    /// Kubo's `indirect` pins: every block reachable from a recursive pin that is not itself
    /// pinned recursively, each once (by multihash), in walk order. Identity CIDs are left
    /// out, as they are never stored.
    pub fn indirect_pins(&self) -> Result<Vec<Cid>, NodeError> {
        let mut out = Vec::new();
        self.each_indirect_pin(&mut |cid| {
            out.push(cid);
            Ok(())
        })?;
        Ok(out)
    }

    /// [`Node::indirect_pins`], handed to `visit` one at a time as the walks reach them, so
    /// that a listing holds none of them (only the keys of the blocks walked, to visit each
    /// once); an error from `visit` stops the walk and is returned.
    /// Depth-limited pins count as recursive ones here, as far down as they reach.
    pub fn each_indirect_pin(&self, visit: &mut dyn FnMut(Cid) -> Result<(), NodeError>) -> Result<(), NodeError> {
        let mut walks: Vec<(Cid, Option<u32>)> = self
            .pins_store()
            .pins()?
            .into_iter()
            .filter(|p| p.mode != PinMode::Direct)
            .map(|p| (p.cid, p.mode.max_depth()))
            .collect();
        // The whole DAGs first: a depth-limited walk never stops at a block another walk met.
        walks.sort_by_key(|(_, limit)| limit.is_some());
        let roots: HashSet<Vec<u8>> = walks.iter().map(|(c, _)| block_key(c)).collect();
        let mut seen = HashSet::new();
        for (root, limit) in &walks {
            self.walk_dag(root, *limit, &mut seen, &mut |cid| match roots.contains(&block_key(&cid)) {
                true => Ok(()),
                false => visit(cid),
            })?;
        }
        Ok(())
    }

    /// Every block of the DAG under `root`, the root first, each once (by multihash), in walk
    /// order; identity CIDs are left out. Every block must be present.
    pub fn dag_cids(&self, root: &Cid) -> Result<Vec<Cid>, NodeError> {
        let mut out = Vec::new();
        self.walk_dag(root, None, &mut HashSet::new(), &mut |cid| {
            out.push(cid);
            Ok(())
        })?;
        Ok(out)
    }

    /// The bytes of every distinct block of the DAG under `root` (all must be present).
    pub fn dag_size(&self, root: &Cid) -> Result<u64, NodeError> {
        let cids = self.dag_cids(root)?;
        let mut total = 0u64;
        for cid in cids {
            total += self.store().size(&cid)?.unwrap_or(0);
        }
        Ok(total)
    }

    /// Depth-first, in link order, over blocks not yet in `seen` (each visited once), down to
    /// `limit` links below `root` (all the way with `None`); stops at `visit`'s first error.
    fn walk_dag(
        &self,
        root: &Cid,
        limit: Option<u32>,
        seen: &mut HashSet<Vec<u8>>,
        visit: &mut dyn FnMut(Cid) -> Result<(), NodeError>,
    ) -> Result<(), NodeError> {
        let mut walk = Walk::new(*root, limit);
        while let Some((cid, first, left)) = walk.next(seen) {
            if first {
                visit(cid)?;
            }
            if cid.codec() == hash::RAW || left == Some(0) {
                continue;
            }
            let data = self.store().get(&cid)?.ok_or(NodeError::NotFound(cid))?;
            let links = cairn_merkle::links::links(&cid, &data)
                .map_err(|e| NodeError::BadPath(cid.to_string(), e.to_string()))?;
            walk.push_links(links, left);
        }
        Ok(())
    }

    /// Every block reachable from `root` (root included) down to `limit` links below it
    /// (all the way with `None`), checking each is present. Each block is protected from a
    /// collection under way before it is read ([`crate::store::RocksStore::protect`]): once
    /// the walk has seen it, it stays, and a block a collection took first is missing here,
    /// which fails the pin cleanly.
    pub(super) fn reachable(
        &self,
        root: &Cid,
        limit: Option<u32>,
        into: &mut HashSet<Vec<u8>>,
    ) -> Result<(), NodeError> {
        let mut walk = Walk::new(*root, limit);
        while let Some((cid, _, left)) = walk.next(into) {
            self.repo.store().protect([block_key(&cid)])?;
            if left == Some(0) {
                if !self.store().has(&cid)? {
                    return Err(NodeError::NotFound(cid));
                }
                continue;
            }
            let data = self.store().get(&cid)?.ok_or(NodeError::NotFound(cid))?;
            let links = cairn_merkle::links::links(&cid, &data)
                .map_err(|e| NodeError::BadPath(cid.to_string(), e.to_string()))?;
            walk.push_links(links, left);
        }
        Ok(())
    }

    /// Like [`Node::reachable`], for the collector: a block that is missing or cannot be read
    /// or decoded does not stop the walk. A missing raw block has no links; a missing block
    /// the scrub recorded with the links it could still read is walked through them; any
    /// other such block is a hole, added to `holes`.
    /// Down to `limit` links below `root`, as [`Node::reachable`]; a block at the limit is
    /// marked without being read.
    pub(super) fn reachable_past_damage(
        &self,
        root: &Cid,
        limit: Option<u32>,
        damaged: &std::collections::HashMap<Vec<u8>, super::Damaged>,
        into: &mut HashSet<Vec<u8>>,
        holes: &mut Vec<Cid>,
    ) -> Result<(), NodeError> {
        let mut walk = Walk::new(*root, limit);
        while let Some((cid, _, left)) = walk.next(into) {
            if left == Some(0) {
                continue;
            }
            let key = block_key(&cid);
            let mut read = self.store().get(&cid);
            for attempt in 1..READ_TRIES {
                if read.is_ok() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(50 << (2 * attempt)));
                read = self.store().get(&cid);
            }
            let links = match read {
                _ if cid.codec() == hash::RAW => Some(Vec::new()),
                Ok(Some(data)) => cairn_merkle::links::links(&cid, &data)
                    .ok()
                    .or_else(|| damaged.get(&key).and_then(|d| d.links.clone())),
                Ok(None) | Err(_) => damaged.get(&key).and_then(|d| d.links.clone()),
            };
            match links {
                Some(links) => walk.push_links(links, left),
                None => holes.push(cid),
            }
        }
        Ok(())
    }

    /// The operator's recursive pin of a root just written (its blocks are all there).
    pub(super) fn pin_root(&self, cid: Cid) -> Result<(), NodeError> {
        Ok(self.pins_store().put_pin(&Pin { cid, mode: PinMode::Recursive, name: None, owner: PinOwner::Operator })?)
    }

    /// Pins `path`'s CID for the operator. A recursive pin needs every block of the DAG
    /// present.
    pub fn pin_add(&self, path: &IpfsPath, recursive: bool, name: Option<String>) -> Result<Cid, NodeError> {
        self.pin_add_as(PinOwner::Operator, path, recursive, name)
    }

    /// Pins `path`'s CID for `owner`, beside any other owner's pin of it.
    pub fn pin_add_as(
        &self,
        owner: PinOwner,
        path: &IpfsPath,
        recursive: bool,
        name: Option<String>,
    ) -> Result<Cid, NodeError> {
        let mode = if recursive { PinMode::Recursive } else { PinMode::Direct };
        self.pin_add_mode(owner, path, mode, name)
    }

    /// Pins `path`'s CID for `owner` in `mode`: every block the pin reaches must be present.
    /// An owner's pin of a CID already reaching as far stays as it is.
    pub fn pin_add_mode(
        &self,
        owner: PinOwner,
        path: &IpfsPath,
        mode: PinMode,
        name: Option<String>,
    ) -> Result<Cid, NodeError> {
        // Depth 0 is the root alone: a direct pin.
        let mode = if mode == PinMode::Depth(0) { PinMode::Direct } else { mode };
        let _guard = self.shared()?;
        let cid = self.resolve(path)?;
        // A collection running now read the pins before this one: the walk protects the
        // blocks from it as it goes.
        self.reachable(&cid, mode.max_depth(), &mut HashSet::new())?;
        if let Some(existing) = self.pins_store().get_pin(&cid, &owner)? {
            if existing.mode != mode && existing.mode.covers(mode) {
                return Ok(cid);
            }
        }
        self.pins_store().put_pin(&Pin { cid, mode, name, owner })?;
        Ok(cid)
    }

    /// Refuses a pin update from `from` to `to` as Kubo refuses it: when `from` is not pinned
    /// recursively by the operator, or `to` (another CID) is already. A depth-limited pin
    /// counts as recursive, as it is listed. Otherwise the name and mode of `from`'s pin, which
    /// `to`'s takes over. [`Node::pin_update`] checks this itself; a caller that must fetch
    /// `to`'s blocks first checks it before, so as to fetch nothing for a refused update (and
    /// only as deep as the mode reaches).
    pub fn check_pin_update(&self, from: &Cid, to: &Cid) -> Result<(Option<String>, PinMode), NodeError> {
        let owner = PinOwner::Operator;
        let Some(old) = self.pins_store().get_pin(from, &owner)?.filter(|p| p.mode != PinMode::Direct) else {
            return Err(NodeError::NotRecursivelyPinned(*from));
        };
        if from != to && self.pins_store().get_pin(to, &owner)?.is_some_and(|p| p.mode != PinMode::Direct) {
            return Err(NodeError::AlreadyRecursivelyPinned(*to));
        }
        Ok((old.name, old.mode))
    }

    /// Moves the operator's recursive (or depth-limited) pin from `from` to `to` (`pin
    /// update`): pins `to` in the same mode, under `from`'s name, then removes `from`'s pin
    /// unless `unpin` is false. Every block `to`'s pin reaches must be present; the caller
    /// fetches the ones missing first (those `to` shares with `from` are here already, held by
    /// `from`'s pin). `to` is pinned, durably, before `from` is unpinned, so a crash between the
    /// two leaves both pinned, never neither. Refused as [`Node::check_pin_update`] says;
    /// `from == to` changes nothing.
    pub fn pin_update(&self, from: &Cid, to: &Cid, unpin: bool) -> Result<(), NodeError> {
        let (name, mode) = self.check_pin_update(from, to)?;
        if from == to {
            return Ok(());
        }
        let owner = PinOwner::Operator;
        self.pin_add_mode(owner.clone(), &IpfsPath { root: *to, rest: String::new() }, mode, name)?;
        if unpin {
            // Whether it was still there or another call removed it meanwhile, it is gone.
            self.pins_store().remove_pin(from, &owner)?;
        }
        Ok(())
    }

    /// Removes the operator's pin of `path`'s CID. Another owner's pin of it stays, and is
    /// named in the error when the operator has none.
    pub fn pin_rm(&self, path: &IpfsPath) -> Result<Cid, NodeError> {
        self.pin_rm_as(&PinOwner::Operator, path)
    }

    /// Removes `owner`'s pin of `path`'s CID, and no other.
    pub fn pin_rm_as(&self, owner: &PinOwner, path: &IpfsPath) -> Result<Cid, NodeError> {
        let cid = if path.rest.is_empty() { path.root } else { self.resolve(path)? };
        if !self.pins_store().remove_pin(&cid, owner)? {
            if let Some(other) = self.pins_store().pins_of(&cid)?.into_iter().next() {
                return Err(NodeError::PinnedByOther(cid, other.owner.to_string()));
            }
            return Err(NodeError::NotPinned(cid));
        }
        Ok(cid)
    }

    /// The operator's pin of `cid`, if it has one.
    pub fn pin_of(&self, cid: &Cid) -> Result<Option<Pin>, NodeError> {
        Ok(self.pins_store().get_pin(cid, &PinOwner::Operator)?)
    }

    /// `owner`'s pin of `cid`, if it has one.
    pub fn pin_of_owner(&self, cid: &Cid, owner: &PinOwner) -> Result<Option<Pin>, NodeError> {
        Ok(self.pins_store().get_pin(cid, owner)?)
    }

    /// Every owner's pin of `cid`.
    pub fn pins_of(&self, cid: &Cid) -> Result<Vec<Pin>, NodeError> {
        Ok(self.pins_store().pins_of(cid)?)
    }

    /// Every pin.
    pub fn pins(&self) -> Result<Vec<Pin>, NodeError> {
        Ok(self.pins_store().pins()?)
    }
}

/// The blocks a walk of a pinned DAG has yet to go through, each with how many levels below it
/// the walk goes (`None`: all). A whole DAG is walked depth-first in link order, each block
/// once. A depth-limited one is walked breadth-first, so that each block is first met as high up
/// as it lies, with the most levels left below it, and gone through once: met first deep down
/// and again higher up, a block would have to be walked again, deeper, which on a DAG of many
/// paths to the same blocks adds up to quadratic work.
pub(crate) struct Walk {
    queue: std::collections::VecDeque<(Cid, Option<u32>)>,
    limited: bool,
    /// For a depth-limited walk, the levels left below each block when it was gone through.
    left: std::collections::HashMap<Vec<u8>, u32>,
}

impl Walk {
    pub(crate) fn new(root: Cid, limit: Option<u32>) -> Walk {
        Walk { queue: [(root, limit)].into(), limited: limit.is_some(), left: Default::default() }
    }

    /// The next block to go through: its CID, whether `seen` lacked it (it is added), and the
    /// levels left below it. Identity CIDs are passed over (never stored), and so is a block
    /// already gone through: by a whole-DAG walk when `seen` has it (shared by such walks,
    /// each of which goes on below every block it meets), by a depth-limited walk when it met
    /// it with as many levels left.
    pub(crate) fn next(&mut self, seen: &mut HashSet<Vec<u8>>) -> Option<(Cid, bool, Option<u32>)> {
        loop {
            let (cid, left) = if self.limited { self.queue.pop_front()? } else { self.queue.pop_back()? };
            if cid.hash().code() == hash::IDENTITY {
                continue;
            }
            let key = block_key(&cid);
            let first = seen.insert(key.clone());
            let go = match left {
                None => first,
                Some(n) => match self.left.get(&key) {
                    Some(&before) if before >= n => false,
                    _ => {
                        self.left.insert(key, n);
                        true
                    }
                },
            };
            if go {
                return Some((cid, first, left));
            }
        }
    }

    /// Queues the links of a block gone through with `left` levels below it (none at 0), so
    /// that the first link comes out first among them.
    pub(crate) fn push_links(&mut self, links: Vec<Cid>, left: Option<u32>) {
        queue_links(&mut self.queue, links, left, self.limited);
    }
}

/// Queues the links of a block met with `left` levels below it (none at 0), each with the
/// levels left below it, so that the first link comes out first: at the back in link order
/// when the queue is taken from the front (`breadth_first`), else in reverse.
pub(crate) fn queue_links(
    queue: &mut std::collections::VecDeque<(Cid, Option<u32>)>,
    links: Vec<Cid>,
    left: Option<u32>,
    breadth_first: bool,
) {
    if left == Some(0) {
        return;
    }
    let below = left.map(|n| n - 1);
    if breadth_first {
        queue.extend(links.into_iter().map(|l| (l, below)));
    } else {
        queue.extend(links.into_iter().rev().map(|l| (l, below)));
    }
}
