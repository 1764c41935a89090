//! Connections per IP address: one host cannot take the whole connection budget.
//!
//! Inbound connections are counted from the moment they are accepted (before the handshake),
//! by the remote address: an IPv4 address counts alone, an IPv6 one with the rest of its /56
//! (one subscriber's whole allocation), which may hold twice as many. Past the limit a new
//! connection is refused before any handshake work. Loopback is not limited unless asked
//! (tests ask), as go-libp2p's resource manager does not limit it either.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::task::{Context, Poll};

use libp2p::core::transport::PortUse;
use libp2p::core::Endpoint;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{
    dummy, ConnectionClosed, ConnectionDenied, ConnectionId, FromSwarm, ListenFailure, NetworkBehaviour, THandler,
    THandlerInEvent, THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId};

pub use crate::config::DEFAULT_PER_IP;

/// The counting key of an address: the IPv4 address, or the IPv6 /56 (`None`: no IP, or
/// loopback when loopback is not limited).
fn bucket(addr: &Multiaddr, limit_loopback: bool) -> Option<IpAddr> {
    let ip = addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(match ip.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(ip),
        }),
        _ => None,
    })?;
    if ip.is_loopback() && !limit_loopback {
        return None;
    }
    Some(match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !((1u128 << 72) - 1)).into()),
    })
}

/// The behaviour; see the module docs.
#[derive(Debug)]
pub struct Behaviour {
    per_ip: u32,
    limit_loopback: bool,
    open: HashMap<IpAddr, u32>,
    connections: HashMap<ConnectionId, IpAddr>,
}

impl Behaviour {
    /// At most `per_ip` inbound connections per IPv4 address (twice that per IPv6 /56);
    /// loopback counts only if `limit_loopback`.
    pub fn new(per_ip: u32, limit_loopback: bool) -> Behaviour {
        Behaviour { per_ip: per_ip.max(1), limit_loopback, open: HashMap::new(), connections: HashMap::new() }
    }

    /// Inbound connections counted now (for tests and metrics).
    pub fn counted(&self) -> usize {
        self.connections.len()
    }

    fn release(&mut self, id: ConnectionId) {
        if let Some(ip) = self.connections.remove(&id) {
            if let Some(n) = self.open.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    self.open.remove(&ip);
                }
            }
        }
    }
}

/// Refused: too many connections from one address.
#[derive(Debug, thiserror::Error)]
#[error("{0} already has {1} connections, the most one address may have")]
pub struct TooMany(IpAddr, u32);

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        id: ConnectionId,
        _local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        let Some(ip) = bucket(remote, self.limit_loopback) else { return Ok(()) };
        let limit = if ip.is_ipv4() { self.per_ip } else { self.per_ip.saturating_mul(2) };
        let n = self.open.entry(ip).or_default();
        if *n >= limit {
            return Err(ConnectionDenied::new(TooMany(ip, limit)));
        }
        *n += 1;
        self.connections.insert(id, ip);
        Ok(())
    }

    fn handle_established_inbound_connection(
        &mut self,
        _id: ConnectionId,
        _peer: PeerId,
        _local: &Multiaddr,
        _remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _id: ConnectionId,
        _peer: PeerId,
        _addr: &Multiaddr,
        _role: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm<'_>) {
        match event {
            FromSwarm::ConnectionClosed(ConnectionClosed { connection_id, .. }) => self.release(connection_id),
            FromSwarm::ListenFailure(ListenFailure { connection_id, .. }) => self.release(connection_id),
            _ => {}
        }
    }

    fn on_connection_handler_event(&mut self, _peer: PeerId, _id: ConnectionId, event: THandlerOutEvent<Self>) {
        match event {}
    }

    fn poll(&mut self, _cx: &mut Context<'_>) -> Poll<ToSwarm<Infallible, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Multiaddr {
        s.parse().unwrap()
    }

    #[test]
    fn one_address_gets_its_share_and_the_rest_are_refused_until_one_closes() {
        let mut b = Behaviour::new(2, false);
        let local = addr("/ip4/127.0.0.1/tcp/4001");
        let open = |b: &mut Behaviour, id: usize, remote: &str| {
            b.handle_pending_inbound_connection(ConnectionId::new_unchecked(id), &local, &addr(remote)).is_ok()
        };
        assert!(open(&mut b, 1, "/ip4/203.0.113.7/tcp/1"));
        assert!(open(&mut b, 2, "/ip4/203.0.113.7/tcp/2"));
        assert!(!open(&mut b, 3, "/ip4/203.0.113.7/tcp/3"), "a third from one IPv4 address");
        assert!(open(&mut b, 4, "/ip4/203.0.113.8/tcp/3"), "another address has its own share");
        // IPv6 counts by /56, with twice the share.
        for (i, host) in
            ["2001:db8:0:ff::1", "2001:db8:0:ff::2", "2001:db8:0:1::3", "2001:db8:0:2::4"].iter().enumerate()
        {
            assert!(open(&mut b, 10 + i, &format!("/ip6/{host}/tcp/1")), "{host}");
        }
        assert!(!open(&mut b, 20, "/ip6/2001:db8:0:3::5/tcp/1"), "a fifth from one /56");
        assert!(open(&mut b, 21, "/ip6/2001:db8:1::1/tcp/1"), "another /56");
        // Loopback is not limited unless asked.
        assert!((0..10).all(|i| open(&mut b, 100 + i, "/ip4/127.0.0.1/tcp/9")));
        // A failed handshake gives the place back, as does a closed connection.
        b.on_swarm_event(FromSwarm::ListenFailure(ListenFailure {
            local_addr: &local,
            send_back_addr: &addr("/ip4/203.0.113.7/tcp/1"),
            error: &libp2p::swarm::ListenError::Aborted,
            connection_id: ConnectionId::new_unchecked(1),
            peer_id: None,
        }));
        assert!(open(&mut b, 5, "/ip4/203.0.113.7/tcp/5"));
        assert!(!open(&mut b, 6, "/ip4/203.0.113.7/tcp/6"));
        let limited = Behaviour::new(1, true);
        assert_eq!(bucket(&addr("/ip4/127.0.0.1/tcp/1"), limited.limit_loopback), Some("127.0.0.1".parse().unwrap()));
    }
}
