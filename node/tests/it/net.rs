//! Bitswap between Cairn nodes on loopback.

use std::sync::Arc;
use std::time::Duration;

use cairn_merkle::exporter;
use cairn_node::add::AddOptions;
use cairn_node::net::{self, NetConfig};
use cairn_node::online::{NetFetcher, NodeStore};
use cairn_node::store::BlockStore;
use cairn_node::Node;

fn listen() -> NetConfig {
    NetConfig::new(vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()])
}

async fn start(node: &Arc<Node>) -> net::Network {
    cairn_node::online::start(node, listen()).await.unwrap().0
}

/// Connects `from` to `to` and waits until `from` has `to` in its hints-topic mesh, then a
/// heartbeat more.
async fn join_hints_mesh(from: &net::Network, to: &net::Network) {
    from.connect(to.listen_addrs()[0].clone()).await.unwrap();
    for _ in 0..100 {
        if from.topic_peers(net::hints::TOPIC).await.unwrap().contains(&to.peer_id()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
}

/// Waits until `at` scores `peer` below zero on gossipsub; returns the last score seen.
async fn negative_score(at: &net::Network, peer: libp2p::PeerId) -> Option<f64> {
    let mut score = None;
    for _ in 0..100 {
        score = at.gossip_score(peer).await.unwrap();
        if score.is_some_and(|s| s < 0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    score
}

/// A file added on one node is read on another through Bitswap, every byte equal, and the
/// fetched blocks end up stored on the reader.
#[test]
fn a_file_moves_between_two_nodes() {
    move_file("/ip4/127.0.0.1/tcp/0");
}

/// The same over QUIC: both nodes listen on UDP only, and the connection is QUIC.
#[test]
fn a_file_moves_over_quic() {
    move_file("/ip4/127.0.0.1/udp/0/quic-v1");
}

/// Two nodes listening on `listen` (only); the second reads a 3 MiB file from the first.
fn move_file(listen: &str) {
    let dir = tempfile::tempdir().unwrap();
    let seed = Arc::new(Node::init(&dir.path().join("a"), cairn_node::config::Profile::Test).unwrap());
    let leech = Arc::new(Node::init(&dir.path().join("b"), cairn_node::config::Profile::Test).unwrap());
    let data = crate::noise(7, 3 << 20);
    let added = seed.add_reader(&data[..], &AddOptions::default(), true).unwrap();

    let rt = tokio::runtime::Runtime::new().unwrap();
    let cfg = || NetConfig::new(vec![listen.parse().unwrap()]);
    let spawn = |n: &Arc<Node>| cairn_node::online::start(n, cfg());
    let (net_a, net_b) = rt.block_on(async { (spawn(&seed).await.unwrap().0, spawn(&leech).await.unwrap().0) });
    let addr = net_a.listen_addrs()[0].clone();
    assert_eq!(addr.to_string().contains("/quic-v1"), listen.contains("/quic-v1"), "listening on {addr}");
    let peer = rt.block_on(net_b.connect(addr.clone())).unwrap();
    assert_eq!(peer, net_a.peer_id());
    let via = rt.block_on(net_b.peers()).unwrap().into_iter().find(|p| p.peer == peer).unwrap().addr;
    assert_eq!(via.to_string().contains("/quic-v1"), listen.contains("/quic-v1"), "connected over {via}");

    assert!(leech.attach_fetcher(Arc::new(NetFetcher::new(net_b.clone(), Duration::from_secs(20)))));
    let mut out = Vec::new();
    let n = exporter::read_range(&leech.source(), &added.cid, 0, None, &mut out).unwrap();
    assert_eq!(n as usize, data.len());
    assert!(out == data, "bytes differ");
    assert!(leech.repo().store().has(&added.cid).unwrap());

    let stats_b = rt.block_on(net_b.stats()).unwrap();
    let stats_a = rt.block_on(net_a.stats()).unwrap();
    assert_eq!(stats_b.bytes_received, stats_a.bytes_sent);
    assert!(stats_b.blocks_received >= 13, "{stats_b:?}");
    rt.block_on(async {
        net_a.shutdown().await;
        net_b.shutdown().await;
    });
}

/// `max_connections` (`Swarm.ConnMgr.HighWater`) caps established connections: with a cap
/// of 2, a third peer is refused while two are connected, and gets in once one leaves.
#[test]
fn the_connection_limit_holds() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mk = |name: &str| Arc::new(Node::init(&dir.path().join(name), cairn_node::config::Profile::Test).unwrap());
    let (hub, a, b, c) = (mk("hub"), mk("a"), mk("b"), mk("c"));
    let spawn = |n: &Arc<Node>, cfg: NetConfig| cairn_node::online::start(n, cfg);
    let (net_hub, net_a, net_b, net_c) = rt.block_on(async {
        let hub_cfg = NetConfig { max_connections: 2, dht: net::dht::DhtMode::Off, ..listen() };
        (
            spawn(&hub, hub_cfg).await.unwrap().0,
            spawn(&a, listen()).await.unwrap().0,
            spawn(&b, listen()).await.unwrap().0,
            spawn(&c, listen()).await.unwrap().0,
        )
    });
    let addr = net_hub.listen_addrs()[0].clone();
    let hub_peers =
        || -> Vec<libp2p::PeerId> { rt.block_on(net_hub.peers()).unwrap().into_iter().map(|p| p.peer).collect() };
    rt.block_on(net_a.connect(addr.clone())).unwrap();
    rt.block_on(net_b.connect(addr.clone())).unwrap();
    // A dialer counts its connection as open once its side of the handshake is done, which
    // can be before the hub has finished its side: wait until the hub holds both.
    let started = std::time::Instant::now();
    while !(hub_peers().contains(&net_a.peer_id()) && hub_peers().contains(&net_b.peer_id())) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the hub never took its first two peers: {:?}",
            hub_peers()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The third dial's handshake completes, and then the hub closes the connection.
    let _ = rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), net_c.connect(addr.clone())).await });
    std::thread::sleep(Duration::from_millis(500));
    let peers = hub_peers();
    assert_eq!(peers.len(), 2, "{peers:?}");
    assert!(!peers.contains(&net_c.peer_id()), "a third peer got in past a cap of 2");
    let c_peers: Vec<_> = rt.block_on(net_c.peers()).unwrap().into_iter().map(|p| p.peer).collect();
    assert!(!c_peers.contains(&net_hub.peer_id()), "the refused peer still holds a connection");
    // One leaves: the next dial gets in.
    rt.block_on(net_a.shutdown());
    let started = std::time::Instant::now();
    while !hub_peers().contains(&net_c.peer_id()) {
        assert!(started.elapsed() < Duration::from_secs(20), "the freed slot never let the third peer in");
        let _ = rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), net_c.connect(addr.clone())).await });
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(hub_peers().len() <= 2);
}

#[derive(libp2p::swarm::NetworkBehaviour)]
struct Probe {
    ping: libp2p::ping::Behaviour,
    identify: libp2p::identify::Behaviour,
}

/// A plain libp2p peer pings a node and hears its identify: Cairn's agent, and Bitswap and
/// ping among the protocols it speaks. (Not gossipsub: a peer that does not speak it, like
/// this one, may see the node's gossipsub handler withdraw the protocol from its connection
/// before identify is sent.)
#[test]
fn a_plain_libp2p_peer_pings_and_identifies_a_node() {
    use futures::StreamExt as _;
    use libp2p::swarm::SwarmEvent;
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let node = Arc::new(Node::init(&dir.path().join("n"), cairn_node::config::Profile::Test).unwrap());
    let (rtt, info) = rt.block_on(async {
        let net = start(&node).await;
        let mut probe = libp2p::SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_tcp(libp2p::tcp::Config::default(), libp2p::noise::Config::new, libp2p::yamux::Config::default)
            .unwrap()
            .with_behaviour(|key| Probe {
                ping: libp2p::ping::Behaviour::new(
                    libp2p::ping::Config::new().with_interval(Duration::from_millis(200)),
                ),
                identify: libp2p::identify::Behaviour::new(libp2p::identify::Config::new(
                    "/ipfs/0.1.0".into(),
                    key.public(),
                )),
            })
            .unwrap()
            .build();
        probe.dial(net.listen_addrs()[0].clone()).unwrap();
        let (mut rtt, mut info) = (None, None);
        tokio::time::timeout(Duration::from_secs(15), async {
            while rtt.is_none() || info.is_none() {
                match probe.select_next_some().await {
                    SwarmEvent::Behaviour(ProbeEvent::Ping(e)) if e.peer == net.peer_id() => {
                        rtt = e.result.ok();
                    }
                    SwarmEvent::Behaviour(ProbeEvent::Identify(libp2p::identify::Event::Received {
                        peer_id,
                        info: i,
                        ..
                    })) if peer_id == net.peer_id() => info = Some(i),
                    _ => {}
                }
            }
        })
        .await
        .expect("no ping reply or identify within 15 s");
        (rtt.unwrap(), info.unwrap())
    });
    assert!(rtt < Duration::from_secs(1), "{rtt:?}");
    assert!(info.agent_version.starts_with("cairn/"), "{}", info.agent_version);
    for p in ["/ipfs/bitswap/1.2.0", "/ipfs/ping/1.0.0"] {
        assert!(info.protocols.iter().any(|x| x.as_ref() == p), "{p} not in {:?}", info.protocols);
    }
}

/// A block no peer has fails with a timeout instead of hanging.
#[test]
fn a_missing_block_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let a = Arc::new(Node::init(&dir.path().join("a"), cairn_node::config::Profile::Test).unwrap());
    let b = Arc::new(Node::init(&dir.path().join("b"), cairn_node::config::Profile::Test).unwrap());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (net_a, net_b) = rt.block_on(async { (start(&a).await, start(&b).await) });
    rt.block_on(net_b.connect(net_a.listen_addrs()[0].clone())).unwrap();
    let cid = cairn_merkle::hash::CidFormat::default().cid(cairn_merkle::hash::RAW, b"nobody has this");
    let started = std::time::Instant::now();
    let err = rt.block_on(net_b.fetch(cid, Duration::from_secs(2))).unwrap_err();
    assert!(matches!(err, net::bitswap::engine::FetchError::Timeout(_)), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

fn private(key: [u8; 32]) -> NetConfig {
    let mut cfg = listen();
    cfg.swarm_key = Some(libp2p::pnet::PreSharedKey::new(key));
    cfg
}

/// Nodes of one private swarm connect; a node with another key (or none) cannot.
#[test]
fn a_private_swarm_admits_only_its_members() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mk = |name: &str, cfg: NetConfig| {
        let node = Arc::new(Node::init(&dir.path().join(name), cairn_node::config::Profile::Test).unwrap());
        rt.block_on(cairn_node::online::start(&node, cfg)).unwrap().0
    };
    let a = mk("a", private([7; 32]));
    let b = mk("b", private([7; 32]));
    let stranger = mk("c", private([8; 32]));
    let public = mk("d", listen());
    let target = a.listen_addrs()[0].clone();
    assert_eq!(rt.block_on(b.connect(target.clone())).unwrap(), a.peer_id());
    for outsider in [&stranger, &public] {
        let r = rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(20), outsider.connect(target.clone())).await });
        assert!(matches!(r, Ok(Err(_))), "an outsider connected (or hung): {r:?}");
    }
}

/// A swarm key file in Kubo's format is read from the repo.
#[test]
fn swarm_key_files_use_kubos_format() {
    let dir = tempfile::tempdir().unwrap();
    let hex: String = (0..32).map(|i| format!("{:02x}", i * 7 % 256)).collect();
    std::fs::write(dir.path().join("swarm.key"), format!("/key/swarm/psk/1.0.0/\n/base16/\n{hex}\n")).unwrap();
    let key = net::transport::load_swarm_key(dir.path()).unwrap().unwrap();
    assert_eq!(key, libp2p::pnet::PreSharedKey::new(std::array::from_fn(|i| (i * 7 % 256) as u8)));
    std::fs::write(dir.path().join("swarm.key"), "/key/swarm/psk/1.0.0/\n/base16/\nnot hex\n").unwrap();
    let err = net::transport::load_swarm_key(dir.path()).unwrap_err();
    assert!(err.to_string().contains("not a swarm key"), "{err}");

    // No key: a public swarm, unless LIBP2P_FORCE_PNET=1 demands a private one. (Only this
    // test reads the variable.)
    std::fs::remove_file(dir.path().join("swarm.key")).unwrap();
    assert!(net::transport::load_swarm_key(dir.path()).unwrap().is_none());
    std::env::set_var("LIBP2P_FORCE_PNET", "1");
    let forced = net::transport::load_swarm_key(dir.path());
    std::env::remove_var("LIBP2P_FORCE_PNET");
    assert!(forced.unwrap_err().to_string().contains("LIBP2P_FORCE_PNET"));
}

/// One seed and ten leechers in one process, all connected to each other, fetch a 64 MiB
/// file at once (each in its own spread-out order). Every leecher ends with every byte, and
/// the leechers carry most of the load: the seed uploads less than three times the file.
#[test]
fn ten_leechers_share_the_load_of_one_seed() {
    const LEECHERS: usize = 10;
    const SIZE: usize = 64 << 20;
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let nodes: Vec<Arc<Node>> = (0..=LEECHERS)
        .map(|i| Arc::new(Node::init(&dir.path().join(format!("n{i}")), cairn_node::config::Profile::Test).unwrap()))
        .collect();
    let data = crate::noise(11, SIZE);
    let root = nodes[0].add_reader(&data[..], &AddOptions::default(), true).unwrap().cid;
    let nets: Vec<net::Network> = rt.block_on(async {
        let mut v = Vec::new();
        for n in &nodes {
            v.push(start(n).await);
        }
        v
    });
    rt.block_on(async {
        for i in 1..nets.len() {
            for j in 0..i {
                nets[i].connect(nets[j].listen_addrs()[0].clone()).await.unwrap();
            }
        }
    });

    let started = std::time::Instant::now();
    let results = rt.block_on(async {
        let tasks: Vec<_> = (1..=LEECHERS)
            .map(|i| {
                let net = nets[i].clone();
                let store: net::SharedStore = Arc::new(NodeStore(nodes[i].clone()));
                tokio::spawn(async move {
                    let order = net::session::Order::Spread(i as u64 * 0x9E37_79B9);
                    net.fetch_dag(&store, root, order, 16, Duration::from_secs(60)).await
                })
            })
            .collect();
        futures::future::join_all(tasks).await
    });
    let elapsed = started.elapsed();
    for (i, r) in results.into_iter().enumerate() {
        let report = r.unwrap().unwrap_or_else(|e| panic!("leecher {} failed: {e}", i + 1));
        assert_eq!(report.fetched, report.blocks, "leecher {} had blocks before it began", i + 1);
    }
    for (i, node) in nodes.iter().enumerate().skip(1) {
        let mut out = Vec::with_capacity(SIZE);
        exporter::read_range(&node.source(), &root, 0, None, &mut out).unwrap();
        assert!(out == data, "leecher {i} has different bytes");
    }
    let seed = rt.block_on(nets[0].stats()).unwrap();
    let uploaded: u64 = rt.block_on(async {
        let mut t = 0;
        for n in &nets {
            t += n.stats().await.unwrap().bytes_sent;
        }
        t
    });
    let figures = format!(
        "{LEECHERS} leechers x {} MiB in {elapsed:?}: the seed uploaded {:.2}x the file, all peers {:.2}x",
        SIZE >> 20,
        seed.bytes_sent as f64 / SIZE as f64,
        uploaded as f64 / SIZE as f64
    );
    // Each leecher needs the file once; what is sent beyond that is duplicates.
    assert!(uploaded < (LEECHERS as u64 * SIZE as u64) * 21 / 20, "over 5% duplicates: {figures}");
    assert!(seed.bytes_sent < 3 * SIZE as u64, "{figures}");
}

/// An availability hint leads a fetch to a provider the fetching node was never connected to:
/// A holds a file and B wants it; both know only C, which has nothing. A's hint reaches B over
/// gossipsub through C, and B's fetch dials A and gets the file.
#[test]
fn a_hint_leads_a_fetch_to_its_provider() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mk = |name: &str| Arc::new(Node::init(&dir.path().join(name), cairn_node::config::Profile::Test).unwrap());
    let (a, b, c) = (mk("a"), mk("b"), mk("c"));
    let data = crate::noise(21, 600_000);
    let root = a.add_reader(&data[..], &AddOptions::default(), true).unwrap().cid;
    // B runs no DHT, which would find A too (A answers lookups for what it holds).
    let no_dht = || NetConfig { dht: net::dht::DhtMode::Off, ..listen() };
    let (na, nb, nc) = rt.block_on(async {
        let b_net = cairn_node::online::start(&b, no_dht()).await.unwrap().0;
        (start(&a).await, b_net, start(&c).await)
    });
    rt.block_on(async {
        na.connect(nc.listen_addrs()[0].clone()).await.unwrap();
        nb.connect(nc.listen_addrs()[0].clone()).await.unwrap();
    });
    // Until the gossip mesh forms (a heartbeat or two), announce again; B's fetch of the root
    // succeeds only once the hint is in.
    let store: net::SharedStore = Arc::new(NodeStore(b.clone()));
    let fetched = rt.block_on(async {
        for _ in 0..20 {
            na.announce_root(root, data.len() as u64).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            if let Ok(r) = nb.fetch_dag(&store, root, net::session::Order::File, 16, Duration::from_millis(1500)).await
            {
                return Some(r);
            }
        }
        None
    });
    assert!(fetched.is_some(), "B never found A through the hint");
    let peers: Vec<_> = rt.block_on(nb.peers()).unwrap().into_iter().map(|p| p.peer).collect();
    assert!(peers.contains(&na.peer_id()), "B fetched without dialing A?");
    let mut out = Vec::new();
    exporter::read_range(&b.source(), &root, 0, None, &mut out).unwrap();
    assert!(out == data);
}

/// Messages published on a topic reach the other node's subscriber, signed by the publisher.
#[test]
fn pubsub_messages_reach_subscribers() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let a = Arc::new(Node::init(&dir.path().join("a"), cairn_node::config::Profile::Test).unwrap());
    let b = Arc::new(Node::init(&dir.path().join("b"), cairn_node::config::Profile::Test).unwrap());
    let (na, nb) = rt.block_on(async { (start(&a).await, start(&b).await) });
    rt.block_on(async {
        let mut rx = nb.subscribe("cairn-test").await.unwrap();
        na.subscribe("cairn-test").await.unwrap();
        nb.connect(na.listen_addrs()[0].clone()).await.unwrap();
        for _ in 0..100 {
            if na.topic_peers("cairn-test").await.unwrap().contains(&nb.peer_id()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        na.publish("cairn-test", b"hello over gossipsub".to_vec()).await.unwrap();
        let m = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.unwrap().unwrap();
        assert_eq!(m.data, b"hello over gossipsub");
        assert_eq!(m.from, Some(na.peer_id()));
        assert_eq!(m.topic, "cairn-test");
    });
}

/// A peer that floods the hints topic with garbage loses gossipsub score at its neighbour,
/// which keeps running and keeps taking good hints from others.
#[test]
fn bad_hints_cost_the_sender_score() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mk = |name: &str| Arc::new(Node::init(&dir.path().join(name), cairn_node::config::Profile::Test).unwrap());
    let (bad, good) = (mk("bad"), mk("good"));
    let (nbad, ngood) = rt.block_on(async { (start(&bad).await, start(&good).await) });
    rt.block_on(async {
        join_hints_mesh(&nbad, &ngood).await;
        for i in 0..30u8 {
            let _ = nbad.publish(net::hints::TOPIC, vec![0xff, i, 0xff]).await;
        }
        let score = negative_score(&ngood, nbad.peer_id()).await;
        assert!(score.is_some_and(|s| s < 0.0), "the flooder's score is {score:?}");
        assert!(ngood.peers().await.is_ok(), "the receiving node stopped");
    });
}

/// Reads a 4 MiB file from a seed with the given caps; returns how long it took.
fn capped_read(upload: Option<u64>, download: Option<u64>) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let seed = Arc::new(Node::init(&dir.path().join("a"), cairn_node::config::Profile::Test).unwrap());
    let leech = Arc::new(Node::init(&dir.path().join("b"), cairn_node::config::Profile::Test).unwrap());
    let data = crate::noise(51, 4 << 20);
    let root = seed.add_reader(&data[..], &AddOptions::default(), true).unwrap().cid;
    let (na, nb) = rt.block_on(async {
        let spawn = |n: &Arc<Node>, cfg: NetConfig| cairn_node::online::start(n, cfg);
        let na = spawn(&seed, NetConfig { upload_limit: upload, ..listen() }).await.unwrap().0;
        let nb = spawn(&leech, NetConfig { download_limit: download, ..listen() }).await.unwrap().0;
        nb.connect(na.listen_addrs()[0].clone()).await.unwrap();
        (na, nb)
    });
    leech.attach_fetcher(Arc::new(NetFetcher::new(nb.clone(), Duration::from_secs(30))));
    let started = std::time::Instant::now();
    let mut out = Vec::new();
    exporter::read_range(&leech.source(), &root, 0, None, &mut out).unwrap();
    let took = started.elapsed();
    assert!(out == data);
    drop(na);
    took
}

/// With `Swarm.RateLimit.Upload` (or `.Download`) at 1 MB/s, 4 MiB cannot move in less than
/// about three seconds (one second's burst, then the rate). Only the lower bound is checked:
/// a cap makes a transfer slower, never faster, whatever the machine.
#[test]
fn bandwidth_caps_hold() {
    let floor = Duration::from_millis(2500);
    let up = capped_read(Some(1_000_000), None);
    assert!(up >= floor, "upload cap: 4 MiB in {up:?}");
    let down = capped_read(None, Some(1_000_000));
    assert!(down >= floor, "download cap: 4 MiB in {down:?}");
}

/// A peer that floods the hints topic with well-formed hints gets the first
/// `MAX_HINTS_PER_MINUTE` accepted, then is refused and loses gossipsub score; the receiver
/// keeps taking another peer's hints.
#[test]
fn a_flood_of_valid_hints_is_cut_off_at_the_rate_limit() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mk = |name: &str| Arc::new(Node::init(&dir.path().join(name), cairn_node::config::Profile::Test).unwrap());
    let (flooder, good, honest) = (mk("flooder"), mk("good"), mk("honest"));
    let (nf, ng, nh) = rt.block_on(async { (start(&flooder).await, start(&good).await, start(&honest).await) });
    let root = |i: u32| {
        cairn_merkle::hash::CidFormat { version: 1, hash: Default::default() }
            .cid(cairn_merkle::hash::RAW, &i.to_be_bytes())
    };
    rt.block_on(async {
        let mut heard = ng.subscribe(net::hints::TOPIC).await.unwrap();
        join_hints_mesh(&nf, &ng).await;
        join_hints_mesh(&nh, &ng).await;
        let addrs = nf.listen_addrs().to_vec();
        for i in 0..200 {
            nf.publish(net::hints::TOPIC, net::hints::encode(&root(i), 1000, &addrs, false)).await.unwrap();
        }
        let mut taken = 0;
        while let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(3), heard.recv()).await {
            assert_eq!(m.from, Some(nf.peer_id()));
            taken += 1;
        }
        assert_eq!(taken, net::hints::MAX_HINTS_PER_MINUTE, "hints accepted from the flooder");
        let score = negative_score(&ng, nf.peer_id()).await;
        assert!(score.is_some_and(|s| s < 0.0), "the flooder's score is {score:?}");
        // Another peer's hint still gets in.
        nh.announce_root(root(1_000_000), 10).await;
        let m = tokio::time::timeout(Duration::from_secs(10), heard.recv()).await.unwrap().unwrap();
        assert_eq!(m.from, Some(nh.peer_id()));
        assert_eq!(net::hints::decode(nh.peer_id(), &m.data).unwrap().root, root(1_000_000));
    });
}

/// On a topic of an application's own, a signed source gets
/// `MAX_TOPIC_MESSAGES_PER_MINUTE` messages a minute through, and the rest are neither
/// delivered nor relayed (before, every message on such a topic was accepted and relayed);
/// and a peer is known to subscribe to at most `MAX_PEER_TOPICS` topics, whatever it says.
#[test]
fn other_topics_are_bounded_per_source_and_per_peer() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mk = |name: &str| Arc::new(Node::init(&dir.path().join(name), cairn_node::config::Profile::Test).unwrap());
    let (flooder, good) = (mk("flooder"), mk("good"));
    let (nf, ng) = rt.block_on(async { (start(&flooder).await, start(&good).await) });
    rt.block_on(async {
        let mut heard = ng.subscribe("app").await.unwrap();
        nf.subscribe("app").await.unwrap();
        nf.connect(ng.listen_addrs()[0].clone()).await.unwrap();
        for _ in 0..100 {
            if nf.topic_peers("app").await.unwrap().contains(&ng.peer_id()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let counting = tokio::spawn(async move {
            let mut taken = 0;
            while let Ok(Some(_)) = tokio::time::timeout(Duration::from_secs(3), heard.recv()).await {
                taken += 1;
            }
            taken
        });
        let sent = net::MAX_TOPIC_MESSAGES_PER_MINUTE + 100;
        for i in 0..sent {
            nf.publish("app", format!("message {i}").into_bytes()).await.unwrap();
        }
        assert_eq!(counting.await.unwrap(), net::MAX_TOPIC_MESSAGES_PER_MINUTE, "messages taken of {sent}");

        // Topics: the flooder already has two (hints and "app") and asks for 300 more, one at
        // a time; the good node records it in no more than its share.
        for i in 0..300 {
            nf.subscribe(&format!("t{i}")).await.unwrap();
        }
        let known = |topic: String| {
            let ng = ng.clone();
            let peer = nf.peer_id();
            async move { ng.topic_peers(&topic).await.unwrap().contains(&peer) }
        };
        for _ in 0..100 {
            if known("t299".into()).await || known("t0".into()).await {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut recorded = 0;
        for i in 0..300 {
            recorded += usize::from(known(format!("t{i}")).await);
        }
        assert_eq!(recorded, net::MAX_PEER_TOPICS - 2, "topics recorded for one peer");
        assert!(ng.peers().await.is_ok(), "the receiving node stopped");
    });
}
