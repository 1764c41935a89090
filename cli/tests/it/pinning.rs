//! The Pinning Service API of `cairn daemon`: bearer tokens, accounts kept apart, requests
//! fetched in the background from their origins, retried, kept across a restart, and their
//! pins released when they are removed.

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::cairn;
use crate::daemon::{wait_for, Daemon};

fn run(repo: &Path, args: &[&str]) -> String {
    let out = cairn().arg("--repo").arg(repo).args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// One HTTP/1.0 exchange with the service at `base`: the status and the JSON body (`Null`
/// when empty).
pub fn call(base: &str, method: &str, path: &str, token: Option<&str>, body: Option<&Value>) -> (u16, Value) {
    let addr = base.strip_prefix("http://").unwrap();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let body = body.map(Value::to_string).unwrap_or_default();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.split(' ').nth(1).unwrap().parse().unwrap();
    let text = &out[out.find("\r\n\r\n").unwrap() + 4..];
    (status, if text.trim().is_empty() { Value::Null } else { serde_json::from_str(text).unwrap() })
}

/// Polls request `id` until `done` holds for it.
fn wait_until(base: &str, token: &str, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let (status, r) = call(base, "GET", &format!("/pins/{id}"), Some(token), None);
        assert_eq!(status, 200, "{r}");
        if done(&r) {
            return r;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "request never {what}: {r}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Sets up a repo whose daemon serves the Pinning Service API for accounts `alice` and `bob`,
/// retrying every second, each block allowed 2 s.
pub fn service_repo(repo: &Path) {
    run(repo, &["init", "--profile", "test"]);
    run(repo, &["config", "--json", "PinningService.Tokens", r#"{"alice": "alice-secret", "bob": "bob-secret"}"#]);
    run(repo, &["config", "PinningService.RetryDelay", "1s"]);
    run(repo, &["config", "--json", "PinningService.MaxAttempts", "1000"]);
    run(repo, &["config", "Gateway.RetrievalTimeout", "2s"]);
}

fn add_file(repo: &Path, dir: &Path, name: &str, len: u32, seed: u32) -> String {
    let data: Vec<u8> = (0..len).map(|i| (i.wrapping_add(seed).wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let file = dir.join(name);
    std::fs::write(&file, data).unwrap();
    run(repo, &["add", "-Q", file.to_str().unwrap()]).trim().to_owned()
}

#[test]
fn pin_requests_are_fetched_retried_kept_across_restarts_and_released() {
    let tmp = tempfile::tempdir().unwrap();
    let (origin, service, late) = (tmp.path().join("origin"), tmp.path().join("service"), tmp.path().join("late"));
    run(&origin, &["init", "--profile", "test"]);
    run(&late, &["init", "--profile", "test"]);
    service_repo(&service);
    let first = add_file(&origin, tmp.path(), "first.bin", 700_000, 1);
    let second = add_file(&late, tmp.path(), "second.bin", 300_000, 2);

    let origin_daemon = Daemon::start(&origin);
    let daemon = Daemon::start(&service);
    let base = wait_for(&service.join("pinning-service"));
    assert!(daemon.lines.iter().any(|l| l.starts_with("Pinning service listening on /ip4/127.0.0.1/tcp/")));

    // Without a valid token nothing is answered.
    for token in [None, Some("wrong"), Some("alice-secre")] {
        let (status, body) = call(&base, "GET", "/pins", token, None);
        assert_eq!(status, 401, "{token:?}");
        assert_eq!(body["error"]["reason"], "UNAUTHORIZED");
    }
    // Bad input is a 400 with the reason.
    let (status, body) = call(&base, "POST", "/pins", Some("alice-secret"), Some(&json!({"cid": "not-a-cid"})));
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["details"].as_str().unwrap().contains("not-a-cid"), "{body}");
    let (status, _) = call(&base, "GET", "/pins?limit=0", Some("alice-secret"), None);
    assert_eq!(status, 400);

    // A request with the origin's address: fetched from it and pinned.
    let request =
        json!({"cid": first, "name": "first file", "origins": [origin_daemon.swarm_addr()], "meta": {"app": "test"}});
    let (status, made) = call(&base, "POST", "/pins", Some("alice-secret"), Some(&request));
    assert_eq!(status, 202, "{made}");
    assert_eq!(made["pin"]["cid"], first.as_str());
    assert_eq!(made["pin"]["name"], "first file");
    let delegates = made["delegates"].as_array().unwrap();
    assert!(!delegates.is_empty() && delegates.iter().all(|d| d.as_str().unwrap().contains("/p2p/")), "{made}");
    let id1 = made["requestid"].as_str().unwrap().to_owned();
    let pinned = wait_until(&base, "alice-secret", &id1, "pinned", |r| r["status"] == "pinned");
    assert_eq!(pinned["created"], made["created"]);
    let pins = run(&service, &["pin", "ls", "--type", "recursive"]);
    assert!(pins.contains(&first), "{pins}");

    // Accounts are kept apart.
    let (status, _) = call(&base, "GET", &format!("/pins/{id1}"), Some("bob-secret"), None);
    assert_eq!(status, 404);
    let (_, listed) = call(&base, "GET", "/pins?status=queued,pinning,pinned,failed", Some("bob-secret"), None);
    assert_eq!(listed["count"], 0, "{listed}");
    let (_, listed) = call(&base, "GET", "/pins?name=FIRST&match=ipartial", Some("alice-secret"), None);
    assert_eq!(listed["count"], 1, "{listed}");
    assert_eq!(listed["results"][0]["requestid"], id1.as_str());

    // Content nobody has yet: queued, tried again and again.
    let (status, made) = call(&base, "POST", "/pins", Some("alice-secret"), Some(&json!({"cid": second})));
    assert_eq!(status, 202, "{made}");
    let id2 = made["requestid"].as_str().unwrap().to_owned();
    wait_until(&base, "alice-secret", &id2, "retried", |r| {
        r["info"]["attempts"].as_str().is_some_and(|a| a.parse::<u32>().unwrap() >= 2)
    });
    let (_, listed) = call(&base, "GET", "/pins?status=queued,pinning", Some("alice-secret"), None);
    assert_eq!(listed["count"], 1, "{listed}");

    // A restart keeps every request, the waiting one included.
    drop(daemon);
    drop(origin_daemon);
    let _daemon = Daemon::start(&service);
    let base = wait_for(&service.join("pinning-service"));
    let (_, listed) = call(&base, "GET", "/pins?status=queued,pinning,pinned,failed", Some("alice-secret"), None);
    assert_eq!(listed["count"], 2, "{listed}");
    // Newest first.
    assert_eq!(listed["results"][0]["requestid"], id2.as_str());
    assert_eq!(listed["results"][1]["requestid"], id1.as_str());
    assert_eq!(listed["results"][1]["status"], "pinned");
    assert_eq!(listed["results"][1]["pin"]["meta"]["app"], "test");

    // Once a peer that has the content connects, the next try pins it.
    let late_daemon = Daemon::start(&late);
    run(&service, &["swarm", "connect", &late_daemon.swarm_addr()]);
    wait_until(&base, "alice-secret", &id2, "pinned", |r| r["status"] == "pinned");

    // Replacing gives a new ID; the old one is gone.
    let (status, replaced) = call(
        &base,
        "POST",
        &format!("/pins/{id2}"),
        Some("alice-secret"),
        Some(&json!({"cid": second, "name": "renamed"})),
    );
    assert_eq!(status, 202, "{replaced}");
    assert_ne!(replaced["requestid"], id2.as_str());
    assert_eq!(replaced["status"], "pinned", "the same CID is still held");
    assert_eq!(call(&base, "GET", &format!("/pins/{id2}"), Some("alice-secret"), None).0, 404);

    // Removing a request removes the pin it made.
    let (status, _) = call(&base, "DELETE", &format!("/pins/{id1}"), Some("alice-secret"), None);
    assert_eq!(status, 202);
    assert_eq!(call(&base, "GET", &format!("/pins/{id1}"), Some("alice-secret"), None).0, 404);
    let pins = run(&service, &["pin", "ls", "--type", "recursive"]);
    assert!(!pins.contains(&first), "{pins}");
    assert!(pins.contains(&second), "{pins}");
}

/// The npm compliance checker (`@ipfs-shipyard/pinning-service-compliance`, through
/// `testnet/js/pinning-compliance/check.mjs`) passes all of its checks against the daemon.
/// Both run in a network namespace of their own that has only loopback, so the checker can
/// reach nothing but the daemon.
#[test]
fn the_compliance_checker_passes() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("service");
    service_repo(&repo);
    let checker = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testnet/js/pinning-compliance");
    assert!(
        checker.join("node_modules/@ipfs-shipyard/pinning-service-compliance").is_dir(),
        "the checker is not installed: run scripts/setup.sh"
    );
    let artifacts = std::env::var_os("CAIRN_ARTIFACTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("cairn-artifacts"))
        .join("pinning-compliance");
    // Inside the namespace: start the daemon, wait for its address file, run the checker,
    // stop the daemon; the checker's exit status is the script's.
    let script = r#"
        ip link set lo up || exit 90
        "$CAIRN" --repo "$REPO" daemon >"$REPO/daemon.out" 2>&1 &
        daemon=$!
        i=0
        while [ ! -s "$REPO/pinning-service" ]; do
            i=$((i + 1)); [ $i -gt 600 ] && { kill $daemon; exit 91; }
            sleep 0.05
        done
        node "$CHECKER/check.mjs" "$(cat "$REPO/pinning-service")" alice-secret --timeout 600 --report-dir "$REPORT"
        status=$?
        kill -TERM $daemon
        wait $daemon
        exit $status
    "#;
    let mut cmd = std::process::Command::new("unshare");
    // Root makes the namespace directly; anyone else needs a user namespace as well.
    let root = std::process::Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
    if !root {
        cmd.arg("-r");
    }
    let out = cmd
        .args(["-n", "sh", "-c", script])
        .env("CAIRN", assert_cmd::cargo::cargo_bin("cairn"))
        .env("REPO", &repo)
        .env("CHECKER", &checker)
        .env("REPORT", &artifacts)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let daemon_out = std::fs::read_to_string(repo.join("daemon.out")).unwrap_or_default();
    assert!(
        out.status.success(),
        "the checker failed ({}):\n{stdout}\n{}\ndaemon: {daemon_out}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.lines().any(|l| l == "compliance: 9 passed, 0 failed"), "{stdout}");
}
