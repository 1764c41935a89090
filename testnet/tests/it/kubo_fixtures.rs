//! CIDv1 parity with DAGs that a real Kubo made with `ipfs add --cid-version 1`.
//!
//! Beside the live comparison with Kubo 0.43.1 in `kubo.rs`, this module uses DAGs Kubo made
//! elsewhere: the gateway-conformance CARs in `testnet/fixtures/`, whose READMEs record the
//! exact Kubo commands that produced them. Each tree is extracted with Cairn's exporter into a
//! temporary directory, re-added with Cairn using the same flags, and the root must come out
//! as the CID Kubo gave. That checks the importer against Kubo and the exporter against
//! Kubo's DAGs in one go.

use std::fs;
use std::path::{Path, PathBuf};

use cairn_merkle::car::CarReader;
use cairn_merkle::chunker::ChunkerSpec;
use cairn_merkle::exporter::{self, NodeKind, Walker};
use cairn_merkle::importer::{Discard, ImportOptions};
use cairn_merkle::{Cid, MemoryBlocks};
use cairn_node::add::{add_path, AddOptions};

fn fixture(rel: &str) -> PathBuf {
    cairn_testnet::reference::testnet_dir().join("fixtures/gateway-conformance").join(rel)
}

/// Loads a CAR (every block verified on the way in) and returns its blocks and first root.
fn load(rel: &str) -> (MemoryBlocks, Cid) {
    let file = fs::File::open(fixture(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    let mut car = CarReader::new(std::io::BufReader::new(file)).unwrap();
    let root = car.roots()[0];
    let mut blocks = MemoryBlocks::new();
    loop {
        match car.next_block() {
            Ok(Some(b)) => {
                blocks.insert(b);
            }
            Ok(None) => break,
            Err(e) => panic!("{rel}: {e}"),
        }
    }
    (blocks, root)
}

/// Writes the tree under `root` into `dest` with Cairn's exporter.
fn extract(blocks: &MemoryBlocks, root: &Cid, dest: &Path) {
    for item in Walker::new(blocks, root) {
        let item = item.unwrap();
        let path = dest.join(&item.path);
        match item.stat.kind {
            NodeKind::Directory | NodeKind::HamtDirectory => fs::create_dir_all(&path).unwrap(),
            NodeKind::File => fs::write(&path, exporter::read_to_vec(blocks, &item.stat.cid).unwrap()).unwrap(),
            NodeKind::Symlink => std::os::unix::fs::symlink(item.stat.target.unwrap(), &path).unwrap(),
        }
    }
}

fn readd(dir: &Path, import: ImportOptions) -> Cid {
    let opts = AddOptions { import, recursive: true, hidden: true, ..AddOptions::default() };
    add_path(dir, &opts, &mut Discard).unwrap().last().unwrap().cid
}

/// `ipfs add -Qr --cid-version 1 <tree>` roots, as the fixture READMEs record them.
#[test]
fn kubo_cid_v1_directory_trees_rebuild_to_the_same_root() {
    for (car, expected) in [
        // dir_listing/README.md: DIR_CID of ./rootDir (unicode names, nested directories)
        ("dir_listing/fixtures.car", "bafybeig6ka5mlwkl4subqhaiatalkcleo4jgnr3hqwvpmsqfca27cijp3i"),
        // path_gateway_tar/README.md: the same rootDir, exported again
        ("path_gateway_tar/fixtures.car", "bafybeig6ka5mlwkl4subqhaiatalkcleo4jgnr3hqwvpmsqfca27cijp3i"),
        // gateway-cache/README.md: `ipfs add -Qrw --cid-version 1 root2` (wrapped)
        ("gateway-cache/fixtures.car", "bafybeib3ffl2teiqdncv3mkz4r23b5ctrwkzrrhctdbne6iboayxuxk5ui"),
    ] {
        let (blocks, root) = load(car);
        assert_eq!(root.to_string(), expected, "{car}: fixture root");
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("tree");
        extract(&blocks, &root, &dest);
        assert_eq!(readd(&dest, ImportOptions::cid_v1()), root, "{car}: Cairn's CIDv1 re-add differs from Kubo's");
    }
}

/// path_gateway_unixfs/README.md: `echo -n $TEXT | ipfs add --cid-version=1 --chunker=size-256`
/// and `echo "hello world" | ipfs add --cid-version=1`, found inside dir-with-files.car.
#[test]
fn kubo_cid_v1_files_with_small_chunks_rebuild_to_the_same_cid() {
    let (blocks, root) = load("path_gateway_unixfs/dir-with-files.car");
    let mut checked = 0;
    for item in exporter::list(&blocks, &root).unwrap() {
        let item = item.unwrap();
        let data = exporter::read_to_vec(&blocks, &item.cid).unwrap();
        let mut opts = ImportOptions::cid_v1();
        if item.name == "multiblock.txt" {
            opts.chunker = ChunkerSpec::Size(256);
        }
        let got = cairn_merkle::importer::import_bytes(&data, &opts, &mut Discard).unwrap();
        assert_eq!(got.cid, item.cid, "{}", item.name);
        checked += 1;
    }
    assert_eq!(checked, 4, "ascii-copy.txt, ascii.txt, hello.txt, multiblock.txt");
}

/// subdomain_gateway/README.md: `ipfs add -Qr --cid-version 1 testdirlisting` (linked from the
/// CAR's root as `testdirlisting`), and `echo hello | ipfs add --cid-version 0/1`.
#[test]
fn kubo_subdomain_fixture_tree_rebuilds() {
    let (blocks, root) = load("subdomain_gateway/fixtures.car");
    let dir = exporter::resolve(&blocks, &root, "testdirlisting").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("testdirlisting");
    extract(&blocks, &dir, &dest);
    assert_eq!(readd(&dest, ImportOptions::cid_v1()), dir);
    let v1 = cairn_merkle::importer::import_bytes(b"hello\n", &ImportOptions::cid_v1(), &mut Discard).unwrap();
    let v0 = cairn_merkle::importer::import_bytes(b"hello\n", &ImportOptions::default(), &mut Discard).unwrap();
    assert_eq!(exporter::resolve(&blocks, &root, "hello-CIDv1").unwrap(), v1.cid);
    assert_eq!(exporter::resolve(&blocks, &root, "hello-CIDv0").unwrap(), v0.cid);
}
