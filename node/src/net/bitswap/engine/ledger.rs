//! Serving: each peer's ledger, the wants it sent this node that are waiting for a serving
//! turn ([`Ledger`]), and the turns between peers ([`Engine::next_serve_job`]).
//!
//! Every operation a peer's message causes is O(1) per entry: a want is found by its block's
//! multihash, so a new want, a replaced one and a cancel each cost a hash-map lookup, however
//! full the ledger is. Only a serving turn looks at the whole ledger, to pick the most pressing
//! wants, and a turn is started by this node, not by the peer.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use cairn_merkle::Block;
use libp2p::PeerId;

use super::config::{MAX_COPIES, MAX_LEDGER, PENALTY_FLOOD, PRIORITY_READER, SERVE_BATCH, SERVE_STARVE};
use super::{key, Engine, ServeJob};
use crate::net::bitswap::proto::{Message, Want, WantType};

/// How pressing a peer's want is to serve, least first: want-blocks after want-haves, then
/// the copies of the block sent lately, then the asker's priority, highest first.
type ServeRank = (bool, u32, std::cmp::Reverse<i32>);

/// One peer's wants waiting for a serving turn, in line.
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

impl Engine {
    /// The serving side of a message from `peer`: its wants and cancels go into its ledger,
    /// and the peer joins the line for a serving turn. A ledger that overflows costs the peer
    /// [`PENALTY_FLOOD`].
    pub(super) fn take_wants(&mut self, peer: PeerId, m: &mut Message, now: Instant) {
        let mut overflow = false;
        if !m.wants.is_empty() || !m.cancels.is_empty() || m.full {
            let state = self.peers.entry(peer).or_default();
            if m.full {
                state.ledger.clear();
                state.missing.clear();
            }
            for c in &m.cancels {
                let k = key(c);
                state.ledger.remove(&k);
                state.missing.remove(&k);
            }
            for w in std::mem::take(&mut m.wants) {
                if w.cid.hash().code() == cairn_merkle::hash::IDENTITY {
                    continue;
                }
                let room = state.ledger.len() + state.missing.len() < MAX_LEDGER;
                if !state.ledger.push(key(&w.cid), w, room) {
                    overflow = true;
                }
            }
            if !state.ledger.is_empty() && !state.queued {
                state.queued = true;
                state.queued_at = Some(now);
                self.serve_turns.push_back(peer);
            }
        }
        if overflow {
            self.penalize(peer, PENALTY_FLOOD, now);
        }
    }

    /// Blocks became available locally: peers that wanted them are served again.
    pub(super) fn new_blocks(&mut self, blocks: &[Block]) {
        let keys: HashSet<Vec<u8>> = blocks.iter().map(|b| key(b.cid())).collect();
        for (peer, state) in &mut self.peers {
            let hits: Vec<Vec<u8>> = keys.iter().filter(|k| state.missing.contains_key(*k)).cloned().collect();
            if !hits.is_empty() {
                for k in hits {
                    let want = state.missing.remove(&k).expect("listed");
                    let room = state.ledger.len() < MAX_LEDGER;
                    state.ledger.push(k, want, room);
                }
                if !state.queued {
                    state.queued = true;
                    state.queued_at = Some(Instant::now());
                    self.serve_turns.push_back(*peer);
                }
            }
        }
    }

    /// The next serving turn, if any peer has wants. It takes at most `max_blocks`
    /// want-blocks, the room the upload has now (presence questions are always answered),
    /// and goes to the peer whose most pressing want is cheapest and least served:
    /// want-haves first, then the blocks this node has sent the fewest copies of (one fewer
    /// for a block the asker waits on), then by the asker's priority; among equals, the peer
    /// whose turn it is. A seed that everyone
    /// asks thus sends each block once before any twice, and the askers trade the copies
    /// among themselves. A peer waiting longer than [`SERVE_STARVE`] goes first.
    pub fn next_serve_job(
        &mut self,
        busy: &dyn Fn(&PeerId) -> bool,
        max_blocks: usize,
        now: Instant,
    ) -> Option<ServeJob> {
        let copies = &self.copies;
        let rank = |w: &Want| -> ServeRank {
            let sent = copies.get(w.cid.hash().digest()).copied().unwrap_or(0);
            // A block its asker is waiting on (a player that cannot start without it) counts
            // one copy fewer: its second copy goes out with the first copies of the rest.
            let waiting = u32::from(w.priority >= PRIORITY_READER);
            (w.kind != WantType::Have, sent.saturating_sub(waiting), std::cmp::Reverse(w.priority))
        };
        let mut best: Option<(usize, (bool, ServeRank))> = None;
        for (i, peer) in self.serve_turns.iter().enumerate() {
            if busy(peer) {
                continue;
            }
            let Some(state) = self.peers.get(peer) else { continue };
            let starved = state.queued_at.is_some_and(|t| now.saturating_duration_since(t) >= SERVE_STARVE);
            let top = state.ledger.iter().filter(|w| max_blocks > 0 || w.kind == WantType::Have).map(rank).min();
            let Some(top) = top else { continue };
            let candidate = (!starved, top);
            if best.as_ref().is_none_or(|(_, b)| candidate < *b) {
                best = Some((i, candidate));
            }
        }
        let (i, _) = best?;
        let peer = self.serve_turns.remove(i).expect("index from the line");
        let state = self.peers.get_mut(&peer).expect("chosen among known peers");
        let wants = state.ledger.take(rank, max_blocks, SERVE_BATCH);
        state.queued = false;
        state.queued_at = None;
        for w in wants.iter().filter(|w| w.kind == WantType::Block) {
            if self.copies.len() >= MAX_COPIES {
                self.copies.clear();
            }
            *self.copies.entry(w.cid.hash().digest().to_vec()).or_default() += 1;
        }
        Some(ServeJob { peer, wants })
    }

    /// A serving turn finished: `missing` are the wants Cairn could not answer, kept to be
    /// answered (HAVE or the block, as asked) when the block arrives; `deferred` are wants for
    /// blocks Cairn has but did not send, the turn being cut short by an upload cap or budget,
    /// and they go back to the front of the peer's ledger. The peer gets another turn at the
    /// back of the line if it has more wants.
    pub fn served(&mut self, peer: PeerId, missing: Vec<Want>, deferred: Vec<Want>, blocks_sent: u64, bytes_sent: u64) {
        self.stats.blocks_sent += blocks_sent;
        self.stats.bytes_sent += bytes_sent;
        for w in missing.iter().chain(&deferred).filter(|w| w.kind == WantType::Block) {
            if let Some(n) = self.copies.get_mut(w.cid.hash().digest()) {
                *n = n.saturating_sub(1);
            }
        }
        let Some(state) = self.peers.get_mut(&peer) else { return };
        state.ledger.push_front(deferred.into_iter().map(|w| (key(&w.cid), w)).collect());
        for w in missing {
            if state.missing.len() < MAX_LEDGER {
                state.missing.insert(key(&w.cid), w);
            }
        }
        if !state.ledger.is_empty() && !state.queued {
            state.queued = true;
            state.queued_at = Some(Instant::now());
            self.serve_turns.push_back(peer);
        }
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
