//! One connection's Bitswap streams.
//!
//! Peers send Bitswap messages on streams that only ever carry one direction: Kubo keeps one
//! long-lived stream for its wants and opens a new one for each response. So the handler
//! accepts any number of inbound streams (up to [`MAX_INBOUND_STREAMS`] at once), reads
//! messages from each until it ends, and writes its own messages, in order, on one outbound
//! stream that it opens when there is something to send and reopens after an error.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use futures::stream::{FuturesOrdered, FuturesUnordered};
use futures::{FutureExt, StreamExt};
use libp2p::core::upgrade::{InboundUpgrade, OutboundUpgrade, UpgradeInfo};
use libp2p::swarm::handler::{ConnectionEvent, DialUpgradeError, FullyNegotiatedInbound, FullyNegotiatedOutbound};
use libp2p::swarm::{ConnectionHandler, ConnectionHandlerEvent, Stream, StreamProtocol, SubstreamProtocol};

use super::proto::{self, Message, ProtoError, Version, PROTOCOLS};

/// Inbound streams read at once on one connection; more are reset.
pub const MAX_INBOUND_STREAMS: usize = 32;
/// Messages waiting for the outbound stream before the oldest is dropped and reported.
pub const MAX_QUEUED: usize = 1024;
/// Bytes of messages with blocks waiting for the outbound stream ([`Message::queued_size`])
/// before the oldest is dropped and reported. The driver stops serving a peer with
/// `MAX_PENDING_PER_PEER` (8 MiB) queued, so an honest turn (at most 16 blocks of 2 MiB)
/// never reaches this; it bounds a connection whatever the driver does.
pub const MAX_QUEUED_BLOCK_BYTES: usize = 48 << 20;
/// Bytes of messages without blocks (wants, cancels, presences) waiting, likewise: about
/// 30,000 entries, far more than one peer's ledger of wants is answered with.
pub const MAX_QUEUED_URGENT_BYTES: usize = 4 << 20;
/// Entries (wants, cancels, presences) merged into one message from the queue of messages
/// without blocks: what piled up while the stream was busy goes in one write.
pub const MAX_MERGED: usize = 512;
/// Messages read and being decoded at once on one connection; while this many are, no stream
/// is read further.
pub const MAX_DECODING: usize = 4;
/// Messages at least this long are decoded (their blocks hashed) on a blocking thread, so
/// that the connection's task goes on reading and decrypting the next one meanwhile.
pub const DECODE_APART_FROM: usize = 64 << 10;

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
    Malformed(ProtoError),
    /// Messages could not be delivered (the stream failed, or the queue overflowed).
    SendFailed(usize),
    /// The peer speaks no Bitswap version on this connection.
    Unsupported,
    /// Queued block bytes left the queue (written, or dropped with their message).
    Drained(usize),
}

/// A stream's next message, read whole; the flag is set once the stream is to be read no more.
type Reading = BoxFuture<'static, (Stream, Arc<AtomicBool>, std::io::Result<Option<Vec<u8>>>)>;
/// A message being decoded, with its stream's flag.
type Decoding = BoxFuture<'static, (Arc<AtomicBool>, Result<Message, ProtoError>)>;

enum Outbound {
    None,
    Opening,
    Idle(Stream, Version),
    /// Writing a message holding this many block bytes, of this queued size.
    Writing(BoxFuture<'static, (Stream, std::io::Result<()>)>, Version, usize, usize),
    Failed,
}

/// The handler of one connection.
pub struct Handler {
    reading: FuturesUnordered<Reading>,
    /// Messages being decoded, handed to the behaviour in the order they were read.
    decoding: FuturesOrdered<Decoding>,
    /// Streams waiting to be read while [`MAX_DECODING`] messages are being decoded.
    parked: Vec<(Stream, Arc<AtomicBool>)>,
    outbound: Outbound,
    /// Messages without blocks (wants, cancels, presences): small, and others wait on them,
    /// so they go out before any queued block.
    urgent: Queue,
    queue: Queue,
    events: VecDeque<Out>,
    /// Message bytes read from the peer, counted as they arrive (shared by the behaviour).
    arrived: Arc<AtomicU64>,
    /// [`Message::queued_size`] of every message queued or being written, summed over every
    /// connection (shared by the behaviour).
    queued: Arc<AtomicU64>,
}

impl Drop for Handler {
    fn drop(&mut self) {
        // The queues take their own bytes off the total.
        self.queued.fetch_sub(self.writing_size() as u64, Ordering::Relaxed);
    }
}

/// Messages waiting for the outbound stream, at most [`MAX_QUEUED`] of them and `cap` bytes
/// ([`Message::queued_size`]): past either bound the oldest is dropped. Its bytes count in a
/// total shared by every connection.
struct Queue {
    messages: VecDeque<Message>,
    bytes: usize,
    cap: usize,
    total: Arc<AtomicU64>,
}

impl Queue {
    fn new(cap: usize, total: Arc<AtomicU64>) -> Queue {
        Queue { messages: VecDeque::new(), bytes: 0, cap, total }
    }

    /// Adds `m` at the back; returns the messages dropped from the front to make room.
    fn push(&mut self, m: Message) -> Vec<Message> {
        let size = m.queued_size();
        let mut dropped = Vec::new();
        while self.messages.len() >= MAX_QUEUED || (self.bytes + size > self.cap && !self.messages.is_empty()) {
            dropped.extend(self.pop_front());
        }
        self.bytes += size;
        self.total.fetch_add(size as u64, Ordering::Relaxed);
        self.messages.push_back(m);
        dropped
    }

    fn pop_front(&mut self) -> Option<Message> {
        let m = self.messages.pop_front()?;
        let size = m.queued_size();
        self.bytes -= size;
        self.total.fetch_sub(size as u64, Ordering::Relaxed);
        Some(m)
    }

    fn front(&self) -> Option<&Message> {
        self.messages.front()
    }

    fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    fn len(&self) -> usize {
        self.messages.len()
    }

    /// Empties the queue; returns what it held.
    fn take(&mut self) -> VecDeque<Message> {
        self.total.fetch_sub(self.bytes as u64, Ordering::Relaxed);
        self.bytes = 0;
        std::mem::take(&mut self.messages)
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        self.total.fetch_sub(self.bytes as u64, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handler").field("reading", &self.reading.len()).field("queued", &self.queue.len()).finish()
    }
}

impl Handler {
    /// A handler that adds the bytes it reads to `arrived`, and keeps the bytes it has
    /// queued to send counted in `queued`.
    pub fn new(arrived: Arc<AtomicU64>, queued: Arc<AtomicU64>) -> Handler {
        Handler {
            reading: FuturesUnordered::new(),
            decoding: FuturesOrdered::new(),
            parked: Vec::new(),
            outbound: Outbound::None,
            urgent: Queue::new(MAX_QUEUED_URGENT_BYTES, queued.clone()),
            queue: Queue::new(MAX_QUEUED_BLOCK_BYTES, queued.clone()),
            events: VecDeque::new(),
            arrived,
            queued,
        }
    }
}

fn read_next(mut stream: Stream, arrived: Arc<AtomicU64>, ended: Arc<AtomicBool>) -> Reading {
    async move {
        let r = match ended.load(Ordering::Relaxed) {
            true => Ok(None),
            false => proto::read_frame_counting(&mut stream, &arrived).await,
        };
        // A message that came after an earlier one on the stream was found malformed is dropped.
        let r = match r {
            Ok(Some(_)) if ended.load(Ordering::Relaxed) => Ok(None),
            r => r,
        };
        (stream, ended, r)
    }
    .boxed()
}

/// Decodes a message read from a stream: a large one (blocks to hash) on a blocking thread,
/// a small one at once.
fn decode(bytes: Vec<u8>, ended: Arc<AtomicBool>) -> Decoding {
    let decode_here = |bytes: Vec<u8>| Message::decode(bytes::Bytes::from(bytes));
    match tokio::runtime::Handle::try_current() {
        Ok(rt) if bytes.len() >= DECODE_APART_FROM => {
            let job = rt.spawn_blocking(move || decode_here(bytes));
            async move { (ended, job.await.unwrap_or_else(|e| Err(ProtoError::Stopped(e.to_string())))) }.boxed()
        }
        _ => std::future::ready((ended, decode_here(bytes))).boxed(),
    }
}

fn write(mut stream: Stream, bytes: Vec<u8>) -> BoxFuture<'static, (Stream, std::io::Result<()>)> {
    async move {
        let r = proto::write_frame(&mut stream, &bytes).await;
        (stream, r)
    }
    .boxed()
}

impl Handler {
    /// Reports messages dropped unsent.
    fn report_dropped(&mut self, dropped: impl IntoIterator<Item = Message>) {
        let (mut count, mut bytes) = (0, 0);
        for m in dropped {
            count += 1;
            bytes += m.block_bytes();
        }
        if bytes > 0 {
            self.events.push_back(Out::Drained(bytes));
        }
        if count > 0 {
            self.events.push_back(Out::SendFailed(count));
        }
    }

    /// Empties both queues, reporting what was dropped.
    fn drop_queued(&mut self) {
        let dropped: Vec<Message> = self.queue.take().into_iter().chain(self.urgent.take()).collect();
        self.report_dropped(dropped);
    }

    /// The queued size of the message being written, if any.
    fn writing_size(&self) -> usize {
        match &self.outbound {
            Outbound::Writing(_, _, _, size) => *size,
            _ => 0,
        }
    }

    /// Streams parked while decoding was full are read again once it has room.
    fn unpark(&mut self) {
        while self.decoding.len() < MAX_DECODING {
            let Some((stream, ended)) = self.parked.pop() else { break };
            if !ended.load(Ordering::Relaxed) {
                self.reading.push(read_next(stream, self.arrived.clone(), ended));
            }
        }
    }
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
        let dropped = queue.push(m);
        self.report_dropped(dropped);
    }

    fn on_connection_event(&mut self, event: ConnectionEvent<'_, Upgrade, Upgrade>) {
        match event {
            // Over the cap, the stream is dropped, which resets it.
            ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound { protocol: (stream, _), .. })
                if self.reading.len() < MAX_INBOUND_STREAMS =>
            {
                self.reading.push(read_next(stream, self.arrived.clone(), Arc::default()));
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
                self.drop_queued();
                self.outbound = if unsupported { Outbound::Failed } else { Outbound::None };
                if unsupported {
                    self.events.push_back(Out::Unsupported);
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
                    Some(mut m) => {
                        // Wants, cancels and presences queued behind it go in the same write.
                        while m.blocks.is_empty() && !m.full {
                            match self.urgent.front() {
                                Some(next) if !next.full && m.entries() + next.entries() <= MAX_MERGED => {
                                    m.merge(self.urgent.pop_front().expect("front exists"));
                                }
                                _ => break,
                            }
                        }
                        // Counted as queued until written.
                        let (bytes, size) = (m.block_bytes(), m.queued_size());
                        self.queued.fetch_add(size as u64, Ordering::Relaxed);
                        self.outbound = Outbound::Writing(write(stream, m.encode(version)), version, bytes, size);
                        continue;
                    }
                    None => self.outbound = Outbound::Idle(stream, version),
                },
                Outbound::Writing(mut fut, version, bytes, size) => match fut.poll_unpin(cx) {
                    Poll::Ready((stream, r)) => {
                        self.queued.fetch_sub(size as u64, Ordering::Relaxed);
                        if r.is_err() {
                            // The message is lost with the stream; the next one opens a new stream.
                            self.events.push_back(Out::SendFailed(1));
                        } else {
                            self.outbound = Outbound::Idle(stream, version);
                        }
                        if bytes > 0 {
                            self.events.push_back(Out::Drained(bytes));
                        }
                        continue;
                    }
                    Poll::Pending => self.outbound = Outbound::Writing(fut, version, bytes, size),
                },
                other => self.outbound = other,
            }
            match self.decoding.poll_next_unpin(cx) {
                Poll::Ready(Some((_, Ok(m)))) => {
                    self.events.push_back(Out::Received(m));
                    self.unpark();
                    continue;
                }
                // A malformed message ends its stream.
                Poll::Ready(Some((ended, Err(e)))) => {
                    ended.store(true, Ordering::Relaxed);
                    self.events.push_back(Out::Malformed(e));
                    self.unpark();
                    continue;
                }
                Poll::Ready(None) | Poll::Pending => {}
            }
            match self.reading.poll_next_unpin(cx) {
                Poll::Ready(Some((stream, ended, Ok(Some(bytes))))) => {
                    self.decoding.push_back(decode(bytes, ended.clone()));
                    self.parked.push((stream, ended));
                    self.unpark();
                    continue;
                }
                Poll::Ready(Some((_, _, Ok(None)))) => continue,
                Poll::Ready(Some((_, _, Err(e)))) => {
                    if e.kind() == std::io::ErrorKind::InvalidData {
                        self.events.push_back(Out::Malformed(ProtoError::Frame(e)));
                    }
                    continue;
                }
                Poll::Ready(None) | Poll::Pending => {}
            }
            return Poll::Pending;
        }
    }
}
