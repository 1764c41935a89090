//! Response bodies: small ones held whole, large ones streamed from a blocking producer.
//!
//! The node's store is synchronous (RocksDB), so a response that reads many blocks runs on a
//! blocking thread and hands its bytes to hyper through a bounded channel. When the client
//! goes away the channel closes, the producer's next send fails with `BrokenPipe`, and the
//! read stops: an abandoned download costs at most a few chunks. A client that stops reading
//! but keeps the connection open is cut off after [`SEND_TIMEOUT`], so it cannot hold a
//! blocking thread for long.

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
    let sender =
        ChunkSender { tx, rt: tokio::runtime::Handle::current(), delivered: Arc::default(), skip: Arc::default() };
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
}

impl ChunkSender {
    /// Sends a chunk, waiting while the client is slower than the producer. Fails with
    /// `BrokenPipe` once the client is gone, and `TimedOut` when it takes nothing for
    /// [`SEND_TIMEOUT`].
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
        let n = chunk.len() as u64;
        match self.rt.block_on(tokio::time::timeout(SEND_TIMEOUT, self.tx.send(Ok(chunk)))) {
            Ok(Ok(())) => {
                self.delivered.fetch_add(n, Ordering::Relaxed);
                Ok(())
            }
            Ok(Err(_)) => Err(io::Error::new(io::ErrorKind::BrokenPipe, "client went away")),
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "client stopped reading")),
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
