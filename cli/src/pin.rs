//! `cairn pin add|rm|ls`.

use std::collections::HashMap;
use std::io::Write;

use anyhow::bail;
use cairn_node::store::PinMode;
use clap::ArgAction;

use crate::{ipfs_path, Ctx};

#[derive(Debug, clap::Subcommand)]
pub enum PinCommand {
    /// Pin objects so that `repo gc` keeps them.
    Add {
        /// `/ipfs/<cid>/path`, `<cid>/path` or `<cid>`.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<String>,
        /// Pin the whole DAG (true) or only the root block (false).
        #[arg(short, long, num_args = 0..=1, default_value_t = true, default_missing_value = "true",
              action = ArgAction::Set, value_name = "BOOL")]
        recursive: bool,
        /// A name for the pin, shown by `pin ls --names`.
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
    },
    /// Remove pins; the blocks stay until `repo gc`.
    Rm {
        /// `/ipfs/<cid>/path`, `<cid>/path` or `<cid>`.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<String>,
    },
    /// Check that every pinned DAG is complete and intact: each block re-hashed (fetched from
    /// peers while the daemon runs). Prints the broken pins; fails when there is one.
    Verify {
        /// Print every pin, `<cid> ok` for the good ones.
        #[arg(long)]
        verbose: bool,
    },
    /// List pins: `<cid> <type>` per line.
    Ls {
        /// Only these paths (an error names any that is not pinned).
        #[arg(value_name = "PATH")]
        paths: Vec<String>,
        /// Which pins: direct, indirect, recursive or all.
        #[arg(short = 't', long = "type", default_value = "all", value_name = "TYPE")]
        kind: String,
        /// Print only the CIDs.
        #[arg(short, long)]
        quiet: bool,
        /// Print each pin's name too.
        #[arg(short, long)]
        names: bool,
    },
}

pub fn run(ctx: &Ctx, cmd: PinCommand) -> anyhow::Result<()> {
    match cmd {
        PinCommand::Add { paths, recursive, name } => {
            let parsed = paths.iter().map(|p| ipfs_path(p)).collect::<anyhow::Result<Vec<_>>>()?;
            if let Some(client) = crate::api::client(ctx)? {
                // Through the daemon, which fetches what is missing and announces the roots.
                let r = recursive.to_string();
                let mut q: Vec<(&str, &str)> = paths.iter().map(|p| ("arg", p.as_str())).collect();
                q.push(("recursive", &r));
                if let Some(n) = &name {
                    q.push(("name", n));
                }
                let v = client.json("pin/add", &crate::api::query(&q))?;
                for cid in v.get("Pins").and_then(serde_json::Value::as_array).into_iter().flatten() {
                    let how = if recursive { "recursively" } else { "directly" };
                    println!("pinned {} {how}", cid.as_str().unwrap_or_default());
                }
                return Ok(());
            }
            let paths = parsed;
            let node = ctx.open()?;
            for path in &paths {
                let cid = node.pin_add(path, recursive, name.clone())?;
                println!("pinned {cid} {}", if recursive { "recursively" } else { "directly" });
            }
            Ok(())
        }
        PinCommand::Rm { paths } => {
            let parsed = paths.iter().map(|p| ipfs_path(p)).collect::<anyhow::Result<Vec<_>>>()?;
            if let Some(client) = crate::api::client(ctx)? {
                let q: Vec<(&str, &str)> = paths.iter().map(|p| ("arg", p.as_str())).collect();
                let v = client.json("pin/rm", &crate::api::query(&q))?;
                for cid in v.get("Pins").and_then(serde_json::Value::as_array).into_iter().flatten() {
                    println!("unpinned {}", cid.as_str().unwrap_or_default());
                }
                return Ok(());
            }
            let paths = parsed;
            let node = ctx.open()?;
            for path in &paths {
                let cid = node.pin_rm(path)?;
                println!("unpinned {cid}");
            }
            Ok(())
        }
        PinCommand::Ls { paths, kind, quiet, names } => ls(ctx, &paths, &kind, quiet, names),
        PinCommand::Verify { verbose } => verify(ctx, verbose),
    }
}

/// `pin verify`: a line per pin shown, and for a broken one a line per bad block.
fn verify(ctx: &Ctx, verbose: bool) -> anyhow::Result<()> {
    // (pin, [(bad block, why)])
    let mut results: Vec<(String, Vec<(String, String)>)> = Vec::new();
    if let Some(client) = crate::api::client(ctx)? {
        let q = crate::api::query(&[("verbose", if verbose { "true" } else { "false" })]);
        client.lines("pin/verify", &q, None, &mut |v| {
            use crate::api::text;
            let bad = v
                .get("BadNodes")
                .and_then(serde_json::Value::as_array)
                .into_iter()
                .flatten()
                .map(|b| (text(b, "Cid"), text(b, "Err")))
                .collect();
            results.push((text(&v, "Cid"), bad));
            Ok(())
        })?;
    } else {
        let node = ctx.open()?;
        for (pin, check) in node.pin_verify()? {
            let bad: Vec<(String, String)> = check
                .corrupt
                .iter()
                .map(|c| (c.to_string(), "corrupt: the bytes do not hash to the CID".to_owned()))
                .chain(check.missing.iter().map(|c| (c.to_string(), "missing".to_owned())))
                .collect();
            if verbose || !bad.is_empty() {
                results.push((pin.cid.to_string(), bad));
            }
        }
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut broken = 0;
    for (pin, bad) in &results {
        if bad.is_empty() {
            writeln!(out, "{pin} ok")?;
            continue;
        }
        broken += 1;
        writeln!(out, "{pin} broken")?;
        for (cid, why) in bad {
            writeln!(out, "  {cid}: {why}")?;
        }
    }
    out.flush()?;
    if broken > 0 {
        bail!("{broken} pin{} broken", if broken == 1 { " is" } else { "s are" });
    }
    Ok(())
}

fn ls(ctx: &Ctx, paths: &[String], kind: &str, quiet: bool, names: bool) -> anyhow::Result<()> {
    let (recursive, direct, indirect) = match kind {
        "all" => (true, true, true),
        "recursive" => (true, false, false),
        "direct" => (false, true, false),
        "indirect" => (false, false, true),
        other => bail!("invalid pin type {other:?} (use direct, indirect, recursive or all)"),
    };
    let wanted = paths.iter().map(|p| ipfs_path(p)).collect::<anyhow::Result<Vec<_>>>()?;
    if let Some(client) = crate::api::client(ctx)? {
        let mut q: Vec<(&str, &str)> = paths.iter().map(|p| ("arg", p.as_str())).collect();
        q.push(("type", kind));
        let v = client.json("pin/ls", &crate::api::query(&q))?;
        let rank = |t: &str| ["recursive", "direct", "indirect"].iter().position(|k| *k == t).unwrap_or(3);
        let mut rows: Vec<(String, String, Option<String>)> = v
            .get("Keys")
            .and_then(serde_json::Value::as_object)
            .into_iter()
            .flatten()
            .map(|(cid, info)| {
                let ty = crate::api::text(info, "Type");
                let name = info.get("Name").and_then(serde_json::Value::as_str).filter(|n| !n.is_empty());
                (cid.clone(), ty, name.map(str::to_owned))
            })
            .collect();
        rows.sort_by_key(|r| rank(&r.1));
        return print_pins(rows.iter().map(|(c, t, n)| (c.as_str(), t.as_str(), n.clone())), quiet, names);
    }
    let node = ctx.open()?;
    // (cid, type, name) in Kubo's order: recursive, then direct, then indirect.
    let mut rows: Vec<(String, &str, Option<String>)> = Vec::new();
    let pins = node.pins()?;
    // A depth-limited pin (IPFS Cluster's `max-depth`) is listed among the recursive ones.
    for (is_direct, shown) in [(false, recursive), (true, direct)] {
        if shown {
            rows.extend(
                pins.iter()
                    .filter(|p| (p.mode == PinMode::Direct) == is_direct)
                    .map(|p| (p.cid.to_string(), p.mode.as_str(), p.name.clone())),
            );
        }
    }
    if indirect {
        rows.extend(node.indirect_pins()?.into_iter().map(|c| (c.to_string(), "indirect", None)));
    }
    // A CID several owners pin (the operator, a Pinning Service account, a followed
    // publisher) is listed once, under its strongest pin.
    let mut seen = std::collections::HashSet::new();
    rows.retain(|r| seen.insert(r.0.clone()));
    if !wanted.is_empty() {
        let by_cid: HashMap<&str, usize> = rows.iter().enumerate().rev().map(|(i, r)| (r.0.as_str(), i)).collect();
        let mut picked = Vec::new();
        for (arg, path) in paths.iter().zip(&wanted) {
            let cid = node.resolve(path)?.to_string();
            match by_cid.get(cid.as_str()) {
                Some(&i) => picked.push(rows[i].clone()),
                None => bail!("path '{arg}' is not pinned"),
            }
        }
        rows = picked;
    }
    print_pins(rows.iter().map(|(c, t, n)| (c.as_str(), *t, n.clone())), quiet, names)
}

/// `pin ls` lines: `<cid> <type> [<name>]`, or only the CIDs.
fn print_pins<'a>(
    rows: impl Iterator<Item = (&'a str, &'a str, Option<String>)>,
    quiet: bool,
    names: bool,
) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for (cid, ty, name) in rows {
        match (quiet, names.then_some(name).flatten()) {
            (true, _) => writeln!(out, "{cid}")?,
            (false, Some(name)) => writeln!(out, "{cid} {ty} {name}")?,
            (false, None) => writeln!(out, "{cid} {ty}")?,
        }
    }
    out.flush()?;
    Ok(())
}
