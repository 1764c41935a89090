//! Reprovide benchmark: how fast one node announces every block it holds on a DHT of Cairn
//! nodes on loopback.
//!
//! ```text
//! cargo build --release -p cairn-testnet
//! ~/.cache/cairn-target/release/bench_reprovide [--nodes 20] [--keys 100000]
//! ```
//!
//! `--nodes` in-process nodes with fresh RocksDB repos and swarms on 127.0.0.1 form a LAN DHT
//! (each connects to the first and to the one before it, then waits until the first's routing
//! table stops growing). The first node adds a file cut into 1 KiB raw leaves, so that it holds
//! about `--keys` blocks, and with `Reprovider.Strategy = all` the clock runs over one sweep:
//! every block's provider record sent to the peers closest to it, by keyspace region (one
//! lookup per region, then each peer's keys over one stream). Prints a JSON line with the
//! lookups and streams, and the time one million keys would take at that rate, beside the
//! 22-hour reprovide interval.
//!
//! Loopback has no latency. On a real network each lookup waits on round trips (a second or
//! more), so the lookup count is the figure that carries over: the sweep's network cost is
//! lookups × round trips, plus the bytes of the messages.

#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use cairn_node::add::AddOptions;
use cairn_node::config::Profile;
use cairn_node::merkle::chunker::ChunkerSpec;
use cairn_node::merkle::importer::ImportOptions;
use cairn_node::net::{NetConfig, Network};
use cairn_node::services::reprovide::Reprovider;
use cairn_node::Node;
use clap::Parser;

#[derive(Debug, Parser)]
struct Args {
    /// Nodes in the DHT.
    #[arg(long, default_value_t = 20)]
    nodes: usize,
    /// Blocks (about) the announcing node holds.
    #[arg(long, default_value_t = 100_000)]
    keys: u64,
    /// Also announce the same keys one lookup per key (the queue that `add` and `pin` use), in
    /// the same run, for the ratio.
    #[arg(long)]
    per_key: bool,
}

async fn start(node: &Arc<Node>) -> Result<Network> {
    let cfg = NetConfig::new(vec!["/ip4/127.0.0.1/tcp/0".parse()?]);
    Ok(cairn_node::online::start(node, cfg).await?.0)
}

fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(args.nodes >= 2, "--nodes must be at least 2");
    let dir = tempfile::tempdir()?;
    let rt = tokio::runtime::Runtime::new()?;

    let mut first = Node::init(&dir.path().join("n0"), Profile::Test)?;
    let mut cfg = first.repo().config().clone();
    cfg.reprovider.strategy = "all".into();
    first.repo_mut().set_config(cfg)?;
    let first = Arc::new(first);
    let mut import = ImportOptions::from_flags(Some(1), Some(true), None)?;
    import.chunker = "size-1024".parse::<ChunkerSpec>()?;
    let opts = AddOptions { import, ..AddOptions::default() };
    let data = cairn_testnet::data::random_bytes((args.keys * 1024) as usize, 7);
    first.add_reader(&data[..], &opts, true)?;
    let blocks = cairn_node::BlockStore::stats(first.repo().store())?.blocks;

    let nodes: Vec<Arc<Node>> = std::iter::once(Ok(first.clone()))
        .chain((1..args.nodes).map(|i| Node::init(&dir.path().join(format!("n{i}")), Profile::Test).map(Arc::new)))
        .collect::<Result<_, _>>()?;
    let nets = rt.block_on(async {
        let mut nets = Vec::new();
        for n in &nodes {
            nets.push(start(n).await?);
        }
        for i in 1..nets.len() {
            nets[i].connect(nets[0].listen_addrs()[0].clone()).await?;
            nets[i].connect(nets[i - 1].listen_addrs()[0].clone()).await?;
        }
        // Until the first's routing table stops growing: it holds everyone up to K = 20, and
        // past that what its k-buckets keep (the bucket of the far half fills at 20).
        let started = Instant::now();
        let (mut size, mut since) = (0, Instant::now());
        loop {
            let now = nets[0].dht_stats().await?.lan_peers;
            if now != size {
                (size, since) = (now, Instant::now());
            }
            if size >= (args.nodes - 1).min(20) && since.elapsed() > Duration::from_secs(2) {
                break;
            }
            ensure!(started.elapsed() < Duration::from_secs(60), "the routing table never filled");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::Ok(nets)
    })?;

    let reprovider = Reprovider::from_repo(first.clone(), nets[0].clone())?;
    let sweep = rt.block_on(reprovider.sweep())?;
    let rate = (sweep.provided + sweep.failed) as f64 / sweep.took.as_secs_f64();
    let million = Duration::from_secs_f64(1e6 / rate);
    println!(
        "{{\"bench\":\"reprovide\",\"nodes\":{},\"keys\":{blocks},\"provided\":{},\"failed\":{},\"lookups\":{},\"streams\":{},\"failed_streams\":{},\"seconds\":{:.2},\"keys_per_s\":{rate:.1}}}",
        args.nodes,
        sweep.provided,
        sweep.failed,
        sweep.lookups,
        sweep.streams,
        sweep.failed_streams,
        sweep.took.as_secs_f64()
    );
    println!();
    println!("| nodes | keys | provided | failed | lookups | streams | time | keys/s | 1M keys | budget |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {blocks} | {} | {} | {} | {} | {:.1} s | {rate:.0} | {:.1} min | 22 h |",
        args.nodes,
        sweep.provided,
        sweep.failed,
        sweep.lookups,
        sweep.streams,
        sweep.took.as_secs_f64(),
        million.as_secs_f64() / 60.0
    );
    if args.per_key {
        let root = first.pins()?.first().map(|p| p.cid).expect("the add pinned its root");
        let cids = first.dag_cids(&root)?;
        let started = Instant::now();
        let (ok, failed) = rt.block_on(nets[0].provide(cids))?;
        let took = started.elapsed().as_secs_f64();
        let per_key_rate = (ok + failed) as f64 / took;
        println!();
        println!(
            "{{\"bench\":\"provide_per_key\",\"nodes\":{},\"keys\":{},\"provided\":{ok},\"failed\":{failed},\"seconds\":{took:.2},\"keys_per_s\":{per_key_rate:.1}}}",
            args.nodes,
            ok + failed
        );
        println!(
            "per key: {took:.1} s, {per_key_rate:.0} keys/s; the region sweep was {:.1}x as fast",
            rate / per_key_rate
        );
    }
    for n in &nets {
        rt.block_on(n.shutdown());
    }
    Ok(())
}
