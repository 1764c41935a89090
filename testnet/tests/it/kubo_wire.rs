//! Bitswap with a real Kubo 0.43.1 daemon (`ipfs daemon`), both ways, and a fetch that draws
//! on a Kubo 0.43.1 and a Helia at once.
//!
//! Each test runs in its own loopback-only network namespace (`cairn_testnet::netns`), with
//! the daemon (and Helia) as child processes and the Cairn node in-process. Kubo fetches with
//! `ipfs get`, so its whole read path (Bitswap sessions, want-have, the UnixFS exporter) runs.

use std::fs;
use std::time::Duration;

use cairn_node::add::AddOptions;
use cairn_testnet::data::write_random;
use cairn_testnet::helia_peer::HeliaPeer;
use cairn_testnet::kubo_daemon::{KuboDaemon, Routing};
use cairn_testnet::netns;
use cairn_testnet::reference::{self, Reference};

use crate::wire::{assert_same_tree, Wire};

const FETCH: Duration = Duration::from_secs(120);

fn enter(name: &str) -> bool {
    reference::require(Reference::Kubo043) && netns::enter_private_netns(name)
}

/// Files at the edges of the DAG shapes: one byte, one small enough for Kubo to send in
/// answer to a want-have, one chunk plus one byte, several chunks.
const FILES: &[(&str, u64)] = &[("one_byte", 1), ("one_kib", 1024), ("chunk_plus_1", 262_145), ("five_mib", 5 << 20)];

#[test]
fn kubo_fetches_what_cairn_added() {
    if !enter("kubo_wire::kubo_fetches_what_cairn_added") {
        return;
    }
    let w = Wire::new();
    let names = w.content(FILES, 1000);
    let kubo = KuboDaemon::start(Routing::None).unwrap();
    kubo.connect(&w.tcp_addr()).unwrap();
    for name in names {
        let opts = AddOptions { recursive: true, ..AddOptions::default() };
        let cid = w.node.add(&w.src.join(name), &opts, true, &mut |_| {}).unwrap().cid.to_string();
        kubo.get(&cid, &w.out.join(name), FETCH)
            .unwrap_or_else(|e| panic!("Kubo could not fetch {name} ({cid}): {e:#}"));
        assert_same_tree(&w.src.join(name), &w.out.join(name));
    }
    let stats = w.rt.block_on(w.net.stats()).unwrap();
    assert!(stats.blocks_sent >= 30, "{stats:?}");
}

#[test]
fn cairn_fetches_what_kubo_added() {
    if !enter("kubo_wire::cairn_fetches_what_kubo_added") {
        return;
    }
    let w = Wire::new();
    let names = w.content(FILES, 1000);
    let kubo = KuboDaemon::start(Routing::None).unwrap();
    w.rt.block_on(w.net.connect(kubo.tcp_addrs()[0].parse().unwrap())).unwrap();
    // Kubo's defaults, and its unixfs-v1-2025 shape (CIDv1, raw leaves, 1 MiB chunks).
    for (i, args) in [&[][..], &["--cid-version=1", "--chunker=size-1048576"][..]].into_iter().enumerate() {
        for name in &names {
            let cid = kubo.add(&w.src.join(name), args).unwrap();
            let dest = w.out.join(format!("{name}.{i}"));
            w.node
                .get(&cid.parse().unwrap(), &dest, &mut |_| {})
                .unwrap_or_else(|e| panic!("Cairn could not fetch {name} ({cid}): {e}"));
            assert_same_tree(&w.src.join(name), &dest);
        }
    }
}

/// One fetch, two sources of different makes: Kubo 0.43.1 and Helia hold the same file (the
/// same CID), and Cairn's Bitswap session draws blocks from both.
#[test]
fn a_session_draws_from_kubo_and_helia_at_once() {
    if !(reference::require(Reference::Helia) && enter("kubo_wire::a_session_draws_from_kubo_and_helia_at_once")) {
        return;
    }
    let w = Wire::new();
    let file = w.src.join("shared.bin");
    write_random(&file, 40 << 20, 1200).unwrap();
    let kubo = KuboDaemon::start(Routing::None).unwrap();
    let mut helia = HeliaPeer::start().unwrap();
    // Helia's defaults: CIDv1, raw leaves, 1 MiB chunks, 1024 links; the same for Kubo.
    let cid = helia.add(&file).unwrap();
    let kubo_cid = kubo.add(&file, &["--cid-version=1", "--chunker=size-1048576", "--max-file-links=1024"]).unwrap();
    assert_eq!(kubo_cid, cid, "Kubo and Helia made different DAGs of one file");
    w.rt.block_on(async {
        w.net.connect(kubo.tcp_addrs()[0].parse().unwrap()).await.unwrap();
        w.net.connect(helia.p2p_addrs()[0].parse().unwrap()).await.unwrap();
    });
    let out = w.out.join("shared.bin");
    w.node.get(&cid.parse().unwrap(), &out, &mut |_| {}).unwrap();
    assert!(fs::read(&out).unwrap() == fs::read(&file).unwrap(), "the fetched file differs");
    // What Kubo sent Cairn, by Kubo's own ledger; the rest came from Helia.
    let ledger = kubo.ipfs(&["bitswap", "ledger", "--enc=json", &w.net.peer_id().to_string()], FETCH).unwrap();
    let sent = serde_json::from_str::<serde_json::Value>(&ledger).unwrap()["Sent"].as_u64().unwrap();
    let total = 40u64 << 20;
    assert!(sent > 0 && sent < total * 95 / 100, "Kubo sent {sent} of {total} bytes: the session used one source");
    helia.shutdown().unwrap();
}
