//! The test fixtures of IPIP-499 (UnixFS CID profiles): for each profile, the files and
//! directories at the edges of its chunk size, file width and HAMT threshold, with the root CIDs
//! the IPIP gives (ipfs/specs `src/ipips/ipip-0499.md`, section "Test fixtures", ratified
//! 2026-03).
//!
//! The IPIP names the inputs by size and seed; the bytes come from the recipe Kubo's own tests
//! use for them: the ChaCha20 keystream (12-byte zero nonce, counter 0) keyed by the SHA-256 of
//! the seed. A directory's entries each hold the one byte `x`, and their names are drawn in
//! order from one keystream per directory, each byte mapped to a 39-character alphabet
//! (`cairn_testnet::data::fixture_names`).
//! The real Kubo 0.43.1 is given the same inputs, written out, in
//! [`directories_and_small_files_match_kubo`].

use cairn_merkle::hash::HashAlg;
use cairn_merkle::importer::{
    build_directory, import_bytes, import_file, AddFlags, DirEntry, Discard, ImportOptions, Layout, Profile,
};
use cairn_testnet::data::{fixture_names, Keystream};

fn file_cid(profile: Profile, len: u64, seed: &str, layout: Layout) -> String {
    let opts = ImportOptions { layout, ..profile.options() };
    import_file(Keystream::new(seed, len), &opts, &mut Discard).unwrap().cid.to_string()
}

/// A directory of `count` entries holding `x`, the last name `last_len` long and the others
/// `name_len`.
fn dir_cid(profile: Profile, count: usize, name_len: usize, last_len: usize, seed: &str) -> String {
    let opts = profile.options();
    let x = import_bytes(b"x", &opts, &mut Discard).unwrap();
    let entries = fixture_names(seed, count, name_len, last_len).into_iter().map(|n| DirEntry::new(n, &x)).collect();
    build_directory(entries, &opts, &mut Discard).unwrap().cid.to_string()
}

const V1: Profile = Profile::UnixfsV1_2025;
const V0: Profile = Profile::UnixfsV0_2015;
const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

#[test]
fn small_files_and_empty_directories() {
    let opts = |p: Profile| p.options();
    let hello = |p| import_bytes(b"hello world", &opts(p), &mut Discard).unwrap().cid.to_string();
    assert_eq!(hello(V0), "Qmf412jQZiuVUtdgnB36FXFX7xg5V6KEbSJ4dpQuhkLyfD");
    assert_eq!(hello(V1), "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e");
    let empty = |p| build_directory(vec![], &opts(p), &mut Discard).unwrap().cid.to_string();
    assert_eq!(empty(V0), "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn");
    assert_eq!(empty(V1), "bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354");
}

#[test]
fn files_at_the_chunk_size_and_one_byte_over() {
    let b = Layout::Balanced;
    assert_eq!(file_cid(V0, 256 * KIB, "chunk-v0-seed", b), "QmWmRj3dFDZdb6ABvbmKhEL6TmPbAfBZ1t5BxsEyJrcZhE");
    assert_eq!(file_cid(V0, 256 * KIB + 1, "chunk-v0-seed", b), "QmYyLxtzZyW22zpoVAtKANLRHpDjZtNeDjQdJrcQNWoRkJ");
    assert_eq!(file_cid(V1, MIB, "chunk-v1-seed", b), "bafkreiacndfy443ter6qr2tmbbdhadvxxheowwf75s6zehscklu6ezxmta");
    assert_eq!(
        file_cid(V1, MIB + 1, "chunk-v1-seed", b),
        "bafybeigmix7t42i6jacydtquhet7srwvgpizfg7gjbq7627d35mjomtu64"
    );
}

#[test]
fn files_at_the_widest_node_and_one_byte_over() {
    let b = Layout::Balanced;
    // 174 chunks of 256 KiB: one node holds them all; a byte more makes a second level.
    assert_eq!(file_cid(V0, 174 * 256 * KIB, "v0-seed", b), "QmUbBALi174SnogsUzLpYbD4xPiBSFANF4iztWCsHbMKh2");
    assert_eq!(file_cid(V0, 174 * 256 * KIB + 1, "v0-seed", b), "QmV81WL765sC8DXsRhE5fJv2rwhS4icHRaf3J9Zk5FdRnW");
    // 1024 chunks of 1 MiB, the same edge for unixfs-v1-2025 (1 GiB: a few seconds).
    assert_eq!(
        file_cid(V1, 1024 * MIB, "v1-2025-seed", b),
        "bafybeihmf37wcuvtx4hpu7he5zl5qaf2ineo2lqlfrapokkm5zzw7zyhvm"
    );
    assert_eq!(
        file_cid(V1, 1024 * MIB + 1, "v1-2025-seed", b),
        "bafybeibdsi225ugbkmpbdohnxioyab6jsqrmkts3twhpvfnzp77xtzpyhe"
    );
}

#[test]
fn a_trickle_file() {
    // The IPIP's reader fixture for the trickle layout, with Kubo's other defaults. Kubo's
    // trickle leaves are UnixFS nodes of type Raw (its balanced ones are of type File).
    assert_eq!(
        file_cid(V0, 45 * MIB, "trickle-test", Layout::Trickle),
        "QmbqR6g7YCpndLcCZZXkGyj13uMcSrwDYUvZ47vJqBVjUH"
    );
    // One chunk still gets a root above its leaf; no bytes at all is the empty file of either
    // layout (all three checked with Kubo 0.43.1).
    assert_eq!(
        file_cid(V0, 256 * KIB, "trickle-test", Layout::Trickle),
        "QmdFzF3eAfoE3wrh8ufSo34w3i6ZpUNJCi1dkuUibkup4u"
    );
    assert_eq!(file_cid(V0, 5, "trickle-test", Layout::Trickle), "QmYKjzauMQqKkKbNe3coii7WPqCN18FcjVriPSVoX6Fhm9");
    assert_eq!(file_cid(V0, 0, "trickle-test", Layout::Trickle), "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH");
    let raw = ImportOptions { layout: Layout::Trickle, raw_leaves: true, ..V0.options() };
    let five = import_file(Keystream::new("trickle-test", 5), &raw, &mut Discard).unwrap().cid.to_string();
    assert_eq!(five, "QmXU68Az9wtibqkfa8WxAHhoLX8dbDxnV9PbDUH6bqUvGt", "trickle over raw leaves");
}

#[test]
fn directories_at_the_hamt_threshold_and_one_byte_over() {
    // unixfs-v0-2015 counts names and CIDs: 4096 * (30 + 34) is exactly 262144, which stays a
    // plain directory (`>`); 4033 * (31 + 34) = 262145 is sharded.
    assert_eq!(dir_cid(V0, 4096, 30, 30, "hamt-unixfs-v0-2015"), "QmX5GtRk3TSSEHtdrykgqm4eqMEn3n2XhfkFAis5fjyZmN");
    assert_eq!(dir_cid(V0, 4033, 31, 31, "hamt-unixfs-v0-2015"), "QmeMiJzmhpJAUgynAcxTQYek5PPKgdv3qEvFsdV3XpVnvP");
    // unixfs-v1-2025 counts the block: 4765 links of 55 bytes, one of 65 and 4 bytes of data
    // make exactly 262144, still plain; a last name one longer makes 262145, sharded.
    assert_eq!(
        dir_cid(V1, 4766, 11, 21, "hamt-unixfs-v1-2025"),
        "bafybeic3h7rwruealwxkacabdy45jivq2crwz6bufb5ljwupn36gicplx4"
    );
    assert_eq!(
        dir_cid(V1, 4766, 11, 22, "hamt-unixfs-v1-2025"),
        "bafybeiegvuterwurhdtkikfhbxcldohmxp566vpjdofhzmnhv6o4freidu"
    );
}

#[test]
fn profiles_go_by_kubos_names() {
    for (name, p) in [("unixfs-v1-2025", V1), ("unixfs-v0-2015", V0), ("legacy-cid-v0", V0)] {
        assert_eq!(name.parse::<Profile>(), Ok(p));
    }
    assert_eq!(V0.to_string(), "unixfs-v0-2015");
    assert_eq!(V0.options(), ImportOptions::default(), "Kubo's defaults are unixfs-v0-2015");
    let err = "unixfs-v2".parse::<Profile>().unwrap_err().to_string();
    assert!(err.contains("unixfs-v2") && err.contains("unixfs-v1-2025"), "{err}");
}

#[test]
fn flags_beat_the_profile_which_beats_kubos_defaults() {
    let none = AddFlags::default();
    assert_eq!(ImportOptions::resolve(None, &none), Ok(ImportOptions::default()));
    assert_eq!(ImportOptions::resolve(Some(V1.options()), &none), Ok(V1.options()));
    // Without a profile, CIDv1 brings raw leaves; under unixfs-v1-2025, CIDv0 keeps them.
    let v1 = AddFlags { cid_version: Some(1), ..AddFlags::default() };
    assert!(ImportOptions::resolve(None, &v1).unwrap().raw_leaves);
    let v0 = AddFlags { cid_version: Some(0), ..AddFlags::default() };
    let kept = ImportOptions::resolve(Some(V1.options()), &v0).unwrap();
    assert!(kept.raw_leaves && kept.format.version == 0);
    let flags = AddFlags {
        chunker: Some("size-1000".parse().unwrap()),
        trickle: Some(true),
        max_file_links: Some(3),
        max_directory_links: Some(10),
        max_hamt_fanout: Some(64),
        ..AddFlags::default()
    };
    let o = ImportOptions::resolve(Some(V1.options()), &flags).unwrap();
    assert_eq!((o.layout, o.max_links, o.sharding.max_links, o.hamt_fanout), (Layout::Trickle, 3, 10, 64));
    assert_eq!(o.chunker.to_string(), "size-1000");
    assert_eq!(o.sharding.estimation, V1.options().sharding.estimation, "what no flag names stays the profile's");
    // Kubo's refusals.
    for bad in [
        AddFlags { max_hamt_fanout: Some(12), ..AddFlags::default() },
        AddFlags { max_hamt_fanout: Some(2048), ..AddFlags::default() },
        AddFlags { cid_version: Some(2), ..AddFlags::default() },
        AddFlags { cid_version: Some(0), hash: Some(HashAlg::Blake3), ..AddFlags::default() },
        AddFlags { max_file_links: Some(1), ..AddFlags::default() },
    ] {
        assert!(ImportOptions::resolve(Some(V1.options()), &bad).is_err(), "{bad:?}");
    }
    // Flags over config: each flag given wins, each not given is the config's.
    let config =
        AddFlags { cid_version: Some(1), trickle: Some(true), hamt_threshold: Some(1000), ..AddFlags::default() };
    let over = AddFlags { trickle: Some(false), ..AddFlags::default() }.or(&config);
    assert_eq!(over, AddFlags { trickle: Some(false), ..config.clone() });
    let o = ImportOptions::resolve(None, &over).unwrap();
    assert_eq!((o.layout, o.raw_leaves, o.sharding.threshold), (Layout::Balanced, true, 1000));
    let fanout = ImportOptions::resolve(None, &AddFlags { max_hamt_fanout: Some(12), ..AddFlags::default() });
    assert_eq!(fanout.unwrap_err().to_string(), "HAMT fanout must be a power of 2, between 8 and 1024 (got 12)");
}

/// The directory fixtures and the files at the chunk sizes, written to disk and added by the
/// real Kubo 0.43.1 in a repo of each profile, beside Cairn's `add` of the same paths.
#[test]
fn directories_and_small_files_match_kubo() -> anyhow::Result<()> {
    use cairn_testnet::reference::{self, Reference};
    if !reference::require(Reference::Kubo043) {
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    let dir = |name: &str, count, len, last, seed| -> anyhow::Result<std::path::PathBuf> {
        let d = tmp.path().join(name);
        std::fs::create_dir(&d)?;
        for n in fixture_names(seed, count, len, last) {
            std::fs::write(d.join(n), b"x")?;
        }
        Ok(d)
    };
    let file = |name: &str, len, seed| -> anyhow::Result<std::path::PathBuf> {
        let f = tmp.path().join(name);
        std::io::copy(&mut Keystream::new(seed, len), &mut std::fs::File::create(&f)?)?;
        Ok(f)
    };
    let v0 = [
        dir("v0-basic", 4096, 30, 30, "hamt-unixfs-v0-2015")?,
        dir("v0-hamt", 4033, 31, 31, "hamt-unixfs-v0-2015")?,
        file("v0-chunk", 256 * KIB, "chunk-v0-seed")?,
        file("v0-chunk-plus-1", 256 * KIB + 1, "chunk-v0-seed")?,
    ];
    let v1 = [
        dir("v1-basic", 4766, 11, 21, "hamt-unixfs-v1-2025")?,
        dir("v1-hamt", 4766, 11, 22, "hamt-unixfs-v1-2025")?,
        file("v1-chunk", MIB, "chunk-v1-seed")?,
        file("v1-chunk-plus-1", MIB + 1, "chunk-v1-seed")?,
    ];
    let mut bad = Vec::new();
    for profile in [V0, V1] {
        // Every fixture under both profiles: each also crosses the other's edges.
        let paths: Vec<&std::path::Path> = v0.iter().chain(&v1).map(|p| p.as_path()).collect();
        let kubo = reference::kubo_add(&paths, Some(profile.name()), &[])?;
        for (path, lines) in paths.iter().zip(kubo) {
            let opts = cairn_node::add::AddOptions {
                import: profile.options(),
                recursive: true,
                ..cairn_node::add::AddOptions::default()
            };
            let ours = cairn_node::add::add_path(path, &opts, &mut Discard)?;
            let (k, c) = (lines.last().map(|e| e.cid.clone()), ours.last().map(|a| a.cid.to_string()));
            if k != c {
                bad.push(format!("{} under {profile}: Cairn {c:?}, Kubo {k:?}", path.display()));
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    Ok(())
}
