//! What the node does on a local network only when told to: find peers with mDNS and map a
//! port with UPnP. DNS addresses, which are resolved only when one is dialed. And AutoNAT,
//! which needs public addresses.
//!
//! Each test runs in a network namespace of its own (`cairn_testnet::netns`). The mDNS and
//! AutoNAT tests add a veth pair inside that namespace (mDNS does not run on loopback, and
//! AutoNAT dials back only public addresses); their packets stay in the namespace.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use cairn_node::config::Profile;
use cairn_node::net::{Multiaddr, NetConfig, Network, PeerId, PortMapping, Protocol};
use cairn_node::Node;
use cairn_testnet::netns;

/// A node's network listening on `listen`, with `edit` applied to its config.
fn spawn(
    dir: &std::path::Path,
    listen: &str,
    edit: impl FnOnce(&mut NetConfig),
    rt: &tokio::runtime::Runtime,
) -> Network {
    let node = Arc::new(Node::init(dir, Profile::Test).unwrap());
    let mut cfg = NetConfig::new(vec![listen.parse().unwrap()]);
    edit(&mut cfg);
    rt.block_on(cairn_node::online::start(&node, cfg)).unwrap().0
}

async fn peers(net: &Network) -> Vec<PeerId> {
    net.peers().await.unwrap().into_iter().map(|p| p.peer).collect()
}

/// Polls `done` every 200 ms until it holds; panics after `secs` seconds.
async fn wait_for<F: std::future::Future<Output = bool>>(what: &str, secs: u64, mut done: impl FnMut() -> F) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !done().await {
        assert!(tokio::time::Instant::now() < deadline, "{what}: not within {secs} s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn run(cmd: &str) {
    let status = Command::new("sh").args(["-c", cmd]).status().unwrap();
    assert!(status.success(), "{cmd}: {status}");
}

#[test]
fn mdns_finds_peers_on_the_local_network_only_when_turned_on() {
    if !netns::enter_private_netns("lan::mdns_finds_peers_on_the_local_network_only_when_turned_on") {
        return;
    }
    // An interface that carries multicast, inside this namespace only.
    run("ip link add v0 type veth peer name v1 && ip link set v1 up && ip link set v0 up \
         && ip addr add 10.77.0.1/24 dev v0");
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listen = "/ip4/10.77.0.1/tcp/0";
    let a = spawn(&dir.path().join("a"), listen, |c| c.mdns = true, &rt);
    let b = spawn(&dir.path().join("b"), listen, |c| c.mdns = true, &rt);
    // The default: mDNS off.
    let quiet = spawn(&dir.path().join("quiet"), listen, |_| {}, &rt);
    rt.block_on(async {
        wait_for("the two mDNS nodes find each other", 30, || async {
            peers(&a).await.contains(&b.peer_id()) && peers(&b).await.contains(&a.peer_id())
        })
        .await;
        // Found each other, and nobody found the node with mDNS off, nor did it find anyone.
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(peers(&a).await, vec![b.peer_id()]);
        assert_eq!(peers(&b).await, vec![a.peer_id()]);
        assert!(peers(&quiet).await.is_empty());
    });
}

#[test]
fn upnp_is_off_by_default_and_says_when_no_gateway_answers() {
    if !netns::enter_private_netns("lan::upnp_is_off_by_default_and_says_when_no_gateway_answers") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let off = spawn(&dir.path().join("off"), "/ip4/127.0.0.1/tcp/0", |_| {}, &rt);
    let on = spawn(&dir.path().join("on"), "/ip4/127.0.0.1/tcp/0", |c| c.upnp = true, &rt);
    // On every interface: its address is found only after the interfaces are listed, and the
    // search's answer comes first. Then it arrives while the node is still waiting for its
    // listen address, and it must not be lost there.
    let on_any = spawn(&dir.path().join("on_any"), "/ip4/0.0.0.0/tcp/0", |c| c.upnp = true, &rt);
    rt.block_on(async {
        assert_eq!(off.port_mapping().await.unwrap(), PortMapping::Off);
        // This namespace has no router: the search ends with no gateway, at once when the
        // search cannot be sent (as here, where a multicast packet has no route), or after its
        // 10 s timeout.
        for node in [&on, &on_any] {
            wait_for("the UPnP search ends", 30, || async {
                match node.port_mapping().await.unwrap() {
                    PortMapping::NoGateway => true,
                    PortMapping::Searching => false,
                    other => panic!("no gateway can answer here, yet the state is {other:?}"),
                }
            })
            .await;
        }
        // Still a working node.
        let peer = on.connect(off.listen_addrs()[0].clone()).await.unwrap();
        assert_eq!(peer, off.peer_id());
    });
}

#[test]
fn a_dns_address_is_resolved_when_dialed() {
    if !netns::enter_private_netns("lan::a_dns_address_is_resolved_when_dialed") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let a = spawn(&dir.path().join("a"), "/ip4/127.0.0.1/tcp/0", |_| {}, &rt);
    let b = spawn(&dir.path().join("b"), "/ip4/127.0.0.1/tcp/0", |_| {}, &rt);
    let port = a.listen_addrs()[0]
        .iter()
        .find_map(|p| match p {
            Protocol::Tcp(port) => Some(port),
            _ => None,
        })
        .unwrap();
    // `localhost` comes from the hosts file; were it missing, the query could not leave this
    // namespace.
    let addr: Multiaddr = format!("/dns4/localhost/tcp/{port}/p2p/{}", a.peer_id()).parse().unwrap();
    let peer = rt.block_on(b.connect(addr)).unwrap();
    assert_eq!(peer, a.peer_id());
}

/// AutoNAT: a node asks a connected peer to dial it back; when that works on a public
/// address, the node counts itself reachable and its WAN DHT turns server. The addresses
/// (11.0.0.0/24, public ones) exist only on a veth pair inside this test's namespace.
#[test]
fn autonat_finds_a_reachable_node_and_its_wan_dht_serves() {
    if !netns::enter_private_netns("lan::autonat_finds_a_reachable_node_and_its_wan_dht_serves") {
        return;
    }
    run("ip link add v0 type veth peer name v1 && ip link set v1 up && ip link set v0 up \
         && ip addr add 11.0.0.1/24 dev v0 && ip addr add 11.0.0.2/24 dev v1");
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = spawn(&dir.path().join("server"), "/ip4/11.0.0.2/tcp/0", |_| {}, &rt);
    let asker = spawn(&dir.path().join("asker"), "/ip4/0.0.0.0/tcp/0", |_| {}, &rt);
    rt.block_on(async {
        assert!(!asker.dht_stats().await.unwrap().wan_server, "a WAN DHT client until found reachable");
        asker.connect(server.listen_addrs()[0].clone()).await.unwrap();
        // AutoNAT's first probe comes 15 s after start.
        wait_for("AutoNAT finds the node reachable", 60, || async { asker.dht_stats().await.unwrap().wan_server })
            .await;
    });
}
