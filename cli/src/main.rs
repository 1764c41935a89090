//! `cairn`: the command-line front end of a Cairn node.
//!
//! Commands follow Kubo's names, flags and output so that scripts written for `ipfs` work
//! with `cairn`. Errors are one line on stderr and a non-zero exit code. Without a daemon,
//! every command opens the repo directly (taking its lock); while `cairn daemon` runs, `add`,
//! `cat`, `get`, `pin add`, `id`, `swarm` and `routing` go through its RPC API, as Kubo's do.

#![allow(clippy::print_stdout, clippy::print_stderr)]

/// The node's allocator: jemalloc, for the Rust side and (unprefixed) for RocksDB's C++ too.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

mod add;
mod api;
mod block;
mod config;
mod daemon;
mod dag;
mod files;
mod follow;
mod manifest;
mod net;
mod pin;
mod progress;
mod repo;

use std::path::PathBuf;
use std::process::ExitCode;

use cairn_node::{IpfsPath, Node, Repo};
use clap::{Parser, Subcommand};

/// A content-addressed storage node that speaks the IPFS protocols.
#[derive(Debug, Parser)]
#[command(name = "cairn", version, about)]
struct Cli {
    /// The repo directory (default: $CAIRN_PATH, else ~/.cairn).
    #[arg(long, global = true, value_name = "DIR")]
    repo: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a repo: config, identity key and an empty block store.
    Init(config::InitArgs),
    /// Get or set a config value by its dotted key (`cairn config show` prints it all).
    Config(config::ConfigArgs),
    /// Add files or directories: chunk, hash and build their DAG, printing each CID.
    Add(add::AddArgs),
    /// Print the bytes of a file.
    Cat(files::CatArgs),
    /// Write a file or directory tree out of the repo.
    Get(files::GetArgs),
    /// List the entries of a directory.
    Ls(files::LsArgs),
    /// Pin, unpin and list pins.
    #[command(subcommand)]
    Pin(pin::PinCommand),
    /// Garbage collection, statistics and integrity checks of the repo.
    #[command(subcommand)]
    Repo(repo::RepoCommand),
    /// Raw blocks.
    #[command(subcommand)]
    Block(block::BlockCommand),
    /// Whole DAGs as CAR files.
    #[command(subcommand)]
    Dag(dag::DagCommand),
    /// Run the node: join the swarm, serve the RPC API and the HTTP gateway until SIGINT or
    /// SIGTERM.
    Daemon(daemon::DaemonArgs),
    /// Print the node's identity (ID, public key, addresses) as JSON.
    Id,
    /// The swarm of the running daemon: peers, connections, addresses.
    #[command(subcommand)]
    Swarm(net::SwarmCommand),
    /// Bitswap through the running daemon.
    #[command(subcommand)]
    Bitswap(net::BitswapCommand),
    /// Content routing on the DHT through the running daemon.
    #[command(subcommand)]
    Routing(net::RoutingCommand),
    /// The peers the daemon dials at start (none by default).
    #[command(subcommand)]
    Bootstrap(net::BootstrapCommand),
    /// Signed manifests: sign a DAG, verify a manifest, trust publishers.
    #[command(subcommand)]
    Manifest(manifest::ManifestCommand),
    /// Follow publishers: mirror every manifest they sign, as they announce them.
    #[command(subcommand)]
    Follow(follow::FollowCommand),
}

/// Everything a command needs from the global flags.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The repo directory.
    pub repo: PathBuf,
}

impl Ctx {
    /// Opens the node over the repo (taking its lock).
    pub fn open(&self) -> anyhow::Result<Node> {
        Ok(Node::open(&self.repo)?)
    }
}

/// Parses a `/ipfs/<cid>/path`, `<cid>/path` or `<cid>` argument.
pub fn ipfs_path(arg: &str) -> anyhow::Result<IpfsPath> {
    Ok(arg.parse::<IpfsPath>()?)
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let ctx = Ctx { repo: Repo::default_path(cli.repo) };
    let done = match cli.command {
        Command::Init(args) => config::init(&ctx, args),
        Command::Config(args) => config::run(&ctx, args),
        Command::Add(args) => add::run(&ctx, args),
        Command::Cat(args) => files::cat(&ctx, args),
        Command::Get(args) => files::get(&ctx, args),
        Command::Ls(args) => files::ls(&ctx, args),
        Command::Pin(cmd) => pin::run(&ctx, cmd),
        Command::Repo(cmd) => repo::run(&ctx, cmd),
        Command::Block(cmd) => block::run(&ctx, cmd),
        Command::Dag(cmd) => dag::run(&ctx, cmd),
        Command::Daemon(args) => daemon::run(&ctx, args),
        Command::Id => net::id(&ctx),
        Command::Swarm(cmd) => net::swarm(&ctx, cmd),
        Command::Routing(cmd) => net::routing(&ctx, cmd),
        Command::Bitswap(cmd) => net::bitswap(&ctx, cmd),
        Command::Bootstrap(cmd) => net::bootstrap(&ctx, cmd),
        Command::Manifest(cmd) => return manifest::run(&ctx, cmd),
        Command::Follow(cmd) => follow::run(&ctx, cmd),
    };
    done.map(|()| ExitCode::SUCCESS)
}

/// The error and its causes on one line, leaving out a cause its parent already quotes.
fn one_line(e: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || msg.contains(&text) {
            continue;
        }
        if !msg.is_empty() {
            msg.push_str(": ");
        }
        msg.push_str(&text);
    }
    msg.replace(['\n', '\r'], " ")
}

/// Whether the error is only a closed stdout (`cairn cat ... | head`).
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe))
}

/// Logs go to stderr, filtered by `CAIRN_LOG` (else `RUST_LOG`) in `tracing`'s directive
/// syntax, e.g. `CAIRN_LOG=cairn_gateway=debug`; warnings and errors only by default.
fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let directives = std::env::var("CAIRN_LOG").or_else(|_| std::env::var("RUST_LOG")).unwrap_or_default();
    let filter = EnvFilter::builder()
        .with_default_directive(tracing_subscriber::filter::LevelFilter::WARN.into())
        .parse_lossy(directives);
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(false).try_init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match run(cli) {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}
