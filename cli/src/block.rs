//! `cairn block get|put|stat|rm`: single blocks, bytes in and out.

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::{bail, Context};
use cairn_node::block_put::{BlockPut, BlockPutFlags};
use cairn_node::IpfsPath;
use clap::ArgAction;

use crate::{ipfs_path, Ctx};

#[derive(Debug, clap::Subcommand)]
pub enum BlockCommand {
    /// Write a block's raw bytes to standard output.
    Get {
        /// The block's CID (or a path that resolves to it).
        #[arg(value_name = "CID")]
        cid: String,
    },
    /// Store bytes as a block (CIDv1 unless `--format=v0`) and print its CID.
    Put {
        /// Files holding one block each; standard input when none is given.
        #[arg(value_name = "FILE")]
        files: Vec<PathBuf>,
        /// The codec the CID declares: raw, dag-pb, dag-cbor or dag-json.
        #[arg(long, default_value = "raw", value_name = "CODEC")]
        cid_codec: String,
        /// Deprecated, as in Kubo: `v0` (dag-pb under CIDv0), `protobuf`, `cbor` or a codec.
        #[arg(short, long, value_name = "FORMAT")]
        format: Option<String>,
        /// The hash function: sha2-256, sha2-512, blake3 or identity.
        #[arg(long, default_value = "sha2-256", value_name = "NAME")]
        mhtype: String,
        /// The digest's length in bytes: -1 (or the function's own length) only, as Cairn
        /// verifies whole digests.
        #[arg(long, default_value_t = -1, allow_hyphen_values = true, value_name = "N")]
        mhlen: i64,
        /// Pin the block (recursively) once stored.
        #[arg(long, num_args = 0..=1, default_value_t = false, default_missing_value = "true",
              action = ArgAction::Set, value_name = "BOOL")]
        pin: bool,
        /// Accept blocks over 2 MiB (up to 8 MiB), which other peers will not exchange.
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

/// `block put`'s options, checked as the daemon checks them.
fn put_options(cid_codec: &str, format: Option<&str>, mhtype: &str, mhlen: i64, big: bool) -> anyhow::Result<BlockPut> {
    let flags = BlockPutFlags {
        cid_codec: Some(cid_codec),
        format,
        mhtype: Some(mhtype),
        mhlen: Some(mhlen),
        allow_big_block: big,
    };
    Ok(BlockPut::new(&flags)?)
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
        BlockCommand::Put { files, cid_codec, format, mhtype, mhlen, pin, allow_big_block } => {
            put_options(&cid_codec, format.as_deref(), &mhtype, mhlen, allow_big_block)?;
            let parts = read_inputs(&files)?.into_iter().map(|(_, data)| crate::api::Part::Bytes(data)).collect();
            let (pin, big, mhlen) = (pin.to_string(), allow_big_block.to_string(), mhlen.to_string());
            let mut q = vec![("cid-codec", cid_codec.as_str()), ("mhtype", &mhtype), ("mhlen", &mhlen)];
            q.extend(format.as_deref().map(|f| ("format", f)));
            q.extend([("pin", pin.as_str()), ("allow-big-block", &big)]);
            let q = query(&q);
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
        BlockCommand::Put { files, cid_codec, format, mhtype, mhlen, pin, allow_big_block } => {
            let opts = put_options(&cid_codec, format.as_deref(), &mhtype, mhlen, allow_big_block)?;
            // Check every input before storing any.
            let blocks = read_inputs(&files)?
                .into_iter()
                .map(|(name, data)| opts.block(data.into()).map_err(|e| anyhow::anyhow!("{name}: {e}")))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let node = ctx.open()?;
            for block in blocks {
                let cid = node.put_block(block)?;
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
