//! A real IPFS Cluster v1.1.0 peer driving a Cairn node through its RPC API, as Cluster's
//! `ipfshttp` connector drives Kubo: pins added and removed through Cluster land on Cairn and
//! Cluster sees their state, and files added through Cluster (which chunks them itself and
//! sends the blocks with `block/put`) get the same CIDs as `cairn add`.
//!
//! The fleet tests of issue 31 (three peers, replication, recovery) build on this.

use std::time::{Duration, Instant};

use cairn_node::add::AddOptions;
use cairn_testnet::cluster_peer::ClusterPeer;
use cairn_testnet::netns;
use cairn_testnet::reference::{self, Reference};

use crate::wire::Wire;

/// Serves `w`'s RPC API on a loopback port; its URL.
fn serve_api(w: &Wire) -> String {
    // `api/v0/shutdown` would ask through this; the test never reads it, and keeps it open.
    let (stop_tx, stop_rx) = tokio::sync::mpsc::channel(1);
    std::mem::forget(stop_rx);
    let api = cairn_gateway::api::Api::new(w.node.clone(), Some(w.net.clone()), stop_tx);
    let listener = w.rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    w.rt.spawn(cairn_gateway::serve_api(listener, api, std::future::pending::<()>()));
    url
}

/// Waits until `ipfs-cluster-ctl status CID` says `state` for the one peer.
fn wait_status(peer: &ClusterPeer, cid: &str, state: &str) {
    let started = Instant::now();
    loop {
        let status = peer.ctl(&["status", cid], Duration::from_secs(30)).unwrap_or_default();
        if status.contains(&format!(": {state} ")) {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{cid} never became {state}: {status}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn a_cluster_peer_pins_and_adds_through_cairn() {
    if !(reference::require(Reference::Cluster)
        && netns::enter_private_netns("cluster::a_cluster_peer_pins_and_adds_through_cairn"))
    {
        return;
    }
    let w = Wire::new();
    let api = serve_api(&w);
    let peer = ClusterPeer::start(&api).unwrap();
    let id = peer.ctl(&["id"], Duration::from_secs(30)).unwrap();
    assert!(id.contains(&w.net.peer_id().to_string()), "Cluster does not see Cairn's ID: {id}");

    // A DAG Cairn holds but does not pin: Cluster pins it, and says so.
    let names = w.content(&[("pinned", 1 << 20)], 3100);
    let opts = AddOptions { recursive: true, ..AddOptions::default() };
    let cid = w.node.add(&w.src.join(names[0]), &opts, false, &mut |_| {}).unwrap().cid;
    assert!(w.node.pin_of(&cid).unwrap().is_none());
    let text = cid.to_string();
    peer.ctl(&["pin", "add", &text], Duration::from_secs(60)).unwrap();
    wait_status(&peer, &text, "PINNED");
    assert!(w.node.pin_of(&cid).unwrap().is_some(), "Cluster says PINNED, Cairn holds no pin");

    // Removed through Cluster: gone from Cairn, and Cluster sees that.
    peer.ctl(&["pin", "rm", &text], Duration::from_secs(60)).unwrap();
    wait_status(&peer, &text, "UNPINNED");
    assert!(w.node.pin_of(&cid).unwrap().is_none());

    // Added through Cluster: Cluster chunks the file and puts the blocks on Cairn; the root
    // is the one `cairn add` makes, pinned, and readable.
    let names = w.content(&[("through_cluster", 700_000)], 3200);
    let path = w.src.join(names[0]);
    let expected = w.node.add(&path, &opts, false, &mut |_| {}).unwrap().cid.to_string();
    let added = peer.ctl(&["add", "--quieter", &path.to_string_lossy()], Duration::from_secs(60)).unwrap();
    assert_eq!(added.trim(), expected, "Cluster's add and Cairn's differ");
    wait_status(&peer, &expected, "PINNED");
    let out = w.out.join("through_cluster");
    w.node.get(&expected.parse().unwrap(), &out, &mut |_| {}).unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&path).unwrap());
}
