//! `cairn daemon`: serves the gateway on the address it writes to `$repo/gateway`, holds the
//! repo lock while it runs, and on SIGTERM exits cleanly, removing the file and the lock.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::cairn;

/// `GET path` over HTTP/1.0; the whole response as text.
fn http_get(base: &str, path: &str) -> String {
    let addr = base.strip_prefix("http://").expect("gateway file holds an http:// URL");
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn wait_for(file: &Path) -> String {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        if let Ok(text) = std::fs::read_to_string(file) {
            if !text.is_empty() {
                return text;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{} never appeared", file.display());
}

#[test]
fn daemon_serves_the_gateway_and_stops_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let run = |args: &[&str]| {
        let out = cairn().arg("--repo").arg(&repo).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    run(&["init", "--profile", "test"]);
    let file = tmp.path().join("hello.txt");
    std::fs::write(&file, "hello from the daemon\n").unwrap();
    let cid = run(&["add", "-Q", file.to_str().unwrap()]).trim().to_owned();

    let bin = assert_cmd::cargo::cargo_bin("cairn");
    let mut daemon = Command::new(bin)
        .arg("--repo")
        .arg(&repo)
        .arg("daemon")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let url = wait_for(&repo.join("gateway"));
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    assert!(!url.ends_with(":0"), "the file must hold the bound port: {url}");

    let reply = http_get(&url, &format!("/ipfs/{cid}"));
    assert!(reply.starts_with("HTTP/1.0 200") || reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.ends_with("\r\n\r\nhello from the daemon\n"), "{reply}");

    // While it runs, the repo is locked, and the error names the daemon's PID.
    let out = cairn().arg("--repo").arg(&repo).args(["pin", "ls"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&daemon.id().to_string()), "{err}");

    // SIGTERM: a clean exit, the address file gone, the repo usable again.
    let killed = Command::new("kill").args(["-TERM", &daemon.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = daemon.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the daemon did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stdout = String::new();
    daemon.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    assert!(status.success(), "exit {status}: {stdout}");
    assert!(stdout.contains("Gateway server listening on /ip4/127.0.0.1/tcp/"), "{stdout}");
    assert!(stdout.contains("Daemon is ready"), "{stdout}");
    assert!(!repo.join("gateway").exists(), "the gateway file outlived the daemon");
    assert!(run(&["pin", "ls"]).contains(&cid));
}
