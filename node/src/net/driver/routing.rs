//! The DHTs' side of the driver: announcements pumped through their queue, provider lookups
//! (asked for, or started by fetches no connected peer answers), closest-peer lookups, and
//! the routing tables fed from identify.

use std::time::{Duration, Instant};

use cairn_merkle::Cid;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{identify, kad};
use tokio::sync::oneshot;

use super::Driver;
use crate::net::{dht, Closest, DhtStats, PeerId};

/// How long a fetch waits on connected peers before it asks the DHT (as Kubo does).
pub(super) const PROVIDER_SEARCH_DELAY: Duration = Duration::from_secs(1);
/// Provider lookups started by fetches at once.
const MAX_FETCH_LOOKUPS: usize = 8;
/// How long a lookup started by a fetch runs.
const FETCH_LOOKUP_TIME: Duration = Duration::from_secs(20);

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
    pub(super) fn closest_peers(&mut self, dht: dht::Dht, key: Vec<u8>, reply: oneshot::Sender<Closest>) {
        match self.swarm.behaviour_mut().kad(dht).as_mut() {
            Some(k) => {
                let id = k.get_closest_peers(key);
                self.closest.insert((dht, id), reply);
            }
            None => {
                let _ = reply.send(Closest::default());
            }
        }
    }

    /// A peer said what it speaks and where it listens: the DHT it serves learns its
    /// addresses of the matching kind (LAN: loopback and private; WAN: the rest).
    pub(super) fn on_identified(&mut self, peer: PeerId, info: identify::Info) {
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

    /// Starts a provider lookup on every DHT with peers. A lookup without `reply` was started
    /// by a fetch: the providers it finds are dialed, and Bitswap asks them once connected.
    pub(super) fn start_lookup(
        &mut self,
        cid: Cid,
        max: usize,
        deadline: Instant,
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
    pub(super) fn lookup_tick(&mut self, now: Instant) {
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

    pub(super) fn on_kad(&mut self, which: dht::Dht, ev: kad::Event) {
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
}

/// How many peers a DHT's routing table holds (0 when the DHT is off).
fn table_size(kad: &mut Toggle<kad::Behaviour<dht::ProvStore>>) -> usize {
    kad.as_mut().map_or(0, |k| k.kbuckets().map(|b| b.num_entries()).sum())
}
