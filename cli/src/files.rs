//! `cairn cat`, `cairn get` and `cairn ls`: reading UnixFS files and trees out of the repo.

use std::io::Write;
use std::path::PathBuf;

use anyhow::bail;
use cairn_node::merkle::exporter::NodeKind;

use crate::{ipfs_path, progress, Ctx};

#[derive(Debug, clap::Args)]
pub struct CatArgs {
    /// `/ipfs/<cid>/path`, `<cid>/path` or `<cid>`; several are concatenated.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<String>,
    /// Byte offset to begin reading from.
    #[arg(short, long, default_value_t = 0)]
    offset: u64,
    /// Maximum number of bytes to read.
    #[arg(short, long)]
    length: Option<u64>,
}

pub fn cat(ctx: &Ctx, args: CatArgs) -> anyhow::Result<()> {
    if let (Some(client), [path]) = (crate::api::client(ctx)?, args.paths.as_slice()) {
        // Through the daemon, which fetches what the repo lacks from the network.
        let offset = args.offset.to_string();
        let length = args.length.map(|l| l.to_string());
        let mut q = vec![("arg", path.as_str()), ("offset", offset.as_str())];
        if let Some(l) = &length {
            q.push(("length", l.as_str()));
        }
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
        client.stream("cat", &crate::api::query(&q), &mut out)?;
        out.flush()?;
        return Ok(());
    }
    let node = ctx.open()?;
    let paths = args.paths.iter().map(|p| ipfs_path(p)).collect::<anyhow::Result<Vec<_>>>()?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
    // As in Kubo, the offset and length apply to the concatenation of all the files.
    let mut skip = args.offset;
    let mut left = args.length;
    for (arg, path) in args.paths.iter().zip(&paths) {
        if left == Some(0) {
            break;
        }
        let stat = node.stat_path(path)?;
        if stat.kind.is_dir() {
            bail!("{arg} is a directory");
        }
        if stat.kind == NodeKind::File && paths.len() > 1 && skip >= stat.size {
            skip -= stat.size;
            continue;
        }
        let n = node.cat(path, skip, left, &mut out)?;
        skip = 0;
        left = left.map(|l| l.saturating_sub(n));
    }
    out.flush()?;
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct GetArgs {
    /// `/ipfs/<cid>/path`, `<cid>/path` or `<cid>`.
    #[arg(value_name = "PATH")]
    path: String,
    /// Where to write it (default: the path's last component, or the CID). Must not exist.
    #[arg(short, long, value_name = "OUT")]
    output: Option<PathBuf>,
}

pub fn get(ctx: &Ctx, args: GetArgs) -> anyhow::Result<()> {
    let path = ipfs_path(&args.path)?;
    let dest = args.output.unwrap_or_else(|| {
        PathBuf::from(
            path.rest.rsplit('/').find(|c| !c.is_empty()).map_or_else(|| path.root.to_string(), str::to_owned),
        )
    });
    if std::fs::symlink_metadata(&dest).is_ok() {
        bail!("{}: already exists", dest.display());
    }
    let node = ctx.open()?;
    let stat = node.stat_path(&path)?;
    eprintln!("Saving file(s) to {}", dest.display());
    let show = progress::wanted(false);
    let bar = if stat.kind == NodeKind::File { progress::bytes(stat.size, show) } else { progress::spinner(show) };
    let result = node.get(&path, &dest, &mut |n| bar.inc(n));
    bar.finish_and_clear();
    Ok(result?)
}

#[derive(Debug, clap::Args)]
pub struct LsArgs {
    /// Directories to list: `/ipfs/<cid>/path`, `<cid>/path` or `<cid>`.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<String>,
}

/// Kubo's listing: `<cid> <size> <name>` in aligned columns; directories show `-` as their
/// size and a `/` after their name.
pub fn ls(ctx: &Ctx, args: LsArgs) -> anyhow::Result<()> {
    let paths = args.paths.iter().map(|p| ipfs_path(p)).collect::<anyhow::Result<Vec<_>>>()?;
    let node = ctx.open()?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for (i, (arg, path)) in args.paths.iter().zip(&paths).enumerate() {
        let entries = node.ls(path)?;
        let rows: Vec<(String, String, String)> = entries
            .into_iter()
            .map(|(item, stat)| match stat {
                Some(stat) if stat.kind.is_dir() => (item.cid.to_string(), "-".to_owned(), format!("{}/", item.name)),
                Some(stat) => (item.cid.to_string(), stat.size.to_string(), item.name),
                // Not UnixFS: Kubo shows the link's size.
                None => (item.cid.to_string(), item.tsize.to_string(), item.name),
            })
            .collect();
        let cid_w = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
        let size_w = rows.iter().map(|r| r.1.len()).max().unwrap_or(0);
        if paths.len() > 1 {
            if i > 0 {
                writeln!(out)?;
            }
            writeln!(out, "{arg}:")?;
        }
        for (cid, size, name) in rows {
            writeln!(out, "{cid:<cid_w$} {size:<size_w$} {name}")?;
        }
    }
    out.flush()?;
    Ok(())
}
