//! Export: range reads touch only the blocks they need; paths; hostile DAGs.

use bytes::Bytes;
use cairn_merkle::chunker::ChunkerSpec;
use cairn_merkle::exporter::{self, ExportError, FileSegments, NodeKind, Walker};
use cairn_merkle::hamt::Sharding;
use cairn_merkle::hash::{CidFormat, DAG_PB};
use cairn_merkle::importer::{build_directory, import_bytes, DirEntry, ImportOptions};
use cairn_merkle::{BlockSource, Cid, MemoryBlocks, PbLink, PbNode, SourceError, UnixFs};

use crate::import::noise;

fn small_chunks(size: usize) -> ImportOptions {
    ImportOptions { chunker: ChunkerSpec::Size(size), max_links: 4, ..Default::default() }
}

#[test]
fn range_read_touches_only_overlapping_blocks() {
    // 64 leaves of 1 KiB under a tree of fanout 4: depth 3.
    let data = noise(3, 64 * 1024);
    let mut store = MemoryBlocks::new();
    let root = import_bytes(&data, &small_chunks(1024), &mut store).unwrap();
    for (offset, len) in [(0u64, 1u64), (1023, 2), (5000, 3000), (64 * 1024 - 1, 10), (30_000, 1024)] {
        store.reset_reads();
        let mut out = Vec::new();
        exporter::read_range(&store, &root.cid, offset, Some(len), &mut out).unwrap();
        let end = (offset + len).min(data.len() as u64) as usize;
        assert_eq!(out, &data[offset as usize..end]);
        let leaves = (end as u64 - 1) / 1024 - offset / 1024 + 1;
        // The root, one inner node per level above the leaves on each side, and the leaves.
        let max = 1 + 2 * 2 + leaves as usize;
        assert!(store.reads() <= max, "{offset}+{len}: {} reads > {max}", store.reads());
        assert!(store.reads() >= leaves as usize + 3, "{offset}+{len}: too few reads {}", store.reads());
    }
}

#[test]
fn ranges_past_the_end_are_clipped() {
    let data = noise(4, 5000);
    let mut store = MemoryBlocks::new();
    let root = import_bytes(&data, &small_chunks(1000), &mut store).unwrap();
    let seg = FileSegments::new(&store, &root.cid, 4000, Some(10_000)).unwrap();
    assert_eq!(seg.range(), (4000, 5000));
    let seg = FileSegments::new(&store, &root.cid, 9000, None).unwrap();
    assert_eq!(seg.count(), 0);
}

#[test]
fn paths_resolve_through_directories() {
    let opts = ImportOptions::default();
    let mut store = MemoryBlocks::new();
    let b = import_bytes(b"bee", &opts, &mut store).unwrap();
    let inner = build_directory(vec![DirEntry::new("b.txt", &b)], &opts, &mut store).unwrap();
    let root = build_directory(vec![DirEntry::new("a", &inner), DirEntry::new("ü", &b)], &opts, &mut store).unwrap();
    let cid = exporter::resolve(&store, &root.cid, "a/b.txt").unwrap();
    assert_eq!(exporter::read_to_vec(&store, &cid).unwrap(), b"bee");
    assert_eq!(exporter::resolve(&store, &root.cid, "/ü/").unwrap(), b.cid);
    assert!(matches!(exporter::resolve(&store, &root.cid, "a/missing"), Err(ExportError::NoSuchLink { .. })));
    assert!(matches!(exporter::resolve(&store, &root.cid, "ü/x"), Err(ExportError::NotADirectory(_))));
    let walked: Vec<(String, NodeKind)> =
        Walker::new(&store, &root.cid).map(|w| w.map(|w| (w.path, w.stat.kind)).unwrap()).collect();
    assert_eq!(
        walked,
        vec![
            (String::new(), NodeKind::Directory),
            ("a".into(), NodeKind::Directory),
            ("a/b.txt".into(), NodeKind::File),
            ("ü".into(), NodeKind::File)
        ]
    );
}

/// A source that serves whatever bytes it was given, without checking hashes, so tests can
/// build DAGs no honest encoder would (cycles, lies about sizes).
#[derive(Default)]
struct Forged(std::collections::HashMap<Cid, Bytes>);

impl BlockSource for Forged {
    fn get(&self, cid: &Cid) -> Result<Bytes, SourceError> {
        self.0.get(cid).cloned().ok_or(SourceError::NotFound(*cid))
    }
}

fn file_node(links: Vec<PbLink>, sizes: Vec<u64>) -> Bytes {
    Bytes::from(PbNode { links, data: Some(UnixFs::file_node(sizes).to_bytes()) }.encode())
}

#[test]
fn a_link_cycle_is_an_error_not_a_hang() {
    let me = CidFormat::default().cid(DAG_PB, b"self");
    let mut forged = Forged::default();
    forged.0.insert(me, file_node(vec![PbLink::new(me, "", 10)], vec![10]));
    let r = exporter::read_to_vec(&forged, &me);
    assert!(matches!(r, Err(ExportError::TooDeep(_)) | Err(ExportError::SizeMismatch { .. })), "{r:?}");

    let dir = CidFormat::default().cid(DAG_PB, b"dir");
    let node = PbNode { links: vec![PbLink::new(dir, "loop", 1)], data: Some(UnixFs::directory().to_bytes()) };
    forged.0.insert(dir, Bytes::from(node.encode()));
    let r: Result<Vec<_>, _> = Walker::new(&forged, &dir).collect();
    assert!(matches!(r, Err(ExportError::TooDeep(_))), "{r:?}");
}

#[test]
fn huge_declared_sizes_are_refused() {
    let leaf = CidFormat::default().cid(DAG_PB, b"leaf");
    let root = CidFormat::default().cid(DAG_PB, b"root");
    let mut forged = Forged::default();
    forged.0.insert(
        leaf,
        Bytes::from(
            PbNode { links: vec![], data: Some(UnixFs::file_leaf(Bytes::from_static(b"tiny")).to_bytes()) }.encode(),
        ),
    );
    forged.0.insert(root, file_node(vec![PbLink::new(leaf, "", 10)], vec![u64::MAX / 2]));
    let r = exporter::read_to_vec(&forged, &root);
    assert!(matches!(r, Err(ExportError::SizeMismatch { .. })), "{r:?}");
    // blocksizes that disagree with the links
    forged.0.insert(root, file_node(vec![PbLink::new(leaf, "", 10)], vec![]));
    assert!(matches!(exporter::read_to_vec(&forged, &root), Err(ExportError::BlocksizesMismatch { .. })));
}

#[test]
fn unsafe_names_in_a_dag_are_reported() {
    let opts = ImportOptions::default();
    let mut store = MemoryBlocks::new();
    let f = import_bytes(b"x", &opts, &mut store).unwrap();
    let dir = CidFormat::default().cid(DAG_PB, b"evil");
    let mut forged = Forged::default();
    forged.0.insert(f.cid, store.get(&f.cid).unwrap());
    let node =
        PbNode { links: vec![PbLink::new(f.cid, "../../etc/passwd", 1)], data: Some(UnixFs::directory().to_bytes()) };
    forged.0.insert(dir, Bytes::from(node.encode()));
    let r: Result<Vec<_>, _> = Walker::new(&forged, &dir).collect();
    assert!(matches!(r, Err(ExportError::UnsafeName { .. })), "{r:?}");
}

/// Records the order of reads and read-ahead hints.
struct Hinted<'a> {
    blocks: &'a MemoryBlocks,
    log: std::cell::RefCell<Vec<(bool, Cid)>>,
    /// The `reading` hints: (file, from, to, first block below the root).
    starts: std::cell::RefCell<Vec<(Cid, u64, u64, Cid)>>,
}

impl BlockSource for Hinted<'_> {
    fn get(&self, cid: &Cid) -> Result<Bytes, SourceError> {
        self.log.borrow_mut().push((false, *cid));
        self.blocks.get(cid)
    }

    fn prefetch(&self, cid: &Cid) {
        self.log.borrow_mut().push((true, *cid));
    }

    fn reading(&self, file: &Cid, from: u64, to: u64, first: &Cid) {
        self.starts.borrow_mut().push((*file, from, to, *first));
    }
}

#[test]
fn a_file_read_hints_each_block_in_range_ahead_of_reading_it() {
    // 200 leaves of 1 KiB under one root (fanout 256), read from leaf 50 to leaf 179.
    let data = noise(9, 200 * 1024);
    let mut store = MemoryBlocks::new();
    let opts = ImportOptions { chunker: ChunkerSpec::Size(1024), max_links: 256, ..Default::default() };
    let root = import_bytes(&data, &opts, &mut store).unwrap();
    let source = Hinted { blocks: &store, log: Default::default(), starts: Default::default() };
    let mut out = Vec::new();
    exporter::read_range(&source, &root.cid, 50 * 1024 + 7, Some(130 * 1024 - 7), &mut out).unwrap();
    assert_eq!(out, &data[50 * 1024 + 7..180 * 1024]);
    let log = source.log.into_inner();
    let reads: Vec<Cid> = log.iter().filter(|(h, _)| !h).map(|(_, c)| *c).collect();
    assert_eq!(reads.len(), 1 + 130, "the root and the leaves in range");
    // The source heard once where the read starts and ends, and that leaf 50 comes first.
    assert_eq!(source.starts.into_inner(), vec![(root.cid, 50 * 1024 + 7, 180 * 1024, reads[1])]);
    for (i, leaf) in reads[1..].iter().enumerate() {
        let hinted = log.iter().position(|e| *e == (true, *leaf)).unwrap_or_else(|| panic!("leaf {i} never hinted"));
        let read = log.iter().position(|e| *e == (false, *leaf)).unwrap();
        assert!(hinted < read, "leaf {i} hinted after it was read");
        // Never more than the window ahead of the reader.
        let reads_before_hint = log[..hinted].iter().filter(|(h, _)| !h).count();
        assert!(reads_before_hint + exporter::READ_AHEAD > i + 1, "leaf {i} hinted too early");
    }
    let hints = log.iter().filter(|(h, _)| *h).count();
    assert!(hints <= 131, "{hints} hints for 130 leaves");
    assert!(!log.iter().any(|(h, c)| *h && !reads.contains(c)), "a block out of range was hinted");
}

/// A walk stopped at every block in turn, as a reader that lets its thread go while each
/// comes, keeps its place each time: it meets every node once, in the order of a walk that
/// never stopped, through plain and sharded directories and multi-block files.
#[test]
fn a_walk_stopped_at_each_block_goes_on_from_where_it_was() {
    let opts = ImportOptions {
        sharding: Sharding { threshold: 1000, ..Sharding::default() },
        hamt_fanout: 16,
        ..small_chunks(100)
    };
    let mut store = MemoryBlocks::new();
    let mut top = Vec::new();
    for d in 0..3 {
        let files: Vec<_> = (0..40)
            .map(|i| {
                let f = import_bytes(&noise(d * 100 + i, 50 + 30 * i as usize), &opts, &mut store).unwrap();
                DirEntry::new(format!("file-{i}"), &f)
            })
            .collect();
        let dir = build_directory(files, &opts, &mut store).unwrap();
        top.push(DirEntry::new(format!("dir-{d}"), &dir));
    }
    let root = build_directory(top, &opts, &mut store).unwrap();
    let whole: Vec<String> = Walker::new(&store, &root.cid).map(|w| w.unwrap().path).collect();
    assert_eq!(whole.len(), 1 + 3 + 120);

    let sharded = Walker::new(&store, &root.cid).filter(|w| w.as_ref().unwrap().stat.kind == NodeKind::HamtDirectory);
    assert_eq!(sharded.count(), 3, "the directories of files are sharded");

    // Every block but the root's is still to be fetched; each is fetched when the walk
    // stops at it.
    let mut fetched = std::collections::HashSet::from([root.cid.hash().to_bytes()]);
    let mut cursor = exporter::WalkCursor::new(&root.cid);
    let (mut walked, mut stops) = (Vec::new(), 0);
    loop {
        let source = Fetched(&store, &fetched);
        match cursor.next(&source) {
            None => break,
            Some(Ok(item)) => walked.push(item.path),
            Some(Err(e)) => {
                let cid = e.pending().unwrap_or_else(|| panic!("{e}"));
                assert!(fetched.insert(cid.hash().to_bytes()), "stopped at {cid} twice");
                stops += 1;
            }
        }
    }
    assert_eq!(walked, whole);
    assert!(stops >= 1 + 3 + 120, "{stops} stops");
}

/// Blocks of which only those in the set (by multihash) have been fetched yet.
struct Fetched<'a>(&'a MemoryBlocks, &'a std::collections::HashSet<Vec<u8>>);

impl BlockSource for Fetched<'_> {
    fn get(&self, cid: &Cid) -> Result<Bytes, SourceError> {
        match self.1.contains(&cid.hash().to_bytes()) {
            true => self.0.get(cid),
            false => Err(SourceError::Pending(*cid)),
        }
    }
}
