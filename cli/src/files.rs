//! `cairn cat`, `cairn get` and `cairn ls`: reading UnixFS files and trees out of the repo.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context as _};
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
        let watch = progress::Online::start(ctx, progress::wanted(false));
        let mut out = watch.bar().wrap_write(std::io::BufWriter::with_capacity(1 << 20, stdout.lock()));
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
    if let Some(client) = crate::api::client(ctx)? {
        eprintln!("Saving file(s) to {}", dest.display());
        return get_online(ctx, &client, &args.path, &dest);
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
    // Each listing as rows of (cid, size, name).
    let mut listings: Vec<Vec<(String, String, String)>> = Vec::new();
    if let Some(client) = crate::api::client(ctx)? {
        let q: Vec<(&str, &str)> = args.paths.iter().map(|p| ("arg", p.as_str())).collect();
        let v = client.json("ls", &crate::api::query(&q))?;
        for object in v.get("Objects").and_then(serde_json::Value::as_array).into_iter().flatten() {
            let links = object.get("Links").and_then(serde_json::Value::as_array).cloned().unwrap_or_default();
            let field = |l: &serde_json::Value, k: &str| l.get(k).cloned().unwrap_or_default();
            listings.push(
                links
                    .iter()
                    .map(|l| {
                        let name = field(l, "Name").as_str().unwrap_or_default().to_owned();
                        let cid = field(l, "Hash").as_str().unwrap_or_default().to_owned();
                        if field(l, "Type").as_u64() == Some(1) {
                            (cid, "-".to_owned(), format!("{name}/"))
                        } else {
                            (cid, field(l, "Size").as_u64().unwrap_or(0).to_string(), name)
                        }
                    })
                    .collect(),
            );
        }
    } else {
        let node = ctx.open()?;
        for path in &paths {
            let entries = node.ls(path)?;
            listings.push(
                entries
                    .into_iter()
                    .map(|(item, stat)| match stat {
                        Some(stat) if stat.kind.is_dir() => {
                            (item.cid.to_string(), "-".to_owned(), format!("{}/", item.name))
                        }
                        Some(stat) => (item.cid.to_string(), stat.size.to_string(), item.name),
                        // Not UnixFS: Kubo shows the link's size.
                        None => (item.cid.to_string(), item.tsize.to_string(), item.name),
                    })
                    .collect(),
            );
        }
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for (i, (arg, rows)) in args.paths.iter().zip(listings).enumerate() {
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

/// `get` through the daemon's API: the tree comes as a tar stream, unpacked into a fresh
/// directory beside the destination (the tar reader refuses entries that would leave it), then
/// moved into place. The bar shows bytes, throughput and the daemon's peer count.
fn get_online(ctx: &Ctx, client: &crate::api::Client, arg: &str, dest: &std::path::Path) -> anyhow::Result<()> {
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let staging = tempfile_dir(&parent)?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(16);
    let watch = progress::Online::start(ctx, progress::wanted(false));
    let unpack_bar = watch.bar().clone();
    let into = staging.clone();
    let unpacker = std::thread::spawn(move || -> anyhow::Result<Option<String>> {
        let reader = unpack_bar.wrap_read(ChannelReader { rx, current: Vec::new(), pos: 0 });
        let mut archive = tar::Archive::new(reader);
        let mut top = None;
        for entry in archive.entries()? {
            let mut entry = entry?;
            let path = entry.path()?.into_owned();
            if top.is_none() {
                top = path.components().next().map(|c| c.as_os_str().to_string_lossy().into_owned());
            }
            if !entry.unpack_in(&into)? {
                bail!("the daemon sent an entry outside the download: {}", path.display());
            }
        }
        Ok(top)
    });
    let sent = client.stream("get", &crate::api::query(&[("arg", arg)]), &mut ChannelWriter(tx));
    let unpacked = unpacker.join().map_err(|_| anyhow::anyhow!("the unpacking thread panicked"))?;
    drop(watch);
    let result = sent.and(unpacked).and_then(|top| {
        let top = top.ok_or_else(|| anyhow::anyhow!("the daemon sent an empty archive"))?;
        std::fs::rename(staging.join(&top), dest).with_context(|| format!("moving the download to {}", dest.display()))
    });
    let _ = std::fs::remove_dir_all(&staging);
    result
}

/// A new, empty directory inside `parent` for a download in progress.
fn tempfile_dir(parent: &std::path::Path) -> anyhow::Result<PathBuf> {
    for i in 0..1000u32 {
        let p = parent.join(format!(".cairn-get-{}-{i}", std::process::id()));
        match std::fs::create_dir(&p) {
            Ok(()) => return Ok(p),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("creating a download directory in {}", parent.display())),
        }
    }
    bail!("no free download directory name in {}", parent.display())
}

/// The bytes of a channel as a `Read`.
struct ChannelReader {
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    current: Vec<u8>,
    pos: usize,
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.current.len() {
            match self.rx.recv() {
                Ok(next) => {
                    self.current = next;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Writes into a channel (towards the unpacking thread); fails once that thread stopped.
struct ChannelWriter(std::sync::mpsc::SyncSender<Vec<u8>>);

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0
            .send(data.to_vec())
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "unpacking stopped"))?;
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
