//! `cairn`: the command-line front end of a Cairn node.
//!
//! Commands follow Kubo's names, flags and output so that scripts written for `ipfs` work
//! with `cairn`. Errors are one line on stderr and a non-zero exit code.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod add;

use std::path::PathBuf;
use std::process::ExitCode;

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
    /// Add files or directories: chunk, hash and build their DAG, printing each CID.
    Add(add::AddArgs),
}

/// Where the repo lives: `--repo`, else `$CAIRN_PATH`, else `~/.cairn`.
#[allow(dead_code)]
fn repo_path(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| std::env::var_os("CAIRN_PATH").map(PathBuf::from))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cairn")))
        .unwrap_or_else(|| PathBuf::from(".cairn"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Add(args) => add::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the error and its causes.
            let msg = e.chain().map(|c| c.to_string()).collect::<Vec<_>>().join(": ");
            eprintln!("Error: {msg}");
            ExitCode::FAILURE
        }
    }
}
