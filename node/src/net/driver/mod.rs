//! The driver: the one task that owns the swarm. Its loop ([`Driver::run`]) takes one thing
//! at a time and hands it to the file of its concern:
//! - `fetching.rs`: Bitswap's events, the node's fetches, received blocks stored;
//! - `serving.rs`: serving turns, which answer peers' wants from the store on the blocking pool;
//! - `routing.rs`: the DHTs and the delegated routers: announcements, provider and
//!   closest-peer lookups;
//! - `gossip.rs`: gossipsub: availability hints, subscriptions, publishing;
//! - `swarm.rs`: connections, dials, mDNS and UPnP.
//!
//! The loop polls its sources in a fixed order (`biased`), none of which can hold up the others
//! for long: the tick (once every 20 ms); finished work the driver itself started (a serving
//! turn or a store, at most [`serving::MAX_JOBS`] turns and one store per received message);
//! the node's commands (a bounded channel whose senders mostly wait on the answer); and last
//! the swarm, whose events come from peers and never stop under load, so it is polled whenever
//! the three before it have nothing.

mod fetching;
mod gossip;
mod routing;
mod serving;
mod swarm;

pub use serving::MAX_PENDING_PER_PEER;

use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_merkle::{Block, Cid};
use futures::StreamExt;
use libp2p::swarm::SwarmEvent;
use libp2p::{autonat, gossipsub, identify, kad, Swarm};
use tokio::sync::{mpsc, oneshot};

use super::bitswap::engine::Engine;
use super::handle::Command;
use super::{delegated, dht, hints, origin, ratelimit};
use super::{Behaviour, BehaviourEvent, Closest, DialFailure, Multiaddr, NetConfig, NetError, PeerId, PortMapping};
use super::{Protocol, PubsubMessage};
use super::{SharedStore, MAX_TOPIC_MESSAGES_PER_MINUTE};
use crate::store::StoreError;
use serving::{Served, UploadMeter};

/// Work the driver started elsewhere (on the blocking pool), finished.
enum Done {
    Served(Served, usize),
    Stored {
        blocks: Vec<Block>,
        result: Result<(), StoreError>,
        ack: Option<oneshot::Sender<()>>,
    },
    /// The delegated routers' answer for lookup `lookup`.
    Routed {
        lookup: u64,
        providers: Vec<delegated::Named>,
    },
}

pub(super) struct Driver {
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
    /// The listen addresses each connected peer told over identify (at most
    /// [`MAX_PEER_ADDRS`](super::MAX_PEER_ADDRS) each).
    listen_addrs: std::collections::HashMap<PeerId, Vec<Multiaddr>>,
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
    /// The delegated routers, if any.
    routers: Option<Arc<delegated::Routers>>,
    /// Addresses the routers gave for peers, oldest first, at most
    /// [`routing::MAX_LEARNED`] peers.
    learned_addrs: std::collections::VecDeque<(PeerId, Vec<Multiaddr>)>,
    /// The ID the next provider lookup gets.
    next_lookup: u64,
    /// Closest-peer lookups running, and who waits for each.
    closest: std::collections::HashMap<dht::Query, (oneshot::Sender<Closest>, bool)>,
    dht: dht::DhtMode,
    /// The HTTP origins, told when blocks arrive from peers, so that they are asked only when
    /// peers stall.
    origin: Option<Arc<origin::Origin>>,
    /// Block message bytes read from peers at the last tick.
    arrived: u64,
    port_mapping: PortMapping,
}

impl Driver {
    /// The driver for `swarm`, listening on `listening`, before it runs.
    pub(super) fn new(
        swarm: Swarm<Behaviour>,
        store: SharedStore,
        rx: mpsc::Receiver<Command>,
        cfg: &NetConfig,
        listening: Vec<Multiaddr>,
        origin: Option<Arc<origin::Origin>>,
        routers: Option<Arc<delegated::Routers>>,
    ) -> Driver {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let mut engine = Engine::default();
        engine.set_download_limit(cfg.download_limit);
        engine.set_score_half_life(cfg.score_half_life);
        Driver {
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
            listen_addrs: Default::default(),
            topics: Default::default(),
            hints: Default::default(),
            topic_rates: ratelimit::PerSender::new(
                MAX_TOPIC_MESSAGES_PER_MINUTE,
                hints::RATE_WINDOW,
                hints::MAX_SENDERS,
            ),
            listening,
            provider: dht::Provider::default(),
            lookups: Vec::new(),
            lookup_due: std::collections::VecDeque::new(),
            lookups_started: 0,
            routers,
            learned_addrs: Default::default(),
            next_lookup: 0,
            closest: Default::default(),
            dht: cfg.dht,
            origin,
            arrived: 0,
            port_mapping: if cfg.upnp { PortMapping::Searching } else { PortMapping::Off },
        }
    }

    /// The driver's loop; `early` holds what the swarm said before it started.
    pub(super) async fn run(mut self, early: Vec<SwarmEvent<BehaviourEvent>>) {
        for ev in early {
            self.on_swarm(ev);
        }
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = tick.tick() => self.on_tick(Instant::now()),
                Some(done) = self.done_rx.recv() => self.on_done(done),
                cmd = self.rx.recv() => match cmd {
                    None | Some(Command::Shutdown) => break,
                    Some(cmd) => self.on_command(cmd),
                },
                ev = self.swarm.select_next_some() => self.on_swarm(ev),
            }
            self.start_jobs();
            self.pump_provides();
        }
        self.engine.shutdown();
    }

    /// Every 20 ms: the upload rate is sampled, the engine's timers run, bans past their time
    /// are lifted, and due lookups start.
    fn on_tick(&mut self, now: Instant) {
        self.note_arrivals();
        self.upload_meter.sample(self.swarm.behaviour().bitswap.drained_bytes(), now);
        self.engine.tick(now, &mut self.swarm.behaviour_mut().bitswap);
        for peer in self.engine.lifted_bans(now) {
            tracing::info!("{peer}'s ban ended: its score decayed");
            self.swarm.behaviour_mut().blocked.unblock_peer(peer);
        }
        self.lookup_tick(now);
    }

    fn on_done(&mut self, done: Done) {
        match done {
            Done::Served(served, blocks) => self.turn_done(served, blocks),
            Done::Stored { blocks, result, ack } => self.stored(&blocks, result, ack),
            Done::Routed { lookup, providers } => self.routed(lookup, providers),
        }
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Dial(addr, tx) => self.dial(addr, tx),
            Command::Peers(tx) => {
                let _ = tx.send(self.peer_infos());
            }
            Command::ExternalAddrs(tx) => {
                let _ = tx.send(self.swarm.external_addresses().cloned().collect());
            }
            Command::PortMapping(tx) => {
                let _ = tx.send(self.port_mapping.clone());
            }
            Command::Subscribe(topic, sender, tx) => {
                let _ = tx.send(self.subscribe(topic, sender));
            }
            Command::Publish(topic, data, tx) => {
                let _ = tx.send(self.publish(topic, data));
            }
            Command::TopicPeers(topic, tx) => {
                let _ = tx.send(self.topic_peers(topic));
            }
            Command::Score(peer, tx) => {
                let _ = tx.send(self.swarm.behaviour().gossipsub.peer_score(&peer));
            }
            Command::Hint { root, size, manifest, topics } => self.publish_hint(root, size, manifest, topics),
            Command::Deliver(block, ack) => self.store_blocks(vec![block], ack),
            Command::Fetch { cid, priority, deadline, waiter } => self.fetch(cid, priority, deadline, waiter),
            // Whether a peer has the block, none does, or answers are still due.
            Command::PeersAnswer(cid, tx) => {
                let _ = tx.send((self.engine.peers_answer(&cid), self.engine.told_everyone(&cid)));
            }
            Command::Stats(tx) => {
                let _ = tx.send(self.stats());
            }
            Command::Provide(cids, done) => {
                self.provider.enqueue(cids.iter().map(dht::key_of).collect(), done);
            }
            Command::FindProviders { cid, max, deadline, routers, reply } => {
                self.start_lookup(cid, max, deadline, routers, Some(reply));
            }
            Command::DhtStats(tx) => {
                let _ = tx.send(self.dht_stats());
            }
            Command::ClosestPeers { dht, key, connect, reply } => self.closest_peers(dht, key, connect, reply),
            Command::PeerAddrs(peers, reply) => {
                let _ = reply.send(self.peer_addrs(&peers));
            }
            Command::Shutdown => {}
        }
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
                self.listen_addrs.remove(&peer_id);
            }
            SwarmEvent::OutgoingConnectionError { peer_id: Some(peer), error, .. }
                if !self.swarm.is_connected(&peer) =>
            {
                let (addr, error) = (Multiaddr::empty().with(Protocol::P2p(peer)), Arc::new(error));
                self.finish_dials(peer, || Err(NetError::Dial(addr.clone(), DialFailure::Swarm(error.clone()))));
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
}
