//! The network: a libp2p swarm that speaks Bitswap with Kubo and other Cairn nodes.
//!
//! Over 700 lines until issue 28 splits the driver into an event loop with one handler
//! file per concern.
//!
//! [`spawn`] starts a task that owns the swarm (the driver) and returns a [`Network`] handle
//! that the rest of the node uses through commands: dial, list peers, fetch a block. The
//! driver feeds swarm events to the Bitswap [`bitswap::engine::Engine`] and carries out its
//! work: block lookups for peers run on the blocking pool, received blocks are stored before
//! anyone sees them.
//!
//! Network rule: the node dials only what it is told to (the config's bootstrap list, which
//! is empty by default, and explicit `connect`s). mDNS (`Discovery.MDNS.Enabled`) and UPnP
//! port mapping (`Swarm.DisableNatPortMap = false`) are off unless turned on; with mDNS on,
//! the node also dials the peers it hears of on the local network.

pub mod bitswap;
pub mod dht;
pub mod hints;
pub mod iplimit;
pub mod origin;
pub mod ratelimit;
pub mod session;
pub mod sweep;
pub mod transport;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn_merkle::{Block, Cid};
use futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{allow_block_list, autonat, connection_limits, gossipsub, identify, kad, ping, Swarm};
use tokio::sync::{mpsc, oneshot};

use crate::store::BlockStore;
use bitswap::engine::{Engine, FetchError, ServeJob, Stats};
use bitswap::{Message, WantType};

pub use libp2p::multiaddr::Protocol;
pub use libp2p::{Multiaddr, PeerId};

/// The agent version sent in identify.
pub const AGENT: &str = concat!("cairn/", env!("CARGO_PKG_VERSION"));

/// Why the network could not start or do something.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// The configuration is unusable.
    #[error("network config: {0}")]
    Config(String),
    /// The transport could not be built.
    #[error("transport: {0}")]
    Transport(String),
    /// Listening failed.
    #[error("cannot listen on {0}: {1}")]
    Listen(Multiaddr, String),
    /// Dialing failed.
    #[error("cannot connect to {0}: {1}")]
    Dial(String, String),
    /// The network task is gone.
    #[error("the network is not running")]
    Stopped,
    /// Pubsub refused a subscription or a message.
    #[error("pubsub: {0}")]
    Pubsub(String),
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
        let typed = crate::settings::Settings::from_config(cfg).map_err(|e| NetError::Config(e.to_string()))?;
        let mut net = NetConfig::new(typed.swarm);
        net.bootstrap = typed.bootstrap;
        net.announce = typed.announce;
        net.append_announce = typed.append_announce;
        net.max_connections = cfg.swarm.conn_mgr.high_water.max(1);
        net.max_connections_per_ip = cfg.swarm.conn_mgr.max_per_ip.max(1);
        net.dht = typed.routing;
        net.upload_limit = typed.upload_limit;
        net.download_limit = typed.download_limit;
        net.upload_budget = typed.upload_budget;
        net.serve = cfg.bitswap.server_enabled;
        net.mdns = cfg.discovery.mdns.enabled;
        net.upnp = !cfg.swarm.disable_nat_port_map;
        net.swarm_key = transport::load_swarm_key(repo.path())?;
        if !cfg.origins.gateways.is_empty() {
            net.origin = Some(origin::OriginConfig {
                gateways: cfg.origins.gateways.clone(),
                fast_start: cfg.origins.fast_start,
                stall: typed.origin_stall,
                format: typed.origin_format,
            });
        }
        Ok(net)
    }
}

/// Bounds what peers may say they subscribe to: at most [`MAX_PEER_TOPICS`] topics per peer,
/// and a request to subscribe to more than [`MAX_PEER_TOPICS`] at once is ignored whole.
type TopicFilter = gossipsub::MaxCountSubscriptionFilter<gossipsub::AllowAllSubscriptionFilter>;
/// Topics one peer is known to subscribe to, at most.
pub const MAX_PEER_TOPICS: usize = 256;
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

enum Command {
    Dial(Multiaddr, oneshot::Sender<Result<PeerId, NetError>>),
    Subscribe(String, mpsc::Sender<PubsubMessage>, oneshot::Sender<Result<(), NetError>>),
    Publish(String, Vec<u8>, oneshot::Sender<Result<(), NetError>>),
    TopicPeers(String, oneshot::Sender<Vec<PeerId>>),
    Score(PeerId, oneshot::Sender<Option<f64>>),
    Hint { root: Cid, size: u64, manifest: bool, topics: Vec<String> },
    Peers(oneshot::Sender<Vec<PeerInfo>>),
    Fetch { cid: Cid, priority: i32, deadline: Instant, waiter: bitswap::engine::Waiter },
    // A block from elsewhere (the HTTP origin) to store like a peer's; the sender, if any,
    // hears once it is stored and its waiters answered.
    Deliver(Block, Option<oneshot::Sender<()>>),
    // What the peers said (`Engine::peers_answer`), and whether every one was told.
    PeersAnswer(Cid, oneshot::Sender<(Option<bool>, bool)>),
    Stats(oneshot::Sender<Stats>),
    Provide(Vec<Cid>, Option<oneshot::Sender<(u64, u64)>>),
    FindProviders { cid: Cid, max: usize, deadline: Instant, reply: oneshot::Sender<Vec<PeerId>> },
    DhtStats(oneshot::Sender<DhtStats>),
    ClosestPeers { dht: dht::Dht, key: Vec<u8>, reply: oneshot::Sender<Closest> },
    ExternalAddrs(oneshot::Sender<Vec<Multiaddr>>),
    PortMapping(oneshot::Sender<PortMapping>),
    Shutdown,
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
    /// The closest peers that answered, at most K.
    pub peers: Vec<PeerId>,
    /// Whether the lookup ended by itself (not by timing out, nor for want of a DHT).
    pub complete: bool,
}

/// A handle to the running network; cheap to clone.
#[derive(Clone, Debug)]
pub struct Network {
    peer_id: PeerId,
    listening: Vec<Multiaddr>,
    tx: mpsc::Sender<Command>,
    /// DAG fetches ([`Network::fetch_dag`]) running now.
    sessions: Arc<std::sync::atomic::AtomicU64>,
    /// HTTP origins, if configured.
    origin: Option<Arc<origin::Origin>>,
    /// The runtime the network task runs on, for [`Network::fetch_blocking`].
    runtime: tokio::runtime::Handle,
    /// Opens streams to peers without going through the driver.
    streams: Streams,
}

/// A [`libp2p_stream::Control`], which has no `Debug`.
#[derive(Clone)]
struct Streams(libp2p_stream::Control);

impl std::fmt::Debug for Streams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Streams")
    }
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Command::Dial(..) => "Dial",
            Command::Subscribe(..) => "Subscribe",
            Command::Publish(..) => "Publish",
            Command::TopicPeers(..) => "TopicPeers",
            Command::Score(..) => "Score",
            Command::Hint { .. } => "Hint",
            Command::Peers(_) => "Peers",
            Command::Fetch { .. } => "Fetch",
            Command::Deliver(..) => "Deliver",
            Command::Stats(_) => "Stats",
            Command::PeersAnswer(..) => "PeersAnswer",
            Command::Provide(..) => "Provide",
            Command::FindProviders { .. } => "FindProviders",
            Command::DhtStats(_) => "DhtStats",
            Command::ClosestPeers { .. } => "ClosestPeers",
            Command::ExternalAddrs(_) => "ExternalAddrs",
            Command::PortMapping(_) => "PortMapping",
            Command::Shutdown => "Shutdown",
        })
    }
}

impl Network {
    /// This node's peer ID.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The addresses the swarm listens on (ports resolved), each ending in `/p2p/<id>`.
    pub fn listen_addrs(&self) -> &[Multiaddr] {
        &self.listening
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, NetError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).await.map_err(|_| NetError::Stopped)?;
        rx.await.map_err(|_| NetError::Stopped)
    }

    /// Connects to `addr` (which must end in `/p2p/<id>`) and returns the peer's ID.
    pub async fn connect(&self, addr: Multiaddr) -> Result<PeerId, NetError> {
        self.ask(|tx| Command::Dial(addr, tx)).await?
    }

    /// The connected peers.
    pub async fn peers(&self) -> Result<Vec<PeerInfo>, NetError> {
        self.ask(Command::Peers).await
    }

    /// Subscribes to a gossipsub topic; messages arrive on the returned channel (a slow
    /// reader loses messages rather than holding the network up).
    pub async fn subscribe(&self, topic: &str) -> Result<mpsc::Receiver<PubsubMessage>, NetError> {
        let (tx, rx) = mpsc::channel(256);
        self.ask(|r| Command::Subscribe(topic.to_owned(), tx, r)).await??;
        Ok(rx)
    }

    /// Publishes `data` on a gossipsub topic.
    pub async fn publish(&self, topic: &str, data: Vec<u8>) -> Result<(), NetError> {
        self.ask(|r| Command::Publish(topic.to_owned(), data, r)).await?
    }

    /// A peer's gossipsub score (negative after misbehaviour such as invalid hints).
    pub async fn gossip_score(&self, peer: PeerId) -> Result<Option<f64>, NetError> {
        self.ask(|r| Command::Score(peer, r)).await
    }

    /// The peers known to be subscribed to `topic`.
    pub async fn topic_peers(&self, topic: &str) -> Result<Vec<PeerId>, NetError> {
        self.ask(|r| Command::TopicPeers(topic.to_owned(), r)).await
    }

    /// Tells the network that this node holds the DAG under `root` (`size` bytes): an
    /// availability hint goes out on [`hints::TOPIC`].
    pub async fn announce_root(&self, root: Cid, size: u64) {
        let _ = self.tx.send(Command::Hint { root, size, manifest: false, topics: Vec::new() }).await;
    }

    /// Announces the signed manifest `cid` (of a `size`-byte DAG) as an availability hint
    /// marked as a manifest, on [`hints::TOPIC`] and on each of `topics`.
    pub async fn announce_manifest(&self, cid: Cid, size: u64, topics: Vec<String>) {
        let _ = self.tx.send(Command::Hint { root: cid, size, manifest: true, topics }).await;
    }

    /// Bitswap counters.
    pub async fn stats(&self) -> Result<Stats, NetError> {
        self.ask(Command::Stats).await
    }

    /// DAG fetches ([`Network::fetch_dag`]) running now: Bitswap sessions.
    pub fn active_sessions(&self) -> u64 {
        self.sessions.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Announces on the DHTs that this node provides `cids`, and waits until every
    /// announcement has been tried: returns how many reached a peer and how many did not.
    /// Announcements queue behind each other, a bounded number at a time.
    pub async fn provide(&self, cids: Vec<Cid>) -> Result<(u64, u64), NetError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Command::Provide(cids, Some(tx))).await.map_err(|_| NetError::Stopped)?;
        rx.await.map_err(|_| NetError::Stopped)
    }

    /// Queues announcements of `cids` without waiting for them.
    pub async fn provide_later(&self, cids: Vec<Cid>) {
        let _ = self.tx.send(Command::Provide(cids, None)).await;
    }

    /// Looks up providers of `cid` on the DHTs: up to `max` of them, as found within
    /// `timeout`.
    pub async fn find_providers(&self, cid: Cid, max: usize, timeout: Duration) -> Result<Vec<PeerId>, NetError> {
        let deadline = Instant::now() + timeout;
        self.ask(|reply| Command::FindProviders { cid, max: max.max(1), deadline, reply }).await
    }

    /// The DHTs' routing tables and announcement counters.
    pub async fn dht_stats(&self) -> Result<DhtStats, NetError> {
        self.ask(Command::DhtStats).await
    }

    /// The DHTs whose routing tables hold peers, where announcements can go.
    pub async fn live_dhts(&self) -> Result<Vec<dht::Dht>, NetError> {
        let s = self.dht_stats().await?;
        Ok([(dht::Dht::Wan, s.wan_peers), (dht::Dht::Lan, s.lan_peers)]
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(d, _)| d)
            .collect())
    }

    /// Looks up the peers closest to the DHT key `key` (a multihash's bytes) on one DHT. The
    /// swarm stays connected to (or dials) those found, so streams to them open at once.
    pub async fn closest_peers(&self, dht: dht::Dht, key: Vec<u8>) -> Result<Closest, NetError> {
        self.ask(|reply| Command::ClosestPeers { dht, key, reply }).await
    }

    /// The addresses this node tells peers, as provider records carry them.
    pub async fn external_addrs(&self) -> Result<Vec<Multiaddr>, NetError> {
        self.ask(Command::ExternalAddrs).await
    }

    /// Where UPnP port mapping stands.
    pub async fn port_mapping(&self) -> Result<PortMapping, NetError> {
        self.ask(Command::PortMapping).await
    }

    /// Tells `peer` on `dht` that this node (at `addrs`) provides `keys` (multihash bytes),
    /// over one stream: [`sweep::send`].
    pub async fn send_providers(
        &self,
        dht: dht::Dht,
        peer: PeerId,
        addrs: &[Multiaddr],
        keys: &[&[u8]],
    ) -> Result<(), String> {
        sweep::send(&mut self.streams.0.clone(), peer, dht.protocol(), &self.peer_id, addrs, keys).await
    }

    /// Fetches a block from peers (and from the HTTP origins, when configured: [`origin`]),
    /// stores it, and returns its bytes.
    pub async fn fetch(&self, cid: Cid, timeout: Duration) -> Result<Bytes, FetchError> {
        self.fetch_from(cid, timeout, bitswap::engine::PRIORITY_READER).await
    }

    /// [`Network::fetch`] for a block no reader waits for (a pin, a DAG fetched in spread
    /// order): it takes peers' room after readers and read-ahead, rarest first.
    pub async fn fetch_bulk(&self, cid: Cid, timeout: Duration) -> Result<Bytes, FetchError> {
        self.fetch_from(cid, timeout, bitswap::engine::PRIORITY_BULK).await
    }

    /// Fetches a block a reader will want soon. While a peer has it, the origin is asked only
    /// once a reader waits on the block ([`Network::fetch`], which then shares this want):
    /// read-ahead that raced the origin would have every reader of a crowd ask the origin for
    /// every block it fetches ahead, doubling the load on the publisher's uplink. A block that
    /// every peer says it lacks goes to the origin after the stall timeout.
    pub async fn fetch_ahead(&self, cid: Cid, timeout: Duration) -> Result<Bytes, FetchError> {
        self.fetch_from(cid, timeout, bitswap::engine::PRIORITY_AHEAD).await
    }

    /// Fetches at `priority`; read-ahead ([`bitswap::engine::PRIORITY_AHEAD`]) also waits
    /// longer before the origin is asked (see [`Network::fetch_ahead`]).
    async fn fetch_from(&self, cid: Cid, timeout: Duration, priority: i32) -> Result<Bytes, FetchError> {
        let ahead = priority == bitswap::engine::PRIORITY_AHEAD;
        let (waiter, mut rx) = oneshot::channel();
        let deadline = Instant::now() + timeout;
        tracing::trace!(target: "cairn_trace", %cid, priority, "fetch");
        self.tx.send(Command::Fetch { cid, priority, deadline, waiter }).await.map_err(|_| FetchError::Shutdown)?;
        let Some(origin) = self.origin.clone() else { return rx.await.map_err(|_| FetchError::Shutdown)? };
        // The peers get `delay` to themselves, and more while they keep delivering blocks
        // (slow, not stalled), up to `PATIENCE` stall timeouts; then the origin races them. A
        // block fetched ahead is left to the peers for as long as one of them has it.
        let give_up = Instant::now() + origin.stall() * origin::PATIENCE;
        let mut wait = if ahead { origin.stall() } else { origin.delay() };
        let mut fast_start = !ahead && wait.is_zero();
        // The fast start goes to the origin at once unless a peer says, within
        // `FAST_START_WAIT` of being told, that it has the block: a crowd's readers then leave
        // the origin (often the publisher's own uplink) alone, and take it only for what no
        // peer has yet. With more peers than are told of a want at first, the wait runs from
        // when the last of them was told, up to `FAST_START_MAX` in all.
        if fast_start {
            let mut patience = FastStartWait::new(Instant::now());
            loop {
                let (answer, told) = self.peers_told(cid, Some(false)).await;
                match patience.decide(answer, told, Instant::now()) {
                    Some(true) => {
                        wait = origin.stall();
                        fast_start = false;
                        break;
                    }
                    Some(false) => break,
                    None => tokio::select! {
                        r = &mut rx => return r.map_err(|_| FetchError::Shutdown)?,
                        () = tokio::time::sleep(FAST_START_POLL) => {}
                    },
                }
            }
        }
        while !wait.is_zero() {
            tokio::select! {
                r = &mut rx => return r.map_err(|_| FetchError::Shutdown)?,
                () = tokio::time::sleep(wait) => {}
            }
            wait = if ahead {
                Duration::ZERO
            } else {
                origin.stall_left().min(give_up.saturating_duration_since(Instant::now()))
            };
        }
        if ahead {
            // Only a block every peer said it lacks: a busy peer's answer may be late.
            if self.peers_answer(cid, None).await != Some(false) {
                return rx.await.map_err(|_| FetchError::Shutdown)?;
            }
        }
        // A CAR from the origin on its way may hold the block: wait for it rather than ask
        // twice. Its blocks are answered as they are stored, so this want is answered by now
        // if the CAR held the block.
        tokio::select! {
            r = &mut rx => return r.map_err(|_| FetchError::Shutdown)?,
            () = origin.cars_settled() => {}
        }
        if let Ok(r) = rx.try_recv() {
            return r;
        }
        // Another fetch of this block is asking the origin already: its delivery answers this
        // want too.
        let Some(_claim) = origin.claim(cid) else { return rx.await.map_err(|_| FetchError::Shutdown)? };
        let why = if ahead {
            &origin.stats.asked_ahead
        } else if fast_start {
            &origin.stats.asked_fast_start
        } else if Instant::now() >= give_up {
            &origin.stats.asked_patience
        } else {
            &origin.stats.asked_stalled
        };
        why.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::trace!(target: "cairn_trace", %cid, ahead, fast_start, "origin asked");
        tokio::select! {
            r = &mut rx => {
                origin.lost_to_peers();
                r.map_err(|_| FetchError::Shutdown)?
            }
            got = origin.get(cid) => {
                match got {
                    // Stored like a block from a peer: the engine then answers every waiter
                    // (this one included) and cancels the want with the peers.
                    Ok(block) => {
                        tracing::trace!(target: "cairn_trace", %cid, "origin delivered");
                        origin.won();
                        let _ = self.tx.send(Command::Deliver(block, None)).await;
                    }
                    Err(e) => tracing::debug!(%cid, error = %e, "the origin did not supply the block"),
                }
                rx.await.map_err(|_| FetchError::Shutdown)?
            }
        }
    }

    /// What the peers said about `cid` ([`Engine::peers_answer`]); `shut` if the network task
    /// is gone.
    async fn peers_answer(&self, cid: Cid, shut: Option<bool>) -> Option<bool> {
        self.peers_told(cid, shut).await.0
    }

    /// [`Network::peers_answer`], and whether every connected peer has been told of the want.
    async fn peers_told(&self, cid: Cid, shut: Option<bool>) -> (Option<bool>, bool) {
        let (tx, answer) = oneshot::channel();
        let _ = self.tx.send(Command::PeersAnswer(cid, tx)).await;
        answer.await.unwrap_or((shut, true))
    }

    /// A reader starts on bytes `from .. to` of the file `file` and the store lacks what it
    /// needs first: under `Origins.Format = "car"`, while the burst's fast start is not spent,
    /// the start of that stretch is asked of the origin as one CAR, its blocks stored as they
    /// stream in ([`origin::Origin::get_range`]). Returns at once; the CAR is fetched in the
    /// background.
    pub fn fetch_range(&self, file: Cid, from: u64, to: u64) {
        let Some(origin) = self.origin.clone() else { return };
        // Peers delivering lately (the file's root most likely came from one): the read's
        // blocks are left to them, as a raw fast start leaves blocks a peer has.
        if !origin.stall_left().is_zero() {
            return;
        }
        let Some(len) = origin.take_fast_start(to.saturating_sub(from)) else { return };
        let offset = from;
        let ticket = origin.car_ticket();
        let tx = self.tx.clone();
        self.runtime.spawn(async move {
            // Each block is stored, and its waiters answered, before the next is read, so that
            // once the CAR is done a reader waiting for it finds its block answered.
            let deliver = move |block: Block| {
                let (ack, stored) = oneshot::channel();
                if tx.blocking_send(Command::Deliver(block, Some(ack))).is_ok() {
                    let _ = stored.blocking_recv();
                }
            };
            match origin.get_range(ticket, file, offset, len, deliver).await {
                Ok(n) => tracing::debug!(%file, offset, len, blocks = n, "fast start from the origin as a CAR"),
                Err(e) => tracing::debug!(%file, offset, error = %e, "the origin's CAR failed"),
            }
        });
    }

    /// [`Network::fetch_ahead`] in the background, on the network's runtime: callable from any
    /// thread; a failure is only logged.
    pub fn fetch_ahead_detached(&self, cid: Cid, timeout: Duration) {
        let net = self.clone();
        self.runtime.spawn(async move {
            if let Err(e) = net.fetch_ahead(cid, timeout).await {
                tracing::debug!(%cid, error = %e, "read-ahead fetch failed");
            }
        });
    }

    /// [`Network::fetch`] for synchronous callers (not on a runtime thread).
    pub fn fetch_blocking(&self, cid: Cid, timeout: Duration) -> Result<Bytes, FetchError> {
        self.runtime.block_on(self.fetch(cid, timeout))
    }

    /// What the HTTP origins delivered, when there are any.
    pub fn origin_stats(&self) -> Option<&origin::OriginStats> {
        self.origin.as_deref().map(|o| &o.stats)
    }

    /// Stops the network task.
    pub async fn shutdown(&self) {
        let _ = self.tx.send(Command::Shutdown).await;
    }
}

/// Hands a gossipsub message to the local subscribers of its topic (a slow one misses it).
fn deliver(
    topics: &mut std::collections::HashMap<gossipsub::TopicHash, Vec<mpsc::Sender<PubsubMessage>>>,
    message: &gossipsub::Message,
) {
    if let Some(subs) = topics.get_mut(&message.topic) {
        let m = PubsubMessage {
            from: message.source,
            topic: message.topic.to_string(),
            data: message.data.clone(),
            seqno: message.sequence_number,
        };
        subs.retain(|s| !s.is_closed());
        for s in subs.iter() {
            let _ = s.try_send(m.clone());
        }
    }
}

/// The blocks the network reads and writes.
pub type SharedStore = Arc<dyn BlockStore>;

/// Starts the network on the current tokio runtime. Returns once every listen address is
/// bound, with the handle and the driver's task.
pub async fn spawn(
    keypair: Keypair,
    store: SharedStore,
    cfg: NetConfig,
) -> Result<(Network, tokio::task::JoinHandle<()>), NetError> {
    let peer_id = keypair.public().to_peer_id();
    let quic = cfg.listen.iter().any(|a| a.iter().any(|p| matches!(p, Protocol::QuicV1)));
    let transport = transport::build(&keypair, cfg.swarm_key, quic)?;
    let limits = connection_limits::ConnectionLimits::default()
        .with_max_established(Some(cfg.max_connections))
        .with_max_established_per_peer(Some(cfg.max_connections_per_peer))
        .with_max_pending_incoming(Some(cfg.max_connections.min(256)))
        .with_max_pending_outgoing(Some(cfg.max_connections.min(256)));
    let gossipsub = {
        // Message IDs as Kubo's pubsub makes them: the source's peer ID bytes, then the
        // sequence number (8 bytes, big-endian).
        let id = |m: &gossipsub::Message| {
            let mut v = m.source.map(|p| p.to_bytes()).unwrap_or_default();
            v.extend_from_slice(&m.sequence_number.unwrap_or(0).to_be_bytes());
            gossipsub::MessageId::from(v)
        };
        let cfg = gossipsub::ConfigBuilder::default()
            .validation_mode(gossipsub::ValidationMode::Strict)
            .message_id_fn(id)
            .max_transmit_size(1 << 20)
            .validate_messages()
            .build()
            .map_err(|e| NetError::Config(format!("gossipsub: {e}")))?;
        let filter = TopicFilter {
            filter: gossipsub::AllowAllSubscriptionFilter {},
            max_subscribed_topics: MAX_PEER_TOPICS,
            max_subscriptions_per_request: MAX_PEER_TOPICS,
        };
        let mut gs = gossipsub::Behaviour::new_with_subscription_filter(
            gossipsub::MessageAuthenticity::Signed(keypair.clone()),
            cfg,
            filter,
        )
        .map_err(|e| NetError::Config(format!("gossipsub: {e}")))?;
        // Peer scoring, so that a rejected hint costs its sender. On the hints topic, each
        // invalid message counts -10 (squared over the count, which decays by 1% a second:
        // a flood is held against its sender for minutes, not seconds);
        // time in the mesh earns at most +3.6 (a second per quantum), and sparse delivery is not
        // punished, since hints come rarely.
        let mut params = gossipsub::PeerScoreParams::default();
        let topic = gossipsub::TopicScoreParams {
            topic_weight: 1.0,
            time_in_mesh_weight: 0.001,
            time_in_mesh_quantum: Duration::from_secs(1),
            mesh_message_deliveries_weight: 0.0,
            mesh_failure_penalty_weight: 0.0,
            invalid_message_deliveries_weight: -10.0,
            invalid_message_deliveries_decay: 0.99,
            ..gossipsub::TopicScoreParams::default()
        };
        params.topics.insert(gossipsub::IdentTopic::new(hints::TOPIC).hash(), topic);
        gs.with_peer_score(params, gossipsub::PeerScoreThresholds::default())
            .map_err(|e| NetError::Config(format!("gossipsub scoring: {e}")))?;
        gs
    };
    // Both DHTs answer GET_PROVIDERS with this node for any block the repo holds.
    let holds: dht::Holds = {
        let store = store.clone();
        Arc::new(move |k: &kad::RecordKey| {
            cid::multihash::Multihash::<64>::from_bytes(k.as_ref())
                .is_ok_and(|mh| store.has(&Cid::new_v1(cairn_merkle::hash::RAW, mh)).unwrap_or(false))
        })
    };
    let (wan_mode, lan_mode) = match cfg.dht {
        dht::DhtMode::Auto => (Some(Some(kad::Mode::Client)), Some(Some(kad::Mode::Server))),
        dht::DhtMode::Server => (Some(Some(kad::Mode::Server)), Some(Some(kad::Mode::Server))),
        dht::DhtMode::Client => (Some(Some(kad::Mode::Client)), Some(Some(kad::Mode::Client))),
        dht::DhtMode::Off => (None, None),
    };
    let kad_of = |protocol, mode: Option<Option<kad::Mode>>| {
        Toggle::from(mode.map(|m| dht::behaviour(protocol, peer_id, holds.clone(), m)))
    };
    let behaviour = Behaviour {
        per_ip: iplimit::Behaviour::new(cfg.max_connections_per_ip, cfg.limit_loopback),
        limits: connection_limits::Behaviour::new(limits),
        blocked: allow_block_list::Behaviour::default(),
        identify: identify::Behaviour::new(
            identify::Config::new("ipfs/0.1.0".into(), keypair.public()).with_agent_version(AGENT.into()),
        ),
        ping: ping::Behaviour::default(),
        // AutoNAT asks peers to dial back; as a server it dials back only public addresses
        // that match the asking connection, so it never reaches past what a peer showed.
        autonat: autonat::v1::Behaviour::new(peer_id, autonat::v1::Config::default()),
        kad_wan: kad_of(dht::WAN_PROTOCOL, wan_mode),
        kad_lan: kad_of(dht::LAN_PROTOCOL, lan_mode),
        gossipsub,
        mdns: Toggle::from(
            cfg.mdns
                .then(|| libp2p::mdns::tokio::Behaviour::new(libp2p::mdns::Config::default(), peer_id))
                .transpose()
                .map_err(|e| NetError::Config(format!("mDNS: {e}")))?,
        ),
        upnp: Toggle::from(cfg.upnp.then(libp2p::upnp::tokio::Behaviour::default)),
        bitswap: bitswap::Behaviour::default(),
        streams: libp2p_stream::Behaviour::new(),
    };
    let streams = Streams(behaviour.streams.new_control());
    let idle = cfg.idle_timeout;
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_other_transport(|_| transport)
        .map_err(|e| NetError::Transport(e.to_string()))?
        .with_behaviour(|_| behaviour)
        .map_err(|e| NetError::Transport(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
        .build();

    let mut ids = Vec::new();
    for addr in &cfg.listen {
        let id = swarm.listen_on(addr.clone()).map_err(|e| NetError::Listen(addr.clone(), e.to_string()))?;
        ids.push((id, addr.clone()));
    }
    let mut listening = Vec::new();
    // Whatever else the swarm says meanwhile (a UPnP search that already ended, an mDNS peer)
    // is handed to the driver when it starts, not dropped.
    let mut early = Vec::new();
    while listening.len() < ids.len() {
        match swarm.select_next_some().await {
            SwarmEvent::NewListenAddr { address, .. } => listening.push(address.with(Protocol::P2p(peer_id))),
            SwarmEvent::ListenerError { error, listener_id }
            | SwarmEvent::ListenerClosed { reason: Err(error), listener_id, .. } => {
                let addr =
                    ids.iter().find(|(id, _)| *id == listener_id).map(|(_, a)| a.clone()).unwrap_or(Multiaddr::empty());
                return Err(NetError::Listen(addr, error.to_string()));
            }
            other => early.push(other),
        }
    }
    // What peers are told: the announce list (or the listen addresses), and the extra ones.
    // The DHTs put these in provider records.
    let told = if cfg.announce.is_empty() {
        listening.iter().map(|a| a.iter().filter(|p| !matches!(p, Protocol::P2p(_))).collect()).collect()
    } else {
        cfg.announce.clone()
    };
    for a in told.into_iter().chain(cfg.append_announce.iter().cloned()) {
        swarm.add_external_address(a);
    }
    for addr in &cfg.bootstrap {
        if let Err(e) = swarm.dial(addr.clone()) {
            tracing::warn!("bootstrap {addr}: {e}");
        }
    }
    swarm
        .behaviour_mut()
        .gossipsub
        .subscribe(&gossipsub::IdentTopic::new(hints::TOPIC))
        .map_err(|e| NetError::Pubsub(e.to_string()))?;
    let (tx, rx) = mpsc::channel(1024);
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let mut engine = Engine::default();
    engine.set_download_limit(cfg.download_limit);
    engine.set_score_half_life(cfg.score_half_life);
    let origin = match cfg.origin.clone() {
        Some(c) => origin::Origin::new(c).map_err(NetError::Config)?.map(Arc::new),
        None => None,
    };
    let driver = Driver {
        swarm,
        store,
        rx,
        done_tx,
        done_rx,
        engine,
        upload: cfg.upload_limit.map(|r| ratelimit::TokenBucket::new(r, Instant::now())),
        budget: cfg.upload_budget.map(ratelimit::Budget::daily),
        serve: cfg.serve,
        dials: Vec::new(),
        jobs: 0,
        serving_blocks: 0,
        upload_meter: UploadMeter::new(Instant::now()),
        addrs: Default::default(),
        topics: Default::default(),
        hints: Default::default(),
        topic_rates: ratelimit::PerSender::new(MAX_TOPIC_MESSAGES_PER_MINUTE, hints::RATE_WINDOW, hints::MAX_SENDERS),
        listening: listening.clone(),
        provider: dht::Provider::default(),
        lookups: Vec::new(),
        lookup_due: std::collections::VecDeque::new(),
        lookups_started: 0,
        closest: Default::default(),
        dht: cfg.dht,
        origin: origin.clone(),
        arrived: 0,
        port_mapping: if cfg.upnp { PortMapping::Searching } else { PortMapping::Off },
    };
    let task = tokio::spawn(driver.run(early));
    let runtime = tokio::runtime::Handle::current();
    Ok((Network { peer_id, listening, tx, sessions: Arc::default(), origin, runtime, streams }, task))
}

/// Serving turns running at once.
const MAX_JOBS: usize = 4;
/// Wanted-but-missing blocks up to this size are answered with the block instead of HAVE.
const HAVE_AS_BLOCK: usize = 1024;
/// Block bytes per reply message.
const REPLY_BYTES: usize = 1 << 20;
/// Block bytes queued to one peer (written to its connection but not yet taken) before its
/// serving turns wait: a peer that stops reading holds at most this much of the node's memory.
pub const MAX_PENDING_PER_PEER: u64 = 8 << 20;
/// About this long of the measured upload rate is committed to peers (queued to be written,
/// or being read from the store) at once; wants beyond it wait in the engine, where the least
/// served blocks are chosen first and cancels still reach them. Queues of peers that stopped
/// reading do not count ([`bitswap::Behaviour::moving_pending`]): they would hold everyone
/// else's turns.
///
/// Short, so that a slow uplink sends one block after another rather than many side by side:
/// blocks sent side by side share the link and all arrive late, while a block sent alone
/// arrives soon and its receiver passes it on (with the sockets' unsent bytes kept low, see
/// [`transport::UNSENT_LOWAT`], what is committed here is close to what is on the wire). On
/// ten players behind 20 Mbit/s uplinks, going from 500 ms and 2 MiB to 100 ms and one block
/// cut the duplicate blocks from 29% to 6%.
const COMMIT_TIME: Duration = Duration::from_millis(100);
/// Block bytes always allowed in commitment, whatever the measured rate: one block.
const MIN_COMMIT: u64 = BLOCK_ESTIMATE;
/// Bytes assumed for a block not yet read (the default chunk size).
const BLOCK_ESTIMATE: u64 = 256 * 1024;
/// How often the upload rate is measured.
const UPLOAD_SAMPLE: Duration = Duration::from_millis(250);

/// The upload rate as serving achieves it: bytes that left the queues, per second, averaged.
#[derive(Debug)]
struct UploadMeter {
    rate: f64,
    last: u64,
    at: Instant,
}

impl UploadMeter {
    fn new(now: Instant) -> UploadMeter {
        UploadMeter { rate: 0.0, last: 0, at: now }
    }

    /// Takes a sample of `drained` (the total so far).
    fn sample(&mut self, drained: u64, now: Instant) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        if dt < UPLOAD_SAMPLE.as_secs_f64() {
            return;
        }
        let rate = drained.saturating_sub(self.last) as f64 / dt;
        self.rate = if self.rate == 0.0 { rate } else { 0.5 * self.rate + 0.5 * rate };
        (self.last, self.at) = (drained, now);
    }

    /// Block bytes that may be committed at once.
    fn commitment(&self) -> u64 {
        ((self.rate * COMMIT_TIME.as_secs_f64()) as u64).max(MIN_COMMIT)
    }
}

/// A serving turn's outcome.
struct Served {
    peer: PeerId,
    replies: Vec<Message>,
    /// Wants not answered with a block or HAVE, kept for when the block arrives.
    missing: Vec<bitswap::Want>,
    /// Wants for blocks held but not sent: the turn's allowance ran out.
    deferred: Vec<bitswap::Want>,
    blocks: u64,
    bytes: u64,
}

enum Done {
    Served(Served, usize),
    Stored { blocks: Vec<Block>, result: Result<(), String>, ack: Option<oneshot::Sender<()>> },
}

struct Driver {
    swarm: Swarm<Behaviour>,
    store: SharedStore,
    rx: mpsc::Receiver<Command>,
    done_tx: mpsc::UnboundedSender<Done>,
    done_rx: mpsc::UnboundedReceiver<Done>,
    engine: Engine,
    /// The upload cap: serving turns start only while it is not spent.
    upload: Option<ratelimit::TokenBucket>,
    /// The upload budget over the last 24 hours: no serving turn starts once it is spent.
    budget: Option<ratelimit::Budget>,
    /// Whether peers are served at all.
    serve: bool,
    dials: Vec<(PeerId, oneshot::Sender<Result<PeerId, NetError>>)>,
    jobs: usize,
    /// Want-blocks in serving turns that are running.
    serving_blocks: usize,
    upload_meter: UploadMeter,
    /// The remote address of one open connection per peer.
    addrs: std::collections::HashMap<PeerId, Multiaddr>,
    /// Local subscribers per topic.
    topics: std::collections::HashMap<gossipsub::TopicHash, Vec<mpsc::Sender<PubsubMessage>>>,
    /// Availability hints heard.
    hints: hints::Hints,
    /// Messages per signed source on the other topics.
    topic_rates: ratelimit::PerSender,
    /// Our listen addresses, for hints.
    listening: Vec<Multiaddr>,
    /// Announcements on the DHTs.
    provider: dht::Provider,
    /// Provider lookups running.
    lookups: Vec<dht::Lookup>,
    /// Fetches that look for providers on the DHT if no peer has the block by then.
    lookup_due: std::collections::VecDeque<(Instant, Cid)>,
    lookups_started: u64,
    /// Closest-peer lookups running, and who waits for each.
    closest: std::collections::HashMap<dht::Query, oneshot::Sender<Closest>>,
    dht: dht::DhtMode,
    /// The HTTP origins, told when blocks arrive from peers, so that they are asked only when
    /// peers stall.
    origin: Option<Arc<origin::Origin>>,
    /// Block message bytes read from peers at the last tick.
    arrived: u64,
    port_mapping: PortMapping,
}

/// How long a fetch in a burst's fast start waits for a peer to say it has the block before
/// the origin is asked (peers that answered DONT_HAVE, or none connected, do not wait it out).
const FAST_START_WAIT: Duration = Duration::from_millis(250);
/// How long a fetch in a burst's fast start leaves to the peers: until one says it has the
/// block (the peers', `Some(true)`), every one told says it lacks it (the origin's,
/// `Some(false)`), or [`FAST_START_WAIT`] has passed since the last of them was told (the
/// origin's). With more peers than a want is told to at first ([`bitswap::engine::FIRST_TOLD`]),
/// the rest hear of it only once the first lack the block, so the wait runs from then, up to
/// [`FAST_START_MAX`] in all: in a crowd the one peer that has the block (the publisher, often
/// behind the same uplink as the origin) is then heard before the origin is asked.
struct FastStartWait {
    until: Instant,
}

impl FastStartWait {
    fn new(now: Instant) -> Self {
        FastStartWait { until: now + FAST_START_MAX }
    }

    /// Where the block should come from, given what the peers said and whether every one has
    /// been told of the want; `None` to wait on. The first call that sees every peer told
    /// sets the deadline; later ones, being later, cannot lower it.
    fn decide(&mut self, answer: Option<bool>, all_told: bool, now: Instant) -> Option<bool> {
        if all_told {
            self.until = self.until.min(now + FAST_START_WAIT);
        }
        match answer {
            None if now < self.until => None,
            None => Some(false),
            known => known,
        }
    }
}

/// The longest a fetch in a fast start waits for the peers, when the want is told to some of
/// them only after the first ones answered.
const FAST_START_MAX: Duration = Duration::from_secs(1);
/// How often the peers' answers are looked at meanwhile.
const FAST_START_POLL: Duration = Duration::from_millis(10);
/// How long a fetch waits on connected peers before it asks the DHT (as Kubo does).
const PROVIDER_SEARCH_DELAY: Duration = Duration::from_secs(1);
/// Provider lookups started by fetches at once.
const MAX_FETCH_LOOKUPS: usize = 8;
/// How long a lookup started by a fetch runs.
const FETCH_LOOKUP_TIME: Duration = Duration::from_secs(20);

impl Driver {
    /// The driver's loop; `early` holds what the swarm said before it started.
    async fn run(mut self, early: Vec<SwarmEvent<BehaviourEvent>>) {
        for ev in early {
            self.on_swarm(ev);
        }
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                ev = self.swarm.select_next_some() => self.on_swarm(ev),
                cmd = self.rx.recv() => match cmd {
                    None | Some(Command::Shutdown) => break,
                    Some(cmd) => self.on_command(cmd),
                },
                Some(done) = self.done_rx.recv() => self.on_done(done),
                _ = tick.tick() => {
                    let now = Instant::now();
                    self.note_arrivals();
                    self.upload_meter.sample(self.swarm.behaviour().bitswap.drained_bytes(), now);
                    self.engine.tick(now, &mut self.swarm.behaviour_mut().bitswap);
                    for peer in self.engine.lifted_bans(now) {
                        tracing::info!("{peer}'s ban ended: its score decayed");
                        self.swarm.behaviour_mut().blocked.unblock_peer(peer);
                    }
                    self.lookup_tick(now);
                }
            }
            self.start_jobs();
            self.pump_provides();
        }
        self.engine.shutdown();
    }

    /// Tells the origins that peers are delivering when block bytes arrived since the last
    /// tick, a block still on its way included: a crowd's slow but steady peers are not stalled.
    fn note_arrivals(&mut self) {
        let arrived = self.swarm.behaviour().bitswap.arrived_bytes();
        if arrived > self.arrived {
            self.arrived = arrived;
            if let Some(origin) = &self.origin {
                origin.peers_delivered();
            }
        }
    }

    fn start_jobs(&mut self) {
        // Under an upload cap or budget, one turn at a time, each given what the cap and the
        // budget allow now, so that neither is passed by more than one block.
        let capped = self.budget.is_some() || self.upload.is_some();
        let most = if capped { 1 } else { MAX_JOBS };
        while self.jobs < most {
            let now = Instant::now();
            let allowance = capped.then(|| {
                let rate = self.upload.as_mut().map_or(u64::MAX, |b| b.available(now));
                let budget = self.budget.as_mut().map_or(u64::MAX, |b| b.left(now));
                rate.min(budget)
            });
            if allowance == Some(0) {
                break;
            }
            let bitswap = &self.swarm.behaviour().bitswap;
            let busy = |p: &PeerId| bitswap.pending_bytes(p) >= MAX_PENDING_PER_PEER;
            let committed = bitswap.moving_pending(now) + self.serving_blocks as u64 * BLOCK_ESTIMATE;
            let room = self.upload_meter.commitment().saturating_sub(committed).div_ceil(BLOCK_ESTIMATE);
            let Some(job) = self.engine.next_serve_job(&busy, room as usize, now) else { break };
            let blocks = job.wants.iter().filter(|w| w.kind == WantType::Block).count();
            self.serving_blocks += blocks;
            self.jobs += 1;
            let store = self.store.clone();
            let done = self.done_tx.clone();
            tokio::task::spawn_blocking(move || {
                let _ = done.send(Done::Served(serve(&*store, job, allowance), blocks));
            });
        }
    }

    fn on_done(&mut self, done: Done) {
        match done {
            Done::Served(served, blocks) => {
                self.jobs -= 1;
                self.serving_blocks -= blocks;
                self.deliver(served);
            }
            Done::Stored { blocks, result, ack } => {
                self.engine.stored(&blocks, result, &mut self.swarm.behaviour_mut().bitswap);
                if let Some(ack) = ack {
                    let _ = ack.send(());
                }
            }
        }
    }

    /// Sends a serving turn's replies and tells the engine what was served.
    fn deliver(&mut self, s: Served) {
        if let Some(b) = &mut self.upload {
            b.take(s.bytes, Instant::now());
        }
        if let Some(b) = &mut self.budget {
            b.take(s.bytes, Instant::now());
        }
        for m in s.replies {
            self.swarm.behaviour_mut().bitswap.send(s.peer, m);
        }
        self.engine.served(s.peer, s.missing, s.deferred, s.blocks, s.bytes);
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Dial(addr, tx) => {
                let Some(Protocol::P2p(peer)) = addr.iter().last() else {
                    let _ =
                        tx.send(Err(NetError::Dial(addr.to_string(), "the address must end in /p2p/<peer id>".into())));
                    return;
                };
                if self.swarm.is_connected(&peer) {
                    let _ = tx.send(Ok(peer));
                    return;
                }
                match self.swarm.dial(addr.clone()) {
                    Ok(()) => self.dials.push((peer, tx)),
                    Err(e) => {
                        let _ = tx.send(Err(NetError::Dial(addr.to_string(), e.to_string())));
                    }
                }
            }
            Command::Peers(tx) => {
                let peers = self.swarm.connected_peers().copied().collect::<Vec<_>>();
                let infos = peers
                    .into_iter()
                    .map(|peer| PeerInfo { peer, addr: self.addr_of(&peer).unwrap_or_else(Multiaddr::empty) })
                    .collect();
                let _ = tx.send(infos);
            }
            Command::Subscribe(topic, sender, tx) => {
                let t = gossipsub::IdentTopic::new(topic);
                let r = if self.topics.len() >= MAX_LOCAL_TOPICS && !self.topics.contains_key(&t.hash()) {
                    Err(NetError::Pubsub(format!("this node already subscribes to {MAX_LOCAL_TOPICS} topics")))
                } else {
                    self.swarm.behaviour_mut().gossipsub.subscribe(&t).map_err(|e| NetError::Pubsub(e.to_string()))
                };
                if r.is_ok() {
                    self.topics.entry(t.hash()).or_default().push(sender);
                }
                let _ = tx.send(r.map(drop));
            }
            Command::Publish(topic, data, tx) => {
                let t = gossipsub::IdentTopic::new(topic);
                let r = self.swarm.behaviour_mut().gossipsub.publish(t, data);
                let _ = tx.send(r.map(drop).map_err(|e| NetError::Pubsub(e.to_string())));
            }
            Command::TopicPeers(topic, tx) => {
                let hash = gossipsub::IdentTopic::new(topic).hash();
                let peers = self
                    .swarm
                    .behaviour()
                    .gossipsub
                    .all_peers()
                    .filter(|(_, topics)| topics.contains(&&hash))
                    .map(|(p, _)| *p)
                    .collect();
                let _ = tx.send(peers);
            }
            Command::Score(peer, tx) => {
                let _ = tx.send(self.swarm.behaviour().gossipsub.peer_score(&peer));
            }
            Command::Hint { root, size, manifest, topics } => {
                let addrs: Vec<Multiaddr> = self
                    .listening
                    .iter()
                    .map(|a| a.iter().filter(|p| !matches!(p, Protocol::P2p(_))).collect())
                    .collect();
                let data = hints::encode(&root, size, &addrs, manifest);
                for topic in std::iter::once(hints::TOPIC.to_owned()).chain(topics) {
                    let gs = &mut self.swarm.behaviour_mut().gossipsub;
                    if let Err(e) = gs.publish(gossipsub::IdentTopic::new(topic.clone()), data.clone()) {
                        tracing::debug!("hint for {root} not published on {topic}: {e}");
                    }
                }
            }
            Command::Deliver(block, ack) => self.store_blocks(vec![block], ack),
            Command::Fetch { cid, priority, deadline, waiter } => {
                // Stored since the reader looked (the origin's CAR streaming in, a read-ahead
                // landing): no want needed.
                if let Ok(Some(data)) = self.store.get(&cid) {
                    let _ = waiter.send(Ok(data));
                    return;
                }
                self.dial_hinted(&cid);
                let now = Instant::now();
                self.engine.fetch(cid, priority, waiter, deadline, now, &mut self.swarm.behaviour_mut().bitswap);
                if self.dht != dht::DhtMode::Off && self.lookup_due.len() < 4096 {
                    self.lookup_due.push_back((now + PROVIDER_SEARCH_DELAY, cid));
                }
            }
            // Whether a peer has the block, none does, or answers are still due.
            Command::PeersAnswer(cid, tx) => {
                let _ = tx.send((self.engine.peers_answer(&cid), self.engine.told_everyone(&cid)));
            }
            Command::Stats(tx) => {
                let stats =
                    Stats { queued_bytes: self.swarm.behaviour().bitswap.queued_bytes(), ..self.engine.stats() };
                let _ = tx.send(stats);
            }
            Command::Provide(cids, done) => {
                self.provider.enqueue(cids.iter().map(dht::key_of).collect(), done);
            }
            Command::FindProviders { cid, max, deadline, reply } => {
                self.start_lookup(cid, max, deadline, Some(reply));
            }
            Command::DhtStats(tx) => {
                let b = self.swarm.behaviour_mut();
                let wan_server = b.kad_wan.as_mut().is_some_and(|k| k.mode() == kad::Mode::Server);
                let stats = DhtStats {
                    wan_peers: table_size(&mut b.kad_wan),
                    lan_peers: table_size(&mut b.kad_lan),
                    wan_server,
                    lookups: self.lookups_started,
                    provide: self.provider.stats(),
                };
                let _ = tx.send(stats);
            }
            Command::ClosestPeers { dht, key, reply } => match self.swarm.behaviour_mut().kad(dht).as_mut() {
                Some(k) => {
                    let id = k.get_closest_peers(key);
                    self.closest.insert((dht, id), reply);
                }
                None => {
                    let _ = reply.send(Closest::default());
                }
            },
            Command::ExternalAddrs(tx) => {
                let _ = tx.send(self.swarm.external_addresses().cloned().collect());
            }
            Command::PortMapping(tx) => {
                let _ = tx.send(self.port_mapping.clone());
            }
            Command::Shutdown => {}
        }
    }

    fn addr_of(&self, peer: &PeerId) -> Option<Multiaddr> {
        self.addrs.get(peer).cloned()
    }

    fn on_swarm(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        match ev {
            SwarmEvent::ConnectionEstablished { peer_id, endpoint, .. } => {
                tracing::debug!("connected to {peer_id} at {}", endpoint.get_remote_address());
                self.addrs.insert(peer_id, endpoint.get_remote_address().clone());
                self.finish_dials(peer_id, || Ok(peer_id));
            }
            SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } => {
                self.addrs.remove(&peer_id);
            }
            SwarmEvent::OutgoingConnectionError { peer_id: Some(peer), error, .. }
                if !self.swarm.is_connected(&peer) =>
            {
                self.finish_dials(peer, || Err(NetError::Dial(peer.to_string(), error.to_string())));
            }
            SwarmEvent::Behaviour(BehaviourEvent::Bitswap(ev)) => self.on_bitswap(ev),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. })) => {
                self.on_identified(peer_id, info)
            }
            SwarmEvent::Behaviour(BehaviourEvent::KadWan(ev)) => self.on_kad(dht::Dht::Wan, ev),
            SwarmEvent::Behaviour(BehaviourEvent::KadLan(ev)) => self.on_kad(dht::Dht::Lan, ev),
            SwarmEvent::Behaviour(BehaviourEvent::Autonat(autonat::v1::Event::StatusChanged { new, .. })) => {
                tracing::info!("AutoNAT: reachability is now {new:?}");
                if self.dht == dht::DhtMode::Auto {
                    let mode = if new.is_public() { kad::Mode::Server } else { kad::Mode::Client };
                    if let Some(k) = self.swarm.behaviour_mut().kad_wan.as_mut() {
                        k.set_mode(Some(mode));
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(ev)) => self.on_gossip(ev),
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(libp2p::mdns::Event::Discovered(found))) => self.on_mdns(found),
            SwarmEvent::Behaviour(BehaviourEvent::Upnp(ev)) => self.on_upnp(ev),
            _ => {}
        }
    }

    /// Peers heard of on the local network over mDNS: each is dialed once at the addresses
    /// heard, unless connected already, and the LAN DHT learns them.
    fn on_mdns(&mut self, found: Vec<(PeerId, Multiaddr)>) {
        let mut by_peer: std::collections::HashMap<PeerId, Vec<Multiaddr>> = Default::default();
        for (peer, addr) in found {
            by_peer.entry(peer).or_default().push(addr);
        }
        for (peer, addrs) in by_peer {
            tracing::debug!("mDNS: found {peer} at {addrs:?}");
            if let Some(k) = self.swarm.behaviour_mut().kad_lan.as_mut() {
                for a in &addrs {
                    k.add_address(&peer, a.clone());
                }
            }
            self.dial_unless_connected(peer, addrs, "mDNS peer");
        }
    }

    fn on_upnp(&mut self, ev: libp2p::upnp::Event) {
        use libp2p::upnp::Event;
        match ev {
            Event::NewExternalAddr { external_addr, .. } => {
                tracing::info!("UPnP: the gateway maps {external_addr} to this node");
                match &mut self.port_mapping {
                    PortMapping::Mapped(addrs) => addrs.push(external_addr),
                    other => *other = PortMapping::Mapped(vec![external_addr]),
                }
            }
            Event::ExpiredExternalAddr { external_addr, .. } => {
                tracing::warn!("UPnP: the gateway no longer maps {external_addr}");
                if let PortMapping::Mapped(addrs) = &mut self.port_mapping {
                    addrs.retain(|a| *a != external_addr);
                }
            }
            Event::GatewayNotFound => {
                tracing::warn!("UPnP: no gateway answered on the local network; no port is mapped");
                self.port_mapping = PortMapping::NoGateway;
            }
            Event::NonRoutableGateway => {
                tracing::warn!("UPnP: the gateway's own address is not public; no port is mapped");
                self.port_mapping = PortMapping::NonRoutable;
            }
        }
    }

    /// Dials the peers hinted to hold `cid` that are not connected yet.
    fn dial_hinted(&mut self, cid: &Cid) {
        let providers: Vec<(PeerId, Vec<Multiaddr>)> = self.hints.providers(cid).to_vec();
        for (peer, addrs) in providers {
            self.dial_unless_connected(peer, addrs, "hinted provider");
        }
    }

    /// Dials `peer` at `addrs` unless it is this node, or connected or being dialed already;
    /// `who` names it in the log.
    fn dial_unless_connected(&mut self, peer: PeerId, addrs: Vec<Multiaddr>, who: &str) {
        if peer == *self.swarm.local_peer_id() || self.swarm.is_connected(&peer) {
            return;
        }
        let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer).addresses(addrs).build();
        if let Err(e) = self.swarm.dial(opts) {
            tracing::debug!("cannot dial {who} {peer}: {e}");
        }
    }

    fn on_gossip(&mut self, ev: gossipsub::Event) {
        let gossipsub::Event::Message { propagation_source, message_id, message } = ev else { return };
        let gs = &mut self.swarm.behaviour_mut().gossipsub;
        if message.topic == gossipsub::IdentTopic::new(hints::TOPIC).hash() {
            let verdict = match message.source {
                Some(source) if self.hints.allow(source, Instant::now()) => hints::decode(source, &message.data),
                Some(source) => Err(format!("{source} sends hints too fast")),
                None => Err("unsigned hint".into()),
            };
            let acceptance = match verdict {
                Ok(a) => {
                    self.hints.remember(a);
                    deliver(&mut self.topics, &message);
                    gossipsub::MessageAcceptance::Accept
                }
                Err(e) => {
                    tracing::debug!("rejected a hint from {propagation_source}: {e}");
                    gossipsub::MessageAcceptance::Reject
                }
            };
            gs.report_message_validation_result(&message_id, &propagation_source, acceptance);
            return;
        }
        // Other topics carry what applications put there: Cairn cannot judge the content, but
        // each signed source gets a rate, and what is over it is neither delivered nor relayed.
        let acceptance = match message.source {
            Some(source) if self.topic_rates.allow(source, Instant::now()) => {
                deliver(&mut self.topics, &message);
                gossipsub::MessageAcceptance::Accept
            }
            Some(source) => {
                tracing::debug!("{source} sends too fast on {}", message.topic);
                gossipsub::MessageAcceptance::Reject
            }
            None => gossipsub::MessageAcceptance::Reject,
        };
        gs.report_message_validation_result(&message_id, &propagation_source, acceptance);
    }

    /// Answers every `connect` waiting for `peer`.
    fn finish_dials(&mut self, peer: PeerId, result: impl Fn() -> Result<PeerId, NetError>) {
        let (done, waiting): (Vec<_>, Vec<_>) = self.dials.drain(..).partition(|(p, _)| *p == peer);
        self.dials = waiting;
        for (_, tx) in done {
            let _ = tx.send(result());
        }
    }

    fn on_bitswap(&mut self, ev: bitswap::Event) {
        let now = Instant::now();
        match ev {
            bitswap::Event::Connected(peer) => {
                if self.engine.is_banned(&peer, now) {
                    let _ = self.swarm.disconnect_peer_id(peer);
                    return;
                }
                self.engine.connected(peer, &mut self.swarm.behaviour_mut().bitswap);
            }
            bitswap::Event::Disconnected(peer) => {
                // A banned peer stays blocked until the tick's `lifted_bans` lets it in.
                self.engine.disconnected(peer, &mut self.swarm.behaviour_mut().bitswap);
            }
            bitswap::Event::Message { peer, mut message } => {
                // A node that opted out of serving answers no wants, not even HAVEs: it only
                // takes the blocks it asked for.
                if !self.serve {
                    message.wants.clear();
                }
                // Want-haves go into the peer's ledger with its want-blocks and are answered on
                // a serving turn, off this task, under the same caps; a turn takes them before
                // any want-block, since other peers wait on the answer to choose a source.
                let blocks = self.engine.received(peer, message, now, &mut self.swarm.behaviour_mut().bitswap);
                if self.engine.is_banned(&peer, now) {
                    self.ban(peer);
                }
                if !blocks.is_empty() {
                    if let Some(origin) = &self.origin {
                        origin.peers_delivered();
                    }
                    self.store_blocks(blocks, None);
                }
            }
            bitswap::Event::Malformed { peer, reason } => {
                tracing::debug!("malformed bitswap message from {peer}: {reason}");
                if self.engine.penalize(peer, bitswap::engine::PENALTY_MALFORMED, now) {
                    self.ban(peer);
                }
            }
            bitswap::Event::SendFailed { peer, count } => {
                tracing::debug!("{count} bitswap messages to {peer} were lost");
            }
        }
    }

    /// A peer said what it speaks and where it listens: the DHT it serves learns its
    /// addresses of the matching kind (LAN: loopback and private; WAN: the rest).
    fn on_identified(&mut self, peer: PeerId, info: identify::Info) {
        let speaks = |p: &libp2p::StreamProtocol| info.protocols.contains(p);
        let (wan, lan) = (speaks(&dht::WAN_PROTOCOL), speaks(&dht::LAN_PROTOCOL));
        let b = self.swarm.behaviour_mut();
        for addr in info.listen_addrs {
            let local = dht::is_lan(&addr);
            let kad = if local && lan {
                b.kad_lan.as_mut()
            } else if !local && wan {
                b.kad_wan.as_mut()
            } else {
                None
            };
            if let Some(k) = kad {
                k.add_address(&peer, addr);
            }
        }
    }

    /// Starts provide queries while the queue has room: each key on every DHT whose table
    /// has peers.
    fn pump_provides(&mut self) {
        if !self.provider.has_queued() || self.provider.stats().running >= dht::PROVIDE_CONCURRENCY {
            return;
        }
        let b = self.swarm.behaviour_mut();
        let dhts = [table_size(&mut b.kad_wan) > 0, table_size(&mut b.kad_lan) > 0];
        self.provider.pump(|key| {
            let mut ids = Vec::new();
            for (which, kad, live) in
                [(dht::Dht::Wan, &mut b.kad_wan, dhts[0]), (dht::Dht::Lan, &mut b.kad_lan, dhts[1])]
            {
                if let (Some(k), true) = (kad.as_mut(), live) {
                    match k.start_providing(key.clone()) {
                        Ok(id) => ids.push((which, id)),
                        Err(e) => tracing::debug!("cannot provide: {e}"),
                    }
                }
            }
            ids
        });
    }

    /// Starts a provider lookup on every DHT with peers. A lookup without `reply` was started
    /// by a fetch: the providers it finds are dialed, and Bitswap asks them once connected.
    fn start_lookup(&mut self, cid: Cid, max: usize, deadline: Instant, reply: Option<oneshot::Sender<Vec<PeerId>>>) {
        let key = dht::key_of(&cid);
        let b = self.swarm.behaviour_mut();
        let mut queries = Vec::new();
        for (which, kad) in [(dht::Dht::Wan, &mut b.kad_wan), (dht::Dht::Lan, &mut b.kad_lan)] {
            if table_size(kad) > 0 {
                if let Some(k) = kad.as_mut() {
                    queries.push((which, k.get_providers(key.clone())));
                }
            }
        }
        if queries.is_empty() {
            if let Some(r) = reply {
                let _ = r.send(Vec::new());
            }
            return;
        }
        self.lookups_started += 1;
        self.lookups.push(dht::Lookup { key, found: Vec::new(), max, queries, reply, deadline });
    }

    /// Due fetch lookups start (if the block is still nowhere to be had); lookups past their
    /// deadline end with what they found.
    fn lookup_tick(&mut self, now: Instant) {
        while self.lookup_due.front().is_some_and(|(at, _)| *at <= now) {
            let (_, cid) = self.lookup_due.pop_front().expect("front exists");
            let key = dht::key_of(&cid);
            let running = self.lookups.iter().filter(|l| l.reply.is_none()).count();
            if running < MAX_FETCH_LOOKUPS
                && self.engine.needs_providers(&cid)
                && !self.lookups.iter().any(|l| l.key == key)
            {
                tracing::debug!("no connected peer has {cid}: asking the DHT");
                self.start_lookup(cid, 20, now + FETCH_LOOKUP_TIME, None);
            }
        }
        let expired: Vec<usize> = (0..self.lookups.len()).filter(|i| self.lookups[*i].deadline <= now).collect();
        for i in expired.into_iter().rev() {
            let l = self.lookups.swap_remove(i);
            self.end_lookup(l);
        }
    }

    /// Stops a lookup's queries and answers whoever waits.
    fn end_lookup(&mut self, l: dht::Lookup) {
        let b = self.swarm.behaviour_mut();
        for (which, id) in &l.queries {
            if let Some(mut q) = b.kad(*which).as_mut().and_then(|k| k.query_mut(id)) {
                q.finish();
            }
        }
        if let Some(r) = l.reply {
            let _ = r.send(l.found);
        }
    }

    fn on_kad(&mut self, which: dht::Dht, ev: kad::Event) {
        let kad::Event::OutboundQueryProgressed { id, result, stats, step } = ev else { return };
        let id = (which, id);
        match result {
            kad::QueryResult::StartProviding(_) if self.provider.owns(&id) => {
                self.provider.finished(&id, stats.num_successes() > 0);
            }
            kad::QueryResult::GetClosestPeers(r) => {
                let Some(reply) = self.closest.remove(&id) else { return };
                let (found, complete) = match r {
                    Ok(ok) => (ok.peers, true),
                    Err(kad::GetClosestPeersError::Timeout { peers, .. }) => (peers, false),
                };
                let me = *self.swarm.local_peer_id();
                let mut peers = Vec::with_capacity(found.len());
                for p in found.into_iter().filter(|p| p.peer_id != me) {
                    // Announcements follow at once: keep a way to the peer open.
                    if !self.swarm.is_connected(&p.peer_id) && !p.addrs.is_empty() {
                        let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(p.peer_id)
                            .addresses(p.addrs)
                            .condition(libp2p::swarm::dial_opts::PeerCondition::DisconnectedAndNotDialing)
                            .build();
                        if let Err(e) = self.swarm.dial(opts) {
                            tracing::debug!("cannot dial {}: {e}", p.peer_id);
                        }
                    }
                    peers.push(p.peer_id);
                }
                let _ = reply.send(Closest { peers, complete });
            }
            kad::QueryResult::GetProviders(r) => {
                let Some(i) = self.lookups.iter().position(|l| l.queries.contains(&id)) else { return };
                if let Ok(kad::GetProvidersOk::FoundProviders { providers, .. }) = r {
                    let me = *self.swarm.local_peer_id();
                    let dial = self.lookups[i].reply.is_none();
                    for p in providers {
                        if p == me || self.lookups[i].found.contains(&p) {
                            continue;
                        }
                        self.lookups[i].found.push(p);
                        // While the query runs, kad knows the provider's addresses.
                        if dial && !self.swarm.is_connected(&p) {
                            let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(p).build();
                            if let Err(e) = self.swarm.dial(opts) {
                                tracing::debug!("cannot dial provider {p}: {e}");
                            }
                        }
                    }
                }
                let l = &mut self.lookups[i];
                if step.last {
                    l.queries.retain(|q| *q != id);
                }
                if l.queries.is_empty() || l.found.len() >= l.max {
                    let l = self.lookups.swap_remove(i);
                    self.end_lookup(l);
                }
            }
            _ => {}
        }
    }

    fn ban(&mut self, peer: PeerId) {
        tracing::info!("banning {peer} for misbehaving");
        self.swarm.behaviour_mut().blocked.block_peer(peer);
    }

    /// Stores received blocks on the blocking pool; the engine hears when they are safe.
    fn store_blocks(&mut self, blocks: Vec<Block>, ack: Option<oneshot::Sender<()>>) {
        let store = self.store.clone();
        let done = self.done_tx.clone();
        tokio::task::spawn_blocking(move || {
            let result = store.put_many(&blocks).map(|_| ()).map_err(|e| e.to_string());
            let _ = done.send(Done::Stored { blocks, result, ack });
        });
    }
}

/// How many peers a DHT's routing table holds (0 when the DHT is off).
fn table_size(kad: &mut Toggle<kad::Behaviour<dht::ProvStore>>) -> usize {
    kad.as_mut().map_or(0, |k| k.kbuckets().map(|b| b.num_entries()).sum())
}

/// Looks up one serving turn's wants and builds the replies: blocks (named by the CID the
/// peer asked with, so that its prefix matches), HAVE, or DONT_HAVE when asked for. Blocks
/// stop once `allowance` bytes (what the upload cap and budget allow now) have been sent;
/// the wants left over are deferred to a later turn.
fn serve(store: &dyn BlockStore, job: ServeJob, allowance: Option<u64>) -> Served {
    enum Answer {
        Block(Bytes),
        Have,
        Missing,
    }
    let get = |cid: &Cid| store.get(cid).ok().flatten().map_or(Answer::Missing, Answer::Block);
    let mut replies = vec![Message::default()];
    let (mut blocks, mut bytes, mut missing, mut deferred) = (0u64, 0u64, Vec::new(), Vec::new());
    for want in job.wants {
        // A want-have is answered from the index, without reading the block, unless the block
        // is small enough to send instead of HAVE, as Kubo does.
        let answer = match want.kind {
            WantType::Have => match store.size(&want.cid).ok().flatten() {
                Some(n) if n as usize > HAVE_AS_BLOCK => Answer::Have,
                Some(_) => get(&want.cid),
                None => Answer::Missing,
            },
            WantType::Block => get(&want.cid),
        };
        let last = replies.last_mut().expect("one reply at least");
        match answer {
            Answer::Have => last.haves.push(want.cid),
            // The upload cap or budget allows no more now: the want waits for a later turn.
            Answer::Block(_) if allowance.is_some_and(|a| bytes >= a) => deferred.push(want),
            Answer::Block(d) => {
                if last.block_bytes() + d.len() > REPLY_BYTES && !last.blocks.is_empty() {
                    replies.push(Message::default());
                }
                blocks += 1;
                bytes += d.len() as u64;
                replies.last_mut().expect("pushed").blocks.push(Block::new_unchecked(want.cid, d));
            }
            Answer::Missing => {
                if want.send_dont_have {
                    last.dont_haves.push(want.cid);
                }
                missing.push(want);
            }
        }
    }
    replies.retain(|m| !m.is_empty());
    Served { peer: job.peer, replies, missing, deferred, blocks, bytes }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fast_start_waits_for_the_peers_told_last() {
        let start = Instant::now();
        let ms = |n| start + Duration::from_millis(n);

        // Every peer told at once: the origin after FAST_START_WAIT, unless a peer answers.
        let mut w = FastStartWait::new(start);
        assert_eq!(w.decide(None, true, start), None);
        assert_eq!(w.decide(None, true, ms(249)), None);
        assert_eq!(w.decide(None, true, ms(250)), Some(false), "nobody said HAVE in time");
        let mut w = FastStartWait::new(start);
        assert_eq!(w.decide(Some(true), true, ms(100)), Some(true), "a peer has it");
        let mut w = FastStartWait::new(start);
        assert_eq!(w.decide(Some(false), true, ms(10)), Some(false), "every peer lacks it");

        // The rest told only at 400 ms: the wait runs from then.
        let mut w = FastStartWait::new(start);
        assert_eq!(w.decide(None, false, start), None);
        assert_eq!(w.decide(None, false, ms(300)), None, "some peers have not heard of the want yet");
        assert_eq!(w.decide(None, true, ms(400)), None);
        assert_eq!(w.decide(None, true, ms(649)), None);
        assert_eq!(w.decide(Some(true), true, ms(600)), Some(true));
        assert_eq!(w.decide(None, true, ms(650)), Some(false));

        // Never all told: FAST_START_MAX at most.
        let mut w = FastStartWait::new(start);
        assert_eq!(w.decide(None, false, ms(999)), None);
        assert_eq!(w.decide(None, false, ms(1000)), Some(false));
        // Told late: still no more than FAST_START_MAX.
        let mut w = FastStartWait::new(start);
        assert_eq!(w.decide(None, true, ms(900)), None);
        assert_eq!(w.decide(None, true, ms(1000)), Some(false));
    }
}
