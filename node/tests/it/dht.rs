//! The DHTs between Cairn nodes on loopback: provider records, lookups that lead a fetch to
//! a peer it was never told about, and reprovide sweeps.

use std::sync::Arc;
use std::time::Duration;

use cairn_merkle::exporter;
use cairn_node::add::AddOptions;
use cairn_node::config::Profile;
use cairn_node::net::{NetConfig, Network};
use cairn_node::online::NetFetcher;
use cairn_node::services::reprovide::Reprovider;
use cairn_node::store::BlockStore;
use cairn_node::Node;

async fn start(node: &Arc<Node>) -> Network {
    let cfg = NetConfig::from_repo(node.repo()).unwrap();
    cairn_node::online::start(node, cfg).await.unwrap().0
}

/// Waits until `net`'s LAN routing table holds at least `n` peers.
async fn lan_table(net: &Network, n: usize) {
    for _ in 0..100 {
        if net.dht_stats().await.unwrap().lan_peers >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the LAN table never reached {n} peers: {:?}", net.dht_stats().await.unwrap());
}

/// Three nodes in a line: `a` and `c` each know only `b`.
fn line(dir: &std::path::Path, rt: &tokio::runtime::Runtime) -> [(Arc<Node>, Network); 3] {
    line_with(dir, rt, |_| {})
}

/// [`line`], with `edit` applied to the first node's config.
fn line_with(
    dir: &std::path::Path,
    rt: &tokio::runtime::Runtime,
    edit: impl FnOnce(&mut cairn_node::Config),
) -> [(Arc<Node>, Network); 3] {
    let mk = |name: &str| Arc::new(Node::init(&dir.join(name), Profile::Test).unwrap());
    let mut first = Node::init(&dir.join("a"), Profile::Test).unwrap();
    let mut cfg = first.repo().config().clone();
    edit(&mut cfg);
    first.repo_mut().set_config(cfg).unwrap();
    let nodes = [Arc::new(first), mk("b"), mk("c")];
    rt.block_on(async {
        let nets = [start(&nodes[0]).await, start(&nodes[1]).await, start(&nodes[2]).await];
        nets[0].connect(nets[1].listen_addrs()[0].clone()).await.unwrap();
        nets[2].connect(nets[1].listen_addrs()[0].clone()).await.unwrap();
        lan_table(&nets[0], 1).await;
        lan_table(&nets[1], 2).await;
        lan_table(&nets[2], 1).await;
        let [n0, n1, n2] = nets;
        let [a, b, c] = nodes;
        [(a, n0), (b, n1), (c, n2)]
    })
}

/// A provider record that `a` puts on `b` outlives `a`'s presence: `c` finds `a` through
/// `b` after `a` has left.
#[test]
fn a_provider_record_is_kept_by_the_dht_server() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let [(a, na), (_b, _nb), (_c, nc)] = line(dir.path(), &rt);
    let root = a.add_reader(&crate::noise(31, 10_000)[..], &AddOptions::default(), true).unwrap().cid;
    let (ok, failed) = rt.block_on(na.provide(vec![root])).unwrap();
    assert_eq!((ok, failed), (1, 0));
    let stats = rt.block_on(na.dht_stats()).unwrap();
    assert_eq!(stats.provide.provided, 1, "{stats:?}");
    // ADD_PROVIDER has no reply: give the message a moment to leave before `a` does.
    std::thread::sleep(Duration::from_millis(500));
    rt.block_on(na.shutdown());
    let found = rt.block_on(nc.find_providers(root, 5, Duration::from_secs(10))).unwrap();
    assert_eq!(found, vec![na.peer_id()]);
    // A key nobody provides finds nobody, and the lookup ends by its deadline.
    let nothing = cairn_merkle::hash::CidFormat::default().cid(cairn_merkle::hash::RAW, b"unprovided");
    let started = std::time::Instant::now();
    assert!(rt.block_on(nc.find_providers(nothing, 5, Duration::from_secs(3))).unwrap().is_empty());
    assert!(started.elapsed() < Duration::from_secs(6));
}

/// A read on `c` of a file only `a` holds: no connected peer has it, so after a second the
/// DHT is asked, `b` names `a` with its addresses, `a` is dialed, and the file arrives whole.
/// `a` and `c` are DHT clients, so neither is in anyone's routing table and no DHT walk
/// introduces them: only `a`'s provider record on `b` leads `c` to `a`.
#[test]
fn a_fetch_finds_its_provider_through_the_dht() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = |name: &str| {
        let mut n = Node::init(&dir.path().join(name), Profile::Test).unwrap();
        let mut cfg = n.repo().config().clone();
        cfg.routing.kind = "dhtclient".into();
        n.repo_mut().set_config(cfg).unwrap();
        Arc::new(n)
    };
    let (a, b, c) = (client("a"), Arc::new(Node::init(&dir.path().join("b"), Profile::Test).unwrap()), client("c"));
    let data = crate::noise(32, 700_000);
    let root = a.add_reader(&data[..], &AddOptions::default(), true).unwrap().cid;
    let (na, nb, nc) = rt.block_on(async {
        let (na, nb) = (start(&a).await, start(&b).await);
        na.connect(nb.listen_addrs()[0].clone()).await.unwrap();
        lan_table(&na, 1).await;
        assert_eq!(na.provide(vec![root]).await.unwrap(), (1, 0));
        let nc = start(&c).await;
        nc.connect(nb.listen_addrs()[0].clone()).await.unwrap();
        lan_table(&nc, 1).await;
        (na, nb, nc)
    });
    assert_eq!(rt.block_on(nb.dht_stats()).unwrap().lan_peers, 0, "clients stay out of tables");
    c.attach_fetcher(Arc::new(NetFetcher::new(nc.clone(), Duration::from_secs(20))));
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        exporter::read_range(&c.source(), &root, 0, None, &mut out).unwrap();
        out
    });
    let out = reader.join().unwrap();
    assert!(out == data, "bytes differ");
    let peers: Vec<_> = rt.block_on(nc.peers()).unwrap().into_iter().map(|p| p.peer).collect();
    assert!(peers.contains(&na.peer_id()), "c read the file without connecting to a?");
    assert!(rt.block_on(nc.dht_stats()).unwrap().lookups >= 1, "found without a lookup?");
    assert!(!b.repo().store().has(&root).unwrap(), "b only routed");
}

/// A sweep with the `all` strategy announces every block the repo holds, and records when it
/// ended so that a restart does not sweep again at once.
#[test]
fn a_reprovide_sweep_announces_every_block() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let [(a, na), (_b, _nb), (_c, nc)] = line_with(dir.path(), &rt, |cfg| cfg.reprovider.strategy = "all".into());
    // 3 MiB in 256 KiB chunks: 12 leaves and a root.
    let root = a.add_reader(&crate::noise(33, 3 << 20)[..], &AddOptions::default(), true).unwrap().cid;
    let blocks = a.repo().store().stats().unwrap().blocks;
    assert_eq!(blocks, 13);
    let reprovider = Reprovider::from_repo(a.clone(), na.clone()).unwrap();
    assert!(reprovider.last_sweep().is_none());
    assert_eq!(reprovider.keys_for(&[root]).len(), 13, "all: every block of an add");
    let sweep = rt.block_on(reprovider.sweep()).unwrap();
    assert_eq!((sweep.provided, sweep.failed), (blocks, 0));
    // Fewer peers than K: one lookup finds them all (b, and c through b), and each takes
    // every key on one stream.
    assert_eq!((sweep.lookups, sweep.streams, sweep.failed_streams), (1, 2, 0), "{sweep:?}");
    assert!(reprovider.last_sweep().is_some(), "the sweep is recorded");
    // The blocks of an add go the same way when there are many of them.
    let added = rt.block_on(reprovider.announce(a.dag_cids(&root).unwrap())).unwrap();
    assert_eq!((added.provided, added.failed, added.lookups), (13, 0, 1), "{added:?}");
    assert_eq!(rt.block_on(reprovider.announce_now(vec![root])).unwrap(), (1, 0), "one root: a lookup");
    // A leaf is found on the DHT under its own CID, not just the root.
    let leaf = a.dag_cids(&root).unwrap()[5];
    std::thread::sleep(Duration::from_millis(500));
    rt.block_on(na.shutdown());
    let found = rt.block_on(nc.find_providers(leaf, 5, Duration::from_secs(10))).unwrap();
    assert_eq!(found, vec![na.peer_id()]);
}

/// A DHT of more peers than K: the sweep splits the keyspace into regions, with a few lookups
/// for thousands of keys, and every record lands where lookups look. After the announcer has
/// left, another node finds it as the provider of any key.
#[test]
fn a_sweep_over_more_peers_than_k_announces_by_region() {
    const PEERS: usize = 30;
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut first = Node::init(&dir.path().join("n0"), Profile::Test).unwrap();
    let mut cfg = first.repo().config().clone();
    cfg.reprovider.strategy = "all".into();
    first.repo_mut().set_config(cfg).unwrap();
    let first = Arc::new(first);
    // 3 MB in 1 KiB raw leaves: about three thousand keys.
    let mut import = cairn_merkle::importer::ImportOptions::from_flags(Some(1), Some(true), None).unwrap();
    import.chunker = "size-1024".parse().unwrap();
    let opts = AddOptions { import, ..AddOptions::default() };
    let root = first.add_reader(&crate::noise(34, 3_000_000)[..], &opts, true).unwrap().cid;
    let keys = first.dag_cids(&root).unwrap();
    assert!(keys.len() > 2900, "{}", keys.len());
    let nodes: Vec<Arc<Node>> = std::iter::once(first.clone())
        .chain((1..=PEERS).map(|i| Arc::new(Node::init(&dir.path().join(format!("n{i}")), Profile::Test).unwrap())))
        .collect();
    let nets: Vec<Network> = rt.block_on(async {
        let mut nets = Vec::new();
        for n in &nodes {
            nets.push(start(n).await);
        }
        for i in 1..nets.len() {
            nets[i].connect(nets[0].listen_addrs()[0].clone()).await.unwrap();
            if i > 1 {
                nets[i].connect(nets[i - 1].listen_addrs()[0].clone()).await.unwrap();
            }
        }
        // Not all of them: a k-bucket holds 20, and about half of 30 random peers share the
        // farthest bucket, so one time in fifty or so it overflows and keeps a peer or two
        // pending. 25 in the table is still well over K.
        lan_table(&nets[0], PEERS - 5).await;
        nets
    });
    let sweep = rt.block_on(Reprovider::from_repo(first.clone(), nets[0].clone()).unwrap().sweep()).unwrap();
    assert_eq!((sweep.provided, sweep.failed), (keys.len() as u64, 0), "{sweep:?}");
    assert!((2..=12).contains(&sweep.lookups), "{} lookups for {PEERS} peers: {sweep:?}", sweep.lookups);
    assert!(sweep.streams >= 20, "{sweep:?}");
    std::thread::sleep(Duration::from_millis(500));
    rt.block_on(nets[0].shutdown());
    let asker = &nets[PEERS];
    for cid in keys.iter().step_by(keys.len() / 12) {
        let found = rt.block_on(asker.find_providers(*cid, 1, Duration::from_secs(10))).unwrap();
        assert_eq!(found, vec![nets[0].peer_id()], "no record of {cid} where lookups look");
    }
}
