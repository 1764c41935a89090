//! `cairn repo gc|stat|verify`.

use std::io::Write;
use std::path::Path;

use anyhow::bail;
use cairn_node::config::parse_size;
use cairn_node::repo::REPO_VERSION;

use crate::{progress, Ctx};

#[derive(Debug, clap::Subcommand)]
pub enum RepoCommand {
    /// Delete every block no pin reaches.
    Gc,
    /// Object count, sizes, limits and paths.
    Stat {
        /// Only print RepoSize and StorageMax.
        #[arg(short, long)]
        size_only: bool,
    },
    /// Re-hash every block and report the ones whose bytes no longer match their CID.
    Verify {
        /// No progress bar.
        #[arg(short, long)]
        quiet: bool,
    },
}

pub fn run(ctx: &Ctx, cmd: RepoCommand) -> anyhow::Result<()> {
    if let Some(client) = crate::api::client(ctx)? {
        return online(&client, cmd);
    }
    let node = ctx.open()?;
    match cmd {
        RepoCommand::Gc => {
            let report = node.gc()?;
            println!("removed {} blocks ({} bytes)", report.removed_blocks, report.removed_bytes);
            print_holes(&report.holes.iter().map(ToString::to_string).collect::<Vec<_>>());
        }
        RepoCommand::Stat { size_only } => {
            let stat = node.stat()?;
            let max = node.repo().config().datastore.storage_max.clone();
            let max = parse_size(&max).map_or(max, |n| n.to_string());
            let mut rows: Vec<(&str, String)> = Vec::new();
            if !size_only {
                rows.push(("NumObjects", stat.store.blocks.to_string()));
            }
            rows.push(("RepoSize", dir_size(&stat.path).to_string()));
            rows.push(("StorageMax", max));
            if !size_only {
                rows.push(("RepoPath", stat.path.display().to_string()));
                rows.push(("Version", format!("fs-repo@{REPO_VERSION}")));
                rows.push(("Pins", stat.pins.to_string()));
            }
            print_rows(&rows)?;
        }
        RepoCommand::Verify { quiet } => {
            let total = node.stat()?.store.bytes;
            let bar = progress::bytes(total, progress::wanted(quiet));
            let result = node.verify(&mut |n| bar.inc(n));
            bar.finish_and_clear();
            let bad = result?;
            if !bad.is_empty() {
                let stdout = std::io::stdout();
                let mut out = stdout.lock();
                for c in &bad {
                    writeln!(out, "block {} was corrupt ({})", c.cid, c.reason)?;
                }
                out.flush()?;
                let n = bad.len();
                bail!("verify complete, {n} corrupt block{}", if n == 1 { "" } else { "s" });
            }
            println!("verified repo integrity");
        }
    }
    Ok(())
}

/// `repo stat`'s `Key: value` rows, aligned as Kubo's tabwriter aligns them.
fn print_rows(rows: &[(&str, String)]) -> anyhow::Result<()> {
    let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(0) + 1;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for (k, v) in rows {
        writeln!(out, "{:<width$} {v}", format!("{k}:"))?;
    }
    Ok(())
}

/// The repo commands through the daemon (which holds the repo).
fn online(client: &crate::api::Client, cmd: RepoCommand) -> anyhow::Result<()> {
    use crate::api::{count as num, text};
    match cmd {
        RepoCommand::Gc => {
            client.lines("repo/gc", "summary=true", None, &mut |v| {
                println!("removed {} blocks ({} bytes)", num(&v, "RemovedBlocks"), num(&v, "RemovedBytes"));
                let holes: Vec<String> = v["Holes"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|h| h.as_str().map(str::to_owned)).collect())
                    .unwrap_or_default();
                print_holes(&holes);
                Ok(())
            })?;
        }
        RepoCommand::Stat { size_only } => {
            let v = client.json("repo/stat", &crate::api::query(&[("size-only", &size_only.to_string())]))?;
            let mut rows: Vec<(&str, String)> = Vec::new();
            if !size_only {
                rows.push(("NumObjects", num(&v, "NumObjects").to_string()));
            }
            rows.push(("RepoSize", num(&v, "RepoSize").to_string()));
            rows.push(("StorageMax", num(&v, "StorageMax").to_string()));
            if !size_only {
                rows.push(("RepoPath", text(&v, "RepoPath")));
                rows.push(("Version", text(&v, "Version")));
                rows.push(("Pins", num(&v, "Pins").to_string()));
            }
            print_rows(&rows)?;
        }
        RepoCommand::Verify { quiet: _ } => {
            let mut corrupt = 0;
            let mut summary = String::new();
            client.lines("repo/verify", "", None, &mut |v| {
                let msg = text(&v, "Msg");
                if v.get("Corrupt").is_some() {
                    corrupt = num(&v, "Corrupt");
                    summary = msg;
                } else {
                    println!("{msg}");
                }
                Ok(())
            })?;
            if corrupt > 0 {
                bail!("{summary}");
            }
            println!("{summary}");
        }
    }
    Ok(())
}

/// Bytes of every file under `path` (not following symlinks): the repo's size on disk.
fn dir_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) if m.is_file() => m.len(),
            _ => 0,
        })
        .sum()
}

/// Says why a collection removed nothing: pinned DAGs with blocks missing or unreadable.
#[allow(clippy::print_stderr)]
fn print_holes(holes: &[String]) {
    if holes.is_empty() {
        return;
    }
    eprintln!(
        "nothing was removed: {} block(s) of pinned DAGs are missing or unreadable, so what lies below them \
         cannot be told from garbage. Repair them (the daemon's scrub fetches them from peers) or unpin their DAGs:",
        holes.len()
    );
    for h in holes {
        eprintln!("  {h}");
    }
}
