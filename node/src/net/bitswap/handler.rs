//! One connection's Bitswap streams.
//!
//! Peers send Bitswap messages on streams that only ever carry one direction: Kubo keeps one
//! long-lived stream for its wants and opens a new one for each response. So the handler
//! accepts any number of inbound streams (up to [`MAX_INBOUND_STREAMS`] at once), reads
//! messages from each until it ends, and writes its own messages, in order, on one outbound
//! stream that it opens when there is something to send and reopens after an error.

use std::collections::VecDeque;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use libp2p::core::upgrade::{InboundUpgrade, OutboundUpgrade, UpgradeInfo};
use libp2p::swarm::handler::{ConnectionEvent, DialUpgradeError, FullyNegotiatedInbound, FullyNegotiatedOutbound};
use libp2p::swarm::{ConnectionHandler, ConnectionHandlerEvent, Stream, StreamProtocol, SubstreamProtocol};

use super::proto::{self, Message, Version, PROTOCOLS};

/// Inbound streams read at once on one connection; more are reset.
pub const MAX_INBOUND_STREAMS: usize = 32;
/// Messages waiting for the outbound stream before the oldest is dropped and reported.
pub const MAX_QUEUED: usize = 1024;

/// Offers every Bitswap version and hands over the stream with the one negotiated.
#[derive(Debug, Clone)]
pub struct Upgrade;

impl UpgradeInfo for Upgrade {
    type Info = StreamProtocol;
    type InfoIter = std::vec::IntoIter<StreamProtocol>;

    fn protocol_info(&self) -> Self::InfoIter {
        PROTOCOLS.iter().map(|(p, _)| StreamProtocol::new(p)).collect::<Vec<_>>().into_iter()
    }
}

impl InboundUpgrade<Stream> for Upgrade {
    type Output = (Stream, StreamProtocol);
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Self::Output, Self::Error>>;

    fn upgrade_inbound(self, stream: Stream, protocol: StreamProtocol) -> Self::Future {
        std::future::ready(Ok((stream, protocol)))
    }
}

impl OutboundUpgrade<Stream> for Upgrade {
    type Output = (Stream, StreamProtocol);
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Self::Output, Self::Error>>;

    fn upgrade_outbound(self, stream: Stream, protocol: StreamProtocol) -> Self::Future {
        std::future::ready(Ok((stream, protocol)))
    }
}

/// From the behaviour to the handler.
#[derive(Debug)]
pub enum In {
    /// Send a message.
    Send(Message),
}

/// From the handler to the behaviour.
#[derive(Debug)]
pub enum Out {
    /// A message arrived.
    Received(Message),
    /// The peer sent something that is not a valid Bitswap message.
    Malformed(String),
    /// Messages could not be delivered (the stream failed, or the queue overflowed).
    SendFailed(usize),
    /// The peer speaks no Bitswap version on this connection.
    Unsupported,
    /// Queued block bytes left the queue (written, or dropped with their message).
    Drained(usize),
}

type Reading = BoxFuture<'static, (Stream, std::io::Result<Option<Vec<u8>>>)>;

enum Outbound {
    None,
    Opening,
    Idle(Stream, Version),
    /// Writing a message holding this many block bytes.
    Writing(BoxFuture<'static, (Stream, std::io::Result<()>)>, Version, usize),
    Failed,
}

/// The handler of one connection.
pub struct Handler {
    reading: FuturesUnordered<Reading>,
    outbound: Outbound,
    /// Messages without blocks (wants, cancels, presences): small, and others wait on them,
    /// so they go out before any queued block.
    urgent: VecDeque<Message>,
    queue: VecDeque<Message>,
    events: VecDeque<Out>,
    /// Message bytes read from the peer, counted as they arrive (shared by the behaviour).
    arrived: Arc<AtomicU64>,
}

impl std::fmt::Debug for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handler").field("reading", &self.reading.len()).field("queued", &self.queue.len()).finish()
    }
}

impl Handler {
    /// A handler that adds the bytes it reads to `arrived`.
    pub fn new(arrived: Arc<AtomicU64>) -> Handler {
        Handler {
            reading: FuturesUnordered::new(),
            outbound: Outbound::None,
            urgent: VecDeque::new(),
            queue: VecDeque::new(),
            events: VecDeque::new(),
            arrived,
        }
    }
}

fn read_next(mut stream: Stream, arrived: Arc<AtomicU64>) -> Reading {
    async move {
        let r = proto::read_frame_counting(&mut stream, &arrived).await;
        (stream, r)
    }
    .boxed()
}

fn write(mut stream: Stream, bytes: Vec<u8>) -> BoxFuture<'static, (Stream, std::io::Result<()>)> {
    async move {
        let r = proto::write_frame(&mut stream, &bytes).await;
        (stream, r)
    }
    .boxed()
}

impl ConnectionHandler for Handler {
    type FromBehaviour = In;
    type ToBehaviour = Out;
    type InboundProtocol = Upgrade;
    type OutboundProtocol = Upgrade;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = ();

    fn listen_protocol(&self) -> SubstreamProtocol<Upgrade> {
        SubstreamProtocol::new(Upgrade, ())
    }

    fn connection_keep_alive(&self) -> bool {
        !self.queue.is_empty()
            || !self.urgent.is_empty()
            || matches!(self.outbound, Outbound::Writing(..) | Outbound::Opening)
    }

    fn on_behaviour_event(&mut self, In::Send(m): In) {
        if matches!(self.outbound, Outbound::Failed) {
            self.events.push_back(Out::SendFailed(1));
            return;
        }
        let queue = if m.blocks.is_empty() { &mut self.urgent } else { &mut self.queue };
        if queue.len() >= MAX_QUEUED {
            if let Some(old) = queue.pop_front() {
                self.events.push_back(Out::Drained(old.block_bytes()));
            }
            self.events.push_back(Out::SendFailed(1));
        }
        queue.push_back(m);
    }

    fn on_connection_event(&mut self, event: ConnectionEvent<'_, Upgrade, Upgrade>) {
        match event {
            // Over the cap, the stream is dropped, which resets it.
            ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound { protocol: (stream, _), .. })
                if self.reading.len() < MAX_INBOUND_STREAMS =>
            {
                self.reading.push(read_next(stream, self.arrived.clone()));
            }
            ConnectionEvent::FullyNegotiatedOutbound(FullyNegotiatedOutbound {
                protocol: (stream, protocol), ..
            }) => {
                let version = Version::from_protocol(protocol.as_ref()).unwrap_or(Version::V1_0);
                self.outbound = Outbound::Idle(stream, version);
            }
            ConnectionEvent::DialUpgradeError(DialUpgradeError { error, .. }) => {
                // A peer without Bitswap never will have it on this connection.
                let unsupported = matches!(error, libp2p::swarm::StreamUpgradeError::NegotiationFailed);
                let dropped = self.queue.len() + self.urgent.len();
                let bytes: usize = self.queue.iter().map(Message::block_bytes).sum();
                if bytes > 0 {
                    self.events.push_back(Out::Drained(bytes));
                }
                self.queue.clear();
                self.urgent.clear();
                self.outbound = if unsupported { Outbound::Failed } else { Outbound::None };
                if unsupported {
                    self.events.push_back(Out::Unsupported);
                }
                if dropped > 0 {
                    self.events.push_back(Out::SendFailed(dropped));
                }
            }
            _ => {}
        }
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<ConnectionHandlerEvent<Upgrade, (), Out>> {
        loop {
            if let Some(e) = self.events.pop_front() {
                return Poll::Ready(ConnectionHandlerEvent::NotifyBehaviour(e));
            }
            match std::mem::replace(&mut self.outbound, Outbound::None) {
                Outbound::None if !self.queue.is_empty() || !self.urgent.is_empty() => {
                    self.outbound = Outbound::Opening;
                    return Poll::Ready(ConnectionHandlerEvent::OutboundSubstreamRequest {
                        protocol: SubstreamProtocol::new(Upgrade, ()),
                    });
                }
                Outbound::Idle(stream, version) => match self.urgent.pop_front().or_else(|| self.queue.pop_front()) {
                    Some(m) => {
                        let bytes = m.block_bytes();
                        self.outbound = Outbound::Writing(write(stream, m.encode(version)), version, bytes);
                        continue;
                    }
                    None => self.outbound = Outbound::Idle(stream, version),
                },
                Outbound::Writing(mut fut, version, bytes) => match fut.poll_unpin(cx) {
                    Poll::Ready((stream, Ok(()))) => {
                        self.outbound = Outbound::Idle(stream, version);
                        if bytes > 0 {
                            self.events.push_back(Out::Drained(bytes));
                        }
                        continue;
                    }
                    Poll::Ready((_, Err(_))) => {
                        // The message is lost with the stream; the next one opens a new stream.
                        self.events.push_back(Out::SendFailed(1));
                        if bytes > 0 {
                            self.events.push_back(Out::Drained(bytes));
                        }
                        continue;
                    }
                    Poll::Pending => self.outbound = Outbound::Writing(fut, version, bytes),
                },
                other => self.outbound = other,
            }
            match self.reading.poll_next_unpin(cx) {
                Poll::Ready(Some((stream, Ok(Some(bytes))))) => {
                    match Message::decode(bytes::Bytes::from(bytes)) {
                        Ok(m) => {
                            self.reading.push(read_next(stream, self.arrived.clone()));
                            self.events.push_back(Out::Received(m));
                        }
                        // A malformed message ends its stream.
                        Err(e) => self.events.push_back(Out::Malformed(e.to_string())),
                    }
                    continue;
                }
                Poll::Ready(Some((_, Ok(None)))) => continue,
                Poll::Ready(Some((_, Err(e)))) => {
                    if e.kind() == std::io::ErrorKind::InvalidData {
                        self.events.push_back(Out::Malformed(e.to_string()));
                    }
                    continue;
                }
                Poll::Ready(None) | Poll::Pending => {}
            }
            return Poll::Pending;
        }
    }
}
