//! Bitswap's side of the driver: peers' messages into the engine (blocks received are stored
//! before anyone sees them), the node's fetches, misbehaving peers banned.

use std::time::Instant;

use cairn_merkle::{Block, Cid};
use tokio::sync::oneshot;

use super::routing::PROVIDER_SEARCH_DELAY;
use super::{Done, Driver};
use crate::net::bitswap::engine::Stats;
use crate::net::{bitswap, dht, PeerId};
use crate::store::StoreError;

impl Driver {
    /// A fetch from the node: answered from the store if the block landed meanwhile, else a
    /// want for the engine (and the hinted providers dialed), and a DHT lookup later if no
    /// peer has it by then.
    pub(super) fn fetch(&mut self, cid: Cid, priority: i32, deadline: Instant, waiter: bitswap::engine::Waiter) {
        // Stored since the reader looked (the origin's CAR streaming in, a read-ahead
        // landing): no want needed.
        if let Ok(Some(data)) = self.store.get(&cid) {
            let _ = waiter.send(Ok(data));
            return;
        }
        // The empty block is known without asking, and Kubo never sends it: made and stored
        // here, as if it had arrived.
        if cairn_merkle::hash::names_empty_block(&cid) {
            let stored = self.store.put_many(&[Block::new_unchecked(cid, bytes::Bytes::new())]);
            let _ = waiter.send(
                stored.map(|_| bytes::Bytes::new()).map_err(|e| bitswap::engine::FetchError::Store(cid, e.to_string())),
            );
            return;
        }
        self.dial_hinted(&cid);
        let now = Instant::now();
        self.engine.fetch(cid, priority, waiter, deadline, now, &mut self.swarm.behaviour_mut().bitswap);
        let can_look = self.dht != dht::DhtMode::Off || self.routers.is_some();
        if can_look && self.lookup_due.len() < 4096 {
            self.lookup_due.push_back((now + PROVIDER_SEARCH_DELAY, cid));
        }
    }

    /// Blocks stored (or not): the engine answers their waiters.
    pub(super) fn stored(
        &mut self,
        blocks: &[Block],
        result: Result<(), StoreError>,
        ack: Option<oneshot::Sender<()>>,
    ) {
        self.engine.stored(blocks, result.as_ref().map(|_| ()), &mut self.swarm.behaviour_mut().bitswap);
        if let Some(ack) = ack {
            let _ = ack.send(());
        }
    }

    /// Bitswap's counters.
    pub(super) fn stats(&self) -> Stats {
        Stats { queued_bytes: self.swarm.behaviour().bitswap.queued_bytes(), ..self.engine.stats() }
    }

    /// Tells the origins that peers are delivering when block bytes arrived since the last
    /// tick, a block still on its way included: a crowd's slow but steady peers are not stalled.
    pub(super) fn note_arrivals(&mut self) {
        let arrived = self.swarm.behaviour().bitswap.arrived_bytes();
        if arrived > self.arrived {
            self.arrived = arrived;
            if let Some(origin) = &self.origin {
                origin.peers_delivered();
            }
        }
    }

    pub(super) fn on_bitswap(&mut self, ev: bitswap::Event) {
        let now = Instant::now();
        match ev {
            bitswap::Event::Connected(peer) => {
                if self.engine.is_banned(&peer, now) {
                    let _ = self.swarm.disconnect_peer_id(peer);
                    return;
                }
                self.engine.connected(peer, &mut self.swarm.behaviour_mut().bitswap);
            }
            bitswap::Event::Disconnected(peer) => {
                // A banned peer stays blocked until the tick's `lifted_bans` lets it in.
                self.engine.disconnected(peer, &mut self.swarm.behaviour_mut().bitswap);
            }
            bitswap::Event::Message { peer, mut message } => {
                // A node that opted out of serving answers no wants, not even HAVEs: it only
                // takes the blocks it asked for.
                if !self.serve {
                    message.wants.clear();
                }
                // Want-haves go into the peer's ledger with its want-blocks and are answered on
                // a serving turn, off this task, under the same caps; a turn takes them before
                // any want-block, since other peers wait on the answer to choose a source.
                let blocks = self.engine.received(peer, message, now, &mut self.swarm.behaviour_mut().bitswap);
                if self.engine.is_banned(&peer, now) {
                    self.ban(peer);
                }
                if !blocks.is_empty() {
                    if let Some(origin) = &self.origin {
                        origin.peers_delivered();
                    }
                    self.store_blocks(blocks, None);
                }
            }
            bitswap::Event::Malformed { peer, reason } => {
                tracing::debug!("malformed bitswap message from {peer}: {reason}");
                if self.engine.penalize(peer, bitswap::engine::PENALTY_MALFORMED, now) {
                    self.ban(peer);
                }
            }
            bitswap::Event::SendFailed { peer, count } => {
                tracing::debug!("{count} bitswap messages to {peer} were lost");
            }
        }
    }

    fn ban(&mut self, peer: PeerId) {
        tracing::info!("banning {peer} for misbehaving");
        self.swarm.behaviour_mut().blocked.block_peer(peer);
    }

    /// Stores received blocks on the blocking pool; the engine hears when they are safe.
    pub(super) fn store_blocks(&mut self, blocks: Vec<Block>, ack: Option<oneshot::Sender<()>>) {
        let store = self.store.clone();
        let done = self.done_tx.clone();
        tokio::task::spawn_blocking(move || {
            let result = store.put_many(&blocks).map(|_| ());
            let _ = done.send(Done::Stored { blocks, result, ack });
        });
    }
}
