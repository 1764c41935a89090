//! The offline commands over a repo: each test runs the `cairn` binary in its own temporary
//! repo and checks output, files written and exit codes.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use cairn_merkle::{PbLink, PbNode, UnixFs};

use crate::cairn;

/// A temporary directory holding a repo (`repo/`) and whatever else a test writes.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    /// A fresh, initialised repo (`--profile test`).
    fn new() -> Env {
        let env = Env { dir: tempfile::tempdir().unwrap() };
        env.ok(&["init", "--profile", "test"]);
        env
    }

    fn repo(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn cmd(&self) -> Command {
        let mut c = cairn();
        c.env("CAIRN_PATH", self.repo()).current_dir(self.dir.path());
        c
    }

    /// Runs a command that must succeed; returns its stdout bytes.
    fn run(&self, args: &[&str]) -> Vec<u8> {
        let out = self.cmd().args(args).output().unwrap();
        assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    }

    /// Runs a command that must succeed; returns its stdout as text.
    fn ok(&self, args: &[&str]) -> String {
        String::from_utf8(self.run(args)).unwrap()
    }

    /// Runs a command that must fail with one `Error: ` line; returns that line.
    fn fail(&self, args: &[&str]) -> String {
        fail(self.cmd().args(args))
    }

    /// `add -Q` of a path; returns the root CID.
    fn add(&self, extra: &[&str], path: &str) -> String {
        let mut args = vec!["add", "-Q"];
        args.extend_from_slice(extra);
        args.push(path);
        self.ok(&args).trim().to_owned()
    }

    fn num_objects(&self) -> u64 {
        stat_field(&self.ok(&["repo", "stat"]), "NumObjects").parse().unwrap()
    }

    fn pins(&self) -> Vec<String> {
        self.ok(&["pin", "ls"]).lines().map(str::to_owned).collect()
    }
}

/// Runs a command that must fail with exactly one `Error: ` line on stderr.
fn fail(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(!out.status.success(), "succeeded unexpectedly; stdout: {}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("Error: "), "{err}");
    err
}

fn stat_field(text: &str, key: &str) -> String {
    let line = text.lines().find(|l| l.starts_with(&format!("{key}:"))).unwrap_or_else(|| panic!("{key} in {text}"));
    line.split_once(':').unwrap().1.trim().to_owned()
}

/// Deterministic pseudo-random bytes (xorshift), so chunks differ from one another.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[derive(Debug, PartialEq, Eq)]
enum Entry {
    Dir,
    File(Vec<u8>),
    Link(PathBuf),
}

/// Every entry under `root`, by relative path.
fn snapshot(root: &Path) -> BTreeMap<String, Entry> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Entry>) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let rel = e.path().strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let ft = e.file_type().unwrap();
            if ft.is_symlink() {
                out.insert(rel, Entry::Link(fs::read_link(e.path()).unwrap()));
            } else if ft.is_dir() {
                out.insert(rel, Entry::Dir);
                walk(root, &e.path(), out);
            } else {
                out.insert(rel, Entry::File(fs::read(e.path()).unwrap()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

#[test]
fn init_and_config_get_set() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let mut init = cairn();
    let out = init.env("CAIRN_PATH", &repo).args(["init", "--profile", "test"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains(&format!("initialized repo at {}", repo.display())), "{text}");
    let peer = text.lines().find_map(|l| l.strip_prefix("peer identity: ")).expect("peer identity line").to_owned();
    assert!(peer.starts_with("12D3KooW"), "{peer}");
    let env = Env { dir };

    // A second init refuses to overwrite.
    assert!(env.fail(&["init", "--profile", "test"]).contains("already exists"));

    // Strings print bare; everything else as JSON.
    assert_eq!(env.ok(&["config", "Addresses.API"]), "/ip4/127.0.0.1/tcp/0\n");
    assert_eq!(env.ok(&["config", "Identity.PeerID"]), format!("{peer}\n"));
    assert_eq!(env.ok(&["config", "Discovery.MDNS.Enabled"]), "false\n");
    let bootstrap: serde_json::Value = serde_json::from_str(&env.ok(&["config", "Bootstrap"])).unwrap();
    assert_eq!(bootstrap, serde_json::json!([]));

    // Set a string, a JSON array, a boolean.
    assert_eq!(env.ok(&["config", "Addresses.Gateway", "/ip4/127.0.0.1/tcp/9999"]), "");
    assert_eq!(env.ok(&["config", "Addresses.Gateway"]), "/ip4/127.0.0.1/tcp/9999\n");
    let peer_addr = format!("/ip4/127.0.0.1/tcp/4001/p2p/{peer}");
    env.ok(&["config", "--json", "Bootstrap", &format!("[\"{peer_addr}\"]")]);
    let bootstrap: serde_json::Value = serde_json::from_str(&env.ok(&["config", "Bootstrap"])).unwrap();
    assert_eq!(bootstrap, serde_json::json!([peer_addr]));
    env.ok(&["config", "--json", "Discovery.MDNS.Enabled", "true"]);
    assert_eq!(env.ok(&["config", "Discovery.MDNS.Enabled"]), "true\n");
    env.ok(&["config", "--bool", "Swarm.DisableNatPortMap", "false"]);
    assert_eq!(env.ok(&["config", "Swarm.DisableNatPortMap"]), "false\n");

    // Bad keys, wrong types and bad JSON are one error line each, and change nothing.
    let before = env.ok(&["config", "show"]);
    assert!(env.fail(&["config", "Nope.Key"]).contains("not found"));
    assert!(env.fail(&["config", "Addresses..API"]).contains("bad config key"));
    assert!(env.fail(&["config", "Bootstrap", "not-a-list"]).contains("Bootstrap"));
    env.fail(&["config", "--json", "Discovery.MDNS.Enabled", "\"yes\""]);
    env.fail(&["config", "--json", "Bootstrap", "[oops"]);
    env.fail(&["config", "--bool", "Discovery.MDNS.Enabled", "maybe"]);
    // A value of the right JSON type that does not parse as its setting is refused when it
    // is set, not when the daemon reads it: the key, the value and what is expected.
    let err = env.fail(&["config", "Scrub.Interval", "banana"]);
    assert!(err.contains("Scrub.Interval \"banana\" is not a duration"), "{err}");
    let err = env.fail(&["config", "Routing.Type", "fast"]);
    assert!(err.contains("Routing.Type \"fast\" is not one of"), "{err}");
    assert_eq!(env.ok(&["config", "show"]), before);

    // `config show` is the whole config as JSON, with the edits in it.
    let all: serde_json::Value = serde_json::from_str(&before).unwrap();
    assert_eq!(all["Addresses"]["Gateway"], "/ip4/127.0.0.1/tcp/9999");
    assert_eq!(all["Identity"]["PeerID"], peer.as_str());

    // `--repo` works as well as $CAIRN_PATH.
    let out = cairn().args(["--repo"]).arg(env.repo()).args(["config", "Addresses.API"]).output().unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "/ip4/127.0.0.1/tcp/0\n");

    // The default profile listens on Kubo's ports; unknown profiles are refused.
    let other = env.path("default-repo");
    cairn().arg("--repo").arg(&other).args(["init"]).assert().success();
    let out = cairn().arg("--repo").arg(&other).args(["config", "Addresses.API"]).output().unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "/ip4/127.0.0.1/tcp/5001\n");
    fail(cairn().arg("--repo").arg(env.path("x")).args(["init", "--profile", "fast"]));

    // Commands on a missing repo say so.
    assert!(fail(cairn().args(["repo", "stat"])).contains("cairn init"));
}

#[test]
fn add_then_cat_round_trips_with_ranges() {
    let env = Env::new();
    let data = noise(1_000_003, 7);
    fs::write(env.path("big.bin"), &data).unwrap();

    // Storing gives the same CID as hashing only, and the same `added` line.
    let hashed = env.ok(&["add", "-n", "big.bin"]);
    assert_eq!(env.ok(&["add", "big.bin"]), hashed);
    let cid = hashed.split(' ').nth(1).unwrap().to_owned();
    assert_eq!(hashed, format!("added {cid} big.bin\n"));

    assert_eq!(env.run(&["cat", &cid]), data);
    assert_eq!(env.run(&["cat", &format!("/ipfs/{cid}")]), data);
    assert_eq!(env.run(&["cat", "--offset", "300000", "--length", "500000", &cid]), &data[300_000..800_000]);
    assert_eq!(env.run(&["cat", "-o", "999999", "-l", "100", &cid]), &data[999_999..]);
    assert_eq!(env.run(&["cat", "-o", "262140", "-l", "8", &cid]), &data[262_140..262_148]);
    assert_eq!(env.run(&["cat", "-l", "0", &cid]), b"");
    // Several paths are concatenated, and the range applies to the whole.
    fs::write(env.path("small.txt"), "hello world\n").unwrap();
    let small = env.add(&[], "small.txt");
    assert_eq!(env.run(&["cat", &small, &small]), b"hello world\nhello world\n");
    assert_eq!(env.run(&["cat", "-o", "6", "-l", "12", &small, &small]), b"world\nhello ");

    // Standard input goes in as one file.
    let out = env.cmd().args(["add"]).write_stdin("from stdin\n").output().unwrap();
    assert!(out.status.success());
    let line = String::from_utf8(out.stdout).unwrap();
    let stdin_cid = line.split(' ').nth(1).unwrap().to_owned();
    assert_eq!(line, format!("added {stdin_cid} {stdin_cid}\n"));
    assert_eq!(env.run(&["cat", &stdin_cid]), b"from stdin\n");

    // CIDv1 and blake3 DAGs read back too.
    for extra in [&["--cid-version=1"][..], &["--hash", "blake3"], &["--trickle", "--chunker", "size-1000"]] {
        let cid = env.add(extra, "big.bin");
        assert_eq!(env.run(&["cat", &cid]), data, "{extra:?}");
    }

    // Errors: not a CID, not in the repo, a directory.
    env.fail(&["cat", "not-a-cid"]);
    let absent = env.ok(&["add", "-nQ", "--chunker", "size-1234", "big.bin"]);
    assert!(env.fail(&["cat", absent.trim()]).contains("not found"));
    fs::create_dir(env.path("d")).unwrap();
    fs::write(env.path("d/f"), "f").unwrap();
    let d = env.add(&["-r"], "d");
    assert!(env.fail(&["cat", &d]).contains("directory"));
    assert_eq!(env.run(&["cat", &format!("{d}/f")]), b"f");
}

#[test]
fn add_r_then_ls_then_get_writes_an_identical_tree() {
    let env = Env::new();
    let site = env.path("site");
    fs::create_dir_all(site.join("sub/ünï/deeper")).unwrap();
    fs::create_dir_all(site.join("empty-dir")).unwrap();
    fs::write(site.join("hello.txt"), "hello world\n").unwrap();
    fs::write(site.join("sub/empty"), "").unwrap();
    fs::write(site.join("sub/ünï/日本.txt"), noise(600_000, 3)).unwrap();
    fs::write(site.join("sub/ünï/deeper/x"), "x").unwrap();
    std::os::unix::fs::symlink("sub/ünï/日本.txt", site.join("link")).unwrap();
    std::os::unix::fs::symlink("../nowhere", site.join("sub/dangling")).unwrap();

    let root = env.add(&["-r"], "site");

    // ls: `<cid> <size> <name>`, directories with `-` and a trailing `/`, in name order.
    let listing = env.ok(&["ls", &root]);
    let rows: Vec<Vec<&str>> = listing.lines().map(|l| l.split_whitespace().collect()).collect();
    let names: Vec<&str> = rows.iter().map(|r| r[2]).collect();
    assert_eq!(names, ["empty-dir/", "hello.txt", "link", "sub/"], "{listing}");
    assert_eq!(rows[0][1], "-");
    assert_eq!(rows[1][1], "12");
    assert_eq!(rows[2][1], "sub/ünï/日本.txt".len().to_string());
    assert_eq!(rows[3][1], "-");
    assert_eq!(rows[1][0], "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o");
    let sub = env.ok(&["ls", &format!("/ipfs/{root}/sub/ünï")]);
    assert!(sub.lines().any(|l| l.ends_with(" 600000 日本.txt")), "{sub}");
    assert!(sub.lines().any(|l| l.ends_with(" deeper/")), "{sub}");
    env.fail(&["ls", &format!("{root}/hello.txt")]);

    // get -o writes the same tree: bytes, names, empty files and dirs, symlinks as symlinks.
    let out = env.cmd().args(["get", &root, "-o", "out"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8(out.stderr).unwrap(), "Saving file(s) to out\n");
    let want = snapshot(&site);
    assert_eq!(want.len(), 10);
    assert_eq!(snapshot(&env.path("out")), want);
    assert!(fs::symlink_metadata(env.path("out/link")).unwrap().file_type().is_symlink());

    // Without -o, the output is named after the last path component, or the CID.
    let out = env.cmd().args(["get", &format!("{root}/sub")]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8(out.stderr).unwrap(), "Saving file(s) to sub\n");
    assert_eq!(fs::read(env.path("sub/ünï/deeper/x")).unwrap(), b"x");
    env.run(&["get", &format!("{root}/hello.txt")]);
    assert_eq!(fs::read(env.path("hello.txt")).unwrap(), b"hello world\n");
    env.run(&["get", "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"]);
    assert_eq!(fs::read(env.path("QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o")).unwrap(), b"hello world\n");

    // An existing destination is never written into.
    assert!(env.fail(&["get", &root, "-o", "out"]).contains("exists"));
    assert_eq!(snapshot(&env.path("out")), want);
}

#[test]
fn pins_list_add_and_remove() {
    let env = Env::new();
    fs::write(env.path("big.bin"), noise(700_000, 11)).unwrap();
    fs::write(env.path("a.txt"), "a").unwrap();
    let big = env.add(&[], "big.bin");
    assert_eq!(env.ok(&["pin", "ls", "--type", "recursive"]), format!("{big} recursive\n"));
    // Three leaves under the root: all indirect.
    let indirect = env.ok(&["pin", "ls", "--type=indirect"]);
    assert_eq!(indirect.lines().count(), 3, "{indirect}");
    assert!(indirect.lines().all(|l| l.ends_with(" indirect")));
    assert_eq!(env.pins().len(), 4);
    assert_eq!(env.pins()[0], format!("{big} recursive"));

    // --pin=false stores without pinning.
    let a = env.add(&["--pin=false"], "a.txt");
    assert!(!env.ok(&["pin", "ls"]).contains(&a));
    assert_eq!(env.ok(&["pin", "add", "--recursive=false", "--name", "the a", &a]), format!("pinned {a} directly\n"));
    assert_eq!(env.ok(&["pin", "ls", "-t", "direct"]), format!("{a} direct\n"));
    assert_eq!(env.ok(&["pin", "ls", "-t", "direct", "--names"]), format!("{a} direct the a\n"));
    assert_eq!(env.ok(&["pin", "ls", "-q", "-t", "direct"]), format!("{a}\n"));
    assert_eq!(env.ok(&["pin", "ls", &a]), format!("{a} direct\n"));
    assert_eq!(env.ok(&["pin", "add", &a]), format!("pinned {a} recursively\n"));
    assert_eq!(env.ok(&["pin", "ls", &a]), format!("{a} recursive\n"));
    assert_eq!(env.ok(&["pin", "ls", "-t", "direct"]), "");

    assert_eq!(env.ok(&["pin", "rm", &a]), format!("unpinned {a}\n"));
    assert!(env.fail(&["pin", "rm", &a]).contains("not pinned"));
    assert!(env.fail(&["pin", "ls", &a]).contains("not pinned"));
    env.fail(&["pin", "ls", "--type", "sideways"]);
    // A pin needs its whole DAG present.
    let absent = env.ok(&["add", "-nQ", "--chunker", "size-999", "big.bin"]);
    assert!(env.fail(&["pin", "add", absent.trim()]).contains("not found"));
}

/// Blocks shared between two pinned DAGs survive unpinning either one; only blocks no pin
/// reaches are collected.
#[test]
fn gc_keeps_blocks_a_remaining_pin_shares() {
    let env = Env::new();
    let data = noise(600_000, 5); // three leaves and a root: four blocks
    fs::create_dir(env.path("d")).unwrap();
    fs::write(env.path("d/f.bin"), &data).unwrap();
    let d = env.add(&["-r"], "d");
    let f = env.add(&[], "d/f.bin");
    assert_eq!(env.num_objects(), 5);
    assert_eq!(env.ok(&["repo", "gc"]), "removed 0 blocks (0 bytes)\n");

    // Unpin the file: the directory's pin still holds every block of it.
    env.ok(&["pin", "rm", &f]);
    assert_eq!(env.ok(&["repo", "gc"]), "removed 0 blocks (0 bytes)\n");
    assert_eq!(env.num_objects(), 5);
    assert_eq!(env.run(&["cat", &f]), data);

    // The reverse: pin the file again, unpin the directory: only the directory node goes.
    env.ok(&["pin", "add", &f]);
    env.ok(&["pin", "rm", &d]);
    let gc = env.ok(&["repo", "gc"]);
    assert!(gc.starts_with("removed 1 blocks ("), "{gc}");
    assert_eq!(env.num_objects(), 4);
    assert_eq!(env.run(&["cat", &f]), data);
    env.fail(&["cat", &format!("{d}/f.bin")]);
    assert_eq!(env.ok(&["repo", "verify"]), "verified repo integrity\n");

    // Nothing pinned: everything goes, and the space is given back.
    env.ok(&["pin", "rm", &f]);
    let gc = env.ok(&["repo", "gc"]);
    let bytes: u64 =
        gc.trim().strip_prefix("removed 4 blocks (").unwrap().strip_suffix(" bytes)").unwrap().parse().unwrap();
    assert!(bytes >= 600_000, "{gc}");
    assert_eq!(env.num_objects(), 0);
    let stat = env.ok(&["repo", "stat"]);
    assert_eq!(stat_field(&stat, "Pins"), "0");
    assert_eq!(stat_field(&stat, "Version"), "fs-repo@1");
    assert_eq!(stat_field(&stat, "StorageMax"), "10000000000");
    assert_eq!(stat_field(&stat, "RepoPath"), env.repo().display().to_string());
    assert!(stat_field(&stat, "RepoSize").parse::<u64>().is_ok());
    env.fail(&["cat", &f]);
}

#[test]
fn block_put_get_stat_rm() {
    let env = Env::new();
    fs::write(env.path("b.bin"), "some block bytes").unwrap();
    let cid = env.ok(&["block", "put", "b.bin"]).trim().to_owned();
    assert!(cid.starts_with("bafkrei"), "{cid}"); // CIDv1, raw, sha2-256
    let from_stdin = env.cmd().args(["block", "put"]).write_stdin("some block bytes").output().unwrap();
    assert_eq!(String::from_utf8(from_stdin.stdout).unwrap(), format!("{cid}\n"));
    assert_eq!(env.run(&["block", "get", &cid]), b"some block bytes");
    assert_eq!(env.ok(&["block", "stat", &cid]), format!("Key: {cid}\nSize: 16\n"));
    let b3 = env.ok(&["block", "put", "--mhtype", "blake3", "b.bin"]).trim().to_owned();
    assert!(b3.starts_with("bafkr4i"), "{b3}");
    assert_eq!(env.run(&["block", "get", &b3]), b"some block bytes");
    let sha512 = env.ok(&["block", "put", "--mhtype", "sha2-512", "b.bin"]).trim().to_owned();
    assert!(sha512.starts_with("bafkrgq"), "{sha512}"); // CIDv1, raw, sha2-512
    assert_eq!(env.run(&["block", "get", &sha512]), b"some block bytes");
    // Kubo's deprecated `--format=v0`: dag-pb under CIDv0 (an empty dag-pb node here).
    fs::write(env.path("empty.pb"), b"").unwrap();
    let v0 = env.ok(&["block", "put", "--format=v0", "empty.pb"]).trim().to_owned();
    assert_eq!(v0, "QmdfTbBqBPQ7VNxZEYEj14VmRuZBkqFbiwReogJgS1zR1n");
    assert!(env.fail(&["block", "put", "--mhlen", "20", "b.bin"]).contains("Cairn verifies whole digests"));

    assert_eq!(env.ok(&["block", "rm", &cid]), format!("removed {cid}\n"));
    assert!(env.fail(&["block", "get", &cid]).contains("not found"));
    env.fail(&["block", "stat", &cid]);
    env.fail(&["block", "rm", &cid]);

    // Bad input: not dag-pb, unknown codec or hash, too big.
    assert!(env.fail(&["block", "put", "--cid-codec", "dag-pb", "b.bin"]).contains("dag-pb"));
    env.fail(&["block", "put", "--cid-codec", "git-raw", "b.bin"]);
    env.fail(&["block", "put", "--mhtype", "md5", "b.bin"]);
    // Kubo 0.43's limit: 2 MiB without --allow-big-block, in its words.
    fs::write(env.path("huge.bin"), vec![1u8; (2 << 20) + 1]).unwrap();
    assert!(env.fail(&["block", "put", "huge.bin"]).contains("produced block is over 2MiB"));
    env.ok(&["block", "put", "--allow-big-block", "huge.bin"]);
    fs::write(env.path("two_mib.bin"), vec![1u8; 2 << 20]).unwrap();
    env.ok(&["block", "put", "two_mib.bin"]);

    // Pinned blocks are refused: a root, and a block inside a recursively pinned DAG.
    fs::write(env.path("big.bin"), noise(300_000, 9)).unwrap();
    let root = env.add(&[], "big.bin");
    assert!(env.fail(&["block", "rm", &root]).contains("pinned"));
    let leaf = env.ok(&["pin", "ls", "-t", "indirect", "-q"]).lines().next().unwrap().to_owned();
    assert!(env.fail(&["block", "rm", &leaf]).contains("pinned"));
    assert_eq!(env.ok(&["repo", "verify"]), "verified repo integrity\n");
    env.ok(&["block", "put", "--pin=true", "b.bin"]);
    assert!(env.ok(&["pin", "ls", "-t", "recursive"]).contains(&cid));
}

#[test]
fn dag_export_then_import_into_another_repo() {
    let a = Env::new();
    let data = noise(900_000, 13);
    fs::create_dir(a.path("d")).unwrap();
    fs::write(a.path("d/big.bin"), &data).unwrap();
    fs::write(a.path("d/small.txt"), "small").unwrap();
    let root = a.add(&["-r"], "d");
    let car = a.run(&["dag", "export", &root]);
    fs::write(a.path("d.car"), &car).unwrap();

    let b = Env::new();
    let out = b.ok(&["dag", "import", a.path("d.car").to_str().unwrap()]);
    assert_eq!(out, format!("Pinned root {root} success\n"));
    assert_eq!(b.run(&["cat", &format!("{root}/big.bin")]), data);
    assert_eq!(b.run(&["cat", &format!("{root}/small.txt")]), b"small");
    assert_eq!(b.ok(&["pin", "ls", "-t", "recursive"]), format!("{root} recursive\n"));
    assert_eq!(b.num_objects(), a.num_objects());
    // Exporting again gives the same bytes.
    assert_eq!(b.run(&["dag", "export", &root]), car);

    // --pin-roots=false stores without pinning; --stats counts the blocks.
    let c = Env::new();
    let out = c.cmd().args(["dag", "import", "--pin-roots=false", "--stats"]).write_stdin(car).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let n = a.num_objects();
    assert!(String::from_utf8(out.stdout).unwrap().starts_with(&format!("Imported {n} blocks (")));
    assert_eq!(c.ok(&["pin", "ls"]), "");
    assert_eq!(c.run(&["cat", &format!("{root}/small.txt")]), b"small");
}

#[test]
fn dag_import_of_a_corrupt_car_fails_and_pins_nothing() {
    let a = Env::new();
    fs::write(a.path("big.bin"), noise(600_000, 17)).unwrap();
    let root = a.add(&[], "big.bin");
    let car = a.run(&["dag", "export", &root]);

    // Flip a byte inside the last block's data.
    let mut bad = car.clone();
    *bad.last_mut().unwrap() ^= 0x01;
    fs::write(a.path("bad.car"), &bad).unwrap();
    let b = Env::new();
    let err = fail(b.cmd().current_dir(a.dir.path()).args(["dag", "import", "bad.car"]));
    assert!(err.contains("bad.car") && err.contains("does not match its hash"), "{err}");
    assert_eq!(b.ok(&["pin", "ls"]), "");

    // A truncated CAR fails too.
    fs::write(a.path("short.car"), &car[..car.len() - 100]).unwrap();
    let err = fail(b.cmd().current_dir(a.dir.path()).args(["dag", "import", "short.car"]));
    assert!(err.contains("truncated"), "{err}");
    assert_eq!(b.ok(&["pin", "ls"]), "");
    assert_eq!(b.ok(&["repo", "verify"]), "verified repo integrity\n");
}

/// A hand-made directory whose entry is named `..` (or holds a `/`) must not make `get`
/// write outside its output directory.
#[test]
fn get_refuses_entries_that_would_escape_the_output() {
    let env = Env::new();
    fs::write(env.path("evil.txt"), "evil").unwrap();
    let file = env.ok(&["block", "put", "evil.txt"]).trim().to_owned();
    let file_cid: cairn_merkle::Cid = file.parse().unwrap();
    for (i, name) in ["..", "../escaped.txt", "a/b", "."].into_iter().enumerate() {
        let node = PbNode { links: vec![PbLink::new(file_cid, name, 4)], data: Some(UnixFs::directory().to_bytes()) };
        let block = format!("dir{i}.pb");
        fs::write(env.path(&block), node.encode()).unwrap();
        let dir = env.ok(&["block", "put", "--cid-codec", "dag-pb", &block]).trim().to_owned();
        assert!(dir.starts_with("bafybei"), "{dir}");

        fs::create_dir(env.path(&format!("sandbox{i}"))).unwrap();
        let before = snapshot(env.dir.path());
        let out =
            env.cmd().current_dir(env.path(&format!("sandbox{i}"))).args(["get", &dir, "-o", "out"]).output().unwrap();
        assert!(!out.status.success());
        // `Saving file(s) to out`, as Kubo prints it, then the error.
        let err = String::from_utf8(out.stderr).unwrap();
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 2, "{err}");
        assert_eq!(lines[0], "Saving file(s) to out");
        assert!(lines[1].starts_with("Error: "), "{err}");
        assert!(err.contains("unsafe entry name"), "{name}: {err}");
        // At most the (empty) output directory appeared; nothing else anywhere.
        let mut after = snapshot(env.dir.path());
        after.retain(|k, _| !k.starts_with("repo"));
        let mut before = before;
        before.retain(|k, _| !k.starts_with("repo"));
        if let Some(out) = after.remove(&format!("sandbox{i}/out")) {
            assert_eq!(out, Entry::Dir);
        }
        assert_eq!(after, before, "{name}");
        assert!(!env.path("escaped.txt").exists());
    }
}

#[test]
fn a_locked_repo_names_the_holder_pid() {
    let env = Env::new();
    let held = cairn_node::Repo::open(&env.repo()).unwrap();
    let err = env.fail(&["repo", "stat"]);
    assert!(err.contains(&format!("pid {}", std::process::id())), "{err}");
    assert!(err.contains("locked"), "{err}");
    env.fail(&["add", "-Q", "/dev/null"]);
    drop(held);
    env.ok(&["repo", "stat"]);
}

#[test]
fn repo_verify_reports_nothing_on_a_healthy_repo() {
    let env = Env::new();
    assert_eq!(env.ok(&["repo", "verify"]), "verified repo integrity\n");
    fs::write(env.path("f"), noise(100_000, 1)).unwrap();
    env.add(&[], "f");
    assert_eq!(env.ok(&["repo", "verify"]), "verified repo integrity\n");
    assert_eq!(env.num_objects(), 1);
}

#[test]
fn repo_verify_reports_a_damaged_block_and_fails() {
    use cairn_node::BlockStore;
    let env = Env::new();
    fs::write(env.path("f"), "good bytes").unwrap();
    let good = env.add(&[], "f");
    // Store bytes under a CID they do not hash to, as bit rot would leave them.
    let bad = cairn_merkle::CidFormat { version: 1, hash: cairn_merkle::HashAlg::Sha2_256 }
        .cid(cairn_merkle::hash::RAW, b"what the bytes should be");
    {
        let repo = cairn_node::Repo::open(&env.repo()).unwrap();
        let block = cairn_merkle::Block::new_unchecked(bad, b"rotten".to_vec().into());
        repo.store().put_many(&[block]).unwrap();
        repo.store().sync().unwrap();
    }
    let out = env.cmd().args(["repo", "verify"]).output().unwrap();
    assert!(!out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.starts_with(&format!("block {bad} was corrupt (")), "{stdout}");
    assert!(!stdout.contains(&good));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err, "Error: verify complete, 1 corrupt block\n");
}
