//! The swarm harness's Kubo v0.22 (`kubo.py serve --listen`, in node namespaces of their own
//! behind shaped links): where it agrees to listen.
//!
//! Wire interop with today's Kubo (0.43.1: Bitswap, the DHT, a reprovide sweep, gossipsub, the
//! RPC API) is in `kubo_wire.rs`; this file keeps only the check of the harness's own guard,
//! which runs in a loopback-only network namespace (`cairn_testnet::netns`).

use std::fs;
use std::time::Duration;

use cairn_testnet::netns;
use cairn_testnet::reference::{self, Reference};

/// Whether this process should run the body (inside the namespace, with Kubo installed).
fn enter(name: &str) -> bool {
    reference::require(Reference::Kubo) && netns::enter_private_netns(name)
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
    if !enter("kubo_harness::kubo_takes_a_bridge_address_only_in_a_harness_namespace") {
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
