//! The build scripts' own bounds: `scripts/prune.sh` keeps target directories within their
//! budget, so a long-lived machine's disk does not fill with old test executables.

use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

const MIB: u64 = 1024 * 1024;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// A file of `size` bytes (sparse) last modified `age_secs` ago, executable or not.
fn make(path: &Path, size: u64, age_secs: u64, exec: bool) {
    let f = File::create(path).unwrap();
    f.set_len(size).unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(age_secs)).unwrap();
    if exec {
        fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
    }
}

#[test]
fn prune_keeps_the_newest_executables_within_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("target");
    let deps = target.join("debug/deps");
    fs::create_dir_all(&deps).unwrap();
    // Three test executables of 2 MiB, newest first: it-new, it-mid, it-old.
    make(&deps.join("it-aaaa"), 2 * MIB, 10, true);
    make(&deps.join("it-bbbb"), 2 * MIB, 1000, true);
    make(&deps.join("it-cccc"), 2 * MIB, 5000, true);
    // The old one's uplifted copy beside deps/ is the same file.
    fs::hard_link(deps.join("it-cccc"), target.join("debug/it")).unwrap();
    // Libraries and build outputs are not executables to prune.
    make(&deps.join("libfoo-aaaa.rlib"), 8 * MIB, 9000, false);
    make(&deps.join("foo-aaaa.d"), 1024, 9000, false);
    // Two archives of librocksdb-sys: only the newest stays.
    make(&deps.join("liblibrocksdb_sys-1111.rlib"), MIB, 50, false);
    make(&deps.join("liblibrocksdb_sys-2222.rlib"), MIB, 7000, false);
    // Incremental state: one crate's untouched for a week, one's fresh.
    let inc = target.join("debug/incremental");
    fs::create_dir_all(inc.join("stale-1")).unwrap();
    fs::create_dir_all(inc.join("fresh-1")).unwrap();
    let week_ago = SystemTime::now() - Duration::from_secs(7 * 86400);
    File::open(inc.join("stale-1")).unwrap().set_modified(week_ago).unwrap();

    let out = Command::new("bash")
        .arg(repo().join("scripts/prune.sh"))
        .arg(&target)
        .env("CAIRN_KEEP_EXECUTABLES_MIB", "5")
        .env("CAIRN_MIN_FREE_GIB", "0")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    // 5 MiB keeps the two newest (4 MiB); the third would make 6.
    assert!(deps.join("it-aaaa").exists());
    assert!(deps.join("it-bbbb").exists());
    assert!(!deps.join("it-cccc").exists());
    assert!(!target.join("debug/it").exists(), "the hard link goes too");
    assert!(deps.join("libfoo-aaaa.rlib").exists());
    assert!(deps.join("foo-aaaa.d").exists());
    assert!(deps.join("liblibrocksdb_sys-1111.rlib").exists());
    assert!(!deps.join("liblibrocksdb_sys-2222.rlib").exists());
    assert!(!inc.join("stale-1").exists());
    assert!(inc.join("fresh-1").exists());
    // 2 MiB executable + 1 MiB archive.
    assert!(stdout.contains("freed 3 MiB"), "{stdout}");
}
