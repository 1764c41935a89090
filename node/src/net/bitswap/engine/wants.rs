//! Fetching: what this node wants, which peers are told and asked, and what happens when
//! they answer, deliver, stall or go.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::BuildHasher as _;
use std::time::Instant;

use cairn_merkle::{Block, Cid};
use libp2p::PeerId;

use super::config::*;
use super::{key, want_have, Engine, FetchError, Outbox, Peer, Waiter, Wanted};
use crate::net::bitswap::proto::{Message, Want, WantType};
use crate::store::StoreError;

impl Wanted {
    /// The order in which waiting wants take the room peers have: higher priority first;
    /// among blocks no reader waits for yet (read-ahead, bulk), the fewest holders first
    /// (rarest first). Then
    /// readers' blocks go oldest first, and the others in an order of this node's own
    /// (`shuffle`, the key hashed with a per-engine random seed): readers of one file who all
    /// asked in file order would otherwise all ask for the same blocks first, the seed would
    /// send each of them to everyone, and the swarm would move in step instead of trading.
    fn order(&self, shuffle: u64) -> (std::cmp::Reverse<i32>, usize, u64) {
        let (holders, then) =
            if self.priority >= PRIORITY_READER { (0, self.seq) } else { (self.candidates.len(), shuffle) };
        (std::cmp::Reverse(self.priority), holders, then)
    }

    /// Whether every peer told about the want has answered it (HAVE, DONT_HAVE or gone).
    pub(super) fn answered(&self) -> bool {
        self.candidates.len() + self.exhausted.len() >= self.told.len()
    }

    /// Whether it is time to choose a peer: every peer answered, or [`HAVE_WAIT`] passed.
    pub(super) fn ready(&self, now: Instant) -> bool {
        self.answered() || now.saturating_duration_since(self.last_broadcast) >= HAVE_WAIT
    }
}

impl Peer {
    /// Want-blocks this peer may have in flight: about [`QUEUE_TIME`] of its delivery rate.
    fn window(&self) -> usize {
        if self.rate <= 0.0 || self.block_size <= 0.0 {
            return INITIAL_WINDOW;
        }
        ((self.rate * QUEUE_TIME.as_secs_f64() / self.block_size).ceil() as usize).clamp(MIN_WINDOW, PEER_WINDOW)
    }

    /// Whether one more want-block may go to this peer: while fewer than its window are in
    /// flight, or one more for a block a reader waits on (`urgent`). Read-ahead fills every
    /// window it can, and a player's next block must not wait behind it for a slot, at a
    /// slow peer, while faster ones that said HAVE are full of blocks needed later.
    fn has_room(&self, urgent: bool) -> bool {
        self.in_flight < self.window() + usize::from(urgent)
    }

    /// One more want-block in flight.
    fn ask(&mut self, now: Instant) {
        if self.in_flight == 0 {
            self.busy_since = Some(now);
        }
        self.in_flight += 1;
    }

    /// A wanted block of `len` bytes came from this peer.
    fn delivered(&mut self, len: usize, now: Instant) {
        let since = match (self.last_block, self.busy_since) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        if let Some(since) = since {
            let dt = now.saturating_duration_since(since).as_secs_f64().max(1e-4);
            let rate = len as f64 / dt;
            self.rate = if self.rate <= 0.0 { rate } else { 0.8 * self.rate + 0.2 * rate };
        }
        self.block_size = if self.block_size <= 0.0 { len as f64 } else { 0.8 * self.block_size + 0.2 * len as f64 };
        self.last_block = Some(now);
    }
}

impl Engine {
    /// Whether `cid` is still wanted with no peer known to have it: time to look for
    /// providers elsewhere (the DHT).
    pub fn needs_providers(&self, cid: &Cid) -> bool {
        self.wants.get(&key(cid)).is_some_and(|w| !w.arrived && w.asked.is_none() && w.candidates.is_empty())
    }

    /// What the peers said about `cid`: `Some(true)` when one has it (it said HAVE, even if it
    /// has been slow to send it since, was asked for the block, or the block came), or when it
    /// is not wanted; `Some(false)` when every peer told answered without having it, or no
    /// peer was told; `None` while answers are due.
    pub fn peers_answer(&self, cid: &Cid) -> Option<bool> {
        let Some(w) = self.wants.get(&key(cid)) else { return Some(true) };
        if w.arrived || w.held || w.asked.is_some() || !w.candidates.is_empty() {
            Some(true)
        } else if w.answered() && self.told_all(w) {
            Some(false)
        } else {
            None
        }
    }

    /// Whether every connected peer has been told of the want for `cid` (or it is not
    /// wanted): with more than [`FIRST_TOLD`] peers, a want is told to the rest only once the
    /// first ones lack the block ([`Engine::widen`]).
    pub fn told_everyone(&self, cid: &Cid) -> bool {
        self.wants.get(&key(cid)).is_none_or(|w| self.told_all(w))
    }

    /// Whether `w` has been told to every connected peer (`told` holds connected peers only:
    /// [`Engine::disconnected`] takes a peer out).
    fn told_all(&self, w: &Wanted) -> bool {
        w.told.len() >= self.peers.len()
    }

    /// A reader wants `cid`; `waiter` gets the bytes (once stored) or an error at `deadline`.
    pub fn fetch(
        &mut self,
        cid: Cid,
        priority: i32,
        waiter: Waiter,
        deadline: Instant,
        now: Instant,
        out: &mut dyn Outbox,
    ) {
        let k = key(&cid);
        if let Some(w) = self.wants.get_mut(&k) {
            w.waiters.push((waiter, deadline));
            w.priority = w.priority.max(priority);
            return;
        }
        let told = self.first_told(&k, now);
        // With a single peer there is nothing to choose: if it recently delivered blocks
        // (likely of the same DAG) it is asked for the block straight away, saving a round trip.
        // With more peers, want-have to all first: choosing among those that have the block is
        // what spreads a swarm's load (asking the last provider directly would send everyone
        // to the seed for good).
        let open = self.may_download();
        let direct = match (told.len(), told.iter().next()) {
            _ if !open => None,
            (1, Some(p)) => self
                .peers
                .get(p)
                .filter(|s| {
                    s.in_flight < s.window() && s.last_block.is_some_and(|t| now.saturating_duration_since(t) < RECENT)
                })
                .map(|_| *p),
            _ => None,
        };
        for p in &told {
            let want = match direct {
                Some(d) if d == *p => Want { cid, priority, kind: WantType::Block, send_dont_have: true },
                _ => want_have(cid, priority),
            };
            out.send(*p, Message { wants: vec![want], ..Message::default() });
        }
        if let Some(d) = direct {
            self.asked(&d, now);
            self.stats.asks_direct += 1;
        }
        self.next_seq += 1;
        self.wants.insert(
            k,
            Wanted {
                cid,
                priority,
                seq: self.next_seq,
                waiters: vec![(waiter, deadline)],
                candidates: VecDeque::new(),
                asked: direct.map(|d| (d, now)),
                told,
                exhausted: HashSet::new(),
                last_broadcast: now,
                arrived: false,
                held: direct.is_some(),
            },
        );
    }

    /// The peers a new want's want-have goes to first: every peer, when there are at most
    /// [`FIRST_TOLD`]; else those that delivered a block most lately (up to half), and the
    /// rest drawn at random for each block. The others are told only when none of these
    /// has the block ([`Engine::widen`]). In a crowd of fifty, telling everyone of every
    /// block, and hearing each one's answer, cancel and HAVE, cost more of the cores than
    /// the blocks did.
    fn first_told(&self, k: &[u8], now: Instant) -> HashSet<PeerId> {
        if self.peers.len() <= FIRST_TOLD {
            return self.peers.keys().copied().collect();
        }
        let mut recent: Vec<(Instant, PeerId)> = self
            .peers
            .iter()
            .filter_map(|(p, s)| s.last_block.filter(|t| now.saturating_duration_since(*t) < RECENT).map(|t| (t, *p)))
            .collect();
        recent.sort_unstable_by_key(|r| std::cmp::Reverse(r.0));
        let mut told: HashSet<PeerId> = recent.into_iter().take(FIRST_TOLD / 2).map(|(_, p)| p).collect();
        let mut others: Vec<(u64, PeerId)> =
            self.peers.keys().filter(|p| !told.contains(*p)).map(|p| (self.shuffle.hash_one((k, p)), *p)).collect();
        others.sort_unstable();
        let room = FIRST_TOLD - told.len();
        told.extend(others.into_iter().take(room).map(|(_, p)| p));
        told
    }

    /// Tells the peers not yet told of the want under `k`, when none of those told has the
    /// block: all answered DONT_HAVE, or [`HAVE_WAIT`] passed without a HAVE. Returns whether
    /// it did.
    fn widen(&mut self, k: &[u8], now: Instant, out: &mut dyn Outbox) -> bool {
        let Some(w) = self.wants.get_mut(k) else { return false };
        let stuck = w.asked.is_none() && w.candidates.is_empty() && !w.arrived && !w.held;
        if !stuck || !(w.answered() || now.saturating_duration_since(w.last_broadcast) >= HAVE_WAIT) {
            return false;
        }
        let rest: Vec<PeerId> = self.peers.keys().filter(|p| !w.told.contains(*p)).copied().collect();
        if rest.is_empty() {
            return false;
        }
        let msg = Message { wants: vec![want_have(w.cid, w.priority)], ..Message::default() };
        for p in rest {
            w.told.insert(p);
            out.send(p, msg.clone());
        }
        w.last_broadcast = now;
        self.stats.wants_widened += 1;
        true
    }

    /// Takes the want-block under `k` back from `slow`, a backlogged peer: cancelled there,
    /// and its room freed, for the want to move to another peer.
    fn take_back(&mut self, k: &[u8], slow: PeerId, out: &mut dyn Outbox) {
        let Some(w) = self.wants.get_mut(k) else { return };
        w.asked = None;
        out.send(slow, Message { cancels: vec![w.cid], ..Message::default() });
        self.stats.wants_moved += 1;
        self.release(&slow);
    }

    /// Sends want-block for `k` to the candidate with the fewest blocks in flight.
    pub(super) fn ask_next(&mut self, k: &[u8], out: &mut dyn Outbox) {
        if !self.may_download() {
            return;
        }
        let Some(w) = self.wants.get_mut(k) else { return };
        if w.asked.is_some() || w.arrived {
            return;
        }
        let urgent = w.priority >= PRIORITY_READER;
        // Peers less than half loaded first; among them the peer holding least, so that seeds
        // (which hold everything and which everyone asks) are spared for what only they have;
        // then the least loaded.
        let best = w
            .candidates
            .iter()
            .enumerate()
            .filter_map(|(i, p)| {
                self.peers.get(p).filter(|s| s.has_room(urgent)).map(|s| (s.in_flight, s.window(), s.held, i))
            })
            .min_by_key(|(load, window, held, i)| (*load >= window / 2, *held, *load, *i));
        let Some((_, _, _, i)) = best else { return };
        if w.candidates.len() > 1 {
            self.stats.asks_with_choice += 1;
        } else {
            self.stats.asks_single_source += 1;
        }
        let peer = w.candidates.remove(i).expect("index from the list");
        let want = Want { cid: w.cid, priority: w.priority, kind: WantType::Block, send_dont_have: true };
        if out.send(peer, Message { wants: vec![want], ..Message::default() }) {
            let now = Instant::now();
            w.asked = Some((peer, now));
            w.told.insert(peer);
            self.asked(&peer, now);
        }
    }

    /// Whether a block asked of `peer` at `at` is stuck in a queue: the peer holds more
    /// want-blocks than its window, or the block has waited longer than twice the peer's
    /// queue would take to drain. A block a reader waits on (`urgent`) is stuck sooner: once
    /// it has waited [`URGENT_WAIT`] and three times what one block takes from the peer (a
    /// peer that has sent nothing yet has no rate, and this wait alone counts).
    fn backlogged(&self, peer: &PeerId, at: Instant, now: Instant, urgent: bool) -> bool {
        let Some(s) = self.peers.get(peer) else { return false };
        // One past the window is a reader's block ([`Peer::has_room`]), not a backlog.
        if s.in_flight > s.window() + 1 {
            return true;
        }
        let waited = now.saturating_duration_since(at).as_secs_f64();
        if urgent {
            let one = if s.rate > 0.0 { s.block_size / s.rate } else { 0.0 };
            return waited > (3.0 * one).max(URGENT_WAIT.as_secs_f64());
        }
        s.rate > 0.0 && {
            let drain = s.in_flight as f64 * s.block_size / s.rate;
            waited > (2.0 * drain).max(QUEUE_TIME.as_secs_f64())
        }
    }

    /// A want-block went to `peer`: one more in flight there, and a block's worth of the
    /// download cap reserved until [`Engine::release`].
    fn asked(&mut self, peer: &PeerId, now: Instant) {
        if let Some(s) = self.peers.get_mut(peer) {
            s.ask(now);
        }
        if let Some(bucket) = &mut self.download {
            bucket.take(DOWNLOAD_RESERVE, now);
        }
    }

    /// A want-block asked of `peer` ended (the block came, or the want moved on): one fewer
    /// in flight, and its download reservation returned (a block that came is charged at
    /// its real size).
    pub(super) fn release(&mut self, peer: &PeerId) {
        if let Some(s) = self.peers.get_mut(peer) {
            s.in_flight = s.in_flight.saturating_sub(1);
        }
        if let Some(bucket) = &mut self.download {
            bucket.give(DOWNLOAD_RESERVE, Instant::now());
        }
    }

    /// The fetching side of a message from `peer`: blocks first, then presences. Returns the
    /// received blocks that are wanted.
    pub(super) fn take_answers(&mut self, peer: PeerId, m: Message, now: Instant, out: &mut dyn Outbox) -> Vec<Block> {
        let mut wanted = Vec::new();
        for b in m.blocks {
            let k = key(b.cid());
            match self.wants.get_mut(&k) {
                Some(w) if !w.arrived => {
                    w.arrived = true;
                    if let Some(s) = self.peers.get_mut(&peer) {
                        s.delivered(b.data().len(), now);
                    }
                    if let Some((p, _)) = w.asked.take() {
                        self.release(&p);
                    }
                    self.stats.blocks_received += 1;
                    self.stats.bytes_received += b.data().len() as u64;
                    if let Some(bucket) = &mut self.download {
                        bucket.take(b.data().len() as u64, now);
                    }
                    wanted.push(b);
                }
                // A second copy of a block on its way to the store: wasted, not wrong.
                Some(_) => self.stats.duplicate_blocks += 1,
                // A copy of a block wanted lately, arriving after the want ended.
                None if self.recent_set.contains(&k) => self.stats.duplicate_blocks += 1,
                None => {
                    self.stats.forged_blocks += 1;
                    self.penalize(peer, PENALTY_FORGED, now);
                }
            }
        }
        let mut dedup = HashSet::new();
        wanted.retain(|b| dedup.insert(key(b.cid())));
        // Blocks that came freed room in their senders' windows: wants that have no other
        // peer to wait for take it now rather than at the next tick.
        if !wanted.is_empty() {
            self.fill(now, out);
        }
        if let Some(s) = self.peers.get_mut(&peer) {
            s.held += m.haves.len() as u64;
            s.last_heard = Some(now);
        }
        for c in m.haves {
            let k = key(&c);
            // The block is queued at a backlogged peer: this one has room and takes it over.
            let urgent = self.wants.get(&k).is_some_and(|w| w.priority >= PRIORITY_READER);
            let backlogged = self.wants.get(&k).and_then(|w| w.asked.filter(|_| !w.arrived)).filter(|(p, at)| {
                *p != peer
                    && self.backlogged(p, *at, now, urgent)
                    && self.peers.get(&peer).is_some_and(|s| s.has_room(urgent))
            });
            if let Some((slow, _)) = backlogged {
                self.take_back(&k, slow, out);
            }
            if let Some(w) = self.wants.get_mut(&k) {
                w.held = true;
                if !w.candidates.contains(&peer) && w.asked.is_none_or(|(p, _)| p != peer) && !dedup.contains(&k) {
                    w.candidates.push_back(peer);
                }
                if w.ready(now) {
                    self.ask_next(&k, out);
                }
            }
            // The backlogged peer stays a candidate, after the choice: it was just freed of
            // this block, and would otherwise look the least loaded.
            if let (Some((slow, _)), Some(w)) = (backlogged, self.wants.get_mut(&k)) {
                w.candidates.push_back(slow);
            }
        }
        for c in m.dont_haves {
            let k = key(&c);
            let mut retry = false;
            if let Some(w) = self.wants.get_mut(&k) {
                w.candidates.retain(|p| *p != peer);
                w.exhausted.insert(peer);
                if w.asked.is_some_and(|(p, _)| p == peer) {
                    w.asked = None;
                    retry = true;
                }
            }
            if retry {
                self.release(&peer);
            }
            // The last answer may complete the picture: choose now, or tell the others.
            if self.wants.get(&k).is_some_and(|w| w.asked.is_none() && w.answered()) && !self.widen(&k, now, out) {
                self.ask_next(&k, out);
            }
        }
        wanted
    }

    /// Blocks received for wants were stored (or failed to be): waiters get them, the other
    /// peers get cancels, and peers whose ledgers want them are queued to be served.
    pub fn stored(&mut self, blocks: &[Block], result: Result<(), &StoreError>, out: &mut dyn Outbox) {
        let mut cancels: HashMap<PeerId, Vec<Cid>> = HashMap::new();
        for b in blocks {
            let k = key(b.cid());
            let Some(w) = self.wants.remove(&k) else { continue };
            self.remember(k);
            for p in &w.told {
                cancels.entry(*p).or_default().push(w.cid);
            }
            for (tx, _) in w.waiters {
                let _ = tx.send(match &result {
                    Ok(()) => Ok(b.data().clone()),
                    Err(e) => Err(FetchError::Store(w.cid, e.to_string())),
                });
            }
        }
        for (p, cids) in cancels {
            out.send(p, Message { cancels: cids, ..Message::default() });
        }
        if result.is_ok() {
            self.new_blocks(blocks);
        }
    }

    /// Keeps the key of a want that ended.
    fn remember(&mut self, k: Vec<u8>) {
        if self.recent_set.insert(k.clone()) {
            self.recent.push_back(k);
            if self.recent.len() > RECENT_WANTS {
                if let Some(old) = self.recent.pop_front() {
                    self.recent_set.remove(&old);
                }
            }
        }
    }

    /// Timeouts and rebroadcasts; call about once a second.
    pub fn tick(&mut self, now: Instant, out: &mut dyn Outbox) {
        self.expire(now);
        let keys: Vec<Vec<u8>> = self.wants.keys().cloned().collect();
        // Wants that may be asked now; asked below in [`Wanted::order`], so that when peers'
        // windows have room for only some, the most urgent and the rarest go first.
        let mut ready = Vec::new();
        for k in keys {
            let w = self.wants.get_mut(&k).expect("key just listed");
            if w.arrived {
                continue;
            }
            // Readers that gave up.
            w.waiters.retain(|(tx, _)| !tx.is_closed());
            if w.waiters.is_empty() {
                let w = self.wants.remove(&k).expect("present");
                self.remember(k);
                if let Some((p, _)) = w.asked {
                    self.release(&p);
                }
                for p in w.told {
                    out.send(p, Message { cancels: vec![w.cid], ..Message::default() });
                }
                continue;
            }
            if let Some((p, at)) = w.asked {
                let heard = self.peers.get(&p).and_then(|s| s.last_heard).unwrap_or(at).max(at);
                if now.saturating_duration_since(heard) > BLOCK_TIMEOUT {
                    w.asked = None;
                    w.exhausted.insert(p);
                    self.release(&p);
                    self.ask_next(&k, out);
                    continue;
                }
                // A block a reader waits on, stuck at a backlogged peer while another that said
                // HAVE has room: it moves now, not at the timeout (a player would rebuffer).
                let room = w.priority >= PRIORITY_READER
                    && w.candidates.iter().any(|c| self.peers.get(c).is_some_and(|s| s.has_room(true)));
                if room && self.backlogged(&p, at, now, true) {
                    self.take_back(&k, p, out);
                    self.ask_next(&k, out);
                    if let Some(w) = self.wants.get_mut(&k) {
                        w.candidates.push_back(p);
                    }
                    continue;
                }
            }
            let w = self.wants.get_mut(&k).expect("present");
            if w.asked.is_none()
                && w.candidates.is_empty()
                && now.saturating_duration_since(w.last_broadcast) > REBROADCAST
            {
                w.last_broadcast = now;
                w.exhausted.clear();
                let msg = Message { wants: vec![want_have(w.cid, w.priority)], ..Message::default() };
                for p in self.peers.keys() {
                    w.told.insert(*p);
                    out.send(*p, msg.clone());
                }
            } else if w.asked.is_none()
                && now.saturating_duration_since(w.last_broadcast) >= HAVE_WAIT
                && !self.widen(&k, now, out)
            {
                ready.push(k);
            }
        }
        self.ask_in_order(ready, out);
    }

    /// Asks for the wants under `keys` in [`Wanted::order`], as far as peers' windows allow.
    fn ask_in_order(&mut self, keys: Vec<Vec<u8>>, out: &mut dyn Outbox) {
        let mut keyed: Vec<_> =
            keys.into_iter().filter_map(|k| Some((self.wants.get(&k)?.order(self.shuffle.hash_one(&k)), k))).collect();
        keyed.sort_unstable();
        for (_, k) in keyed {
            self.ask_next(&k, out);
        }
    }

    /// Asks for the wants that are ready (every peer told has answered, or [`HAVE_WAIT`]
    /// passed), that some peer has, and that were told to one peer only, in
    /// [`Wanted::order`], as far as that peer's window allows.
    ///
    /// With one peer there is no choice to wait for, so its freed room is used at once. With
    /// more, a want waits for the tick as before: meanwhile other peers may get the block and
    /// say HAVE, and a swarm's seed, which every reader would otherwise ask, is spared. (One
    /// run each of ten readers behind 20 Mbit/s uplinks could not tell the two apart: 48 s
    /// filling every slot, 58 s with this rule, 49 s before either.)
    fn fill(&mut self, now: Instant, out: &mut dyn Outbox) {
        let ready: Vec<Vec<u8>> = self
            .wants
            .iter()
            .filter(|(_, w)| {
                !w.arrived && w.asked.is_none() && w.told.len() <= 1 && !w.candidates.is_empty() && w.ready(now)
            })
            .map(|(k, _)| k.clone())
            .collect();
        self.ask_in_order(ready, out);
    }

    /// Fails every waiter whose deadline passed; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let mut n = 0;
        for w in self.wants.values_mut() {
            let (gone, keep): (Vec<_>, Vec<_>) = w.waiters.drain(..).partition(|(_, d)| *d <= now);
            w.waiters = keep;
            for (tx, _) in gone {
                n += 1;
                let _ = tx.send(Err(FetchError::Timeout(w.cid)));
            }
        }
        n
    }

    /// Fails every waiter (shutdown).
    pub fn shutdown(&mut self) {
        for (_, w) in self.wants.drain() {
            for (tx, _) in w.waiters {
                let _ = tx.send(Err(FetchError::Shutdown));
            }
        }
    }
}
