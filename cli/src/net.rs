//! `cairn id`, `cairn swarm`, `cairn routing` and `cairn bootstrap`.
//!
//! `swarm` and `routing` ask the running daemon. `id` asks it when one runs and reads the repo
//! otherwise (with no addresses, as Kubo prints offline). `bootstrap` edits the config; the
//! daemon reads it at start.

use anyhow::{bail, Context as _};
use cairn_node::Repo;
use serde_json::{json, Value};

use crate::api::{self, query};
use crate::Ctx;

/// The public IPFS bootstrap peers, added only by an explicit `bootstrap add --default`.
/// The `/dnsaddr` entries are resolved through the system's DNS resolver when the daemon
/// dials them.
const DEFAULT_BOOTSTRAP: &[&str] = &[
    "/dnsaddr/bootstrap.libp2p.io/p2p/QmNnooDu7bfjPFoTZYxMNLWUQJyrVwtbZg5gBMjTezGAJN",
    "/dnsaddr/bootstrap.libp2p.io/p2p/QmQCU2EcMqAqQPR2i9bChDtGNJchTbq5TbXJJ16u19uLTa",
    "/dnsaddr/bootstrap.libp2p.io/p2p/QmbLHAnMoJPWSCR5Zhtx6BHJX9KiKNN6tpvbUcqanj75Nb",
    "/dnsaddr/bootstrap.libp2p.io/p2p/QmcZf59bWwK5XFi76CZX8cbJ4BhTzzA3gU1ZjYZcYW3dwt",
    "/ip4/104.131.131.82/tcp/4001/p2p/QmaCpDMGvV2BGHeYERUEnRQAwe3N8SzbUw3s1AbHb5wQLa",
    "/ip4/104.131.131.82/udp/4001/quic-v1/p2p/QmaCpDMGvV2BGHeYERUEnRQAwe3N8SzbUw3s1AbHb5wQLa",
];

/// `cairn id`: prints the node's identity as JSON.
pub fn id(ctx: &Ctx) -> anyhow::Result<()> {
    let v = match api::client(ctx)? {
        Some(c) => c.json("id", "")?,
        None => {
            let repo = Repo::open(&ctx.repo)?;
            let key = repo.keypair().public().encode_protobuf();
            json!({
                "ID": repo.peer_id().to_string(),
                "PublicKey": data_encoding::BASE64.encode(&key),
                "Addresses": [],
                "AgentVersion": cairn_node::net::AGENT,
                "Protocols": cairn_node::net::protocols(),
            })
        }
    };
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}

#[derive(Debug, clap::Subcommand)]
pub enum SwarmCommand {
    /// List connected peers: `<addr>/p2p/<id>` per line.
    Peers,
    /// Connect to peers: each address must end in `/p2p/<id>`.
    Connect {
        /// Multiaddrs.
        #[arg(required = true)]
        addrs: Vec<String>,
    },
    /// Addresses: `addrs` lists each connected peer's, `addrs listen` the node's own.
    Addrs {
        /// `listen` (or `local`) for this node's listen addresses.
        which: Option<String>,
    },
}

fn strings(v: &Value) -> Vec<String> {
    v.get("Strings")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect()
}

/// `cairn swarm …`.
pub fn swarm(ctx: &Ctx, cmd: SwarmCommand) -> anyhow::Result<()> {
    let client = api::require(ctx)?;
    match cmd {
        SwarmCommand::Peers => {
            let v = client.json("swarm/peers", "")?;
            for p in v.get("Peers").and_then(Value::as_array).into_iter().flatten() {
                let (addr, peer) = (p["Addr"].as_str().unwrap_or_default(), p["Peer"].as_str().unwrap_or_default());
                println!("{addr}/p2p/{peer}");
            }
        }
        SwarmCommand::Connect { addrs } => {
            let q: Vec<(&str, &str)> = addrs.iter().map(|a| ("arg", a.as_str())).collect();
            for line in strings(&client.json("swarm/connect", &query(&q))?) {
                println!("{line}");
            }
        }
        SwarmCommand::Addrs { which } => match which.as_deref() {
            Some("listen" | "local") => {
                for a in strings(&client.json("swarm/addrs/listen", "")?) {
                    println!("{a}");
                }
            }
            None => {
                let v = client.json("swarm/peers", "")?;
                for p in v.get("Peers").and_then(Value::as_array).into_iter().flatten() {
                    println!(
                        "{} (1)\n\t{}",
                        p["Peer"].as_str().unwrap_or_default(),
                        p["Addr"].as_str().unwrap_or_default()
                    );
                }
            }
            Some(other) => bail!("unknown swarm addrs subcommand {other:?} (use listen)"),
        },
    }
    Ok(())
}

#[derive(Debug, clap::Subcommand)]
pub enum RoutingCommand {
    /// Announce on the DHT that this node provides these CIDs.
    Provide {
        /// CIDs held by the node.
        #[arg(required = true)]
        cids: Vec<String>,
        /// Announce every block of each DAG, not only its root.
        #[arg(short, long)]
        recursive: bool,
    },
    /// Renew every DHT announcement of `Reprovider.Strategy` now, as the daemon does every
    /// `Reprovider.Interval`.
    Reprovide,
    /// Find peers that provide a CID: one peer ID per line.
    Findprovs {
        /// The CID.
        cid: String,
        /// Stop after this many.
        #[arg(short = 'n', long, default_value_t = 20)]
        num_providers: u32,
    },
}

/// `cairn routing …`.
pub fn routing(ctx: &Ctx, cmd: RoutingCommand) -> anyhow::Result<()> {
    let client = api::require(ctx)?;
    match cmd {
        RoutingCommand::Provide { cids, recursive } => {
            let r = recursive.to_string();
            let mut q: Vec<(&str, &str)> = cids.iter().map(|c| ("arg", c.as_str())).collect();
            q.push(("recursive", &r));
            client.lines("routing/provide", &query(&q), None, &mut |_| Ok(()))?;
        }
        RoutingCommand::Reprovide => {
            let v = client.json("routing/reprovide", "")?;
            let n = |k: &str| v[k].as_u64().unwrap_or_default();
            println!(
                "reprovided {} keys ({} reached no peer) in {:.2}s: {} region lookups, {} streams ({} failed)",
                n("Provided"),
                n("Failed"),
                v["Seconds"].as_f64().unwrap_or_default(),
                n("Lookups"),
                n("Streams"),
                n("FailedStreams")
            );
        }
        RoutingCommand::Findprovs { cid, num_providers } => {
            let n = num_providers.to_string();
            client.lines("routing/findprovs", &query(&[("arg", &cid), ("num-providers", &n)]), None, &mut |v| {
                for r in v.get("Responses").and_then(Value::as_array).into_iter().flatten() {
                    println!("{}", r["ID"].as_str().unwrap_or_default());
                }
                Ok(())
            })?;
        }
    }
    Ok(())
}

#[derive(Debug, clap::Subcommand)]
pub enum BitswapCommand {
    /// Counters: blocks and bytes received and sent, duplicates, wants, partners.
    Stat,
}

/// `cairn bitswap stat`: the daemon's Bitswap counters, laid out as Kubo's.
pub fn bitswap(ctx: &Ctx, cmd: BitswapCommand) -> anyhow::Result<()> {
    let client = api::require(ctx)?;
    match cmd {
        BitswapCommand::Stat => {
            let v = client.json("bitswap/stat", "")?;
            let n = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
            let peers = v.get("Peers").and_then(Value::as_array).map_or(0, Vec::len);
            println!("bitswap status");
            println!("\tblocks received: {}", n("BlocksReceived"));
            println!("\tblocks sent: {}", n("BlocksSent"));
            println!("\tdata received: {}", n("DataReceived"));
            println!("\tdata sent: {}", n("DataSent"));
            println!("\tdup blocks received: {}", n("DupBlksReceived"));
            println!("\twantlist [{} keys]", n("WantlistLength"));
            println!("\tpartners [{peers}], sending lately [{}]", n("SendingPeers"));
        }
    }
    Ok(())
}

#[derive(Debug, clap::Subcommand)]
pub enum BootstrapCommand {
    /// Print the bootstrap list.
    List,
    /// Add peers to the bootstrap list.
    Add {
        /// Multiaddrs ending in `/p2p/<id>`.
        addrs: Vec<String>,
        /// Add the public IPFS bootstrap peers: the node then joins the public network.
        #[arg(long)]
        default: bool,
    },
    /// Remove peers from the bootstrap list.
    Rm {
        /// Multiaddrs to remove.
        addrs: Vec<String>,
        /// Remove every peer.
        #[arg(long)]
        all: bool,
    },
}

/// `cairn bootstrap …`.
pub fn bootstrap(ctx: &Ctx, cmd: BootstrapCommand) -> anyhow::Result<()> {
    let mut repo = Repo::open(&ctx.repo)?;
    let mut list = repo.config().bootstrap.clone();
    let (changed, print): (Vec<String>, bool) = match cmd {
        BootstrapCommand::List => (list.clone(), true),
        BootstrapCommand::Add { addrs, default } => {
            let mut new: Vec<String> = addrs;
            if default {
                new.extend(DEFAULT_BOOTSTRAP.iter().map(|s| (*s).to_owned()));
            }
            if new.is_empty() {
                bail!("no bootstrap peers to add (give addresses, or --default)");
            }
            for a in &new {
                let m: cairn_node::net::Multiaddr = a.parse().with_context(|| format!("{a:?} is not a multiaddr"))?;
                if !matches!(m.iter().last(), Some(cairn_node::net::Protocol::P2p(_))) {
                    bail!("{a:?} must end in /p2p/<peer id>");
                }
            }
            let added: Vec<String> = new.into_iter().filter(|a| !list.contains(a)).collect();
            list.extend(added.iter().cloned());
            (added, true)
        }
        BootstrapCommand::Rm { addrs, all } => {
            let removed: Vec<String> =
                if all { list.clone() } else { list.iter().filter(|a| addrs.contains(a)).cloned().collect() };
            if !all && addrs.is_empty() {
                bail!("give addresses to remove, or --all");
            }
            list.retain(|a| !removed.contains(a));
            (removed, true)
        }
    };
    if list != repo.config().bootstrap {
        let mut cfg = repo.config().clone();
        cfg.bootstrap = list;
        repo.set_config(cfg)?;
    }
    if print {
        for a in changed {
            println!("{a}");
        }
    }
    Ok(())
}
