//! `cairn-testnet hostile`: a peer that speaks Bitswap to harm its peers, for the hostile
//! scenario. It dials the peers it is given (again every few seconds, when they drop it) and:
//!
//! - `corrupt`: answers every want-have with HAVE and every want-block with bytes that are
//!   not the block (what a peer with a rotten disk, or a malicious one, sends);
//! - `flood`: sends every peer wantlists of 1,500 blocks that exist nowhere, five times a
//!   second.
//!
//! Every second it writes a [`Status`] file: its peer ID, what it sent and how many peers
//! still hold a connection to it.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use cairn_merkle::hash::{CidFormat, RAW};
use cairn_merkle::Block;
use cairn_node::net::bitswap::{self, Message, Want, WantType};
use cairn_node::net::{Multiaddr, PeerId};
use futures::StreamExt;
use libp2p::swarm::SwarmEvent;
use serde::{Deserialize, Serialize};

/// How it misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HostileMode {
    /// Garbage for every block asked.
    Corrupt,
    /// Endless wants for blocks that do not exist.
    Flood,
}

/// What a hostile node reports.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Status {
    /// Its peer ID.
    pub peer_id: String,
    /// Peers connected to it now.
    pub connected: usize,
    /// Peers it was ever connected to.
    pub ever_connected: usize,
    /// Connections peers closed.
    pub closed: u64,
    /// Dials that failed (peers refusing it count here).
    pub dial_failures: u64,
    /// Garbage blocks sent.
    pub corrupt_blocks_sent: u64,
    /// Wants sent.
    pub wants_sent: u64,
}

/// Reads a hostile node's status file (`hostile.json` in its directory).
pub fn read_status(dir: &Path) -> Option<Status> {
    serde_json::from_slice(&std::fs::read(dir.join("hostile.json")).ok()?).ok()
}

/// Waits for a hostile node's first status file and returns its peer ID.
pub fn wait_for_peer_id(path: &Path, limit: Duration) -> anyhow::Result<String> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = std::fs::read(path).ok().and_then(|b| serde_json::from_slice::<Status>(&b).ok()) {
            return Ok(s.peer_id);
        }
        if Instant::now() > deadline {
            bail!("the hostile node wrote no status to {} in {limit:?}", path.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs a hostile node until killed.
pub async fn run(
    mode: HostileMode,
    listen: Multiaddr,
    peers: Vec<Multiaddr>,
    status_path: &Path,
) -> anyhow::Result<()> {
    let key = libp2p::identity::Keypair::generate_ed25519();
    let transport = cairn_node::net::transport::build(&key, None, false).context("transport")?;
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_other_transport(|_| transport)?
        .with_behaviour(|_| bitswap::Behaviour::default())?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
        .build();
    swarm.listen_on(listen)?;
    let mut status = Status { peer_id: swarm.local_peer_id().to_string(), ..Status::default() };
    let targets: Vec<(PeerId, Multiaddr)> = peers
        .into_iter()
        .filter_map(|a| match a.iter().last() {
            Some(libp2p::multiaddr::Protocol::P2p(p)) => Some((p, a)),
            _ => None,
        })
        .collect();
    let mut connected: HashSet<PeerId> = HashSet::new();
    let mut ever: HashSet<PeerId> = HashSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut ticks = 0u64;
    let mut nonce = 0u64;
    loop {
        tokio::select! {
            ev = swarm.select_next_some() => match ev {
                SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                    connected.insert(peer_id);
                    ever.insert(peer_id);
                }
                SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } => {
                    connected.remove(&peer_id);
                    status.closed += 1;
                }
                SwarmEvent::OutgoingConnectionError { .. } => status.dial_failures += 1,
                SwarmEvent::Behaviour(bitswap::Event::Message { peer, message }) if mode == HostileMode::Corrupt => {
                    let mut reply = Message::default();
                    for w in message.wants {
                        match w.kind {
                            WantType::Have => reply.haves.push(w.cid),
                            WantType::Block => {
                                // Named as the wanted block; the receiver hashes the bytes
                                // and finds they are something else.
                                let junk: Vec<u8> = (0..1024u32).map(|i| (i as u8) ^ (nonce as u8)).collect();
                                nonce += 1;
                                reply.blocks.push(Block::new_unchecked(w.cid, junk.into()));
                                status.corrupt_blocks_sent += 1;
                            }
                        }
                    }
                    if !reply.is_empty() {
                        swarm.behaviour_mut().send(peer, reply);
                    }
                }
                _ => {}
            },
            _ = tick.tick() => {
                ticks += 1;
                if mode == HostileMode::Flood {
                    for peer in connected.iter().copied().collect::<Vec<_>>() {
                        let wants: Vec<Want> = (0..1500)
                            .map(|_| {
                                nonce += 1;
                                Want {
                                    cid: CidFormat { version: 1, ..CidFormat::default() }.cid(RAW, &nonce.to_le_bytes()),
                                    priority: 1,
                                    kind: WantType::Block,
                                    send_dont_have: true,
                                }
                            })
                            .collect();
                        status.wants_sent += wants.len() as u64;
                        swarm.behaviour_mut().send(peer, Message { wants, ..Message::default() });
                    }
                }
                if ticks % 25 == 1 {
                    for (peer, addr) in &targets {
                        if !connected.contains(peer) {
                            let _ = swarm.dial(addr.clone());
                        }
                    }
                }
                if ticks.is_multiple_of(5) || ticks == 1 {
                    status.connected = connected.len();
                    status.ever_connected = ever.len();
                    let tmp = status_path.with_extension("tmp");
                    std::fs::write(&tmp, serde_json::to_vec(&status)?)?;
                    std::fs::rename(&tmp, status_path)?;
                }
            }
        }
    }
}
