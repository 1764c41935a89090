//! `pin verify` re-hashes every pinned block: bytes rotted on disk inside RocksDB's blob files
//! are found and named, while intact pins say ok; `repo verify` names the damaged block.

use std::path::{Path, PathBuf};

use crate::cairn;

fn blob_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            blob_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "blob") {
            out.push(p);
        }
    }
}

/// Flips one byte inside `needle` where it sits in one of the repo's blob files (blob bytes
/// are stored uncompressed), as a failing disk would.
pub fn rot(repo: &Path, needle: &[u8]) {
    let mut blobs = Vec::new();
    blob_files(repo, &mut blobs);
    for blob in blobs {
        let mut bytes = std::fs::read(&blob).unwrap();
        if let Some(at) = bytes.windows(needle.len()).position(|w| w == needle) {
            bytes[at + 10] ^= 0x40;
            std::fs::write(&blob, &bytes).unwrap();
            return;
        }
    }
    panic!("the bytes were not found in any blob file");
}

/// Bytes in which no stretch repeats (xorshift64), so a 64-byte needle occurs once.
pub fn unique_bytes(len: usize) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[test]
fn pin_verify_finds_bytes_rotted_in_a_blob_file() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("r");
    let run = |args: &[&str]| cairn().arg("--repo").arg(&repo).args(args).output().unwrap();
    assert!(run(&["init", "--profile", "test"]).status.success());
    let data = unique_bytes(700_000);
    let (good, bad) = (tmp.path().join("good.bin"), tmp.path().join("bad.bin"));
    std::fs::write(&good, &data[..100_000]).unwrap();
    std::fs::write(&bad, &data).unwrap();
    let add = |f: &Path| String::from_utf8(run(&["add", "-Q", f.to_str().unwrap()]).stdout).unwrap().trim().to_owned();
    let (good_cid, bad_cid) = (add(&good), add(&bad));

    let out = run(&["pin", "verify", "--verbose"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains(&format!("{good_cid} ok")) && text.contains(&format!("{bad_cid} ok")), "{text}");

    rot(&repo, &data[400_000..400_064]);

    let out = run(&["pin", "verify"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains(&format!("{bad_cid} broken")) && text.contains("corrupt"), "{text}");
    assert!(!text.contains(&good_cid), "only broken pins are listed without --verbose: {text}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 pin is broken"), "{out:?}");

    // `repo verify` reports the block RocksDB cannot read back, and goes on past it.
    let out = run(&["repo", "verify", "-q"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("was corrupt (unreadable"), "{text}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 corrupt block"), "{out:?}");
}
