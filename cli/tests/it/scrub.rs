//! The background scrub of `cairn daemon`: bytes rotted inside RocksDB's blob files are found
//! without anyone asking, reported (metrics, log, `repo verify`) while no peer has the block,
//! and repaired from a second node as soon as one does.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::cairn;
use crate::daemon::{http_get_bytes, wait_for, Daemon};
use crate::integrity::{rot, unique_bytes};

fn run(repo: &Path, args: &[&str]) -> std::process::Output {
    cairn().arg("--repo").arg(repo).args(args).output().unwrap()
}

fn ok(repo: &Path, args: &[&str]) -> String {
    let out = run(repo, args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The daemon's metrics page.
pub fn metrics(repo: &Path) -> String {
    let api = wait_for(&repo.join("api"));
    let parts: Vec<&str> = api.trim().split('/').collect();
    let reply = http_get_bytes(&format!("http://{}:{}", parts[2], parts[4]), "/debug/metrics/prometheus");
    String::from_utf8(reply).unwrap()
}

/// The value of the metric line `name` on the page.
pub fn metric(page: &str, name: &str) -> Option<u64> {
    page.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

pub fn wait_metric(repo: &Path, what: &str, done: impl Fn(&str) -> bool) -> String {
    let started = Instant::now();
    loop {
        let page = metrics(repo);
        if done(&page) {
            return page;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "never {what}:\n{page}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_scrub_finds_rot_and_repairs_it_from_a_peer() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    for repo in [&a, &b] {
        ok(repo, &["init", "--profile", "test"]);
    }
    ok(&a, &["config", "Scrub.Interval", "2s"]);
    ok(&a, &["config", "Gateway.RetrievalTimeout", "2s"]);
    let data = unique_bytes(700_000);
    let file = tmp.path().join("archive.bin");
    std::fs::write(&file, &data).unwrap();
    let cid = ok(&a, &["add", "-Q", file.to_str().unwrap()]).trim().to_owned();
    assert_eq!(ok(&b, &["add", "-Q", file.to_str().unwrap()]).trim(), cid);
    rot(&a, &data[400_000..400_064]);

    // Alone, a finds the damage by itself, and says so everywhere.
    let log = tmp.path().join("a.log");
    let daemon_a = Daemon::start_logging(&a, Some(("cairn_node=info", &log)));
    let page = wait_metric(&a, "found the damage", |p| metric(p, "cairn_scrub_unrepaired_blocks") == Some(1));
    assert_eq!(metric(&page, "cairn_scrub_corrupt_blocks_total"), Some(1), "{page}");
    assert_eq!(metric(&page, "cairn_scrub_repaired_blocks_total"), Some(0), "{page}");
    let out = run(&a, &["repo", "verify", "-q"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("removed by the scrub as corrupt (unreadable"), "{text}");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("damaged block found") && logged.contains("no peer has the damaged block"), "{logged}");

    // With a peer that holds the block, the next try repairs it.
    let daemon_b = Daemon::start(&b);
    ok(&a, &["swarm", "connect", &daemon_b.swarm_addr()]);
    let page = wait_metric(&a, "repaired", |p| metric(p, "cairn_scrub_unrepaired_blocks") == Some(0));
    assert_eq!(metric(&page, "cairn_scrub_repaired_blocks_total"), Some(1), "{page}");
    assert!(std::fs::read_to_string(&log).unwrap().contains("repaired from a peer"));
    let verified = ok(&a, &["repo", "verify", "-q"]);
    assert!(!verified.contains("corrupt"), "{verified}");
    drop(daemon_b);
    drop(daemon_a);
    // Whole again, from a's repo alone.
    let out = run(&a, &["cat", &cid]);
    assert!(out.status.success() && out.stdout == data, "the file is not whole again");
    ok(&a, &["pin", "verify"]);
}
