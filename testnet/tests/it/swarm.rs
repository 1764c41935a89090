//! The quick scenarios through the real harness: `cairn daemon` processes in network
//! namespaces of their own, on a bridge, with `tc`-shaped links, read through their gateways.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

/// `cairn`, built beside this package's binaries by `cargo test --workspace`.
fn cairn_bin() -> PathBuf {
    let harness = PathBuf::from(env!("CARGO_BIN_EXE_cairn-testnet"));
    let cairn = harness.with_file_name("cairn");
    assert!(cairn.exists(), "{} is missing: run the workspace's tests (cargo test --workspace)", cairn.display());
    cairn
}

/// Runs the scenario file `testnet/scenarios/NAME` into `out`; returns its results and the
/// harness's log.
fn run_scenarios(name: &str, out: &std::path::Path) -> (Vec<Value>, String) {
    let scenarios = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scenarios").join(name);
    let run = Command::new(env!("CARGO_BIN_EXE_cairn-testnet"))
        .arg("run")
        .arg(scenarios)
        .arg("--out")
        .arg(out)
        .arg("--cairn")
        .arg(cairn_bin())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
    assert!(run.status.success(), "cairn-testnet failed:\n{stderr}");
    let results = serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    (results, stderr)
}

#[test]
fn the_quick_scenarios_run_and_report_every_number() {
    let out = tempfile::tempdir().unwrap();
    let (results, stderr) = run_scenarios("quick.toml", out.path());
    assert_eq!(results.len(), 2, "{stderr}");
    for r in &results {
        for field in [
            "scenario",
            "nodes",
            "file_bytes",
            "offload",
            "origin_bytes",
            "total_bytes",
            "ttfb_p50_s",
            "ttfb_p95_s",
            "complete_p50_s",
            "complete_p95_s",
            "failed_nodes",
            "duplicate_ratio",
        ] {
            assert!(r.get(field).is_some_and(|v| !v.is_null()), "{field} missing in {r}");
        }
        assert_eq!(r["failed_nodes"], 0, "{stderr}");
        assert_eq!(r["file_bytes"], 4 << 20);
        let nodes = r["per_node"].as_array().unwrap();
        for n in nodes.iter().filter(|n| n["role"] == "leecher") {
            assert!(n["complete_s"].as_f64().unwrap() >= n["ttfb_s"].as_f64().unwrap());
            // Every reader's link carried at least the file.
            assert!(n["wire_down_bytes"].as_u64().unwrap() >= 4 << 20, "{n}");
        }
        assert!(nodes.iter().all(|n| n["role"] != "seed" || n["cpu_s"].as_f64().unwrap() > 0.0));
        assert!(out.path().join(format!("{}-completion.svg", r["scenario"].as_str().unwrap())).exists());
    }
    // The baseline: every byte from the origin. With peers: some of it from other readers.
    let (peers, origin_only) = (&results[0], &results[1]);
    assert_eq!(origin_only["offload"].as_f64(), Some(0.0));
    assert_eq!(origin_only["origin_bytes"].as_u64(), Some(4 * (4 << 20)));
    let offload = peers["offload"].as_f64().unwrap();
    assert!(offload > 0.0 && offload < 1.0, "offload {offload}");
    assert!(peers["total_bytes"].as_u64().unwrap() >= 4 * (4 << 20));
    let svg = std::fs::read_to_string(out.path().join("scaling.svg")).unwrap();
    assert!(svg.contains("<svg") && svg.contains("readers (N)"));
}

/// Eight readers behind uplinks as slow as the publisher's: the readers trade the file among
/// themselves, and the publisher sends most blocks only a few times. A regression in how
/// peers choose what to ask for and what to serve first (readers asking for the same blocks
/// at the same moment, a seed sending each block to everyone) shows here as a low offload.
/// The floors leave a wide margin under what debug builds reach on two busy cores.
#[test]
fn a_small_crowd_takes_most_of_the_file_from_itself() {
    let out = tempfile::tempdir().unwrap();
    let (results, stderr) = run_scenarios("quick-crowd.toml", out.path());
    let r = &results[0];
    assert_eq!(r["failed_nodes"], 0, "{stderr}");
    let offload = r["offload"].as_f64().unwrap();
    assert!(offload >= 0.5, "offload {offload}: the publisher and its origin carried half the bytes or more\n{stderr}");
    let nodes = r["per_node"].as_array().unwrap();
    let seed = nodes.iter().find(|n| n["role"] == "seed").unwrap();
    let blocks = (4 << 20) / (256 << 10) + 1;
    let sent = seed["bitswap"]["blocks_sent"].as_f64().unwrap();
    assert!(sent <= 4.0 * blocks as f64, "the publisher sent {sent} blocks: more than four copies of the file");
}

#[test]
fn a_scenario_file_with_mistakes_is_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[[scenario]]\nname = \"x\"\nleechers = 0\nfile_mib = 1\nlink = {}\n").unwrap();
    let typo = dir.path().join("typo.toml");
    std::fs::write(&typo, "[[scenario]]\nname = \"x\"\nleechers = 2\nfile_mb = 1\nlink = {}\n").unwrap();
    for (file, says) in [(&bad, "at least one leecher"), (&typo, "file_mb")] {
        let run = Command::new(env!("CARGO_BIN_EXE_cairn-testnet"))
            .args(["run", file.to_str().unwrap(), "--out"])
            .arg(dir.path().join("out"))
            .arg("--cairn")
            .arg(cairn_bin())
            .output()
            .unwrap();
        assert!(!run.status.success());
        let err = String::from_utf8_lossy(&run.stderr);
        assert!(err.contains(says), "{err}");
    }
    assert!(!dir.path().join("out").exists());
}

/// The reference crowd: every node a Kubo 0.43.1 daemon (`ipfs daemon` in the node's
/// namespace, on the same bridge and links as Cairn's runs). Every reader gets the file, whose
/// bytes the harness checks, and the numbers that compare it with Cairn come from the wire.
#[test]
fn a_kubo_crowd_runs_on_the_same_bridge_and_links() {
    if !cairn_testnet::reference::require(cairn_testnet::reference::Reference::Kubo043) {
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let (results, stderr) = run_scenarios("quick-kubo.toml", out.path());
    let r = &results[0];
    assert_eq!(r["mode"], "kubo", "{r}");
    assert_eq!(r["failed_nodes"], 0, "{stderr}");
    // Kubo's default add: CIDv0.
    assert!(r["cid"].as_str().unwrap().starts_with("Qm"), "{r}");
    // Readers read through Kubo's gateway: a first byte before the last; Bitswap's counters
    // from `bitswap/stat`.
    assert!(r["ttfb_p50_s"].as_f64().unwrap() <= r["complete_p50_s"].as_f64().unwrap(), "{r}");
    assert!((0.0..1.0).contains(&r["duplicate_ratio"].as_f64().unwrap()), "{r}");
    let file = 4u64 << 20;
    let nodes = r["per_node"].as_array().unwrap();
    let readers: Vec<&Value> = nodes.iter().filter(|n| n["role"] == "leecher").collect();
    assert_eq!(readers.len(), 4);
    for n in &readers {
        assert!(n["complete_s"].as_f64().unwrap() > 0.0, "{n}");
        assert!(n["wire_down_bytes"].as_u64().unwrap() >= file, "{n}");
    }
    for n in nodes {
        assert!(n["cpu_s"].as_f64().unwrap() > 0.0 && n["rss_peak_bytes"].as_u64().unwrap() > 0, "{n}");
    }
    let seed = nodes.iter().find(|n| n["role"] == "seed").unwrap();
    let seed_up = seed["wire_up_bytes"].as_u64().unwrap();
    assert!(seed_up >= file, "the publisher sent {seed_up} bytes, less than the file");
    // Kubo's own count of what its Bitswap sent, from `bitswap/stat`.
    assert!(seed["uploaded_bytes"].as_u64().unwrap() >= file, "{seed}");
    let received: u64 = readers.iter().map(|n| n["wire_down_bytes"].as_u64().unwrap()).sum();
    let offload = r["wire_offload"].as_f64().unwrap();
    assert!((offload - (1.0 - seed_up as f64 / received as f64)).abs() < 1e-9, "{r}");
    assert_eq!(r["offload"], r["wire_offload"]);
    assert!(r["wire_overhead"].as_f64().unwrap() >= 1.0, "{r}");
}
