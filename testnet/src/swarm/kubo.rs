//! Kubo swarms (`mode = "kubo"`): the same scenario with every node a Kubo 0.43.1 daemon, so
//! that Cairn's numbers have a reference measured on the same bridge, links and machine.
//!
//! Each node's repo is made before its namespace exists ([`prepare`]): `ipfs init
//! --profile=test` (no bootstrap peers, no mDNS, no NAT port mapping, AutoConf and AutoTLS
//! off), `Routing.Type = none` (blocks come from connected peers, as in Cairn's runs), the
//! swarm on the node's bridge address and the RPC API and gateway on the namespace's own
//! loopback, at the ports Cairn's nodes use. The publisher adds the file offline with Kubo's
//! default add (CIDv0, 256 KiB chunks). `ipfs daemon` then runs in the node's namespace
//! ([`program`]), dials the nodes before it over the RPC API ([`connect`]), and its readers
//! are the harness's own: a thread in the namespace reading `/ipfs/<cid>` from Kubo's gateway,
//! exactly as from Cairn's, so the first byte, the pacing and every byte are checked the same.
//! Bitswap's counters come from `bitswap/stat`.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::Value;

use super::topology::{node_ip, NetNode};
use super::{netns_call, API_PORT, GATEWAY_PORT, SWARM_PORT};
use crate::kubo_daemon::ipfs_command;
use crate::reference::{kubo_bin, run_for};

/// How long a Kubo daemon may take to come up.
const START: Duration = Duration::from_secs(60);

/// How long one `init`, `config`, `add` or `swarm connect` may take.
const CALL: Duration = Duration::from_secs(60);

/// The IPFS path of a node whose harness directory is `dir`.
fn ipfs_path(dir: &Path) -> std::path::PathBuf {
    dir.join("ipfs")
}

/// Makes node `index`'s Kubo repo under `dir` and, for a publisher, adds `file` to it (offline,
/// before the daemon runs). Its gateway waits `retrieval_timeout` for blocks before it gives
/// up on a read (`Gateway.RetrievalTimeout`, 30 s by default), as long as Cairn's nodes in the
/// same scenario wait. Returns the peer ID and the file's CID when one was added.
pub fn prepare(
    index: usize,
    dir: &Path,
    file: Option<&Path>,
    retrieval_timeout: Duration,
) -> anyhow::Result<(String, Option<String>)> {
    let repo = ipfs_path(dir);
    std::fs::create_dir_all(dir)?;
    let ipfs = |args: &[&str]| run_for(ipfs_command(&repo, args), &format!("ipfs {}", args.join(" ")), CALL);
    ipfs(&["init", "--profile=test"])?;
    let swarm = format!("[\"/ip4/{}/tcp/{SWARM_PORT}\"]", node_ip(index));
    let api = format!("/ip4/127.0.0.1/tcp/{API_PORT}");
    let gateway = format!("/ip4/127.0.0.1/tcp/{GATEWAY_PORT}");
    ipfs(&["config", "Routing.Type", "none"])?;
    ipfs(&["config", "--json", "Addresses.Swarm", &swarm])?;
    ipfs(&["config", "Addresses.API", &api])?;
    ipfs(&["config", "Addresses.Gateway", &gateway])?;
    ipfs(&["config", "Gateway.RetrievalTimeout", &format!("{}s", retrieval_timeout.as_secs().max(1))])?;
    let peer_id = ipfs(&["config", "Identity.PeerID"])?.trim().to_owned();
    if peer_id.is_empty() {
        bail!("node {index}'s Kubo repo has no peer ID");
    }
    let cid = match file {
        Some(f) => {
            let path = f.to_str().with_context(|| format!("{} is not UTF-8", f.display()))?;
            Some(ipfs(&["add", "-Q", path])?.trim().to_owned())
        }
        None => None,
    };
    Ok((peer_id, cid))
}

/// The command line of the daemon of the repo [`prepare`] made in `dir`.
pub fn program(dir: &Path) -> Vec<String> {
    vec![
        "env".into(),
        format!("IPFS_PATH={}", ipfs_path(dir).display()),
        kubo_bin().display().to_string(),
        "daemon".into(),
    ]
}

/// Waits until the daemon of `node` answers on its RPC API and its gateway.
pub fn wait_ready(node: &mut NetNode, log: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + START;
    loop {
        if let Some(status) = node.child.try_wait()? {
            bail!(
                "node {}'s Kubo exited at start ({status}): {}",
                node.index,
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        let api = netns_call(node.pid(), API_PORT, "POST", "/api/v0/id".into());
        let gateway = netns_call(node.pid(), GATEWAY_PORT, "GET", "/ipfs/bafkqaaa".into());
        if api.as_ref().is_some_and(|(status, _)| *status == 200) && gateway.is_some() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("node {}'s Kubo did not serve its API and gateway within {START:?}", node.index);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Dials each of `addrs` (`/ip4/.../tcp/4001/p2p/<id>`) through the RPC API of the daemon
/// whose process is `pid`.
pub fn connect(pid: u32, addrs: &[String]) -> anyhow::Result<()> {
    for a in addrs {
        let path = format!("/api/v0/swarm/connect?arg={a}");
        match netns_call(pid, API_PORT, "POST", path) {
            Some((200, _)) => {}
            Some((status, body)) => bail!("swarm connect {a}: status {status}: {}", body.trim()),
            None => bail!("swarm connect {a}: the RPC API did not answer"),
        }
    }
    Ok(())
}

/// Bitswap's counters of the daemon whose process is `pid`, under the names Cairn's metrics
/// page gives them (`cairn_bitswap_*`), so that [`super::report`] reads both alike; empty when
/// the daemon does not answer.
pub fn metrics(pid: u32) -> HashMap<String, f64> {
    let Some((200, body)) = netns_call(pid, API_PORT, "POST", "/api/v0/bitswap/stat".into()) else {
        return HashMap::new();
    };
    let Ok(stat) = serde_json::from_str::<Value>(&body) else {
        return HashMap::new();
    };
    [
        ("cairn_bitswap_blocks_received", "BlocksReceived"),
        ("cairn_bitswap_duplicate_blocks", "DupBlksReceived"),
        ("cairn_bitswap_received_bytes", "DataReceived"),
        ("cairn_bitswap_sent_bytes", "DataSent"),
    ]
    .into_iter()
    .filter_map(|(ours, kubos)| Some((ours.to_owned(), stat.get(kubos)?.as_f64()?)))
    .collect()
}
