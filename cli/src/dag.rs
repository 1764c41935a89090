//! `cairn dag export|import`: whole DAGs as CARv1 files.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use cairn_node::merkle::Cid;
use cairn_node::Node;
use clap::ArgAction;
use indicatif::ProgressBar;

use crate::{ipfs_path, progress, Ctx};

#[derive(Debug, clap::Subcommand)]
pub enum DagCommand {
    /// Write the DAG under a root to standard output as a CARv1.
    Export {
        /// The root CID (or a path that resolves to it).
        #[arg(value_name = "CID")]
        root: String,
    },
    /// Read CAR files, verifying every block, and pin their roots.
    Import {
        /// CAR files; standard input when none is given (or for `-`).
        #[arg(value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Pin the roots recursively once every block is stored.
        #[arg(long, num_args = 0..=1, default_value_t = true, default_missing_value = "true",
              action = ArgAction::Set, value_name = "BOOL")]
        pin_roots: bool,
        /// Print how many blocks were imported.
        #[arg(long)]
        stats: bool,
        /// No progress bar.
        #[arg(short, long)]
        quiet: bool,
    },
}

pub fn run(ctx: &Ctx, cmd: DagCommand) -> anyhow::Result<()> {
    if let Some(client) = crate::api::client(ctx)? {
        return online(&client, cmd);
    }
    match cmd {
        DagCommand::Export { root } => {
            let path = ipfs_path(&root)?;
            let node = ctx.open()?;
            let cid = node.resolve(&path)?;
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
            node.dag_export(&cid, &mut out)?;
            out.flush()?;
        }
        DagCommand::Import { files, pin_roots, stats, quiet } => {
            let node = ctx.open()?;
            let show = progress::wanted(quiet);
            let stdin = files.is_empty() || files.iter().any(|f| f.as_os_str() == "-");
            let bar = if stdin {
                progress::spinner(show)
            } else {
                let total = files.iter().filter_map(|f| std::fs::metadata(f).ok()).map(|m| m.len()).sum();
                progress::bytes(total, show)
            };
            let sources: Vec<Option<&PathBuf>> = if files.is_empty() {
                vec![None]
            } else {
                files.iter().map(|f| (f.as_os_str() != "-").then_some(f)).collect()
            };
            let result = import_all(&node, &sources, &bar, pin_roots);
            bar.finish_and_clear();
            let (roots, blocks, bytes) = result?;
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            if pin_roots {
                for root in &roots {
                    writeln!(out, "Pinned root {root} success")?;
                }
            }
            if stats {
                writeln!(out, "Imported {blocks} blocks ({bytes} bytes)")?;
            }
        }
    }
    Ok(())
}

/// The DAG commands through the daemon: the CAR streams to and from it.
fn online(client: &crate::api::Client, cmd: DagCommand) -> anyhow::Result<()> {
    use crate::api::{query, Part};
    match cmd {
        DagCommand::Export { root } => {
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
            client.stream("dag/export", &query(&[("arg", &root)]), &mut out)?;
            out.flush()?;
        }
        DagCommand::Import { files, pin_roots, stats, quiet: _ } => {
            for f in files.iter().filter(|f| f.as_os_str() != "-") {
                std::fs::metadata(f).with_context(|| f.display().to_string())?;
            }
            let parts: Vec<Part> = if files.is_empty() {
                vec![Part::Stdin]
            } else {
                files
                    .iter()
                    .map(|f| if f.as_os_str() == "-" { Part::Stdin } else { Part::Unnamed(f.clone()) })
                    .collect()
            };
            let (pin, st) = (pin_roots.to_string(), stats.to_string());
            let q = query(&[("pin-roots", &pin), ("stats", &st)]);
            client.lines("dag/import", &q, Some(crate::api::multipart(parts)), &mut |v| {
                if let Some(root) = v.pointer("/Root/Cid/~1").and_then(serde_json::Value::as_str) {
                    println!("Pinned root {root} success");
                }
                if let Some(s) = v.get("Stats") {
                    let n = |k: &str| crate::api::count(s, k);
                    println!("Imported {} blocks ({} bytes)", n("BlockCount"), n("BlockBytesCount"));
                }
                Ok(())
            })?;
        }
    }
    Ok(())
}

/// Imports each source in turn (`None`: standard input); returns the roots, blocks and bytes.
fn import_all(
    node: &Node,
    sources: &[Option<&PathBuf>],
    bar: &ProgressBar,
    pin_roots: bool,
) -> anyhow::Result<(Vec<Cid>, u64, u64)> {
    let mut roots = Vec::new();
    let (mut blocks, mut bytes) = (0u64, 0u64);
    for &source in sources {
        let name = source.map_or_else(|| "<stdin>".to_owned(), |f| f.display().to_string());
        let mut input: Box<dyn std::io::Read> = match source {
            None => Box::new(bar.wrap_read(std::io::stdin())),
            Some(f) => Box::new(bar.wrap_read(std::fs::File::open(f).with_context(|| name.clone())?)),
        };
        let (r, n) = node.dag_import(&mut input, pin_roots, &mut |b| bytes += b).context(name)?;
        roots.extend(r);
        blocks += n;
    }
    Ok((roots, blocks, bytes))
}
