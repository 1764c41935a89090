//! `cairn block get|put|stat|rm`: single blocks, bytes in and out.

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::{bail, Context};
use cairn_node::merkle::hash::{codec_by_name, CidFormat, HashAlg, RAW};
use cairn_node::IpfsPath;
use clap::ArgAction;

use crate::{ipfs_path, Ctx};

/// Kubo's soft limit on a block's size: larger blocks cannot be exchanged over Bitswap.
const SOFT_BLOCK_LIMIT: usize = 1 << 20;

#[derive(Debug, clap::Subcommand)]
pub enum BlockCommand {
    /// Write a block's raw bytes to standard output.
    Get {
        /// The block's CID (or a path that resolves to it).
        #[arg(value_name = "CID")]
        cid: String,
    },
    /// Store bytes as a block (CIDv1) and print its CID.
    Put {
        /// Files holding one block each; standard input when none is given.
        #[arg(value_name = "FILE")]
        files: Vec<PathBuf>,
        /// The codec the CID declares: raw, dag-pb, dag-cbor or dag-json.
        #[arg(long, default_value = "raw", value_name = "CODEC")]
        cid_codec: String,
        /// The hash function: sha2-256 or blake3.
        #[arg(long, default_value = "sha2-256", value_name = "NAME")]
        mhtype: String,
        /// Pin the block (recursively) once stored.
        #[arg(long, num_args = 0..=1, default_value_t = false, default_missing_value = "true",
              action = ArgAction::Set, value_name = "BOOL")]
        pin: bool,
        /// Accept blocks over 1 MiB, which other peers will not exchange.
        #[arg(long)]
        allow_big_block: bool,
    },
    /// Print a block's CID and size.
    Stat {
        /// The block's CID (or a path that resolves to it).
        #[arg(value_name = "CID")]
        cid: String,
    },
    /// Remove blocks that no pin holds.
    Rm {
        /// The blocks' CIDs.
        #[arg(required = true, value_name = "CID")]
        cids: Vec<String>,
        /// Print nothing on success.
        #[arg(short, long)]
        quiet: bool,
    },
}

fn codec(name: &str) -> anyhow::Result<u64> {
    codec_by_name(name)
        .ok_or_else(|| anyhow::anyhow!("unsupported codec {name:?} (use raw, dag-pb, dag-cbor or dag-json)"))
}

/// The bytes of each file, or of standard input when none is given.
fn read_inputs(files: &[PathBuf]) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    if files.is_empty() {
        let mut data = Vec::new();
        std::io::stdin().read_to_end(&mut data).context("reading standard input")?;
        return Ok(vec![("<stdin>".to_owned(), data)]);
    }
    files
        .iter()
        .map(|f| Ok((f.display().to_string(), std::fs::read(f).with_context(|| f.display().to_string())?)))
        .collect()
}

/// The block commands through the daemon, which answers with the same output.
fn online(client: &crate::api::Client, cmd: BlockCommand) -> anyhow::Result<()> {
    use crate::api::{count, query, text};
    match cmd {
        BlockCommand::Get { cid } => {
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            client.stream("block/get", &query(&[("arg", &cid)]), &mut out)?;
            out.flush()?;
        }
        BlockCommand::Stat { cid } => {
            let v = client.json("block/stat", &query(&[("arg", &cid)]))?;
            println!("Key: {}", text(&v, "Key"));
            println!("Size: {}", count(&v, "Size"));
        }
        BlockCommand::Put { files, cid_codec, mhtype, pin, allow_big_block } => {
            codec(&cid_codec)?;
            let parts = read_inputs(&files)?.into_iter().map(|(_, data)| crate::api::Part::Bytes(data)).collect();
            let (pin, big) = (pin.to_string(), allow_big_block.to_string());
            let q = query(&[("cid-codec", &cid_codec), ("mhtype", &mhtype), ("pin", &pin), ("allow-big-block", &big)]);
            client.lines("block/put", &q, Some(crate::api::multipart(parts)), &mut |v| {
                println!("{}", text(&v, "Key"));
                Ok(())
            })?;
        }
        BlockCommand::Rm { cids, quiet } => {
            let q: Vec<(&str, &str)> = cids.iter().map(|c| ("arg", c.as_str())).collect();
            let mut failed = None;
            client.lines("block/rm", &query(&q), None, &mut |v| {
                let cid = text(&v, "Hash");
                match Some(text(&v, "Error")).filter(|e| !e.is_empty()) {
                    Some(e) => failed = failed.take().or(Some(e)),
                    None if !quiet => println!("removed {cid}"),
                    None => {}
                }
                Ok(())
            })?;
            if let Some(e) = failed {
                bail!("{e}");
            }
        }
    }
    Ok(())
}

pub fn run(ctx: &Ctx, cmd: BlockCommand) -> anyhow::Result<()> {
    if let Some(client) = crate::api::client(ctx)? {
        return online(&client, cmd);
    }
    match cmd {
        BlockCommand::Get { cid } => {
            let path = ipfs_path(&cid)?;
            let node = ctx.open()?;
            let data = node.block_get(&node.resolve(&path)?)?;
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            out.write_all(&data)?;
            out.flush()?;
        }
        BlockCommand::Put { files, cid_codec, mhtype, pin, allow_big_block } => {
            let codec = codec(&cid_codec)?;
            let format = CidFormat { version: 1, hash: mhtype.parse::<HashAlg>()? };
            let inputs = read_inputs(&files)?;
            // Check every input before storing any.
            for (name, data) in &inputs {
                if data.len() > SOFT_BLOCK_LIMIT && !allow_big_block {
                    bail!(
                        "{name}: produced block is over 1MiB: big blocks can't be exchanged with other peers. \
                         consider using UnixFS for automatic chunking of bigger files, or pass --allow-big-block \
                         to override"
                    );
                }
                if codec != RAW {
                    let cid = format.cid(codec, data);
                    cairn_node::merkle::links::links(&cid, &data.clone().into())
                        .with_context(|| format!("{name}: not a valid {cid_codec} block"))?;
                }
            }
            let node = ctx.open()?;
            for (_, data) in inputs {
                let cid = node.block_put(data.into(), codec, format)?;
                if pin {
                    node.pin_add(&IpfsPath { root: cid, rest: String::new() }, true, None)?;
                }
                println!("{cid}");
            }
        }
        BlockCommand::Stat { cid } => {
            let path = ipfs_path(&cid)?;
            let node = ctx.open()?;
            let cid = node.resolve(&path)?;
            let data = node.block_get(&cid)?;
            println!("Key: {cid}");
            println!("Size: {}", data.len());
        }
        BlockCommand::Rm { cids, quiet } => {
            let cids = cids.iter().map(|c| ipfs_path(c).map(|p| p.root)).collect::<anyhow::Result<Vec<_>>>()?;
            let node = ctx.open()?;
            // Each block on its own, as through the daemon: the first refusal is the error.
            let mut failed = None;
            for (cid, result) in cids.iter().zip(node.block_rm(&cids)?) {
                match result {
                    Ok(()) if !quiet => println!("removed {cid}"),
                    Ok(()) => {}
                    Err(e) => failed = failed.or(Some(e)),
                }
            }
            if let Some(e) = failed {
                return Err(e.into());
            }
        }
    }
    Ok(())
}
