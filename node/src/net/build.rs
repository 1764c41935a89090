//! Builds the swarm from a [`NetConfig`] (transport, behaviours, limits), binds the listen
//! addresses, and starts the driver: [`spawn`].

use std::sync::Arc;
use std::time::Duration;

use cairn_merkle::Cid;
use futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::SwarmEvent;
use libp2p::{allow_block_list, autonat, connection_limits, gossipsub, identify, kad, ping};
use tokio::sync::mpsc;

use super::driver::Driver;
use super::handle::{Network, Streams};
use super::MAX_PEER_TOPICS;
use super::{bitswap, delegated, dht, hints, iplimit, origin, transport};
use super::{
    Behaviour, Multiaddr, NetConfig, NetError, Protocol, PubsubError, SetupError, SharedStore, TopicFilter, AGENT,
};

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
            .map_err(SetupError::from)?;
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
        .map_err(SetupError::Gossipsub)?;
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
        gs.with_peer_score(params, gossipsub::PeerScoreThresholds::default()).map_err(SetupError::Scoring)?;
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
                .map_err(NetError::Mdns)?,
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
        .map_err(|e| SetupError::Builder(Box::new(e)))?
        .with_behaviour(|_| behaviour)
        .map_err(|e| SetupError::Builder(Box::new(e)))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
        .build();

    let mut ids = Vec::new();
    for addr in &cfg.listen {
        let id = swarm.listen_on(addr.clone()).map_err(|e| NetError::Listen(addr.clone(), Box::new(e)))?;
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
                return Err(NetError::Listen(addr, Box::new(error)));
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
    swarm.behaviour_mut().gossipsub.subscribe(&gossipsub::IdentTopic::new(hints::TOPIC)).map_err(PubsubError::from)?;
    let (tx, rx) = mpsc::channel(1024);
    let routers = delegated::Routers::new(&cfg.delegated_routers)?.map(Arc::new);
    // Routers may name HTTP providers: the origin then exists to ask them, gateways or not.
    let origin = match cfg.origin.clone() {
        Some(c) if routers.is_some() => Some(Arc::new(origin::Origin::with_providers(c)?)),
        Some(c) => origin::Origin::new(c)?.map(Arc::new),
        None if routers.is_some() => Some(Arc::new(origin::Origin::with_providers(origin::OriginConfig::default())?)),
        None => None,
    };
    let driver = Driver::new(swarm, store, rx, &cfg, listening.clone(), origin.clone(), routers);
    let task = tokio::spawn(driver.run(early));
    let runtime = tokio::runtime::Handle::current();
    Ok((Network { peer_id, listening, tx, sessions: Arc::default(), origin, runtime, streams }, task))
}
