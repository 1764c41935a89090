//! CID parity: `cairn_node::add` against the real Kubo 0.43.1 (`ipfs add --only-hash`, offline,
//! in a network namespace of its own) and the JavaScript UnixFS importer.
//!
//! One deterministic fixture (pseudo-random bytes, never zeros, so deduplication cannot hide a
//! wrong tree) holds boundary file sizes, a small tree with awkward names, and directories on
//! both sides of Kubo's HAMT sharding threshold. Cairn adds each top-level item as
//! `ipfs add -r` would, and every line it prints is compared with Kubo's for the same item:
//! - Kubo's defaults (CIDv0), also against the JS importer's full listing;
//! - `--cid-version=1` (raw leaves), also against the JS importer;
//! - the IPIP-499 profiles `unixfs-v1-2025` and `unixfs-v0-2015`;
//! - the trickle layout, the rabin and buzhash chunkers and a narrow `--max-file-links`;
//! - the `Import.*` config keys, alone and under flags that override them, and the errors
//!   for bad ones;
//! - `--dereference-symlinks` and `--hidden`.
//!
//! Kubo v0.22 (`kubo.py`) stays only for what it is the point of: the CIDs Kubo 0.39 and
//! earlier made, which Cairn reproduces with `Sharding::at_threshold`.
//!
//! Each test collects every mismatch and fails once, listing them all.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Result;
use cairn_merkle::chunker::ChunkerSpec;
use cairn_merkle::hamt::Sharding;
use cairn_merkle::importer::{AddFlags, ImportOptions, Layout, Profile, SinkError};
use cairn_merkle::Block;
use cairn_node::add::{add_path, AddOptions, Added, Symlinks};
use cairn_node::config::{ConfigError, Import};
use cairn_node::import_settings::import_flags;
use cairn_testnet::reference::{self, RefEntry, Reference};

/// Kubo's default chunk size (`size-262144`).
const CHUNK: u64 = 262_144;
/// Kubo's most links in one balanced-layout file node.
const LINKS: u64 = 174;

/// File sizes at the edges of the DAG shapes (STYLE.md 10). Depth 3 would need 174² chunks
/// (7.9 GB), too big for CI; `depth2_three_subtrees` is the deepest we build.
const SIZES: &[(&str, u64)] = &[
    // No bytes at all: a lone UnixFS file node (Kubo: QmbFMke1KX...).
    ("empty", 0),
    // The smallest non-empty file: one leaf, which is the root.
    ("one_byte", 1),
    // One byte short of a chunk: still a single node.
    ("chunk_minus_1", CHUNK - 1),
    // Exactly one chunk: still a single node, no parent.
    ("chunk", CHUNK),
    // One byte over: two leaves under a root.
    ("chunk_plus_1", CHUNK + 1),
    // 174 leaves, the last one a byte short: the widest depth-1 root.
    ("links_chunks_minus_1", LINKS * CHUNK - 1),
    // 174 full leaves: the widest depth-1 root, exactly full.
    ("links_chunks", LINKS * CHUNK),
    // 175 leaves: the root grows to depth 2 (one full subtree and one with a single leaf).
    ("links_chunks_plus_1", LINKS * CHUNK + 1),
    // 349 leaves: depth 2 with three subtrees under the root, the last one 5 bytes.
    ("depth2_three_subtrees", 2 * LINKS * CHUNK + 5),
];

/// Kubo shards a directory when the sum over its links of (name bytes + CID bytes) is over
/// 256 KiB: `>` since Kubo 0.40, as in the JS importer; Kubo 0.39 and earlier sharded at
/// equality (`>=`). CIDs are 34 bytes in CIDv0 and 36 for CIDv1 raw leaves, so names of
/// 256 - 34 = 222 or 256 - 36 = 220 bytes make each link count 256 bytes, and 1024 of them
/// exactly 262144.
const THRESHOLD: usize = 262_144;

/// The top-level items of the fixture, each added on its own as `ipfs add -r ITEM` would.
/// `small` items have every line checked against Kubo; the big ones only their root (which
/// covers all below it, and the JS listing pins down any difference).
const ITEMS: &[(&str, bool)] = &[
    ("sizes", true),
    ("tree", true),
    // 4096 names of 30 bytes: CIDv0 estimate 4096 * 64 = 262144, exactly the threshold, so
    // Kubo 0.43 keeps it plain and Kubo 0.22 shards it (4096 entries in 256 slots also make
    // second- and third-level shards). (CIDv1: 4096 * 66, sharded by both.)
    ("shard_exact_v0", false),
    // 1023 names of 222 bytes: CIDv0 estimate 1023 * 256 = 261888, one link short of the
    // threshold, so it stays a plain directory. (CIDv1: 1023 * 258 = 263934, sharded.)
    ("flat_max_v0", false),
    // 1024 names of 220 bytes: CIDv1 estimate 1024 * 256 = 262144, exactly the threshold:
    // plain for Kubo 0.43, sharded for 0.22. (CIDv0: 1024 * 254 = 260096, plain.)
    ("shard_exact_v1", false),
];

fn write_random(path: &Path, len: u64, seed: u64) -> Result<()> {
    Ok(cairn_testnet::data::write_random(path, len, seed)?)
}

/// `count` small distinct files named `prefix` + zero-padded index, `name_len` bytes each.
fn write_many(dir: &Path, prefix: &str, name_len: usize, count: usize) -> Result<()> {
    fs::create_dir_all(dir)?;
    for i in 0..count {
        let name = format!("{prefix}{i:0width$}", width = name_len - prefix.len());
        assert_eq!(name.len(), name_len);
        fs::write(dir.join(&name), format!("{name}\n"))?;
    }
    Ok(())
}

/// Builds the fixture under `root` (see [`ITEMS`]).
fn build_fixture(root: &Path) -> Result<()> {
    let sizes = root.join("sizes");
    fs::create_dir_all(&sizes)?;
    for (i, (name, len)) in SIZES.iter().enumerate() {
        write_random(&sizes.join(name), *len, i as u64 + 1)?;
    }

    let tree = root.join("tree");
    for d in ["ünïcødé", "empty dir", "has empty file", "a/b/c"] {
        fs::create_dir_all(tree.join(d))?;
    }
    write_random(&tree.join("ünïcødé/日本語.txt"), 1000, 100)?;
    write_random(&tree.join("name with spaces.txt"), 10, 101)?;
    write_random(&tree.join("has empty file/empty"), 0, 102)?;
    // Two chunks, three levels down.
    write_random(&tree.join("a/b/c/deep.bin"), CHUNK + 7, 103)?;
    // Byte order, not alphabetical: "Zeta" < "alpha" < "z" < "é".
    write_random(&tree.join("Zeta"), 3, 104)?;
    write_random(&tree.join("alpha"), 4, 105)?;
    write_random(&tree.join("z"), 5, 106)?;
    write_random(&tree.join("é"), 6, 107)?;
    // Same word, composed (NFC) and decomposed (NFD): two different names.
    write_random(&tree.join("caf\u{e9}"), 7, 108)?;
    write_random(&tree.join("cafe\u{301}"), 8, 109)?;
    // A symlink is stored as a UnixFS symlink node, not followed.
    std::os::unix::fs::symlink("ünïcødé/日本語.txt", tree.join("link"))?;

    // Names and counts: see ITEMS.
    write_many(&root.join("shard_exact_v0"), "entry-", 30, THRESHOLD / (30 + 34))?;
    write_many(&root.join("flat_max_v0"), "flat-", 222, THRESHOLD / (222 + 34) - 1)?;
    write_many(&root.join("shard_exact_v1"), "v1-", 220, THRESHOLD / (220 + 36))?;
    Ok(())
}

/// Adds one item as `ipfs add -r` would, blocks going nowhere (hash only).
fn cairn_add(path: &Path, import: ImportOptions) -> Vec<Added> {
    let opts = AddOptions { import, recursive: true, ..AddOptions::default() };
    let mut sink = |_: Block| -> Result<(), SinkError> { Ok(()) };
    match add_path(path, &opts, &mut sink) {
        Ok(lines) => lines,
        Err(e) => panic!("cairn add {}: {e}", path.display()),
    }
}

/// Cairn's lines for every item, keyed by item name.
fn cairn_all(root: &Path, import: &ImportOptions) -> BTreeMap<&'static str, Vec<Added>> {
    ITEMS
        .iter()
        .map(|(item, _)| {
            let lines = cairn_add(&root.join(item), import.clone());
            (*item, lines)
        })
        .collect()
}

/// Checks Cairn's listing of one item against a reference listing of the same item: same
/// paths, same CIDs, root last in both.
fn compare_listing(item: &str, cairn: &[Added], reference: &[RefEntry], what: &str, bad: &mut Vec<String>) {
    let ours: BTreeMap<&str, String> = cairn.iter().map(|a| (a.path.as_str(), a.cid.to_string())).collect();
    let theirs: BTreeMap<&str, &str> = reference.iter().map(|e| (e.path.as_str(), e.cid.as_str())).collect();
    if cairn.last().map(|a| a.path.as_str()) != Some(item) {
        bad.push(format!("{item}: Cairn's last line is {:?}, not the root", cairn.last().map(|a| &a.path)));
    }
    for (path, cid) in &ours {
        match theirs.get(path) {
            Some(t) if t == cid => {}
            Some(t) => bad.push(format!("{path}: Cairn {cid}, {what} {t}")),
            None => bad.push(format!("{path}: Cairn printed it, {what} did not")),
        }
    }
    for path in theirs.keys() {
        if !ours.contains_key(path) {
            bad.push(format!("{path}: {what} printed it, Cairn did not"));
        }
    }
}

fn fail_on(bad: &[String], title: &str) {
    assert!(bad.is_empty(), "{title}: {} mismatches:\n  {}", bad.len(), bad.join("\n  "));
}

/// Kubo 0.43's listing of every item, added with `args` in a repo of `profile`.
fn kubo_all(root: &Path, profile: Option<&str>, args: &[&str]) -> Result<BTreeMap<&'static str, Vec<RefEntry>>> {
    let paths: Vec<PathBuf> = ITEMS.iter().map(|(item, _)| root.join(item)).collect();
    let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
    let all = reference::kubo_add(&refs, profile, args)?;
    Ok(ITEMS.iter().map(|(item, _)| *item).zip(all).collect())
}

/// Cairn with `import` against Kubo 0.43 with `profile` and `args`, every line of every item.
fn check_against_kubo(
    root: &Path,
    import: &ImportOptions,
    profile: Option<&str>,
    args: &[&str],
    bad: &mut Vec<String>,
) -> Result<()> {
    compare_with_kubo(root, &cairn_all(root, import), profile, args, bad)
}

/// Cairn's listing `cairn` (of [`cairn_all`]) against Kubo 0.43's with `profile` and `args`.
fn compare_with_kubo(
    root: &Path,
    cairn: &BTreeMap<&'static str, Vec<Added>>,
    profile: Option<&str>,
    args: &[&str],
    bad: &mut Vec<String>,
) -> Result<()> {
    let kubo = kubo_all(root, profile, args)?;
    let what = format!(
        "Kubo {} ({}{})",
        reference::KUBO_VERSION,
        profile.unwrap_or("defaults"),
        args.iter().map(|a| format!(" {a}")).collect::<String>()
    );
    for (item, _) in ITEMS {
        compare_listing(item, &cairn[item], &kubo[item], &what, bad);
    }
    Ok(())
}

/// A temporary directory holding the fixture (see [`ITEMS`]).
fn fixture() -> Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    build_fixture(dir.path())?;
    Ok(dir)
}

/// Cairn with `import` against Kubo 0.43 with `args` and against the JS importer at
/// `cid_version`, every line of every item; either reference may be missing outside CI.
fn matches_kubo_and_js(import: &ImportOptions, args: &[&str], cid_version: u8, title: &str) -> Result<()> {
    let have_kubo = reference::require(Reference::Kubo043);
    let have_js = reference::require(Reference::Js);
    if !have_kubo && !have_js {
        return Ok(());
    }
    let dir = fixture()?;
    let root = dir.path();
    let cairn = cairn_all(root, import);
    let mut bad = Vec::new();
    if have_kubo {
        compare_with_kubo(root, &cairn, None, args, &mut bad)?;
    }
    if have_js {
        for (item, _) in ITEMS {
            let js = reference::js_import_all(&root.join(item), cid_version, None)?;
            compare_listing(item, &cairn[item], &js, "JS importer", &mut bad);
        }
    }
    fail_on(&bad, title);
    Ok(())
}

#[test]
fn kubo_reference_gives_known_cids() -> Result<()> {
    if !reference::require(Reference::Kubo043) {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let empty = dir.path().join("empty");
    let hello = dir.path().join("hello");
    fs::write(&empty, b"")?;
    fs::write(&hello, b"hello world\n")?;
    let cids: Vec<String> =
        reference::kubo_add(&[&empty, &hello], None, &[])?.into_iter().flatten().map(|e| e.cid).collect();
    // Well-known: `printf '' | ipfs add -n` and `echo 'hello world' | ipfs add -n`.
    assert_eq!(
        cids,
        ["QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH", "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"]
    );
    Ok(())
}

#[test]
fn js_reference_gives_known_cids() -> Result<()> {
    if !reference::require(Reference::Js) {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let hello = dir.path().join("hello");
    fs::write(&hello, b"hello world\n")?;
    assert_eq!(reference::js_import(&hello, 0, false)?, "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o");
    // CIDv1 raw block of the same bytes: `ipfs add -n --cid-version=1`.
    assert_eq!(reference::js_import(&hello, 1, true)?, "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4");
    Ok(())
}

/// Kubo's defaults (CIDv0): Cairn == Kubo 0.43 and == the JS importer, line by line.
#[test]
fn cid_v0_matches_kubo() -> Result<()> {
    matches_kubo_and_js(&ImportOptions::default(), &[], 0, "CIDv0 parity")
}

/// `--cid-version=1` (raw leaves): Cairn == Kubo 0.43 and == the JS importer, line by line.
#[test]
fn cid_v1_matches_kubo_and_the_js_importer() -> Result<()> {
    matches_kubo_and_js(&ImportOptions::cid_v1(), &["--cid-version=1"], 1, "CIDv1 parity")
}

/// The IPIP-499 profiles: a Kubo repo made with `--profile=unixfs-v1-2025` (or
/// `unixfs-v0-2015`) against Cairn's `Profile` of the same name.
#[test]
fn profiles_match_kubo() -> Result<()> {
    if !reference::require(Reference::Kubo043) {
        return Ok(());
    }
    let dir = fixture()?;
    let root = dir.path();
    let mut bad = Vec::new();
    for p in [Profile::UnixfsV1_2025, Profile::UnixfsV0_2015] {
        check_against_kubo(root, &p.options(), Some(p.name()), &[], &mut bad)?;
    }
    fail_on(&bad, "profile parity");
    Ok(())
}

/// Layouts, chunkers and file widths: `--trickle`, `--chunker=rabin`, `--chunker=buzhash`,
/// `--max-file-links=3`, each against Kubo 0.43 with the same flag.
#[test]
fn layouts_and_chunkers_match_kubo() -> Result<()> {
    if !reference::require(Reference::Kubo043) {
        return Ok(());
    }
    let dir = fixture()?;
    let root = dir.path();
    let mut bad = Vec::new();
    let base = ImportOptions::default();
    let cases: [(ImportOptions, &str); 4] = [
        (ImportOptions { layout: Layout::Trickle, ..base.clone() }, "--trickle"),
        (ImportOptions { chunker: "rabin".parse()?, ..base.clone() }, "--chunker=rabin"),
        (ImportOptions { chunker: ChunkerSpec::Buzhash, ..base.clone() }, "--chunker=buzhash"),
        (ImportOptions { max_links: 3, ..base.clone() }, "--max-file-links=3"),
    ];
    for (import, flag) in cases {
        check_against_kubo(root, &import, None, &[flag], &mut bad)?;
    }
    fail_on(&bad, "layout and chunker parity");
    Ok(())
}

/// `--empty-dirs=false` leaves out the fixture tree's empty directory, as Kubo 0.43.1 does.
#[test]
fn empty_directories_left_out_match_kubo() -> Result<()> {
    if !reference::require(Reference::Kubo043) {
        return Ok(());
    }
    let dir = fixture()?;
    let tree = dir.path().join("tree");
    let opts = AddOptions { recursive: true, empty_dirs: false, ..AddOptions::default() };
    let mut sink = |_: Block| -> Result<(), SinkError> { Ok(()) };
    let ours = add_path(&tree, &opts, &mut sink)?;
    assert!(!ours.iter().any(|a| a.path == "tree/empty dir"), "the empty directory is left out");
    let kubo = reference::kubo_add(&[&tree], None, &["--empty-dirs=false"])?.remove(0);
    let mut bad = Vec::new();
    compare_listing("tree", &ours, &kubo, "Kubo (--empty-dirs=false)", &mut bad);
    fail_on(&bad, "--empty-dirs=false parity");
    Ok(())
}

/// What Kubo 0.22 is kept for: the CIDs Kubo 0.39 and earlier made, which shard a directory
/// whose estimate *equals* 256 KiB. `Sharding::at_threshold` reproduces them.
#[test]
fn old_kubo_cids_reproduce_with_the_legacy_switch() -> Result<()> {
    if !reference::require(Reference::Kubo) {
        return Ok(());
    }
    let dir = fixture()?;
    let root = dir.path();
    let legacy =
        ImportOptions { sharding: Sharding { at_threshold: true, ..Sharding::default() }, ..ImportOptions::default() };
    let items: Vec<&str> =
        ITEMS.iter().map(|(item, _)| *item).filter(|i| i.starts_with("shard") || i.starts_with("flat")).collect();
    let paths: Vec<PathBuf> = items.iter().map(|i| root.join(i)).collect();
    let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
    let old = reference::kubo_add_hash(&refs)?;
    let mut bad = Vec::new();
    for ((item, path), kubo) in items.iter().zip(&paths).zip(old) {
        let ours = cairn_add(path, legacy.clone()).last().map(|a| a.cid.to_string()).unwrap_or_default();
        if ours != kubo {
            bad.push(format!("{item}: Cairn (at_threshold) {ours}, Kubo 0.22 {kubo}"));
        }
        let today = cairn_add(path, ImportOptions::default()).last().map(|a| a.cid.to_string()).unwrap_or_default();
        if *item == "shard_exact_v0" && today == kubo {
            bad.push(format!("{item}: the default switch gives Kubo 0.22's CID; it should not"));
        }
    }
    fail_on(&bad, "Kubo 0.22 parity with the legacy switch");
    Ok(())
}

/// Config keys and their JSON values, as `ipfs config --json KEY VALUE` takes them.
type Keys<'a> = &'a [(&'a str, &'a str)];

/// The `Import` section holding `config`'s keys (`Import.KEY`, JSON values), as Cairn reads it.
fn import_section(config: &[(&str, &str)]) -> Import {
    let object: serde_json::Map<String, serde_json::Value> = config
        .iter()
        .map(|(k, v)| (k.trim_start_matches("Import.").to_owned(), serde_json::from_str(v).unwrap()))
        .collect();
    serde_json::from_value(serde_json::Value::Object(object)).unwrap()
}

/// The `Import.*` keys decide CIDs as in Kubo 0.43, and flags given beat them: each config
/// set in a Kubo repo (`ipfs config --json`) and in Cairn's, the same flags to both.
#[test]
fn import_config_matches_kubo() -> Result<()> {
    if !reference::require(Reference::Kubo043) {
        return Ok(());
    }
    let dir = fixture()?;
    let cases: &[(Keys<'_>, &[&str], AddFlags)] = &[
        // CIDv1 from the config brings raw leaves, as the flag does.
        (
            &[
                ("Import.CidVersion", "1"),
                ("Import.UnixFSChunker", r#""size-65536""#),
                ("Import.UnixFSDAGLayout", r#""trickle""#),
                ("Import.UnixFSFileMaxLinks", "50"),
            ],
            &[],
            AddFlags::default(),
        ),
        // A hash other than sha2-256 brings CIDv1.
        (&[("Import.HashFunction", r#""blake3""#)], &[], AddFlags::default()),
        (
            &[
                ("Import.CidVersion", "1"),
                ("Import.UnixFSRawLeaves", "false"),
                ("Import.UnixFSHAMTDirectorySizeEstimation", r#""block""#),
                ("Import.UnixFSHAMTDirectorySizeThreshold", r#""200KiB""#),
                ("Import.UnixFSHAMTDirectoryMaxFanout", "64"),
            ],
            &[],
            AddFlags::default(),
        ),
        // Flags over the config: balanced and CIDv0 (so no raw leaves) whatever it says.
        (
            &[
                ("Import.UnixFSDAGLayout", r#""trickle""#),
                ("Import.CidVersion", "1"),
                ("Import.UnixFSChunker", r#""size-1000""#),
            ],
            &["--trickle=false", "--cid-version=0"],
            AddFlags { trickle: Some(false), cid_version: Some(0), ..AddFlags::default() },
        ),
    ];
    let mut bad = Vec::new();
    for (config, args, flags) in cases {
        let import = ImportOptions::resolve(None, &flags.or(&import_flags(&import_section(config))?))?;
        let cairn = cairn_all(dir.path(), &import);
        let kubo = kubo_all_configured(dir.path(), config, args)?;
        for (item, _) in ITEMS {
            compare_listing(item, &cairn[item], &kubo[item], &format!("Kubo ({config:?} {args:?})"), &mut bad);
        }
    }
    fail_on(&bad, "Import.* config parity");
    Ok(())
}

/// Kubo 0.43's listing of every item, added with `args` in a repo with `config` set.
fn kubo_all_configured(
    root: &Path,
    config: &[(&str, &str)],
    args: &[&str],
) -> Result<BTreeMap<&'static str, Vec<RefEntry>>> {
    let paths: Vec<PathBuf> = ITEMS.iter().map(|(item, _)| root.join(item)).collect();
    let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
    let all = reference::kubo_add_configured(&refs, None, config, args)?;
    Ok(ITEMS.iter().map(|(item, _)| *item).zip(all).collect())
}

/// A bad `Import.*` key is refused by Cairn with the words Kubo 0.43 refuses it with (Kubo
/// when it adds, Cairn already when the key is written).
#[test]
fn bad_import_config_is_refused_in_kubos_words() -> Result<()> {
    if !reference::require(Reference::Kubo043) {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("f");
    fs::write(&file, b"x")?;
    let cases = [
        ("Import.CidVersion", "5"),
        ("Import.UnixFSFileMaxLinks", "0"),
        ("Import.UnixFSDirectoryMaxLinks", "-1"),
        ("Import.UnixFSHAMTDirectoryMaxFanout", "300"),
        ("Import.UnixFSChunker", r#""rabin""#),
        ("Import.HashFunction", r#""sha2-257""#),
        ("Import.HashFunction", r#""md5""#),
        ("Import.UnixFSHAMTDirectorySizeEstimation", r#""bytes""#),
        ("Import.UnixFSDAGLayout", r#""wide""#),
    ];
    let mut bad = Vec::new();
    for (key, value) in cases {
        let ours = match import_flags(&import_section(&[(key, value)])) {
            Err(ConfigError::Invalid(message)) => message,
            other => {
                bad.push(format!("{key} = {value}: Cairn took it ({other:?})"));
                continue;
            }
        };
        match reference::kubo_add_configured(&[&file], None, &[(key, value)], &[]) {
            Ok(_) => bad.push(format!("{key} = {value}: Kubo took it")),
            Err(e) if format!("{e:#}").contains(&ours) => {}
            Err(e) => bad.push(format!("{key} = {value}: Cairn says {ours:?}; Kubo: {e:#}")),
        }
    }
    fail_on(&bad, "Import.* errors");
    Ok(())
}

/// `--dereference-symlinks` (links to files and to directories, inside the tree and as the
/// argument) and `--hidden`, against Kubo 0.43 with the same flags.
#[test]
fn dereferenced_symlinks_and_hidden_files_match_kubo() -> Result<()> {
    if !reference::require(Reference::Kubo043) {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let tree = dir.path().join("linked");
    fs::create_dir_all(tree.join("real/inner"))?;
    fs::create_dir_all(tree.join(".hidden_dir"))?;
    write_random(&tree.join("real/data.bin"), CHUNK + 3, 300)?;
    write_random(&tree.join("real/inner/small"), 9, 301)?;
    write_random(&tree.join(".dotfile"), 5, 302)?;
    write_random(&tree.join(".hidden_dir/x"), 6, 303)?;
    std::os::unix::fs::symlink("real/data.bin", tree.join("to_file"))?;
    std::os::unix::fs::symlink("real", tree.join("to_dir"))?;
    // Through another link: real/../to_dir/inner is real/inner.
    std::os::unix::fs::symlink("../to_dir/inner", tree.join("real/sideways"))?;
    let arg_link = dir.path().join("arg_link");
    std::os::unix::fs::symlink(&tree, &arg_link)?;

    let mut bad = Vec::new();
    let cases: &[(Symlinks, bool, &[&str])] = &[
        (Symlinks::Keep, false, &[]),
        (Symlinks::Keep, true, &["--hidden"]),
        (Symlinks::Dereference, false, &["--dereference-symlinks"]),
        (Symlinks::Dereference, true, &["--dereference-symlinks", "--hidden"]),
    ];
    for (symlinks, hidden, args) in cases {
        for path in [&tree, &arg_link] {
            let opts = AddOptions { recursive: true, hidden: *hidden, symlinks: *symlinks, ..AddOptions::default() };
            let mut sink = |_: Block| -> Result<(), SinkError> { Ok(()) };
            let ours = match add_path(path, &opts, &mut sink) {
                Ok(lines) => lines,
                Err(e) => {
                    bad.push(format!("{} {args:?}: Cairn failed: {e}", path.display()));
                    continue;
                }
            };
            let kubo = reference::kubo_add(&[path], None, args)?.remove(0);
            let root = ours.last().map(|a| a.path.clone()).unwrap_or_default();
            compare_listing(&root, &ours, &kubo, &format!("Kubo {args:?}"), &mut bad);
        }
    }
    fail_on(&bad, "symlinks and hidden files");
    Ok(())
}

/// `cairn dag export` writes the very bytes `ipfs dag export` does for the same DAG: the CAR
/// header, then every block once, depth-first, in link order. Files at the DAG's edges, the
/// tree (a symlink, an empty file, unicode names), a HAMT, in CIDv0 and CIDv1; each item
/// added to a Kubo repo and a Cairn repo (RocksDB), exported from each.
#[test]
fn dag_export_is_byte_identical_to_kubos() -> Result<()> {
    if !reference::require(Reference::Kubo043) {
        return Ok(());
    }
    let dir = fixture()?;
    let node = cairn_node::Node::init(&dir.path().join("cairn-repo"), cairn_node::config::Profile::Test)?;
    let mut bad = Vec::new();
    let items = ["sizes/one_byte", "sizes/chunk_plus_1", "sizes/links_chunks_plus_1", "tree", "shard_exact_v1"];
    for (args, import) in [(&[][..], ImportOptions::default()), (&["--cid-version=1"][..], ImportOptions::cid_v1())] {
        for item in items {
            let path = dir.path().join(item);
            let (kubo_cid, kubo_car) = reference::kubo_dag_export(&path, args)?;
            let opts = AddOptions { import: import.clone(), recursive: true, ..AddOptions::default() };
            let cid = node.add(&path, &opts, true, &mut |_| {})?.cid;
            if cid.to_string() != kubo_cid {
                bad.push(format!("{item} {args:?}: Cairn {cid}, Kubo {kubo_cid}"));
                continue;
            }
            let mut ours = Vec::new();
            node.dag_export(&cid, &mut ours)?;
            if ours != kubo_car {
                let at = ours.iter().zip(&kubo_car).position(|(a, b)| a != b).unwrap_or(ours.len().min(kubo_car.len()));
                bad.push(format!(
                    "{item} {args:?}: CARs differ at byte {at} (Cairn {} bytes, Kubo {})",
                    ours.len(),
                    kubo_car.len()
                ));
            }
        }
    }
    fail_on(&bad, "dag export parity");
    Ok(())
}
