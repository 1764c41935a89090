//! Bitswap transfer benchmark: a file moved between two nodes on loopback, Cairn to Cairn
//! beside Kubo to Kubo (v0.22, through its library) in the same run.
//!
//! ```text
//! cargo build --release -p cairn-testnet
//! ~/.cache/cairn-target/release/bench_bitswap [--size-mib 1024] [--runs 3] [--window 64] [--no-kubo]
//! ```
//!
//! The benchmark enters a private network namespace that holds only loopback
//! (`unshare -n`, root needed) before it starts any node, so nothing can leave the machine.
//!
//! - **Cairn**: two in-process nodes with fresh RocksDB repos, each with its own swarm on
//!   127.0.0.1 (TCP, Noise, Yamux). The first adds the file (not timed); the second connects,
//!   then the clock runs while it fetches the whole DAG over Bitswap (file order, `--window`
//!   blocks in flight; every block hashed and stored) and writes the file out with the
//!   exporter.
//! - **Kubo**: two `kubo.py serve` peers (flatfs repos). The first adds the file; the second
//!   connects, then the clock runs over `Download`, which fetches the DAG over Bitswap, stores
//!   it, and writes the file out.
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
use cairn_node::net::{self, session::Order, NetConfig, NodeStore, SharedStore};
use cairn_node::Node;
use cairn_testnet::kubo_peer::{KuboOptions, KuboPeer};
use clap::Parser;

#[derive(Debug, Parser)]
struct Args {
    /// Size of the file in MiB.
    #[arg(long, default_value_t = 1024)]
    size_mib: u64,
    /// Runs of each side; the best is reported.
    #[arg(long, default_value_t = 3)]
    runs: u32,
    /// Blocks in flight in Cairn's fetch.
    #[arg(long, default_value_t = 64)]
    window: usize,
    /// Skip Kubo.
    #[arg(long)]
    no_kubo: bool,
}

fn mbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e6
}

/// Returns the time to fetch and write the file, and the time of the fetch alone.
fn cairn_run(rt: &tokio::runtime::Runtime, dir: &Path, file: &Path, window: usize) -> Result<(Duration, Duration)> {
    let a = Arc::new(Node::init(&dir.join("a"), Profile::Test)?);
    let b = Arc::new(Node::init(&dir.join("b"), Profile::Test)?);
    let root = a.add(file, &AddOptions::default(), true, &mut |_| {})?.cid;
    let listen = || NetConfig::new(vec!["/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr")]);
    let store_b: SharedStore = Arc::new(NodeStore(b.clone()));
    let (net_a, net_b) = rt.block_on(async {
        let (na, _) = net::spawn(a.repo().keypair().clone(), Arc::new(NodeStore(a.clone())), listen()).await?;
        let (nb, _) = net::spawn(b.repo().keypair().clone(), store_b.clone(), listen()).await?;
        anyhow::Ok((na, nb))
    })?;
    rt.block_on(net_b.connect(net_a.listen_addrs()[0].clone()))?;
    let out = dir.join("out.bin");
    let started = Instant::now();
    rt.block_on(net_b.fetch_dag(&store_b, root, Order::File, window, Duration::from_secs(60)))?;
    let fetched = started.elapsed();
    let mut w = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&out)?);
    let n = cairn_merkle::exporter::read_range(&b.source(), &root, 0, None, &mut w)?;
    std::io::Write::flush(&mut w)?;
    let took = started.elapsed();
    ensure!(n == std::fs::metadata(file)?.len(), "Cairn wrote {n} bytes");
    rt.block_on(async {
        net_a.shutdown().await;
        net_b.shutdown().await;
    });
    Ok((took, fetched))
}

fn kubo_run(dir: &Path, file: &Path) -> Result<Duration> {
    let mut a = KuboPeer::start(KuboOptions::default())?;
    let mut b = KuboPeer::start(KuboOptions::default())?;
    let cid = a.add(file)?;
    let addr = a.p2p_addrs().into_iter().find(|x| x.contains("/tcp/")).context("Kubo has no TCP address")?;
    b.connect(&addr, Duration::from_secs(30))?;
    let out = dir.join("kubo-out.bin");
    let started = Instant::now();
    b.download(&cid, &out, Duration::from_secs(1800))?;
    let took = started.elapsed();
    ensure!(std::fs::metadata(&out)?.len() == std::fs::metadata(file)?.len(), "Kubo wrote a short file");
    Ok(took)
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(status) = cairn_testnet::netns::rerun_in_private_netns() {
        ensure!(status.success(), "the benchmark failed in its namespace: {status}");
        return Ok(());
    }
    let work = tempfile::tempdir()?;
    let file = work.path().join("bench.bin");
    let bytes = args.size_mib << 20;
    cairn_testnet::data::write_random(&file, bytes, 1)?;
    let rt = tokio::runtime::Runtime::new()?;
    let (mut cairn_best, mut kubo_best) = (Duration::MAX, Duration::MAX);
    for run in 0..args.runs {
        let dir = tempfile::tempdir_in(work.path())?;
        let (t, fetch) = cairn_run(&rt, dir.path(), &file, args.window)?;
        println!(
            "{{\"impl\": \"cairn\", \"run\": {run}, \"bytes\": {bytes}, \"seconds\": {:.3}, \"mb_per_s\": {:.1}, \"fetch_seconds\": {:.3}}}",
            t.as_secs_f64(),
            mbps(bytes, t),
            fetch.as_secs_f64()
        );
        cairn_best = cairn_best.min(t);
        if !args.no_kubo {
            let dir = tempfile::tempdir_in(work.path())?;
            let t = kubo_run(dir.path(), &file)?;
            println!(
                "{{\"impl\": \"kubo\", \"run\": {run}, \"bytes\": {bytes}, \"seconds\": {:.3}, \"mb_per_s\": {:.1}}}",
                t.as_secs_f64(),
                mbps(bytes, t)
            );
            kubo_best = kubo_best.min(t);
        }
    }
    println!("\n| transfer of {} MiB over loopback | MB/s | × Kubo |\n|---|---:|---:|", args.size_mib);
    let ratio = if args.no_kubo {
        "-".to_owned()
    } else {
        format!("{:.2}", kubo_best.as_secs_f64() / cairn_best.as_secs_f64())
    };
    println!("| Cairn → Cairn (best of {}) | {:.1} | {ratio} |", args.runs, mbps(bytes, cairn_best));
    if !args.no_kubo {
        println!("| Kubo → Kubo (best of {}) | {:.1} | 1.00 |", args.runs, mbps(bytes, kubo_best));
    }
    Ok(())
}
