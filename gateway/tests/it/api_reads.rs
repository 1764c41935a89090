//! The RPC API's reads (`cat`, `ls`, `get`, `dag/export`) of content the node lacks: they
//! wait for blocks on the runtime, holding no blocking thread, and go on from where they
//! stopped, so what comes out is whole and in order.

use std::sync::Arc;
use std::time::Duration;

use cairn_node::add::AddOptions;
use cairn_node::config::Profile;
use cairn_node::merkle::chunker::ChunkerSpec;
use cairn_node::merkle::importer::ImportOptions;
use cairn_node::merkle::Cid;
use cairn_node::Node;
use hyper::StatusCode;

use crate::{online, pseudo_random, read_answer, send_heads, served_at_once, small_chunks, small_pool, ApiNode};

/// Pads names so that a directory of a few thousand entries is sharded (its names and CIDs
/// add up past 256 KiB).
const PAD: &str = "padding-the-name-so-that-the-directory-is-sharded";

/// A directory of `n` small files (sharded past some 3,000), added to `node`.
fn add_tree(node: &Node, at: &std::path::Path, n: usize) -> Cid {
    std::fs::create_dir_all(at).unwrap();
    for i in 0..n {
        std::fs::write(at.join(format!("entry-{i:05}-{PAD}.txt")), format!("entry {i}")).unwrap();
    }
    let dir = node.add(at, &small_chunks(), true, &mut |_| {}).unwrap().cid;
    if n >= 3000 {
        let stat = node.stat_path(&cairn_node::IpfsPath { root: dir, rest: String::new() }).unwrap();
        assert_eq!(stat.kind, cairn_node::merkle::exporter::NodeKind::HamtDirectory);
    }
    dir
}

/// With a pool of 16 blocking threads, 200 API reads stopped at blocks nobody has (a file's
/// leaves, a whole CID, a directory's children, a tree to tar, a DAG to export) would hold
/// every thread if they waited on them; they wait on the runtime instead, and a local `cat`
/// is answered at once while every one of them still waits.
#[test]
fn api_reads_waiting_for_blocks_hold_no_thread() {
    small_pool().block_on(async {
        let api = ApiNode::start(true).await;
        let local = api.node.add_reader(&b"served at once"[..], &AddOptions::default(), true).unwrap().cid;

        // DAGs made elsewhere, of which the API's node gets only the root blocks.
        let scratch_dir = tempfile::tempdir().unwrap();
        let scratch = Node::init(&scratch_dir.path().join("repo"), Profile::Test).unwrap();
        let file = scratch.add_reader(&pseudo_random(256 << 10, 5)[..], &small_chunks(), true).unwrap().cid;
        let dir = add_tree(&scratch, &scratch_dir.path().join("tree"), 40);
        for root in [file, dir] {
            let block = cairn_node::merkle::Block::new_unchecked(root, scratch.block_get(&root).unwrap());
            cairn_node::store::BlockStore::put_many(api.node.repo().store(), &[block]).unwrap();
        }
        let nobody = cairn_node::merkle::hash::CidFormat::default().cid(cairn_node::merkle::hash::RAW, b"nobody");
        let commands = [
            format!("cat?arg={file}"),
            format!("cat?arg={nobody}"),
            format!("ls?arg={dir}"),
            format!("ls?arg={dir}&stream=true"),
            format!("get?arg={dir}"),
            format!("dag/export?arg={file}"),
            format!("cat?arg={dir}/entry-00007-{PAD}.txt"),
        ];
        let heads = (0..200)
            .map(|i| format!("POST /api/v0/{} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", commands[i % commands.len()]));
        let waiting = send_heads(api.addr, heads).await;
        // Let every one of them reach its wait.
        tokio::time::sleep(Duration::from_secs(2)).await;
        served_at_once(api.post(&format!("cat?arg={local}")), "the waiting reads").await;
        // None has ended: each has nothing yet, or the head of a streamed answer and no end.
        for s in &waiting {
            let mut buf = vec![0u8; 64 << 10];
            match s.try_read(&mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Ok(n) if n > 0 => {
                    let text = String::from_utf8_lossy(&buf[..n]);
                    assert!(text.starts_with("HTTP/1.1 200"), "{}", &text[..text.len().min(300)]);
                    assert!(!text.ends_with("0\r\n\r\n"), "a waiting read ended: {text}");
                }
                other => panic!("a read waiting for blocks ended early: {other:?}"),
            }
        }
        drop(waiting);
        api.net().shutdown().await;
    });
}

/// Content the API's node lacks is fetched from a peer as the reads go, each read stopping
/// at blocks it lacks and going on once they are here: `cat` (whole and a range), `ls` of a
/// sharded directory (as one answer and streamed), `get` of a tree and `dag/export` come out
/// exactly as the peer's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_reads_of_content_fetched_from_a_peer_come_out_whole() {
    let api = ApiNode::start(true).await;
    let seed_dir = tempfile::tempdir().unwrap();
    let seed = Arc::new(Node::init(&seed_dir.path().join("repo"), Profile::Test).unwrap());
    let seed_net = online(&seed, Duration::from_secs(30)).await;
    api.net().connect(seed_net.listen_addrs()[0].clone()).await.unwrap();

    let data = pseudo_random(2 << 20, 21);
    let file = seed.add_reader(&data[..], &small_chunks(), true).unwrap().cid;
    let ranged = seed.add_reader(&pseudo_random(2 << 20, 22)[..], &small_chunks(), true).unwrap().cid;
    let exported = seed.add_reader(&pseudo_random(2 << 20, 23)[..], &small_chunks(), true).unwrap().cid;
    let listed = add_tree(&seed, &seed_dir.path().join("listed"), 3000);
    let streamed = add_tree(&seed, &seed_dir.path().join("streamed"), 3000);
    let tree = seed_dir.path().join("tree");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    std::fs::write(tree.join("sub/big.bin"), pseudo_random(1 << 20, 24)).unwrap();
    std::fs::write(tree.join("small.txt"), b"small").unwrap();
    let tree = seed.add(&tree, &small_chunks(), true, &mut |_| {}).unwrap().cid;

    let r = api.post(&format!("cat?arg={file}")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(r.body == data, "cat: {} bytes, not the file's", r.body.len());

    let r = api.post(&format!("cat?arg={ranged}&offset=1000000&length=500000")).await;
    let mut want = Vec::new();
    seed.cat(&cairn_node::IpfsPath { root: ranged, rest: String::new() }, 1_000_000, Some(500_000), &mut want).unwrap();
    assert!(r.body == want, "cat of a range: {} bytes, not the range's", r.body.len());

    let r = api.post(&format!("ls?arg={listed}")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let links = v["Objects"][0]["Links"].as_array().unwrap();
    assert_eq!(links.len(), 3000);
    let mut names: Vec<&str> = links.iter().map(|l| l["Name"].as_str().unwrap()).collect();
    assert!(links.iter().all(|l| l["Type"] == 2), "every entry is stated a file");
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), 3000, "each entry once");

    let r = api.post(&format!("ls?arg={streamed}&stream=true")).await;
    let lines: Vec<serde_json::Value> =
        r.text().lines().map(|l| serde_json::from_str(l).unwrap()).collect::<Vec<serde_json::Value>>();
    assert_eq!(lines.len(), 3000);
    let mut want = Vec::new();
    seed.ls_each(&cairn_node::IpfsPath { root: streamed, rest: String::new() }, &mut |item, _| {
        want.push(item.name);
        Ok(())
    })
    .unwrap();
    let got: Vec<&str> = lines.iter().map(|l| l["Objects"][0]["Links"][0]["Name"].as_str().unwrap()).collect();
    assert_eq!(got, want, "the streamed listing, in the directory's order");
    assert!(lines.iter().all(|l| l["Objects"][0]["Links"][0]["Type"] == 2));

    let r = api.post(&format!("get?arg={tree}")).await;
    let mut want = Vec::new();
    seed.get_tar(&cairn_node::IpfsPath { root: tree, rest: String::new() }, &tree.to_string(), &mut want, &mut |_| {})
        .unwrap();
    assert!(r.body == want, "get: a tar of {} bytes, not the peer's {}", r.body.len(), want.len());

    let r = api.post(&format!("dag/export?arg={exported}")).await;
    let want = cairn_node::merkle::car::write_dag(&seed.source(), &exported, Vec::new()).unwrap();
    assert!(r.body == want, "dag/export: a CAR of {} bytes, not the peer's {}", r.body.len(), want.len());

    api.net().shutdown().await;
    seed_net.shutdown().await;
}

/// `cat`, `dag/export`, `get` and streamed `ls` clients that read nothing hold no blocking
/// thread once their channels are full: with 16 blocking threads and 48 of them (16 tars
/// and 16 listings, each more than the kernel and the body take in), a small `cat` is
/// answered at once.
#[test]
fn api_clients_that_stop_reading_hold_no_thread() {
    small_pool().block_on(async {
        let api = ApiNode::start(true).await;
        let big = api.node.add_reader(&pseudo_random(32 << 20, 41)[..], &AddOptions::default(), true).unwrap().cid;
        let small = api.node.add_reader(&b"served at once"[..], &AddOptions::default(), true).unwrap().cid;
        let dir = tempfile::tempdir().unwrap();
        // A tree holding the big file, and a directory whose streamed `ls` is some 7 MiB.
        let tree = dir.path().join("tree");
        std::fs::create_dir(&tree).unwrap();
        std::fs::write(tree.join("big"), pseudo_random(32 << 20, 41)).unwrap();
        let tree = api.node.add(&tree, &small_chunks(), true, &mut |_| {}).unwrap().cid;
        let listed = dir.path().join("listed");
        std::fs::create_dir(&listed).unwrap();
        for i in 0..20_000 {
            std::fs::write(listed.join(format!("{i:05}-{}", "x".repeat(200))), i.to_string()).unwrap();
        }
        let listed = api.node.add(&listed, &small_chunks(), true, &mut |_| {}).unwrap().cid;
        let heads = (0..48).map(|i| {
            let command = match i % 6 {
                0 => format!("dag/export?arg={big}"),
                1 | 2 => format!("get?arg={tree}"),
                3 | 4 => format!("ls?stream=true&arg={listed}"),
                _ => format!("cat?arg={big}"),
            };
            format!("POST /api/v0/{command} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        });
        let mut stalled = send_heads(api.addr, heads).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        served_at_once(api.post(&format!("cat?arg={small}")), "clients that stopped reading").await;
        // A stalled tar and a stalled listing, read on, come out whole and in order.
        let tar = read_answer(&mut stalled[1]).await;
        let mut want = Vec::new();
        api.node
            .get_tar(
                &cairn_node::IpfsPath { root: tree, rest: String::new() },
                &tree.to_string(),
                &mut want,
                &mut |_| {},
            )
            .unwrap();
        assert!(tar == want, "the tar read on after stalling differs ({} bytes, {} wanted)", tar.len(), want.len());
        let lines = read_answer(&mut stalled[3]).await;
        let names: Vec<String> = String::from_utf8(lines.to_vec())
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["Objects"][0]["Links"][0]["Name"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        let mut want = Vec::new();
        api.node
            .ls_each(&cairn_node::IpfsPath { root: listed, rest: String::new() }, &mut |item, _| {
                want.push(item.name);
                Ok(())
            })
            .unwrap();
        assert_eq!(want.len(), 20_000);
        assert!(names == want, "the listing read on after stalling differs ({} entries)", names.len());
        drop(stalled);
        api.net().shutdown().await;
    });
}

/// `pin/add?progress=true` (how IPFS Cluster pins): while the DAG is fetched from a peer,
/// `{"Progress": n}` lines with n growing, then `{"Pins": [root]}`; the pin is made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pin_reports_its_progress_while_it_fetches() {
    let api = ApiNode::start(true).await;
    let seed_dir = tempfile::tempdir().unwrap();
    let seed = Arc::new(Node::init(&seed_dir.path().join("repo"), Profile::Test).unwrap());
    let seed_net = online(&seed, Duration::from_secs(30)).await;
    api.net().connect(seed_net.listen_addrs()[0].clone()).await.unwrap();
    // 16,384 leaves of 4 KiB (and their parents): long enough to fetch that progress is
    // reported.
    let import = ImportOptions { chunker: ChunkerSpec::Size(4096), ..Default::default() };
    let opts = AddOptions { import, ..AddOptions::default() };
    let root = seed.add_reader(&pseudo_random(64 << 20, 31)[..], &opts, true).unwrap().cid;

    let r = api.post(&format!("pin/add?arg={root}&progress=true")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.headers.get("x-chunked-output").map(|v| v.as_bytes()), Some(&b"1"[..]));
    let lines: Vec<serde_json::Value> = r.text().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let (last, progress) = lines.split_last().unwrap();
    assert_eq!(last["Pins"], serde_json::json!([root.to_string()]), "{lines:?}");
    let counts: Vec<u64> = progress.iter().map(|l| l["Progress"].as_u64().unwrap()).collect();
    let blocks = seed.stat().unwrap().store.blocks;
    assert!(!counts.is_empty(), "no progress while {blocks} blocks were fetched");
    assert!(counts.windows(2).all(|w| w[0] < w[1]) && counts.last() <= Some(&blocks), "{counts:?} of {blocks}");
    assert!(api.node.pin_of(&root).unwrap().is_some());
}
