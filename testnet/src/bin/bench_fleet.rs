//! Fleet benchmark: IPFS Cluster v1.1.0 pins a DAG onto two nodes of a three-node fleet, a
//! fleet of Cairn nodes beside a fleet of Kubo 0.43.1 daemons, under the same Cluster in the
//! same run.
//!
//! ```text
//! cargo build --release -p cairn-testnet
//! ~/.cache/cairn-target/release/bench_fleet [--size-mib 1024] [--runs 2] [--no-kubo]
//! ```
//!
//! The benchmark enters a private network namespace that holds only loopback
//! (`unshare -n`, root needed) before it starts any node, so nothing can leave the machine.
//!
//! Each fleet is three nodes on 127.0.0.1, connected to each other, each under its own
//! Cluster peer (CRDT consensus, one fresh secret, replication 2):
//! - **Cairn**: three in-process nodes with fresh RocksDB repos, each serving its RPC API
//!   (what `cairn daemon` serves) to its Cluster peer;
//! - **Kubo**: three `ipfs daemon`s (flatfs repos, no routing), each API under its peer.
//!
//! Node 0 adds the file without pinning it (not timed). Then the clock runs from
//! `ipfs-cluster-ctl pin add --replication 2 --allocations <node 1>,<node 2>` until Cluster's
//! status says pinned on both (polled every 50 ms): Cluster asks both other nodes to pin, and
//! each fetches the whole DAG over Bitswap from node 0 at the same time
//! (`pin/add?progress=true`, as Cluster's connector asks). The figure is the bytes that landed
//! (twice the file) over that time.
//!
//! Best of `--runs`, fresh repos each run. Prints JSON lines and a Markdown table.
//! MB is 10^6 bytes.

#![allow(clippy::print_stdout)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use cairn_node::add::AddOptions;
use cairn_node::config::Profile;
use cairn_node::net::{dht::DhtMode, NetConfig};
use cairn_node::Node;
use cairn_testnet::cluster_peer::{start_fleet, ClusterOptions, ClusterPeer};
use cairn_testnet::kubo_daemon::{KuboDaemon, Routing};
use clap::Parser;

/// The `cairn` binary's allocator, so the in-process nodes allocate as a daemon does.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Debug, Parser)]
struct Args {
    /// Size of the file in MiB.
    #[arg(long, default_value_t = 1024)]
    size_mib: u64,
    /// Runs of each fleet; the best is reported.
    #[arg(long, default_value_t = 2)]
    runs: u32,
    /// Skip the Kubo fleet.
    #[arg(long)]
    no_kubo: bool,
}

/// How long one replication may take.
const PIN_TIMEOUT: Duration = Duration::from_secs(600);

fn mbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e6
}

/// Cluster as the fleets run it: replication 2.
fn options() -> ClusterOptions {
    ClusterOptions { replication: Some((2, 2)), ..ClusterOptions::default() }
}

/// Pins `cid` through peer 0 onto nodes 1 and 2 and waits until both hold it; the time.
/// The status is polled every 50 ms (`pin add --wait` polls once a second, too coarse for
/// transfers of seconds).
fn replicate(peers: &[ClusterPeer], cid: &str) -> Result<Duration> {
    let allocations = format!("{},{}", peers[1].id(), peers[2].id());
    let started = Instant::now();
    peers[0].ctl(&["pin", "add", "--replication", "2", "--allocations", &allocations, cid], Duration::from_secs(60))?;
    loop {
        let status = peers[0].ctl(&["--enc=json", "status", cid], Duration::from_secs(60))?;
        let status: serde_json::Value = serde_json::from_str(&status).context("status is not JSON")?;
        let states: Vec<&str> =
            peers[1..].iter().map(|p| status["peer_map"][p.id()]["status"].as_str().unwrap_or("")).collect();
        if states.iter().all(|s| *s == "pinned") {
            return Ok(started.elapsed());
        }
        ensure!(
            !states.iter().any(|s| s.contains("error")) && started.elapsed() < PIN_TIMEOUT,
            "the pin did not land: {states:?} after {:?}",
            started.elapsed()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A Cairn node in-process, online, serving its RPC API on loopback; the API's URL.
fn cairn_node(rt: &tokio::runtime::Runtime, dir: &Path) -> Result<(Arc<Node>, cairn_node::net::Network, String)> {
    let node = Arc::new(Node::init(dir, Profile::Test)?);
    let cfg = NetConfig { dht: DhtMode::Off, ..NetConfig::new(vec!["/ip4/127.0.0.1/tcp/0".parse()?]) };
    let (net, _task) = rt.block_on(cairn_node::online::start_reading(&node, cfg, Duration::from_secs(60)))?;
    let (stop_tx, stop_rx) = tokio::sync::mpsc::channel(1);
    std::mem::forget(stop_rx);
    let api = cairn_gateway::api::Api::new(node.clone(), Some(net.clone()), stop_tx);
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let url = format!("http://{}", listener.local_addr()?);
    rt.spawn(cairn_gateway::serve_api(listener, api, std::future::pending::<()>()));
    Ok((node, net, url))
}

fn cairn_run(rt: &tokio::runtime::Runtime, dir: &Path, file: &Path) -> Result<Duration> {
    let mut nodes = Vec::new();
    for i in 0..3 {
        nodes.push(cairn_node(rt, &dir.join(format!("n{i}")))?);
    }
    for i in 0..3 {
        for j in i + 1..3 {
            rt.block_on(nodes[i].1.connect(nodes[j].1.listen_addrs()[0].clone()))?;
        }
    }
    let cid = nodes[0].0.add(file, &AddOptions::default(), false, &mut |_| {})?.cid.to_string();
    let apis: Vec<String> = nodes.iter().map(|n| n.2.clone()).collect();
    let peers = start_fleet(&apis, &options())?;
    let took = replicate(&peers, &cid)?;
    drop(peers);
    rt.block_on(async {
        for (_, net, _) in &nodes {
            net.shutdown().await;
        }
    });
    Ok(took)
}

fn kubo_run(file: &Path) -> Result<Duration> {
    let nodes =
        [KuboDaemon::start(Routing::None)?, KuboDaemon::start(Routing::None)?, KuboDaemon::start(Routing::None)?];
    for i in 0..3 {
        for j in i + 1..3 {
            let addr = nodes[j].tcp_addrs().into_iter().next().context("Kubo has no TCP address")?;
            nodes[i].connect(&addr)?;
        }
    }
    let cid = nodes[0].add(file, &["--pin=false"])?;
    let apis = nodes.iter().map(KuboDaemon::api_url).collect::<Result<Vec<_>>>()?;
    let peers = start_fleet(&apis, &options())?;
    replicate(&peers, &cid)
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(status) = cairn_testnet::netns::rerun_in_private_netns() {
        ensure!(status.success(), "the benchmark failed in its namespace: {status}");
        return Ok(());
    }
    let work = tempfile::tempdir()?;
    let file = work.path().join("bench.bin");
    let size = args.size_mib << 20;
    cairn_testnet::data::write_random(&file, size, 7)?;
    // Two copies land.
    let bytes = 2 * size;
    let rt = tokio::runtime::Runtime::new()?;
    let (mut cairn_best, mut kubo_best) = (Duration::MAX, Duration::MAX);
    for run in 0..args.runs {
        let dir = tempfile::tempdir_in(work.path())?;
        let t = cairn_run(&rt, dir.path(), &file)?;
        println!(
            "{{\"impl\": \"cairn\", \"run\": {run}, \"bytes\": {bytes}, \"seconds\": {:.3}, \"mb_per_s\": {:.1}}}",
            t.as_secs_f64(),
            mbps(bytes, t)
        );
        cairn_best = cairn_best.min(t);
        if !args.no_kubo {
            let t = kubo_run(&file)?;
            println!(
                "{{\"impl\": \"kubo\", \"run\": {run}, \"bytes\": {bytes}, \"seconds\": {:.3}, \"mb_per_s\": {:.1}}}",
                t.as_secs_f64(),
                mbps(bytes, t)
            );
            kubo_best = kubo_best.min(t);
        }
    }
    println!(
        "\n| {} MiB pinned by IPFS Cluster onto 2 of 3 nodes (replication 2) | seconds | MB/s landed | × Kubo |\n|---|---:|---:|---:|",
        args.size_mib
    );
    let ratio = if args.no_kubo {
        "-".to_owned()
    } else {
        format!("{:.2}", kubo_best.as_secs_f64() / cairn_best.as_secs_f64())
    };
    println!(
        "| Cairn fleet (best of {}) | {:.1} | {:.1} | {ratio} |",
        args.runs,
        cairn_best.as_secs_f64(),
        mbps(bytes, cairn_best)
    );
    if !args.no_kubo {
        println!(
            "| Kubo 0.43.1 fleet (best of {}) | {:.1} | {:.1} | 1.00 |",
            args.runs,
            kubo_best.as_secs_f64(),
            mbps(bytes, kubo_best)
        );
    }
    Ok(())
}
