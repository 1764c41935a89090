//! A live Kubo 0.43.1 daemon for wire-interop tests: the real `ipfs daemon`, driven with the
//! real `ipfs` command line against its RPC API.
//!
//! [`KuboDaemon::start`] refuses to run outside a loopback-only network namespace made by
//! [`crate::netns`]: the daemon is a plain child process of the test, in the test's namespace,
//! where it can reach the Cairn nodes under test and nothing else. Its repo is made with
//! `ipfs init --profile=test` (API, gateway and swarm on `127.0.0.1` port 0, no bootstrap
//! peers, no mDNS, no NAT port mapping, AutoConf and AutoTLS off, no delegated routers) and
//! the routing the test asks for (`none`, or `dht` on loopback, Kubo's LAN DHT taking
//! loopback addresses under that profile).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;

use crate::reference::{kubo_bin, kubo_bin_missing, run_for, KUBO_VERSION};

/// How long the daemon may take to say it is ready.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a quick command (`id`, `add`, `swarm connect`) may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// How the daemon routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routing {
    /// No content routing: blocks only from connected peers (`Routing.Type = none`).
    None,
    /// The DHT, on loopback addresses (`Routing.Type = dht`).
    Dht,
}

/// A running `ipfs daemon`; dropping it stops the process and deletes its repo.
#[derive(Debug)]
pub struct KuboDaemon {
    child: Child,
    repo: tempfile::TempDir,
    id: String,
    addrs: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Id {
    #[serde(rename = "ID")]
    id: String,
    addresses: Vec<String>,
}

impl KuboDaemon {
    /// Makes a repo, starts `ipfs daemon` on it and waits until it is ready.
    pub fn start(routing: Routing) -> Result<KuboDaemon> {
        if !crate::netns::is_inside() {
            bail!("a Kubo daemon runs only inside a loopback-only network namespace (cairn_testnet::netns)");
        }
        if let Some(why) = kubo_bin_missing() {
            bail!("Kubo {KUBO_VERSION} unavailable: {why}");
        }
        let repo = tempfile::Builder::new().prefix("cairn-kubo-daemon-").tempdir().context("a Kubo repo")?;
        let ipfs = |args: &[&str]| {
            let mut cmd = Command::new(kubo_bin());
            cmd.env("IPFS_PATH", repo.path()).args(args);
            run_for(cmd, &format!("ipfs {}", args.join(" ")), CALL_TIMEOUT)
        };
        ipfs(&["init", "--profile=test"])?;
        let routing = match routing {
            Routing::None => "none",
            Routing::Dht => "dht",
        };
        ipfs(&["config", "Routing.Type", routing])?;
        let mut child = Command::new(kubo_bin())
            .env("IPFS_PATH", repo.path())
            .args(["daemon"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start ipfs daemon")?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let (tx, ready) = mpsc::channel();
        thread::spawn(move || {
            let mut seen = Vec::new();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("Daemon is ready") {
                    tx.send(Ok(())).ok();
                    // Keep reading, so the daemon never blocks on a full pipe.
                    continue;
                }
                if seen.len() < 50 {
                    seen.push(line);
                }
            }
            tx.send(Err(seen.join("\n"))).ok();
        });
        let mut daemon = KuboDaemon { child, repo, id: String::new(), addrs: Vec::new() };
        match ready.recv_timeout(START_TIMEOUT) {
            Ok(Ok(())) => {}
            Ok(Err(out)) => bail!("ipfs daemon exited before it was ready:\n{out}"),
            Err(_) => bail!("ipfs daemon was not ready within {START_TIMEOUT:?}"),
        }
        let id: Id = serde_json::from_str(&daemon.ipfs(&["id"], CALL_TIMEOUT)?).context("ipfs id")?;
        daemon.id = id.id;
        daemon.addrs = id.addresses;
        Ok(daemon)
    }

    /// Runs `ipfs ARGS` against this daemon, waiting at most `timeout`; its stdout.
    pub fn ipfs(&self, args: &[&str], timeout: Duration) -> Result<String> {
        let mut cmd = Command::new(kubo_bin());
        cmd.env("IPFS_PATH", self.repo.path()).args(args);
        run_for(cmd, &format!("ipfs {}", args.join(" ")), timeout)
    }

    /// The peer ID.
    pub fn peer_id(&self) -> &str {
        &self.id
    }

    /// The TCP listen addresses on loopback, each ending in `/p2p/<peer id>`.
    pub fn tcp_addrs(&self) -> Vec<String> {
        self.addrs.iter().filter(|a| a.starts_with("/ip4/127.0.0.1/tcp/")).cloned().collect()
    }

    /// `ipfs swarm connect ADDR`.
    pub fn connect(&self, addr: &str) -> Result<()> {
        self.ipfs(&["swarm", "connect", addr], CALL_TIMEOUT).map(drop)
    }

    /// `ipfs add -r -Q ARGS PATH`: adds and pins a file or tree; its root CID.
    pub fn add(&self, path: &Path, args: &[&str]) -> Result<String> {
        let path = path.to_str().ok_or_else(|| anyhow!("{} is not UTF-8", path.display()))?;
        let mut all = vec!["add", "-r", "-Q"];
        all.extend_from_slice(args);
        all.push(path);
        Ok(self.ipfs(&all, CALL_TIMEOUT)?.trim().to_owned())
    }

    /// `ipfs get -o OUT CID`: fetches the file or tree from the network and writes it at `out`.
    pub fn get(&self, cid: &str, out: &Path, timeout: Duration) -> Result<()> {
        let out = out.to_str().ok_or_else(|| anyhow!("{} is not UTF-8", out.display()))?;
        let limit = format!("--timeout={}s", timeout.as_secs());
        self.ipfs(&[&limit, "get", "-o", out, cid], timeout + Duration::from_secs(10)).map(drop)
    }
}

impl Drop for KuboDaemon {
    fn drop(&mut self) {
        // SIGTERM lets Kubo close its repo; then make sure, and reap.
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).ok();
        for _ in 0..100 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
        self.child.kill().ok();
        self.child.wait().ok();
    }
}
