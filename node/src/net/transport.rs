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

/// The transports for `key`, without DNS.
fn build_plain(
    key: &Keypair,
    psk: Option<PreSharedKey>,
    quic: bool,
) -> Result<Boxed<(PeerId, StreamMuxerBox)>, NetError> {
    let noise = noise::Config::new(key).map_err(|e| NetError::Transport(e.to_string()))?;
    let tcp_cfg = tcp::Config::default().nodelay(true);
    let tcp = match psk {
        Some(psk) => tcp::tokio::Transport::new(tcp_cfg)
            .and_then(move |socket, _| PnetConfig::new(psk).handshake(socket))
            .upgrade(Version::V1Lazy)
            .authenticate(noise)
            .multiplex(yamux::Config::default())
            .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)))
            .boxed(),
        None => tcp::tokio::Transport::new(tcp_cfg)
            .upgrade(Version::V1Lazy)
            .authenticate(noise)
            .multiplex(yamux::Config::default())
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
