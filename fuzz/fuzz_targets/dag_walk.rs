//! The DAG level: a map of hostile blocks (built by the DAG script, `cairn_fuzz::dag`, so
//! that links are real hashes: repeated children, a HAMT whose every slot links the same
//! child shard, deep and wide trees, absurd declared sizes, wrong codecs, CIDs nobody has),
//! read by everything that walks a DAG for a client: `stat`, the tree walker and directory
//! listings (plain and HAMT), path resolution, range reads of files, `dag export`'s CAR
//! writer and the gateway's trustless CAR responses in every `dag-scope`.
//!
//! What must hold, whatever the blocks:
//!
//! - no panic, and at most a bounded amount of heap (the blocks themselves plus a few MiB);
//! - every step ends with a value or an error after a bounded number of block reads: one
//!   item of a walk or listing reads at most each stored block under each of its CIDs once,
//!   a lookup at most one shard per level of the hash, a range read a fixed number of blocks
//!   per piece of output (so no amount of repeated or empty children makes work without
//!   output);
//! - a file read yields at most the bytes its root declares (exactly that many when it ends
//!   well), and a range of it is the same bytes as that stretch of the whole;
//! - a CAR written from the DAG holds each block once, only blocks the map holds, and reads
//!   back with every block verified.
#![no_main]

use std::cell::Cell;
use std::collections::HashSet;

use bytes::Bytes;
use cairn_fuzz::dag::{self, form, Dag, FsSpec, LinkSpec, Script};
use cairn_fuzz::seeds::{seed, write_if_asked};
use cairn_fuzz::{assert_heap_within, peak_heap_during};
use cairn_gateway::fuzzing::{write_car, DagScope, EntityBytes};
use cairn_merkle::car::{CarReader, CarWriter, DagWalk, DupBudget};
use cairn_merkle::chunker::ChunkerSpec;
use cairn_merkle::exporter::{self, FileSegments, NodeKind, Walker, MAX_DEPTH};
use cairn_merkle::hash::{multihash_matches, CidFormat, HashAlg};
use cairn_merkle::importer::{self, DirEntry, ImportOptions, Layout};
use cairn_merkle::source::{BlockSource, SourceError};
use cairn_merkle::{Block, Cid, MemoryBlocks};
use libfuzzer_sys::fuzz_target;

/// Items of a walk taken at most (a walk of repeated subdirectories is exponential: it is
/// bounded per step, and cut here).
const MAX_ITEMS: usize = 2000;
/// Files read per walk.
const MAX_FILES: usize = 8;
/// Bytes read per file.
const MAX_OUT: u64 = 1 << 20;
/// Levels of a HAMT at the smallest fanout (8): 64 bits of hash, 3 per level.
const MAX_HAMT_LEVELS: u64 = 64 / 3;

/// A block source that counts reads and fails the run when one step reads more than allowed.
struct Counting<'a> {
    inner: &'a MemoryBlocks,
    reads: Cell<u64>,
}

impl BlockSource for Counting<'_> {
    fn get(&self, cid: &Cid) -> Result<Bytes, SourceError> {
        self.reads.set(self.reads.get() + 1);
        self.inner.get(cid)
    }
}

impl Counting<'_> {
    /// Runs `f` and returns its result and the reads it made.
    fn during<R>(&self, f: impl FnOnce() -> R) -> (R, u64) {
        let before = self.reads.get();
        let r = f();
        (r, self.reads.get() - before)
    }
}

/// Imports a small tree with the real importer: a two-level file, a directory around it, and
/// a HAMT-sharded directory of 40 entries at fanout 8; returns its blocks in order.
fn imported(opts: &ImportOptions) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut sink = |b: Block| -> Result<(), cairn_merkle::importer::SinkError> {
        blocks.push(b);
        Ok(())
    };
    let data: Vec<u8> = (0..700u32).map(|i| (i * 7 % 251) as u8).collect();
    let file = importer::import_bytes(&data, opts, &mut sink).expect("imports");
    let small = importer::import_bytes(b"small", opts, &mut sink).expect("imports");
    let link = importer::symlink("file.bin", opts, &mut sink).expect("imports");
    let entries: Vec<_> = (0..40).map(|i| DirEntry::new(format!("e{i}"), &small)).collect();
    let sharded = importer::build_directory(
        entries,
        &ImportOptions {
            sharding: cairn_merkle::hamt::Sharding { threshold: 1, ..Default::default() },
            hamt_fanout: 8,
            ..opts.clone()
        },
        &mut sink,
    )
    .expect("builds");
    let dir = vec![DirEntry::new("file.bin", &file), DirEntry::new("link", &link), DirEntry::new("many", &sharded)];
    importer::build_directory(dir, opts, &mut sink).expect("builds");
    blocks
}

fn seeds() -> Vec<(String, Vec<u8>)> {
    let small = ImportOptions { chunker: ChunkerSpec::Size(100), max_links: 3, ..ImportOptions::default() };
    let v1 = ImportOptions {
        format: CidFormat { version: 1, hash: HashAlg::Blake3 },
        raw_leaves: true,
        layout: Layout::Trickle,
        ..small.clone()
    };
    let mut out = vec![
        seed("imported-v0", dag::script_of(&imported(&small))),
        seed("imported-v1", dag::script_of(&imported(&v1))),
    ];

    // Seven levels of full fanout-256 shards whose every slot links the same child shard,
    // over one shard with one entry: 256^7 entries if listed naively.
    let mut s = Script::new(form::V0, 0, 0, 0);
    let leaf = s.raw(b"content");
    let mut shard =
        s.hamt(8, 0, &[LinkSpec { target: leaf, form: form::SHA2, name: Some("file".into()), ..Default::default() }]);
    for _ in 0..7 {
        shard = s.hamt(8, 0, &[LinkSpec { target: shard, form: form::V0, repeat: 255, ..Default::default() }]);
    }
    out.push(seed("hamt-repeated-shard", s.finish()));

    // The same child shard under three CIDs (v0, v1, blake3): a different CID each time.
    let mut s = Script::new(form::V0, 0, 0, 0);
    let leaf = s.raw(b"content");
    let child =
        s.hamt(3, 0, &[LinkSpec { target: leaf, form: form::SHA2, name: Some("x".into()), ..Default::default() }]);
    let forms = [form::V0, form::SHA2, form::BLAKE3];
    let links: Vec<_> = forms
        .iter()
        .enumerate()
        .map(|(i, &f)| LinkSpec { target: child, form: f, slot: i as u16, ..Default::default() })
        .collect();
    s.hamt(3, 0, &links);
    out.push(seed("hamt-shard-under-three-cids", s.finish()));

    // Directories of 255 links to the same subdirectory, eight deep: 255^8 paths.
    let mut s = Script::new(form::V0, 0, 0, 0);
    let leaf = s.raw(b"x");
    let dir = FsSpec { r#type: 1, ..FsSpec::default() };
    let mut d = s.pb(
        &dir,
        &[LinkSpec { target: leaf, form: form::SHA2, name: Some("f".into()), tsize: Some(1), ..Default::default() }],
    );
    for _ in 0..8 {
        d = s.pb(
            &dir,
            &[LinkSpec { target: d, form: form::V0, repeat: 254, name: Some("d".into()), ..Default::default() }],
        );
    }
    out.push(seed("dir-repeated-subdir", s.finish()));

    // A file of 255 links to the same 255-link node, five deep, with consistent sizes: about
    // 2^40 bytes from seven blocks; read from near its end.
    let mut s = Script::new(form::V0, u32::MAX - 5000, 4000, 1);
    let leaf = s.raw(&[7u8; 16]);
    let file = |auto| FsSpec { r#type: 2, filesize: Some(0), auto_sizes: auto, ..FsSpec::default() };
    let mut f = s.pb(
        &file(true),
        &[LinkSpec { target: leaf, form: form::SHA2, repeat: 254, name: Some(String::new()), ..Default::default() }],
    );
    for _ in 0..5 {
        f = s.pb(
            &file(true),
            &[LinkSpec { target: f, form: form::V0, repeat: 254, name: Some(String::new()), ..Default::default() }],
        );
    }
    out.push(seed("file-repeated-child", s.finish()));

    // Sizes that add up past 2^64, a file whose children are empty, and a chain deeper than
    // the readers go.
    let mut s = Script::new(form::V0, 0, 0, 2);
    let leaf = s.raw(b"abc");
    let absurd = FsSpec { r#type: 2, blocksizes: vec![u64::MAX, 3], ..FsSpec::default() };
    s.pb(&absurd, &[LinkSpec { target: leaf, form: form::SHA2, repeat: 1, ..Default::default() }]);
    out.push(seed("absurd-sizes", s.finish()));
    let mut s = Script::new(form::V0, 0, 0, 0);
    let empty = s.raw(b"");
    let inline = FsSpec { data: Some(b"x".to_vec()), ..file(true) };
    s.pb(&inline, &vec![LinkSpec { target: empty, form: form::SHA2, repeat: 255, ..Default::default() }; 4]);
    out.push(seed("file-of-empty-children", s.finish()));
    let mut s = Script::new(form::V0, 0, 0, 0);
    let mut d = s.raw(b"bottom");
    for _ in 0..(MAX_DEPTH + 6).min(dag::MAX_BLOCKS - 1) {
        d = s.pb(&dir, &[LinkSpec { target: d, form: form::SHA2, name: Some("d".into()), ..Default::default() }]);
    }
    out.push(seed("deep-chain", s.finish()));

    // dag-cbor and dag-json blocks linking to each other and to nothing.
    let mut s = Script::new(form::SHA2, 0, 0, 0);
    let leaf = s.raw(b"leaf");
    let c = s.links(false, &[(leaf, form::SHA2), (leaf, form::DANGLING)], "cbor");
    s.links(true, &[(c, form::SHA2), (leaf, form::IDENTITY)], "json");
    out.push(seed("cbor-json", s.finish()));
    out
}

/// Reads a file at `cid` with `FileSegments` from `offset` for `len`, checking the bounds on
/// reads and output; returns the bytes when the read ends well (and is under [`MAX_OUT`]).
fn read_file(src: &Counting<'_>, cid: &Cid, offset: u64, len: Option<u64>) -> Option<Vec<u8>> {
    let segments = FileSegments::new(src, cid, offset, len).ok()?;
    let (start, end) = segments.range();
    assert!(start <= end && end <= segments.file_size());
    let mut out = Vec::new();
    let mut pieces = 0u64;
    let base = src.reads.get();
    for seg in segments {
        // Between two pieces of output a reader goes up and down the tree at most once: no
        // number of repeated or empty children makes it work without output.
        let reads = src.reads.get() - base;
        assert!(reads <= (pieces + 1) * (MAX_DEPTH as u64 + 1), "{reads} reads for {pieces} pieces of {cid}");
        let seg = seg.ok()?;
        assert!(!seg.is_empty(), "an empty piece of file");
        pieces += 1;
        out.extend_from_slice(&seg);
        assert!(out.len() as u64 <= end - start, "more bytes than the range holds");
        if out.len() as u64 >= MAX_OUT {
            return None;
        }
    }
    assert_eq!(out.len() as u64, end - start, "{cid} ended early without an error");
    Some(out)
}

/// Checks the files, listings and lookups of a walk of the DAG from its root.
fn walk(d: &Dag, src: &Counting<'_>) {
    // One step may read each stored block under each CID it has (v0, v1, blake3, identity)
    // once, plus the entry itself.
    let per_step = 4 * d.count as u64 + 4;
    let mut walker = Walker::new(src, &d.root);
    let mut files = 0;
    for _ in 0..MAX_ITEMS {
        let (item, reads) = src.during(|| walker.next());
        assert!(reads <= per_step, "{reads} reads in one step of a walk of {} blocks", d.count);
        let Some(Ok(item)) = item else {
            break;
        };
        assert!(item.path.split('/').count() <= MAX_DEPTH + 1, "a walk deeper than {MAX_DEPTH}");
        match item.stat.kind {
            NodeKind::File if files < MAX_FILES => {
                files += 1;
                let whole = read_file(src, &item.stat.cid, 0, None);
                if let Some(whole) = &whole {
                    assert_eq!(whole.len() as u64, item.stat.size, "stat and the read disagree on the size");
                    let start = (d.offset as usize).min(whole.len());
                    let end = d.len.map_or(whole.len(), |l| (start + l as usize).min(whole.len()));
                    let part =
                        read_file(src, &item.stat.cid, d.offset, d.len).expect("a range of a readable file reads");
                    assert!(part == whole[start..end], "a range differs from the whole file");
                } else if item.stat.size > d.offset {
                    let _ = read_file(src, &item.stat.cid, d.offset, d.len);
                }
            }
            NodeKind::HamtDirectory | NodeKind::Directory => {
                let Ok(list) = exporter::list(src, &item.stat.cid) else { continue };
                let mut names = HashSet::new();
                for entry in list.take(4).flatten() {
                    let (found, reads) = src.during(|| exporter::resolve(src, &item.stat.cid, &entry.name));
                    assert!(reads <= MAX_HAMT_LEVELS + 2, "{reads} reads to resolve one name");
                    // In a plain directory a name leads to its first link. (A hostile HAMT may
                    // list an entry in a slot its name does not hash to, where no lookup goes.)
                    if item.stat.kind == NodeKind::Directory && names.insert(entry.name.clone()) {
                        assert_eq!(found.ok(), Some(entry.cid), "{:?} resolves elsewhere", entry.name);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Reads back a CAR and checks each block: verified, from the map, at most once each.
fn check_car(d: &Dag, bytes: &[u8]) {
    let reader = CarReader::new(bytes).expect("our own CAR header reads");
    let mut seen = HashSet::new();
    for b in reader {
        let b = b.expect("our own CAR blocks read");
        assert!(multihash_matches(b.cid().hash(), b.data()).unwrap_or(false));
        assert!(seen.insert(b.cid().hash().to_bytes()), "block {} written twice", b.cid());
        assert!(d.blocks.contains(b.cid()) || b.cid().hash().code() == 0, "block {} is not in the map", b.cid());
    }
}

fuzz_target!(init: write_if_asked(seeds), |data: &[u8]| {
    let d = dag::build(data);
    let src = Counting { inner: &d.blocks, reads: Cell::new(0) };
    // What a walk that reads each block once may output: every stored block and its section.
    let car_budget = 256 + d.stored_bytes + d.stored as u64 * 128;
    let ((), peak) = peak_heap_during(|| {
        let _ = exporter::stat(&src, &d.root);
        walk(&d, &src);

        let mut car = CarWriter::new(Vec::new(), &[d.root]).expect("writing to a Vec");
        let (written, reads) = src.during(|| car.write_dag(&src, &d.root));
        assert!(reads <= d.stored as u64 + 1, "dag export read {reads} blocks of {}", d.stored);
        if written.is_ok() {
            let bytes = car.finish().expect("writing to a Vec");
            assert!(bytes.len() as u64 <= car_budget, "a {}-byte CAR from {} bytes of blocks", bytes.len(), d.stored_bytes);
            check_car(&d, &bytes);
        }

        // With repeats (`dups=y`), a walk may go past the stored blocks only by its budget.
        let (blocks, bytes) = (64, 1 << 16);
        let mut car = CarWriter::new(Vec::new(), &[d.root]).expect("writing to a Vec");
        let _ = car.write_walk(&src, &mut DagWalk::with_duplicates(d.root, DupBudget::new(blocks, bytes)));
        let repeats = car.blocks_written().saturating_sub(d.stored as u64);
        assert!(repeats <= blocks, "{repeats} repeats past a budget of {blocks}");
        assert!(car.bytes_written() <= car_budget + bytes + blocks * 128, "a {}-byte CAR with repeats", car.bytes_written());

        let scope = [DagScope::All, DagScope::Entity, DagScope::Block][usize::from(d.choice % 3)];
        let bytes = (d.choice & 4 != 0).then(|| EntityBytes {
            from: d.offset as i64 - 1000,
            to: d.len.map(|l| d.offset as i64 + l as i64 - 2000),
        });
        if let Ok(out) = write_car(&src, &d.root, &d.root, &[], scope, bytes, false, Vec::new()) {
            assert!(out.len() as u64 <= car_budget, "a {}-byte trustless CAR", out.len());
            check_car(&d, &out);
        }
    });
    // The blocks are built before; a walk holds a listing per level, a file read one node per
    // level and its output, a CAR its blocks once.
    assert_heap_within("reading the DAG", peak, 4 * (d.stored_bytes as usize + MAX_OUT as usize) + (16 << 20));
});
