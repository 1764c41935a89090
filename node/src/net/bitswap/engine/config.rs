//! The engine's tunables: windows, waits and bounds for fetching, serving and scores.

use std::time::Duration;

#[cfg(doc)]
use super::Engine;

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
