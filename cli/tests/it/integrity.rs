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

#[test]
fn pin_verify_finds_bytes_rotted_in_a_blob_file() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("r");
    let run = |args: &[&str]| cairn().arg("--repo").arg(&repo).args(args).output().unwrap();
    assert!(run(&["init", "--profile", "test"]).status.success());
    // xorshift64: no stretch of it repeats, so the bytes searched for below occur once.
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let data: Vec<u8> = (0..700_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    let (good, bad) = (tmp.path().join("good.bin"), tmp.path().join("bad.bin"));
    std::fs::write(&good, &data[..100_000]).unwrap();
    std::fs::write(&bad, &data).unwrap();
    let add = |f: &Path| String::from_utf8(run(&["add", "-Q", f.to_str().unwrap()]).stdout).unwrap().trim().to_owned();
    let (good_cid, bad_cid) = (add(&good), add(&bad));

    let out = run(&["pin", "verify", "--verbose"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains(&format!("{good_cid} ok")) && text.contains(&format!("{bad_cid} ok")), "{text}");

    // Flip one byte of the big file where it sits in a blob file (blob bytes are stored
    // uncompressed), as a failing disk would.
    let needle = &data[400_000..400_064];
    let mut blobs = Vec::new();
    blob_files(&repo, &mut blobs);
    let mut flipped = false;
    for blob in blobs {
        let mut bytes = std::fs::read(&blob).unwrap();
        if let Some(at) = bytes.windows(needle.len()).position(|w| w == needle) {
            bytes[at + 10] ^= 0x40;
            std::fs::write(&blob, &bytes).unwrap();
            flipped = true;
            break;
        }
    }
    assert!(flipped, "the file's bytes were not found in any blob file");

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
