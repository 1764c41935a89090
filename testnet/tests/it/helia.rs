//! Bitswap with a real Helia 7 node (js-libp2p 3: TCP, Noise, yamux), both ways.
//!
//! Each test runs in its own loopback-only network namespace (`cairn_testnet::netns`), with
//! Helia (`testnet/js/helia/helia_peer.mjs`) as a child process and the Cairn node in-process.
//! The 20 MB file is large enough that js-libp2p's yamux, which sends each data frame as large
//! as the window it is given, fills windows Cairn has grown; the tree has nested directories,
//! an empty file and a 1-byte file.

use std::time::Duration;

use cairn_node::add::AddOptions;
use cairn_testnet::helia_peer::HeliaPeer;
use cairn_testnet::netns;
use cairn_testnet::reference::{self, Reference};

use crate::wire::{assert_same_tree, Wire};

const FETCH: Duration = Duration::from_secs(120);

fn enter(name: &str) -> bool {
    reference::require(Reference::Helia) && netns::enter_private_netns(name)
}

#[test]
fn helia_fetches_what_cairn_added() {
    if !enter("helia::helia_fetches_what_cairn_added") {
        return;
    }
    let w = Wire::new();
    let names = w.content(&[("twenty_mb", 20_000_000)], 900);
    let mut helia = HeliaPeer::start().unwrap();
    let addr = w.tcp_addr();
    helia.dial(&addr).unwrap_or_else(|e| panic!("Helia could not dial {addr}: {e:#}"));
    for name in names {
        let opts = AddOptions { recursive: true, ..AddOptions::default() };
        let cid = w.node.add(&w.src.join(name), &opts, true, &mut |_| {}).unwrap().cid.to_string();
        helia
            .get(&cid, &w.out.join(name), FETCH)
            .unwrap_or_else(|e| panic!("Helia could not fetch {name} ({cid}): {e:#}"));
        assert_same_tree(&w.src.join(name), &w.out.join(name));
    }
    helia.shutdown().unwrap();
}

/// Regression: Cairn's connection to Helia died at the first yamux frame over 1 MiB
/// (`FrameTooLarge(2097140)`), and the fetch stalled.
#[test]
fn cairn_fetches_what_helia_added() {
    if !enter("helia::cairn_fetches_what_helia_added") {
        return;
    }
    let w = Wire::new();
    let names = w.content(&[("twenty_mb", 20_000_000)], 900);
    let mut helia = HeliaPeer::start().unwrap();
    w.rt.block_on(w.net.connect(helia.p2p_addrs()[0].parse().unwrap())).unwrap();
    for name in names {
        let cid = helia.add(&w.src.join(name)).unwrap();
        let dest = w.out.join(name);
        w.node
            .get(&cid.parse().unwrap(), &dest, &mut |_| {})
            .unwrap_or_else(|e| panic!("Cairn could not fetch {name} ({cid}): {e}"));
        assert_same_tree(&w.src.join(name), &dest);
    }
    let stats = w.rt.block_on(w.net.stats()).unwrap();
    assert!(stats.blocks_received >= 25, "{stats:?}");
    helia.shutdown().unwrap();
}
