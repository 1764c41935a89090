//! What the wire-interop tests share: a fetching Cairn node on loopback, the content they
//! move, and the check that it arrived whole.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cairn_node::config::Profile;
use cairn_node::net::{self, NetConfig, Network};
use cairn_node::Node;
use cairn_testnet::data::write_random;

/// A Cairn node with its swarm on 127.0.0.1 (no DHT), fetching from its peers when a block is
/// missing, and `src` and `out` directories beside its repo.
pub struct Wire {
    pub node: Arc<Node>,
    pub net: Network,
    pub rt: tokio::runtime::Runtime,
    pub src: PathBuf,
    pub out: PathBuf,
    _dir: tempfile::TempDir,
}

impl Wire {
    pub fn new() -> Wire {
        Wire::with_dht(net::dht::DhtMode::Off)
    }

    /// [`Wire::new`] with its DHTs in `dht` mode.
    pub fn with_dht(dht: net::dht::DhtMode) -> Wire {
        Wire::configured(dht, |_| {})
    }

    /// [`Wire::with_dht`] with `edit` applied to the repo's config first.
    pub fn configured(dht: net::dht::DhtMode, edit: impl FnOnce(&mut cairn_node::Config)) -> Wire {
        Wire::built(dht, edit, |_| {})
    }

    /// [`Wire::with_dht`] whose provider lookups also ask the delegated routers at `urls`.
    pub fn with_routers(dht: net::dht::DhtMode, urls: Vec<String>) -> Wire {
        Wire::built(dht, |_| {}, |n| n.delegated_routers = urls)
    }

    /// [`Wire::with_dht`] that tells peers of `announce` only (`Addresses.Announce`).
    pub fn announcing(dht: net::dht::DhtMode, announce: Vec<libp2p::Multiaddr>) -> Wire {
        Wire::built(dht, |_| {}, |n| n.announce = announce)
    }

    /// [`Wire::configured`] with `edit_net` applied to the network's config too.
    fn built(
        dht: net::dht::DhtMode,
        edit: impl FnOnce(&mut cairn_node::Config),
        edit_net: impl FnOnce(&mut NetConfig),
    ) -> Wire {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let mut node = Node::init(&dir.path().join("cairn"), Profile::Test).unwrap();
        let mut config = node.repo().config().clone();
        edit(&mut config);
        node.repo_mut().set_config(config).unwrap();
        let node = Arc::new(node);
        let mut cfg = NetConfig { dht, ..NetConfig::new(vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()]) };
        edit_net(&mut cfg);
        let (net, _task) = rt.block_on(cairn_node::online::start_reading(&node, cfg, Duration::from_secs(60))).unwrap();
        let (src, out) = (dir.path().join("src"), dir.path().join("out"));
        fs::create_dir_all(&src).unwrap();
        fs::create_dir_all(&out).unwrap();
        Wire { node, net, rt, src, out, _dir: dir }
    }

    /// Serves the node's gateway on 127.0.0.1 with the delegated routing API on, until the
    /// runtime stops; its base URL, `http://127.0.0.1:PORT`.
    pub fn serve_gateway(&self) -> String {
        self.serve_gateway_on("127.0.0.1:0".parse().unwrap())
    }

    /// [`Wire::serve_gateway`] on `addr`.
    pub fn serve_gateway_on(&self, addr: std::net::SocketAddr) -> String {
        let config = cairn_gateway::GatewayConfig {
            routing: Some(cairn_gateway::routing::RoutingApi::new(self.net.clone())),
            ..cairn_gateway::GatewayConfig::default()
        };
        let stop = std::future::pending::<()>();
        let (addr, _task) = self.rt.block_on(cairn_gateway::spawn(addr, self.node.clone(), config, stop)).unwrap();
        format!("http://{addr}")
    }

    /// The node's TCP address, ending in `/p2p/<peer id>` (js-libp2p under Node.js has no QUIC).
    pub fn tcp_addr(&self) -> String {
        self.net.listen_addrs().iter().map(ToString::to_string).find(|a| a.contains("/tcp/")).expect("a TCP address")
    }

    /// Writes `files` (name, length) and a tree (nested directories, an empty file, a 1-byte
    /// file) under `src`; the names of the top-level items, the tree last.
    pub fn content(&self, files: &[(&'static str, u64)], seed: u64) -> Vec<&'static str> {
        let src = &self.src;
        fs::create_dir_all(src.join("tree/nested/deeper")).unwrap();
        for (i, (name, len)) in files.iter().enumerate() {
            write_random(&src.join(name), *len, seed + i as u64).unwrap();
        }
        write_random(&src.join("tree/a.bin"), 300_000, seed + 100).unwrap();
        write_random(&src.join("tree/one_byte"), 1, seed + 101).unwrap();
        write_random(&src.join("tree/nested/b.txt"), 10, seed + 102).unwrap();
        write_random(&src.join("tree/nested/deeper/c.bin"), 2_500_000, seed + 103).unwrap();
        write_random(&src.join("tree/nested/empty"), 0, seed + 104).unwrap();
        files.iter().map(|(n, _)| *n).chain(["tree"]).collect()
    }
}

/// Waits up to 10 s for `net`'s LAN DHT table to hold `n` peers.
pub async fn wait_lan_peers(net: &Network, n: usize) {
    for _ in 0..100 {
        if net.dht_stats().await.unwrap().lan_peers >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the LAN table never reached {n} peers: {:?}", net.dht_stats().await.unwrap());
}

/// Every file under `a` equals the file at the same place under `b`, and no entry is missing
/// or extra.
pub fn assert_same_tree(a: &Path, b: &Path) {
    if fs::metadata(a).unwrap().is_file() {
        assert!(fs::read(a).unwrap() == fs::read(b).unwrap(), "{} differs from {}", b.display(), a.display());
        return;
    }
    let names = |d: &Path| {
        let mut v: Vec<_> = fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name()).collect();
        v.sort();
        v
    };
    assert_eq!(names(a), names(b), "entries of {}", b.display());
    for n in names(a) {
        assert_same_tree(&a.join(&n), &b.join(&n));
    }
}
