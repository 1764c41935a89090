//! `cairn add`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context};
use cairn_node::add::{add, AddOptions, Added};
use cairn_node::merkle::chunker::ChunkerSpec;
use cairn_node::merkle::hash::HashAlg;
use cairn_node::merkle::importer::{self, Discard, ImportOptions, Layout};

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
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    raw_leaves: Option<bool>,
    /// Chunker: size-N, rabin, rabin-MIN-AVG-MAX or buzhash.
    #[arg(short = 's', long, default_value = "size-262144")]
    chunker: String,
    /// Use the trickle layout instead of balanced.
    #[arg(short = 't', long)]
    trickle: bool,
    /// Hash function: sha2-256 or blake3 (blake3 implies CIDv1).
    #[arg(long, value_name = "NAME")]
    hash: Option<String>,
    /// Include files whose names start with a dot.
    #[arg(short = 'H', long)]
    hidden: bool,
    /// Pin what was added (the default when storing).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pin: Option<bool>,
}

impl AddArgs {
    fn import_options(&self) -> anyhow::Result<ImportOptions> {
        let hash = self.hash.as_deref().map(str::parse::<HashAlg>).transpose()?;
        let mut opts = ImportOptions::from_flags(self.cid_version, self.raw_leaves, hash)?;
        opts.chunker = self.chunker.parse::<ChunkerSpec>()?;
        opts.layout = if self.trickle { Layout::Trickle } else { Layout::Balanced };
        Ok(opts)
    }
}

pub fn run(args: AddArgs) -> anyhow::Result<()> {
    let opts = AddOptions { import: args.import_options()?, recursive: args.recursive, hidden: args.hidden };
    if !args.only_hash {
        bail!("storing into a repo is not available in this build yet; use --only-hash to compute CIDs");
    }
    let _ = args.pin;
    let mut sink = Discard;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut print = |a: &Added| {
        let line = if args.quieter {
            return;
        } else if args.quiet {
            format!("{}\n", a.cid)
        } else {
            format!("added {} {}\n", a.cid, a.path)
        };
        // A closed stdout (e.g. `| head`) is not worth an error here; the root still prints.
        let _ = out.write_all(line.as_bytes());
    };
    let mut last = None;
    if args.paths.is_empty() {
        let root =
            importer::import_file(std::io::stdin(), &opts.import, &mut sink).context("reading standard input")?;
        let added = Added { path: root.cid.to_string(), cid: root.cid, size: root.size };
        print(&added);
        last = Some(added);
    }
    for path in &args.paths {
        last = Some(add(path, &opts, &mut sink, &mut print)?);
    }
    if args.quieter {
        if let Some(root) = last {
            writeln!(out, "{}", root.cid)?;
        }
    }
    out.flush()?;
    Ok(())
}
