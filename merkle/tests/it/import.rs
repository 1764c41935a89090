//! Import: known Kubo CIDs, layouts, streaming memory bound.

use std::io::Read;

use cairn_merkle::chunker::ChunkerSpec;
use cairn_merkle::exporter;
use cairn_merkle::importer::{build_directory, import_bytes, import_file, DirEntry, Discard, ImportOptions, Layout};
use cairn_merkle::MemoryBlocks;

/// A deterministic pseudo-random byte stream (xorshift64*), so dedup cannot hide bugs.
pub struct Noise {
    state: u64,
    left: u64,
}

impl Noise {
    pub fn new(seed: u64, len: u64) -> Self {
        Noise { state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1, left: len }
    }
}

impl Read for Noise {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(self.left) as usize;
        for chunk in buf[..n].chunks_mut(8) {
            self.state ^= self.state >> 12;
            self.state ^= self.state << 25;
            self.state ^= self.state >> 27;
            let v = self.state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        self.left -= n as u64;
        Ok(n)
    }
}

pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    Noise::new(seed, len as u64).read_to_end(&mut v).unwrap();
    v
}

const CHUNK: usize = 262_144;

#[test]
fn well_known_kubo_cids() {
    let opts = ImportOptions::default();
    // `ipfs add` of an empty file.
    let empty = import_bytes(b"", &opts, &mut Discard).unwrap();
    assert_eq!(empty.cid.to_string(), "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH");
    // `echo "hello world" | ipfs add`.
    let hello = import_bytes(b"hello world\n", &opts, &mut Discard).unwrap();
    assert_eq!(hello.cid.to_string(), "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o");
    // `ipfs add --cid-version=1` of an empty file is a bare raw block.
    let v1 = import_bytes(b"", &ImportOptions::cid_v1(), &mut Discard).unwrap();
    assert_eq!(v1.cid.to_string(), "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku");
    // `ipfs object new unixfs-dir`: the empty directory.
    let dir = build_directory(vec![], &opts, &mut Discard).unwrap();
    assert_eq!(dir.cid.to_string(), "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn");
}

#[test]
fn every_size_round_trips_through_both_layouts() {
    // 0, 1, chunk-1, chunk, chunk+1, 174 chunks +- 1 (one more level), and a depth-2 tree.
    let sizes = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 174 * CHUNK - 1, 174 * CHUNK + 1];
    for layout in [Layout::Balanced, Layout::Trickle] {
        for raw in [false, true] {
            for &size in &sizes {
                let data = noise(size as u64, size);
                let mut opts = ImportOptions { layout, raw_leaves: raw, ..Default::default() };
                // Small chunks keep the big cases fast while exercising the same shapes.
                if size > 4 * CHUNK {
                    opts.chunker = ChunkerSpec::Size(size.div_ceil(175 * 8).max(1));
                }
                let mut store = MemoryBlocks::new();
                let root = import_bytes(&data, &opts, &mut store).unwrap();
                assert_eq!(root.size, size as u64);
                let back = exporter::read_to_vec(&store, &root.cid).unwrap();
                assert!(back == data, "{layout:?} raw={raw} size={size}");
            }
        }
    }
}

#[test]
fn balanced_tree_has_kubo_shape() {
    // 175 leaves with max 174 links: root over [full node of 174, node of 1].
    let opts = ImportOptions { chunker: ChunkerSpec::Size(1), ..Default::default() };
    let data = noise(7, 175);
    let mut store = MemoryBlocks::new();
    let root = import_bytes(&data, &opts, &mut store).unwrap();
    let node = cairn_merkle::PbNode::decode(&cairn_merkle::BlockSource::get(&store, &root.cid).unwrap()).unwrap();
    assert_eq!(node.links.len(), 2);
    let sizes: Vec<u64> = node
        .links
        .iter()
        .map(|l| {
            let child = cairn_merkle::PbNode::decode(&cairn_merkle::BlockSource::get(&store, &l.cid).unwrap()).unwrap();
            child.links.len() as u64
        })
        .collect();
    assert_eq!(sizes, vec![174, 1]);
    // Exactly 174 leaves: a single node of depth one.
    let data = noise(8, 174);
    let mut store = MemoryBlocks::new();
    let root = import_bytes(&data, &opts, &mut store).unwrap();
    let node = cairn_merkle::PbNode::decode(&cairn_merkle::BlockSource::get(&store, &root.cid).unwrap()).unwrap();
    assert_eq!(node.links.len(), 174);
}

/// The shape of the tree under `cid`: a leaf is `L`, a node its children's shapes.
fn shape(store: &MemoryBlocks, cid: &cairn_merkle::Cid) -> String {
    let node = cairn_merkle::PbNode::decode(&cairn_merkle::BlockSource::get(store, cid).unwrap()).unwrap();
    if node.links.is_empty() {
        return "L".into();
    }
    let inner: Vec<String> = node.links.iter().map(|l| shape(store, &l.cid)).collect();
    format!("[{}]", inner.join(","))
}

#[test]
fn a_last_leaf_past_a_full_second_level_hangs_from_its_own_chain() {
    // Regression: 10 leaves at 3 links a node. Kubo fills depth first: a full tree of 9
    // leaves, then the tenth under a chain as deep as it. Cairn gave the second level a fourth
    // link instead (a node over the 10th leaf pushed onto the full level at the end), so every
    // file with a full second level and a partial first one, past 174² leaves at Kubo's
    // width, got another CID than Kubo's.
    let opts = ImportOptions { chunker: ChunkerSpec::Size(1), max_links: 3, ..Default::default() };
    let mut store = MemoryBlocks::new();
    let root = import_bytes(&noise(9, 10), &opts, &mut store).unwrap();
    assert_eq!(shape(&store, &root.cid), "[[[L,L,L],[L,L,L],[L,L,L]],[[L]]]");
    // Checked against Kubo 0.43.1: `ipfs add --chunker=size-1 --max-file-links=3` of the same
    // bytes (and testnet's kubo.rs does so for files up to 349 chunks).
    let mut store = MemoryBlocks::new();
    let root = import_bytes(&noise(9, 28), &opts, &mut store).unwrap();
    let full = "[[L,L,L],[L,L,L],[L,L,L]]";
    assert_eq!(shape(&store, &root.cid), format!("[[{full},{full},{full}],[[[L]]]]"));
}

#[test]
fn trickle_single_chunk_wraps_the_leaf() {
    let opts = ImportOptions { layout: Layout::Trickle, ..Default::default() };
    let mut store = MemoryBlocks::new();
    let root = import_bytes(b"abc", &opts, &mut store).unwrap();
    let node = cairn_merkle::PbNode::decode(&cairn_merkle::BlockSource::get(&store, &root.cid).unwrap()).unwrap();
    assert_eq!(node.links.len(), 1);
}

#[test]
fn sink_errors_stop_the_import() {
    let mut n = 0;
    let mut failing = |_b: cairn_merkle::Block| -> Result<(), cairn_merkle::importer::SinkError> {
        n += 1;
        if n > 3 {
            Err("disk full".into())
        } else {
            Ok(())
        }
    };
    let err = import_file(Noise::new(1, 10 * CHUNK as u64), &ImportOptions::default(), &mut failing).unwrap_err();
    assert!(err.to_string().contains("disk full"), "{err}");
}

#[test]
fn directories_reject_bad_and_duplicate_names() {
    let f = import_bytes(b"x", &ImportOptions::default(), &mut Discard).unwrap();
    for bad in ["", ".", "..", "a/b", "nul\0"] {
        let r = build_directory(vec![DirEntry::new(bad, &f)], &ImportOptions::default(), &mut Discard);
        assert!(r.is_err(), "{bad:?} accepted");
    }
    let r =
        build_directory(vec![DirEntry::new("a", &f), DirEntry::new("a", &f)], &ImportOptions::default(), &mut Discard);
    assert!(r.is_err());
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Runs in a child process (see `multi_gib_stream_does_not_grow_memory`): imports 64 MiB,
/// then 2 GiB, and prints how much the peak RSS grew in between.
#[test]
#[ignore = "run by multi_gib_stream_does_not_grow_memory in a child process"]
fn child_memory_probe() {
    let opts = ImportOptions::default();
    import_file(Noise::new(1, 64 << 20), &opts, &mut Discard).unwrap();
    let before = peak_rss_kib();
    let root = import_file(Noise::new(2, 2 << 30), &opts, &mut Discard).unwrap();
    assert_eq!(root.size, 2 << 30);
    let after = peak_rss_kib();
    println!("PEAK_GROWTH_KIB={} PEAK_KIB={after}", after - before);
}

#[test]
fn multi_gib_stream_does_not_grow_memory() {
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args(["--exact", "import::child_memory_probe", "--ignored", "--nocapture", "--test-threads=1"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let growth: u64 = stdout
        .split_whitespace()
        .find_map(|w| w.strip_prefix("PEAK_GROWTH_KIB="))
        .expect("probe output")
        .parse()
        .unwrap();
    // A 2 GiB import may not raise the peak by more than 16 MiB over a 64 MiB one.
    assert!(growth < 16 * 1024, "peak RSS grew by {growth} KiB while importing 2 GiB");
}
