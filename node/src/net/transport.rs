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
use libp2p::{dns, noise, quic, tcp, yamux, PeerId};

use super::NetError;

/// The name of the key file in the repo, as in Kubo.
pub const SWARM_KEY_FILE: &str = "swarm.key";

/// Reads `$repo/swarm.key` if it exists. With `LIBP2P_FORCE_PNET=1` a missing key is an
/// error, as in Kubo.
pub fn load_swarm_key(repo: &Path) -> Result<Option<PreSharedKey>, NetError> {
    let path = repo.join(SWARM_KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => PreSharedKey::from_str(&text)
            .map(Some)
            .map_err(|e| NetError::Config(format!("{}: not a swarm key: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if std::env::var("LIBP2P_FORCE_PNET").is_ok_and(|v| v == "1") {
                return Err(NetError::Config(format!(
                    "LIBP2P_FORCE_PNET=1 but there is no private network key at {}",
                    path.display()
                )));
            }
            Ok(None)
        }
        Err(e) => Err(NetError::Config(format!("{}: {e}", path.display()))),
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
    let noise = noise::Config::new(key).map_err(|e| NetError::Transport(e.to_string()))?;
    let tcp_cfg = tcp::Config::default().nodelay(true);
    let mut yamux = yamux::Config::default();
    yamux.set_max_num_streams(MAX_STREAMS);
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
    use super::*;

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
