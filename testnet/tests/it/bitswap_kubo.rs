//! Bitswap, the DHT and gossipsub with a real Kubo (v0.22).
//!
//! Each test runs in its own loopback-only network namespace (`cairn_testnet::netns`), with
//! Kubo (`kubo.py serve`) as a child process and the Cairn node in-process.
//! - Kubo downloads files at the edges of the DAG shapes and a directory tree that Cairn added:
//!   a 1-byte file, a 1 KiB file (small enough that Kubo's want-have gets the block itself),
//!   one chunk plus one byte, 3 MiB, and a tree with nested directories and an empty file.
//! - Cairn reads a 3 MiB file that Kubo added, through `Node::source()` with the network
//!   fetcher attached, as `cat` and the gateway do under the daemon.
//! - Kubo finds a Cairn provider on the LAN DHT through another Cairn node and downloads
//!   from it.
//! - Kubo keeps the provider records a Cairn reprovide sweep sends it (ADD_PROVIDER messages
//!   written back to back on one stream), and hands them to another Cairn node.
//! - A gossipsub message crosses each way.

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cairn_node::add::AddOptions;
use cairn_node::config::Profile;
use cairn_node::net::dht::DhtMode;
use cairn_node::net::{self, NetConfig, Network};
use cairn_node::services::reprovide::Reprovider;
use cairn_node::store::BlockStore;
use cairn_node::Node;
use cairn_testnet::data::write_random;
use cairn_testnet::kubo_peer::{KuboOptions, KuboPeer};
use cairn_testnet::netns;
use cairn_testnet::reference::{self, Reference};

use crate::wire::assert_same_tree;

const KUBO_CALL: Duration = Duration::from_secs(60);

/// A Cairn node with its swarm on 127.0.0.1.
fn cairn(dir: &Path, rt: &tokio::runtime::Runtime) -> (Arc<Node>, Network) {
    cairn_named(dir, "cairn", DhtMode::Auto, rt)
}

/// [`cairn`], with its repo at `dir/name` and its DHTs in `dht` mode.
fn cairn_named(dir: &Path, name: &str, dht: DhtMode, rt: &tokio::runtime::Runtime) -> (Arc<Node>, Network) {
    cairn_configured(dir, name, dht, |_| {}, rt)
}

/// [`cairn_named`], with `edit` applied to the repo's config first.
fn cairn_configured(
    dir: &Path,
    name: &str,
    dht: DhtMode,
    edit: impl FnOnce(&mut cairn_node::Config),
    rt: &tokio::runtime::Runtime,
) -> (Arc<Node>, Network) {
    let mut node = Node::init(&dir.join(name), Profile::Test).unwrap();
    let mut cfg = node.repo().config().clone();
    edit(&mut cfg);
    node.repo_mut().set_config(cfg).unwrap();
    let node = Arc::new(node);
    let cfg = NetConfig { dht, ..NetConfig::new(vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()]) };
    let (network, _task) = rt.block_on(cairn_node::online::start_reading(&node, cfg, Duration::from_secs(30))).unwrap();
    (node, network)
}

/// Whether this process should run the body (inside the namespace, with Kubo installed).
fn enter(name: &str) -> bool {
    reference::require(Reference::Kubo) && netns::enter_private_netns(name)
}

#[test]
fn kubo_downloads_what_cairn_added() {
    if !enter("bitswap_kubo::kubo_downloads_what_cairn_added") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (node, network) = cairn(dir.path(), &rt);

    let src = dir.path().join("src");
    fs::create_dir_all(src.join("tree/nested/deeper")).unwrap();
    let files = [("one_byte", 1u64), ("one_kib", 1024), ("chunk_plus_1", 262_145), ("three_mib", 3 << 20)];
    for (i, (name, len)) in files.iter().enumerate() {
        write_random(&src.join(name), *len, 500 + i as u64).unwrap();
    }
    write_random(&src.join("tree/a.bin"), 300_000, 600).unwrap();
    write_random(&src.join("tree/nested/b.txt"), 10, 601).unwrap();
    write_random(&src.join("tree/nested/deeper/c.bin"), 70_000, 602).unwrap();
    write_random(&src.join("tree/nested/empty"), 0, 603).unwrap();

    let mut kubo = KuboPeer::start(KuboOptions::default()).unwrap();
    let addr = network.listen_addrs()[0].to_string();
    kubo.connect(&addr, KUBO_CALL).unwrap();

    let out = dir.path().join("out");
    fs::create_dir_all(&out).unwrap();
    for name in files.iter().map(|(n, _)| *n).chain(["tree"]) {
        let opts = AddOptions { recursive: true, ..AddOptions::default() };
        let added = node.add(&src.join(name), &opts, true, &mut |_| {}).unwrap();
        kubo.download(&added.cid.to_string(), &out.join(name), KUBO_CALL)
            .unwrap_or_else(|e| panic!("Kubo could not download {name} ({}): {e:#}", added.cid));
        assert_same_tree(&src.join(name), &out.join(name));
    }
    let stats = rt.block_on(network.stats()).unwrap();
    assert!(stats.blocks_sent >= 20, "{stats:?}");
}

#[test]
fn cairn_fetches_what_kubo_added() {
    if !enter("bitswap_kubo::cairn_fetches_what_kubo_added") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (node, network) = cairn(dir.path(), &rt);

    let file = dir.path().join("kubo_file");
    write_random(&file, 3 << 20, 700).unwrap();
    let mut kubo = KuboPeer::start(KuboOptions::default()).unwrap();
    let cid: cairn_merkle::Cid = kubo.add(&file).unwrap().parse().unwrap();
    let kubo_addr = kubo.p2p_addrs().into_iter().find(|a| a.contains("/tcp/")).expect("a TCP address");
    rt.block_on(network.connect(kubo_addr.parse().unwrap())).unwrap();

    let mut got = Vec::new();
    let n = cairn_merkle::exporter::read_range(&node.source(), &cid, 0, None, &mut got).unwrap();
    assert_eq!(n, 3 << 20);
    assert!(got == fs::read(&file).unwrap(), "bytes from Kubo differ");
    assert!(node.repo().store().has(&cid).unwrap(), "fetched blocks are stored");
}

/// DHT-only discovery: Cairn A announces a file to Cairn B (a LAN DHT server); Kubo, whose
/// only peer is B, downloads the file from A without being told A's address. A is a DHT
/// client, so it is in no routing table and only its provider record on B leads to it. B's
/// table holds a third node, C, so that B answers Kubo's check of it (a lookup of B's own ID)
/// with a peer and Kubo keeps B in its table.
#[test]
fn kubo_finds_a_cairn_provider_through_the_dht() {
    if !enter("bitswap_kubo::kubo_finds_a_cairn_provider_through_the_dht") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (a, net_a) = cairn_named(dir.path(), "a", DhtMode::Client, &rt);
    let (b, net_b) = cairn_named(dir.path(), "b", DhtMode::Auto, &rt);
    let (_c, net_c) = cairn_named(dir.path(), "c", DhtMode::Auto, &rt);
    let file = dir.path().join("provided");
    write_random(&file, 1 << 20, 800).unwrap();
    let root = a.add_reader(&fs::read(&file).unwrap()[..], &AddOptions::default(), true).unwrap().cid;
    rt.block_on(async {
        net_a.connect(net_b.listen_addrs()[0].clone()).await.unwrap();
        net_c.connect(net_b.listen_addrs()[0].clone()).await.unwrap();
        for _ in 0..100 {
            if net_a.dht_stats().await.unwrap().lan_peers > 0 && net_b.dht_stats().await.unwrap().lan_peers > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(net_b.dht_stats().await.unwrap().lan_peers, 1, "B's table holds C, not the client A");
        assert_eq!(net_a.provide(vec![root]).await.unwrap(), (1, 0), "the record reached B");
    });

    let mut kubo = KuboPeer::start(KuboOptions::default()).unwrap();
    kubo.connect(&net_b.listen_addrs()[0].to_string(), KUBO_CALL).unwrap();
    let a_id = net_a.peer_id().to_string();
    assert!(!kubo.peers().unwrap().iter().any(|p| p.contains(&a_id)), "Kubo must not know A yet");
    let dest = dir.path().join("from_kubo");
    kubo.download(&root.to_string(), &dest, Duration::from_secs(90)).unwrap();
    assert!(fs::read(&dest).unwrap() == fs::read(&file).unwrap(), "Kubo's copy differs");
    assert!(kubo.peers().unwrap().iter().any(|p| p.contains(&a_id)), "Kubo got it without dialing A?");
    assert!(!b.repo().store().has(&root).unwrap(), "B only routed");
}

/// A reprovide sweep on Cairn A, whose only DHT peer is Kubo: one region lookup finds Kubo,
/// and every block's ADD_PROVIDER goes to it over one stream. A then leaves; Cairn C, whose
/// only peer is Kubo, finds A as the provider of a leaf, so Kubo took and kept each record
/// (it stores a record only when the message names the sender with an address).
#[test]
fn kubo_keeps_the_records_of_a_cairn_reprovide_sweep() {
    if !enter("bitswap_kubo::kubo_keeps_the_records_of_a_cairn_reprovide_sweep") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let strategy_all = |cfg: &mut cairn_node::Config| cfg.reprovider.strategy = "all".into();
    let (a, net_a) = cairn_configured(dir.path(), "a", DhtMode::Client, strategy_all, &rt);
    // 1 MiB in 256 KiB chunks: four leaves and a root.
    let data = cairn_testnet::data::random_bytes(1 << 20, 810);
    let root = a.add_reader(&data[..], &AddOptions::default(), true).unwrap().cid;
    let leaves = a.dag_cids(&root).unwrap();
    assert_eq!(leaves.len(), 5);

    let kubo = KuboPeer::start(KuboOptions::default()).unwrap();
    let kubo_addr: net::Multiaddr =
        kubo.p2p_addrs().into_iter().find(|a| a.contains("/tcp/")).expect("a TCP address").parse().unwrap();
    let sweep = rt.block_on(async {
        net_a.connect(kubo_addr.clone()).await.unwrap();
        wait_lan_peers(&net_a, 1).await;
        Reprovider::from_repo(a.clone(), net_a.clone()).unwrap().sweep().await.unwrap()
    });
    assert_eq!((sweep.provided, sweep.failed), (5, 0), "{sweep:?}");
    assert_eq!((sweep.lookups, sweep.streams, sweep.failed_streams), (1, 1, 0), "{sweep:?}");
    // ADD_PROVIDER has no reply: give the stream a moment to be read before A leaves.
    std::thread::sleep(Duration::from_millis(500));
    rt.block_on(net_a.shutdown());

    let (_c, net_c) = cairn_named(dir.path(), "c", DhtMode::Client, &rt);
    let found = rt.block_on(async {
        net_c.connect(kubo_addr).await.unwrap();
        wait_lan_peers(&net_c, 1).await;
        net_c.find_providers(leaves[3], 5, Duration::from_secs(20)).await.unwrap()
    });
    assert_eq!(found, vec![net_a.peer_id()], "Kubo did not hand out A's record");
}

/// Waits until `net`'s LAN routing table holds at least `n` peers.
async fn wait_lan_peers(net: &Network, n: usize) {
    for _ in 0..100 {
        if net.dht_stats().await.unwrap().lan_peers >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the LAN table never reached {n} peers: {:?}", net.dht_stats().await.unwrap());
}

/// A gossipsub message goes from Kubo to Cairn and from Cairn to Kubo on one topic.
#[test]
fn pubsub_messages_cross_between_kubo_and_cairn() {
    if !enter("bitswap_kubo::pubsub_messages_cross_between_kubo_and_cairn") {
        return;
    }
    const TOPIC: &str = "cairn-kubo-interop";
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (_node, network) = cairn(dir.path(), &rt);
    let mut kubo = KuboPeer::start(KuboOptions::default()).unwrap();
    let sub = kubo.subscribe(TOPIC).unwrap();
    let mut rx = rt.block_on(network.subscribe(TOPIC)).unwrap();
    kubo.connect(&network.listen_addrs()[0].to_string(), KUBO_CALL).unwrap();

    // Both sides must know the other is subscribed before a publish can reach it.
    let kubo_id = kubo.peer_id().to_owned();
    let started = std::time::Instant::now();
    loop {
        let kubo_sees = kubo.topic_peers(TOPIC).unwrap().contains(&network.peer_id().to_string());
        let cairn_sees = rt.block_on(network.topic_peers(TOPIC)).unwrap().iter().any(|p| p.to_string() == kubo_id);
        if kubo_sees && cairn_sees {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no mutual subscription: kubo {kubo_sees}, cairn {cairn_sees}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    kubo.publish(TOPIC, b"from kubo").unwrap();
    let m = rt.block_on(async { tokio::time::timeout(Duration::from_secs(20), rx.recv()).await }).unwrap().unwrap();
    assert_eq!(m.data, b"from kubo");
    assert_eq!(m.from.map(|p| p.to_string()).as_deref(), Some(kubo_id.as_str()));

    rt.block_on(network.publish(TOPIC, b"from cairn".to_vec())).unwrap();
    // Kubo's subscription also hears Kubo's own message; skip it.
    let got = loop {
        let m = kubo.next(sub, Duration::from_secs(20)).unwrap().expect("Kubo got nothing from Cairn");
        if m.from != kubo_id {
            break m;
        }
    };
    assert_eq!(got.data, b"from cairn");
    assert_eq!(got.from, network.peer_id().to_string());
}

/// `kubo.py serve --listen ADDR` as the harness starts it; the first line it writes.
fn serve_listen(addr: &str) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(reference::kubo_python())
        .arg(reference::kubo_script())
        .args(["serve", "--listen", addr, "--dir"])
        .arg(dir.path())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let first: serde_json::Value = serde_json::from_str(stdout.lines().next().unwrap_or("")).unwrap();
    if first["ready"] == false {
        assert!(!out.status.success(), "{addr}: {stdout}");
        assert!(!dir.path().join("repo").exists(), "{addr}: a repo was made before the refusal");
    }
    first
}

fn ip(args: &str) {
    let out = std::process::Command::new("ip").args(args.split_whitespace()).output().unwrap();
    assert!(out.status.success(), "ip {args}: {}", String::from_utf8_lossy(&out.stderr));
}

/// `kubo.py serve --listen` (the swarm harness's bridge address) is refused in any namespace
/// but a harness node's: one with nothing but loopback; one whose `eth0` holds another address;
/// one with a default route, IPv4 or IPv6; and for an address off the harness's /16 anywhere.
/// Kubo never starts, and no repo is made.
#[test]
fn kubo_takes_a_bridge_address_only_in_a_harness_namespace() {
    if !enter("bitswap_kubo::kubo_takes_a_bridge_address_only_in_a_harness_namespace") {
        return;
    }
    let refused = |addr: &str, says: &str| {
        let first = serve_listen(addr);
        assert_eq!(first["ready"], false, "{addr}: {first}");
        assert!(first["error"].as_str().unwrap().contains(says), "{addr}: {first}");
    };
    refused("/ip4/10.99.0.5/tcp/4001", "interfaces ['lo'], not just lo and eth0");
    refused("/ip4/192.168.1.5/tcp/4001", "--listen takes /ip4/10.99.X.Y/tcp/PORT");
    refused("/ip4/10.99.0.5/udp/4001/quic-v1", "--listen takes /ip4/10.99.X.Y/tcp/PORT");

    // A harness node's shape: eth0, whose other end lives in a namespace of its own.
    let mut other = std::process::Command::new("unshare").args(["-n", "sleep", "60"]).spawn().unwrap();
    let ns = |pid: &str| fs::read_link(format!("/proc/{pid}/ns/net")).ok();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while ns(&other.id().to_string()) == ns("self") {
        assert!(std::time::Instant::now() < deadline, "unshare -n did not enter a namespace");
        std::thread::sleep(Duration::from_millis(10));
    }
    ip("link add tnx0 type veth peer name eth0");
    ip(&format!("link set tnx0 netns {}", other.id()));
    ip("addr add 10.99.0.5/16 dev eth0");
    ip("link set eth0 up");
    refused("/ip4/10.99.0.6/tcp/4001", "eth0 does not hold that address");
    ip("route add default via 10.99.0.1");
    refused("/ip4/10.99.0.5/tcp/4001", "beyond 10.99.0.0/16");
    ip("route del default");
    ip("-6 route add default dev eth0");
    refused("/ip4/10.99.0.5/tcp/4001", "IPv6 default route");
    ip("-6 route del default dev eth0");
    other.kill().unwrap();
    other.wait().unwrap();
}
