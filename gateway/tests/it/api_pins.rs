//! `pin/update`, as IPFS Cluster's connector uses it to pin a new version of a DAG: the pin
//! moves from FROM to TO once TO is whole, FROM stays with `unpin=false`, only the blocks of
//! TO that the node lacks come from peers, and Kubo's refusals come word for word.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cairn_node::config::Profile;
use cairn_node::merkle::{Block, Cid};
use cairn_node::store::PinMode;
use cairn_node::{IpfsPath, Node};
use hyper::StatusCode;
use serde_json::json;

use crate::{online, pseudo_random, small_chunks, ApiNode};

/// Two versions of a tree under `at`, differing in `a.txt` only; both hold `sub/big.bin`
/// (1 MiB in 16 KiB chunks: 64 leaves and their root).
fn two_versions(at: &Path) -> (PathBuf, PathBuf) {
    let big = pseudo_random(1 << 20, 61);
    let [v1, v2] = ["v1", "v2"].map(|v| at.join(v));
    for (dir, text) in [(&v1, "first"), (&v2, "second")] {
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("a.txt"), text).unwrap();
        std::fs::write(dir.join("sub/big.bin"), &big).unwrap();
    }
    (v1, v2)
}

/// Adds `dir` to `node`, pinned or not; its root.
fn add(node: &Node, dir: &Path, pin: bool) -> Cid {
    node.add(dir, &small_chunks(), pin, &mut |_| {}).unwrap().cid
}

/// The operator's pin of `cid`: its mode and name, if pinned.
fn pin(node: &Node, cid: &Cid) -> Option<(PinMode, Option<String>)> {
    node.pin_of(cid).unwrap().map(|p| (p.mode, p.name))
}

/// An API node offline holding two versions of a tree, neither pinned: the node, the
/// directory of the versions (`v1`, `v2`) and their roots.
async fn offline_with_two_versions() -> (ApiNode, tempfile::TempDir, Cid, Cid) {
    let api = ApiNode::start(false).await;
    let dir = tempfile::tempdir().unwrap();
    let (v1, v2) = two_versions(dir.path());
    let (from, to) = (add(&api.node, &v1, false), add(&api.node, &v2, false));
    (api, dir, from, to)
}

/// The answer's JSON.
fn body(r: &crate::Reply) -> serde_json::Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.text()))
}

/// The pin moves from FROM to TO, which takes FROM's name; with `unpin=false` both stay; paths
/// name what they resolve to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pin_update_moves_the_pin_or_keeps_both() {
    let (api, _dir, from, to) = offline_with_two_versions().await;
    api.node.pin_add(&IpfsPath { root: from, rest: String::new() }, true, Some("site".into())).unwrap();

    let r = api.post(&format!("pin/update?arg={from}&arg={to}")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(body(&r), json!({"Pins": [from.to_string(), to.to_string()]}));
    assert_eq!(pin(&api.node, &to), Some((PinMode::Recursive, Some("site".into()))));
    assert_eq!(pin(&api.node, &from), None);

    // Back, keeping TO (IPFS Cluster's way), with paths.
    let r = api.post(&format!("pin/update?arg=/ipfs/{to}&arg=/ipfs/{from}/&unpin=false")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(body(&r), json!({"Pins": [to.to_string(), from.to_string()]}));
    assert_eq!(pin(&api.node, &to).map(|p| p.0), Some(PinMode::Recursive));
    assert_eq!(pin(&api.node, &from).map(|p| p.0), Some(PinMode::Recursive));

    // A path below the root names the CID it resolves to.
    let sub = api.node.resolve(&IpfsPath { root: from, rest: "sub".into() }).unwrap();
    let r = api.post(&format!("pin/update?arg={to}&arg=/ipfs/{from}/sub")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(body(&r), json!({"Pins": [to.to_string(), sub.to_string()]}));
    assert_eq!(pin(&api.node, &sub).map(|p| p.0), Some(PinMode::Recursive));
    assert_eq!(pin(&api.node, &to), None);

    // From a CID to itself: nothing changes.
    let r = api.post(&format!("pin/update?arg={from}&arg={from}")).await;
    assert_eq!(body(&r), json!({"Pins": [from.to_string(), from.to_string()]}));
    assert_eq!(pin(&api.node, &from).map(|p| p.0), Some(PinMode::Recursive));
}

/// Kubo 0.43.1's refusals, byte for byte: FROM not pinned recursively (not at all, or only
/// directly), TO pinned recursively already. A TO whose blocks cannot be had fails and leaves
/// FROM pinned and TO not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_or_failed_updates_leave_the_pins_as_they_were() {
    let (api, dir, from, to) = offline_with_two_versions().await;
    let kubo = |message: &str| json!({"Message": message, "Code": 0, "Type": "error"});
    let not_from = kubo("'from' cid was not recursively pinned already");
    let kubo_error = |r: &crate::Reply| {
        assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.text());
        body(r)
    };

    let r = api.post(&format!("pin/update?arg={from}&arg={to}")).await;
    assert_eq!(kubo_error(&r), not_from);
    api.node.pin_add(&IpfsPath { root: from, rest: String::new() }, false, None).unwrap();
    let r = api.post(&format!("pin/update?arg={from}&arg={to}")).await;
    assert_eq!(kubo_error(&r), not_from, "a direct pin is not enough");
    assert_eq!(pin(&api.node, &to), None);

    api.node.pin_add(&IpfsPath { root: from, rest: String::new() }, true, None).unwrap();
    api.node.pin_add(&IpfsPath { root: to, rest: String::new() }, true, None).unwrap();
    let r = api.post(&format!("pin/update?arg={from}&arg={to}")).await;
    assert_eq!(kubo_error(&r), kubo("'to' cid was already recursively pinned"));
    assert_eq!(pin(&api.node, &from).map(|p| p.0), Some(PinMode::Recursive));
    let r = api.post(&format!("pin/update?arg={from}")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert!(r.text().contains("argument \\\"to-path\\\" is required"), "{}", r.text());

    // A third version of which the node holds only the root: offline, it cannot be whole.
    let scratch = tempfile::tempdir().unwrap();
    let other = Node::init(&scratch.path().join("repo"), Profile::Test).unwrap();
    let v3 = dir.path().join("v2");
    std::fs::write(v3.join("a.txt"), "third").unwrap();
    let third = add(&other, &v3, false);
    let root = Block::new_unchecked(third, other.block_get(&third).unwrap());
    cairn_node::store::BlockStore::put_many(api.node.repo().store(), &[root]).unwrap();
    let r = api.post(&format!("pin/update?arg={from}&arg={third}")).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.text());
    assert!(r.text().contains("not found"), "{}", r.text());
    assert_eq!(pin(&api.node, &from).map(|p| p.0), Some(PinMode::Recursive));
    assert_eq!(pin(&api.node, &third), None);
}

/// Online, TO's blocks come from a peer, but only those FROM lacks: the peer holds nothing
/// else (the 1 MiB file TO shares with FROM is not there to fetch), and exactly those blocks
/// arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_blocks_the_node_lacks_are_fetched() {
    let api = ApiNode::start(true).await;
    let dir = tempfile::tempdir().unwrap();
    let (v1, v2) = two_versions(dir.path());
    let from = add(&api.node, &v1, true);

    // The seed holds TO's blocks that are not FROM's, and nothing more.
    let scratch = tempfile::tempdir().unwrap();
    let maker = Node::init(&scratch.path().join("maker"), Profile::Test).unwrap();
    let (made_from, to) = (add(&maker, &v1, true), add(&maker, &v2, true));
    assert_eq!(made_from, from);
    let shared: std::collections::HashSet<Cid> = maker.dag_cids(&from).unwrap().into_iter().collect();
    let all = maker.dag_cids(&to).unwrap();
    let new: Vec<Block> = all
        .iter()
        .filter(|c| !shared.contains(c))
        .map(|c| Block::new_unchecked(*c, maker.block_get(c).unwrap()))
        .collect();
    // The new root and the new a.txt, of some 68 blocks.
    assert_eq!((new.len(), all.len() > 60), (2, true), "{} new of {}", new.len(), all.len());
    let seed = Arc::new(Node::init(&scratch.path().join("seed"), Profile::Test).unwrap());
    cairn_node::store::BlockStore::put_many(seed.repo().store(), &new).unwrap();
    let seed_net = online(&seed, Duration::from_secs(30)).await;
    api.net().connect(seed_net.listen_addrs()[0].clone()).await.unwrap();

    let r = api.post(&format!("pin/update?arg={from}&arg={to}&unpin=false")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(body(&r), json!({"Pins": [from.to_string(), to.to_string()]}));
    assert_eq!(pin(&api.node, &to).map(|p| p.0), Some(PinMode::Recursive));
    assert_eq!(pin(&api.node, &from).map(|p| p.0), Some(PinMode::Recursive));
    let stats = api.net().stats().await.unwrap();
    assert_eq!(stats.blocks_received, 2, "{stats:?}");
    assert_eq!(seed_net.stats().await.unwrap().blocks_sent, 2);
    api.net().shutdown().await;
    seed_net.shutdown().await;
}

/// `pin/add?max-depth=N` (how IPFS Cluster pins a sharded DAG's shards, with 1): only the
/// blocks down to N links below the root are fetched and kept; the pin is listed as
/// recursive, a deeper one replaces it, and `max-depth=-1` is the whole DAG.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_max_depth_pin_fetches_and_keeps_only_its_levels() {
    let api = ApiNode::start(true).await;
    let dir = tempfile::tempdir().unwrap();
    let (v1, _) = two_versions(dir.path());
    let scratch = tempfile::tempdir().unwrap();
    let seed = Arc::new(Node::init(&scratch.path().join("seed"), Profile::Test).unwrap());
    // root -> a.txt, sub -> big.bin -> 64 leaves.
    let root = add(&seed, &v1, true);
    let seed_net = online(&seed, Duration::from_secs(30)).await;
    api.net().connect(seed_net.listen_addrs()[0].clone()).await.unwrap();
    let received = async || api.net().stats().await.unwrap().blocks_received;

    let r = api.post(&format!("pin/add?arg={root}&recursive=true&progress=true&max-depth=1")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let last = r.text().lines().last().map(str::to_owned).unwrap_or_default();
    assert_eq!(serde_json::from_str::<serde_json::Value>(&last).unwrap(), json!({"Pins": [root.to_string()]}));
    assert_eq!(pin(&api.node, &root).map(|p| p.0), Some(PinMode::Depth(1)));
    assert_eq!(received().await, 3, "the root, a.txt and sub");
    let r = api.post(&format!("pin/ls?arg={root}&type=recursive")).await;
    assert_eq!(body(&r)["Keys"][root.to_string()]["Type"], "recursive", "{}", r.text());
    // Blocks below the pin's depth (big.bin's root and a leaf) are not kept by it.
    let deeper: Vec<Block> = seed.dag_cids(&root).unwrap()[3..5]
        .iter()
        .map(|c| Block::new_unchecked(*c, seed.block_get(c).unwrap()))
        .collect();
    cairn_node::store::BlockStore::put_many(api.node.repo().store(), &deeper).unwrap();
    assert_eq!(api.node.stat().unwrap().store.blocks, 5);
    let gc = api.post("repo/gc").await;
    assert_eq!(gc.status, StatusCode::OK, "{}", gc.text());
    assert_eq!(api.node.stat().unwrap().store.blocks, 3);

    let r = api.post(&format!("pin/add?arg={root}&max-depth=2")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(pin(&api.node, &root).map(|p| p.0), Some(PinMode::Depth(2)));
    assert_eq!(received().await, 4, "and big.bin's root");

    let r = api.post(&format!("pin/add?arg={root}&max-depth=-1")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(pin(&api.node, &root).map(|p| p.0), Some(PinMode::Recursive));
    assert_eq!(received().await, 68, "then the 64 leaves");

    let r = api.post(&format!("pin/add?arg={root}&max-depth=deep")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    api.net().shutdown().await;
    seed_net.shutdown().await;
}

/// `pin/ls` of a recursive pin over 100,001 blocks: as one answer it would hold them all, so it
/// is refused with a 400 that says to stream; streamed, one line a pin comes out, every pin
/// once; a pin asked for by `arg` is found among them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pin_ls_streams_and_caps_what_it_holds() {
    use cairn_node::merkle::hash::{CidFormat, RAW};
    use cairn_node::merkle::importer::{build_directory, DirEntry, ImportOptions};

    let api = ApiNode::start(false).await;
    let n = cairn_gateway::api::MAX_PIN_LS_ENTRIES + 1;
    let leaves: Vec<Block> = (0..n)
        .map(|i| {
            let data = bytes::Bytes::from(format!("leaf {i}"));
            Block::new_unchecked(CidFormat { version: 1, ..Default::default() }.cid(RAW, &data), data)
        })
        .collect();
    let entries = leaves
        .iter()
        .enumerate()
        .map(|(i, b)| DirEntry { name: format!("e{i:06}"), cid: *b.cid(), tsize: 8, size: 8 })
        .collect::<Vec<_>>();
    let mut blocks = Vec::new();
    let mut sink = |b: Block| {
        blocks.push(b);
        Ok(())
    };
    let dir = build_directory(entries, &ImportOptions::default(), &mut sink).unwrap().cid;
    let store = api.node.repo().store();
    cairn_node::store::BlockStore::put_many(store, &leaves).unwrap();
    cairn_node::store::BlockStore::put_many(store, &blocks).unwrap();
    api.node.pin_add(&IpfsPath { root: dir, rest: String::new() }, true, None).unwrap();

    let r = api.post("pin/ls").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", &r.text()[..r.text().len().min(300)]);
    assert!(r.text().contains("stream=true"), "{}", r.text());

    let r = api.post("pin/ls?stream=true").await;
    assert_eq!(r.status, StatusCode::OK);
    let mut listed = std::collections::BTreeMap::new();
    for line in r.text().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let (cid, kind) = (v["Cid"].as_str().unwrap().to_owned(), v["Type"].as_str().unwrap().to_owned());
        assert!(listed.insert(cid, kind).is_none(), "listed twice: {line}");
    }
    assert_eq!(listed.get(&dir.to_string()).map(String::as_str), Some("recursive"));
    for leaf in &leaves {
        assert_eq!(listed.get(&leaf.cid().to_string()).map(String::as_str), Some("indirect"), "{}", leaf.cid());
    }
    let indirect = api.node.indirect_pins().unwrap();
    assert_eq!(listed.len(), api.node.pins().unwrap().len() + indirect.len());

    let leaf = leaves[n / 2].cid();
    let r = api.post(&format!("pin/ls?arg={leaf}")).await;
    assert_eq!(body(&r), json!({"Keys": {leaf.to_string(): {"Type": "indirect", "Name": ""}}}));
    let r = api.post(&format!("pin/ls?arg={leaf}&type=recursive")).await;
    assert_eq!(body(&r), json!({"Message": format!("path '{leaf}' is not pinned"), "Code": 0, "Type": "error"}));
}
