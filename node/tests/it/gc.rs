//! GC removes exactly what no pin reaches, and never races an add.

use std::collections::HashSet;
use std::fs;
use std::sync::atomic::{AtomicBool, Ordering};

use cairn_merkle::importer::ImportOptions;
use cairn_merkle::links::links;
use cairn_merkle::Cid;
use cairn_node::add::AddOptions;
use cairn_node::{BlockStore, IpfsPath, Node};

use crate::{node, noise};

fn opts() -> AddOptions {
    // Small chunks: many blocks per file, so sharing is visible block by block.
    let import = ImportOptions { chunker: cairn_merkle::chunker::ChunkerSpec::Size(1024), ..Default::default() };
    AddOptions { import, recursive: true, hidden: false }
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
