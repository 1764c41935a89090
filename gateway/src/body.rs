//! Response bodies: small ones held whole, large ones streamed from a blocking producer.
//!
//! The node's store is synchronous (RocksDB), so a response that reads many blocks runs on a
//! blocking thread and hands its bytes to hyper through a bounded channel. When the client
//! goes away the channel closes, the producer's next send fails with `BrokenPipe`, and the
//! read stops: an abandoned download costs at most a few chunks.
//!
//! A client slower than the producer does not hold the producer's thread: once the channel
//! is full, what the producer sends is set aside ([`ChunkSender::paused`]), and a producer
//! that stops at such a point (the readers in `wait.rs` do, between blocks) lets its
//! thread go while the runtime hands the set-aside chunks to the client
//! ([`ChunkSender::drain`]). A producer that goes on sending regardless waits on its thread
//! once [`SET_ASIDE_MAX`] bytes are set aside. A client that takes nothing for
//! [`SEND_TIMEOUT`] is cut off either way.

use std::collections::VecDeque;
use std::future::Future;
use std::io::{self, Write};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::mpsc;

/// The body of every response.
pub type Body = BoxBody<Bytes, io::Error>;

/// Chunks in flight between a producer and hyper.
const CHANNEL_DEPTH: usize = 8;
/// The longest a producer waits for a client to take a chunk.
pub const SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
/// A [`ChunkWriter`] sends once it holds this much.
const WRITE_CHUNK: usize = 64 << 10;
/// Bytes set aside for a slow client past which the producer waits on its thread: a little
/// over the largest block (2 MiB), what a producer that stops between blocks can send past
/// a full channel.
pub const SET_ASIDE_MAX: usize = (2 << 20) + (128 << 10);

/// A body holding `bytes`.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed()
}

/// An empty body.
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// A streamed body and the sender that feeds it. `len`, when known, is the exact number of
/// bytes the producer will send (hyper then sends `Content-Length` rather than chunks).
/// Call it inside the runtime; the sender is then used from blocking threads.
pub fn channel(len: Option<u64>) -> (ChunkSender, Body) {
    let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
    let sender = ChunkSender {
        tx,
        rt: tokio::runtime::Handle::current(),
        delivered: Arc::default(),
        skip: Arc::default(),
        aside: Arc::default(),
    };
    (sender, ChannelBody { rx, len }.boxed())
}

/// The producing end of a streamed body; used from blocking threads.
///
/// A producer that stopped at a block being fetched and starts over from the beginning (it
/// cannot go on from where it stopped) calls [`ChunkSender::replay`] first: the bytes it
/// already delivered are then dropped as it sends them again, and the client sees one
/// unbroken body.
#[derive(Debug, Clone)]
pub struct ChunkSender {
    tx: mpsc::Sender<io::Result<Bytes>>,
    rt: tokio::runtime::Handle,
    /// Bytes handed to the body so far.
    delivered: Arc<AtomicU64>,
    /// Bytes still to drop before sending again (see [`ChunkSender::replay`]).
    skip: Arc<AtomicU64>,
    /// Chunks set aside while the channel is full, in order, and their bytes.
    aside: Arc<std::sync::Mutex<(VecDeque<Bytes>, usize)>>,
}

impl ChunkSender {
    /// Sends a chunk. When the client is slower than the producer (the channel is full), the
    /// chunk is set aside, in order, for [`ChunkSender::drain`] ([`ChunkSender::paused`] then
    /// says so); past [`SET_ASIDE_MAX`] bytes set aside, the call drains them itself, waiting
    /// on this thread. Fails with `BrokenPipe` once the client is gone, and `TimedOut` when
    /// it takes nothing for [`SEND_TIMEOUT`].
    pub fn send(&self, mut chunk: Bytes) -> io::Result<()> {
        let skip = self.skip.load(Ordering::Relaxed);
        if skip > 0 {
            let dropped = skip.min(chunk.len() as u64);
            self.skip.fetch_sub(dropped, Ordering::Relaxed);
            chunk = chunk.slice(dropped as usize..);
        }
        if chunk.is_empty() {
            return Ok(());
        }
        let n = chunk.len();
        let over = {
            let mut aside = self.aside.lock().map_err(|_| io::Error::other("body lock poisoned"))?;
            if aside.0.is_empty() {
                match self.tx.try_send(Ok(chunk)) {
                    Ok(()) => {
                        self.delivered.fetch_add(n as u64, Ordering::Relaxed);
                        return Ok(());
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return Err(gone()),
                    Err(mpsc::error::TrySendError::Full(item)) => aside.0.push_back(item.unwrap_or_default()),
                }
            } else {
                aside.0.push_back(chunk);
            }
            aside.1 += n;
            self.delivered.fetch_add(n as u64, Ordering::Relaxed);
            aside.1 > SET_ASIDE_MAX
        };
        if over {
            self.rt.block_on(self.drain())?;
        }
        Ok(())
    }

    /// Whether chunks are set aside for a slow client: a producer that can stop here and go
    /// on later should, and let [`ChunkSender::drain`] run on the runtime.
    pub fn paused(&self) -> bool {
        self.aside.lock().map(|a| !a.0.is_empty()).unwrap_or(false)
    }

    /// Hands the chunks set aside to the client, in order, as it takes them; call it while
    /// the producer is stopped. Fails as [`ChunkSender::send`] does.
    pub async fn drain(&self) -> io::Result<()> {
        loop {
            let next = {
                let mut aside = self.aside.lock().map_err(|_| io::Error::other("body lock poisoned"))?;
                let next = aside.0.pop_front();
                aside.1 -= next.as_ref().map_or(0, Bytes::len);
                next
            };
            let Some(chunk) = next else { return Ok(()) };
            match tokio::time::timeout(SEND_TIMEOUT, self.tx.send(Ok(chunk))).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(gone()),
                Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "client stopped reading")),
            }
        }
    }

    /// The producer starts over from its first byte: as many bytes as were delivered so far
    /// are dropped from what it sends next.
    pub fn replay(&self) {
        self.skip.store(self.delivered.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    /// Ends the body with an error: hyper aborts the response, so the client sees a truncated
    /// transfer rather than a short body that looks complete.
    pub async fn fail_async(&self, err: io::Error) {
        let _ = self.tx.send(Err(err)).await;
    }

    /// A buffered `Write` over this sender.
    pub fn writer(&self) -> ChunkWriter {
        ChunkWriter { tx: self.clone(), buf: BytesMut::with_capacity(WRITE_CHUNK) }
    }
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "client went away")
}

/// `Write` into a streamed body, in chunks of about 64 KiB.
#[derive(Debug)]
pub struct ChunkWriter {
    tx: ChunkSender,
    buf: BytesMut,
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= WRITE_CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let chunk = self.buf.split().freeze();
        self.tx.send(chunk)
    }
}

/// The consuming end, polled by hyper.
struct ChannelBody {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    len: Option<u64>,
}

impl HttpBody for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.rx.poll_recv(cx).map(|item| item.map(|r| r.map(Frame::data)))
    }

    fn size_hint(&self) -> SizeHint {
        self.len.map_or_else(SizeHint::default, SizeHint::with_exact)
    }
}

/// `body`, holding `permit` until it is sent or dropped, and cut off with an error at
/// `deadline` (so that a client reading a trickle cannot hold a request slot for ever).
pub fn limited(body: Body, permit: tokio::sync::OwnedSemaphorePermit, deadline: tokio::time::Instant) -> Body {
    Limited { inner: body, _permit: permit, deadline: Box::pin(tokio::time::sleep_until(deadline)) }.boxed()
}

struct Limited {
    inner: Body,
    _permit: tokio::sync::OwnedSemaphorePermit,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl HttpBody for Limited {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if self.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the response outlasted Gateway.MaxRequestDuration",
            ))));
        }
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Past a full channel, chunks are set aside (the producer is told to pause) rather than
    /// waited on; past [`SET_ASIDE_MAX`] set aside, a send waits on its thread; the client
    /// gets every chunk, in order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn chunks_set_aside_for_a_slow_client_are_bounded_and_kept_in_order() {
        let (tx, mut body) = channel(None);
        let sender = tx.clone();
        let paused_at = tokio::task::spawn_blocking(move || {
            let mut paused_at = None;
            for i in 0..(CHANNEL_DEPTH + 4) as u8 {
                sender.send(Bytes::from(vec![i; 1000])).unwrap();
                if paused_at.is_none() && sender.paused() {
                    paused_at = Some(i);
                }
            }
            paused_at
        })
        .await
        .unwrap();
        assert_eq!(paused_at, Some(CHANNEL_DEPTH as u8), "paused once the channel was full, not before");
        let sender = tx.clone();
        let big = tokio::task::spawn_blocking(move || sender.send(Bytes::from(vec![255u8; SET_ASIDE_MAX])));
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(!big.is_finished(), "a send past the bound did not wait for the client");
        let mut got = Vec::new();
        while got.len() < CHANNEL_DEPTH + 5 {
            let frame = body.frame().await.unwrap().unwrap();
            got.push(frame.into_data().unwrap());
        }
        big.await.unwrap().unwrap();
        assert!(!tx.paused());
        for (i, chunk) in got[..CHANNEL_DEPTH + 4].iter().enumerate() {
            assert_eq!((chunk[0], chunk.len()), (i as u8, 1000), "chunk {i}");
        }
        assert_eq!(got[CHANNEL_DEPTH + 4].len(), SET_ASIDE_MAX);
    }
}
