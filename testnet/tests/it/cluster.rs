//! A real IPFS Cluster v1.1.0 peer driving a Cairn node through its RPC API, as Cluster's
//! `ipfshttp` connector drives Kubo: pins added and removed through Cluster land on Cairn and
//! Cluster sees their state, and files added through Cluster (which chunks them itself and
//! sends the blocks with `block/put`) get the same CIDs as `cairn add`.
//!
//! A fleet: three Cairn nodes, each under its own Cluster peer (CRDT consensus, one secret,
//! loopback only), with replication 2: pins land on two nodes, fetched over Bitswap from the
//! one that had the DAG; `add -r` through Cluster gives `cairn add -r`'s root on every
//! allocated node; a lost node's pins move to the third; the disk informer keeps pins off a
//! node at its `StorageMax`; Cluster's IPFS proxy in front of Cairn serves Kubo's RPC client;
//! a sharded add leaves each node exactly its shards, pinned to depth 1.

use std::time::{Duration, Instant};

use cairn_node::add::AddOptions;
use cairn_node::merkle::Cid;
use cairn_testnet::cluster_peer::{ClusterOptions, ClusterPeer};
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

/// Three Cairn nodes connected to each other, each under a Cluster peer of one fleet.
struct Fleet {
    nodes: Vec<Option<Wire>>,
    peers: Vec<ClusterPeer>,
}

/// The fleet's peers tell they are alive this often; a lost one is noticed within seconds.
const PING: Duration = Duration::from_secs(1);

impl Fleet {
    /// Starts the fleet; `edit` sets each node's config (by index) before it starts.
    fn start(edit: impl Fn(usize, &mut cairn_node::Config)) -> Fleet {
        let nodes: Vec<Wire> =
            (0..3).map(|i| Wire::configured(cairn_node::net::dht::DhtMode::Off, |c| edit(i, c))).collect();
        for (i, a) in nodes.iter().enumerate() {
            for b in &nodes[i + 1..] {
                a.rt.block_on(a.net.connect(b.tcp_addr().parse().unwrap())).unwrap();
            }
        }
        let apis: Vec<String> = nodes.iter().map(serve_api).collect();
        let opts = ClusterOptions {
            replication: Some((2, 2)),
            ping_interval: Some(PING),
            repinning: true,
            ..Default::default()
        };
        let peers = cairn_testnet::cluster_peer::start_fleet(&apis, &opts).unwrap();
        Fleet { nodes: nodes.into_iter().map(Some).collect(), peers }
    }

    fn node(&self, i: usize) -> &Wire {
        self.nodes[i].as_ref().expect("a node still running")
    }

    /// What `ipfs-cluster-ctl status CID` says for each peer, by Cluster peer ID, asked of
    /// peer `at`.
    fn status(&self, at: usize, cid: &str) -> std::collections::BTreeMap<String, String> {
        let out = self.peers[at].ctl(&["--enc=json", "status", cid], Duration::from_secs(30)).unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        let map = v["peer_map"].as_object().cloned().unwrap_or_default();
        map.into_iter().map(|(id, info)| (id, info["status"].as_str().unwrap_or("").to_owned())).collect()
    }

    /// The indices of the peers that say `pinned`, once `count` do (as `at` sees it).
    fn wait_pinned(&self, at: usize, cid: &str, count: usize) -> Vec<usize> {
        let started = Instant::now();
        loop {
            let status = self.status(at, cid);
            let pinned: Vec<usize> =
                (0..3).filter(|&i| status.get(self.peers[i].id()).is_some_and(|s| s == "pinned")).collect();
            if pinned.len() == count {
                return pinned;
            }
            if started.elapsed() > Duration::from_secs(90) {
                let logs: Vec<String> =
                    self.peers.iter().map(|p| format!("--- peer {}:\n{}", p.id(), p.log_tail(30))).collect();
                panic!("{cid} not pinned on {count} nodes: {status:?}\n{}", logs.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// Polls `done` every quarter second until it holds, at most `limit`.
fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Whether `w` holds a recursive pin of `cid` and every block under it.
fn holds(w: &Wire, cid: &Cid) -> bool {
    w.node.pin_of(cid).unwrap().is_some() && w.node.dag_cids(cid).is_ok_and(|c| !c.is_empty())
}

/// Replication 2 over three Cairn nodes: a pin lands on exactly two, fetched over Bitswap from
/// the node that had the DAG; `add -r` through Cluster gives `cairn add -r`'s root, readable on
/// every allocated node; a lost node (its Cairn and its Cluster peer gone at once) has its
/// pins moved to the third by Cluster's repinning, and no pin is lost.
#[test]
fn a_fleet_replicates_adds_and_recovers() {
    if !(reference::require(Reference::Cluster)
        && netns::enter_private_netns("cluster::a_fleet_replicates_adds_and_recovers"))
    {
        return;
    }
    let mut fleet = Fleet::start(|_, _| {});
    let opts = AddOptions { recursive: true, ..AddOptions::default() };

    // A DAG only node 0 holds (unpinned): Cluster pins it on two nodes.
    let origin = fleet.node(0);
    let names = origin.content(&[("replicated", 4 << 20)], 4100);
    let cid = origin.node.add(&origin.src.join(names[0]), &opts, false, &mut |_| {}).unwrap().cid;
    let original = std::fs::read(origin.src.join(names[0])).unwrap();
    let text = cid.to_string();
    fleet.peers[0].ctl(&["pin", "add", "--replication", "2", &text], Duration::from_secs(60)).unwrap();
    let pinned = fleet.wait_pinned(0, &text, 2);
    for i in 0..3 {
        let node = fleet.node(i);
        assert_eq!(
            pinned.contains(&i),
            node.node.pin_of(&cid).unwrap().is_some(),
            "node {i}: Cluster and Cairn disagree"
        );
    }
    for &i in pinned.iter().filter(|&&i| i != 0) {
        let got = fleet.node(i).rt.block_on(fleet.node(i).net.stats()).unwrap();
        assert!(got.bytes_received >= 4 << 20, "node {i} pinned without fetching over Bitswap: {got:?}");
        assert!(holds(fleet.node(i), &cid));
    }

    // A tree added through Cluster (which chunks it and puts the blocks): the root is the one
    // `cairn add -r` makes, and each allocated node reads every file.
    let tree = origin.src.join(names[1]);
    let expected = fleet.node(1).node.add(&tree, &opts, false, &mut |_| {}).unwrap().cid;
    let added =
        fleet.peers[1].ctl(&["add", "-r", "--quieter", &tree.to_string_lossy()], Duration::from_secs(120)).unwrap();
    assert_eq!(added.trim(), expected.to_string(), "Cluster's add -r and Cairn's differ");
    let tree_pinned = fleet.wait_pinned(1, &expected.to_string(), 2);
    for &i in &tree_pinned {
        let node = fleet.node(i);
        let out = node.out.join(format!("tree-{i}"));
        node.node.get(&expected.to_string().parse().unwrap(), &out, &mut |_| {}).unwrap();
        crate::wire::assert_same_tree(&tree, &out);
    }

    // One of the nodes holding the first pin is lost, Cairn and Cluster peer at once: its
    // pin moves to the node that had none, which fetches it from the survivor.
    let lost = pinned[0];
    let third = (0..3).find(|i| !pinned.contains(i)).unwrap();
    let survivor = pinned[1];
    fleet.peers[lost].kill();
    fleet.nodes[lost] = None;
    wait_until("the lost node's pin is on the third node", Duration::from_secs(120), || {
        fleet.status(survivor, &text).get(fleet.peers[third].id()).is_some_and(|s| s == "pinned")
    });
    assert!(holds(fleet.node(third), &cid), "Cluster says PINNED, node {third} holds no pin");
    assert!(holds(fleet.node(survivor), &cid), "the survivor lost its pin");
    let out = fleet.node(third).out.join("replicated");
    fleet.node(third).node.get(&text.parse().unwrap(), &out, &mut |_| {}).unwrap();
    assert!(std::fs::read(&out).unwrap() == original, "node {third} reads another file");
    // `recover` on the survivors leaves every pin where it is.
    let recovered = fleet.peers[survivor].ctl(&["recover", &text], Duration::from_secs(60)).unwrap();
    assert!(!recovered.contains("ERROR"), "{recovered}");
}

/// Cluster's disk informer reads each node's free space through `repo/stat` (`StorageMax`
/// less what the repo holds): a node at its `StorageMax` gets no new allocations while
/// others have room. And Cluster's IPFS proxy in front of Cairn serves Kubo's JavaScript
/// client: a file added through it gets `cairn add`'s CID, is pinned by the Cluster on two
/// nodes, and reads back through the proxy.
#[test]
fn a_fleet_keeps_pins_off_a_full_node_and_proxies_kubo_clients() {
    if !(reference::require(Reference::Cluster)
        && reference::require(Reference::Js)
        && netns::enter_private_netns("cluster::a_fleet_keeps_pins_off_a_full_node_and_proxies_kubo_clients"))
    {
        return;
    }
    // Node 2 is filled to within a few KB of its StorageMax (which Cairn enforces: it
    // refuses blocks past it).
    let full = 2;
    let fleet = Fleet::start(|i, c| {
        if i == full {
            c.datastore.storage_max = "1MB".into();
        }
    });
    let opts = AddOptions { recursive: true, ..AddOptions::default() };
    let filler = fleet.node(full).content(&[("filler", 990_000)], 4300);
    fleet.node(full).node.add(&fleet.node(full).src.join(filler[0]), &opts, false, &mut |_| {}).unwrap();

    // The informer's view: no room to speak of on the full node, gigabytes on the others.
    let full_id = fleet.peers[full].id().to_owned();
    wait_until("the disk informer sees the full node", Duration::from_secs(30), || {
        let out = fleet.peers[0].ctl(&["--enc=json", "health", "metrics", "freespace"], Duration::from_secs(20));
        let metrics: Vec<serde_json::Value> = serde_json::from_str(&out.unwrap_or_default()).unwrap_or_default();
        let free = |id: &str| {
            metrics
                .iter()
                .find(|m| m["peer"].as_str() == Some(id))
                .and_then(|m| m["value"].as_str()?.parse::<u64>().ok())
        };
        free(&full_id).is_some_and(|f| f < 20_000)
            && (0..2).all(|i| free(fleet.peers[i].id()).is_some_and(|f| f > 1 << 30))
    });

    // Pins keep off it.
    let source = fleet.node(0);
    let names = source.content(&[("a", 300_000), ("b", 400_000), ("c", 500_000)], 4400);
    for name in &names[..3] {
        let cid = source.node.add(&source.src.join(name), &opts, false, &mut |_| {}).unwrap().cid.to_string();
        fleet.peers[1].ctl(&["pin", "add", &cid], Duration::from_secs(60)).unwrap();
        let pinned = fleet.wait_pinned(1, &cid, 2);
        assert!(!pinned.contains(&full), "{cid} was allocated to the node at its StorageMax");
    }

    // Kubo's JavaScript client through Cluster's IPFS proxy in front of node 1.
    let file = source.src.join(names[1]);
    let expected = fleet.node(1).node.add(&file, &opts, false, &mut |_| {}).unwrap().cid.to_string();
    let out = std::process::Command::new("node")
        .arg(reference::js_dir().join("cluster_proxy.mjs"))
        .arg(fleet.peers[1].proxy_url())
        .arg(&file)
        .output()
        .expect("node runs");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{report}{}", String::from_utf8_lossy(&out.stderr));
    let answer: serde_json::Value = serde_json::from_str(report.trim()).unwrap();
    assert_eq!(answer["cid"].as_str(), Some(expected.as_str()), "the proxy's add and Cairn's differ");
    assert_eq!(answer["same"], true, "cat through the proxy gave other bytes");
    let pinned = fleet.wait_pinned(1, &expected, 2);
    assert!(!pinned.contains(&full));
}

/// POSTs `file` to a Cluster peer's REST API (`/add?QUERY`, multipart), reading the whole answer.
fn rest_add(peer: &ClusterPeer, query: &str, name: &str, file: &[u8]) -> String {
    use std::io::{Read, Write};
    let boundary = "cairn-test-boundary-7f3a";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let mut s = std::net::TcpStream::connect(peer.rest_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let head = format!(
        "POST /add?{query} HTTP/1.1\r\nHost: {}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        peer.rest_addr(),
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&body).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    answer
}

/// Cluster's sharded add (its REST API's `add?shard=true`; `ipfs-cluster-ctl` 1.1 leaves the
/// flag out): Cluster cuts the file's blocks into shards, puts each shard's blocks on the node
/// it allocates with `block/put`, pins each shard there with `max-depth=1` (the shard's node
/// and the file blocks it lists) and the shards' index directly. Each node keeps
/// exactly its shards' blocks: a shard pinned whole would reach through the file's nodes into
/// the other shards and fetch them all.
#[test]
fn a_sharded_add_leaves_each_node_its_own_shards() {
    if !(reference::require(Reference::Cluster)
        && netns::enter_private_netns("cluster::a_sharded_add_leaves_each_node_its_own_shards"))
    {
        return;
    }
    let fleet = Fleet::start(|_, _| {});
    let file = cairn_testnet::data::random_bytes(3 << 20, 77);
    let answer = rest_add(
        &fleet.peers[0],
        "shard=true&shard-size=1048576&replication-min=1&replication-max=1&name=sharded&local=false",
        "big.bin",
        &file,
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Between them the nodes hold every shard, each pinned to depth 1 on one node, and the
    // shards' index pinned directly.
    // The index (a dag-cbor node) links to every shard; Cluster pins them one by one.
    let mut shards = 0;
    wait_until("the shards and the index pinned", Duration::from_secs(60), || {
        let index = (0..3).find_map(|i| {
            let node = &fleet.node(i).node;
            let pin = node.pins().unwrap().into_iter().find(|p| p.mode == cairn_node::store::PinMode::Direct)?;
            let data = node.block_get(&pin.cid).ok()?;
            cairn_node::merkle::links::links(&pin.cid, &data).ok()
        });
        shards = (0..3)
            .map(|i| {
                let pins = fleet.node(i).node.pins().unwrap();
                pins.iter().filter(|p| p.mode == cairn_node::store::PinMode::Depth(1)).count()
            })
            .sum::<usize>();
        index.is_some_and(|shard_roots| shards == shard_roots.len())
    });
    // Each node holds what its shards list, and not the file's other blocks.
    let mut held_somewhere = std::collections::HashSet::new();
    for i in 0..3 {
        let node = &fleet.node(i).node;
        let mut own = std::collections::HashSet::new();
        for pin in node.pins().unwrap().iter().filter(|p| p.mode == cairn_node::store::PinMode::Depth(1)) {
            let data = node.block_get(&pin.cid).unwrap();
            own.insert(pin.cid.hash().to_bytes());
            for l in cairn_node::merkle::links::links(&pin.cid, &data).unwrap() {
                own.insert(l.hash().to_bytes());
            }
        }
        node.gc().unwrap();
        let stored: std::collections::HashSet<Vec<u8>> =
            cairn_node::BlockStore::keys(node.repo().store()).map(|k| k.unwrap()).collect();
        let pinned_direct: Vec<Vec<u8>> = node
            .pins()
            .unwrap()
            .iter()
            .filter(|p| p.mode == cairn_node::store::PinMode::Direct)
            .map(|p| p.cid.hash().to_bytes())
            .collect();
        let extra: Vec<_> = stored.iter().filter(|k| !own.contains(*k) && !pinned_direct.contains(k)).collect();
        assert!(extra.is_empty(), "node {i} holds {} blocks beyond its shards", extra.len());
        assert!(own.iter().all(|k| stored.contains(k)), "node {i} lacks blocks of its shards");
        held_somewhere.extend(own);
    }
    // Between them the nodes hold the whole file, whose root is `cairn add`'s: node 0 reads it
    // back, fetching the other nodes' shards over Bitswap.
    let w = fleet.node(0);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.bin");
    std::fs::write(&path, &file).unwrap();
    let scratch = cairn_node::Node::init(&dir.path().join("repo"), cairn_node::config::Profile::Test).unwrap();
    let opts = AddOptions { recursive: true, ..AddOptions::default() };
    let root = scratch.add(&path, &opts, false, &mut |_| {}).unwrap().cid;
    assert!(answer.contains(&root.to_string()), "Cluster's root is not cairn add's {root}: {answer}");
    let blocks = scratch.dag_cids(&root).unwrap();
    assert!(blocks.iter().all(|c| held_somewhere.contains(&c.hash().to_bytes())), "a block of the file is on no node");
    assert!(shards >= 3, "{shards} shards");
    let out = dir.path().join("read-back");
    w.node.get(&cairn_node::IpfsPath { root, rest: String::new() }, &out, &mut |_| {}).unwrap();
    assert!(std::fs::read(&out).unwrap() == file, "the file read back differs");
}
