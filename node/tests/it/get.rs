//! `get` never writes outside its output directory, whatever names a DAG holds.

use bytes::Bytes;
use cairn_merkle::hash::{CidFormat, DAG_PB, RAW};
use cairn_merkle::{PbLink, PbNode, UnixFs};
use cairn_node::IpfsPath;

use crate::node;

#[test]
fn hostile_names_are_refused_and_nothing_escapes() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path());
    let file =
        node.block_put(Bytes::from_static(b"pwned"), RAW, CidFormat { version: 1, ..Default::default() }).unwrap();
    for evil in ["..", "../escape", "/abs", "a/b", "nul\0byte", ""] {
        let dir_node = PbNode { links: vec![PbLink::new(file, evil, 5)], data: Some(UnixFs::directory().to_bytes()) };
        let root = node.block_put(Bytes::from(dir_node.encode()), DAG_PB, CidFormat::default()).unwrap();
        let out = dir.path().join("out").join(format!("case{}", evil.len()));
        std::fs::create_dir_all(out.parent().unwrap()).unwrap();
        let r = node.get(&IpfsPath { root, rest: String::new() }, &out, &mut |_| {});
        assert!(r.is_err(), "{evil:?} accepted");
    }
    assert!(!dir.path().join("escape").exists());
    assert!(!dir.path().join("out/escape").exists());

    // Two entries of one name, a symlink to outside then a directory: the second is refused
    // instead of writing through the symlink.
    let link = PbNode { links: vec![], data: Some(UnixFs::symlink("/tmp").to_bytes()) };
    let link = node.block_put(Bytes::from(link.encode()), DAG_PB, CidFormat::default()).unwrap();
    let inner = PbNode { links: vec![PbLink::new(file, "pwned.txt", 5)], data: Some(UnixFs::directory().to_bytes()) };
    let inner = node.block_put(Bytes::from(inner.encode()), DAG_PB, CidFormat::default()).unwrap();
    let dup = PbNode {
        links: vec![PbLink::new(link, "a", 10), PbLink::new(inner, "a", 10)],
        data: Some(UnixFs::directory().to_bytes()),
    };
    let root = node.block_put(Bytes::from(dup.encode()), DAG_PB, CidFormat::default()).unwrap();
    let out = dir.path().join("dup");
    assert!(node.get(&IpfsPath { root, rest: String::new() }, &out, &mut |_| {}).is_err());
    assert!(!std::path::Path::new("/tmp/pwned.txt").exists());

    // An existing output path is never overwritten.
    let ok = PbNode { links: vec![PbLink::new(file, "fine.txt", 5)], data: Some(UnixFs::directory().to_bytes()) };
    let root = node.block_put(Bytes::from(ok.encode()), DAG_PB, CidFormat::default()).unwrap();
    let out = dir.path().join("fresh");
    node.get(&IpfsPath { root, rest: String::new() }, &out, &mut |_| {}).unwrap();
    assert_eq!(std::fs::read(out.join("fine.txt")).unwrap(), b"pwned");
    assert!(node.get(&IpfsPath { root, rest: String::new() }, &out, &mut |_| {}).is_err());
}
