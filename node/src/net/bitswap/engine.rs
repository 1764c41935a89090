//! The Bitswap engine: what Cairn wants from peers and what peers want from Cairn.
//!
//! Over 700 lines until issue 28 splits it into `wants`, `ledger` (begun: `bitswap/ledger.rs`
//! holds one peer's wants), `score` and `config` behind a thin `Engine`, with the tests in
//! their own file.
//!
//! It holds no I/O. The network driver feeds it events (connections, messages, ticks, store
//! results) and carries out what it asks through an [`Outbox`] and the jobs it hands out.
//!
//! **Fetching.** A block wanted by a reader is asked of every connected peer with want-have
//! (and DONT_HAVE requested). Each peer that answers HAVE becomes a candidate; want-block goes
//! to the candidate with the fewest blocks in flight, up to [`PEER_WINDOW`] per peer, so load
//! spreads over the peers that have the data. A DONT_HAVE, a disconnect, or no block within
//! [`BLOCK_TIMEOUT`] moves the want to the next candidate. Received blocks were already hashed
//! by the decoder. A copy of a block wanted now or lately is a duplicate; a block no want
//! asked for is a forgery (or rot) and costs its sender heavily. Once stored, a block is
//! handed to its waiters and cancelled at every peer that was asked.
//!
//! **Serving.** Each peer's wants are kept in a ledger (at most [`MAX_LEDGER`] entries; a full
//! wantlist replaces it, cancels remove entries). Peers with wants take turns: each turn looks
//! up at most [`SERVE_BATCH`] wants of one peer, so one greedy peer cannot starve the others,
//! and at most as many want-blocks as the driver has upload room for. The turn goes to the
//! peer whose most pressing want is for the block sent fewest times lately
//! ([`Engine::next_serve_job`]), so a seed that a crowd asks for the same blocks sends each
//! once before any twice. Wants for blocks Cairn lacks stay in the ledger and are served when
//! the block arrives.
//!
//! **Scores.** Misbehaviour adds to a peer's score, which halves every [`SCORE_HALF_LIFE`]. A
//! peer over [`BAN_SCORE`] is disconnected and refused until its score decays.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::BuildHasher as _;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn_merkle::{Block, Cid};
use libp2p::PeerId;

use super::ledger::Ledger;
use super::proto::{Message, Want, WantType};

/// The most want-blocks in flight to one peer at once.
pub const PEER_WINDOW: usize = 32;
/// Want-blocks in flight to a peer whose delivery rate is not known yet.
pub const INITIAL_WINDOW: usize = 8;
/// Bytes of the download cap taken when a block is asked for (settled when it comes), so
/// that many want-blocks sent at once cannot pass the cap.
pub const DOWNLOAD_RESERVE: u64 = 256 * 1024;
/// The fewest want-blocks a peer may have in flight.
pub const MIN_WINDOW: usize = 2;
/// A peer gets about this much of its measured delivery rate in flight: enough to keep a fast
/// peer busy, while a slow or crowded one (a seed everyone asks) is not handed wants it would
/// queue for long, which then wait here for whichever peer has room first.
pub const QUEUE_TIME: Duration = Duration::from_secs(1);
/// Peers a new want is told to at first (see [`Engine::first_told`]). Fifty readers of a
/// 16 MiB file behind 20 Mbit/s uplinks, three runs each: 18.3 to 18.6 s with 20; 20.9 to
/// 22.8 s telling every peer; 20.5 to 25.6 s with 12, where half the wants had to be told to
/// everyone after all.
pub const FIRST_TOLD: usize = 20;

/// How long a block a reader waits on stays with a peer that has not sent it before it moves
/// to another that said HAVE and has room (see [`Engine::backlogged`]).
pub const URGENT_WAIT: Duration = Duration::from_millis(300);
/// How long a peer asked for a block may stay silent (send nothing at all) before the want
/// moves on; a peer that is busy sending other blocks is given more time.
pub const BLOCK_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a new want waits for HAVE answers before choosing among those that came; it
/// chooses at once when every peer asked has answered (HAVE or DONT_HAVE), which responsive
/// peers do within milliseconds. Waiting for the slow ones matters in a swarm: busy peers
/// answer late, and choosing on the first answer (most often the seed's) sends everyone to the
/// seed.
pub const HAVE_WAIT: Duration = Duration::from_millis(400);
/// A peer that delivered a block this recently is asked for new blocks directly.
pub const RECENT: Duration = Duration::from_secs(10);
/// How often wants nobody has answered are asked again of every peer.
pub const REBROADCAST: Duration = Duration::from_secs(10);
/// Entries kept per peer ledger; more are ignored (as Kubo does).
pub const MAX_LEDGER: usize = 1024;
/// Wants looked up per serving turn.
pub const SERVE_BATCH: usize = 16;
/// Blocks whose sent copies are counted before the count starts over.
pub const MAX_COPIES: usize = 64 * 1024;
/// How long a peer may wait for a serving turn while others with less-served wants go first.
pub const SERVE_STARVE: Duration = Duration::from_secs(10);
/// Priority of a block a reader is waiting for: asked before any other, oldest first.
pub const PRIORITY_READER: i32 = 3;
/// Priority of a block a reader will want soon (read-ahead, a DAG fetched in file order):
/// after the blocks readers wait for, rarest first ([`Wanted::order`]).
pub const PRIORITY_AHEAD: i32 = 2;
/// Priority of a block fetched with no reader waiting (a pin, a spread DAG fetch): last, and
/// rarest first, so that a block few peers hold is taken while they are still around, and
/// the ones many peers hold are left for later.
pub const PRIORITY_BULK: i32 = 1;
/// Score that gets a peer banned.
pub const BAN_SCORE: f64 = 100.0;
/// Score under which a banned peer is let back in: a ban that a score of exactly
/// [`BAN_SCORE`] earned lasts two half-lives, and each further offence makes it longer.
pub const UNBAN_SCORE: f64 = BAN_SCORE / 4.0;
/// Half-life of a peer's score, unless [`Engine::set_score_half_life`] says otherwise.
pub const SCORE_HALF_LIFE: Duration = Duration::from_secs(600);
/// Scores below this are forgotten.
pub const FORGET_SCORE: f64 = 1.0;
/// Most peers whose scores are kept; past it the lowest are forgotten (a peer that keeps
/// changing its identity gains nothing from it but a fresh score, and memory stays bounded).
pub const MAX_SCORES: usize = 16 * 1024;
/// How often scores are swept for ones that decayed away.
pub const SCORE_SWEEP: Duration = Duration::from_secs(10);
/// Score for a block that no want of this node's, now or lately, asked for: bytes that are
/// not the block asked for (a rotten disk, or a forgery). One gets a peer banned.
pub const PENALTY_FORGED: f64 = BAN_SCORE;
/// Wants fulfilled or dropped lately that are remembered, so that a copy arriving late is
/// told apart from a forgery.
pub const RECENT_WANTS: usize = 8192;
/// Score for a malformed message.
pub const PENALTY_MALFORMED: f64 = 25.0;
/// Score for a message whose wants overflow the peer's full ledger ([`MAX_LEDGER`]): no
/// honest peer wants that much of one node at once; a peer that keeps doing it is flooding.
pub const PENALTY_FLOOD: f64 = 5.0;

/// Where the engine sends messages.
pub trait Outbox {
    /// Queues `message` to `peer`; false if the peer is not connected.
    fn send(&mut self, peer: PeerId, message: Message) -> bool;
}

impl Outbox for super::Behaviour {
    fn send(&mut self, peer: PeerId, message: Message) -> bool {
        super::Behaviour::send(self, peer, message)
    }
}

/// Why a fetch failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// No peer delivered the block in time.
    #[error("block {0} not found on the network in time")]
    Timeout(Cid),
    /// The node is shutting down.
    #[error("the network is shutting down")]
    Shutdown,
    /// The block arrived but could not be stored.
    #[error("storing block {0}: {1}")]
    Store(Cid, String),
}

/// Receives a fetched block.
pub type Waiter = tokio::sync::oneshot::Sender<Result<Bytes, FetchError>>;

struct Wanted {
    cid: Cid,
    priority: i32,
    /// When it was first wanted, in the order of wants.
    seq: u64,
    waiters: Vec<(Waiter, Instant)>,
    /// Peers that said HAVE and were not yet asked for the block.
    candidates: VecDeque<PeerId>,
    /// The peer asked for the block, and when.
    asked: Option<(PeerId, Instant)>,
    /// Peers told about the want (to be sent cancels).
    told: HashSet<PeerId>,
    /// Peers that do not have it (or failed to deliver).
    exhausted: HashSet<PeerId>,
    last_broadcast: Instant,
    /// The block came and is being stored: nobody else is asked for it.
    arrived: bool,
    /// Some peer said HAVE (or was asked for the block), even if it has failed since.
    held: bool,
}

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
    fn answered(&self) -> bool {
        self.candidates.len() + self.exhausted.len() >= self.told.len()
    }

    /// Whether it is time to choose a peer: every peer answered, or [`HAVE_WAIT`] passed.
    fn ready(&self, now: Instant) -> bool {
        self.answered() || now.saturating_duration_since(self.last_broadcast) >= HAVE_WAIT
    }
}

#[derive(Default)]
struct Peer {
    in_flight: usize,
    ledger: Ledger,
    queued: bool,
    /// When it joined the line of peers waiting for a serving turn.
    queued_at: Option<Instant>,
    /// Wants this peer sent that Cairn lacks, kept to answer when the block comes.
    missing: HashMap<Vec<u8>, Want>,
    /// When the peer last sent anything: a busy peer that keeps sending is not timed out.
    last_heard: Option<Instant>,
    /// When the peer last sent a wanted block.
    last_block: Option<Instant>,
    /// HAVEs (and blocks) this peer has sent: peers that hold much are likely seeds that
    /// everyone asks, so among equal choices the one holding least is asked first.
    held: u64,
    /// Block bytes per second this peer delivers while asked (moving average; 0: unknown).
    rate: f64,
    /// Mean size of the blocks it delivered (moving average).
    block_size: f64,
    /// When its in-flight count last rose from zero.
    busy_since: Option<Instant>,
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

/// How pressing a peer's want is to serve, least first: want-blocks after want-haves, then
/// the copies of the block sent lately, then the asker's priority, highest first.
type ServeRank = (bool, u32, std::cmp::Reverse<i32>);

struct Score {
    value: f64,
    at: Instant,
}

/// A serving turn: look these wants up and answer `peer`.
#[derive(Debug)]
pub struct ServeJob {
    /// Who asked.
    pub peer: PeerId,
    /// What it asked for.
    pub wants: Vec<Want>,
}

/// Counters for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Blocks received that Cairn wanted.
    pub blocks_received: u64,
    /// Bytes of those blocks.
    pub bytes_received: u64,
    /// Blocks received twice (a second copy, or one arriving after its want ended).
    pub duplicate_blocks: u64,
    /// Blocks no want asked for: not the bytes of any block this node wanted.
    pub forged_blocks: u64,
    /// Blocks sent to peers.
    pub blocks_sent: u64,
    /// Bytes of those blocks.
    pub bytes_sent: u64,
    /// Want-blocks sent when only one peer had said HAVE.
    pub asks_single_source: u64,
    /// Want-blocks taken from a backlogged peer (and cancelled there) for one with room.
    pub wants_moved: u64,
    /// Want-blocks sent with a choice of peers.
    pub asks_with_choice: u64,
    /// Want-blocks sent at once to a peer that recently delivered.
    pub asks_direct: u64,
    /// Wants told to the rest of the peers because none of those told first had the block.
    pub wants_widened: u64,
    /// Peers' wants held now, across every ledger (each peer holds at most [`MAX_LEDGER`]).
    pub ledger_wants: u64,
    /// Blocks this node wants now.
    pub wants: u64,
    /// Peers banned now.
    pub banned_peers: u64,
    /// Bytes of messages queued to send to peers now, over every connection (filled in by
    /// the network; each connection holds at most
    /// [`MAX_QUEUED_BLOCK_BYTES`](super::handler::MAX_QUEUED_BLOCK_BYTES) plus
    /// [`MAX_QUEUED_URGENT_BYTES`](super::handler::MAX_QUEUED_URGENT_BYTES)).
    pub queued_bytes: u64,
    /// Peers that delivered a wanted block in the last [`RECENT`].
    pub sending_peers: u64,
}

/// How fast scores decay.
#[derive(Debug, Clone, Copy)]
struct HalfLife(Duration);

impl Default for HalfLife {
    fn default() -> Self {
        HalfLife(SCORE_HALF_LIFE)
    }
}

/// See the module docs.
#[derive(Default)]
pub struct Engine {
    wants: HashMap<Vec<u8>, Wanted>,
    peers: HashMap<PeerId, Peer>,
    serve_turns: VecDeque<PeerId>,
    scores: HashMap<PeerId, Score>,
    /// Peers banned until their score decays under [`UNBAN_SCORE`].
    banned: HashSet<PeerId>,
    /// The next want's [`Wanted::seq`].
    next_seq: u64,
    half_life: HalfLife,
    last_score_sweep: Option<Instant>,
    stats: Stats,
    /// The download cap: want-blocks wait while it is spent.
    download: Option<crate::net::ratelimit::TokenBucket>,
    /// Keys of wants fulfilled or dropped lately, oldest first (at most [`RECENT_WANTS`]).
    recent: VecDeque<Vec<u8>>,
    recent_set: HashSet<Vec<u8>>,
    /// Copies of each block handed out to be sent lately, by multihash digest (forgotten all at
    /// once past [`MAX_COPIES`] blocks): serving turns go to the least-sent blocks first.
    copies: HashMap<Vec<u8>, u32>,
    /// Seeds [`Wanted::order`]'s shuffle.
    shuffle: std::collections::hash_map::RandomState,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("wants", &self.wants.len()).field("peers", &self.peers.len()).finish()
    }
}

fn key(cid: &Cid) -> Vec<u8> {
    cid.hash().to_bytes()
}

fn want_have(cid: Cid, priority: i32) -> Want {
    Want { cid, priority, kind: WantType::Have, send_dont_have: true }
}

impl Engine {
    /// Caps fetching at `rate` block bytes a second (None: no cap).
    pub fn set_download_limit(&mut self, rate: Option<u64>) {
        self.download = rate.map(|r| crate::net::ratelimit::TokenBucket::new(r.max(1), Instant::now()));
    }

    fn may_download(&mut self) -> bool {
        self.download.as_mut().is_none_or(|b| b.ready(Instant::now()))
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        self.stats_at(Instant::now())
    }

    /// [`Engine::stats`] as of `now`.
    pub fn stats_at(&self, now: Instant) -> Stats {
        let held = self.peers.values().map(|p| (p.ledger.len() + p.missing.len()) as u64).sum();
        let sending = self
            .peers
            .values()
            .filter(|p| p.last_block.is_some_and(|t| now.saturating_duration_since(t) < RECENT))
            .count();
        Stats {
            ledger_wants: held,
            wants: self.wants.len() as u64,
            banned_peers: self.banned.len() as u64,
            sending_peers: sending as u64,
            ..self.stats
        }
    }

    /// Blocks currently wanted.
    pub fn wanted(&self) -> usize {
        self.wants.len()
    }

    /// Scores halve every `half_life` (tests shorten it).
    pub fn set_score_half_life(&mut self, half_life: Duration) {
        self.half_life = HalfLife(half_life.max(Duration::from_millis(1)));
    }

    /// Whether `peer` is banned now: its score reached [`BAN_SCORE`] and has not yet decayed
    /// under [`UNBAN_SCORE`]. Only [`Engine::lifted_bans`] ends a ban, so that the driver,
    /// which blocked the peer, hears of every end and unblocks it.
    pub fn is_banned(&mut self, peer: &PeerId, now: Instant) -> bool {
        self.banned.contains(peer) && self.score(peer, now) >= UNBAN_SCORE
    }

    fn score(&mut self, peer: &PeerId, now: Instant) -> f64 {
        let half_life = self.half_life.0.as_secs_f64();
        let Some(s) = self.scores.get_mut(peer) else { return 0.0 };
        let halvings = now.saturating_duration_since(s.at).as_secs_f64() / half_life;
        s.value *= 0.5f64.powf(halvings);
        s.at = now;
        s.value
    }

    /// Adds `amount` to a peer's score; true when that gets the peer banned (it was not).
    pub fn penalize(&mut self, peer: PeerId, amount: f64, now: Instant) -> bool {
        let was_banned = self.is_banned(&peer, now);
        let before = self.score(&peer, now);
        let s = self.scores.entry(peer).or_insert(Score { value: 0.0, at: now });
        s.value = before + amount;
        if s.value >= BAN_SCORE {
            self.banned.insert(peer);
        }
        !was_banned && self.banned.contains(&peer)
    }

    /// The peers whose bans end now (their scores decayed under [`UNBAN_SCORE`]), to be let
    /// back in. Every [`SCORE_SWEEP`] it also forgets the scores that decayed away, and the
    /// lowest ones past [`MAX_SCORES`].
    pub fn lifted_bans(&mut self, now: Instant) -> Vec<PeerId> {
        let banned: Vec<PeerId> = self.banned.iter().copied().collect();
        let lifted: Vec<PeerId> = banned.into_iter().filter(|p| !self.is_banned(p, now)).collect();
        for p in &lifted {
            self.banned.remove(p);
        }
        if self.last_score_sweep.is_none_or(|at| now.saturating_duration_since(at) >= SCORE_SWEEP) {
            self.last_score_sweep = Some(now);
            let peers: Vec<PeerId> = self.scores.keys().copied().collect();
            for p in peers {
                if !self.banned.contains(&p) && self.score(&p, now) < FORGET_SCORE {
                    self.scores.remove(&p);
                }
            }
            if self.scores.len() > MAX_SCORES {
                let mut free: Vec<(f64, PeerId)> =
                    self.scores.iter().filter(|(p, _)| !self.banned.contains(*p)).map(|(p, s)| (s.value, *p)).collect();
                free.sort_by(|a, b| a.0.total_cmp(&b.0));
                let excess = self.scores.len() - MAX_SCORES;
                for (_, p) in free.into_iter().take(excess) {
                    self.scores.remove(&p);
                }
            }
        }
        lifted
    }

    /// Peers whose scores are kept now (bounded by [`MAX_SCORES`] plus the banned).
    pub fn scored_peers(&self) -> usize {
        self.scores.len()
    }

    /// A peer that speaks Bitswap connected: it hears every current want.
    pub fn connected(&mut self, peer: PeerId, out: &mut dyn Outbox) {
        self.peers.entry(peer).or_default();
        let wants: Vec<Want> = self.wants.values().map(|w| want_have(w.cid, w.priority)).collect();
        if !wants.is_empty() {
            for w in self.wants.values_mut() {
                w.told.insert(peer);
            }
            out.send(peer, Message { wants, ..Message::default() });
        }
    }

    /// A peer went away: what it was asked for moves on.
    pub fn disconnected(&mut self, peer: PeerId, out: &mut dyn Outbox) {
        self.peers.remove(&peer);
        self.serve_turns.retain(|p| *p != peer);
        let keys: Vec<Vec<u8>> = self.wants.keys().cloned().collect();
        for k in keys {
            let w = self.wants.get_mut(&k).expect("key just listed");
            w.candidates.retain(|p| *p != peer);
            w.told.remove(&peer);
            let was_asked = w.asked.is_some_and(|(p, _)| p == peer);
            if was_asked {
                w.asked = None;
            }
            let answered = w.answered();
            if was_asked {
                self.release(&peer);
            }
            // The peer's answer is no longer awaited: the others' may now be all there is.
            if was_asked || answered {
                self.ask_next(&k, out);
            }
        }
    }

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
    fn ask_next(&mut self, k: &[u8], out: &mut dyn Outbox) {
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
    fn release(&mut self, peer: &PeerId) {
        if let Some(s) = self.peers.get_mut(peer) {
            s.in_flight = s.in_flight.saturating_sub(1);
        }
        if let Some(bucket) = &mut self.download {
            bucket.give(DOWNLOAD_RESERVE, Instant::now());
        }
    }

    /// Handles a message from `peer`. Returns the received blocks that are wanted, for the
    /// driver to store and then pass to [`Engine::stored`]; serving work is queued for
    /// [`Engine::next_serve_job`].
    pub fn received(&mut self, peer: PeerId, m: Message, now: Instant, out: &mut dyn Outbox) -> Vec<Block> {
        // Serving side.
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
            for w in m.wants {
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
        // Fetching side: blocks first, then presences.
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
    pub fn stored(&mut self, blocks: &[Block], result: Result<(), String>, out: &mut dyn Outbox) {
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
                    Err(e) => Err(FetchError::Store(w.cid, e.clone())),
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

    /// Blocks became available locally: peers that wanted them are served again.
    fn new_blocks(&mut self, blocks: &[Block]) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_merkle::hash::{CidFormat, RAW};

    #[derive(Default)]
    struct Sent(Vec<(PeerId, Message)>);

    impl Outbox for Sent {
        fn send(&mut self, peer: PeerId, message: Message) -> bool {
            self.0.push((peer, message));
            true
        }
    }

    impl Sent {
        fn take(&mut self) -> Vec<(PeerId, Message)> {
            std::mem::take(&mut self.0)
        }
    }

    fn block(data: &[u8]) -> Block {
        Block::new_unchecked(
            CidFormat { version: 1, hash: Default::default() }.cid(RAW, data),
            Bytes::copy_from_slice(data),
        )
    }

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    /// Fetches every block at `priority`, and forgets the want-haves sent. Returns the
    /// receivers, to keep the waiters alive.
    fn want_all(
        e: &mut Engine,
        blocks: &[Block],
        priority: i32,
        now: Instant,
        out: &mut Sent,
    ) -> Vec<tokio::sync::oneshot::Receiver<Result<Bytes, FetchError>>> {
        let mut rxs = Vec::new();
        for b in blocks {
            let (tx, rx) = tokio::sync::oneshot::channel();
            rxs.push(rx);
            e.fetch(*b.cid(), priority, tx, far(), now, out);
        }
        out.take();
        rxs
    }

    #[test]
    fn a_fetch_asks_everyone_then_the_peer_that_has_it() {
        let (mut e, mut out) = (Engine::default(), Sent::default());
        let (p1, p2) = (PeerId::random(), PeerId::random());
        e.connected(p1, &mut out);
        e.connected(p2, &mut out);
        let b = block(b"wanted");
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        e.fetch(*b.cid(), 1, tx, far(), Instant::now(), &mut out);
        let sent = out.take();
        assert_eq!(sent.len(), 2);
        assert!(sent.iter().all(|(_, m)| m.wants[0].kind == WantType::Have && m.wants[0].send_dont_have));

        // p1 stays silent; once HAVE_WAIT has passed, the HAVE that came is enough.
        let have = Message { haves: vec![*b.cid()], ..Message::default() };
        assert!(e.received(p2, have, Instant::now() + HAVE_WAIT, &mut out).is_empty());
        let sent = out.take();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0, p2);
        assert_eq!(sent[0].1.wants[0].kind, WantType::Block);

        let got = e.received(p2, Message { blocks: vec![b.clone()], ..Message::default() }, Instant::now(), &mut out);
        assert_eq!(got, vec![b.clone()]);
        assert!(rx.try_recv().is_err(), "handed out before it was stored");
        e.stored(&got, Ok(()), &mut out);
        assert_eq!(rx.try_recv().unwrap().unwrap(), b.data());
        let cancels: Vec<PeerId> =
            out.take().into_iter().filter(|(_, m)| m.cancels == vec![*b.cid()]).map(|(p, _)| p).collect();
        assert_eq!(cancels.len(), 2, "both peers were told, both get a cancel");
        assert_eq!(e.wanted(), 0);
    }

    #[test]
    fn a_block_its_asker_waits_on_gets_a_second_copy_before_third_copies_of_others() {
        let (mut e, mut out) = (Engine::default(), Sent::default());
        let (first, waiting, ahead) = (PeerId::random(), PeerId::random(), PeerId::random());
        let want = |i: u32, priority| Want {
            cid: *block(&i.to_le_bytes()).cid(),
            priority,
            kind: WantType::Block,
            send_dont_have: false,
        };
        let now = Instant::now();
        for p in [first, waiting, ahead] {
            e.connected(p, &mut out);
        }
        e.received(first, Message { wants: vec![want(0, PRIORITY_READER)], ..Message::default() }, now, &mut out);
        let job = e.next_serve_job(&|_| false, 1, now).unwrap();
        e.served(job.peer, vec![], vec![], 1, 1);
        // Block 0 went out once. A player waiting on it and a read-ahead of a block never sent
        // tie, and the waiting player goes first; a read-ahead of block 0 would not.
        e.received(ahead, Message { wants: vec![want(1, PRIORITY_AHEAD)], ..Message::default() }, now, &mut out);
        e.received(waiting, Message { wants: vec![want(0, PRIORITY_READER)], ..Message::default() }, now, &mut out);
        assert_eq!(e.next_serve_job(&|_| false, 1, now).unwrap().peer, waiting);
        assert_eq!(e.next_serve_job(&|_| false, 1, now).unwrap().peer, ahead);
    }

    #[test]
    fn the_peers_answer_is_known_once_one_has_the_block_or_all_said_no() {
        let (mut e, mut out) = (Engine::default(), Sent::default());
        let (blocks, now) = ([block(b"one"), block(b"two"), block(b"three")], Instant::now());
        let _none = want_all(&mut e, &blocks[2..], PRIORITY_READER, now, &mut out);
        assert_eq!(e.peers_answer(blocks[2].cid()), Some(false), "no peer to ask: nobody has it");
        let (p1, p2) = (PeerId::random(), PeerId::random());
        e.connected(p1, &mut out);
        e.connected(p2, &mut out);
        let _rxs = want_all(&mut e, &blocks[..2], PRIORITY_READER, now, &mut out);
        let answer = |have: bool, cid: &Cid| {
            if have {
                Message { haves: vec![*cid], ..Message::default() }
            } else {
                Message { dont_haves: vec![*cid], ..Message::default() }
            }
        };
        for b in &blocks[..2] {
            assert_eq!(e.peers_answer(b.cid()), None, "answers are due");
            e.received(p1, answer(false, b.cid()), now, &mut out);
            assert_eq!(e.peers_answer(b.cid()), None, "one peer is still to answer");
        }
        e.received(p2, answer(true, blocks[0].cid()), now, &mut out);
        e.received(p2, answer(false, blocks[1].cid()), now, &mut out);
        assert_eq!(e.peers_answer(blocks[0].cid()), Some(true));
        assert_eq!(e.peers_answer(blocks[1].cid()), Some(false), "every peer said DONT_HAVE");
        // A holder that went away still counts: the block is not rare, only slow to come.
        e.disconnected(p2, &mut out);
        assert_eq!(e.peers_answer(blocks[0].cid()), Some(true));
    }

    #[test]
    fn a_peer_without_bitswap_is_not_waited_for() {
        let (mut e, mut out) = (Engine::default(), Sent::default());
        let (p1, mute) = (PeerId::random(), PeerId::random());
        e.connected(p1, &mut out);
        e.connected(mute, &mut out);
        let b = block(b"answer");
        let (tx, _rx) = tokio::sync::oneshot::channel();
        let start = Instant::now();
        e.fetch(*b.cid(), 1, tx, far(), start, &mut out);
        assert!(e.needs_providers(b.cid()), "nobody has said HAVE yet");
        e.received(p1, Message { haves: vec![*b.cid()], ..Message::default() }, start, &mut out);
        out.take();
        assert!(!e.needs_providers(b.cid()), "p1 has it");
        // The other peer turns out not to speak Bitswap: p1 is asked at once, not after the
        // HAVE wait.
        e.disconnected(mute, &mut out);
        let sent = out.take();
        assert_eq!(sent.len(), 1);
        assert_eq!((sent[0].0, sent[0].1.wants[0].kind), (p1, WantType::Block));
    }

    #[test]
    fn dont_have_moves_the_want_to_the_next_peer() {
        let (mut e, mut out) = (Engine::default(), Sent::default());
        let (p1, p2) = (PeerId::random(), PeerId::random());
        e.connected(p1, &mut out);
        e.connected(p2, &mut out);
        let b = block(b"x");
        let (tx, _rx) = tokio::sync::oneshot::channel();
        e.fetch(*b.cid(), 1, tx, far(), Instant::now(), &mut out);
        e.received(p1, Message { haves: vec![*b.cid()], ..Message::default() }, Instant::now(), &mut out);
        e.received(p2, Message { haves: vec![*b.cid()], ..Message::default() }, Instant::now(), &mut out);
        out.take();
        e.received(p1, Message { dont_haves: vec![*b.cid()], ..Message::default() }, Instant::now(), &mut out);
        let sent = out.take();
        assert_eq!(sent.len(), 1);
        assert_eq!((sent[0].0, sent[0].1.wants[0].kind), (p2, WantType::Block));
    }

    #[test]
    fn a_silent_peer_times_out_and_waiters_expire() {
        let (mut e, mut out) = (Engine::default(), Sent::default());
        let (p1, p2) = (PeerId::random(), PeerId::random());
        e.connected(p1, &mut out);
        e.connected(p2, &mut out);
        let b = block(b"slow");
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        let start = Instant::now();
        e.fetch(*b.cid(), 1, tx, start + Duration::from_secs(30), start, &mut out);
        e.received(p1, Message { haves: vec![*b.cid()], ..Message::default() }, start, &mut out);
        e.received(p2, Message { haves: vec![*b.cid()], ..Message::default() }, start, &mut out);
        out.take();
        e.tick(Instant::now() + BLOCK_TIMEOUT + Duration::from_secs(1), &mut out);
        let asked: Vec<PeerId> = out.take().into_iter().filter(|(_, m)| !m.wants.is_empty()).map(|(p, _)| p).collect();
        assert_eq!(asked, vec![p2]);
        e.tick(start + Duration::from_secs(31), &mut out);
        assert!(matches!(rx.try_recv().unwrap(), Err(FetchError::Timeout(_))));
        assert_eq!(e.wanted(), 0);
    }

    #[test]
    fn unwanted_blocks_cost_score_until_a_ban_that_decays() {
        let (mut e, mut out) = (Engine::default(), Sent::default());
        let p = PeerId::random();
        e.connected(p, &mut out);
        let now = Instant::now();
        // A copy of a block this node wanted and already got costs nothing.
        let wanted = block(b"wanted");
        let (tx, _rx) = tokio::sync::oneshot::channel();
        e.fetch(*wanted.cid(), 1, tx, far(), now, &mut out);
        e.received(p, Message { blocks: vec![wanted.clone()], ..Message::default() }, now, &mut out);
        e.stored(std::slice::from_ref(&wanted), Ok(()), &mut out);
        for _ in 0..5 {
            e.received(p, Message { blocks: vec![wanted.clone()], ..Message::default() }, now, &mut out);
        }
        assert!(!e.is_banned(&p, now));
        assert_eq!(e.stats().duplicate_blocks, 5);
        // Bytes nobody asked for: one and the peer is out.
        e.received(p, Message { blocks: vec![block(&[1])], ..Message::default() }, now, &mut out);
        assert!(e.is_banned(&p, now));
        assert_eq!(e.stats().forged_blocks, 1);
        assert_eq!(e.stats().banned_peers, 1);
        // Kept out while the score decays: still out after one half-life, back after two.
        let later = now + SCORE_HALF_LIFE + Duration::from_secs(1);
        assert!(e.lifted_bans(later).is_empty());
        assert!(e.is_banned(&p, later));
        let lifted = now + SCORE_HALF_LIFE * 2 + Duration::from_secs(1);
        assert_eq!(e.lifted_bans(lifted), vec![p]);
        assert!(!e.is_banned(&p, lifted));
        assert!(e.lifted_bans(lifted).is_empty(), "a ban is lifted once");
        // A second offence soon after bans again, for longer: the score adds up.
        e.received(p, Message { blocks: vec![block(&[2])], ..Message::default() }, lifted, &mut out);
        assert!(e.is_banned(&p, lifted + SCORE_HALF_LIFE * 2 + Duration::from_secs(1)));
        // Decayed scores are forgotten.
        let much_later = lifted + SCORE_HALF_LIFE * 20;
        assert_eq!(e.lifted_bans(much_later), vec![p]);
        assert_eq!(e.scored_peers(), 0);
    }

    #[test]
    fn scores_stay_bounded_when_offenders_keep_changing_identity() {
        let mut e = Engine::default();
        let now = Instant::now();
        for _ in 0..MAX_SCORES + 500 {
            e.penalize(PeerId::random(), PENALTY_MALFORMED, now);
        }
        let banned = PeerId::random();
        assert!(e.penalize(banned, PENALTY_FORGED, now));
        assert!(e.lifted_bans(now).is_empty());
        assert_eq!(e.scored_peers(), MAX_SCORES);
        assert!(e.is_banned(&banned, now), "a ban outlives the cap");
    }

    #[test]
    fn a_busy_peer_waits_for_its_turn_while_others_are_served() {
        let (mut e, mut out) = (Engine::default(), Sent::default());
        let (slow, other) = (PeerId::random(), PeerId::random());
        e.connected(slow, &mut out);
        e.connected(other, &mut out);
        let want = |i: u32| Want {
            cid: *block(&i.to_le_bytes()).cid(),
            priority: 1,
            kind: WantType::Block,
            send_dont_have: false,
        };
        e.received(slow, Message { wants: vec![want(1)], ..Message::default() }, Instant::now(), &mut out);
        e.received(other, Message { wants: vec![want(2)], ..Message::default() }, Instant::now(), &mut out);
        let busy = |p: &PeerId| *p == slow;
        assert_eq!(e.next_serve_job(&busy, usize::MAX, Instant::now()).unwrap().peer, other);
        assert!(e.next_serve_job(&busy, usize::MAX, Instant::now()).is_none(), "the busy peer is not served");
        // Once its queue drains, its wants are still there.
        let job = e.next_serve_job(&|_| false, usize::MAX, Instant::now()).unwrap();
        assert_eq!((job.peer, job.wants), (slow, vec![want(1)]));
    }

    #[test]
    fn serving_takes_turns_between_peers() {
        let (mut e, mut out) = (Engine::default(), Sent::default());
        let (greedy, modest) = (PeerId::random(), PeerId::random());
        e.connected(greedy, &mut out);
        e.connected(modest, &mut out);
        let want = |i: u32| Want {
            cid: *block(&i.to_le_bytes()).cid(),
            priority: 1,
            kind: WantType::Block,
            send_dont_have: false,
        };
        e.received(
            greedy,
            Message { wants: (0..100).map(want).collect(), ..Message::default() },
            Instant::now(),
            &mut out,
        );
        e.received(modest, Message { wants: vec![want(1000)], ..Message::default() }, Instant::now(), &mut out);
        let first = e.next_serve_job(&|_| false, usize::MAX, Instant::now()).unwrap();
        assert_eq!((first.peer, first.wants.len()), (greedy, SERVE_BATCH));
        e.served(greedy, vec![], vec![], 16, 16);
        let second = e.next_serve_job(&|_| false, usize::MAX, Instant::now()).unwrap();
        assert_eq!((second.peer, second.wants.len()), (modest, 1), "the modest peer is next, not starved");
        e.served(modest, vec![], vec![], 1, 1);
        assert_eq!(e.next_serve_job(&|_| false, usize::MAX, Instant::now()).unwrap().peer, greedy);

        // A cancel removes a want that is still queued.
        let mut fresh = Engine::default();
        fresh.connected(modest, &mut out);
        fresh.received(
            modest,
            Message { wants: vec![want(1), want(2)], ..Message::default() },
            Instant::now(),
            &mut out,
        );
        fresh.received(modest, Message { cancels: vec![want(1).cid], ..Message::default() }, Instant::now(), &mut out);
        assert_eq!(fresh.next_serve_job(&|_| false, usize::MAX, Instant::now()).unwrap().wants, vec![want(2)]);
    }

    #[test]
    fn a_seed_sends_every_block_once_before_any_twice_and_nobody_starves() {
        let (mut e, mut out) = (Engine::default(), Sent::default());
        let peers: Vec<PeerId> = (0..3).map(|_| PeerId::random()).collect();
        let want =
            |i: u32, kind| Want { cid: *block(&i.to_le_bytes()).cid(), priority: 1, kind, send_dont_have: false };
        let t0 = Instant::now();
        for (n, p) in peers.iter().enumerate() {
            e.connected(*p, &mut out);
            // Everyone asks for the same three blocks, in the same order.
            let wants = (0..3).map(|i| want(i, WantType::Block)).collect();
            e.received(*p, Message { wants, ..Message::default() }, t0 + Duration::from_secs(n as u64), &mut out);
        }
        let now = t0 + Duration::from_secs(3);
        let mut first_copies = Vec::new();
        for _ in 0..3 {
            let job = e.next_serve_job(&|_| false, 1, now).unwrap();
            assert_eq!(job.wants.len(), 1, "one block of room: one block per turn");
            first_copies.push(job.wants[0].cid);
            e.served(job.peer, vec![], vec![], 1, 1);
        }
        first_copies.sort();
        first_copies.dedup();
        assert_eq!(first_copies.len(), 3, "three turns sent three different blocks");

        // With no room for blocks, only presence questions are answered.
        let late = PeerId::random();
        e.connected(late, &mut out);
        e.received(late, Message { wants: vec![want(7, WantType::Have)], ..Message::default() }, now, &mut out);
        let job = e.next_serve_job(&|_| false, 0, now).unwrap();
        assert_eq!((job.peer, job.wants), (late, vec![want(7, WantType::Have)]));
        assert!(e.next_serve_job(&|_| false, 0, now).is_none(), "block wants wait for room");

        // A peer left waiting past SERVE_STARVE goes first, however often its blocks were sent.
        let fresh = PeerId::random();
        e.connected(fresh, &mut out);
        e.received(fresh, Message { wants: vec![want(9, WantType::Block)], ..Message::default() }, now, &mut out);
        assert_eq!(e.next_serve_job(&|_| false, 1, now).unwrap().peer, fresh, "a block never sent goes first");
        let later = now + SERVE_STARVE;
        let newcomer = PeerId::random();
        e.connected(newcomer, &mut out);
        e.received(newcomer, Message { wants: vec![want(10, WantType::Block)], ..Message::default() }, later, &mut out);
        let job = e.next_serve_job(&|_| false, 1, later).unwrap();
        assert_eq!(job.peer, peers[0], "the longest waiting peer, not the newcomer's unsent block");
    }

    #[test]
    fn a_peer_that_holds_everything_is_asked_last() {
        let (mut e, mut out) = (Engine::default(), Sent::default());
        let (seed, other) = (PeerId::random(), PeerId::random());
        e.connected(seed, &mut out);
        e.connected(other, &mut out);
        // The seed has answered HAVE for many blocks before.
        let earlier: Vec<Cid> = (0..50u32).map(|i| *block(&i.to_le_bytes()).cid()).collect();
        e.received(seed, Message { haves: earlier, ..Message::default() }, Instant::now(), &mut out);
        let b = block(b"both have it");
        let (tx, _rx) = tokio::sync::oneshot::channel();
        e.fetch(*b.cid(), 1, tx, far(), Instant::now(), &mut out);
        out.take();
        e.received(seed, Message { haves: vec![*b.cid()], ..Message::default() }, Instant::now(), &mut out);
        assert!(out.take().is_empty(), "chose before the other peer answered");
        e.received(other, Message { haves: vec![*b.cid()], ..Message::default() }, Instant::now(), &mut out);
        let sent = out.take();
        assert_eq!((sent.len(), sent[0].0), (1, other));
    }

    #[test]
    fn room_a_delivered_block_frees_is_taken_at_once_not_at_the_next_tick() {
        let (mut e, mut out) = (Engine::default(), Sent::default());
        let seed = PeerId::random();
        e.connected(seed, &mut out);
        let blocks: Vec<Block> = (0..12u8).map(|i| block(&[i; 100])).collect();
        let start = Instant::now();
        let _rxs = want_all(&mut e, &blocks, PRIORITY_AHEAD, start, &mut out);
        let cids: Vec<Cid> = blocks.iter().map(|b| *b.cid()).collect();
        e.received(seed, Message { haves: cids.clone(), ..Message::default() }, start, &mut out);
        let asked = |sent: &[(PeerId, Message)]| -> Vec<Cid> {
            sent.iter().flat_map(|(_, m)| m.wants.iter().filter(|w| w.kind == WantType::Block).map(|w| w.cid)).collect()
        };
        let first = asked(&out.take());
        assert_eq!(first, cids[..INITIAL_WINDOW], "the initial window, in the order wanted");

        // The first block comes quickly: the seed's window opens, and the four wants left
        // are asked for in the same call, with no tick between.
        let got = e.received(
            seed,
            Message { blocks: vec![blocks[0].clone()], ..Message::default() },
            start + Duration::from_millis(1),
            &mut out,
        );
        assert_eq!(got.len(), 1);
        // (Read-ahead goes in this node's shuffled order, not file order.)
        let mut rest = asked(&out.take());
        rest.sort();
        let mut expected = cids[INITIAL_WINDOW..].to_vec();
        expected.sort();
        assert_eq!(rest, expected, "the rest go out as the block comes");
        // The seed counts as sending for a while after its block.
        assert_eq!(e.stats_at(start + Duration::from_millis(1)).sending_peers, 1);
        assert_eq!(e.stats_at(start + RECENT + Duration::from_millis(1)).sending_peers, 0);
    }

    /// Asserts that `sent` cancels the want-block for `cid` at `from` and asks `to` for it.
    fn assert_moved(sent: &[(PeerId, Message)], cid: Cid, from: PeerId, to: PeerId) {
        assert!(sent.iter().any(|(p, m)| *p == from && m.cancels == vec![cid]), "{sent:?}");
        assert!(
            sent.iter().any(|(p, m)| *p == to && m.wants.iter().any(|w| w.cid == cid && w.kind == WantType::Block)),
            "{sent:?}"
        );
    }

    /// Twelve blocks wanted at `priority` from two peers: `other` says DONT_HAVE for all, the
    /// seed HAVE for all and is asked for the first window. Returns the engine, the receivers,
    /// the seed, the other peer, the blocks, the start, and the CIDs asked of the seed.
    #[allow(clippy::type_complexity)]
    fn seed_and_other(
        priority: i32,
        out: &mut Sent,
    ) -> (
        Engine,
        Vec<tokio::sync::oneshot::Receiver<Result<Bytes, FetchError>>>,
        PeerId,
        PeerId,
        Vec<Block>,
        Instant,
        Vec<Cid>,
    ) {
        let mut e = Engine::default();
        let (seed, other) = (PeerId::random(), PeerId::random());
        e.connected(seed, out);
        e.connected(other, out);
        let blocks: Vec<Block> = (0..12u8).map(|i| block(&[i; 100])).collect();
        let start = Instant::now();
        let rxs = want_all(&mut e, &blocks, priority, start, out);
        let cids: Vec<Cid> = blocks.iter().map(|b| *b.cid()).collect();
        e.received(other, Message { dont_haves: cids.clone(), ..Message::default() }, start, out);
        e.received(seed, Message { haves: cids, ..Message::default() }, start, out);
        let first: Vec<Cid> = out
            .take()
            .into_iter()
            .filter(|(p, _)| *p == seed)
            .flat_map(|(_, m)| m.wants.into_iter().filter(|w| w.kind == WantType::Block).map(|w| w.cid))
            .collect();
        let window = INITIAL_WINDOW + usize::from(priority >= PRIORITY_READER);
        assert_eq!(first.len(), window, "a peer of unknown speed gets the initial window (and one for a reader)");
        (e, rxs, seed, other, blocks, start, first)
    }

    #[test]
    fn a_slow_peer_gets_a_small_window_and_its_queued_wants_move_to_a_peer_with_room() {
        let mut out = Sent::default();
        let (mut e, _rxs, seed, other, blocks, start, first) = seed_and_other(1, &mut out);
        let cids: Vec<Cid> = blocks.iter().map(|b| *b.cid()).collect();
        let asked = |sent: &[(PeerId, Message)], peer: PeerId| -> Vec<Cid> {
            sent.iter()
                .filter(|(p, _)| *p == peer)
                .flat_map(|(_, m)| m.wants.iter().filter(|w| w.kind == WantType::Block).map(|w| w.cid))
                .collect()
        };

        // The seed takes a second for one block: about one block a second, so its window
        // shrinks to the minimum and nothing more is asked of it.
        let got = e.received(
            seed,
            Message {
                blocks: vec![blocks.iter().find(|b| *b.cid() == first[0]).unwrap().clone()],
                ..Message::default()
            },
            start + Duration::from_secs(1),
            &mut out,
        );
        e.stored(&got, Ok(()), &mut out);
        e.tick(start + Duration::from_secs(1), &mut out);
        assert!(asked(&out.take(), seed).is_empty(), "7 in flight is over the slow seed's window");

        // The other peer now has a block still queued at the seed, and one nobody was asked
        // for: both go to it, and the seed is told to drop the first.
        let queued = first[3];
        let waiting = *cids.iter().find(|c| !first.contains(c)).unwrap();
        let have = Message { haves: vec![queued, waiting], ..Message::default() };
        e.received(other, have, start + Duration::from_millis(1100), &mut out);
        let sent = out.take();
        let mut to_other = asked(&sent, other);
        to_other.sort();
        let mut expected = vec![queued, waiting];
        expected.sort();
        assert_eq!(to_other, expected);
        assert!(sent.iter().any(|(p, m)| *p == seed && m.cancels == vec![queued]), "{sent:?}");
        assert_eq!(e.stats().wants_moved, 1);
    }

    /// A block a reader waits on, queued at a peer that turns out slow, moves at the next tick
    /// to a peer that said HAVE and has room, without waiting for the block timeout.
    #[test]
    fn a_waited_block_leaves_a_peer_that_became_backlogged_at_the_tick() {
        let mut out = Sent::default();
        let (mut e, _rxs, seed, other, blocks, start, first) = seed_and_other(PRIORITY_READER, &mut out);
        // The other peer gets a block still queued at the seed while the seed looks fine.
        let queued = first[3];
        let have = Message { haves: vec![queued], ..Message::default() };
        e.received(other, have, start + Duration::from_millis(100), &mut out);
        assert!(out.take().iter().all(|(_, m)| m.cancels.is_empty()), "the seed is not backlogged yet");
        // The seed takes a second for one block: its window shrinks and its queue is too long.
        let one = blocks.iter().find(|b| *b.cid() == first[0]).unwrap().clone();
        let got = e.received(
            seed,
            Message { blocks: vec![one], ..Message::default() },
            start + Duration::from_secs(1),
            &mut out,
        );
        e.stored(&got, Ok(()), &mut out);
        out.take();
        e.tick(start + Duration::from_secs(1), &mut out);
        let sent = out.take();
        assert_moved(&sent, queued, seed, other);
        assert_eq!(e.stats().wants_moved, 1, "only the block another peer has moves");
    }

    #[test]
    fn a_want_is_told_to_a_few_peers_first_and_to_the_rest_when_none_has_it() {
        let (mut e, mut out) = (Engine::default(), Sent::default());
        let peers: Vec<PeerId> = (0..3 * FIRST_TOLD).map(|_| PeerId::random()).collect();
        for p in &peers {
            e.connected(*p, &mut out);
        }
        let start = Instant::now();
        let told = |sent: &[(PeerId, Message)], cid: Cid| -> HashSet<PeerId> {
            sent.iter().filter(|(_, m)| m.wants.iter().any(|w| w.cid == cid)).map(|(p, _)| *p).collect()
        };
        let mut rxs = Vec::new();
        let mut fetch = |e: &mut Engine, b: &Block, out: &mut Sent| {
            let (tx, rx) = tokio::sync::oneshot::channel();
            rxs.push(rx);
            e.fetch(*b.cid(), PRIORITY_AHEAD, tx, far(), start, out);
        };

        // A peer that just delivered a block is among the first told of the next one.
        let (first, second) = (block(b"first"), block(b"second"));
        fetch(&mut e, &first, &mut out);
        let asked = told(&out.take(), *first.cid());
        assert_eq!(asked.len(), FIRST_TOLD, "{FIRST_TOLD} of {} peers", peers.len());
        let giver = *asked.iter().next().unwrap();
        e.received(giver, Message { haves: vec![*first.cid()], ..Message::default() }, start, &mut out);
        e.tick(start + HAVE_WAIT, &mut out);
        let got = e.received(giver, Message { blocks: vec![first.clone()], ..Message::default() }, start, &mut out);
        e.stored(&got, Ok(()), &mut out);
        out.take();
        fetch(&mut e, &second, &mut out);
        let asked = told(&out.take(), *second.cid());
        assert_eq!(asked.len(), FIRST_TOLD);
        assert!(asked.contains(&giver));

        // None of them has it: every one says so, and then the rest are told at once.
        assert_eq!(e.peers_answer(second.cid()), None);
        assert!(!e.told_everyone(second.cid()), "{} peers are still to be told", peers.len() - FIRST_TOLD);
        for p in &asked {
            e.received(*p, Message { dont_haves: vec![*second.cid()], ..Message::default() }, start, &mut out);
        }
        assert_eq!(e.peers_answer(second.cid()), None, "the others have not been asked yet");
        assert!(e.told_everyone(second.cid()));
        let rest = told(&out.take(), *second.cid());
        assert_eq!(rest.len(), peers.len() - FIRST_TOLD);
        assert!(rest.is_disjoint(&asked));
        assert_eq!(e.stats().wants_widened, 1);
        for p in &rest {
            e.received(*p, Message { dont_haves: vec![*second.cid()], ..Message::default() }, start, &mut out);
        }
        assert_eq!(e.peers_answer(second.cid()), Some(false), "every peer said it lacks the block");

        // Silence widens too, once HAVE_WAIT has passed.
        let third = block(b"third");
        fetch(&mut e, &third, &mut out);
        assert_eq!(told(&out.take(), *third.cid()).len(), FIRST_TOLD);
        e.tick(start + HAVE_WAIT / 2, &mut out);
        assert!(told(&out.take(), *third.cid()).is_empty());
        e.tick(start + HAVE_WAIT, &mut out);
        assert_eq!(told(&out.take(), *third.cid()).len(), peers.len() - FIRST_TOLD);

        // A few peers are all told at once.
        let (mut e, mut out) = (Engine::default(), Sent::default());
        for p in &peers[..FIRST_TOLD] {
            e.connected(*p, &mut out);
        }
        let fourth = block(b"fourth");
        fetch(&mut e, &fourth, &mut out);
        assert_eq!(told(&out.take(), *fourth.cid()).len(), FIRST_TOLD);
    }

    #[test]
    fn a_block_a_reader_waits_on_leaves_a_silent_peer_after_the_urgent_wait() {
        // A crowd's first moments: the seed, asked for everything, has sent nothing yet (so it
        // has no rate), and another reader says it has the block this reader waits on.
        let mut out = Sent::default();
        let (mut e, _rxs, seed, other, _blocks, start, first) = seed_and_other(PRIORITY_READER, &mut out);
        let waited = first[0];
        let have = Message { haves: vec![waited], ..Message::default() };
        e.received(other, have.clone(), start + URGENT_WAIT / 2, &mut out);
        e.tick(start + URGENT_WAIT / 2, &mut out);
        assert!(out.take().iter().all(|(_, m)| m.cancels.is_empty()), "too early to move");
        e.tick(start + URGENT_WAIT + Duration::from_millis(50), &mut out);
        let sent = out.take();
        assert_moved(&sent, waited, seed, other);
        assert_eq!(e.stats().wants_moved, 1);

        // Read-ahead is not urgent: the same wait leaves it where it is.
        let mut out = Sent::default();
        let (mut e, _rxs, _seed, other, _blocks, start, first) = seed_and_other(PRIORITY_AHEAD, &mut out);
        e.received(other, Message { haves: vec![first[0]], ..Message::default() }, start, &mut out);
        e.tick(start + URGENT_WAIT * 3, &mut out);
        e.received(other, Message { haves: vec![first[1]], ..Message::default() }, start + URGENT_WAIT * 3, &mut out);
        assert_eq!(e.stats().wants_moved, 0, "{:?}", out.take());
    }

    /// Wants the block of `data` at `priority`; each of `peers` answers, HAVE if among
    /// `holders`. Returns its CID; the waiter's receiver joins `rxs`.
    #[allow(clippy::too_many_arguments)]
    fn want_answered(
        e: &mut Engine,
        data: &[u8],
        priority: i32,
        peers: &[PeerId],
        holders: &[PeerId],
        now: Instant,
        rxs: &mut Vec<tokio::sync::oneshot::Receiver<Result<Bytes, FetchError>>>,
        out: &mut Sent,
    ) -> Cid {
        let cid = *block(data).cid();
        let (tx, rx) = tokio::sync::oneshot::channel();
        rxs.push(rx);
        e.fetch(cid, priority, tx, far(), now, out);
        for p in peers {
            let m = if holders.contains(p) {
                Message { haves: vec![cid], ..Message::default() }
            } else {
                Message { dont_haves: vec![cid], ..Message::default() }
            };
            e.received(*p, m, now, out);
        }
        cid
    }

    /// A block a reader waits on leaves a silent peer for one that said HAVE even when that
    /// one's window is full of read-ahead: it takes the one slot past the window.
    #[test]
    fn a_waited_block_moves_to_a_peer_whose_window_read_ahead_filled() {
        let (mut e, mut out) = (Engine::default(), Sent::default());
        let (slow, fast) = (PeerId::random(), PeerId::random());
        e.connected(slow, &mut out);
        e.connected(fast, &mut out);
        let start = Instant::now();
        let mut rxs = Vec::new();
        let mut want = |e: &mut Engine, data: &[u8], priority: i32, holder: PeerId, out: &mut Sent| {
            want_answered(e, data, priority, &[slow, fast], &[holder], start, &mut rxs, out)
        };
        // Read-ahead fills the fast peer's window; the next block only the slow one has.
        for i in 0..INITIAL_WINDOW as u8 {
            want(&mut e, &[1, i], PRIORITY_AHEAD, fast, &mut out);
        }
        let next = want(&mut e, b"next", PRIORITY_AHEAD, slow, &mut out);
        let sent = out.take();
        assert!(sent
            .iter()
            .any(|(p, m)| *p == slow && m.wants.iter().any(|w| w.cid == next && w.kind == WantType::Block)));
        // The player reaches it, and the fast peer has it now.
        let later = start + URGENT_WAIT * 2;
        let (tx, rx) = tokio::sync::oneshot::channel();
        rxs.push(rx);
        e.fetch(next, PRIORITY_READER, tx, far(), later, &mut out);
        e.received(fast, Message { haves: vec![next], ..Message::default() }, later, &mut out);
        assert_moved(&out.take(), next, slow, fast);
    }

    /// When peers' windows are full, the room that frees goes first to the block a reader
    /// waits for, then to read-ahead, then to the rarest of the bulk blocks.
    #[test]
    fn freed_room_goes_to_readers_then_read_ahead_then_the_rarest_block() {
        let (mut e, mut out) = (Engine::default(), Sent::default());
        let (p, q) = (PeerId::random(), PeerId::random());
        e.connected(p, &mut out);
        e.connected(q, &mut out);
        let start = Instant::now();
        let mut rxs = Vec::new();
        let mut want = |e: &mut Engine, data: &[u8], priority: i32, holders: &[PeerId], out: &mut Sent| -> Cid {
            want_answered(e, data, priority, &[p, q], holders, start, &mut rxs, out)
        };
        // Both peers' windows fill up with blocks both hold.
        let fillers: Vec<Cid> =
            (0..2 * INITIAL_WINDOW as u8).map(|i| want(&mut e, &[0, i], PRIORITY_BULK, &[p, q], &mut out)).collect();
        let asked = |sent: &[(PeerId, Message)]| -> Vec<(PeerId, Cid)> {
            sent.iter()
                .flat_map(|(peer, m)| m.wants.iter().filter(|w| w.kind == WantType::Block).map(move |w| (*peer, w.cid)))
                .collect()
        };
        let filled = asked(&out.take());
        assert_eq!(filled.len(), 2 * INITIAL_WINDOW, "{filled:?}");
        // Then, with no room anywhere: a common bulk block, a rare one, and read-ahead, wanted
        // in that order. Nothing can be asked yet.
        let common = want(&mut e, b"common", PRIORITY_BULK, &[p, q], &mut out);
        let rare = want(&mut e, b"rare", PRIORITY_BULK, &[p], &mut out);
        let ahead = want(&mut e, b"ahead", PRIORITY_AHEAD, &[p], &mut out);
        assert!(asked(&out.take()).is_empty());
        // The block a reader waits for takes the one slot past the window at once; a second
        // one finds none.
        let reader = want(&mut e, b"reader", PRIORITY_READER, &[p], &mut out);
        assert_eq!(asked(&out.take()), vec![(p, reader)]);
        let second = want(&mut e, b"second reader", PRIORITY_READER, &[p], &mut out);
        assert!(asked(&out.take()).is_empty());
        // One slot frees on p at a time (it turns out not to have a filler it was asked for).
        let of_p: Vec<Cid> = filled.iter().filter(|(peer, _)| *peer == p).map(|(_, c)| *c).collect();
        // The first slot goes to the second reader's block, which takes the one past the
        // window again; the next frees that one, and the others go one at a time.
        let mut order = Vec::new();
        for (i, gone) in of_p.iter().take(5).enumerate() {
            let now = start + HAVE_WAIT + Duration::from_millis(i as u64);
            e.received(p, Message { dont_haves: vec![*gone], ..Message::default() }, now, &mut out);
            e.tick(now, &mut out);
            let next = asked(&out.take());
            assert_eq!(next.len(), usize::from(i != 1), "one slot, one ask: {next:?}");
            assert!(next.iter().all(|(peer, _)| *peer == p));
            order.extend(next.into_iter().map(|(_, c)| c));
        }
        assert_eq!(order, vec![second, ahead, rare, common]);
        assert!(fillers.iter().all(|f| !order.contains(f)));
    }

    #[test]
    fn a_ledger_is_capped() {
        let (mut e, mut out) = (Engine::default(), Sent::default());
        let p = PeerId::random();
        e.connected(p, &mut out);
        let wants = (0..(MAX_LEDGER as u32 + 500))
            .map(|i| Want {
                cid: *block(&i.to_le_bytes()).cid(),
                priority: 0,
                kind: WantType::Have,
                send_dont_have: true,
            })
            .collect();
        e.received(p, Message { wants, ..Message::default() }, Instant::now(), &mut out);
        let mut total = 0;
        while let Some(job) = e.next_serve_job(&|_| false, usize::MAX, Instant::now()) {
            total += job.wants.len();
            e.served(p, vec![], vec![], 0, 0);
        }
        assert_eq!(total, MAX_LEDGER);
        // Flooding on: each overflowing message costs score, until the peer is banned.
        let now = Instant::now();
        assert!(!e.is_banned(&p, now));
        let flood = |i: u32| Message {
            wants: (0..MAX_LEDGER as u32 + 10)
                .map(|j| Want {
                    cid: *block(&[i.to_le_bytes(), j.to_le_bytes()].concat()).cid(),
                    priority: 0,
                    kind: WantType::Block,
                    send_dont_have: false,
                })
                .collect(),
            ..Message::default()
        };
        let mut sent = 0;
        while !e.is_banned(&p, now) {
            e.received(p, flood(sent), now, &mut out);
            sent += 1;
            assert!(sent < 100, "never banned");
        }
        assert_eq!(f64::from(sent), (BAN_SCORE / PENALTY_FLOOD).ceil());
    }
}
