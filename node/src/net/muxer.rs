//! Yamux for TCP connections, with every stream's receive window kept at or under 1 MiB.
//!
//! Why not `libp2p::yamux` as it is: the yamux crate refuses a data frame whose body passes
//! 1 MiB and ends the connection (`FrameTooLarge`), yet by default it lets a stream's receive
//! window grow far past that (auto-tuned up to the connection's 1 GiB). Go's yamux splits
//! what it sends into 64 KiB frames, but js-libp2p's yamux (Helia) sends as much as the window
//! allows in one frame, so a fast stream from Helia broke the connection at the first frame
//! over 1 MiB. The window's only bound is the connection's total, which `libp2p::yamux`
//! does not let us set; this module is that upgrade with the total set so that no stream's
//! window can pass 1 MiB ([`MAX_STREAM_WINDOW`]), and otherwise does what the library's does:
//! inbound streams that arrive while nobody asks for one wait in a bounded queue.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use futures::future::{ready, Ready};
use futures::{AsyncRead, AsyncWrite};
use libp2p::core::muxing::{StreamMuxer, StreamMuxerEvent};
use libp2p::core::upgrade::{InboundConnectionUpgrade, OutboundConnectionUpgrade, UpgradeInfo};

/// The yamux crate's window a stream starts with (the spec's 256 KiB).
pub const INITIAL_STREAM_WINDOW: usize = yamux::DEFAULT_CREDIT as usize;

/// The largest receive window a stream is given: the largest frame body the yamux crate
/// accepts, so that a peer that fills its window in one frame is never refused.
pub const MAX_STREAM_WINDOW: usize = 1 << 20;

/// Inbound streams kept while the swarm has not taken them; past this, new ones are reset.
const MAX_QUEUED_INBOUND: usize = 256;

/// The yamux upgrade: `max_streams` streams at once, each with its window bounded as above.
#[derive(Debug, Clone)]
pub struct Yamux {
    config: yamux::Config,
}

impl Yamux {
    /// A connection of at most `max_streams` streams at once. Each stream is guaranteed its
    /// initial 256 KiB; the connection's total allows one more [`MAX_STREAM_WINDOW`] minus that,
    /// shared by the streams that grow, so no stream's window passes it.
    pub fn new(max_streams: usize) -> Self {
        let mut config = yamux::Config::default();
        // In this order: each setter checks that the total covers every stream's first window.
        config.set_max_num_streams(max_streams);
        config.set_max_connection_receive_window(Some(
            max_streams * INITIAL_STREAM_WINDOW + (MAX_STREAM_WINDOW - INITIAL_STREAM_WINDOW),
        ));
        Yamux { config }
    }

    fn muxer<C>(self, io: C, mode: yamux::Mode) -> Ready<Result<Muxer<C>, std::io::Error>>
    where
        C: AsyncRead + AsyncWrite + Unpin,
    {
        ready(Ok(Muxer {
            connection: yamux::Connection::new(io, self.config, mode),
            queued: VecDeque::new(),
            waiting: None,
        }))
    }
}

impl UpgradeInfo for Yamux {
    type Info = &'static str;
    type InfoIter = std::iter::Once<&'static str>;

    fn protocol_info(&self) -> Self::InfoIter {
        std::iter::once("/yamux/1.0.0")
    }
}

impl<C: AsyncRead + AsyncWrite + Send + Unpin + 'static> InboundConnectionUpgrade<C> for Yamux {
    type Output = Muxer<C>;
    type Error = std::io::Error;
    type Future = Ready<Result<Muxer<C>, std::io::Error>>;

    fn upgrade_inbound(self, io: C, _: &'static str) -> Self::Future {
        self.muxer(io, yamux::Mode::Server)
    }
}

impl<C: AsyncRead + AsyncWrite + Send + Unpin + 'static> OutboundConnectionUpgrade<C> for Yamux {
    type Output = Muxer<C>;
    type Error = std::io::Error;
    type Future = Ready<Result<Muxer<C>, std::io::Error>>;

    fn upgrade_outbound(self, io: C, _: &'static str) -> Self::Future {
        self.muxer(io, yamux::Mode::Client)
    }
}

/// One yamux connection as a libp2p stream muxer.
#[derive(Debug)]
pub struct Muxer<C> {
    connection: yamux::Connection<C>,
    /// Inbound streams that [`StreamMuxer::poll`] accepted before the swarm asked for one.
    queued: VecDeque<yamux::Stream>,
    /// The task waiting in [`StreamMuxer::poll_inbound`].
    waiting: Option<Waker>,
}

impl<C: AsyncRead + AsyncWrite + Unpin> Muxer<C> {
    fn next_inbound(&mut self, cx: &mut Context<'_>) -> Poll<Result<yamux::Stream, yamux::ConnectionError>> {
        match self.connection.poll_next_inbound(cx) {
            Poll::Ready(Some(result)) => Poll::Ready(result),
            Poll::Ready(None) => Poll::Ready(Err(yamux::ConnectionError::Closed)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<C: AsyncRead + AsyncWrite + Unpin> StreamMuxer for Muxer<C> {
    type Substream = yamux::Stream;
    type Error = yamux::ConnectionError;

    fn poll_inbound(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<yamux::Stream, Self::Error>> {
        let this = self.get_mut();
        if let Some(stream) = this.queued.pop_front() {
            return Poll::Ready(Ok(stream));
        }
        let polled = this.next_inbound(cx);
        if polled.is_pending() {
            this.waiting = Some(cx.waker().clone());
        }
        polled
    }

    fn poll_outbound(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<yamux::Stream, Self::Error>> {
        self.get_mut().connection.poll_new_outbound(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.get_mut().connection.poll_close(cx)
    }

    /// Drives the connection: the yamux crate reads frames only while an inbound stream is
    /// polled for, so this polls for one and queues what arrives.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<StreamMuxerEvent, Self::Error>> {
        let this = self.get_mut();
        let stream = match this.next_inbound(cx) {
            Poll::Ready(Ok(stream)) => stream,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        };
        if this.queued.len() < MAX_QUEUED_INBOUND {
            this.queued.push_back(stream);
            if let Some(w) = this.waiting.take() {
                w.wake();
            }
        } else {
            tracing::debug!(%stream, "inbound stream reset: {MAX_QUEUED_INBOUND} already wait to be taken");
        }
        // Poll again soon, after other tasks had their turn.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use libp2p::core::muxing::{StreamMuxerBox, StreamMuxerExt};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::mpsc;

    use super::*;

    const DATA: u8 = 0;
    const WINDOW_UPDATE: u8 = 1;
    const PING: u8 = 2;
    const SYN: u16 = 1;
    const ACK: u16 = 2;
    const FIN: u16 = 4;

    fn header(kind: u8, flags: u16, stream: u32, len: u32) -> [u8; 12] {
        let mut h = [0u8; 12];
        h[1] = kind;
        h[2..4].copy_from_slice(&flags.to_be_bytes());
        h[4..8].copy_from_slice(&stream.to_be_bytes());
        h[8..12].copy_from_slice(&len.to_be_bytes());
        h
    }

    /// Long enough that even a loaded machine reads half a window within two round trips
    /// (yamux grows a window only then); 20 ms was not (a CI run saw no growth).
    const PONG_DELAY: Duration = Duration::from_millis(250);

    enum Event {
        Credit(u32),
        PongDue(u32),
        Closed,
    }

    /// Sends `total` bytes on one stream to a Cairn muxer the way js-libp2p's yamux does: each
    /// data frame as large as the whole send window. Answers Cairn's ping [`PONG_DELAY`] late,
    /// as over a slow link, and sends no data before that answer, so that Cairn has measured a
    /// round trip by the time data flows and grows the window of a stream that keeps up.
    /// Returns the bytes Cairn read (or why its connection ended) and the largest window it
    /// was given.
    async fn send_like_js(total: usize) -> (Result<usize, String>, usize) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cairn = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            let upgrade = Yamux::new(256).upgrade_inbound(libp2p::tcp::tokio::TcpStream(socket), "/yamux/1.0.0");
            let mut muxer = StreamMuxerBox::new(upgrade.await.unwrap());
            let mut stream = futures::future::poll_fn(|cx| {
                if let Poll::Ready(Err(e)) = muxer.poll_unpin(cx) {
                    return Poll::Ready(Err(e));
                }
                muxer.poll_inbound_unpin(cx)
            })
            .await
            .map_err(|e| e.to_string())?;
            let mut read = 0;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = futures::future::poll_fn(|cx| {
                    if let Poll::Ready(Err(e)) = muxer.poll_unpin(cx) {
                        return Poll::Ready(Err(e.to_string()));
                    }
                    Pin::new(&mut stream).poll_read(cx, &mut buf).map_err(|e| e.to_string())
                })
                .await?;
                if n == 0 {
                    return Ok::<usize, String>(read);
                }
                read += n;
            }
        });

        let (mut rx, mut tx) = tokio::net::TcpStream::connect(addr).await.unwrap().into_split();
        let (events, mut next) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut h = [0u8; 12];
            while rx.read_exact(&mut h).await.is_ok() {
                let (kind, flags) = (h[1], u16::from_be_bytes([h[2], h[3]]));
                let len = u32::from_be_bytes([h[8], h[9], h[10], h[11]]);
                match kind {
                    WINDOW_UPDATE => drop(events.send(Event::Credit(len))),
                    PING if flags & SYN != 0 => {
                        let events = events.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(PONG_DELAY).await;
                            events.send(Event::PongDue(len)).ok();
                        });
                    }
                    // Cairn sends nothing on the stream; anything else is a frame without a body.
                    _ => {}
                }
            }
            events.send(Event::Closed).ok();
        });
        tx.write_all(&header(WINDOW_UPDATE, SYN, 1, 0)).await.unwrap();
        let (mut window, mut largest, mut sent) = (INITIAL_STREAM_WINDOW, INITIAL_STREAM_WINDOW, 0);
        let chunk = vec![7u8; 4 << 20];
        let mut ponged = false;
        while sent < total {
            // Take every event that has arrived, and wait for one when out of window or while
            // Cairn's first ping is unanswered.
            loop {
                let event = if window == 0 || !ponged { next.recv().await } else { next.try_recv().ok() };
                match event {
                    Some(Event::Credit(n)) => {
                        window += n as usize;
                        largest = largest.max(window);
                    }
                    Some(Event::PongDue(id)) => {
                        tx.write_all(&header(PING, ACK, 0, id)).await.unwrap();
                        ponged = true;
                    }
                    Some(Event::Closed) | None if window == 0 => return (cairn.await.unwrap(), largest),
                    Some(Event::Closed) | None => break,
                }
            }
            let n = window.min(total - sent).min(chunk.len());
            if tx.write_all(&header(DATA, 0, 1, n as u32)).await.is_err() || tx.write_all(&chunk[..n]).await.is_err() {
                break;
            }
            window -= n;
            sent += n;
        }
        tx.write_all(&header(DATA, FIN, 1, 0)).await.ok();
        (cairn.await.unwrap(), largest)
    }

    /// Regression: Cairn's window used to grow past the 1 MiB the yamux crate accepts in one
    /// frame, and the connection died when a js-libp2p peer (Helia) used all of it at once
    /// (`FrameTooLarge(2097140)`). The window does grow past its first 256 KiB, and never past
    /// 1 MiB, so all 64 MiB arrive.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_peer_that_fills_its_window_in_one_frame_is_served() {
        let total = 64 << 20;
        let (read, largest) = tokio::time::timeout(Duration::from_secs(60), send_like_js(total)).await.unwrap();
        assert_eq!(read, Ok(total));
        assert!(largest > INITIAL_STREAM_WINDOW, "the window never grew ({largest})");
        assert!(largest <= MAX_STREAM_WINDOW, "a window of {largest} bytes invites frames yamux refuses");
    }
}
