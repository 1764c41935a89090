//! A real Kubo 0.43.1 daemon (`ipfs daemon`) and Cairn, both ways: Bitswap fetches of files
//! and trees, a fetch that draws on Kubo and Helia at once, providers found through a loopback
//! DHT of several nodes, and gossipsub messages.
//!
//! Each test runs in its own loopback-only network namespace (`cairn_testnet::netns`), with
//! the daemon (and Helia) as child processes and the Cairn node in-process. Kubo fetches with
//! `ipfs get`, so its whole read path (Bitswap sessions, want-have, the UnixFS exporter) runs.

use std::fs;
use std::time::Duration;

use cairn_node::add::AddOptions;
use cairn_node::net::dht::DhtMode;
use cairn_testnet::data::write_random;
use cairn_testnet::helia_peer::HeliaPeer;
use cairn_testnet::kubo_daemon::{KuboDaemon, Routing};
use cairn_testnet::netns;
use cairn_testnet::reference::{self, Reference};

use crate::wire::{assert_same_tree, wait_lan_peers, Wire};

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

/// Waits up to 30 s for `done`, checking every 100 ms; `what` names it in the panic.
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !done() {
        assert!(started.elapsed() < Duration::from_secs(30), "{what}: not within 30 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Three Cairn nodes on one loopback DHT: A, a DHT client that holds the content; B and C,
/// LAN DHT servers that know each other (so that B answers a lookup of its own ID with a
/// peer, and a Kubo that asks keeps it in its table). A is connected to B.
fn three_cairns() -> (Wire, Wire, Wire) {
    let (a, b, c) = (Wire::with_dht(DhtMode::Client), Wire::with_dht(DhtMode::Auto), Wire::with_dht(DhtMode::Auto));
    let b_addr = b.tcp_addr().parse().unwrap();
    a.rt.block_on(a.net.connect(b.tcp_addr().parse().unwrap())).unwrap();
    c.rt.block_on(c.net.connect(b_addr)).unwrap();
    wait_for("B's LAN table holds C", || b.rt.block_on(b.net.dht_stats()).unwrap().lan_peers > 0);
    (a, b, c)
}

/// Writes a 1 MiB file `name` under `w`'s `src`, adds it and announces it on the DHT (the
/// record must reach a peer); its CID.
fn add_and_provide(w: &Wire, name: &'static str, seed: u64) -> cairn_merkle::Cid {
    let names = w.content(&[(name, 1 << 20)], seed);
    let opts = AddOptions { recursive: true, ..AddOptions::default() };
    let root = w.node.add(&w.src.join(names[0]), &opts, true, &mut |_| {}).unwrap().cid;
    let (reached, _) = w.rt.block_on(w.net.provide(vec![root])).unwrap();
    assert!(reached > 0, "the record of {name} reached no DHT peer");
    root
}

/// Cairn A announces a file to B; Kubo, whose only peer is B, finds A as its provider and
/// fetches the file from it.
#[test]
fn kubo_finds_a_cairn_provider_through_the_dht() {
    if !enter("kubo_wire::kubo_finds_a_cairn_provider_through_the_dht") {
        return;
    }
    let (a, b, _c) = three_cairns();
    let root = add_and_provide(&a, "provided", 1300);
    let kubo = KuboDaemon::start(Routing::Dht).unwrap();
    kubo.connect(&b.tcp_addr()).unwrap();
    let a_id = a.net.peer_id().to_string();
    let mut found = Vec::new();
    wait_for("Kubo finds A as a provider", || {
        found = kubo.find_providers(&root.to_string(), Duration::from_secs(5)).unwrap();
        found.contains(&a_id)
    });
    kubo.get(&root.to_string(), &a.out.join("provided"), FETCH).unwrap();
    assert_same_tree(&a.src.join("provided"), &a.out.join("provided"));
}

/// Kubo's only router is Cairn B's delegated routing API (`Routing.Type = delegated`, no DHT):
/// it learns through B that A provides a file (B knows from its DHT, A's addresses from
/// identify), fetches the file from A, and finds A's addresses with `routing findpeer`.
#[test]
fn kubo_routes_through_cairns_delegated_routing_api() {
    if !enter("kubo_wire::kubo_routes_through_cairns_delegated_routing_api") {
        return;
    }
    let (a, b, _c) = three_cairns();
    let root = add_and_provide(&a, "routed", 1500);
    let routers = format!("[\"{}\"]", b.serve_gateway());
    let kubo = KuboDaemon::start_with(
        Routing::None,
        &[("Routing.Type", "\"delegated\""), ("Routing.DelegatedRouters", &routers), ("Provide.Enabled", "false")],
    )
    .unwrap();
    let a_id = a.net.peer_id().to_string();
    let found = kubo.find_providers(&root.to_string(), Duration::from_secs(20)).unwrap();
    assert!(found.contains(&a_id), "Kubo found {found:?} through B, not A ({a_id})");
    kubo.get(&root.to_string(), &a.out.join("routed"), FETCH).unwrap();
    assert_same_tree(&a.src.join("routed"), &a.out.join("routed"));
    let addrs = kubo.ipfs(&["--timeout=20s", "routing", "findpeer", &a_id], Duration::from_secs(40)).unwrap();
    let a_port = a.tcp_addr().split('/').nth(4).unwrap().to_owned();
    assert!(addrs.lines().any(|l| l == format!("/ip4/127.0.0.1/tcp/{a_port}")), "findpeer said {addrs:?}");
}

/// A Cairn node that announces its trustless gateway, on a loopback port, as its only address
/// (`/ip4/127.0.0.1/tcp/P/http`), with the routing API on; the gateway's URL.
fn http_only_cairn() -> (Wire, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let http: libp2p::Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}/http").parse().unwrap();
    let a = Wire::announcing(DhtMode::Off, vec![http]);
    let gateway = a.serve_gateway_on(format!("127.0.0.1:{port}").parse().unwrap());
    (a, gateway)
}

/// Cairn announces its trustless gateway as its only address (`/ip4/127.0.0.1/tcp/P/http`)
/// and is Kubo's only router: Kubo, which cannot reach Cairn over libp2p, finds Cairn as an
/// HTTP provider through `/routing/v1` and fetches the file from its gateway over HTTP
/// (Kubo's `HTTPRetrieval`), verifying every block.
#[test]
fn kubo_fetches_from_cairns_gateway_as_an_http_provider() {
    if !enter("kubo_wire::kubo_fetches_from_cairns_gateway_as_an_http_provider") {
        return;
    }
    let (a, gateway) = http_only_cairn();
    let names = a.content(&[("over_http", 3 << 20)], 1700);
    let opts = AddOptions { recursive: true, ..AddOptions::default() };
    let root = a.node.add(&a.src.join(names[0]), &opts, true, &mut |_| {}).unwrap().cid.to_string();
    let routers = format!("[\"{gateway}\"]");
    let kubo = KuboDaemon::start_with(
        Routing::None,
        &[
            ("Routing.Type", "\"delegated\""),
            ("Routing.DelegatedRouters", &routers),
            ("Provide.Enabled", "false"),
            ("HTTPRetrieval.Enabled", "true"),
        ],
    )
    .unwrap();
    kubo.get(&root, &a.out.join("over_http"), FETCH).unwrap();
    assert_same_tree(&a.src.join("over_http"), &a.out.join("over_http"));
    let peers = a.rt.block_on(a.net.peers()).unwrap();
    assert!(peers.is_empty(), "Kubo reached Cairn over libp2p too: {peers:?}");
}

/// The same the other way round, between two Cairn nodes: A announces only its gateway
/// (`/ip4/127.0.0.1/tcp/P/http`) and is D's only router. D, with no DHT, no peers and no
/// `Origins.Gateways`, finds A's HTTP record (and follows its address-less Bitswap record up
/// with `/routing/v1/peers`), learns the provider, and fetches the tree from A's gateway,
/// verifying every block; A never sees D over libp2p.
#[test]
fn cairn_fetches_from_an_http_provider_its_router_names() {
    if !enter("kubo_wire::cairn_fetches_from_an_http_provider_its_router_names") {
        return;
    }
    let (a, gateway) = http_only_cairn();
    let names = a.content(&[("over_http", 3 << 20)], 1800);
    let opts = AddOptions { recursive: true, ..AddOptions::default() };
    let root = a.node.add(&a.src.join(names[1]), &opts, true, &mut |_| {}).unwrap().cid;
    let d = Wire::with_routers(DhtMode::Off, vec![gateway]);
    let dest = d.out.join("tree");
    d.node.get(&root.to_string().parse().unwrap(), &dest, &mut |_| {}).unwrap();
    assert_same_tree(&a.src.join("tree"), &dest);
    let stats = d.net.origin_stats().expect("routers give the node an origin for HTTP providers");
    let blocks = stats.blocks.load(std::sync::atomic::Ordering::Relaxed);
    let want = a.node.dag_cids(&root).unwrap().len() as u64;
    assert!(blocks >= want, "{blocks} of the {want} blocks came over HTTP");
    assert!(a.rt.block_on(a.net.peers()).unwrap().is_empty(), "D reached A over libp2p");
    assert!(d.rt.block_on(d.net.peers()).unwrap().is_empty(), "D reached A over libp2p");
}

/// Cairn D, with no DHT and no peers, has Kubo's delegated routing API
/// (`Gateway.ExposeRoutingAPI`) as its only router: asked for a file C announced on the DHT
/// Kubo shares with B and C, Kubo names C, and D fetches the file from C.
#[test]
fn cairn_routes_through_kubos_delegated_routing_api() {
    if !enter("kubo_wire::cairn_routes_through_kubos_delegated_routing_api") {
        return;
    }
    let (_a, b, c) = three_cairns();
    let kubo = KuboDaemon::start_with(Routing::Dht, &[("Gateway.ExposeRoutingAPI", "true")]).unwrap();
    kubo.connect(&b.tcp_addr()).unwrap();
    kubo.connect(&c.tcp_addr()).unwrap();
    let root = add_and_provide(&c, "routed", 1600);
    let router = kubo.gateway_url().unwrap();
    let d = Wire::with_routers(DhtMode::Off, vec![router]);
    let c_id = c.net.peer_id();
    wait_for("D finds C through Kubo's routing API", || {
        let found = d.rt.block_on(d.net.find_providers(root, 4, Duration::from_secs(10))).unwrap_or_default();
        found.contains(&c_id)
    });
    let dest = d.out.join("routed");
    d.node.get(&root.to_string().parse().unwrap(), &dest, &mut |_| {}).unwrap();
    assert_same_tree(&c.src.join("routed"), &dest);
    let peers = d.rt.block_on(d.net.peers()).unwrap();
    assert!(peers.iter().any(|p| p.peer == c_id), "D fetched without connecting to C: {peers:?}");
}

/// Kubo announces a file it added; Cairn A, whose only peer is B, finds Kubo as its provider
/// through the DHT and fetches the file from it.
#[test]
fn cairn_finds_a_kubo_provider_through_the_dht() {
    if !enter("kubo_wire::cairn_finds_a_kubo_provider_through_the_dht") {
        return;
    }
    let (a, b, c) = three_cairns();
    let kubo = KuboDaemon::start(Routing::Dht).unwrap();
    kubo.connect(&b.tcp_addr()).unwrap();
    kubo.connect(&c.tcp_addr()).unwrap();
    let file = a.src.join("from_kubo");
    write_random(&file, 1 << 20, 1400).unwrap();
    let cid = kubo.add(&file, &[]).unwrap();
    let kubo_id = kubo.peer_id().to_owned();
    let parsed: cairn_merkle::Cid = cid.parse().unwrap();
    // Kubo announces what it adds in the background; this asks it to now.
    kubo.provide(&cid).unwrap();
    wait_for("Cairn A finds Kubo as a provider", || {
        let found = a.rt.block_on(a.net.find_providers(parsed, 4, Duration::from_secs(5))).unwrap_or_default();
        found.iter().any(|p| p.to_string() == kubo_id)
    });
    let dest = a.out.join("from_kubo");
    a.node.get(&cid.parse().unwrap(), &dest, &mut |_| {}).unwrap();
    assert_same_tree(&file, &dest);
}

/// A gossipsub message crosses each way between Kubo (`Pubsub.Enabled`) and Cairn.
#[test]
fn pubsub_messages_cross_between_kubo_and_cairn() {
    if !enter("kubo_wire::pubsub_messages_cross_between_kubo_and_cairn") {
        return;
    }
    const TOPIC: &str = "cairn-kubo-043";
    let w = Wire::new();
    let kubo = KuboDaemon::start_with(Routing::None, &[("Pubsub.Enabled", "true")]).unwrap();
    let sub = kubo.subscribe(TOPIC).unwrap();
    let mut rx = w.rt.block_on(w.net.subscribe(TOPIC)).unwrap();
    kubo.connect(&w.tcp_addr()).unwrap();
    let (kubo_id, cairn_id) = (kubo.peer_id().to_owned(), w.net.peer_id().to_string());
    // Both sides must know the other is subscribed before a publish can reach it.
    wait_for("a mutual subscription", || {
        kubo.topic_peers(TOPIC).unwrap().contains(&cairn_id)
            && w.rt.block_on(w.net.topic_peers(TOPIC)).unwrap().iter().any(|p| p.to_string() == kubo_id)
    });

    kubo.publish(TOPIC, b"from kubo").unwrap();
    let m = w.rt.block_on(async { tokio::time::timeout(Duration::from_secs(20), rx.recv()).await }).unwrap().unwrap();
    assert_eq!(m.data, b"from kubo");
    assert_eq!(m.from.map(|p| p.to_string()).as_deref(), Some(kubo_id.as_str()));

    w.rt.block_on(w.net.publish(TOPIC, b"from cairn".to_vec())).unwrap();
    // Kubo's subscription hears Kubo's own message too; skip it.
    let got = loop {
        let m = sub.next(Duration::from_secs(20)).unwrap().expect("Kubo got nothing from Cairn");
        if m.from != kubo_id {
            break m;
        }
    };
    assert_eq!((got.data.as_slice(), got.from.as_str()), (&b"from cairn"[..], cairn_id.as_str()));
}

/// The RPC API answers as Kubo's does, field by field: `testnet/js/rpc_shapes.mjs` makes the
/// same calls (version, id, add, cat, ls, pins, blocks, dag/export, swarm, bitswap, repo, and
/// an error) to Kubo 0.43.1's API and Cairn's, and compares the JSON shapes of the answers (and
/// the bytes of byte answers); the differences Cairn documents are listed in the script.
/// `pin/update` and `block/put` (codecs, hashes, `format=v0`, `pin`, the 2 MiB limit) must
/// answer exactly as Kubo does, CIDs and error words included.
#[test]
fn rpc_answers_have_kubos_shapes() {
    if !(reference::require(Reference::Js) && enter("kubo_wire::rpc_answers_have_kubos_shapes")) {
        return;
    }
    let w = Wire::new();
    let kubo = KuboDaemon::start(Routing::None).unwrap();
    kubo.connect(&w.tcp_addr()).unwrap();
    let (stop_tx, _stop_rx) = tokio::sync::mpsc::channel(1);
    let api = cairn_gateway::api::Api::new(w.node.clone(), Some(w.net.clone()), stop_tx);
    let listener = w.rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let cairn_url = format!("http://{}", listener.local_addr().unwrap());
    let (_shutdown, until) = tokio::sync::oneshot::channel::<()>();
    w.rt.spawn(cairn_gateway::serve_api(listener, api, async {
        let _ = until.await;
    }));
    let script = reference::js_dir().join("rpc_shapes.mjs");
    let out = std::process::Command::new("node")
        .arg(&script)
        .arg(kubo.api_url().unwrap())
        .arg(&cairn_url)
        .output()
        .expect("node runs");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "answers differ from Kubo's:\n{report}{}", String::from_utf8_lossy(&out.stderr));
    // Fewer means a section was skipped (its setup failed on one side).
    assert!(report.lines().count() >= 45, "too few calls compared:\n{report}");
}

/// Kubo keeps the provider records a Cairn reprovide sweep sends it (ADD_PROVIDER messages
/// written back to back on one stream) and hands them to another Cairn node after the first
/// has left.
#[test]
fn kubo_keeps_the_records_of_a_cairn_reprovide_sweep() {
    if !enter("kubo_wire::kubo_keeps_the_records_of_a_cairn_reprovide_sweep") {
        return;
    }
    let a = Wire::configured(DhtMode::Client, |cfg| cfg.reprovider.strategy = "all".into());
    // 1 MiB in 256 KiB chunks: four leaves and a root.
    let data = cairn_testnet::data::random_bytes(1 << 20, 1500);
    let root = a.node.add_reader(&data[..], &AddOptions::default(), true).unwrap().cid;
    let blocks = a.node.dag_cids(&root).unwrap();
    assert_eq!(blocks.len(), 5);
    let kubo = KuboDaemon::start(Routing::Dht).unwrap();
    let kubo_addr: cairn_node::net::Multiaddr = kubo.tcp_addrs()[0].parse().unwrap();
    let sweep = a.rt.block_on(async {
        a.net.connect(kubo_addr.clone()).await.unwrap();
        wait_lan_peers(&a.net, 1).await;
        cairn_node::services::reprovide::Reprovider::from_repo(a.node.clone(), a.net.clone())
            .unwrap()
            .sweep()
            .await
            .unwrap()
    });
    assert_eq!((sweep.provided, sweep.failed), (5, 0), "{sweep:?}");
    assert_eq!((sweep.lookups, sweep.streams, sweep.failed_streams), (1, 1, 0), "{sweep:?}");
    // ADD_PROVIDER has no reply: give the stream a moment to be read before A leaves.
    std::thread::sleep(Duration::from_millis(500));
    let a_id = a.net.peer_id();
    a.rt.block_on(a.net.shutdown());

    let c = Wire::with_dht(DhtMode::Client);
    let found = c.rt.block_on(async {
        c.net.connect(kubo_addr).await.unwrap();
        wait_lan_peers(&c.net, 1).await;
        c.net.find_providers(blocks[3], 5, Duration::from_secs(20)).await.unwrap()
    });
    assert_eq!(found, vec![a_id], "Kubo did not hand out A's record");
}
