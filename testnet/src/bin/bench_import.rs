//! Import throughput, hash only: Cairn (sha2-256 and blake3) beside Kubo 0.43.1's `ipfs add --only-hash`
//! on the same file, in the same run.
//!
//! ```text
//! cargo run --release -p cairn-testnet --bin bench_import -- [--size-mib 1024] [--file PATH] [--no-kubo]
//! ```
//!
//! Prints one JSON line per measurement and a Markdown table for `docs/benchmarks.md`.
//! MB is 10^6 bytes. Each figure is the best of `--runs` runs (default 3), after a warm-up
//! read that brings the file into the page cache.

#![allow(clippy::print_stdout)]

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use cairn_merkle::hash::{CidFormat, HashAlg};
use cairn_merkle::importer::{import_file, Discard, ImportOptions};
use clap::Parser;

#[derive(Debug, Parser)]
struct Args {
    /// Size of the generated test file in MiB.
    #[arg(long, default_value_t = 1024)]
    size_mib: u64,
    /// Use this file instead of generating one.
    #[arg(long)]
    file: Option<PathBuf>,
    /// Runs per measurement; the best is reported.
    #[arg(long, default_value_t = 3)]
    runs: u32,
    /// Skip the Kubo measurement.
    #[arg(long)]
    no_kubo: bool,
}

fn generate(path: &PathBuf, bytes: u64) -> anyhow::Result<()> {
    let mut w = BufWriter::with_capacity(1 << 20, File::create(path)?);
    let mut state: u64 = 0x1234_5678_9abc_def1;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        for chunk in buf.chunks_mut(8) {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            chunk.copy_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes()[..chunk.len()]);
        }
        let n = left.min(buf.len() as u64) as usize;
        w.write_all(&buf[..n])?;
        left -= n as u64;
    }
    w.flush()?;
    Ok(())
}

fn warm(path: &PathBuf) -> anyhow::Result<u64> {
    let mut f = File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _tmp;
    let path = match &args.file {
        Some(p) => p.clone(),
        None => {
            _tmp = tempfile::tempdir()?;
            let p = _tmp.path().join("bench.bin");
            generate(&p, args.size_mib << 20)?;
            p
        }
    };
    let bytes = warm(&path)?;
    let mut rows: Vec<(String, f64, String)> = Vec::new();
    for hash in [HashAlg::Sha2_256, HashAlg::Blake3] {
        let opts = ImportOptions {
            format: CidFormat { version: u8::from(hash != HashAlg::Sha2_256), hash },
            ..Default::default()
        };
        let mut best = f64::MAX;
        let mut cid = String::new();
        for _ in 0..args.runs {
            let t = Instant::now();
            let root = import_file(File::open(&path)?, &opts, &mut Discard)?;
            best = best.min(t.elapsed().as_secs_f64());
            cid = root.cid.to_string();
        }
        let mbps = bytes as f64 / best / 1e6;
        println!("{{\"impl\":\"cairn\",\"hash\":\"{hash}\",\"bytes\":{bytes},\"seconds\":{best:.3},\"mb_per_s\":{mbps:.1},\"cid\":\"{cid}\"}}");
        rows.push((format!("Cairn {hash}"), mbps, cid));
    }
    if !args.no_kubo {
        let mut best = f64::MAX;
        let mut kubo_cid = String::new();
        for _ in 0..args.runs {
            let (cid, secs) = cairn_testnet::reference::kubo_bench_add(&path, false).context("running Kubo")?;
            best = best.min(secs);
            kubo_cid = cid;
        }
        let ours = rows.iter().find(|r| r.0 == "Cairn sha2-256").map(|r| r.2.clone());
        anyhow::ensure!(
            ours.as_ref().is_none_or(|c| *c == kubo_cid),
            "Kubo's root {kubo_cid} differs from Cairn's {ours:?}"
        );
        let mbps = bytes as f64 / best / 1e6;
        println!("{{\"impl\":\"kubo\",\"hash\":\"sha2-256\",\"bytes\":{bytes},\"seconds\":{best:.3},\"mb_per_s\":{mbps:.1},\"cid\":\"{kubo_cid}\"}}");
        rows.push((
            format!("Kubo {} `ipfs add --only-hash` sha2-256", cairn_testnet::reference::KUBO_VERSION),
            mbps,
            kubo_cid,
        ));
    }
    let kubo = rows.iter().find(|r| r.0.starts_with("Kubo")).map(|r| r.1);
    println!("\n| implementation | MB/s | × Kubo |\n|---|---:|---:|");
    for (name, mbps, _) in &rows {
        let ratio = kubo.map_or("n/a".to_string(), |k| format!("{:.2}", mbps / k));
        println!("| {name} | {mbps:.0} | {ratio} |");
    }
    Ok(())
}
