//! Peer-assisted delivery with an HTTP origin: a daemon configured with another node's
//! trustless gateway as `Origins.Gateways` fetches from it when no peer can serve, moves to
//! peers once they can, and falls back to the origin when they cannot.

use std::path::Path;

use crate::cairn;
use crate::daemon::{wait_for, Daemon};
use crate::integrity::unique_bytes;
use crate::scrub::{metric, metrics};

fn ok(repo: &Path, args: &[&str]) -> Vec<u8> {
    let out = cairn().arg("--repo").arg(repo).args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

fn add(repo: &Path, file: &Path) -> String {
    String::from_utf8(ok(repo, &["add", "-Q", file.to_str().unwrap()])).unwrap().trim().to_owned()
}

fn counters(repo: &Path) -> (u64, u64) {
    let page = metrics(repo);
    (
        metric(&page, "cairn_origin_blocks_total").unwrap_or_else(|| panic!("no origin metrics:\n{page}")),
        metric(&page, "cairn_bitswap_blocks_received_total").unwrap_or(0),
    )
}

#[test]
fn blocks_come_from_the_origin_then_from_peers_and_from_the_origin_again_when_peers_fail() {
    let tmp = tempfile::tempdir().unwrap();
    let (origin, peer, client) = (tmp.path().join("origin"), tmp.path().join("peer"), tmp.path().join("client"));
    for repo in [&origin, &peer, &client] {
        ok(repo, &["init", "--profile", "test"]);
    }
    // Three files of 1, 4 and 2 MiB (4, 16 and 8 leaves): the first two on both the origin and
    // the peer, the last on the origin only.
    let data = unique_bytes(7 << 20);
    let files: Vec<(std::path::PathBuf, &[u8])> = [(0usize, 1usize << 20), (1 << 20, 5 << 20), (5 << 20, 7 << 20)]
        .iter()
        .enumerate()
        .map(|(i, (a, b))| {
            let f = tmp.path().join(format!("f{i}.bin"));
            std::fs::write(&f, &data[*a..*b]).unwrap();
            (f, &data[*a..*b])
        })
        .collect();
    let cids: Vec<String> = files.iter().map(|(f, _)| add(&origin, f)).collect();
    assert_eq!(add(&peer, &files[0].0), cids[0]);
    assert_eq!(add(&peer, &files[1].0), cids[1]);

    let _origin_daemon = Daemon::start(&origin);
    let origin_url = wait_for(&origin.join("gateway"));
    ok(&client, &["config", "--json", "Origins.Gateways", &format!("[\"{}\"]", origin_url.trim())]);
    ok(&client, &["config", "--json", "Origins.FastStart", "2"]);
    ok(&client, &["config", "Origins.StallTimeout", "500ms"]);
    ok(&client, &["config", "Gateway.RetrievalTimeout", "10s"]);
    let _client_daemon = Daemon::start(&client);

    // No peers at all: everything comes from the origin, verified, and is kept.
    assert_eq!(ok(&client, &["cat", &cids[0]]), files[0].1);
    let (from_origin, from_peers) = counters(&client);
    assert!(from_origin >= 5, "root and 4 leaves from the origin, got {from_origin}");
    assert_eq!(from_peers, 0);

    // With a peer that has the content, the peer carries nearly all of it.
    let peer_daemon = Daemon::start(&peer);
    ok(&client, &["swarm", "connect", &peer_daemon.swarm_addr()]);
    assert_eq!(ok(&client, &["cat", &cids[1]]), files[1].1);
    let (origin_now, peers_now) = counters(&client);
    assert!(peers_now - from_peers >= 13, "peers sent {} of 17 blocks", peers_now - from_peers);
    // At most the fast start: blocks fetched ahead of the reader are left to the peer that has
    // them, and it delivers before the reader waits past the stall timeout.
    assert!(origin_now - from_origin <= 2, "the origin sent {} blocks", origin_now - from_origin);

    // The peer lacks the last file: after the stall timeout the origin supplies it.
    assert_eq!(ok(&client, &["cat", &cids[2]]), files[2].1);
    let (origin_last, _) = counters(&client);
    assert!(origin_last - origin_now >= 9, "root and 8 leaves from the origin, got {}", origin_last - origin_now);
    drop(peer_daemon);
}

/// `Bitswap.ServerEnabled = false` gives nothing to peers; `Swarm.RateLimit.UploadBudget`
/// stops serving once a day's budget is spent.
#[test]
fn a_node_can_opt_out_of_serving_or_cap_what_it_gives() {
    let tmp = tempfile::tempdir().unwrap();
    let (closed, metered, client) = (tmp.path().join("closed"), tmp.path().join("metered"), tmp.path().join("client"));
    for repo in [&closed, &metered, &client] {
        ok(repo, &["init", "--profile", "test"]);
    }
    let data = unique_bytes(2 << 20);
    let file = tmp.path().join("f.bin");
    std::fs::write(&file, &data).unwrap();
    let cid = add(&closed, &file);
    assert_eq!(add(&metered, &file), cid);
    ok(&closed, &["config", "--json", "Bitswap.ServerEnabled", "false"]);
    ok(&metered, &["config", "Swarm.RateLimit.UploadBudget", "600KB"]);
    ok(&client, &["config", "Gateway.RetrievalTimeout", "2s"]);
    let closed_daemon = Daemon::start(&closed);
    let client_daemon = Daemon::start(&client);
    ok(&client, &["swarm", "connect", &closed_daemon.swarm_addr()]);
    let fails = |what: &str| {
        let out = cairn().arg("--repo").arg(&client).args(["cat", &cid]).output().unwrap();
        assert!(!out.status.success(), "{what}: the file was served");
    };
    fails("a node that opted out");
    assert_eq!(metric(&metrics(&closed), "cairn_bitswap_sent_bytes_total"), Some(0));
    drop(closed_daemon);

    let metered_daemon = Daemon::start(&metered);
    ok(&client, &["swarm", "connect", &metered_daemon.swarm_addr()]);
    fails("a node over its budget");
    let sent = metric(&metrics(&metered), "cairn_bitswap_sent_bytes_total").unwrap();
    // Blocks go one serving turn at a time: the budget is passed by at most the last turn.
    assert!((600_000..1_100_000).contains(&sent), "sent {sent} bytes on a 600 KB budget");
    drop(client_daemon);
}
