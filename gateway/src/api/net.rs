//! The network commands: `id`, `swarm/peers`, `swarm/connect`, `bitswap/stat`,
//! `routing/provide`, `routing/findprovs`, `routing/reprovide`, and the announcement of new
//! roots that `add` and `pin/add` make.

use std::time::Duration;

use cairn_node::merkle::Cid;
use cairn_node::net::Network;
use cairn_node::BlockStore;
use serde_json::{json, Value};

use super::{blocking, json_response, ndjson, parse_cid, Answer, Api, HttpError, Params};

impl Api {
    pub(super) async fn id(&self) -> Answer {
        let repo = self.node.repo();
        let key = repo.keypair().public().encode_protobuf();
        let addrs = self.net.as_ref().map(|n| listen_strings(n, true)).unwrap_or_default();
        Ok(json_response(&json!({
            "ID": repo.peer_id().to_string(),
            "PublicKey": data_encoding::BASE64.encode(&key),
            "Addresses": addrs,
            "AgentVersion": cairn_node::net::AGENT,
            "Protocols": cairn_node::net::protocols(),
        })))
    }

    pub(super) async fn swarm_peers(&self) -> Answer {
        let peers = self.net()?.peers().await.map_err(HttpError::internal)?;
        // Kubo 0.43 writes an empty `Identify` unless asked for it (`identify=true`, which
        // Cairn does not answer yet).
        let identify = json!({"ID": "", "PublicKey": "", "Addresses": null, "AgentVersion": "", "Protocols": null});
        let list: Vec<Value> = peers
            .iter()
            .map(|p| json!({"Addr": strip_p2p(&p.addr.to_string()), "Peer": p.peer.to_string(), "Identify": identify}))
            .collect();
        Ok(json_response(&json!({ "Peers": list })))
    }

    /// Kubo's `bitswap/stat` counters and partners (the connected peers), with the number of
    /// blocks wanted now (`WantlistLength`) and of peers that delivered a block lately
    /// (`SendingPeers`).
    pub(super) async fn bitswap_stat(&self) -> Answer {
        let net = self.net()?;
        let (stats, peers) =
            (net.stats().await.map_err(HttpError::internal)?, net.peers().await.map_err(HttpError::internal)?);
        let partners: Vec<String> = peers.iter().map(|p| p.peer.to_string()).collect();
        Ok(json_response(&json!({
            "BlocksReceived": stats.blocks_received,
            "DataReceived": stats.bytes_received,
            "BlocksSent": stats.blocks_sent,
            "DataSent": stats.bytes_sent,
            "DupBlksReceived": stats.duplicate_blocks,
            "WantlistLength": stats.wants,
            "Peers": partners,
            "SendingPeers": stats.sending_peers,
        })))
    }

    pub(super) async fn swarm_connect(&self, p: &Params) -> Answer {
        let net = self.net()?;
        let mut done = Vec::new();
        for a in p.args() {
            let addr = a.parse().map_err(|e| HttpError::bad(format!("{a:?} is not a multiaddr: {e}")))?;
            let peer = net.connect(addr).await.map_err(HttpError::internal)?;
            done.push(format!("connect {peer} success"));
        }
        if done.is_empty() {
            return Err(HttpError::bad("argument \"address\" is required"));
        }
        Ok(json_response(&json!({ "Strings": done })))
    }

    pub(super) async fn provide(&self, p: &Params) -> Answer {
        let net = self.net()?.clone();
        let mut roots = Vec::new();
        for a in p.args() {
            let cid = parse_cid(a)?;
            if !self.node.repo().store().has(&cid).map_err(HttpError::internal)? {
                return Err(HttpError::internal(format!("block {cid} not found locally, cannot provide")));
            }
            roots.push(cid);
        }
        if roots.is_empty() {
            return Err(HttpError::bad("argument \"key\" is required"));
        }
        let keys = if p.flag("recursive", false)? {
            let node = self.node.clone();
            blocking(move || {
                let mut all = Vec::new();
                for r in roots {
                    all.extend(node.dag_cids(&r).map_err(HttpError::internal)?);
                }
                Ok(all)
            })
            .await?
        } else {
            roots
        };
        let (ok, failed) = match &self.reprovider {
            Some(rp) => rp.announce_now(keys).await,
            None => net.provide(keys).await,
        }
        .map_err(HttpError::internal)?;
        if ok == 0 && failed > 0 {
            return Err(HttpError::internal("failed to find any peer in table"));
        }
        tracing::debug!("provided {ok} keys, {failed} reached no peer");
        Ok(ndjson(&[]))
    }

    /// Renews every announcement of `Reprovider.Strategy` now (a whole sweep, by region), and
    /// says how it went.
    pub(super) async fn reprovide(&self) -> Answer {
        self.net()?;
        let rp = self.reprovider.as_ref().ok_or_else(|| HttpError::internal("the reprovider is not configured"))?;
        let s = rp.sweep().await.map_err(HttpError::internal)?;
        Ok(json_response(&json!({
            "Provided": s.provided,
            "Failed": s.failed,
            "Lookups": s.lookups,
            "Streams": s.streams,
            "FailedStreams": s.failed_streams,
            "Seconds": s.took.as_secs_f64(),
        })))
    }

    pub(super) async fn findprovs(&self, p: &Params) -> Answer {
        let cid = parse_cid(p.arg()?)?;
        let max = p.number("num-providers")?.unwrap_or(20).clamp(1, 1000) as usize;
        let found = self.net()?.find_providers(cid, max, Duration::from_secs(60)).await.map_err(HttpError::internal)?;
        let lines: Vec<Value> = found
            .iter()
            .map(|peer| json!({"Type": 4, "ID": "", "Extra": "", "Responses": [{"ID": peer.to_string(), "Addrs": []}]}))
            .collect();
        Ok(ndjson(&lines))
    }

    /// Tells the network about new roots: DHT announcements (per the strategy) and a hint.
    pub(super) async fn announce(&self, roots: &[(Cid, u64)]) {
        announce(self.net.as_ref(), self.reprovider.as_ref(), roots).await;
    }
}

/// Announces new `roots` (with their sizes): their blocks to the reprovider, the roots to
/// the availability hints. Offline, nothing.
pub(super) async fn announce(
    net: Option<&Network>,
    reprovider: Option<&cairn_node::services::reprovide::Reprovider>,
    roots: &[(Cid, u64)],
) {
    let (Some(net), Some(rp)) = (net, reprovider) else { return };
    let cids: Vec<Cid> = roots.iter().map(|(c, _)| *c).collect();
    let rp2 = rp.clone();
    if let Ok(keys) = tokio::task::spawn_blocking(move || rp2.keys_for(&cids)).await {
        rp.announce_later(keys).await;
    }
    for (root, size) in roots {
        net.announce_root(*root, *size).await;
    }
}

/// A multiaddr without its `/p2p/<id>` suffix.
fn strip_p2p(s: &str) -> String {
    s.find("/p2p/").map_or_else(|| s.to_owned(), |i| s[..i].to_owned())
}

/// The swarm's listen addresses as strings, with or without the `/p2p/` suffix.
pub(super) fn listen_strings(net: &Network, with_id: bool) -> Vec<String> {
    net.listen_addrs().iter().map(|a| if with_id { a.to_string() } else { strip_p2p(&a.to_string()) }).collect()
}
