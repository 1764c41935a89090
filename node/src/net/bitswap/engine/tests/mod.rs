//! The engine's tests, through its fake outbox: fetching (`wants.rs`), serving (`serving.rs`)
//! and scores (`score.rs`); the helpers they share are here.

mod score;
mod serving;
mod wants;

use super::*;
use cairn_merkle::hash::{CidFormat, RAW};
use std::time::Duration;

#[derive(Default)]
pub(super) struct Sent(pub(super) Vec<(PeerId, Message)>);

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

pub(super) fn block(data: &[u8]) -> Block {
    Block::new_unchecked(
        CidFormat { version: 1, hash: Default::default() }.cid(RAW, data),
        Bytes::copy_from_slice(data),
    )
}

pub(super) fn far() -> Instant {
    Instant::now() + Duration::from_secs(60)
}

/// Fetches every block at `priority`, and forgets the want-haves sent. Returns the
/// receivers, to keep the waiters alive.
pub(super) fn want_all(
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

/// Asserts that `sent` cancels the want-block for `cid` at `from` and asks `to` for it.
pub(super) fn assert_moved(sent: &[(PeerId, Message)], cid: Cid, from: PeerId, to: PeerId) {
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
pub(super) fn seed_and_other(
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

/// Wants the block of `data` at `priority`; each of `peers` answers, HAVE if among
/// `holders`. Returns its CID; the waiter's receiver joins `rxs`.
#[allow(clippy::too_many_arguments)]
pub(super) fn want_answered(
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
