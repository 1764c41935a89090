//! `cairn-testnet`: swarms of `cairn daemon` processes in network namespaces of their own,
//! joined by a bridge with `tc`-shaped links, running the scenarios of a file.
//!
//! ```text
//! cairn-testnet run testnet/scenarios/flash-crowd.toml --out results/flash-crowd
//! ```
//!
//! Writes `results.json` and SVG plots into the `--out` directory (see `docs/testnet.md`).
//! The harness enters a network namespace of its own first (`unshare -n`; `-r` as well when
//! not root), so the nodes can reach each other and nothing else. Ctrl-C stops the run: the
//! nodes die with the harness (they are started with a parent-death signal), their
//! namespaces and links go with them, and the work directory is removed.

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use anyhow::Context;
use cairn_node::net::Multiaddr;
use cairn_testnet::netns;
use cairn_testnet::swarm::{self, hostile, scenario::ScenarioFile, Options};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cairn-testnet", about = "Swarms of Cairn nodes under shaped links: scenarios and measurements")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Runs the scenarios of a file (TOML, or JSON when it ends in .json).
    Run {
        /// The scenario file.
        file: PathBuf,
        /// Where results.json, the plots and the logs of failed nodes go.
        #[arg(long)]
        out: PathBuf,
        /// Only the scenarios with these names (repeatable).
        #[arg(long)]
        only: Vec<String>,
        /// The cairn binary (default: $CAIRN, else `cairn` beside this program).
        #[arg(long)]
        cairn: Option<PathBuf>,
        /// Where the nodes' repos live during a run (default: the system's temporary directory).
        #[arg(long)]
        work: Option<PathBuf>,
        /// Keep every node's log in OUT/logs/SCENARIO, not only those of failed nodes (set
        /// `CAIRN_LOG` for more than warnings, e.g. `CAIRN_LOG=cairn_trace=trace` for every
        /// Bitswap message).
        #[arg(long)]
        keep_logs: bool,
    },
    /// Draws the plots of one or more results.json files (merged, in order) into a directory.
    Plot {
        /// results.json files.
        #[arg(required = true)]
        results: Vec<PathBuf>,
        /// Where the SVGs (and the merged results.json) go.
        #[arg(long)]
        out: PathBuf,
    },
    /// A misbehaving Bitswap peer (started by `run` for hostile scenarios).
    Hostile {
        /// How it misbehaves.
        #[arg(long, value_enum)]
        mode: hostile::HostileMode,
        /// Where it listens.
        #[arg(long)]
        listen: Multiaddr,
        /// Peers to dial (with /p2p/ IDs), repeatable.
        #[arg(long)]
        peer: Vec<Multiaddr>,
        /// Its status file.
        #[arg(long)]
        status: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Hostile { mode, listen, peer, status } => {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
            rt.block_on(hostile::run(mode, listen, peer, &status))
        }
        Cmd::Plot { results, out } => {
            let mut all = Vec::new();
            for f in &results {
                let text = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
                let runs: Vec<serde_json::Value> =
                    serde_json::from_slice(&text).with_context(|| format!("{} is not a results list", f.display()))?;
                all.extend(runs);
            }
            std::fs::create_dir_all(&out)?;
            std::fs::write(out.join("results.json"), serde_json::to_vec_pretty(&all)?)?;
            swarm::report::plot(&out, &serde_json::Value::Array(all))
        }
        Cmd::Run { file, out, only, cairn, work, keep_logs } => {
            // Checked before entering the namespace, so that a typo fails at once.
            let scenarios = ScenarioFile::load(&file)?;
            let cairn = cairn
                .or_else(|| std::env::var_os("CAIRN").map(PathBuf::from))
                .or_else(|| std::env::current_exe().ok().and_then(|e| Some(e.parent()?.join("cairn"))))
                .context("no cairn binary: pass --cairn")?;
            anyhow::ensure!(cairn.exists(), "no cairn binary at {} (build it, or pass --cairn)", cairn.display());
            if !netns::is_inside() {
                let most = scenarios.scenario.iter().map(|s| s.node_count()).max().unwrap_or(0);
                if let Some(warning) = swarm::topology::make_neighbour_room(most) {
                    warn(&warning);
                }
            }
            if let Some(status) = netns::rerun_in_private_netns() {
                std::process::exit(status.code().unwrap_or(1));
            }
            let work_root = tempfile::Builder::new()
                .prefix("cairn-testnet-")
                .tempdir_in(work.unwrap_or_else(std::env::temp_dir))
                .context("making the work directory")?;
            let work_path = work_root.path().to_path_buf();
            let opts = Options {
                cairn: std::fs::canonicalize(&cairn)?,
                harness: std::env::current_exe()?,
                out: std::path::absolute(&out)?,
                work: work_path.clone(),
                keep_logs,
            };
            on_ctrl_c(work_path);
            let results = swarm::run_file(&scenarios, &only, &opts)?;
            anyhow::ensure!(!results.is_empty(), "no scenario matched {only:?}");
            report_done(&opts.out);
            if swarm::INTERRUPTED.load(Ordering::Relaxed) {
                std::process::exit(130);
            }
            Ok(())
        }
    }
}

/// Ctrl-C (or SIGTERM): removes the work directory and exits; the nodes die with this process.
fn on_ctrl_c(work: PathBuf) {
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        rt.block_on(async {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            let term = async {
                match term.as_mut() {
                    Some(t) => t.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term => {}
            }
        });
        swarm::INTERRUPTED.store(true, Ordering::Relaxed);
        let _ = std::fs::remove_dir_all(&work);
        std::process::exit(130);
    });
}

#[allow(clippy::print_stderr)]
fn warn(line: &str) {
    eprintln!("cairn-testnet: warning: {line}");
}

#[allow(clippy::print_stderr)]
fn report_done(out: &std::path::Path) {
    eprintln!("cairn-testnet: results in {}", out.join("results.json").display());
}
