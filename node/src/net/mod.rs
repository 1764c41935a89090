//! The network: a libp2p swarm that speaks Bitswap with Kubo and other Cairn nodes.
//!
//! [`spawn`] (`build.rs`) builds the swarm and starts a task that owns it, the driver
//! (`driver/`: an event loop with one handler file per concern), and returns a [`Network`]
//! handle (`handle.rs`) that the rest of the node uses through commands: dial, list peers,
//! fetch a block. The driver feeds swarm events to the Bitswap [`bitswap::engine::Engine`] and
//! carries out its work: block lookups for peers run on the blocking pool, received blocks are
//! stored before anyone sees them. This file holds what they share: the config, the errors,
//! the behaviours and the types the handle answers with.
//!
//! Network rule: the node dials only what it is told to (the config's bootstrap list, which
//! is empty by default, and explicit `connect`s). mDNS (`Discovery.MDNS.Enabled`) and UPnP
//! port mapping (`Swarm.DisableNatPortMap = false`) are off unless turned on; with mDNS on,
//! the node also dials the peers it hears of on the local network.

pub mod bitswap;
pub mod delegated;
pub mod dht;
pub mod hints;
pub mod http_client;
pub mod iplimit;
pub mod muxer;
pub mod origin;
pub mod ratelimit;
pub mod session;
pub mod sweep;
pub mod transport;

mod build;
mod driver;
mod handle;

use std::sync::Arc;
use std::time::Duration;

use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{allow_block_list, autonat, connection_limits, gossipsub, identify, kad, ping};

use crate::store::BlockStore;

pub use build::spawn;
pub use driver::MAX_PENDING_PER_PEER;
pub use handle::Network;
pub use libp2p::multiaddr::Protocol;
pub use libp2p::{Multiaddr, PeerId};

/// The agent version sent in identify.
pub const AGENT: &str = concat!("cairn/", env!("CARGO_PKG_VERSION"));

/// The protocols the swarm speaks, sorted, as the RPC API's `id` lists them: Bitswap's
/// versions, both DHTs, gossipsub's versions (libp2p's defaults, which Cairn keeps), identify
/// with push, ping and AutoNAT.
pub fn protocols() -> Vec<String> {
    let mut all: Vec<String> = bitswap::proto::PROTOCOLS.iter().map(|(p, _)| (*p).to_owned()).collect();
    all.extend(
        [
            dht::WAN_PROTOCOL,
            dht::LAN_PROTOCOL,
            libp2p::identify::PROTOCOL_NAME,
            libp2p::identify::PUSH_PROTOCOL_NAME,
            libp2p::ping::PROTOCOL_NAME,
            libp2p::autonat::v1::DEFAULT_PROTOCOL_NAME,
        ]
        .iter()
        .map(ToString::to_string),
    );
    all.extend(["/meshsub/1.0.0", "/meshsub/1.1.0", "/meshsub/1.2.0", "/meshsub/1.3.0"].map(str::to_owned));
    all.sort();
    all
}

/// Why the network could not start or do something.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// libp2p refused a part of the swarm as `spawn` set it up.
    #[error("cannot build the swarm: {0}")]
    Setup(#[from] SetupError),
    /// mDNS was asked for and could not start.
    #[error("mDNS: {0}")]
    Mdns(#[source] std::io::Error),
    /// The repo's private-network key is unusable.
    #[error("private network key {}: {problem}", .path.display())]
    SwarmKey {
        /// Where the key is, or should be.
        path: std::path::PathBuf,
        /// What is wrong with it.
        problem: SwarmKeyProblem,
    },
    /// Listening failed.
    #[error("cannot listen on {0}: {1}")]
    Listen(Multiaddr, #[source] BoxError),
    /// Dialing failed.
    #[error("cannot connect to {0}: {1}")]
    Dial(Multiaddr, #[source] DialFailure),
    /// The network task is gone.
    #[error("the network is not running")]
    Stopped,
    /// Pubsub refused a subscription or a message.
    #[error("pubsub: {0}")]
    Pubsub(#[from] PubsubError),
    /// The node already reads through a network; a second one would race it.
    #[error("this node already reads through a network")]
    AlreadyOnline,
    /// A config value is not what it must be.
    #[error(transparent)]
    Settings(#[from] crate::config::ConfigError),
    /// The HTTP origins' config is unusable (boxed to keep results small).
    #[error("network config: {0}")]
    Origin(Box<origin::OriginError>),
    /// A delegated router's URL is unusable.
    #[error("Routing.DelegatedRouters: {0}")]
    Router(#[from] delegated::RouterError),
}

/// An error from libp2p kept with its type erased, for the few places where it has no
/// nameable type of its own (the swarm builder's, a listener's).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Where libp2p refused the swarm's setup. None happens with the settings `spawn` uses; each
/// is reported as libp2p gave it rather than unwrapped.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// Gossipsub's config.
    #[error("gossipsub config: {0}")]
    GossipsubConfig(#[from] gossipsub::ConfigBuilderError),
    /// Gossipsub itself (libp2p says why in a fixed text).
    #[error("gossipsub: {0}")]
    Gossipsub(&'static str),
    /// Gossipsub's peer scoring (libp2p gives its reason only as text).
    #[error("gossipsub peer scoring: {0}")]
    Scoring(String),
    /// The Noise handshake's key.
    #[error("noise: {0}")]
    Noise(#[from] libp2p::noise::Error),
    /// The swarm builder.
    #[error("{0}")]
    Builder(#[source] BoxError),
}

/// What is wrong with a private-network key.
#[derive(Debug, thiserror::Error)]
pub enum SwarmKeyProblem {
    /// The file is not a key.
    #[error("not a swarm key: {0}")]
    NotAKey(#[from] libp2p::pnet::KeyParseError),
    /// `LIBP2P_FORCE_PNET=1`, and there is no key.
    #[error("LIBP2P_FORCE_PNET=1 but there is no key")]
    Missing,
    /// The file could not be read.
    #[error("{0}")]
    Read(#[from] std::io::Error),
}

/// Why a dial failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DialFailure {
    /// The address names no peer.
    #[error("the address must end in /p2p/<peer id>")]
    NoPeerId,
    /// The swarm could not connect (shared by every caller waiting on the same peer).
    #[error("{0}")]
    Swarm(Arc<libp2p::swarm::DialError>),
}

/// Why pubsub refused.
#[derive(Debug, thiserror::Error)]
pub enum PubsubError {
    /// The node's own topics are bounded.
    #[error("this node already subscribes to {0} topics")]
    TooManyTopics(usize),
    /// Gossipsub refused the subscription.
    #[error("{0}")]
    Subscribe(#[from] gossipsub::SubscriptionError),
    /// Gossipsub refused the message.
    #[error("{0}")]
    Publish(#[from] gossipsub::PublishError),
}

impl From<origin::OriginError> for NetError {
    fn from(e: origin::OriginError) -> Self {
        NetError::Origin(Box::new(e))
    }
}

/// What the network needs to start.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Addresses to listen on.
    pub listen: Vec<Multiaddr>,
    /// Peers to connect to at start.
    pub bootstrap: Vec<Multiaddr>,
    /// The private-network key, if any.
    pub swarm_key: Option<libp2p::pnet::PreSharedKey>,
    /// Most connections at once, in and out.
    pub max_connections: u32,
    /// Most connections per peer.
    pub max_connections_per_peer: u32,
    /// Most inbound connections per IPv4 address (twice that per IPv6 /56; [`iplimit`]).
    pub max_connections_per_ip: u32,
    /// Whether loopback connections count against [`NetConfig::max_connections_per_ip`]
    /// (only tests want that).
    pub limit_loopback: bool,
    /// How long an idle connection stays open.
    pub idle_timeout: Duration,
    /// How the DHTs run.
    pub dht: dht::DhtMode,
    /// Addresses told to peers instead of the listen addresses (empty: the listen addresses).
    pub announce: Vec<Multiaddr>,
    /// Addresses told to peers as well.
    pub append_announce: Vec<Multiaddr>,
    /// Block bytes served per second, at most.
    pub upload_limit: Option<u64>,
    /// Block bytes fetched per second, at most.
    pub download_limit: Option<u64>,
    /// Trustless HTTP gateways to fetch blocks from as well (`Origins`).
    pub origin: Option<origin::OriginConfig>,
    /// Routing V1 HTTP APIs asked for providers beside the DHTs (`Routing.DelegatedRouters`).
    pub delegated_routers: Vec<String>,
    /// Whether blocks are served to peers at all (`Bitswap.ServerEnabled`).
    pub serve: bool,
    /// Block bytes served in any 24 hours, at most (`Swarm.RateLimit.UploadBudget`).
    pub upload_budget: Option<u64>,
    /// Whether to find and dial peers on the local network with mDNS (`Discovery.MDNS.Enabled`).
    pub mdns: bool,
    /// Whether to ask the router for port mappings with UPnP (`Swarm.DisableNatPortMap` false).
    pub upnp: bool,
    /// Half-life of a peer's misbehaviour score, which decides how long a ban lasts
    /// ([`bitswap::engine::SCORE_HALF_LIFE`]; tests shorten it).
    pub score_half_life: Duration,
}

impl NetConfig {
    /// Listens on `listen`, connects nowhere, and has the default limits.
    pub fn new(listen: Vec<Multiaddr>) -> NetConfig {
        NetConfig {
            listen,
            bootstrap: Vec::new(),
            swarm_key: None,
            max_connections: 900,
            max_connections_per_peer: 4,
            max_connections_per_ip: iplimit::DEFAULT_PER_IP,
            limit_loopback: false,
            idle_timeout: Duration::from_secs(120),
            dht: dht::DhtMode::Auto,
            announce: Vec::new(),
            append_announce: Vec::new(),
            upload_limit: None,
            download_limit: None,
            origin: None,
            delegated_routers: Vec::new(),
            serve: true,
            upload_budget: None,
            mdns: false,
            upnp: false,
            score_half_life: bitswap::engine::SCORE_HALF_LIFE,
        }
    }

    /// Reads the repo's config (`Addresses.Swarm`, `Addresses.Announce`,
    /// `Addresses.AppendAnnounce`, `Bootstrap`, `Swarm.ConnMgr.HighWater`, `Routing.Type`) and
    /// the repo's `swarm.key`.
    pub fn from_repo(repo: &crate::repo::Repo) -> Result<NetConfig, NetError> {
        let cfg = repo.config();
        let typed = repo.settings()?.clone();
        let mut net = NetConfig::new(typed.swarm);
        net.bootstrap = typed.bootstrap;
        net.announce = typed.announce;
        net.append_announce = typed.append_announce;
        net.max_connections = cfg.swarm.conn_mgr.high_water.max(1);
        net.max_connections_per_ip = cfg.swarm.conn_mgr.max_per_ip.max(1);
        net.dht = typed.routing;
        net.delegated_routers = typed.delegated_routers.clone();
        net.upload_limit = typed.upload_limit;
        net.download_limit = typed.download_limit;
        net.upload_budget = typed.upload_budget;
        net.serve = cfg.bitswap.server_enabled;
        net.mdns = cfg.discovery.mdns.enabled;
        net.upnp = !cfg.swarm.disable_nat_port_map;
        net.swarm_key = transport::load_swarm_key(repo.path())?;
        // Kept without gateways too: HTTP providers a router names are asked by its rules.
        net.origin = Some(origin::OriginConfig {
            gateways: cfg.origins.gateways.clone(),
            fast_start: cfg.origins.fast_start,
            stall: typed.origin_stall,
            format: typed.origin_format,
        });
        Ok(net)
    }
}

/// Bounds what peers may say they subscribe to: at most [`MAX_PEER_TOPICS`] topics per peer,
/// and a request to subscribe to more than [`MAX_PEER_TOPICS`] at once is ignored whole.
type TopicFilter = gossipsub::MaxCountSubscriptionFilter<gossipsub::AllowAllSubscriptionFilter>;
/// Topics one peer is known to subscribe to, at most.
pub const MAX_PEER_TOPICS: usize = 256;
/// Addresses kept and told per peer ([`Network::peer_addrs`]): a peer that lists more gets
/// its first ones.
pub const MAX_PEER_ADDRS: usize = 16;
/// Peers one [`Network::peer_addrs`] call answers for; the rest of a longer list is ignored.
pub const MAX_PEER_ADDRS_ASKED: usize = 256;
/// Topics this node subscribes to (the hints topic and those asked for through the API).
pub const MAX_LOCAL_TOPICS: usize = 1024;
/// Messages per minute one signed source may send on a topic other than the hints topic;
/// past it they are rejected, neither delivered nor relayed (each at most 1 MiB).
pub const MAX_TOPIC_MESSAGES_PER_MINUTE: usize = 600;

/// The swarm's behaviours.
#[derive(NetworkBehaviour)]
#[behaviour(prelude = "libp2p::swarm::derive_prelude")]
pub struct Behaviour {
    per_ip: iplimit::Behaviour,
    limits: connection_limits::Behaviour,
    blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    autonat: autonat::v1::Behaviour,
    kad_wan: Toggle<kad::Behaviour<dht::ProvStore>>,
    kad_lan: Toggle<kad::Behaviour<dht::ProvStore>>,
    gossipsub: gossipsub::Behaviour<gossipsub::IdentityTransform, TopicFilter>,
    mdns: Toggle<libp2p::mdns::tokio::Behaviour>,
    upnp: Toggle<libp2p::upnp::tokio::Behaviour>,
    /// Bitswap.
    pub bitswap: bitswap::Behaviour,
    /// Outbound streams opened from outside the driver (a sweep's announcements).
    streams: libp2p_stream::Behaviour,
}

impl Behaviour {
    /// The behaviour of one DHT.
    fn kad(&mut self, dht: dht::Dht) -> &mut Toggle<kad::Behaviour<dht::ProvStore>> {
        match dht {
            dht::Dht::Wan => &mut self.kad_wan,
            dht::Dht::Lan => &mut self.kad_lan,
        }
    }
}

impl std::fmt::Debug for Behaviour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Behaviour").finish_non_exhaustive()
    }
}

/// The DHTs' state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DhtStats {
    /// Peers in the WAN routing table.
    pub wan_peers: usize,
    /// Peers in the LAN routing table.
    pub lan_peers: usize,
    /// Whether the WAN DHT serves others.
    pub wan_server: bool,
    /// Provider lookups started (by fetches and by `find_providers`).
    pub lookups: u64,
    /// Announcements.
    pub provide: dht::ProvideStats,
}

/// A connected peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// Its ID.
    pub peer: PeerId,
    /// The address of one connection to it.
    pub addr: Multiaddr,
}

/// A message received on a subscribed topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubsubMessage {
    /// Who published it (the signed source).
    pub from: Option<PeerId>,
    /// The topic.
    pub topic: String,
    /// The payload.
    pub data: Vec<u8>,
    /// The publisher's sequence number.
    pub seqno: Option<u64>,
}

/// Where UPnP port mapping stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum PortMapping {
    /// Not configured (`Swarm.DisableNatPortMap`, the default).
    #[default]
    Off,
    /// Looking for a gateway.
    Searching,
    /// No UPnP gateway answered on the local network.
    NoGateway,
    /// The gateway answered, but its own address is not public: mapping would not help.
    NonRoutable,
    /// Mapped: these external addresses reach this node.
    Mapped(Vec<Multiaddr>),
}

/// What a lookup of the peers closest to a key found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Closest {
    /// The closest peers that answered, at most K, closest first.
    pub peers: Vec<PeerId>,
    /// The addresses the lookup learned for them (a peer may have none).
    pub addrs: std::collections::HashMap<PeerId, Vec<Multiaddr>>,
    /// Whether the lookup ended by itself (not by timing out, nor for want of a DHT).
    pub complete: bool,
}

/// The blocks the network reads and writes.
pub type SharedStore = Arc<dyn BlockStore>;
