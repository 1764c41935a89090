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
        let mut reach = Reach::default();
        let mut stack = vec![(*root, limit)];
        while let Some((cid, left)) = stack.pop() {
            let key = block_key(&cid);
            if cid.hash().code() == hash::IDENTITY {
                continue;
            }
            let first = !seen.contains(&key);
            if !reach.enter(&key, left, seen) {
                continue;
            }
            if first {
                visit(cid)?;
            }
            if cid.codec() == hash::RAW || left == Some(0) {
                continue;
            }
            let data = self.store().get(&cid)?.ok_or(NodeError::NotFound(cid))?;
            let mut links = cairn_merkle::links::links(&cid, &data)
                .map_err(|e| NodeError::BadPath(cid.to_string(), e.to_string()))?;
            links.reverse();
            stack.extend(links.into_iter().map(|l| (l, left.map(|n| n - 1))));
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
        let mut reach = Reach::default();
        let mut stack = vec![(*root, limit)];
        while let Some((cid, left)) = stack.pop() {
            let key = block_key(&cid);
            if cid.hash().code() == hash::IDENTITY || !reach.enter(&key, left, into) {
                continue;
            }
            self.repo.store().protect([key])?;
            if left == Some(0) {
                if !self.store().has(&cid)? {
                    return Err(NodeError::NotFound(cid));
                }
                continue;
            }
            let data = self.store().get(&cid)?.ok_or(NodeError::NotFound(cid))?;
            let links = cairn_merkle::links::links(&cid, &data)
                .map_err(|e| NodeError::BadPath(cid.to_string(), e.to_string()))?;
            stack.extend(links.into_iter().map(|l| (l, left.map(|n| n - 1))));
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
        let mut reach = Reach::default();
        let mut stack = vec![(*root, limit)];
        while let Some((cid, left)) = stack.pop() {
            let key = block_key(&cid);
            if cid.hash().code() == hash::IDENTITY || !reach.enter(&key, left, into) || left == Some(0) {
                continue;
            }
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
                Some(links) => stack.extend(links.into_iter().map(|l| (l, left.map(|n| n - 1)))),
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
    /// recursively by the operator, or `to` (another CID) is already. Otherwise the name of
    /// `from`'s pin, which `to`'s takes over. [`Node::pin_update`] checks this itself; a caller
    /// that must fetch `to`'s blocks first checks it before, so as to fetch nothing for a
    /// refused update.
    pub fn check_pin_update(&self, from: &Cid, to: &Cid) -> Result<Option<String>, NodeError> {
        let owner = PinOwner::Operator;
        let Some(old) = self.pins_store().get_pin(from, &owner)?.filter(|p| p.mode == PinMode::Recursive) else {
            return Err(NodeError::NotRecursivelyPinned(*from));
        };
        if from != to && self.pins_store().get_pin(to, &owner)?.is_some_and(|p| p.mode == PinMode::Recursive) {
            return Err(NodeError::AlreadyRecursivelyPinned(*to));
        }
        Ok(old.name)
    }

    /// Moves the operator's recursive pin from `from` to `to` (`pin update`): pins `to`
    /// recursively, under `from`'s name, then removes `from`'s pin unless `unpin` is false.
    /// Every block of `to` must be present; the caller fetches the ones missing first (those
    /// `to` shares with `from` are here already, held by `from`'s pin). `to` is pinned, durably,
    /// before `from` is unpinned, so a crash between the two leaves both pinned, never
    /// neither. Refused as [`Node::check_pin_update`] says; `from == to` changes nothing.
    pub fn pin_update(&self, from: &Cid, to: &Cid, unpin: bool) -> Result<(), NodeError> {
        let name = self.check_pin_update(from, to)?;
        if from == to {
            return Ok(());
        }
        let owner = PinOwner::Operator;
        self.pin_add_as(owner.clone(), &IpfsPath { root: *to, rest: String::new() }, true, name)?;
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

/// Where a walk has been, for walks limited in depth: each block with the most levels it had
/// left below it when met, so that a block met again higher up is walked again, deeper. A walk
/// without a limit goes through each block once.
#[derive(Default)]
pub(crate) struct Reach {
    left: std::collections::HashMap<Vec<u8>, u32>,
}

impl Reach {
    /// Whether the walk goes on at `key`, met with `left` levels below it (`None`: all);
    /// adds `key` to `into` either way.
    pub(crate) fn enter(&mut self, key: &[u8], left: Option<u32>, into: &mut HashSet<Vec<u8>>) -> bool {
        let new = into.insert(key.to_vec());
        let Some(left) = left else { return new };
        match self.left.get(key) {
            Some(&before) if before >= left => false,
            _ => {
                self.left.insert(key.to_vec(), left);
                true
            }
        }
    }
}
