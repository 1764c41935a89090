//! The swarm's transports: TCP with Noise and Yamux, optionally behind a private-network
//! key, and QUIC, under DNS resolution.
//!
//! `/dns`, `/dns4`, `/dns6` and `/dnsaddr` addresses (the public bootstrap list is
//! `/dnsaddr`) are resolved with the system's resolver (`/etc/resolv.conf`, `/etc/hosts`),
//! and only when such an address is dialed. Where the system has no resolver configuration,
//! they fail to dial and every other address works as before.
//!
//! A private swarm (libp2p pnet) uses the pre-shared key of Kubo's `swarm.key` format in the
//! repo. QUIC brings its own encryption that pnet cannot wrap, so with a key QUIC is off, as
//! in Kubo.

use std::path::Path;
use std::str::FromStr;

use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::{Boxed, Transport};
use libp2p::core::upgrade::Version;
use libp2p::identity::Keypair;
use libp2p::pnet::{PnetConfig, PreSharedKey};
use libp2p::{dns, noise, quic, tcp, PeerId};

use super::muxer::Yamux;
use super::{NetError, SetupError, SwarmKeyProblem};

/// The name of the key file in the repo, as in Kubo.
pub const SWARM_KEY_FILE: &str = "swarm.key";

/// Reads `$repo/swarm.key` if it exists. With `LIBP2P_FORCE_PNET=1` a missing key is an
/// error, as in Kubo.
pub fn load_swarm_key(repo: &Path) -> Result<Option<PreSharedKey>, NetError> {
    let path = repo.join(SWARM_KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => PreSharedKey::from_str(&text).map(Some).map_err(|e| NetError::SwarmKey { path, problem: e.into() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if std::env::var("LIBP2P_FORCE_PNET").is_ok_and(|v| v == "1") {
                return Err(NetError::SwarmKey { path, problem: SwarmKeyProblem::Missing });
            }
            Ok(None)
        }
        Err(e) => Err(NetError::SwarmKey { path, problem: e.into() }),
    }
}

/// Unsent bytes a TCP connection's socket holds before writes wait (`TCP_NOTSENT_LOWAT`).
///
/// Without a limit the kernel takes megabytes from each connection at once. A block then
/// counts as written long before it is on the wire, and blocks to different peers go out
/// side by side, each at a fraction of the uplink. With the limit, the node's own queues
/// hold what is waiting, and serving chooses what goes next (see `COMMIT_TIME` in the
/// network module). It costs nothing measurable in throughput: one peer over loopback gets
/// 467 MB/s with it and 460 without.
pub const UNSENT_LOWAT: u32 = 32 * 1024;

/// Applies [`UNSENT_LOWAT`] to a new connection's socket. Where the system refuses it, the
/// connection works as before (only less well paced), so the refusal is logged, not fatal.
fn limit_unsent(socket: tcp::tokio::TcpStream) -> tcp::tokio::TcpStream {
    if let Err(e) = socket2::SockRef::from(&socket.0).set_tcp_notsent_lowat(UNSENT_LOWAT) {
        tracing::debug!("cannot limit the unsent bytes of a TCP connection: {e}");
    }
    socket
}

/// Builds the transport for `key`: [`build_plain`] under the system's DNS resolver, or without
/// one where the system's resolver configuration cannot be read.
pub fn build(
    key: &Keypair,
    psk: Option<PreSharedKey>,
    quic: bool,
) -> Result<Boxed<(PeerId, StreamMuxerBox)>, NetError> {
    // `system` reads the configuration now, and resolves nothing until a DNS address is dialed.
    match dns::tokio::Transport::system(build_plain(key, psk, quic)?) {
        Ok(t) => Ok(t.boxed()),
        Err(e) => {
            tracing::warn!("no DNS resolution for /dns and /dnsaddr addresses: {e}");
            build_plain(key, psk, quic)
        }
    }
}

/// Streams open at once on one yamux connection, both ways; a peer that opens more loses the
/// connection. Each stream's receive window starts at 256 KiB and grows only as Cairn reads
/// it, so a peer can make a connection hold at most 64 MiB it has not read (yamux's default,
/// 512 streams, allowed 128 MiB). QUIC connections have their own limits (256 streams,
/// 15 MB of unread data per connection).
pub const MAX_STREAMS: usize = 256;

/// The transports for `key`, without DNS.
fn build_plain(
    key: &Keypair,
    psk: Option<PreSharedKey>,
    quic: bool,
) -> Result<Boxed<(PeerId, StreamMuxerBox)>, NetError> {
    let noise = noise::Config::new(key).map_err(SetupError::from)?;
    let tcp_cfg = tcp::Config::default().nodelay(true);
    let yamux = Yamux::new(MAX_STREAMS);
    let tcp = match psk {
        Some(psk) => tcp::tokio::Transport::new(tcp_cfg)
            .map(|socket, _| limit_unsent(socket))
            .and_then(move |socket, _| PnetConfig::new(psk).handshake(socket))
            .upgrade(Version::V1Lazy)
            .authenticate(noise)
            .multiplex(yamux.clone())
            .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)))
            .boxed(),
        None => tcp::tokio::Transport::new(tcp_cfg)
            .map(|socket, _| limit_unsent(socket))
            .upgrade(Version::V1Lazy)
            .authenticate(noise)
            .multiplex(yamux.clone())
            .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)))
            .boxed(),
    };
    let inner = if !quic || psk.is_some() {
        tcp
    } else {
        let quic = quic::tokio::Transport::new(quic::Config::new(key))
            .map(|(peer, conn), _| (peer, StreamMuxerBox::new(conn)));
        tcp.or_transport(quic)
            .map(|either, _| match either {
                futures::future::Either::Left(x) => x,
                futures::future::Either::Right(x) => x,
            })
            .boxed()
    };
    Ok(inner)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::task::Poll;
    use std::time::Duration;

    use futures::{AsyncWriteExt, StreamExt};
    use libp2p::core::muxing::{StreamMuxerBox, StreamMuxerExt, SubstreamBox};
    use libp2p::core::transport::{DialOpts, ListenerId, PortUse, TransportEvent};
    use libp2p::core::Endpoint;

    use super::*;

    /// Every await in these tests is bounded: a muxer that stops being driven must fail the
    /// test, not hang it.
    async fn within<T>(secs: u64, what: &str, f: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(secs), f).await.unwrap_or_else(|_| panic!("{what}: timed out"))
    }

    /// A connection on loopback between a listener built as Cairn builds its transports and
    /// a dialer with yamux configured as `dialer` (a peer that does not keep Cairn's limits).
    /// Returns Cairn's muxer and the dialer's.
    async fn connected(dialer: libp2p::yamux::Config) -> (StreamMuxerBox, StreamMuxerBox) {
        let mut cairn = build_plain(&Keypair::generate_ed25519(), None, false).unwrap();
        cairn.listen_on(ListenerId::next(), "/ip4/127.0.0.1/tcp/0".parse().unwrap()).unwrap();
        let addr = within(5, "listening", async {
            loop {
                if let Some(TransportEvent::NewAddress { listen_addr, .. }) = cairn.next().await {
                    return listen_addr;
                }
            }
        })
        .await;
        let key = Keypair::generate_ed25519();
        // Not lazy: the dialer's upgrade waits for the listener's, so both end here.
        let mut peer = tcp::tokio::Transport::new(tcp::Config::default())
            .upgrade(Version::V1)
            .authenticate(noise::Config::new(&key).unwrap())
            .multiplex(dialer)
            .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)))
            .boxed();
        let dial = peer.dial(addr, DialOpts { role: Endpoint::Dialer, port_use: PortUse::New }).unwrap();
        let accept = async {
            loop {
                if let Some(TransportEvent::Incoming { upgrade, .. }) = cairn.next().await {
                    return upgrade.await;
                }
            }
        };
        let (accepted, dialed) = within(10, "connecting", futures::future::join(accept, dial)).await;
        (accepted.unwrap().1, dialed.unwrap().1)
    }

    /// Drives `muxer` (as the swarm does), handing each stream the peer opens to `each`, until
    /// the connection fails; returns how many streams it accepted and why it ended.
    async fn serve(muxer: &mut StreamMuxerBox, mut each: impl FnMut(SubstreamBox)) -> (usize, String) {
        let mut accepted = 0;
        loop {
            let next = futures::future::poll_fn(|cx| {
                if let Poll::Ready(Err(e)) = muxer.poll_unpin(cx) {
                    return Poll::Ready(Err(e));
                }
                muxer.poll_inbound_unpin(cx)
            });
            match next.await {
                Ok(stream) => {
                    accepted += 1;
                    each(stream);
                }
                Err(e) => return (accepted, e.to_string()),
            }
        }
    }

    /// A peer that opens more than [`MAX_STREAMS`] streams on one connection loses the
    /// connection, having had no more than that open; a stream that Cairn does not read
    /// takes at most its 256 KiB window from the peer. Over a real TCP, Noise and yamux
    /// connection, against a peer whose own yamux allows 1,000 streams.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_peer_is_held_to_the_stream_bounds() {
        let mut lax = libp2p::yamux::Config::default();
        lax.set_max_num_streams(1000);

        // Streams past the bound.
        let (mut cairn, peer) = connected(lax.clone()).await;
        let peer = Arc::new(Mutex::new(peer));
        let opener = {
            let peer = peer.clone();
            tokio::spawn(async move {
                let mut opened = Vec::new();
                for _ in 0..MAX_STREAMS + 44 {
                    let open = futures::future::poll_fn(|cx| {
                        let mut p = peer.lock().unwrap();
                        let _ = p.poll_unpin(cx);
                        p.poll_outbound_unpin(cx)
                    });
                    let Ok(Ok(mut s)) = tokio::time::timeout(Duration::from_secs(5), open).await else { break };
                    // The stream is opened on the wire with its first frame.
                    if tokio::time::timeout(Duration::from_secs(5), s.write_all(b"x")).await.is_err() {
                        break;
                    }
                    opened.push(s);
                }
                // Keep the connection driven until it ends.
                let ended = futures::future::poll_fn(|cx| {
                    let mut p = peer.lock().unwrap();
                    match (p.poll_unpin(cx), p.poll_inbound_unpin(cx)) {
                        (Poll::Ready(Err(e)), _) | (_, Poll::Ready(Err(e))) => Poll::Ready(e.to_string()),
                        _ => Poll::Pending,
                    }
                });
                (opened.len(), tokio::time::timeout(Duration::from_secs(10), ended).await)
            })
        };
        // Each stream accepted is answered (which acknowledges it: a peer may have only 256
        // streams unacknowledged) and kept open.
        let held = Arc::new(Mutex::new(Vec::new()));
        let keep = |mut s: SubstreamBox| {
            let held = held.clone();
            tokio::spawn(async move {
                let _ = s.write_all(b"y").await;
                held.lock().unwrap().push(s);
            });
        };
        let (accepted, why) = within(20, "the connection ending", serve(&mut cairn, keep)).await;
        assert_eq!(accepted, MAX_STREAMS, "streams accepted before the connection ended ({why})");
        let (opened, peer_saw) = within(20, "the peer", opener).await.unwrap();
        assert!(opened > MAX_STREAMS, "the peer opened {opened}");
        assert!(peer_saw.is_ok(), "the peer's connection did not end");

        // A stream nobody reads.
        let (mut cairn, mut peer) = connected(lax).await;
        let mut unread = Vec::new();
        let server = tokio::spawn(async move {
            let _ = serve(&mut cairn, |s| unread.push(s)).await;
        });
        let mut s = within(
            5,
            "opening",
            futures::future::poll_fn(|cx| {
                let _ = peer.poll_unpin(cx);
                peer.poll_outbound_unpin(cx)
            }),
        )
        .await
        .unwrap();
        let chunk = vec![7u8; 16 << 10];
        let mut sent = 0usize;
        loop {
            let write = async {
                s.write_all(&chunk).await?;
                s.flush().await
            };
            let drive = futures::future::poll_fn(|cx| {
                let _ = peer.poll_unpin(cx);
                let _ = peer.poll_inbound_unpin(cx);
                Poll::<()>::Pending
            });
            let r = tokio::time::timeout(
                Duration::from_millis(500),
                futures::future::select(Box::pin(write), Box::pin(drive)),
            );
            match r.await {
                Ok(futures::future::Either::Left((Ok(()), _))) => sent += chunk.len(),
                Ok(futures::future::Either::Left((Err(e), _))) => panic!("writing: {e}"),
                _ => break,
            }
            assert!(sent <= 4 << 20, "{sent} bytes went into a stream nobody reads");
        }
        assert!(sent >= 128 << 10 && sent <= (256 << 10) + chunk.len(), "{sent} bytes went into a stream nobody reads");
        server.abort();
    }

    #[tokio::test]
    async fn a_new_connection_keeps_few_unsent_bytes() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (dialed, accepted) = tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        let (dialed, _accepted) = (dialed.unwrap(), accepted.unwrap());
        let before = socket2::SockRef::from(&dialed).tcp_notsent_lowat().unwrap();
        assert_ne!(before, UNSENT_LOWAT, "the system's default is not already the limit");
        let socket = limit_unsent(tcp::tokio::TcpStream(dialed));
        assert_eq!(socket2::SockRef::from(&socket.0).tcp_notsent_lowat().unwrap(), UNSENT_LOWAT);
    }
}
