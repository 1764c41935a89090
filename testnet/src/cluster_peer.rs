//! A real IPFS Cluster peer (`ipfs-cluster-service daemon`, v1.1.0) over a Cairn node's RPC
//! API, and `ipfs-cluster-ctl` against it, for the fleet tests.
//!
//! Like the Kubo daemons, it runs only inside a loopback-only network namespace
//! ([`crate::netns`]): its cluster swarm, REST API, IPFS proxy and pinning service API listen
//! on loopback ports of their own, it uses CRDT consensus with a fresh secret, and knows no
//! peer but those it is told of.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use crate::reference::{cluster_dir, cluster_missing, run_for, CLUSTER_VERSION};

/// How long the peer may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running Cluster peer; stopped when dropped.
#[derive(Debug)]
pub struct ClusterPeer {
    child: Child,
    dir: tempfile::TempDir,
    rest: String,
}

/// A free loopback TCP port (taken and let go; the namespace is the test's own).
fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl ClusterPeer {
    /// Starts a peer whose IPFS node is the RPC API at `api` (`http://127.0.0.1:PORT`).
    pub fn start(api: &str) -> Result<ClusterPeer> {
        if !crate::netns::is_inside() {
            bail!("an IPFS Cluster peer runs only inside a loopback-only network namespace (cairn_testnet::netns)");
        }
        if let Some(why) = cluster_missing() {
            bail!("IPFS Cluster {CLUSTER_VERSION} unavailable: {why}");
        }
        let api_port = api.rsplit(':').next().and_then(|p| p.trim_end_matches('/').parse::<u16>().ok());
        let api_port = api_port.ok_or_else(|| anyhow!("no port in {api:?}"))?;
        let dir = tempfile::Builder::new().prefix("cairn-cluster-").tempdir().context("a Cluster config dir")?;
        run_for(service(dir.path(), &["init", "--consensus", "crdt"]), "ipfs-cluster-service init", START_TIMEOUT)?;
        let path = dir.path().join("service.json");
        let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
        let loopback = |port: u16| serde_json::Value::String(format!("/ip4/127.0.0.1/tcp/{port}"));
        let rest_port = free_port()?;
        let node = loopback(api_port);
        config["cluster"]["listen_multiaddress"] = serde_json::json!([loopback(free_port()?)]);
        config["cluster"]["peer_addresses"] = serde_json::json!([]);
        config["api"]["restapi"]["http_listen_multiaddress"] = loopback(rest_port);
        config["api"]["ipfsproxy"]["listen_multiaddress"] = loopback(free_port()?);
        config["api"]["ipfsproxy"]["node_multiaddress"] = node.clone();
        if config["api"].get("pinsvcapi").is_some() {
            config["api"]["pinsvcapi"]["http_listen_multiaddress"] = loopback(free_port()?);
        }
        config["ipfs_connector"]["ipfshttp"]["node_multiaddress"] = node;
        std::fs::write(&path, serde_json::to_vec_pretty(&config)?)?;

        let mut child = service(dir.path(), &["daemon"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start ipfs-cluster-service daemon")?;
        let stderr = child.stderr.take().ok_or_else(|| anyhow!("no stderr"))?;
        let (tx, ready) = mpsc::channel();
        thread::spawn(move || {
            let mut seen = Vec::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("IPFS Cluster is READY") {
                    tx.send(Ok(())).ok();
                }
                // Keep reading, so the peer never blocks on a full pipe.
                if seen.len() < 60 {
                    seen.push(line);
                }
            }
            tx.send(Err(seen.join("\n"))).ok();
        });
        let peer = ClusterPeer { child, dir, rest: format!("/ip4/127.0.0.1/tcp/{rest_port}") };
        match ready.recv_timeout(START_TIMEOUT) {
            Ok(Ok(())) => Ok(peer),
            Ok(Err(out)) => bail!("ipfs-cluster-service exited before it was ready:\n{out}"),
            Err(_) => bail!("ipfs-cluster-service was not ready within {START_TIMEOUT:?}"),
        }
    }

    /// Runs `ipfs-cluster-ctl ARGS` against this peer, waiting at most `timeout`; its stdout.
    pub fn ctl(&self, args: &[&str], timeout: Duration) -> Result<String> {
        let mut cmd = Command::new(cluster_dir().join("ipfs-cluster-ctl"));
        cmd.arg("--host").arg(&self.rest).args(args);
        run_for(cmd, &format!("ipfs-cluster-ctl {}", args.join(" ")), timeout)
    }

    /// The peer's config directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// `ipfs-cluster-service ARGS` on the config in `dir`.
fn service(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(cluster_dir().join("ipfs-cluster-service"));
    cmd.env("IPFS_CLUSTER_PATH", dir).args(args);
    cmd
}

impl Drop for ClusterPeer {
    fn drop(&mut self) {
        // SIGTERM lets the peer close its state.
        crate::kubo_daemon::stop(&mut self.child);
    }
}
