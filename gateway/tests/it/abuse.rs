//! Hostile and broken clients: each gets a clear 4xx or is cut off, and the gateway keeps
//! serving everyone else.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_gateway::GatewayConfig;
use cairn_node::add::AddOptions;
use hyper::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{online, send_heads, served_at_once, small_pool, Gateway};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traversal_and_encoding_tricks_get_400() {
    let gw = Gateway::start().await;
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("d/a")).unwrap();
    std::fs::write(tmp.path().join("d/a/f"), b"f").unwrap();
    std::fs::write(tmp.path().join("d/secret"), b"s").unwrap();
    let root =
        gw.node.add(&tmp.path().join("d"), &AddOptions { recursive: true, ..Default::default() }, true, &mut |_| {});
    let root = root.unwrap().cid;
    for trick in [
        "a/../secret",
        "a/%2e%2e/secret",
        "a/%2E%2e/secret",
        "a/./f",
        "a%2Ff",
        "a%5Cf",
        "a/f%00",
        "a/%ff",
        "%c0%ae%c0%ae/secret",
    ] {
        let r = gw.get(&format!("/ipfs/{root}/{trick}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{trick}: {}", r.text());
    }
    // Double encoding is a literal name, which does not exist.
    let r = gw.get(&format!("/ipfs/{root}/a/%252e%252e")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let long = format!("/ipfs/{root}/{}", "x/".repeat(3000));
    assert_eq!(gw.get(&long).await.status, StatusCode::URI_TOO_LONG);
    let deep = format!("/ipfs/{root}/{}", "x/".repeat(300));
    assert_eq!(gw.get(&deep).await.status, StatusCode::BAD_REQUEST);
    let r = gw.request("GET", &format!("/ipfs/{root}/a/f"), &[("x-big", &"h".repeat(32 << 10))]).await;
    assert_eq!(r.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    // And the gateway still serves.
    assert_eq!(gw.get(&format!("/ipfs/{root}/a/f")).await.text(), "f");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_and_others_are_served() {
    let config = GatewayConfig { header_timeout: Duration::from_secs(1), ..Default::default() };
    let gw = Gateway::start_with(config).await;
    let cid = gw.add_bytes(b"still here", &AddOptions::default());

    // Slowloris: many connections that send half a request head and stall.
    let mut stalled = Vec::new();
    for i in 0..50 {
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        // Half of them send half a head, the others nothing at all.
        if i % 2 == 0 {
            s.write_all(b"GET /ipfs/").await.unwrap();
        }
        stalled.push(s);
    }
    // Everyone else is served meanwhile.
    let r = gw.get(&format!("/ipfs/{cid}")).await;
    assert_eq!(r.text(), "still here");

    // Each stalled connection is closed once the head timeout passes.
    let started = Instant::now();
    for mut s in stalled {
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "a stalled connection was kept open");
        let text = String::from_utf8_lossy(&buf);
        assert!(buf.is_empty() || text.starts_with("HTTP/1.1 408"), "unexpected reply: {text}");
    }
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_mid_download_stops_the_read() {
    let gw = Gateway::start().await;
    let data = crate::pseudo_random(64 << 20, 9);
    let cid = gw.add_bytes(&data, &AddOptions::default());
    for _ in 0..20 {
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(format!("GET /ipfs/{cid} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await.unwrap();
        let mut first = [0u8; 4096];
        let n = s.read(&mut first).await.unwrap();
        assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
        drop(s);
    }
    // The abandoned reads ended; a full download still works.
    let r = gw.get(&format!("/ipfs/{cid}")).await;
    assert!(r.body == data);
}

/// A thousand requests for blocks nobody has wait on the runtime, not on blocking threads:
/// local content is served at once while every one of them still waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_for_missing_blocks_do_not_starve_local_reads() {
    use cairn_node::merkle::hash::{CidFormat, RAW};

    let gw = Gateway::start().await;
    let net = online(&gw.node, Duration::from_secs(60)).await;
    let local = gw.add_bytes(b"served at once", &AddOptions::default());

    let waiting = send_heads(
        gw.addr,
        (0..1000u32).map(|i| {
            let cid = CidFormat::default().cid(RAW, &[b"nobody has this ".as_slice(), &i.to_be_bytes()].concat());
            format!("GET /ipfs/{cid} HTTP/1.1\r\nHost: x\r\n\r\n")
        }),
    )
    .await;
    // Let every one of them reach its wait.
    tokio::time::sleep(Duration::from_secs(2)).await;
    served_at_once(gw.get(&format!("/ipfs/{local}")), "the missing ones").await;
    // They are all still waiting (none was answered or dropped).
    for s in &waiting {
        let mut buf = [0u8; 1];
        match s.try_read(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => panic!("a request for a missing block ended early: {other:?}"),
        }
    }
    drop(waiting);
    net.shutdown().await;
}

/// The same below the root: a thousand requests whose root is here and whose next block is
/// not (a file's body and its sniffed head, a CAR of it, a path through a directory to a
/// file nobody has) stop at the missing block and wait for it on the runtime. Local content
/// is served at once while every one of them still waits, and the CARs that began keep
/// their connections open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_waiting_below_the_root_hold_no_thread() {
    use cairn_node::merkle::chunker::ChunkerSpec;

    let gw = Gateway::start().await;
    let net = online(&gw.node, Duration::from_secs(60)).await;
    let local = gw.add_bytes(b"served at once", &AddOptions::default());

    // DAGs made elsewhere, of which the gateway's node gets only the root blocks.
    let scratch_dir = tempfile::tempdir().unwrap();
    let scratch = cairn_node::Node::init(scratch_dir.path(), cairn_node::config::Profile::Test).unwrap();
    let import = cairn_node::merkle::importer::ImportOptions { chunker: ChunkerSpec::Size(1024), ..Default::default() };
    let opts = AddOptions { import, recursive: true, ..AddOptions::default() };
    let mut roots = Vec::new();
    for i in 0..10u32 {
        let data = crate::pseudo_random(8 * 1024, u64::from(i) + 100);
        roots.push((scratch.add_reader(&data[..], &opts, true).unwrap().cid, None));
        let tree = scratch_dir.path().join(format!("tree{i}"));
        std::fs::create_dir_all(&tree).unwrap();
        std::fs::write(tree.join("a.txt"), &data).unwrap();
        let dir = scratch.add(&tree, &opts, true, &mut |_| {}).unwrap().cid;
        roots.push((dir, Some("a.txt")));
    }
    for (root, _) in &roots {
        let block = cairn_node::merkle::Block::new_unchecked(*root, scratch.block_get(root).unwrap());
        cairn_node::store::BlockStore::put_many(gw.node.repo().store(), &[block]).unwrap();
    }
    let heads = (0..1000usize).map(|i| {
        let (root, name) = roots[i % roots.len()];
        let path = match (name, i % 3) {
            (Some(name), _) => format!("/ipfs/{root}/{name}"),
            (None, 0) => format!("/ipfs/{root}?format=car"),
            (None, _) => format!("/ipfs/{root}"),
        };
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n")
    });
    let waiting = send_heads(gw.addr, heads).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    served_at_once(gw.get(&format!("/ipfs/{local}")), "the waiting ones").await;
    // None has ended: each either has nothing yet, or the start of a CAR and no end.
    let mut began = 0;
    for s in &waiting {
        let mut buf = vec![0u8; 64 << 10];
        match s.try_read(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Ok(n) if n > 0 => {
                assert!(buf.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n.min(200)]));
                began += 1;
            }
            other => panic!("a request waiting below its root ended early: {other:?}"),
        }
    }
    assert!(began > 0, "no CAR began: the test did not reach the walk");
    drop(waiting);
    net.shutdown().await;
}

/// Content the gateway's node lacks is fetched block by block from a peer, each read stopping
/// at every block it lacks and going on once the block is here: the file, its CAR and a
/// sharded directory's listing come out whole and in order, as the peer's own would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_fetched_block_by_block_is_served_whole() {
    use cairn_node::merkle::chunker::ChunkerSpec;

    let gw = Gateway::start().await;
    let net = online(&gw.node, Duration::from_secs(30)).await;
    let seed_dir = tempfile::tempdir().unwrap();
    let seed =
        Arc::new(cairn_node::Node::init(&seed_dir.path().join("repo"), cairn_node::config::Profile::Test).unwrap());
    let seed_net = online(&seed, Duration::from_secs(30)).await;
    net.connect(seed_net.listen_addrs()[0].clone()).await.unwrap();

    // A file of 128 small blocks, and a directory of 3,000 files, sharded (its entries'
    // names and CIDs add up past 256 KiB).
    const PAD: &str = "padding-the-name-so-that-the-directory-is-sharded";
    let import =
        cairn_node::merkle::importer::ImportOptions { chunker: ChunkerSpec::Size(16 * 1024), ..Default::default() };
    let opts = AddOptions { import, recursive: true, ..AddOptions::default() };
    let data = crate::pseudo_random(2 << 20, 77);
    let file = seed.add_reader(&data[..], &opts, true).unwrap().cid;
    let other = seed.add_reader(&crate::pseudo_random(2 << 20, 78)[..], &opts, true).unwrap().cid;
    let tree = seed_dir.path().join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    for i in 0..3000 {
        std::fs::write(tree.join(format!("entry-{i:04}-{PAD}.txt")), i.to_string()).unwrap();
    }
    let dir = seed.add(&tree, &opts, true, &mut |_| {}).unwrap().cid;
    let ranged = seed.add_reader(&crate::pseudo_random(2 << 20, 79)[..], &opts, true).unwrap().cid;
    let tree = seed_dir.path().join("sharded");
    std::fs::create_dir_all(&tree).unwrap();
    for i in 0..3000 {
        std::fs::write(tree.join(format!("s-{i:04}-{}", "y".repeat(60))), format!("s{i}")).unwrap();
    }
    let sharded = seed.add(&tree, &opts, true, &mut |_| {}).unwrap().cid;
    for d in [dir, sharded] {
        let stat = seed.stat_path(&cairn_node::IpfsPath { root: d, rest: String::new() }).unwrap();
        assert_eq!(stat.kind, cairn_node::merkle::exporter::NodeKind::HamtDirectory);
    }

    // An entity-bytes CAR and a sharded directory's entity CAR, each stopping at every block
    // it lacks, come out as they do once every block is here.
    for (path, blocks) in [
        (format!("/ipfs/{ranged}?format=car&dag-scope=entity&entity-bytes=500000:1500000"), 63),
        (format!("/ipfs/{sharded}?format=car&dag-scope=entity"), 13),
    ] {
        let first = gw.get(&path).await;
        assert_eq!(first.status, StatusCode::OK, "{path}: {}", first.text());
        let again = gw.get(&path).await;
        assert!(first.body == again.body, "{path}: the CAR differs from the one written from local blocks");
        let n = crate::car_blocks(&again.body).1.len();
        assert!(n >= blocks, "{path}: {n} blocks");
    }

    let r = gw.get(&format!("/ipfs/{other}?format=car")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let expected = cairn_node::merkle::car::write_dag(&seed.source(), &other, Vec::new()).unwrap();
    assert!(
        r.body == expected,
        "the CAR differs from the seed's ({} bytes, expected {})",
        r.body.len(),
        expected.len()
    );
    let r = gw.get(&format!("/ipfs/{file}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body == data, "the file differs");
    let r = gw.get(&format!("/ipfs/{dir}/")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let listing = r.text();
    for i in 0..3000 {
        assert_eq!(listing.matches(&format!(">entry-{i:04}-{PAD}.txt<")).count(), 1, "entry {i} in the listing");
    }
    net.shutdown().await;
    seed_net.shutdown().await;
}

/// Requests past `Gateway.MaxConcurrentRequests` get 429 at once; a client that stops
/// reading is cut off after the write timeout and frees its slot; a response that outlasts
/// `Gateway.MaxRequestDuration` is cut off though its client reads on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_bounds_requests_in_count_and_time() {
    let config = GatewayConfig {
        max_concurrent_requests: 2,
        write_timeout: Duration::from_secs(1),
        max_request_duration: Duration::from_secs(3),
        ..Default::default()
    };
    let gw = Gateway::start_with(config).await;
    let data = crate::pseudo_random(32 << 20, 11);
    let cid = gw.add_bytes(&data, &AddOptions::default());
    let get = format!("GET /ipfs/{cid} HTTP/1.1\r\nHost: x\r\n\r\n");
    // Two clients that ask and never read hold both slots.
    let mut stuck = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(get.as_bytes()).await.unwrap();
        stuck.push(s);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = gw.get(&format!("/ipfs/{cid}")).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text());
    assert_eq!(r.header("retry-after"), "60");
    // The write timeout cuts them off, and their slots come back.
    let started = Instant::now();
    loop {
        let r = gw.request("HEAD", &format!("/ipfs/{cid}"), &[]).await;
        if r.status == StatusCode::OK {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "the stuck clients still hold their slots");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for mut s in stuck {
        let mut sink = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut sink)).await;
        assert!(read.is_ok() && sink.len() < data.len(), "a client that stopped reading was not cut off");
    }
    // A reader of a trickle: cut off at the request's deadline.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(get.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut got = 0usize;
    let mut buf = [0u8; 16 << 10];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await.unwrap() {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = started.elapsed();
    assert!(got < data.len(), "the whole file went out at a trickle in {took:?}");
    assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(8), "cut after {took:?}");
}

/// Clients that ask for a large file, its CAR (whole or a range) or a large directory's
/// listing and read nothing hold no blocking thread once their channels are full: with a
/// pool of 16 blocking threads and 50 such clients (20 of them listings), a small local file
/// is still served at once, and the stalled downloads are neither ended nor finished.
#[test]
fn clients_that_stop_reading_hold_no_thread() {
    small_pool().block_on(async {
        let gw = Gateway::start().await;
        let big = gw.add_bytes(&crate::pseudo_random(48 << 20, 31), &AddOptions::default());
        let small = gw.add_bytes(b"served at once", &AddOptions::default());
        // A directory whose listing page is some 7 MiB.
        let tmp = tempfile::tempdir().unwrap();
        for i in 0..10_000 {
            std::fs::write(tmp.path().join(format!("{i:05}-{}", "x".repeat(200))), i.to_string()).unwrap();
        }
        let opts = AddOptions { recursive: true, ..Default::default() };
        let dir = gw.node.add(tmp.path(), &opts, true, &mut |_| {}).unwrap().cid;
        let heads = (0..50).map(|i| {
            let path = match i % 10 {
                0 => format!("/ipfs/{big}?format=car"),
                5 => format!("/ipfs/{big}?format=car&dag-scope=entity&entity-bytes=0:40000000"),
                1 | 2 | 6 | 7 => format!("/ipfs/{dir}/"),
                _ => format!("/ipfs/{big}"),
            };
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        });
        let mut stalled = send_heads(gw.addr, heads).await;
        // Let every producer fill its channel and stop.
        tokio::time::sleep(Duration::from_secs(3)).await;
        served_at_once(gw.get(&format!("/ipfs/{small}")), "clients that stopped reading").await;
        // The stalled downloads are still there, and read on to the end when their clients do:
        // a listing whole and in order,
        let page = crate::read_answer(&mut stalled[1]).await;
        assert!(page == gw.get(&format!("/ipfs/{dir}/")).await.body, "the listing read on after stalling differs");
        // and a file.
        let mut s = stalled.pop().unwrap();
        let mut all = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut all)).await;
        assert!(all.len() > 48 << 20, "a stalled download resumed and got {} bytes", all.len());
    });
}
