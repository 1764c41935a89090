//! `add`'s multipart uploads: the body is parsed with multer, as the RPC API does (the
//! boundary from the `Content-Type` value, the whole body capped), each part is turned into
//! a file, directory or symlink as `gateway/src/api/add.rs` does, and fed to
//! `cairn_node::upload::Upload`, whose names, limits and tree this target checks.
//!
//! Checks: nothing panics; memory stays within a multiple of the input; the upload never
//! takes more parts than its limit; every file and symlink it reports reads back from the
//! blocks as sent; and walking each root finds exactly the files reported, each with its
//! bytes, at the path reported.
//!
//! Input: an options byte (raw leaves, CIDv1, trickle, hidden files, wrap, chunk size), a
//! sharding byte (threshold and fanout), a byte for how the body is cut into stream chunks,
//! the `Content-Type` value, a newline, and the body.
#![no_main]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::Cursor;

use bytes::Bytes;
use cairn_fuzz::seeds::{seed, write_if_asked};
use cairn_fuzz::{assert_heap_within, peak_heap_during, Input};
use cairn_merkle::chunker::ChunkerSpec;
use cairn_merkle::exporter::{self, NodeKind, Walker};
use cairn_merkle::hamt::Sharding;
use cairn_merkle::hash::{CidFormat, HashAlg};
use cairn_merkle::importer::{ImportOptions, Layout};
use cairn_merkle::MemoryBlocks;
use cairn_node::add::{AddOptions, Added};
use cairn_node::upload::{Upload, UploadLimits, UploadPart, MAX_SYMLINK_TARGET};
use libfuzzer_sys::fuzz_target;

/// The largest body taken (the RPC API's `API.MaxUploadBytes`, scaled down).
const MAX_BODY: u64 = 1 << 20;
/// The most parts one upload may hold here.
const MAX_PARTS: usize = 32;
const CHUNK_SIZES: [usize; 8] = [1, 3, 16, 64, 256, 1024, 4096, 262_144];
const THRESHOLDS: [usize; 4] = [0, 1, 200, 262_144];
const FANOUTS: [u64; 4] = [8, 16, 256, 1024];

/// One part as the body carried it.
enum Part {
    Dir(String),
    File(String, Vec<u8>),
    Symlink(String, String),
}

fn seeds() -> Vec<(String, Vec<u8>)> {
    let part = |name: &str, ctype: &str, body: &str| {
        format!("--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: {ctype}\r\n\r\n{body}\r\n")
    };
    let body = |parts: &[String]| format!("{}--XyZ--\r\n", parts.concat());
    let input = |opts: u8, shard: u8, cut: u8, parts: &[String]| {
        [&[opts, shard, cut][..], b"multipart/form-data; boundary=XyZ\n", body(parts).as_bytes()].concat()
    };
    let tree = [
        part("docs", "application/x-directory", ""),
        part("docs%2Fa.txt", "application/octet-stream", "hello"),
        part("docs/sub/b.bin", "application/octet-stream", &"0123456789".repeat(30)),
        part("docs/link", "application/symlink", "a.txt"),
        part("docs/.hidden", "text/plain", "secret"),
    ];
    let many: Vec<String> = (0..40).map(|i| part(&format!("d/f{i}"), "text/plain", "x")).collect();
    vec![
        seed("tree", input(0b0110_0000, 0, 0, &tree)),
        seed("tree-v1-raw-wrap", input(0b0101_0011, 0, 7, &tree)),
        seed("sharded", input(0b0010_0000, 0b0000_0001, 0, &many[..20])),
        seed("too-many-parts", input(0, 0, 255, &many)),
        seed("nameless", input(0b1000_0000, 0, 0, &[part("", "text/plain", "no name")])),
        seed("escape", input(0, 0, 0, &[part("../etc/passwd", "text/plain", "x")])),
        seed("conflict", input(0, 0, 0, &[part("a", "text/plain", "x"), part("a/b", "text/plain", "y")])),
        seed("truncated", input(0, 0, 3, &[part("a", "text/plain", "x")])[..60].to_vec()),
    ]
}

/// The parts of `body`, as `add` reads them; stops at the first malformed one.
fn parse(content_type: &str, body: &[u8], cut: usize) -> Vec<Part> {
    let Ok(boundary) = multer::parse_boundary(content_type) else {
        return Vec::new();
    };
    let chunks: Vec<Result<Bytes, Infallible>> = body.chunks(cut).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    let constraints = multer::Constraints::new().size_limit(multer::SizeLimit::new().whole_stream(MAX_BODY));
    let mut mp = multer::Multipart::with_constraints(futures::stream::iter(chunks), boundary, constraints);
    futures::executor::block_on(async {
        let mut parts = Vec::new();
        while let Ok(Some(mut field)) = mp.next_field().await {
            let raw = field.file_name().unwrap_or("").to_owned();
            let name = percent_decode(&raw);
            let kind = field.content_type().map(|m| m.essence_str().to_owned()).unwrap_or_default();
            let mut bytes = Vec::new();
            while let Ok(Some(chunk)) = field.chunk().await {
                bytes.extend_from_slice(&chunk);
            }
            parts.push(match kind.as_str() {
                "application/x-directory" => Part::Dir(name),
                "application/symlink" => {
                    if bytes.len() > MAX_SYMLINK_TARGET {
                        break;
                    }
                    let Ok(target) = String::from_utf8(bytes) else { break };
                    Part::Symlink(name, target)
                }
                _ => Part::File(name, bytes),
            });
        }
        parts
    })
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

fn options(opts: u8, shard: u8) -> (AddOptions, bool) {
    let import = ImportOptions {
        chunker: ChunkerSpec::Size(CHUNK_SIZES[usize::from(opts >> 5)]),
        layout: if opts & 4 != 0 { Layout::Trickle } else { Layout::Balanced },
        format: CidFormat { version: u8::from(opts & 2 != 0), hash: HashAlg::Sha2_256 },
        raw_leaves: opts & 1 != 0,
        hamt_fanout: FANOUTS[usize::from(shard >> 2) % FANOUTS.len()],
        sharding: Sharding { threshold: THRESHOLDS[usize::from(shard) % THRESHOLDS.len()], ..Sharding::default() },
        ..ImportOptions::default()
    };
    let add = AddOptions {
        import,
        recursive: true,
        hidden: opts & 8 != 0,
        empty_dirs: shard & 128 == 0,
        ..AddOptions::default()
    };
    (add, opts & 16 != 0)
}

/// What one upload reported and what it was sent.
struct Outcome {
    blocks: MemoryBlocks,
    roots: Option<Vec<Added>>,
    /// Files reported, with the bytes sent (nameless files of the same bytes share a name).
    files: Vec<(Added, Vec<u8>)>,
    links: Vec<(Added, String)>,
    parts: usize,
}

fn upload(parts: Vec<Part>, opts: &AddOptions, wrap: bool) -> Outcome {
    let mut out = Outcome { blocks: MemoryBlocks::new(), roots: None, files: Vec::new(), links: Vec::new(), parts: 0 };
    let mut up = Upload::new(opts, UploadLimits { max_entries: MAX_PARTS });
    let mut added: Vec<Added> = Vec::new();
    for part in parts {
        let before = added.len();
        let (part, sent) = match part {
            Part::Dir(n) => (UploadPart::Dir(n), None),
            Part::File(n, b) => (UploadPart::File(n, Cursor::new(b.clone())), Some(Ok(b))),
            Part::Symlink(n, t) => (UploadPart::Symlink(n, t.clone()), Some(Err(t))),
        };
        if up.push(part, &mut out.blocks, &mut |a| added.push(a.clone())).is_err() {
            return out;
        }
        out.parts += 1;
        assert!(out.parts <= MAX_PARTS, "the upload took more parts than its limit");
        assert!(added.len() <= before + 1, "one part reported twice");
        if let (Some(a), Some(sent)) = (added.get(before), sent) {
            match sent {
                Ok(bytes) => out.files.push((a.clone(), bytes)),
                Err(target) => out.links.push((a.clone(), target)),
            }
        }
    }
    out.roots = up.finish(wrap, &mut out.blocks, &mut |_| {}).ok();
    out
}

/// `root/path`, as the upload names what is under a root.
fn join(root: &str, path: &str) -> String {
    match (root.is_empty(), path.is_empty()) {
        (true, _) => path.to_owned(),
        (_, true) => root.to_owned(),
        _ => format!("{root}/{path}"),
    }
}

fn check(out: &Outcome) {
    for (a, bytes) in &out.files {
        let back = exporter::read_to_vec(&out.blocks, &a.cid).unwrap_or_else(|e| panic!("{}: {e}", a.path));
        assert!(back == *bytes && a.size == bytes.len() as u64, "{} does not read back as sent", a.path);
    }
    for (a, target) in &out.links {
        let st = exporter::stat(&out.blocks, &a.cid).unwrap_or_else(|e| panic!("{}: {e}", a.path));
        assert_eq!((st.kind, st.target.as_deref()), (NodeKind::Symlink, Some(target.as_str())), "{}", a.path);
    }
    let Some(roots) = &out.roots else {
        return;
    };
    let mut seen = BTreeMap::new();
    for root in roots {
        // Each part makes at most its 256 names.
        for item in Walker::new(&out.blocks, &root.cid).take(MAX_PARTS * 300) {
            let item = item.unwrap_or_else(|e| panic!("walking {}: {e}", root.path));
            if item.stat.kind == NodeKind::File {
                *seen.entry(join(&root.path, &item.path)).or_insert(0) += 1;
            }
        }
    }
    let mut reported = BTreeMap::new();
    for (a, _) in &out.files {
        *reported.entry(a.path.clone()).or_insert(0) += 1;
    }
    assert_eq!(seen, reported, "the roots hold other files than the upload reported");
}

fuzz_target!(init: write_if_asked(seeds), |data: &[u8]| {
    let mut input = Input::new(data);
    let (opts, shard, cut) = (input.u8(), input.u8(), input.u8());
    let content_type = String::from_utf8_lossy(input.until(b'\n')).into_owned();
    let body = input.rest();
    let (opts, wrap) = options(opts, shard);
    let (out, peak) = peak_heap_during(|| upload(parse(&content_type, body, usize::from(cut) + 1), &opts, wrap));
    // Blocks, the parts' bytes, the tree, and a chunker buffer of up to 256 KiB.
    assert_heap_within("an upload", peak, 64 * data.len() + (8 << 20));
    check(&out);
});
