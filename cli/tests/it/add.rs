//! `cairn add --only-hash`: output format and flags, with no repo (storing adds are in
//! `commands.rs`).

use std::fs;

use crate::cairn;

fn tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("site");
    fs::create_dir_all(root.join("sub/ünï")).unwrap();
    fs::write(root.join("hello.txt"), "hello world\n").unwrap();
    fs::write(root.join("sub/empty"), "").unwrap();
    fs::write(root.join("sub/ünï/日本.txt"), "x".repeat(300_000)).unwrap();
    fs::write(root.join(".hidden"), "secret").unwrap();
    dir
}

#[test]
fn prints_added_lines_files_first_root_last() {
    let dir = tree();
    let out = cairn().current_dir(dir.path()).args(["add", "-n", "-r", "site"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let names: Vec<&str> = text.lines().map(|l| l.splitn(3, ' ').nth(2).unwrap()).collect();
    assert_eq!(
        names,
        ["site/hello.txt", "site/sub/empty", "site/sub/ünï/日本.txt", "site/sub/ünï", "site/sub", "site"]
    );
    assert!(text.lines().all(|l| l.starts_with("added Qm")), "{text}");
    assert!(text.contains("added QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o site/hello.txt"));
    assert!(text.contains("added QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH site/sub/empty"));
}

#[test]
fn quieter_prints_only_the_root() {
    let dir = tree();
    let full = cairn().current_dir(dir.path()).args(["add", "-n", "-r", "site"]).output().unwrap();
    let root = String::from_utf8(full.stdout).unwrap().lines().last().unwrap().split(' ').nth(1).unwrap().to_owned();
    let out = cairn().current_dir(dir.path()).args(["add", "--only-hash", "-r", "-Q", "site"]).output().unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), format!("{root}\n"));
}

#[test]
fn hidden_files_change_the_root_only_with_h() {
    let dir = tree();
    let q = |extra: &[&str]| {
        let out = cairn().current_dir(dir.path()).args(["add", "-nrQ"]).args(extra).arg("site").output().unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    assert_ne!(q(&[]), q(&["-H"]));
}

#[test]
fn cid_version_1_uses_raw_leaves_and_base32() {
    let dir = tree();
    let out =
        cairn().current_dir(dir.path()).args(["add", "-nQ", "--cid-version=1", "site/sub/empty"]).output().unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku\n");
    let out = cairn()
        .current_dir(dir.path())
        .args(["add", "-nQ", "--cid-version=1", "--raw-leaves=false", "site/sub/empty"])
        .output()
        .unwrap();
    assert!(String::from_utf8(out.stdout).unwrap().starts_with("bafybei"));
}

#[test]
fn reads_standard_input_when_no_path_is_given() {
    let out = cairn().args(["add", "-n"]).write_stdin("hello world\n").output().unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "added QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o\n"
    );
}

#[test]
fn bad_input_gives_one_line_and_nonzero_exit() {
    let dir = tree();
    for args in [
        vec!["add", "-n", "site"],                                  // directory without -r
        vec!["add", "-n", "missing-file"],                          // no such file
        vec!["add", "-n", "--chunker", "size-0", "site/hello.txt"], // bad chunker
        vec!["add", "-n", "--chunker", "banana", "site/hello.txt"],
        vec!["add", "-n", "--hash", "md5", "site/hello.txt"],
        vec!["add", "-n", "--cid-version", "2", "site/hello.txt"],
        vec!["add", "-n", "--cid-version=0", "--hash", "blake3", "site/hello.txt"],
        vec!["add", "-n", "--profile", "unixfs-v2", "site/hello.txt"],
        vec!["add", "-n", "--max-hamt-fanout", "100", "site/hello.txt"],
        vec!["add", "-n", "--max-file-links", "1", "site/hello.txt"],
    ] {
        let out = cairn().current_dir(dir.path()).args(&args).output().unwrap();
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("Error: "), "{args:?}: {err}");
    }
}

#[test]
fn blake3_and_trickle_and_chunkers_work() {
    let dir = tree();
    for extra in [
        &["--hash", "blake3"][..],
        &["--trickle"],
        &["--chunker", "rabin"],
        &["--chunker", "rabin-4096-8192-16384"],
        &["--chunker", "buzhash"],
        &["--chunker", "size-1000"],
    ] {
        let out = cairn().current_dir(dir.path()).args(["add", "-nrQ"]).args(extra).arg("site").output().unwrap();
        assert!(out.status.success(), "{extra:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let out =
        cairn().current_dir(dir.path()).args(["add", "-nQ", "--hash", "blake3", "site/hello.txt"]).output().unwrap();
    // blake3 implies CIDv1 with raw leaves: a one-chunk file is a raw block (bafk...).
    assert!(String::from_utf8(out.stdout).unwrap().starts_with("bafk"));
}

#[test]
fn profiles_and_their_flags() {
    let dir = tree();
    let q = |extra: &[&str], path: &str| {
        let out = cairn().current_dir(dir.path()).args(["add", "-nrQ"]).args(extra).arg(path).output().unwrap();
        assert!(out.status.success(), "{extra:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    // IPIP-499's own vector: "hello world" (no newline) is bafkrei... under unixfs-v1-2025.
    fs::write(dir.path().join("hw"), "hello world").unwrap();
    assert_eq!(
        q(&["--profile", "unixfs-v1-2025"], "hw"),
        "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"
    );
    assert_eq!(q(&["--profile", "legacy-cid-v0"], "hw"), "Qmf412jQZiuVUtdgnB36FXFX7xg5V6KEbSJ4dpQuhkLyfD");
    assert_eq!(q(&["--profile", "unixfs-v0-2015"], "site"), q(&[], "site"), "v0-2015 is Kubo's default");
    // A flag beats the profile: CIDv0 keeps the profile's raw leaves, as in Kubo.
    assert_eq!(
        q(&["--profile", "unixfs-v1-2025", "--cid-version=0"], "hw"),
        q(&["--raw-leaves", "--cid-version=1"], "hw")
    );
    // Two links per file node and a directory limit of one link change the tree.
    let base = q(&[], "site");
    assert_ne!(q(&["--max-file-links", "2", "--chunker", "size-1000"], "site"), q(&["--chunker", "size-1000"], "site"));
    assert_ne!(q(&["--max-directory-links", "1"], "site"), base);
    assert_ne!(
        q(&["--max-directory-links", "1", "--max-hamt-fanout", "8"], "site"),
        q(&["--max-directory-links", "1"], "site")
    );
}

#[test]
fn empty_directories_are_left_out_only_when_asked() {
    let dir = tree();
    let q = |extra: &[&str]| {
        let out = cairn().current_dir(dir.path()).args(["add", "-nrQ"]).args(extra).arg("site").output().unwrap();
        assert!(out.status.success(), "{extra:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let without = q(&[]);
    fs::create_dir_all(dir.path().join("site/sub/nothing")).unwrap();
    // A directory holding only a hidden file is empty to an add without -H.
    fs::create_dir_all(dir.path().join("site/only-hidden")).unwrap();
    fs::write(dir.path().join("site/only-hidden/.x"), "x").unwrap();
    let with = q(&[]);
    assert_ne!(with, without, "empty directories are included by default");
    assert_eq!(q(&["--empty-dirs=true"]), with);
    assert_eq!(q(&["--empty-dirs=false"]), without, "(Kubo: `ipfs add -r --empty-dirs=false`)");
    assert_ne!(q(&["--empty-dirs=false", "-H"]), q(&["-H"]), "with -H only `nothing` is empty");
}

#[test]
fn storing_needs_a_repo() {
    let dir = tree();
    // `cairn()` points CAIRN_PATH at a path that does not exist: without -n, add must say so
    // and create nothing.
    let out = cairn().current_dir(dir.path()).args(["add", "site/hello.txt"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("Error: ") && err.contains("cairn init"), "{err}");
    assert!(!std::path::Path::new("/nonexistent/cairn-test-repo").exists());
}

/// `cairn init --profile test,unixfs-v1-2025` writes every `Import.*` key; `add` then follows
/// the repo's keys, under its own flags; a bad key is refused when written, in Kubo's words;
/// `--profile` on `add` leaves the keys aside.
#[test]
fn the_repos_import_keys_decide_cids_under_the_flags() {
    let dir = tree();
    let repo = dir.path().join("repo");
    let run = |args: &[&str]| {
        let out = cairn().env("CAIRN_PATH", &repo).current_dir(dir.path()).args(args).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let hash = |extra: &[&str], path: &str| {
        let out = cairn().current_dir(dir.path()).args(["add", "-nrQ"]).args(extra).arg(path).output().unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    fs::write(dir.path().join("hw"), "hello world").unwrap();
    let (ok, _, err) = run(&["init", "--profile", "test, unixfs-v1-2025"]);
    assert!(!ok && err.contains("invalid configuration profile"), "{err}");
    assert!(run(&["init", "--profile", "test,unixfs-v1-2025"]).0);
    assert_eq!(run(&["config", "Import.UnixFSChunker"]).1, "size-1048576");
    assert_eq!(run(&["config", "Import.UnixFSHAMTDirectorySizeEstimation"]).1, "block");
    // The repo's keys, offline and hash-only alike: unixfs-v1-2025's CIDs.
    let (ok, v1, err) = run(&["add", "-nrQ", "site"]);
    assert!(ok, "{err}");
    assert_eq!(v1, hash(&["--profile", "unixfs-v1-2025"], "site"));
    assert_eq!(run(&["add", "-nQ", "hw"]).1, "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e");
    // A flag beats the key; --profile leaves the keys aside.
    assert_eq!(
        run(&["add", "-nrQ", "--cid-version=0", "--raw-leaves=false", "site"]).1,
        hash(&["--chunker", "size-1048576", "--max-file-links", "1024"], "site")
    );
    assert_eq!(run(&["add", "-nrQ", "--profile", "unixfs-v0-2015", "site"]).1, hash(&[], "site"));
    // Refused when written, with Kubo's message; the config is unchanged.
    let (ok, _, err) = run(&["config", "--json", "Import.CidVersion", "5"]);
    assert!(!ok && err.contains("Import.CidVersion must be 0 or 1, got 5"), "{err}");
    let (ok, _, err) = run(&["config", "Import.UnixFSDAGLayout", "wide"]);
    assert!(!ok && err.contains(r#"Import.UnixFSDAGLayout must be "balanced" or "trickle", got "wide""#), "{err}");
    assert_eq!(run(&["config", "Import.CidVersion"]).1, "1");
    // Back to Kubo's defaults key by key: null.
    for key in
        ["CidVersion", "UnixFSRawLeaves", "UnixFSChunker", "UnixFSFileMaxLinks", "UnixFSHAMTDirectorySizeEstimation"]
    {
        assert!(run(&["config", "--json", &format!("Import.{key}"), "null"]).0, "{key}");
    }
    assert_eq!(run(&["add", "-nrQ", "site"]).1, hash(&[], "site"));
}
