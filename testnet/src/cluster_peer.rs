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
    id: String,
    swarm: String,
    proxy: String,
}

/// How a peer joins a fleet. The default is a peer on its own, with Cluster's defaults.
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    /// The fleet's shared secret (64 hex digits); `None` keeps the one `init` made.
    pub secret: Option<String>,
    /// Cluster swarm addresses of peers already running (`.../p2p/<id>`) to join.
    pub bootstrap: Vec<String>,
    /// `replication_factor_min` and `_max`; `None` keeps -1 (every peer).
    pub replication: Option<(i32, i32)>,
    /// How often peers tell they are alive and metrics expire (`monitor_ping_interval`
    /// and the informers' `metric_ttl`); `None` keeps Cluster's 15 s and 30 s. A lost peer is
    /// noticed about one interval after its last metric expires.
    pub ping_interval: Option<Duration>,
    /// Whether the pins of a lost peer go to others by themselves (`disable_repinning`
    /// false); Cluster's default leaves them.
    pub repinning: bool,
}

/// A free loopback TCP port (taken and let go; the namespace is the test's own).
fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl ClusterPeer {
    /// Starts a peer on its own whose IPFS node is the RPC API at `api`
    /// (`http://127.0.0.1:PORT`).
    pub fn start(api: &str) -> Result<ClusterPeer> {
        ClusterPeer::start_with(api, &ClusterOptions::default())
    }

    /// [`ClusterPeer::start`] as `opts` say: a fleet's secret, peers to join, replication.
    pub fn start_with(api: &str, opts: &ClusterOptions) -> Result<ClusterPeer> {
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
        let (rest_port, swarm_port, proxy_port) = (free_port()?, free_port()?, free_port()?);
        let node = loopback(api_port);
        let cluster = &mut config["cluster"];
        cluster["listen_multiaddress"] = serde_json::json!([loopback(swarm_port)]);
        cluster["peer_addresses"] = serde_json::json!(opts.bootstrap);
        // No multicast discovery: the peers are told of each other.
        cluster["mdns_interval"] = "0s".into();
        if let Some(secret) = &opts.secret {
            cluster["secret"] = secret.as_str().into();
        }
        if let Some((min, max)) = opts.replication {
            cluster["replication_factor_min"] = min.into();
            cluster["replication_factor_max"] = max.into();
        }
        cluster["disable_repinning"] = (!opts.repinning).into();
        if let Some(interval) = opts.ping_interval {
            let every = format!("{}ms", interval.as_millis());
            cluster["monitor_ping_interval"] = every.as_str().into();
            config["monitor"]["pubsubmon"]["check_interval"] = every.as_str().into();
            let ttl = format!("{}ms", 2 * interval.as_millis());
            for informer in ["disk", "pinqueue", "tags"] {
                if config["informer"].get(informer).is_some() {
                    config["informer"][informer]["metric_ttl"] = ttl.as_str().into();
                }
            }
        }
        config["api"]["restapi"]["http_listen_multiaddress"] = loopback(rest_port);
        config["api"]["ipfsproxy"]["listen_multiaddress"] = loopback(proxy_port);
        config["api"]["ipfsproxy"]["node_multiaddress"] = node.clone();
        if config["api"].get("pinsvcapi").is_some() {
            config["api"]["pinsvcapi"]["http_listen_multiaddress"] = loopback(free_port()?);
        }
        config["ipfs_connector"]["ipfshttp"]["node_multiaddress"] = node;
        std::fs::write(&path, serde_json::to_vec_pretty(&config)?)?;
        let identity: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.path().join("identity.json"))?)?;
        let id = identity["id"].as_str().ok_or_else(|| anyhow!("no id in identity.json"))?.to_owned();

        let mut child = service(dir.path(), &["daemon"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start ipfs-cluster-service daemon")?;
        let stderr = child.stderr.take().ok_or_else(|| anyhow!("no stderr"))?;
        let (tx, ready) = mpsc::channel();
        let log_path = dir.path().join("service.log");
        thread::spawn(move || {
            use std::io::Write as _;
            let mut seen = Vec::new();
            // The log, for a failing test to show ([`ClusterPeer::log_tail`]); its first
            // 16 MiB.
            let mut log = std::fs::File::create(log_path).ok();
            let mut logged = 0usize;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("IPFS Cluster is READY") {
                    tx.send(Ok(())).ok();
                }
                if logged < 16 << 20 {
                    logged += line.len() + 1;
                    if let Some(f) = log.as_mut() {
                        writeln!(f, "{line}").ok();
                    }
                }
                // Keep reading, so the peer never blocks on a full pipe.
                if seen.len() < 60 {
                    seen.push(line);
                }
            }
            tx.send(Err(seen.join("\n"))).ok();
        });
        let peer = ClusterPeer {
            child,
            dir,
            rest: format!("/ip4/127.0.0.1/tcp/{rest_port}"),
            swarm: format!("/ip4/127.0.0.1/tcp/{swarm_port}/p2p/{id}"),
            proxy: format!("http://127.0.0.1:{proxy_port}"),
            id,
        };
        match ready.recv_timeout(START_TIMEOUT) {
            Ok(Ok(())) => Ok(peer),
            Ok(Err(out)) => bail!("ipfs-cluster-service exited before it was ready:\n{out}"),
            Err(_) => bail!("ipfs-cluster-service was not ready within {START_TIMEOUT:?}"),
        }
    }

    /// The last `lines` lines the peer logged.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("service.log")).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The peer's Cluster ID.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Where other peers join it: its Cluster swarm address, `.../p2p/<id>`.
    pub fn swarm_addr(&self) -> &str {
        &self.swarm
    }

    /// Its IPFS proxy: a Kubo RPC API at `http://127.0.0.1:PORT` that adds and pins
    /// through the Cluster and passes everything else to the node.
    pub fn proxy_url(&self) -> &str {
        &self.proxy
    }

    /// Its REST API, `127.0.0.1:PORT` (what `ipfs-cluster-ctl` talks to).
    pub fn rest_addr(&self) -> String {
        self.rest.trim_start_matches("/ip4/").replace("/tcp/", ":")
    }

    /// Kills the peer at once, as a machine that is lost: no goodbye to the others.
    pub fn kill(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
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

/// Starts one Cluster peer over each RPC API in `apis`, as one fleet: a fresh shared secret,
/// each peer joining every one before it (so that every pair is connected), `opts` for the
/// rest. Returns once every peer lists every other.
pub fn start_fleet(apis: &[String], opts: &ClusterOptions) -> Result<Vec<ClusterPeer>> {
    let mut secret = [0u8; 32];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut secret)
        .context("no randomness for the fleet's secret")?;
    let secret: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let mut peers: Vec<ClusterPeer> = Vec::new();
    for api in apis {
        let opts = ClusterOptions {
            secret: Some(secret.clone()),
            bootstrap: peers.iter().map(|p| p.swarm_addr().to_owned()).collect(),
            ..opts.clone()
        };
        peers.push(ClusterPeer::start_with(api, &opts)?);
    }
    let started = std::time::Instant::now();
    loop {
        let listed = peers.iter().all(|p| {
            let ls = p.ctl(&["--enc=json", "peers", "ls"], Duration::from_secs(20)).unwrap_or_default();
            peers.iter().all(|q| ls.contains(q.id()))
        });
        if listed {
            return Ok(peers);
        }
        if started.elapsed() > START_TIMEOUT {
            bail!("the fleet's peers did not all see each other within {START_TIMEOUT:?}");
        }
        thread::sleep(Duration::from_millis(250));
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
