//! Serving peers: turns that read the wanted blocks from the store on the blocking pool, as
//! many at once as the measured upload rate, the upload cap and the daily budget allow.

use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn_merkle::{Block, Cid};

use super::{Done, Driver};
use crate::net::bitswap::engine::ServeJob;
use crate::net::bitswap::{self, Message, WantType};
use crate::net::PeerId;
use crate::store::BlockStore;

/// Serving turns running at once.
pub(super) const MAX_JOBS: usize = 4;
/// Wanted-but-missing blocks up to this size are answered with the block instead of HAVE.
const HAVE_AS_BLOCK: usize = 1024;
/// Block bytes per reply message.
const REPLY_BYTES: usize = 1 << 20;
/// Block bytes queued to one peer (written to its connection but not yet taken) before its
/// serving turns wait: a peer that stops reading holds at most this much of the node's memory.
pub const MAX_PENDING_PER_PEER: u64 = 8 << 20;
/// About this long of the measured upload rate is committed to peers (queued to be written,
/// or being read from the store) at once; wants beyond it wait in the engine, where the least
/// served blocks are chosen first and cancels still reach them. Queues of peers that stopped
/// reading do not count ([`bitswap::Behaviour::moving_pending`]): they would hold everyone
/// else's turns.
///
/// Short, so that a slow uplink sends one block after another rather than many side by side:
/// blocks sent side by side share the link and all arrive late, while a block sent alone
/// arrives soon and its receiver passes it on (with the sockets' unsent bytes kept low, see
/// [`transport::UNSENT_LOWAT`], what is committed here is close to what is on the wire). On
/// ten players behind 20 Mbit/s uplinks, going from 500 ms and 2 MiB to 100 ms and one block
/// cut the duplicate blocks from 29% to 6%.
const COMMIT_TIME: Duration = Duration::from_millis(100);
/// Block bytes always allowed in commitment, whatever the measured rate: one block.
const MIN_COMMIT: u64 = BLOCK_ESTIMATE;
/// Bytes assumed for a block not yet read (the default chunk size).
const BLOCK_ESTIMATE: u64 = 256 * 1024;
/// How often the upload rate is measured.
const UPLOAD_SAMPLE: Duration = Duration::from_millis(250);

/// The upload rate as serving achieves it: bytes that left the queues, per second, averaged.
#[derive(Debug)]
pub(super) struct UploadMeter {
    rate: f64,
    last: u64,
    at: Instant,
}

impl UploadMeter {
    pub(super) fn new(now: Instant) -> UploadMeter {
        UploadMeter { rate: 0.0, last: 0, at: now }
    }

    /// Takes a sample of `drained` (the total so far).
    pub(super) fn sample(&mut self, drained: u64, now: Instant) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        if dt < UPLOAD_SAMPLE.as_secs_f64() {
            return;
        }
        let rate = drained.saturating_sub(self.last) as f64 / dt;
        self.rate = if self.rate == 0.0 { rate } else { 0.5 * self.rate + 0.5 * rate };
        (self.last, self.at) = (drained, now);
    }

    /// Block bytes that may be committed at once.
    fn commitment(&self) -> u64 {
        ((self.rate * COMMIT_TIME.as_secs_f64()) as u64).max(MIN_COMMIT)
    }
}

/// A serving turn's outcome.
pub(super) struct Served {
    peer: PeerId,
    replies: Vec<Message>,
    /// Wants not answered with a block or HAVE, kept for when the block arrives.
    missing: Vec<bitswap::Want>,
    /// Wants for blocks held but not sent: the turn's allowance ran out.
    deferred: Vec<bitswap::Want>,
    blocks: u64,
    bytes: u64,
}

impl Driver {
    /// A serving turn ended: its replies go out.
    pub(super) fn turn_done(&mut self, served: Served, blocks: usize) {
        self.jobs -= 1;
        self.serving_blocks -= blocks;
        self.deliver(served);
    }

    /// Starts serving turns on the blocking pool while there is room: at most [`MAX_JOBS`]
    /// at once (one under an upload cap or budget), each given as many want-blocks as the
    /// measured upload rate has room for.
    pub(super) fn start_jobs(&mut self) {
        // Under an upload cap or budget, one turn at a time, each given what the cap and the
        // budget allow now, so that neither is passed by more than one block.
        let capped = self.budget.is_some() || self.upload.is_some();
        let most = if capped { 1 } else { MAX_JOBS };
        while self.jobs < most {
            let now = Instant::now();
            let allowance = capped.then(|| {
                let rate = self.upload.as_mut().map_or(u64::MAX, |b| b.available(now));
                let budget = self.budget.as_mut().map_or(u64::MAX, |b| b.left(now));
                rate.min(budget)
            });
            if allowance == Some(0) {
                break;
            }
            let bitswap = &self.swarm.behaviour().bitswap;
            let busy = |p: &PeerId| bitswap.pending_bytes(p) >= MAX_PENDING_PER_PEER;
            let committed = bitswap.moving_pending(now) + self.serving_blocks as u64 * BLOCK_ESTIMATE;
            let room = self.upload_meter.commitment().saturating_sub(committed).div_ceil(BLOCK_ESTIMATE);
            let Some(job) = self.engine.next_serve_job(&busy, room as usize, now) else { break };
            let blocks = job.wants.iter().filter(|w| w.kind == WantType::Block).count();
            self.serving_blocks += blocks;
            self.jobs += 1;
            let store = self.store.clone();
            let done = self.done_tx.clone();
            tokio::task::spawn_blocking(move || {
                let _ = done.send(Done::Served(serve(&*store, job, allowance), blocks));
            });
        }
    }

    /// Sends a serving turn's replies and tells the engine what was served.
    fn deliver(&mut self, s: Served) {
        if let Some(b) = &mut self.upload {
            b.take(s.bytes, Instant::now());
        }
        if let Some(b) = &mut self.budget {
            b.take(s.bytes, Instant::now());
        }
        for m in s.replies {
            self.swarm.behaviour_mut().bitswap.send(s.peer, m);
        }
        self.engine.served(s.peer, s.missing, s.deferred, s.blocks, s.bytes);
    }
}

/// Looks up one serving turn's wants and builds the replies: blocks (named by the CID the
/// peer asked with, so that its prefix matches), HAVE, or DONT_HAVE when asked for. Blocks
/// stop once `allowance` bytes (what the upload cap and budget allow now) have been sent;
/// the wants left over are deferred to a later turn.
fn serve(store: &dyn BlockStore, job: ServeJob, allowance: Option<u64>) -> Served {
    enum Answer {
        Block(Bytes),
        Have,
        Missing,
    }
    let get = |cid: &Cid| store.get(cid).ok().flatten().map_or(Answer::Missing, Answer::Block);
    let mut replies = vec![Message::default()];
    let (mut blocks, mut bytes, mut missing, mut deferred) = (0u64, 0u64, Vec::new(), Vec::new());
    for want in job.wants {
        // A want-have is answered from the index, without reading the block, unless the block
        // is small enough to send instead of HAVE, as Kubo does.
        let answer = match want.kind {
            WantType::Have => match store.size(&want.cid).ok().flatten() {
                Some(n) if n as usize > HAVE_AS_BLOCK => Answer::Have,
                Some(_) => get(&want.cid),
                None => Answer::Missing,
            },
            WantType::Block => get(&want.cid),
        };
        let last = replies.last_mut().expect("one reply at least");
        match answer {
            Answer::Have => last.haves.push(want.cid),
            // The upload cap or budget allows no more now: the want waits for a later turn.
            Answer::Block(_) if allowance.is_some_and(|a| bytes >= a) => deferred.push(want),
            Answer::Block(d) => {
                if last.block_bytes() + d.len() > REPLY_BYTES && !last.blocks.is_empty() {
                    replies.push(Message::default());
                }
                blocks += 1;
                bytes += d.len() as u64;
                replies.last_mut().expect("pushed").blocks.push(Block::new_unchecked(want.cid, d));
            }
            Answer::Missing => {
                if want.send_dont_have {
                    last.dont_haves.push(want.cid);
                }
                missing.push(want);
            }
        }
    }
    replies.retain(|m| !m.is_empty());
    Served { peer: job.peer, replies, missing, deferred, blocks, bytes }
}
