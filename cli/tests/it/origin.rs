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

/// The fields of the daemon's "fast start from the origin as a CAR" log lines:
/// `(offset, blocks)` of each.
fn car_fast_starts(log: &Path) -> Vec<(u64, u64)> {
    let log = std::fs::read_to_string(log).unwrap();
    let field = |line: &str, key: &str| -> Option<u64> {
        let at = line.find(&format!(" {key}="))? + key.len() + 2;
        line[at..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
    };
    log.lines()
        .filter(|l| l.contains("fast start from the origin as a CAR"))
        .filter_map(|l| Some((field(l, "offset")?, field(l, "blocks")?)))
        .collect()
}

/// `Origins.Format = "car"`: a file read's fast start is one CAR request for that stretch of
/// the file (`entity-bytes` from where the read starts), and the rest comes block by block;
/// no leaf is fetched twice.
#[test]
fn a_reads_fast_start_comes_from_the_origin_as_one_car() {
    use std::io::{Read as _, Write as _};
    let tmp = tempfile::tempdir().unwrap();
    let (origin, client) = (tmp.path().join("origin"), tmp.path().join("client"));
    for repo in [&origin, &client] {
        ok(repo, &["init", "--profile", "test"]);
    }
    // Two files of 3 MiB: 12 leaves of 256 KiB under one root each.
    let data = unique_bytes(6 << 20);
    let (a, b) = data.split_at(3 << 20);
    let cids: Vec<String> = [a, b]
        .iter()
        .enumerate()
        .map(|(i, part)| {
            let f = tmp.path().join(format!("f{i}.bin"));
            std::fs::write(&f, part).unwrap();
            add(&origin, &f)
        })
        .collect();
    let _origin_daemon = Daemon::start(&origin);
    let origin_url = wait_for(&origin.join("gateway"));
    ok(&client, &["config", "--json", "Origins.Gateways", &format!("[\"{}\"]", origin_url.trim())]);
    ok(&client, &["config", "--json", "Origins.FastStart", "4"]);
    ok(&client, &["config", "Origins.Format", "car"]);
    ok(&client, &["config", "Origins.StallTimeout", "500ms"]);
    ok(&client, &["config", "Gateway.RetrievalTimeout", "10s"]);
    let log = tmp.path().join("client.log");
    let _client_daemon = Daemon::start_logging(&client, Some(("cairn_node::net=debug", &log)));

    // From the start: the root alone (the reader needs it to know the file), then the rest of
    // the fast start (3 of 4 blocks) as one CAR of the root and leaves 0 to 2, then the other
    // 9 leaves one by one. Only the root comes twice: the CAR must start from it.
    assert_eq!(ok(&client, &["cat", &cids[0]]), a);
    assert_eq!(car_fast_starts(&log), [(0, 4)]);
    let page = metrics(&client);
    assert_eq!(metric(&page, "cairn_origin_blocks_total"), Some(1 + 4 + 9), "{page}");
    assert_eq!(metric(&page, "cairn_origin_failures_total"), Some(0));

    // A new burst (after 5 s without fetches) reading from 2 MiB in, through the gateway: the
    // root, then a CAR from there (the root and leaves 8 to 10), then leaf 11; the leaves
    // before 2 MiB are never asked for.
    std::thread::sleep(std::time::Duration::from_millis(5500));
    let gateway = wait_for(&client.join("gateway"));
    let addr = gateway.trim().strip_prefix("http://").unwrap().to_owned();
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(60))).unwrap();
    write!(s, "GET /ipfs/{}?filename=x.bin HTTP/1.0\r\nHost: {addr}\r\nRange: bytes={}-\r\n\r\n", cids[1], 2 << 20)
        .unwrap();
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).unwrap();
    let split = reply.windows(4).position(|w| w == b"\r\n\r\n").expect("no end of head") + 4;
    assert!(String::from_utf8_lossy(&reply[..split]).contains(" 206 "), "{}", String::from_utf8_lossy(&reply[..split]));
    assert!(reply[split..] == b[2 << 20..], "the range read back differs");
    assert_eq!(car_fast_starts(&log), [(0, 4), (2 << 20, 4)]);
    let page = metrics(&client);
    assert_eq!(metric(&page, "cairn_origin_blocks_total"), Some(14 + 1 + 4 + 1), "{page}");
    assert_eq!(metric(&page, "cairn_origin_failures_total"), Some(0));
}
