//! The swarm's side of the driver: dials asked for and their answers, the connected peers,
//! peers heard of over mDNS, and UPnP's port mappings.

use std::sync::Arc;

use cairn_merkle::Cid;
use tokio::sync::oneshot;

use super::Driver;
use crate::net::{DialFailure, Multiaddr, NetError, PeerId, PeerInfo, PortMapping, Protocol};

impl Driver {
    /// Dials `addr` (which must end in `/p2p/<peer id>`); `tx` hears once connected.
    pub(super) fn dial(&mut self, addr: Multiaddr, tx: oneshot::Sender<Result<PeerId, NetError>>) {
        let Some(Protocol::P2p(peer)) = addr.iter().last() else {
            let _ = tx.send(Err(NetError::Dial(addr, DialFailure::NoPeerId)));
            return;
        };
        if self.swarm.is_connected(&peer) {
            let _ = tx.send(Ok(peer));
            return;
        }
        match self.swarm.dial(addr.clone()) {
            Ok(()) => self.dials.push((peer, tx)),
            Err(e) => {
                let _ = tx.send(Err(NetError::Dial(addr, DialFailure::Swarm(Arc::new(e)))));
            }
        }
    }

    /// The connected peers, each with the address of one connection.
    pub(super) fn peer_infos(&self) -> Vec<PeerInfo> {
        self.swarm
            .connected_peers()
            .map(|peer| PeerInfo { peer: *peer, addr: self.addr_of(peer).unwrap_or_else(Multiaddr::empty) })
            .collect()
    }

    fn addr_of(&self, peer: &PeerId) -> Option<Multiaddr> {
        self.addrs.get(peer).cloned()
    }

    /// Peers heard of on the local network over mDNS: each is dialed once at the addresses
    /// heard, unless connected already, and the LAN DHT learns them.
    pub(super) fn on_mdns(&mut self, found: Vec<(PeerId, Multiaddr)>) {
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

    pub(super) fn on_upnp(&mut self, ev: libp2p::upnp::Event) {
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
    pub(super) fn dial_hinted(&mut self, cid: &Cid) {
        let providers: Vec<(PeerId, Vec<Multiaddr>)> = self.hints.providers(cid).to_vec();
        for (peer, addrs) in providers {
            self.dial_unless_connected(peer, addrs, "hinted provider");
        }
    }

    /// Dials `peer` at `addrs` unless it is this node, or connected or being dialed already;
    /// `who` names it in the log.
    pub(super) fn dial_unless_connected(&mut self, peer: PeerId, addrs: Vec<Multiaddr>, who: &str) {
        if peer == *self.swarm.local_peer_id() || self.swarm.is_connected(&peer) {
            return;
        }
        let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer).addresses(addrs).build();
        if let Err(e) = self.swarm.dial(opts) {
            tracing::debug!("cannot dial {who} {peer}: {e}");
        }
    }

    /// Answers every `connect` waiting for `peer`.
    pub(super) fn finish_dials(&mut self, peer: PeerId, result: impl Fn() -> Result<PeerId, NetError>) {
        let (done, waiting): (Vec<_>, Vec<_>) = self.dials.drain(..).partition(|(p, _)| *p == peer);
        self.dials = waiting;
        for (_, tx) in done {
            let _ = tx.send(result());
        }
    }
}
