//! The Bitswap engine: what Cairn wants from peers and what peers want from Cairn.
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
//!
//! The files: `config.rs` (the tunables), `wants.rs` (fetching), `ledger.rs` (serving: each
//! peer's ledger and the turns between peers), `score.rs` (misbehaviour and bans); the
//! [`Engine`] here holds their state and takes the driver's events.

mod config;
mod ledger;
mod score;
mod wants;

#[cfg(test)]
mod tests;

pub use config::*;

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Instant;

use bytes::Bytes;
use cairn_merkle::{Block, Cid};
use libp2p::PeerId;

use super::proto::{Message, Want, WantType};
use ledger::Ledger;
use score::Scores;

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

/// A block this node wants, and where the want stands with each peer.
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

/// What this node knows of a connected peer: its fetching side (want-blocks in flight, its
/// measured delivery rate) and its serving side (its ledger).
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

/// See the module docs.
#[derive(Default)]
pub struct Engine {
    wants: HashMap<Vec<u8>, Wanted>,
    peers: HashMap<PeerId, Peer>,
    serve_turns: VecDeque<PeerId>,
    /// Misbehaviour scores and bans.
    scores: Scores,
    /// The next want's [`Wanted::seq`].
    next_seq: u64,
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

/// The key wants and ledgers are kept under: the block's multihash.
fn key(cid: &Cid) -> Vec<u8> {
    cid.hash().to_bytes()
}

/// A want-have for `cid`, asking for DONT_HAVE too.
fn want_have(cid: Cid, priority: i32) -> Want {
    Want { cid, priority, kind: WantType::Have, send_dont_have: true }
}

impl Engine {
    /// Caps fetching at `rate` block bytes a second (None: no cap).
    pub fn set_download_limit(&mut self, rate: Option<u64>) {
        self.download = rate.map(|r| crate::net::ratelimit::TokenBucket::new(r.max(1), Instant::now()));
    }

    pub(super) fn may_download(&mut self) -> bool {
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
            banned_peers: self.scores.banned() as u64,
            sending_peers: sending as u64,
            ..self.stats
        }
    }

    /// Blocks currently wanted.
    pub fn wanted(&self) -> usize {
        self.wants.len()
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

    /// Handles a message from `peer`. Returns the received blocks that are wanted, for the
    /// driver to store and then pass to [`Engine::stored`]; serving work is queued for
    /// [`Engine::next_serve_job`].
    pub fn received(&mut self, peer: PeerId, mut m: Message, now: Instant, out: &mut dyn Outbox) -> Vec<Block> {
        self.take_wants(peer, &mut m, now);
        self.take_answers(peer, m, now, out)
    }
}
