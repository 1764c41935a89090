//! One peer's ledger: the wants it sent this node that are waiting for a serving turn.
//!
//! Every operation a peer's message causes is O(1) per entry: a want is found by its block's
//! multihash, so a new want, a replaced one and a cancel each cost a hash-map lookup, however
//! full the ledger is. Only a serving turn looks at the whole ledger, to pick the most pressing
//! wants, and a turn is started by this node, not by the peer.

use std::collections::HashMap;

use super::proto::{Want, WantType};

/// See the module docs.
#[derive(Debug)]
pub(super) struct Ledger {
    /// By the wanted block's multihash: the want and its place in line.
    entries: HashMap<Vec<u8>, (u64, Want)>,
    /// The next place at the back of the line.
    back: u64,
    /// The place before the current front of the line (counting down from the middle).
    front: u64,
}

/// Places count up from here at the back and down from here at the front.
const MIDDLE: u64 = u64::MAX / 2;

impl Default for Ledger {
    fn default() -> Self {
        Ledger { entries: HashMap::new(), back: MIDDLE, front: MIDDLE }
    }
}

impl Ledger {
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(super) fn clear(&mut self) {
        self.entries.clear();
    }

    /// Puts `want` at the back of the line, replacing a want of the same block. A new block
    /// is taken only if `room`; returns whether the want is in the ledger.
    pub(super) fn push(&mut self, key: Vec<u8>, want: Want, room: bool) -> bool {
        if !room && !self.entries.contains_key(&key) {
            return false;
        }
        self.back += 1;
        self.entries.insert(key, (self.back, want));
        true
    }

    /// Puts `wants` back at the front of the line, in their order (wants a turn could not
    /// finish), replacing wants of the same blocks that came meanwhile.
    pub(super) fn push_front(&mut self, wants: Vec<(Vec<u8>, Want)>) {
        for (key, want) in wants.into_iter().rev() {
            self.front -= 1;
            self.entries.insert(key, (self.front, want));
        }
    }

    pub(super) fn remove(&mut self, key: &[u8]) -> Option<Want> {
        self.entries.remove(key).map(|(_, w)| w)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &Want> {
        self.entries.values().map(|(_, w)| w)
    }

    /// Takes a turn's wants: ordered by `rank` (lowest first; equal ranks in line order),
    /// every want-have that ranks before the first want-block, then at most `max_blocks`
    /// want-blocks, and no more than `batch` in all.
    pub(super) fn take<R: Ord>(&mut self, rank: impl Fn(&Want) -> R, max_blocks: usize, batch: usize) -> Vec<Want> {
        let mut order: Vec<(R, u64, &Vec<u8>)> = self.entries.iter().map(|(k, (seq, w))| (rank(w), *seq, k)).collect();
        order.sort_unstable_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        let kinds = |(_, _, k): &(R, u64, &Vec<u8>)| self.entries[*k].1.kind;
        let haves = order.iter().take_while(|e| kinds(e) == WantType::Have).count();
        let blocks = (order.len() - haves).min(max_blocks);
        let n = (haves + blocks).min(batch);
        let keys: Vec<Vec<u8>> = order[..n].iter().map(|(_, _, k)| (*k).clone()).collect();
        keys.iter().filter_map(|k| self.remove(k)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_merkle::hash::{CidFormat, RAW};

    fn want(i: u32, kind: WantType) -> (Vec<u8>, Want) {
        let cid = CidFormat::default().cid(RAW, &i.to_le_bytes());
        (cid.hash().to_bytes(), Want { cid, priority: 1, kind, send_dont_have: false })
    }

    #[test]
    fn wants_are_replaced_cancelled_and_taken_in_rank_then_line_order() {
        let mut l = Ledger::default();
        for i in 0..6 {
            let (k, w) = want(i, if i % 2 == 0 { WantType::Block } else { WantType::Have });
            assert!(l.push(k, w, true));
        }
        // A full ledger takes no new block, but a want of a block it holds replaces it.
        let (k, w) = want(9, WantType::Have);
        assert!(!l.push(k, w, false));
        let (k, w) = want(0, WantType::Have);
        assert!(l.push(k, w, false), "a replacement needs no room");
        assert_eq!(l.len(), 6);
        assert!(l.remove(&want(5, WantType::Have).0).is_some());
        // Haves first, in line order (0 moved to the back when it was replaced); then blocks.
        let cids = |ws: Vec<Want>| ws.iter().map(|w| w.cid).collect::<Vec<_>>();
        let rank = |w: &Want| w.kind != WantType::Have;
        let first = l.take(rank, 1, 16);
        assert_eq!(cids(first), [1, 3, 0, 2].map(|i| want(i, WantType::Block).1.cid));
        // What a turn could not finish goes back to the front.
        l.push_front(vec![want(2, WantType::Block)]);
        assert_eq!(cids(l.take(rank, 16, 16)), [2, 4].map(|i| want(i, WantType::Block).1.cid));
        assert!(l.is_empty());
    }

    /// Every entry of a peer's message costs a lookup, not a scan of the ledger: a million
    /// wants into a full ledger of 1024 take well under a second (a scan per entry, as
    /// before, took about a billion comparisons).
    #[test]
    fn a_flood_of_entries_costs_constant_time_each() {
        let mut l = Ledger::default();
        for i in 0..1024 {
            let (k, w) = want(i, WantType::Block);
            l.push(k, w, true);
        }
        let flood: Vec<(Vec<u8>, Want)> = (0..1u32 << 20).map(|i| want(i % 4096, WantType::Have)).collect();
        let started = std::time::Instant::now();
        let mut taken = 0;
        for (k, w) in flood {
            let room = l.len() < 1024;
            taken += usize::from(l.push(k, w, room));
        }
        let took = started.elapsed();
        assert_eq!(l.len(), 1024);
        assert_eq!(taken, 1 << 18, "only replacements of the 1024 held");
        assert!(took < std::time::Duration::from_secs(5), "a million entries took {took:?}");
    }
}
