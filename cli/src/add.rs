//! `cairn add`.
//!
//! Without `-n` the blocks go into the repo and each argument's root is pinned recursively
//! (unless `--pin=false`). With `-n` nothing is stored and no repo is needed. Output is
//! Kubo's: `added <cid> <path>` per file, then per directory, each root last.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use cairn_node::add::{add, AddOptions, Added, Symlinks};
use cairn_node::merkle::chunker::ChunkerSpec;
use cairn_node::merkle::hash::HashAlg;
use cairn_node::merkle::importer::{self, AddFlags, Discard, ImportOptions, Profile};
use cairn_node::{Node, Repo};
use indicatif::ProgressBar;

use crate::{progress, Ctx};

#[derive(Debug, clap::Args)]
pub struct AddArgs {
    /// Files or directories to add; standard input when none is given.
    paths: Vec<PathBuf>,
    /// Add directories recursively.
    #[arg(short, long)]
    recursive: bool,
    /// Print only the final root CID.
    #[arg(short = 'Q', long)]
    quieter: bool,
    /// Print only CIDs, one per line.
    #[arg(short, long)]
    quiet: bool,
    /// Only chunk and hash; store nothing. Needs no repo.
    #[arg(short = 'n', long)]
    only_hash: bool,
    /// CID version: 0 (Kubo's default) or 1 (also turns on raw leaves).
    #[arg(long, value_name = "0|1")]
    cid_version: Option<u8>,
    /// Store leaves as raw blocks instead of UnixFS file nodes.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    raw_leaves: Option<bool>,
    /// Chunker: size-N, rabin, rabin-MIN-AVG-MAX or buzhash (default: the profile's, else
    /// size-262144).
    #[arg(short = 's', long, value_name = "SPEC")]
    chunker: Option<String>,
    /// Import profile (IPIP-499): unixfs-v1-2025 (CIDv1, raw leaves, 1 MiB chunks, 1024 links,
    /// HAMT by block size) or unixfs-v0-2015 (alias legacy-cid-v0; Kubo's defaults). The
    /// flags here override what the profile sets; the repo's `Import.*` config is not used.
    #[arg(long, value_name = "NAME")]
    profile: Option<String>,
    /// Most links in one file node (default: the profile's, else 174).
    #[arg(long, value_name = "N")]
    max_file_links: Option<usize>,
    /// Most links in one plain directory; more make it a HAMT (0: no limit, the default).
    #[arg(long, value_name = "N")]
    max_directory_links: Option<usize>,
    /// Fanout of HAMT directories: a power of 2 from 8 to 1024 (default 256).
    #[arg(long, value_name = "N")]
    max_hamt_fanout: Option<u64>,
    /// Use the trickle layout instead of balanced (`--trickle=false`: balanced, whatever
    /// `Import.UnixFSDAGLayout` says).
    #[arg(short = 't', long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    trickle: Option<bool>,
    /// Hash function: sha2-256, sha2-512 or blake3 (the last two imply CIDv1).
    #[arg(long, value_name = "NAME")]
    hash: Option<String>,
    /// Include files whose names start with a dot.
    #[arg(short = 'H', long)]
    hidden: bool,
    /// Add what every symlink points to, arguments and inside directories, instead of the
    /// link (a dangling link or a cycle stops the add).
    #[arg(long)]
    dereference_symlinks: bool,
    /// Deprecated: dereference only arguments that are symlinks (use --dereference-symlinks).
    #[arg(long)]
    dereference_args: bool,
    /// Include empty directories below the top one (the default; `--empty-dirs=false` leaves
    /// them out).
    #[arg(short = 'E', long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    empty_dirs: Option<bool>,
    /// Pin what was added (the default when storing).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pin: Option<bool>,
    /// Sign a manifest for the root with the node's key, store and pin it, and print
    /// `signed <manifest-cid> <root-cid>`.
    #[arg(long)]
    sign: bool,
    #[command(flatten)]
    meta: crate::manifest::MetaArgs,
}

impl AddArgs {
    /// The import settings, as Kubo resolves them: each flag given, then the repo's `Import.*`
    /// config (`config`), then Kubo's defaults; with `--profile`, the flags over the profile.
    fn import_options(&self, config: &AddFlags) -> anyhow::Result<ImportOptions> {
        let profile = self.profile.as_deref().map(str::parse::<Profile>).transpose()?;
        let flags = AddFlags {
            cid_version: self.cid_version,
            raw_leaves: self.raw_leaves,
            hash: self.hash.as_deref().map(str::parse::<HashAlg>).transpose()?,
            chunker: self.chunker.as_deref().map(str::parse::<ChunkerSpec>).transpose()?,
            trickle: self.trickle,
            max_file_links: self.max_file_links,
            max_directory_links: self.max_directory_links,
            max_hamt_fanout: self.max_hamt_fanout,
            ..AddFlags::default()
        };
        Ok(match profile {
            Some(profile) => ImportOptions::resolve(Some(profile.options()), &flags)?,
            None => ImportOptions::resolve(None, &flags.or(config))?,
        })
    }
}

/// Writes `added` lines to stdout, above the progress bar when one is drawn.
struct Printer<'a> {
    out: std::io::BufWriter<std::io::StdoutLock<'a>>,
    bar: ProgressBar,
    quiet: bool,
    quieter: bool,
}

impl Printer<'_> {
    fn line(&mut self, a: &Added) {
        if self.quieter {
            return;
        }
        let line = if self.quiet { format!("{}\n", a.cid) } else { format!("added {} {}\n", a.cid, a.path) };
        // A closed stdout (e.g. `| head`) is not worth an error here; the root still prints.
        if self.bar.is_hidden() {
            let _ = self.out.write_all(line.as_bytes());
        } else {
            let out = &mut self.out;
            self.bar.suspend(|| {
                let _ = out.write_all(line.as_bytes());
                let _ = out.flush();
            });
        }
    }
}

/// Where blocks go: nowhere (`-n`) or into the repo.
enum Target {
    HashOnly,
    Repo { node: Box<Node>, pin: bool },
}

pub fn run(ctx: &Ctx, args: AddArgs) -> anyhow::Result<()> {
    if args.sign && (args.only_hash || args.pin == Some(false)) {
        anyhow::bail!("--sign stores and pins a manifest: it cannot be used with --only-hash or --pin=false");
    }
    let root = add_and_print(ctx, &args)?;
    if let (true, Some((root, name))) = (args.sign, root) {
        // The manifest is named after what was added, unless told otherwise.
        let mut meta = args.meta.clone();
        meta.manifest_name = meta.manifest_name.or(Some(name));
        let (manifest, root) = crate::manifest::sign(ctx, &root, &meta)?;
        println!("signed {manifest} {root}");
    }
    Ok(())
}

/// Adds and prints as `ipfs add` does; returns the last root's CID and name.
fn add_and_print(ctx: &Ctx, args: &AddArgs) -> anyhow::Result<Option<(String, String)>> {
    // Resolved here even when the daemon adds (over the same config), so that a bad flag is
    // refused before anything is uploaded.
    let config = Repo::import_flags(&ctx.repo)?;
    let opts = AddOptions {
        import: args.import_options(&config)?,
        recursive: args.recursive,
        hidden: args.hidden,
        empty_dirs: args.empty_dirs.unwrap_or(true),
        symlinks: match (args.dereference_symlinks, args.dereference_args) {
            (true, _) => Symlinks::Dereference,
            (false, true) => Symlinks::DereferenceArgs,
            (false, false) => Symlinks::Keep,
        },
    };
    if !args.only_hash {
        if let Some(client) = crate::api::client(ctx)? {
            return add_online(&client, args, opts.symlinks);
        }
    }
    let target = if args.only_hash {
        Target::HashOnly
    } else {
        Target::Repo { node: Box::new(ctx.open()?), pin: args.pin.unwrap_or(true) }
    };
    let show = progress::wanted(args.quiet || args.quieter);
    // File sizes known up front, by the path `add` reports them under, so the bar has a total.
    let mut sizes = HashMap::new();
    let bar = if args.paths.is_empty() {
        progress::spinner(show)
    } else if show {
        let total = args.paths.iter().map(|p| tally(p, &root_name(p), &opts, &mut sizes)).sum();
        progress::bytes(total, true)
    } else {
        ProgressBar::hidden()
    };
    let stdout = std::io::stdout();
    let mut printer =
        Printer { out: std::io::BufWriter::new(stdout.lock()), bar, quiet: args.quiet, quieter: args.quieter };
    let result = add_all(&target, &args.paths, &opts, &mut printer, &mut sizes);
    printer.bar.finish_and_clear();
    let last = result?;
    if args.quieter {
        if let Some(root) = &last {
            writeln!(printer.out, "{}", root.cid)?;
        }
    }
    printer.out.flush()?;
    Ok(last.map(|a| (a.cid.to_string(), a.path)))
}

fn add_all(
    target: &Target,
    paths: &[PathBuf],
    opts: &AddOptions,
    printer: &mut Printer<'_>,
    sizes: &mut HashMap<String, u64>,
) -> anyhow::Result<Option<Added>> {
    if paths.is_empty() {
        let input = printer.bar.wrap_read(std::io::stdin());
        let added = match target {
            Target::HashOnly => {
                let root =
                    importer::import_file(input, &opts.import, &mut Discard).context("reading standard input")?;
                Added { path: root.cid.to_string(), cid: root.cid, size: root.size }
            }
            Target::Repo { node, pin } => node.add_reader(input, opts, *pin).context("reading standard input")?,
        };
        printer.line(&added);
        return Ok(Some(added));
    }
    let mut last = None;
    for path in paths {
        let is_file = fs::symlink_metadata(path).is_ok_and(|m| m.is_file());
        let added = if is_file {
            // One regular file: stream it through the bar so a large file shows progress.
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .ok_or_else(|| anyhow!("{}: file name is not valid UTF-8", path.display()))?;
            let file = fs::File::open(path).with_context(|| path.display().to_string())?;
            let input = printer.bar.wrap_read(file);
            let added = match target {
                Target::HashOnly => {
                    let root = importer::import_file(input, &opts.import, &mut Discard)
                        .with_context(|| path.display().to_string())?;
                    Added { path: name.to_owned(), cid: root.cid, size: root.size }
                }
                Target::Repo { node, pin } => node.add_named_reader(input, name, opts, *pin)?,
            };
            printer.line(&added);
            added
        } else {
            let mut on_added = |a: &Added| {
                if let Some(n) = sizes.remove(&a.path) {
                    printer.bar.inc(n);
                }
                printer.line(a);
            };
            match target {
                Target::HashOnly => add(path, opts, &mut Discard, &mut on_added)?,
                Target::Repo { node, pin } => node.add(path, opts, *pin, &mut on_added)?,
            }
        };
        last = Some(added);
    }
    Ok(last)
}

/// `add` through the daemon's API: the files go up as a multipart upload, and the daemon
/// announces the roots it pins.
fn add_online(
    client: &crate::api::Client,
    args: &AddArgs,
    symlinks: Symlinks,
) -> anyhow::Result<Option<(String, String)>> {
    let mut parts = Vec::new();
    for p in &args.paths {
        crate::api::parts(p, args.recursive, args.hidden, symlinks, &mut parts)?;
    }
    if args.paths.is_empty() {
        parts.push(crate::api::Part::Stdin);
    }
    let mut q: Vec<(&str, String)> = vec![("pin", args.pin.unwrap_or(true).to_string())];
    let given = [
        ("chunker", args.chunker.clone()),
        ("profile", args.profile.clone()),
        ("max-file-links", args.max_file_links.map(|n| n.to_string())),
        ("max-directory-links", args.max_directory_links.map(|n| n.to_string())),
        ("max-hamt-fanout", args.max_hamt_fanout.map(|n| n.to_string())),
        ("empty-dirs", args.empty_dirs.map(|b| b.to_string())),
    ];
    q.extend(given.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))));
    if let Some(v) = args.cid_version {
        q.push(("cid-version", v.to_string()));
    }
    if let Some(r) = args.raw_leaves {
        q.push(("raw-leaves", r.to_string()));
    }
    if let Some(h) = &args.hash {
        q.push(("hash", h.clone()));
    }
    if let Some(t) = args.trickle {
        q.push(("trickle", t.to_string()));
    }
    let q: Vec<(&str, &str)> = q.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut last = None;
    client.lines("add", &crate::api::query(&q), Some(crate::api::multipart(parts)), &mut |v| {
        let (hash, name) = (crate::api::text(&v, "Hash"), crate::api::text(&v, "Name"));
        if args.quiet {
            writeln!(out, "{hash}")?;
        } else if !args.quieter {
            writeln!(out, "added {hash} {name}")?;
        }
        last = Some((hash, name));
        Ok(())
    })?;
    if let (true, Some((root, _))) = (args.quieter, &last) {
        writeln!(out, "{root}")?;
    }
    out.flush()?;
    Ok(last)
}

/// The name `add` gives an argument: its last component, or for `.` and `/` the resolved
/// directory's name.
fn root_name(path: &Path) -> String {
    match path.file_name() {
        Some(n) => n.to_string_lossy().into_owned(),
        None => fs::canonicalize(path)
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_default(),
    }
}

/// Sums the sizes of the regular files `add` will read under `path`, recording each under
/// the path `add` reports it as. Unreadable entries count as empty; `add` reports them.
fn tally(path: &Path, shown: &str, opts: &AddOptions, sizes: &mut HashMap<String, u64>) -> u64 {
    let Ok(meta) = fs::symlink_metadata(path) else { return 0 };
    if meta.is_file() {
        sizes.insert(shown.to_owned(), meta.len());
        meta.len()
    } else if meta.is_dir() && opts.recursive {
        let Ok(entries) = fs::read_dir(path) else { return 0 };
        entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                if !opts.hidden && name.starts_with('.') {
                    return None;
                }
                Some(tally(&e.path(), &format!("{shown}/{name}"), opts, sizes))
            })
            .sum()
    } else {
        0
    }
}
