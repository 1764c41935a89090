//! Bitswap transfer benchmark: a file moved between two nodes on loopback, Cairn to Cairn
//! beside Kubo 0.43.1 to Kubo 0.43.1 (`ipfs daemon`s) in the same run.
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
//!   then the clock runs while it fetches the file over Bitswap (every block hashed and
//!   stored) and writes it out. `--mode` chooses how:
//!   - `get` (the default): what `cairn get` does with a daemon running. The exporter reads
//!     the file through the network in file order, with the reader's read-ahead, and writes
//!     each byte as it comes.
//!   - `dag`: the whole DAG is fetched first (`--window` blocks in flight, as `pin add`
//!     does), then the file is written out from the store. `fetch_seconds` is the first part.
//! - **Kubo**: two `ipfs daemon`s (Kubo 0.43.1, flatfs repos, no routing). The first adds the
//!   file; the second connects, then the clock runs over `ipfs get`, which fetches the DAG over
//!   Bitswap, stores it, and writes the file out.
//!
//! Before each timed transfer, Cairn's and Kubo's alike, the benchmark writes dirty pages
//! out and drops the page cache (`--keep-caches` to skip). On this VM, writing into page-cache
//! memory that the guest has not used lately runs at about 380 MB/s against several GB/s into
//! pages just freed, and which of the two a run gets depends on what ran before it. Dropping
//! the cache gives every run the same start: its output file goes into freed pages, and the
//! serving node reads its blocks from disk.
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
use cairn_node::net::{self, session::Order, NetConfig, SharedStore};
use cairn_node::online::NodeStore;
use cairn_node::Node;
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
    /// Runs of each side; the best is reported.
    #[arg(long, default_value_t = 3)]
    runs: u32,
    /// Blocks in flight in Cairn's fetch.
    #[arg(long, default_value_t = 64)]
    window: usize,
    /// Skip Kubo.
    #[arg(long)]
    no_kubo: bool,
    /// Keep the page cache as it is between runs (by default it is dropped before each timed
    /// transfer: see the module docs).
    #[arg(long)]
    keep_caches: bool,
    /// How Cairn fetches: `get` (read through the network, as `cairn get`) or `dag` (fetch the
    /// DAG, then write the file out).
    #[arg(long, default_value = "get")]
    mode: Mode,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Mode {
    Get,
    Dag,
}

fn mbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e6
}

/// Returns the time to fetch and write the file, the time of the fetch alone (in `dag`
/// mode; in `get` mode the two overlap and the second is the first), and the CPU seconds
/// both nodes used meanwhile.
fn cairn_run(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    file: &Path,
    window: usize,
    mode: Mode,
    drop: bool,
) -> Result<(Duration, Duration, f64)> {
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
    let timeout = Duration::from_secs(60);
    let out = dir.join("out.bin");
    if drop {
        drop_caches()?;
    }
    let (started, cpu) = (Instant::now(), cpu_seconds());
    let fetched = match mode {
        Mode::Get => {
            b.attach_fetcher(Arc::new(cairn_node::online::NetFetcher::new(net_b.clone(), timeout)));
            Duration::ZERO
        }
        Mode::Dag => {
            rt.block_on(net_b.fetch_dag(&store_b, root, Order::File, window, timeout))?;
            started.elapsed()
        }
    };
    let mut w = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&out)?);
    let n = cairn_merkle::exporter::read_range(&b.source(), &root, 0, None, &mut w)?;
    std::io::Write::flush(&mut w)?;
    let took = started.elapsed();
    let cpu = cpu_seconds() - cpu;
    let fetched = if fetched.is_zero() { took } else { fetched };
    ensure!(n == std::fs::metadata(file)?.len(), "Cairn wrote {n} bytes");
    rt.block_on(async {
        net_a.shutdown().await;
        net_b.shutdown().await;
    });
    Ok((took, fetched, cpu))
}

/// CPU seconds this process has used (user and system, every thread), from
/// `/proc/self/stat` (clock ticks of 1/100 s, as on every Linux machine this runs on).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

/// Writes dirty pages out, then drops the page cache (root only).
fn drop_caches() -> Result<()> {
    // The whole system's dirty pages: std has no `sync(2)`, and unsafe code is denied here.
    let status = std::process::Command::new("sync").status().context("running sync")?;
    ensure!(status.success(), "sync failed: {status}");
    std::fs::write("/proc/sys/vm/drop_caches", "3\n").context("dropping the page cache (root needed; or --keep-caches)")
}

fn kubo_run(dir: &Path, file: &Path, drop: bool) -> Result<Duration> {
    let a = KuboDaemon::start(Routing::None)?;
    let b = KuboDaemon::start(Routing::None)?;
    let cid = a.add(file, &[])?;
    let addr = a.tcp_addrs().into_iter().next().context("Kubo has no TCP address")?;
    b.connect(&addr)?;
    let out = dir.join("kubo-out.bin");
    if drop {
        drop_caches()?;
    }
    let started = Instant::now();
    b.get(&cid, &out, Duration::from_secs(1800))?;
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
        let (t, fetch, cpu) = cairn_run(&rt, dir.path(), &file, args.window, args.mode, !args.keep_caches)?;
        println!(
            "{{\"impl\": \"cairn\", \"run\": {run}, \"bytes\": {bytes}, \"seconds\": {:.3}, \"mb_per_s\": {:.1}, \"fetch_seconds\": {:.3}, \"cpu_seconds\": {cpu:.2}}}",
            t.as_secs_f64(),
            mbps(bytes, t),
            fetch.as_secs_f64()
        );
        cairn_best = cairn_best.min(t);
        if !args.no_kubo {
            let dir = tempfile::tempdir_in(work.path())?;
            let t = kubo_run(dir.path(), &file, !args.keep_caches)?;
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
