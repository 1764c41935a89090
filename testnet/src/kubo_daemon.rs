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
    gateway: Option<String>,
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
        KuboDaemon::start_with(routing, &[])
    }

    /// [`KuboDaemon::start`] with `ipfs config --json KEY VALUE` for each of `config` before the
    /// daemon starts (such as `("Pubsub.Enabled", "true")`).
    pub fn start_with(routing: Routing, config: &[(&str, &str)]) -> Result<KuboDaemon> {
        if !crate::netns::is_inside() {
            bail!("a Kubo daemon runs only inside a loopback-only network namespace (cairn_testnet::netns)");
        }
        if let Some(why) = kubo_bin_missing() {
            bail!("Kubo {KUBO_VERSION} unavailable: {why}");
        }
        let repo = tempfile::Builder::new().prefix("cairn-kubo-daemon-").tempdir().context("a Kubo repo")?;
        let ipfs =
            |args: &[&str]| run_for(ipfs_command(repo.path(), args), &format!("ipfs {}", args.join(" ")), CALL_TIMEOUT);
        ipfs(&["init", "--profile=test"])?;
        let routing = match routing {
            Routing::None => "none",
            Routing::Dht => "dht",
        };
        ipfs(&["config", "Routing.Type", routing])?;
        for (key, value) in config {
            ipfs(&["config", "--json", "--", key, value])?;
        }
        let mut child = ipfs_command(repo.path(), &["daemon"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start ipfs daemon")?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let (tx, ready) = mpsc::channel();
        thread::spawn(move || {
            let mut seen = Vec::new();
            let mut gateway = None;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("Gateway server listening on ") {
                    gateway = Some(addr.trim().to_owned());
                }
                if line.contains("Daemon is ready") {
                    tx.send(Ok(gateway.take())).ok();
                    // Keep reading, so the daemon never blocks on a full pipe.
                    continue;
                }
                if seen.len() < 50 {
                    seen.push(line);
                }
            }
            tx.send(Err(seen.join("\n"))).ok();
        });
        let mut daemon = KuboDaemon { child, repo, id: String::new(), addrs: Vec::new(), gateway: None };
        match ready.recv_timeout(START_TIMEOUT) {
            Ok(Ok(gateway)) => daemon.gateway = gateway,
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
        run_for(ipfs_command(self.repo.path(), args), &format!("ipfs {}", args.join(" ")), timeout)
    }

    /// The RPC API's base URL, `http://127.0.0.1:PORT`, from the `api` file the daemon wrote.
    pub fn api_url(&self) -> Result<String> {
        let api = std::fs::read_to_string(self.repo.path().join("api")).context("reading the Kubo repo's api file")?;
        let addr = cairn_node::config::tcp_socket_addr(api.trim()).map_err(|e| anyhow!("Kubo's api file: {e}"))?;
        Ok(format!("http://{addr}"))
    }

    /// The gateway's base URL, `http://127.0.0.1:PORT`, from the daemon's start-up lines.
    pub fn gateway_url(&self) -> Result<String> {
        let addr = self.gateway.as_deref().ok_or_else(|| anyhow!("Kubo named no gateway address"))?;
        let addr = cairn_node::config::tcp_socket_addr(addr).map_err(|e| anyhow!("Kubo's gateway address: {e}"))?;
        Ok(format!("http://{addr}"))
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

impl KuboDaemon {
    /// `ipfs pubsub sub --enc=json TOPIC`, running until the subscription is dropped (pubsub
    /// must be on: `Pubsub.Enabled`).
    pub fn subscribe(&self, topic: &str) -> Result<Subscription> {
        let mut child = ipfs_command(self.repo.path(), &["pubsub", "sub", "--enc=json", topic])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start ipfs pubsub sub")?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let (tx, messages) = mpsc::sync_channel(1024);
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Ok(Subscription { child, messages })
    }

    /// `ipfs pubsub pub TOPIC` with `data`.
    pub fn publish(&self, topic: &str, data: &[u8]) -> Result<()> {
        let file = tempfile::NamedTempFile::new().context("a file for the message")?;
        std::fs::write(file.path(), data).context("writing the message")?;
        let path = file.path().to_str().ok_or_else(|| anyhow!("temporary path is not UTF-8"))?;
        self.ipfs(&["pubsub", "pub", topic, path], CALL_TIMEOUT).map(drop)
    }

    /// `ipfs pubsub peers TOPIC`: the peers Kubo knows to be subscribed to `topic`.
    pub fn topic_peers(&self, topic: &str) -> Result<Vec<String>> {
        Ok(self.ipfs(&["pubsub", "peers", topic], CALL_TIMEOUT)?.lines().map(str::to_owned).collect())
    }

    /// `ipfs routing findprovs`: the peers the DHT names as providers of `cid`, waiting at most
    /// `timeout`.
    pub fn find_providers(&self, cid: &str, timeout: Duration) -> Result<Vec<String>> {
        let limit = format!("--timeout={}s", timeout.as_secs());
        let out = self.ipfs(&[&limit, "routing", "findprovs", "--num-providers=1", cid], timeout + CALL_TIMEOUT);
        // A timeout with nothing found is an answer too: no providers.
        Ok(out.map(|o| o.lines().map(str::to_owned).collect()).unwrap_or_default())
    }

    /// `ipfs routing provide CID`: announces `cid` on the DHT now.
    pub fn provide(&self, cid: &str) -> Result<()> {
        self.ipfs(&["routing", "provide", cid], CALL_TIMEOUT).map(drop)
    }
}

/// `ipfs ARGS` on the repo at `repo` (`IPFS_PATH`).
pub(crate) fn ipfs_command(repo: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(kubo_bin());
    cmd.env("IPFS_PATH", repo).args(args);
    cmd
}

/// One pubsub message a [`Subscription`] received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The author's peer ID.
    pub from: String,
    /// The payload.
    pub data: Vec<u8>,
}

/// A running `ipfs pubsub sub`; dropping it ends the process.
#[derive(Debug)]
pub struct Subscription {
    child: Child,
    messages: mpsc::Receiver<String>,
}

impl Subscription {
    /// The next message, waiting at most `timeout`; `None` if none came.
    pub fn next(&self, timeout: Duration) -> Result<Option<Message>> {
        #[derive(Deserialize)]
        struct Raw {
            from: String,
            data: String,
        }
        let line = match self.messages.recv_timeout(timeout) {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Timeout) => return Ok(None),
            Err(mpsc::RecvTimeoutError::Disconnected) => bail!("ipfs pubsub sub ended"),
        };
        let raw: Raw = serde_json::from_str(&line).with_context(|| format!("ipfs pubsub sub printed {line:?}"))?;
        // Multibase: `u` and base64url without padding, as Kubo's RPC API writes it.
        let data = raw
            .data
            .strip_prefix('u')
            .and_then(|d| data_encoding::BASE64URL_NOPAD.decode(d.as_bytes()).ok())
            .ok_or_else(|| anyhow!("ipfs pubsub sub: data {:?} is not multibase base64url", raw.data))?;
        Ok(Some(Message { from: raw.from, data }))
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

impl Drop for KuboDaemon {
    fn drop(&mut self) {
        // SIGTERM lets Kubo close its repo.
        stop(&mut self.child);
    }
}

/// Stops a reference daemon: SIGTERM, up to 5 s to exit, then SIGKILL; and reaps it.
pub(crate) fn stop(child: &mut std::process::Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).ok();
    for _ in 0..100 {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        thread::sleep(Duration::from_millis(50));
    }
    child.kill().ok();
    child.wait().ok();
}
