//! HAMT-sharded directories against Kubo-made fixtures: reading every entry, listing, and
//! rebuilding the same shards byte for byte.

use std::collections::{BTreeSet, HashMap};

use bytes::Bytes;
use cairn_merkle::hamt::{self, Entries, HamtError, Sharding, DEFAULT_FANOUT};
use cairn_merkle::hash::DAG_PB;
use cairn_merkle::unixfs::DataType;
use cairn_merkle::{Block, BlockSource, Cid, CidFormat, HashAlg, MemoryBlocks, PbLink, PbNode, UnixFs};

/// The HAMT fixture of the gateway conformance suite, also the UnixFS spec's test vector
/// "HAMT Sharded Directory" (1000 files `1.txt`..`1000.txt`, fanout 256, CIDv1).
const HAMT_CAR: &str = "gateway-conformance/trustless_gateway_car/single-layer-hamt-with-multi-block-files.car";
const HAMT_ROOT: &str = "bafybeidbclfqleg2uojchspzd4bob56dqetqjsj27gy2cq3klkkgxtpn4i";
/// The spec's example sub-shard: slot "00" of the root.
const SUB_SHARD_00: &str = "bafybeiaebmuestgbpqhkkbrwl2qtjtvs3whkmp2trkbkimuod4yv7oygni";

fn varint(buf: &[u8], pos: &mut usize) -> u64 {
    let (v, rest) = unsigned_varint::decode::u64(&buf[*pos..]).expect("varint");
    *pos = buf.len() - rest.len();
    v
}

/// A minimal CARv1 reader for tests: skips the header, returns the blocks in file order,
/// each verified against its CID.
fn read_car(rel: &str) -> Vec<Block> {
    let buf = std::fs::read(crate::fixtures().join(rel)).expect("fixture present");
    let mut pos = 0;
    let header_len = varint(&buf, &mut pos) as usize;
    pos += header_len;
    let mut blocks = Vec::new();
    while pos < buf.len() {
        let len = varint(&buf, &mut pos) as usize;
        let section = &buf[pos..pos + len];
        pos += len;
        let mut cursor = std::io::Cursor::new(section);
        let cid = Cid::read_bytes(&mut cursor).expect("cid");
        let data = Bytes::copy_from_slice(&section[cursor.position() as usize..]);
        blocks.push(Block::verified(cid, data).expect("block matches its CID"));
    }
    blocks
}

fn decode(data: &Bytes) -> (PbNode, UnixFs) {
    let node = PbNode::decode(data).unwrap();
    let fs = UnixFs::decode(node.data.clone().unwrap_or_default()).unwrap();
    (node, fs)
}

struct Fixture {
    blocks: MemoryBlocks,
    by_cid: HashMap<Cid, Bytes>,
    root: Cid,
    node: PbNode,
    fs: UnixFs,
}

fn hamt_fixture() -> Fixture {
    let mut blocks = MemoryBlocks::new();
    let mut by_cid = HashMap::new();
    for b in read_car(HAMT_CAR) {
        by_cid.insert(*b.cid(), b.data().clone());
        blocks.insert(b);
    }
    let root = Cid::try_from(HAMT_ROOT).unwrap();
    let (node, fs) = decode(&by_cid[&root]);
    assert_eq!(fs.kind().unwrap(), DataType::HamtShard);
    assert_eq!(by_cid[&root].len(), 12046, "root block size given by the spec");
    Fixture { blocks, by_cid, root, node, fs }
}

fn expected_names() -> BTreeSet<String> {
    (1..=1000).map(|i| format!("{i}.txt")).collect()
}

#[test]
fn fixture_listing_has_exactly_the_1000_files() {
    let f = hamt_fixture();
    let listed: Vec<(String, PbLink)> =
        Entries::new(&f.blocks, f.node.clone(), f.fs.clone()).unwrap().collect::<Result<_, _>>().unwrap();
    assert_eq!(listed.len(), 1000);
    let names: BTreeSet<String> = listed.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(names, expected_names());
    // Every file has the same content, so the same CID and Tsize.
    let file = listed[0].1.cid;
    for (name, link) in &listed {
        assert_eq!(link.name(), name);
        assert_eq!(link.cid, file);
        assert_eq!(link.tsize, Some(1271));
    }
    // Depth-first in slot order is ascending order of the name hashes.
    assert!(listed.windows(2).all(|w| hamt::hash_name(&w[0].0) <= hamt::hash_name(&w[1].0)));
    // Listing read every shard once and nothing else (the file blocks stay untouched).
    let shards = f.by_cid.values().filter(|d| is_shard(d)).count();
    assert_eq!(f.blocks.reads(), shards - 1);
}

fn is_shard(data: &Bytes) -> bool {
    PbNode::decode(data)
        .ok()
        .and_then(|n| UnixFs::decode(n.data.unwrap_or_default()).ok())
        .is_some_and(|fs| fs.kind() == Ok(DataType::HamtShard))
}

#[test]
fn fixture_lookup_finds_every_file_and_reads_only_its_path() {
    let f = hamt_fixture();
    let mut max_reads = 0;
    for name in expected_names() {
        f.blocks.reset_reads();
        let link = hamt::lookup(&f.blocks, &f.node, &f.fs, &name).unwrap().unwrap_or_else(|| panic!("{name}"));
        assert_eq!(link.name(), name);
        assert_eq!(link.tsize, Some(1271));
        max_reads = max_reads.max(f.blocks.reads());
    }
    assert_eq!(max_reads, 2, "the fixture has shards three levels deep");
    for absent in ["0.txt", "1001.txt", "1.TXT", "", "00", "6E470.txt"] {
        assert_eq!(hamt::lookup(&f.blocks, &f.node, &f.fs, absent).unwrap(), None, "{absent:?}");
    }
}

#[test]
fn fixture_matches_the_spec_example() {
    let f = hamt_fixture();
    let sub = Cid::try_from(SUB_SHARD_00).unwrap();
    assert_eq!((f.node.links[0].name(), f.node.links[0].cid, f.node.links[0].tsize), ("00", sub, Some(2693)));
    let (sub_node, _) = decode(&f.by_cid[&sub]);
    let names: Vec<&str> = sub_node.links.iter().map(|l| l.name()).collect();
    assert_eq!(names, ["6E470.txt", "FF742.txt"]);
    f.blocks.reset_reads();
    assert!(hamt::lookup(&f.blocks, &f.node, &f.fs, "470.txt").unwrap().is_some());
    assert_eq!(f.blocks.reads(), 1, "only sub-shard 00 is read");
}

#[test]
fn rebuilding_the_fixture_gives_the_same_root_and_blocks() {
    let f = hamt_fixture();
    let entries: Vec<PbLink> = Entries::new(&f.blocks, f.node.clone(), f.fs.clone())
        .unwrap()
        .map(|r| r.map(|(_, link)| link))
        .collect::<Result<_, _>>()
        .unwrap();
    let format = CidFormat { version: 1, hash: HashAlg::Sha2_256 };
    let mut emitted = Vec::new();
    let (root, tsize) = hamt::build(entries.clone(), DEFAULT_FANOUT, format, &mut |b| emitted.push(b)).unwrap();
    assert_eq!(root, f.root);
    // Every shard is byte-identical to the fixture's, and there are exactly as many.
    for b in &emitted {
        assert_eq!(f.by_cid.get(b.cid()), Some(b.data()), "shard {}", b.cid());
    }
    let shards = f.by_cid.values().filter(|d| is_shard(d)).count();
    assert_eq!(emitted.len(), shards);
    // The root's cumulative size is its length plus its links' Tsizes, as Kubo computes it.
    let expected = f.by_cid[&root].len() as u64 + f.node.links.iter().map(|l| l.tsize.unwrap()).sum::<u64>();
    assert_eq!(tsize, expected);
    // So is every child shard's: check it through the links of the parents.
    let sizes: HashMap<Cid, u64> = emitted
        .iter()
        .map(|b| {
            let n = PbNode::decode(b.data()).unwrap();
            (*b.cid(), b.data().len() as u64 + n.links.iter().map(|l| l.tsize.unwrap()).sum::<u64>())
        })
        .collect();
    for b in &emitted {
        for l in PbNode::decode(b.data()).unwrap().links {
            if let Some(s) = sizes.get(&l.cid) {
                assert_eq!(l.tsize, Some(*s));
            }
        }
    }
    // The input order does not matter.
    let mut shuffled = entries;
    shuffled.sort_by(|a, b| a.name().cmp(b.name()));
    assert_eq!(hamt::build(shuffled, DEFAULT_FANOUT, format, &mut |_| {}).unwrap(), (root, tsize));
}

#[test]
fn cidv0_rebuild_only_changes_the_shard_cids() {
    let f = hamt_fixture();
    let entries: Vec<PbLink> =
        Entries::new(&f.blocks, f.node.clone(), f.fs.clone()).unwrap().map(|r| r.unwrap().1).collect();
    let mut v0 = MemoryBlocks::new();
    let (root, _) = hamt::build(entries, DEFAULT_FANOUT, CidFormat::default(), &mut |b| {
        v0.insert(b);
    })
    .unwrap();
    assert_eq!(root.version(), cid::Version::V0);
    let (node, fs) = decode(&v0.get(&root).unwrap());
    assert_eq!(node.links.len(), f.node.links.len());
    // Names and structure are the same; the listing still reaches every file.
    for (a, b) in node.links.iter().zip(&f.node.links) {
        assert_eq!(a.name(), b.name());
    }
    let n = Entries::new(&v0, node, fs).unwrap().filter(|r| r.is_ok()).count();
    assert_eq!(n, 1000);
}

#[test]
fn plain_directories_are_not_shards() {
    let blocks = read_car("gateway-conformance/dir_listing/fixtures.car");
    let root = Cid::try_from("bafybeig6ka5mlwkl4subqhaiatalkcleo4jgnr3hqwvpmsqfca27cijp3i").unwrap();
    let data = blocks.iter().find(|b| b.cid() == &root).unwrap().data().clone();
    let (node, fs) = decode(&data);
    let src = MemoryBlocks::new();
    assert!(matches!(Entries::new(&src, node.clone(), fs.clone()), Err(HamtError::NotAShard)));
    assert!(matches!(hamt::lookup(&src, &node, &fs, "api"), Err(HamtError::NotAShard)));
    // And its size is far under the threshold.
    assert!(!Sharding::default().should_shard(&node.links, 2));
}

#[test]
fn a_directory_sharded_over_the_threshold_round_trips() {
    // Names of 98 bytes plus a 34-byte CIDv0: 132 bytes each; 1986 of them make 262152.
    let file = CidFormat::default().cid(DAG_PB, b"file");
    let make = |n: usize| -> Vec<PbLink> { (0..n).map(|i| PbLink::new(file, format!("{i:0>98}"), 10)).collect() };
    let under = make(1985);
    assert_eq!(hamt::estimated_dir_size(&under), 1985 * 132);
    assert!(!Sharding::default().should_shard(&under, 2));
    let over = make(1986);
    assert!(Sharding::default().should_shard(&over, 2));
    let mut blocks = MemoryBlocks::new();
    let (root, _) = hamt::build(over.clone(), DEFAULT_FANOUT, CidFormat::default(), &mut |b| {
        blocks.insert(b);
    })
    .unwrap();
    let (node, fs) = decode(&blocks.get(&root).unwrap());
    assert!(node.links.len() <= 256);
    for l in &over {
        assert_eq!(hamt::lookup(&blocks, &node, &fs, l.name()).unwrap().unwrap().cid, file);
    }
}
