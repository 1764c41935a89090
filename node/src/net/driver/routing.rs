//! The DHTs' side of the driver: announcements pumped through their queue, provider lookups
//! (asked for, or started by fetches no connected peer answers) on the DHTs and the delegated
//! routers, closest-peer lookups, and the routing tables fed from identify.

use std::time::{Duration, Instant};

use cairn_merkle::Cid;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{identify, kad};
use tokio::sync::oneshot;

use super::Driver;
use crate::net::{dht, Closest, DhtStats, Multiaddr, PeerId, MAX_PEER_ADDRS, MAX_PEER_ADDRS_ASKED};

/// How long a fetch waits on connected peers before it asks the DHT (as Kubo does).
pub(super) const PROVIDER_SEARCH_DELAY: Duration = Duration::from_secs(1);
/// Provider lookups started by fetches at once.
const MAX_FETCH_LOOKUPS: usize = 8;
/// How long a lookup started by a fetch runs.
const FETCH_LOOKUP_TIME: Duration = Duration::from_secs(20);
/// Peers whose router-given addresses are kept ([`Driver::peer_addrs`]); the oldest go first.
pub(super) const MAX_LEARNED: usize = 1024;

impl Driver {
    /// The DHTs' tables and counters.
    pub(super) fn dht_stats(&mut self) -> DhtStats {
        let b = self.swarm.behaviour_mut();
        let wan_server = b.kad_wan.as_mut().is_some_and(|k| k.mode() == kad::Mode::Server);
        DhtStats {
            wan_peers: table_size(&mut b.kad_wan),
            lan_peers: table_size(&mut b.kad_lan),
            wan_server,
            lookups: self.lookups_started,
            provide: self.provider.stats(),
        }
    }

    /// Starts a lookup of the peers closest to `key` on `dht`; `reply` hears what it found.
    /// With `connect`, the peers found are dialed.
    pub(super) fn closest_peers(
        &mut self,
        dht: dht::Dht,
        key: Vec<u8>,
        connect: bool,
        reply: oneshot::Sender<Closest>,
    ) {
        match self.swarm.behaviour_mut().kad(dht).as_mut() {
            Some(k) => {
                let id = k.get_closest_peers(key);
                self.closest.insert((dht, id), (reply, connect));
            }
            None => {
                let _ = reply.send(Closest::default());
            }
        }
    }

    /// Where each of `peers` listens, as far as this node knows: what it told over identify
    /// while connected, then what the DHTs' tables hold.
    pub(super) fn peer_addrs(&mut self, peers: &[PeerId]) -> std::collections::HashMap<PeerId, Vec<Multiaddr>> {
        let mut found = std::collections::HashMap::new();
        for peer in peers.iter().take(MAX_PEER_ADDRS_ASKED) {
            let mut addrs: Vec<Multiaddr> = self.listen_addrs.get(peer).cloned().unwrap_or_default();
            if let Some((_, learned)) = self.learned_addrs.iter().find(|(p, _)| p == peer) {
                addrs.extend(learned.iter().cloned());
            }
            let b = self.swarm.behaviour_mut();
            for kad in [&mut b.kad_wan, &mut b.kad_lan] {
                let Some(k) = kad.as_mut() else { continue };
                let Some(bucket) = k.kbucket(*peer) else { continue };
                for entry in bucket.iter().filter(|e| e.node.key.preimage() == peer) {
                    addrs.extend(entry.node.value.iter().cloned());
                }
            }
            let mut unique = Vec::new();
            for a in addrs {
                if unique.len() < MAX_PEER_ADDRS && !unique.contains(&a) {
                    unique.push(a);
                }
            }
            if !unique.is_empty() {
                found.insert(*peer, unique);
            }
        }
        found
    }

    /// A peer said what it speaks and where it listens: the DHT it serves learns its
    /// addresses of the matching kind (LAN: loopback and private; WAN: the rest), and the
    /// node keeps them while the peer is connected ([`Driver::peer_addrs`]).
    pub(super) fn on_identified(&mut self, peer: PeerId, info: identify::Info) {
        if self.swarm.is_connected(&peer) {
            let kept: Vec<Multiaddr> = info.listen_addrs.iter().take(MAX_PEER_ADDRS).cloned().collect();
            self.listen_addrs.insert(peer, kept);
        }
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
    pub(super) fn pump_provides(&mut self) {
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

    /// Starts a provider lookup on every DHT with peers and on the delegated routers. A lookup
    /// without `reply` was started by a fetch: the providers it finds are dialed, and Bitswap
    /// asks them once connected.
    pub(super) fn start_lookup(
        &mut self,
        cid: Cid,
        max: usize,
        deadline: Instant,
        routers: bool,
        reply: Option<oneshot::Sender<Vec<PeerId>>>,
    ) {
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
        let id = self.next_lookup;
        self.next_lookup += 1;
        let routed = match self.routers.as_ref().filter(|_| routers) {
            Some(routers) => {
                let (routers, done) = (routers.clone(), self.done_tx.clone());
                tokio::spawn(async move {
                    let providers = routers.providers(cid).await;
                    let _ = done.send(super::Done::Routed { lookup: id, providers });
                });
                true
            }
            None => false,
        };
        if queries.is_empty() && !routed {
            if let Some(r) = reply {
                let _ = r.send(Vec::new());
            }
            return;
        }
        self.lookups_started += 1;
        self.lookups.push(dht::Lookup { id, key, found: Vec::new(), max, queries, routed, reply, deadline });
    }

    /// The delegated routers answered lookup `lookup`: their providers join its answer, their
    /// addresses are kept, and a fetch's lookup dials them. HTTP addresses are not dialled:
    /// they go to the origin, which asks such providers for blocks ([`crate::net::origin`]).
    pub(super) fn routed(&mut self, lookup: u64, providers: Vec<(PeerId, Vec<Multiaddr>)>) {
        let me = *self.swarm.local_peer_id();
        let at = self.lookups.iter().position(|l| l.id == lookup);
        for (peer, addrs) in providers {
            if peer == me {
                continue;
            }
            let (http, addrs): (Vec<Multiaddr>, Vec<Multiaddr>) =
                addrs.into_iter().partition(crate::net::origin::is_http);
            if let Some(origin) = &self.origin {
                for a in &http {
                    origin.learn(a);
                }
            }
            if !addrs.is_empty() {
                self.learned_addrs.retain(|(p, _)| *p != peer);
                if self.learned_addrs.len() >= MAX_LEARNED {
                    self.learned_addrs.pop_front();
                }
                self.learned_addrs.push_back((peer, addrs.clone()));
            }
            let Some(i) = at else { continue };
            let l = &mut self.lookups[i];
            if l.found.contains(&peer) || l.found.len() >= l.max {
                continue;
            }
            l.found.push(peer);
            if l.reply.is_none() && !addrs.is_empty() {
                self.dial_unless_connected(peer, addrs, "routed provider");
            }
        }
        if let Some(i) = at {
            let l = &mut self.lookups[i];
            l.routed = false;
            if l.finished() {
                let l = self.lookups.swap_remove(i);
                self.end_lookup(l);
            }
        }
    }

    /// Due fetch lookups start (if the block is still nowhere to be had); lookups past their
    /// deadline end with what they found.
    pub(super) fn lookup_tick(&mut self, now: Instant) {
        while self.lookup_due.front().is_some_and(|(at, _)| *at <= now) {
            let (_, cid) = self.lookup_due.pop_front().expect("front exists");
            let key = dht::key_of(&cid);
            let running = self.lookups.iter().filter(|l| l.reply.is_none()).count();
            if running < MAX_FETCH_LOOKUPS
                && self.engine.needs_providers(&cid)
                && !self.lookups.iter().any(|l| l.key == key)
            {
                tracing::debug!("no connected peer has {cid}: asking the DHT and the routers");
                self.start_lookup(cid, 20, now + FETCH_LOOKUP_TIME, true, None);
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

    pub(super) fn on_kad(&mut self, which: dht::Dht, ev: kad::Event) {
        let kad::Event::OutboundQueryProgressed { id, result, stats, step } = ev else { return };
        let id = (which, id);
        match result {
            kad::QueryResult::StartProviding(_) if self.provider.owns(&id) => {
                self.provider.finished(&id, stats.num_successes() > 0);
            }
            kad::QueryResult::GetClosestPeers(r) => {
                let Some((reply, connect)) = self.closest.remove(&id) else { return };
                let (found, complete) = match r {
                    Ok(ok) => (ok.peers, true),
                    Err(kad::GetClosestPeersError::Timeout { peers, .. }) => (peers, false),
                };
                let me = *self.swarm.local_peer_id();
                let mut peers = Vec::with_capacity(found.len());
                let mut addrs = std::collections::HashMap::new();
                for p in found.into_iter().filter(|p| p.peer_id != me) {
                    if !p.addrs.is_empty() {
                        addrs.insert(p.peer_id, p.addrs.iter().take(MAX_PEER_ADDRS).cloned().collect());
                    }
                    // Announcements follow at once: keep a way to the peer open.
                    if connect && !p.addrs.is_empty() {
                        self.dial_unless_connected(p.peer_id, p.addrs, "close peer");
                    }
                    peers.push(p.peer_id);
                }
                let _ = reply.send(Closest { peers, addrs, complete });
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
                if l.finished() {
                    let l = self.lookups.swap_remove(i);
                    self.end_lookup(l);
                }
            }
            _ => {}
        }
    }
}

/// How many peers a DHT's routing table holds (0 when the DHT is off).
fn table_size(kad: &mut Toggle<kad::Behaviour<dht::ProvStore>>) -> usize {
    kad.as_mut().map_or(0, |k| k.kbuckets().map(|b| b.num_entries()).sum())
}
