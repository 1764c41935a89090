//! Following a publisher: three daemons on loopback. Two followers mirror each manifest the
//! publisher signs as it is announced, with no command run on them: one on the hints topic,
//! one on a topic of the publisher's own; the manifests signed before they followed come
//! along through the chain; a manifest over one follower's quota is skipped there.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::cairn;
use crate::daemon::Daemon;
use crate::scrub::{metric, wait_metric};

fn ok(repo: &Path, args: &[&str]) -> String {
    let out = cairn().arg("--repo").arg(repo).args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Writes `len` bytes derived from `seed` and signs them on `repo`; (manifest, root).
fn publish(repo: &Path, dir: &Path, name: &str, len: u32, seed: u32) -> (String, String) {
    // xorshift64: no chunk repeats, so the DAG holds `len` bytes of leaves.
    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ u64::from(seed);
    let data: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    let file = dir.join(name);
    std::fs::write(&file, data).unwrap();
    let out = ok(repo, &["add", "-Q", "--sign", "--title", name, file.to_str().unwrap()]);
    let line = out.lines().find(|l| l.starts_with("signed ")).unwrap_or_else(|| panic!("{out}"));
    let parts: Vec<&str> = line.split(' ').collect();
    (parts[1].to_owned(), parts[2].to_owned())
}

fn recursive_pins(repo: &Path) -> String {
    ok(repo, &["pin", "ls", "--type", "recursive", "--names"])
}

fn wait_pinned(repo: &Path, cids: &[&str]) {
    let started = Instant::now();
    loop {
        let pins = recursive_pins(repo);
        if cids.iter().all(|c| pins.contains(c)) {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{} never mirrored {cids:?}: {pins}", repo.display());
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn followers_mirror_a_publishers_manifests_without_being_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let (publisher, f1, f2) = (tmp.path().join("publisher"), tmp.path().join("f1"), tmp.path().join("f2"));
    for repo in [&publisher, &f1, &f2] {
        ok(repo, &["init", "--profile", "test"]);
        ok(repo, &["config", "Gateway.RetrievalTimeout", "5s"]);
    }
    ok(&publisher, &["config", "--json", "Manifest.AnnounceTopics", r#"["/archive/news"]"#]);
    ok(&f2, &["config", "Follow.Quota", "2MB"]);
    let id: serde_json::Value = serde_json::from_str(&ok(&publisher, &["id"])).unwrap();
    let pid = id["ID"].as_str().unwrap().to_owned();

    // Signed before anyone followed.
    let (old_manifest, old_root) = publish(&publisher, tmp.path(), "old.bin", 300_000, 1);
    // f1 follows offline, on the hints topic; f2 will follow through its daemon.
    assert_eq!(
        ok(&f1, &["follow", "add", &pid, "--name", "the archive"]).trim(),
        format!("following {pid} on /cairn/hints/1")
    );

    let dp = Daemon::start(&publisher);
    let d1 = Daemon::start(&f1);
    let d2 = Daemon::start(&f2);
    for f in [&f1, &f2] {
        ok(f, &["swarm", "connect", &dp.swarm_addr()]);
    }
    ok(&f2, &["follow", "add", &pid, "--topic", "/archive/news"]);
    assert_eq!(ok(&f2, &["follow", "ls"]).trim(), format!("{pid} /archive/news"));
    // Gossipsub needs a heartbeat or two to graft the new subscriptions into its mesh.
    std::thread::sleep(Duration::from_secs(3));

    // The publisher signs something new: both followers mirror it, and the older manifest
    // with it, while nobody touches them.
    let (new_manifest, new_root) = publish(&publisher, tmp.path(), "new.bin", 700_000, 2);
    wait_pinned(&f1, &[&new_manifest, &old_manifest]);
    wait_pinned(&f2, &[&new_manifest, &old_manifest]);
    let pins = recursive_pins(&f1);
    assert!(pins.contains(&format!("{new_manifest} recursive follow {pid}")), "{pins}");

    // Over f2's 2 MB quota (0.3 + 0.7 + 1.5 MB): f1 mirrors it, f2 skips it and says so.
    let (big_manifest, _) = publish(&publisher, tmp.path(), "big.bin", 1_500_000, 3);
    wait_pinned(&f1, &[&big_manifest]);
    wait_metric(&f2, "skipped the big manifest", |p| {
        metric(p, "cairn_follow_over_quota_manifests_total").unwrap_or(0) >= 1
    });
    assert!(!recursive_pins(&f2).contains(&big_manifest));
    // The counter moves just after the pin is written.
    let page = wait_metric(&f1, "counted 3 mirrors", |p| metric(p, "cairn_follow_mirrored_manifests_total") >= Some(3));
    assert_eq!(metric(&page, "cairn_follow_mirrored_manifests_total"), Some(3), "{page}");

    // A manifest from someone f1 does not follow is heard, checked and refused.
    let (stranger, _) = publish(&f2, tmp.path(), "stranger.bin", 10_000, 4);
    wait_metric(&f1, "refused the stranger's manifest", |p| {
        metric(p, "cairn_follow_refused_announcements_total").unwrap_or(0) >= 1
    });
    assert!(!recursive_pins(&f1).contains(&stranger));

    drop(d2);
    drop(d1);
    drop(dp);
    // Refused before a byte was fetched: f1 never took the stranger's manifest block.
    let held = cairn().arg("--repo").arg(&f1).args(["block", "stat", &stranger]).output().unwrap();
    assert!(!held.status.success(), "f1 fetched a manifest hinted by a peer it does not follow");
    // The mirrors are whole: each follower reads both files from its own repo alone, and the
    // manifests verify.
    for f in [&f1, &f2] {
        for root in [&old_root, &new_root] {
            let out = cairn().arg("--repo").arg(f).args(["cat", root]).output().unwrap();
            assert!(out.status.success(), "{}: {}", f.display(), String::from_utf8_lossy(&out.stderr));
        }
        ok(f, &["manifest", "verify", &new_manifest]);
    }
    // Unfollowing keeps what was mirrored unless asked.
    ok(&f1, &["follow", "rm", &pid]);
    assert!(recursive_pins(&f1).contains(&new_manifest));
    ok(&f2, &["follow", "rm", &pid, "--unpin"]);
    assert!(!recursive_pins(&f2).contains(&new_manifest));
    assert!(ok(&f2, &["follow", "ls"]).trim().is_empty());
}
