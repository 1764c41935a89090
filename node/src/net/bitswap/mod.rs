//! Bitswap 1.2.0 (with 1.1.0 and 1.0.0), wire-compatible with Kubo.
//!
//! - [`proto`]: the messages, CID prefixes and framing;
//! - [`handler`]: one connection's streams;
//! - this module: the [`Behaviour`] that the swarm drives, which knows the connected Bitswap
//!   peers and their versions and passes messages between them and the engine;
//! - [`engine`]: serving wants from the store and fetching blocks for readers.

pub mod engine;
pub mod handler;
pub mod proto;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use libp2p::core::transport::PortUse;
use libp2p::core::Endpoint;
use libp2p::swarm::{
    ConnectionClosed, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, NotifyHandler, THandler,
    THandlerInEvent, THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId};

pub use handler::{In, Out};
pub use proto::{Message, ProtoError, Version, Want, WantType};

/// A connection whose queue has not moved for this long counts as not reading. A slow link
/// shared by many peers moves each queue only every few seconds (a block at a time), and
/// counting such a queue out would let more be committed than the upload can carry.
pub const STUCK: Duration = Duration::from_secs(10);

/// What the behaviour reports.
#[derive(Debug)]
pub enum Event {
    /// A peer's first connection opened.
    Connected(PeerId),
    /// A peer's last connection closed, or it turned out not to speak Bitswap.
    Disconnected(PeerId),
    /// A peer sent a message.
    Message {
        /// The sender.
        peer: PeerId,
        /// What it sent.
        message: Message,
    },
    /// A peer sent bytes that are not a Bitswap message.
    Malformed {
        /// The sender.
        peer: PeerId,
        /// What was wrong.
        reason: ProtoError,
    },
    /// Messages to a peer were lost.
    SendFailed {
        /// The peer.
        peer: PeerId,
        /// How many.
        count: usize,
    },
}

/// Bitswap as a swarm behaviour.
#[derive(Debug, Default)]
pub struct Behaviour {
    /// Each peer's open connections, the one to send on last: the newest, or the one the peer
    /// last sent a message over. A peer that comes back (a restart, a new address) while its
    /// old connection still looks open here is reached on the new one; the old one may be
    /// dead, and a TCP connection to a host that vanished can take many minutes to fail.
    peers: HashMap<PeerId, Vec<ConnectionId>>,
    /// Block bytes queued on each connection's handler, and when its queue last moved (began,
    /// or had a message written).
    pending: HashMap<ConnectionId, (u64, Instant)>,
    out: VecDeque<ToSwarm<Event, In>>,
    /// Message bytes read from peers so far, counted as they arrive.
    arrived: Arc<AtomicU64>,
    /// Bytes of messages queued to send on every connection ([`Message::queued_size`]).
    queued: Arc<AtomicU64>,
    /// Block bytes written to peers so far (or dropped with their connection).
    drained: u64,
}

impl Behaviour {
    /// Bytes of messages queued to send now, over every connection.
    pub fn queued_bytes(&self) -> u64 {
        self.queued.load(Ordering::Relaxed)
    }

    /// Message bytes read from peers so far, a partly received message included: it grows
    /// while a block is on its way over a slow link.
    pub fn arrived_bytes(&self) -> u64 {
        self.arrived.load(Ordering::Relaxed)
    }

    /// Queues a message to `peer`; false when no connection to it is open.
    pub fn send(&mut self, peer: PeerId, message: Message) -> bool {
        let Some(conn) = self.peers.get(&peer).and_then(|c| c.last().copied()) else {
            return false;
        };
        let bytes = message.block_bytes() as u64;
        tracing::trace!(target: "cairn_trace", %peer, msg = %message.summary(), "send");
        if bytes > 0 {
            let now = Instant::now();
            let (queued, moved) = self.pending.entry(conn).or_insert((0, now));
            if *queued == 0 {
                *moved = now;
            }
            *queued += bytes;
        }
        self.out.push_back(ToSwarm::NotifyHandler {
            peer_id: peer,
            handler: NotifyHandler::One(conn),
            event: In::Send(message),
        });
        true
    }

    /// Block bytes queued to `peer` and not yet written: a peer that does not read holds at
    /// most what the serving side lets pile up here.
    pub fn pending_bytes(&self, peer: &PeerId) -> u64 {
        self.peers.get(peer).map_or(0, |conns| conns.iter().filter_map(|c| self.pending.get(c)).map(|(q, _)| q).sum())
    }

    /// Block bytes queued and not yet written on connections whose queues moved within
    /// [`STUCK`]: what competes for the upload now. A peer that stops reading holds its queue
    /// still, and it does not count here (its own cap, [`Behaviour::pending_bytes`], holds it).
    pub fn moving_pending(&self, now: Instant) -> u64 {
        self.pending.values().filter(|(_, moved)| now.saturating_duration_since(*moved) < STUCK).map(|(q, _)| q).sum()
    }

    /// Block bytes that left the queues so far: what the upload took.
    pub fn drained_bytes(&self) -> u64 {
        self.drained
    }

    fn connected(&mut self, peer: PeerId, id: ConnectionId) {
        let connections = self.peers.entry(peer).or_default();
        connections.push(id);
        if connections.len() == 1 {
            self.out.push_back(ToSwarm::GenerateEvent(Event::Connected(peer)));
        }
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = handler::Handler;
    type ToSwarm = Event;

    fn handle_established_inbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        _local: &Multiaddr,
        _remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.connected(peer, id);
        Ok(handler::Handler::new(self.arrived.clone(), self.queued.clone()))
    }

    fn handle_established_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        _addr: &Multiaddr,
        _role: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.connected(peer, id);
        Ok(handler::Handler::new(self.arrived.clone(), self.queued.clone()))
    }

    fn on_swarm_event(&mut self, event: FromSwarm<'_>) {
        if let FromSwarm::ConnectionClosed(ConnectionClosed { peer_id, connection_id, .. }) = event {
            self.pending.remove(&connection_id);
            if let Some(connections) = self.peers.get_mut(&peer_id) {
                connections.retain(|c| *c != connection_id);
                if connections.is_empty() {
                    self.peers.remove(&peer_id);
                    self.out.push_back(ToSwarm::GenerateEvent(Event::Disconnected(peer_id)));
                }
            }
        }
    }

    fn on_connection_handler_event(&mut self, peer: PeerId, id: ConnectionId, event: THandlerOutEvent<Self>) {
        let event = match event {
            Out::Drained(n) => {
                tracing::trace!(target: "cairn_trace", %peer, bytes = n, "drained");
                self.drained += n as u64;
                if let Some((queued, moved)) = self.pending.get_mut(&id) {
                    *queued = queued.saturating_sub(n as u64);
                    *moved = Instant::now();
                }
                return;
            }
            // Nothing is sent over this connection again; without another, the peer is gone
            // as far as Bitswap goes.
            Out::Unsupported => match self.peers.get_mut(&peer) {
                Some(connections) => {
                    connections.retain(|c| *c != id);
                    if !connections.is_empty() {
                        return;
                    }
                    self.peers.remove(&peer);
                    Event::Disconnected(peer)
                }
                None => return,
            },
            Out::Received(message) => {
                tracing::trace!(target: "cairn_trace", %peer, msg = %message.summary(), "recv");
                // The peer is there on this connection: answer on it.
                if let Some(connections) = self.peers.get_mut(&peer) {
                    if let Some(at) = connections.iter().position(|c| *c == id) {
                        let heard = connections.remove(at);
                        connections.push(heard);
                    }
                }
                Event::Message { peer, message }
            }
            Out::Malformed(reason) => Event::Malformed { peer, reason },
            Out::SendFailed(count) => Event::SendFailed { peer, count },
        };
        self.out.push_back(ToSwarm::GenerateEvent(event));
    }

    fn poll(&mut self, _cx: &mut Context<'_>) -> Poll<ToSwarm<Event, THandlerInEvent<Self>>> {
        match self.out.pop_front() {
            Some(e) => Poll::Ready(e),
            None => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The connection the next message to `peer` goes out on.
    fn sends_on(b: &mut Behaviour, peer: PeerId) -> ConnectionId {
        assert!(b.send(peer, Message::default()));
        loop {
            match b.out.pop_back().expect("a queued message") {
                ToSwarm::NotifyHandler { peer_id, handler: NotifyHandler::One(conn), .. } if peer_id == peer => {
                    return conn
                }
                _ => continue,
            }
        }
    }

    #[test]
    fn messages_go_on_the_newest_connection_or_the_one_the_peer_last_spoke_on() {
        let mut b = Behaviour::default();
        let peer = PeerId::random();
        let addr: Multiaddr = "/ip4/127.0.0.1/tcp/4001".parse().unwrap();
        let (old, new) = (ConnectionId::new_unchecked(1), ConnectionId::new_unchecked(2));
        assert!(!b.send(peer, Message::default()), "no connection yet");
        b.handle_established_inbound_connection(old, peer, &addr, &addr).unwrap();
        assert_eq!(sends_on(&mut b, peer), old);
        // The peer came back over a new connection while the old one still looks open.
        b.handle_established_outbound_connection(new, peer, &addr, Endpoint::Dialer, PortUse::Reuse).unwrap();
        assert_eq!(sends_on(&mut b, peer), new);
        // It speaks on the old one: that one is alive, answer there.
        b.on_connection_handler_event(peer, old, Out::Received(Message::default()));
        assert_eq!(sends_on(&mut b, peer), old);
        b.on_connection_handler_event(peer, new, Out::Received(Message::default()));
        assert_eq!(sends_on(&mut b, peer), new);
        // A connection that turns out not to speak Bitswap is never used again.
        b.on_connection_handler_event(peer, new, Out::Unsupported);
        assert_eq!(sends_on(&mut b, peer), old);
        b.on_connection_handler_event(peer, old, Out::Unsupported);
        assert!(!b.send(peer, Message::default()));
    }
}
