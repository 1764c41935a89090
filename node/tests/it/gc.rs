//! GC removes exactly what no pin reaches, and never races an add.

use std::collections::HashSet;
use std::fs;
use std::sync::atomic::{AtomicBool, Ordering};

use cairn_merkle::importer::ImportOptions;
use cairn_merkle::links::links;
use cairn_merkle::Cid;
use cairn_node::add::AddOptions;
use cairn_node::store::{PinMode, PinOwner};
use cairn_node::{BlockStore, IpfsPath, Node};

use crate::{node, noise};

fn opts() -> AddOptions {
    // Small chunks: many blocks per file, so sharing is visible block by block.
    let import = ImportOptions { chunker: cairn_merkle::chunker::ChunkerSpec::Size(1024), ..Default::default() };
    AddOptions { import, recursive: true, ..AddOptions::default() }
}

fn reachable(node: &Node, root: &Cid) -> HashSet<Vec<u8>> {
    let store = node.repo().store();
    let mut seen = HashSet::new();
    let mut stack = vec![*root];
    while let Some(c) = stack.pop() {
        if seen.insert(c.hash().to_bytes()) {
            let data = BlockStore::get(store, &c).unwrap().unwrap_or_else(|| panic!("{c} missing"));
            stack.extend(links(&c, &data).unwrap());
        }
    }
    seen
}

fn stored(node: &Node) -> HashSet<Vec<u8>> {
    node.repo().store().keys().map(|k| k.unwrap()).collect()
}

#[test]
fn gc_removes_exactly_the_unreachable_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path());
    // `shared` sits inside the pinned tree and is also added on its own; `lonely` is only in
    // the unpinned tree, which also holds `shared`.
    let shared = noise(1, 20_000);
    let tree = dir.path().join("tree");
    fs::create_dir_all(tree.join("sub")).unwrap();
    fs::write(tree.join("sub/shared.bin"), &shared).unwrap();
    fs::write(tree.join("own.bin"), noise(2, 9_000)).unwrap();
    let other = dir.path().join("other");
    fs::create_dir_all(&other).unwrap();
    fs::write(other.join("shared.bin"), &shared).unwrap();
    fs::write(other.join("lonely.bin"), noise(3, 7_000)).unwrap();

    let pinned = node.add(&tree, &opts(), true, &mut |_| {}).unwrap();
    let unpinned = node.add(&other, &opts(), true, &mut |_| {}).unwrap();
    node.pin_rm(&IpfsPath { root: unpinned.cid, rest: String::new() }).unwrap();

    let keep = reachable(&node, &pinned.cid);
    let before = stored(&node);
    let expected_removed: HashSet<_> = before.difference(&keep).cloned().collect();
    assert!(!expected_removed.is_empty());
    // The shared file's blocks are in both trees.
    assert!(reachable(&node, &unpinned.cid).intersection(&keep).count() > 10);

    let report = node.gc().unwrap();
    assert_eq!(stored(&node), keep, "GC must keep exactly the pinned DAG");
    assert_eq!(report.removed_blocks as usize, expected_removed.len());
    assert_eq!(node.stat().unwrap().store.blocks as usize, keep.len());
    // The pinned tree still reads in full, the shared file included.
    let mut out = Vec::new();
    node.cat(&IpfsPath { root: pinned.cid, rest: "sub/shared.bin".into() }, 0, None, &mut out).unwrap();
    assert_eq!(out, shared);

    // Unpinning the rest frees everything, and repo stat shows it.
    node.pin_rm(&IpfsPath { root: pinned.cid, rest: String::new() }).unwrap();
    node.gc().unwrap();
    let stat = node.stat().unwrap();
    assert_eq!((stat.store.blocks, stat.store.bytes), (0, 0));
}

#[test]
fn adds_running_during_gc_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path());
    let files: Vec<_> = (0..12)
        .map(|i| {
            let p = dir.path().join(format!("f{i}"));
            fs::write(&p, noise(100 + i, 50_000 + i as usize * 999)).unwrap();
            p
        })
        .collect();
    let done = AtomicBool::new(false);
    let roots = std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                node.gc().unwrap();
            }
        });
        let roots: Vec<Cid> = files.iter().map(|f| node.add(f, &opts(), true, &mut |_| {}).unwrap().cid).collect();
        done.store(true, Ordering::Relaxed);
        roots
    });
    node.gc().unwrap();
    for (root, file) in roots.iter().zip(&files) {
        let mut out = Vec::new();
        node.cat(&IpfsPath { root: *root, rest: String::new() }, 0, None, &mut out).unwrap();
        assert_eq!(out, fs::read(file).unwrap());
    }
}

/// `Datastore.StorageMax` holds: an add that would pass it fails with an error naming it,
/// pins nothing and leaves the repo sound; a collection frees what it wrote; a higher limit
/// lets it through.
#[test]
fn storage_max_refuses_what_would_pass_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut n = Node::init(&dir.path().join("repo"), cairn_node::config::Profile::Test).unwrap();
    let mut config = n.repo().config().clone();
    config.datastore.storage_max = "1MB".into();
    n.repo_mut().set_config(config.clone()).unwrap();
    let small = n.add_reader(&noise(1, 300_000)[..], &opts(), true).unwrap();
    let err = n.add_reader(&noise(2, 900_000)[..], &opts(), true).unwrap_err();
    assert!(err.to_string().contains("Datastore.StorageMax"), "{err}");
    let pins = n.pins().unwrap();
    assert_eq!(pins.iter().map(|p| p.cid).collect::<Vec<_>>(), vec![small.cid]);
    assert!(n.verify(&mut |_| {}).unwrap().is_empty());
    assert!(n.repo().store().stats().unwrap().bytes <= 1_000_000);
    // What the failed add wrote is garbage; a collection leaves the pinned file whole.
    n.gc().unwrap();
    assert_eq!(stored(&n), reachable(&n, &small.cid));
    // The limit is read again from the config, and a bad value is refused with the key.
    config.datastore.storage_max = "3MB".into();
    n.repo_mut().set_config(config.clone()).unwrap();
    n.add_reader(&noise(2, 900_000)[..], &opts(), true).unwrap();
    let bad = cairn_node::settings::set_key(n.repo().config(), "Datastore.StorageMax", "lots".into()).unwrap_err();
    assert!(bad.to_string().contains("Datastore.StorageMax"), "{bad}");
    drop(n);
    // Across a reopen too.
    let n = Node::open(&dir.path().join("repo")).unwrap();
    let err = n.add_reader(&noise(3, 2_500_000)[..], &opts(), true).unwrap_err();
    assert!(err.to_string().contains("Datastore.StorageMax"), "{err}");
}

/// A collection runs beside adds and pins: they go on while it marks and sweeps, and what they
/// write or pin meanwhile is kept, though the collection read the pins before them.
#[test]
fn gc_runs_beside_adds_and_pins_and_keeps_what_they_make() {
    let dir = tempfile::tempdir().unwrap();
    let n = std::sync::Arc::new(node(dir.path()));
    // Garbage enough to keep the collection busy for a while.
    for chunk in 0..100u32 {
        let blocks: Vec<cairn_merkle::Block> = (0..1000u32)
            .map(|i| {
                let data = bytes::Bytes::from(format!("garbage {chunk} {i}").into_bytes());
                let cid = cairn_merkle::hash::CidFormat::default().cid(cairn_merkle::hash::RAW, &data);
                cairn_merkle::Block::new_unchecked(cid, data)
            })
            .collect();
        n.repo().store().put_many(&blocks).unwrap();
    }
    // A DAG held but not pinned when the collection starts, pinned while it runs.
    let later = n.add_reader(&noise(7, 200_000)[..], &opts(), false).unwrap();
    let collecting = {
        let n = n.clone();
        std::thread::spawn(move || n.gc().unwrap())
    };
    while !n.repo().store().protecting() {
        assert!(!collecting.is_finished(), "the collection ended before it could be watched");
        std::thread::yield_now();
    }
    let added = n.add_reader(&noise(8, 200_000)[..], &opts(), true).unwrap();
    // Unpinned when the collection began, `later` was garbage to it: the pin either walks it
    // whole first (and the collection keeps it), or meets a block already gone and fails.
    // Never is a pin made over a DAG with holes.
    let pinned_later = match n.pin_add(&IpfsPath { root: later.cid, rest: String::new() }, true, None) {
        Ok(_) => true,
        Err(cairn_node::NodeError::NotFound(_)) => false,
        Err(e) => panic!("{e}"),
    };
    assert!(n.repo().store().protecting(), "the add and the pin waited for the whole collection");
    let report = collecting.join().unwrap();
    assert!(report.removed_blocks >= 100_000, "{report:?}");
    let held = stored(&n);
    let roots = if pinned_later { vec![added.cid, later.cid] } else { vec![added.cid] };
    for root in roots {
        for key in reachable(&n, &root) {
            assert!(held.contains(&key), "a block of {root} was collected");
        }
    }
    // A second collection, with nothing beside it, keeps exactly the pinned DAGs.
    n.gc().unwrap();
    let live: HashSet<Vec<u8>> = n.pins().unwrap().iter().flat_map(|p| reachable(&n, &p.cid)).collect();
    assert_eq!(stored(&n), live);
}

/// Bytes handed over a channel, read as they come: an upload that trickles in.
struct Trickle {
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    held: std::io::Cursor<Vec<u8>>,
}

impl std::io::Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let n = self.held.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            match self.rx.recv() {
                Ok(more) => self.held = std::io::Cursor::new(more),
                Err(_) => return Ok(0),
            }
        }
    }
}

/// An add that trickles in holds up a collection, not the other adds: while the collection
/// waits for it, a new add goes through at once; the collection gives up after its wait with
/// a clear error, and runs once the slow add is done.
#[test]
fn a_slow_add_holds_up_the_collector_but_not_other_adds() {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    let dir = tempfile::tempdir().unwrap();
    let node = Arc::new(node(dir.path()));
    let (feed, rx) = std::sync::mpsc::channel();
    feed.send(noise(1, 64 << 10)).unwrap();
    let slow = {
        let node = node.clone();
        let trickle = Trickle { rx, held: std::io::Cursor::new(Vec::new()) };
        std::thread::spawn(move || node.add_reader(trickle, &opts(), true).unwrap())
    };
    std::thread::sleep(Duration::from_millis(300));
    let gc = {
        let node = node.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            (node.gc_within(Duration::from_secs(2)), started.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    // A new add, while the collector waits for the slow one.
    let (done, quick) = std::sync::mpsc::channel();
    {
        let node = node.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            let added = node.add_reader(&b"quick"[..], &AddOptions::default(), true).unwrap();
            let _ = done.send((added, started.elapsed()));
        });
    }
    let (quick, took) = quick.recv_timeout(Duration::from_secs(10)).expect("a new add waited behind the collector");
    assert!(took < Duration::from_secs(1), "a new add took {took:?}");
    let (result, waited) = gc.join().unwrap();
    match result {
        Err(cairn_node::NodeError::Busy(why)) => assert!(why.contains("repo gc"), "{why}"),
        other => panic!("the collection did not give up: {other:?}"),
    }
    assert!(waited >= Duration::from_secs(2) && waited < Duration::from_secs(5), "gave up after {waited:?}");
    // The slow add ends; the collection then runs and keeps both adds.
    feed.send(noise(2, 64 << 10)).unwrap();
    drop(feed);
    let slow = slow.join().unwrap();
    node.gc().unwrap();
    let mut out = Vec::new();
    node.cat(&IpfsPath { root: slow.cid, rest: String::new() }, 0, None, &mut out).unwrap();
    assert_eq!(out.len(), 128 << 10);
    let mut out = Vec::new();
    node.cat(&IpfsPath { root: quick.cid, rest: String::new() }, 0, None, &mut out).unwrap();
    assert_eq!(out, b"quick");
}

#[test]
fn a_direct_pin_inside_a_pinned_dag_keeps_its_children() {
    // The collector met pins in key order: a direct pin of a file's node, met before the
    // recursive pin of the tree that holds it, marked that node alone, and the tree's walk
    // then stopped at it as already live, leaving the file's chunks to be collected.
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path());
    let tree = dir.path().join("tree");
    fs::create_dir_all(&tree).unwrap();
    for i in 0..16u64 {
        fs::write(tree.join(format!("f{i}.bin")), noise(100 + i, 5_000)).unwrap();
    }
    let root = node.add(&tree, &opts(), true, &mut |_| {}).unwrap().cid;
    let store = node.repo().store();
    let data = BlockStore::get(store, &root).unwrap().unwrap();
    let files = links(&root, &data).unwrap();
    assert_eq!(files.len(), 16);
    // Every file's node (each has chunks under it) pinned directly as well, so that some sort
    // before the root whatever the CIDs.
    for f in &files {
        node.pin_add(&IpfsPath { root: *f, rest: String::new() }, false, None).unwrap();
    }
    let before = stored(&node);
    let report = node.gc().unwrap();
    assert_eq!(report.removed_blocks, 0);
    assert_eq!(stored(&node), before);
    let mut out = Vec::new();
    node.cat(&IpfsPath { root, rest: "f7.bin".into() }, 0, None, &mut out).unwrap();
    assert_eq!(out, noise(107, 5_000));
}

/// The blocks at most `depth` links below `root`, each at its shortest distance (breadth first).
fn within(node: &Node, root: &Cid, depth: u32) -> HashSet<Vec<u8>> {
    let store = node.repo().store();
    let mut seen = HashSet::from([root.hash().to_bytes()]);
    let mut level = vec![*root];
    for _ in 0..depth {
        let mut next = Vec::new();
        for c in level {
            let data = BlockStore::get(store, &c).unwrap().unwrap();
            for l in links(&c, &data).unwrap() {
                if seen.insert(l.hash().to_bytes()) {
                    next.push(l);
                }
            }
        }
        level = next;
    }
    seen
}

#[test]
fn a_depth_limited_pin_keeps_exactly_its_levels() {
    // `a/x.bin` and `x.bin` are the same file: its node is met first two levels down (through
    // `a`, with no level left under it) and then one level down, where its chunks are in reach.
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path());
    let tree = dir.path().join("tree");
    fs::create_dir_all(tree.join("a/deeper")).unwrap();
    let x = noise(7, 6_000);
    fs::write(tree.join("a/x.bin"), &x).unwrap();
    fs::write(tree.join("x.bin"), &x).unwrap();
    fs::write(tree.join("a/deeper/y.bin"), noise(8, 6_000)).unwrap();
    let root = node.add(&tree, &opts(), true, &mut |_| {}).unwrap().cid;
    let whole = reachable(&node, &root);
    let path = IpfsPath { root, rest: String::new() };
    node.pin_rm(&path).unwrap();
    for depth in [3, 2, 1] {
        let keep = within(&node, &root, depth);
        assert!(keep.len() < whole.len(), "depth {depth}: {} of {}", keep.len(), whole.len());
        node.pin_add_mode(PinOwner::Operator, &path, PinMode::Depth(depth), None).unwrap();
        assert_eq!(node.pin_of(&root).unwrap().unwrap().mode, PinMode::Depth(depth));
        let before = stored(&node).len();
        let report = node.gc().unwrap();
        assert_eq!(stored(&node), keep, "depth {depth}");
        assert_eq!(report.removed_blocks as usize, before - keep.len());
        // What the pin reaches checks whole; what it does not reach is not missing.
        let verify = node.pin_verify().unwrap();
        assert_eq!(verify.len(), 1);
        assert!(verify[0].1.missing.is_empty() && verify[0].1.corrupt.is_empty(), "{:?}", verify[0].1);
        assert_eq!(verify[0].1.blocks as usize, keep.len());
        // Kubo's `indirect`: the rest of what the pin keeps.
        assert_eq!(node.indirect_pins().unwrap().len(), keep.len() - 1);
        // The whole DAG cannot be pinned now, and a shallower pin does not replace this one.
        assert!(node.pin_add(&path, true, None).is_err());
        let shallower = if depth > 1 { PinMode::Depth(depth - 1) } else { PinMode::Direct };
        node.pin_add_mode(PinOwner::Operator, &path, shallower, None).unwrap();
        assert_eq!(node.pin_of(&root).unwrap().unwrap().mode, PinMode::Depth(depth));
        node.pin_rm(&path).unwrap();
    }
    // Depth 0 is a direct pin.
    node.pin_add_mode(PinOwner::Operator, &path, PinMode::Depth(0), None).unwrap();
    assert_eq!(node.pin_of(&root).unwrap().unwrap().mode, PinMode::Direct);
    node.pin_rm(&path).unwrap();
    // `pin update` moves a depth-limited pin (listed as recursive) and keeps its depth, which
    // `a` needs its children for: the tree is added again, unpinned, for them.
    node.add(&tree, &opts(), false, &mut |_| {}).unwrap();
    node.pin_add_mode(PinOwner::Operator, &path, PinMode::Depth(1), Some("shard".into())).unwrap();
    let a = IpfsPath { root, rest: "a".into() };
    let sub = node.resolve(&a).unwrap();
    node.pin_update(&root, &sub, true).unwrap();
    let moved = node.pin_of(&sub).unwrap().unwrap();
    assert_eq!((moved.mode, moved.name.as_deref()), (PinMode::Depth(1), Some("shard")));
    assert!(node.pin_of(&root).unwrap().is_none());
}
