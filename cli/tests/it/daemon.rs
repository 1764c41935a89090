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
    String::from_utf8(http_get_bytes(base, path)).unwrap()
}

pub fn wait_for(file: &Path) -> String {
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

/// Runs `cairn --repo repo ARGS`, which must succeed; its stdout.
fn runner(repo: &Path) -> impl Fn(&[&str]) -> String + '_ {
    move |args: &[&str]| {
        let out = cairn().arg("--repo").arg(repo).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }
}

#[test]
fn daemon_serves_the_gateway_and_stops_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let run = runner(&repo);
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

    // While it runs, the repo is locked (the config cannot be edited under it), and the
    // error names the daemon's PID.
    let out = cairn().arg("--repo").arg(&repo).args(["config", "Datastore.StorageMax", "20GB"]).output().unwrap();
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

/// A running daemon with its stdout read up to "Daemon is ready"; killed on drop.
pub struct Daemon {
    child: std::process::Child,
    pub lines: Vec<String>,
}

impl Daemon {
    pub fn start(repo: &Path) -> Daemon {
        Daemon::start_logging(repo, None)
    }

    /// [`Daemon::start`], its log (`CAIRN_LOG` directives `log.0`) written to the file `log.1`.
    pub fn start_logging(repo: &Path, log: Option<(&str, &Path)>) -> Daemon {
        Daemon::start_with(repo, &[], log)
    }

    /// [`Daemon::start_logging`] with extra `cairn daemon` flags.
    pub fn start_with(repo: &Path, flags: &[&str], log: Option<(&str, &Path)>) -> Daemon {
        use std::io::BufRead;
        let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("cairn"));
        cmd.arg("--repo").arg(repo).arg("daemon").args(flags).stdout(Stdio::piped()).stderr(Stdio::null());
        if let Some((directives, file)) = log {
            cmd.env("CAIRN_LOG", directives).stderr(std::fs::File::create(file).unwrap());
        }
        let mut child = cmd.spawn().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut lines = Vec::new();
        loop {
            let Ok(line) = rx.recv_timeout(Duration::from_secs(30)) else {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the daemon never said it was ready; it printed {lines:?}");
            };
            let ready = line == "Daemon is ready";
            lines.push(line);
            if ready {
                return Daemon { child, lines };
            }
        }
    }

    /// The swarm address it printed (`Swarm listening on ...`).
    pub fn swarm_addr(&self) -> String {
        self.lines.iter().find_map(|l| l.strip_prefix("Swarm listening on ")).expect("no swarm address").to_owned()
    }
}

impl Daemon {
    /// Sends `signal` (`TERM`, `INT`) and waits up to 30 s for the exit; its status, or None
    /// when it had to be killed.
    pub fn stop(&mut self, signal: &str) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill").args([&format!("-{signal}"), &self.child.id().to_string()]).status();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl Drop for Daemon {
    /// SIGTERM, as an operator stops it (a clean shutdown flushes the repo); SIGKILL after 30 s.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.stop("TERM");
        }
    }
}

/// Ctrl-C at the terminal (SIGINT) stops the daemon as cleanly as SIGTERM: it says so, exits
/// 0, removes its address files, releases the lock (offline commands run), and the repo
/// holds what it held. It printed its peer ID (the repo's) and its swarm address at start.
#[test]
fn daemon_stops_cleanly_on_sigint() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let run = runner(&repo);
    run(&["init", "--profile", "test"]);
    let id: serde_json::Value = serde_json::from_str(&run(&["id"])).unwrap();
    let mut daemon = Daemon::start(&repo);
    let expected = format!("Peer identity: {}", id["ID"].as_str().unwrap());
    assert!(daemon.lines.contains(&expected), "{:?}", daemon.lines);
    assert!(daemon.swarm_addr().starts_with("/ip4/127.0.0.1/tcp/"), "{:?}", daemon.lines);
    // Added through the daemon while it runs.
    let file = tmp.path().join("kept.txt");
    std::fs::write(&file, "kept across a Ctrl-C\n").unwrap();
    let cid = run(&["add", "-Q", file.to_str().unwrap()]).trim().to_owned();
    let status = daemon.stop("INT").expect("the daemon did not stop on SIGINT");
    assert!(status.success(), "exit {status}");
    for f in ["api", "gateway"] {
        assert!(!repo.join(f).exists(), "{f} outlived the daemon");
    }
    assert_eq!(run(&["cat", &cid]), "kept across a Ctrl-C\n");
    assert!(run(&["pin", "ls"]).contains(&cid));
}

/// A daemon whose only bootstrap peer is another daemon serves, through its gateway, a file
/// that only the other one has: the blocks come over Bitswap, and stay in its repo.
#[test]
fn a_daemon_serves_what_it_fetches_from_its_peer() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |repo: &Path, args: &[&str]| {
        let out = cairn().arg("--repo").arg(repo).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    run(&a, &["init", "--profile", "test"]);
    run(&b, &["init", "--profile", "test"]);
    let data: Vec<u8> = (0..(1u32 << 20) + 12345).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let file = tmp.path().join("shared.bin");
    std::fs::write(&file, &data).unwrap();
    let cid = run(&a, &["add", "-Q", file.to_str().unwrap()]).trim().to_owned();

    let seed = Daemon::start(&a);
    let peer_addr = seed.swarm_addr();
    assert!(peer_addr.starts_with("/ip4/127.0.0.1/tcp/") && peer_addr.contains("/p2p/"), "{peer_addr}");
    run(&b, &["config", "Bootstrap", &format!("[\"{peer_addr}\"]"), "--json"]);
    let leech = Daemon::start(&b);
    let url = wait_for(&b.join("gateway"));

    let reply = http_get_bytes(&url, &format!("/ipfs/{cid}"));
    let split = reply.windows(4).position(|w| w == b"\r\n\r\n").expect("no end of head") + 4;
    let head = String::from_utf8_lossy(&reply[..split]);
    assert!(head.contains(" 200 "), "{head}");
    assert!(reply[split..] == data[..], "the fetched file differs ({} bytes)", reply.len() - split);
    drop(leech);
    drop(seed);
    // The fetched blocks were stored in b's repo: with both daemons gone, b reads them alone.
    let again = cairn().arg("--repo").arg(&b).args(["cat", &cid]).output().unwrap();
    assert!(again.status.success() && again.stdout == data, "b did not keep the blocks");
}

/// `GET path` over HTTP/1.0; the whole response as bytes.
pub fn http_get_bytes(base: &str, path: &str) -> Vec<u8> {
    let addr = base.strip_prefix("http://").expect("gateway file holds an http:// URL");
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    out
}

/// Content nobody has: the gateway answers 504 once `Gateway.RetrievalTimeout` has passed,
/// and `cat` through the daemon fails, instead of hanging; what the repo holds is still
/// served at once.
#[test]
fn content_not_found_in_time_is_504() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("r");
    let run = |args: &[&str]| cairn().arg("--repo").arg(&repo).args(args).output().unwrap();
    assert!(run(&["init", "--profile", "test"]).status.success());
    // A zero timeout is refused when it is set, and, written into the file by hand, when the
    // daemon starts.
    let bad = run(&["config", "Gateway.RetrievalTimeout", "0"]);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("RetrievalTimeout"), "{bad:?}");
    let config = std::fs::read_to_string(repo.join("config")).unwrap();
    assert!(config.contains("\"RetrievalTimeout\": \"30s\""), "{config}");
    std::fs::write(repo.join("config"), config.replace("\"RetrievalTimeout\": \"30s\"", "\"RetrievalTimeout\": \"0\""))
        .unwrap();
    let out = run(&["daemon"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("RetrievalTimeout"), "{out:?}");
    assert!(run(&["config", "Gateway.RetrievalTimeout", "2s"]).status.success());
    let _d = Daemon::start(&repo);
    let url = wait_for(&repo.join("gateway"));
    // A well-formed CIDv1 of bytes no node holds.
    let missing = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy";
    let started = Instant::now();
    let reply = http_get(&url, &format!("/ipfs/{missing}"));
    let took = started.elapsed();
    assert!(reply.starts_with("HTTP/1.1 504") || reply.starts_with("HTTP/1.0 504"), "{reply}");
    assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(20), "answered after {took:?}");
    let cat = run(&["cat", missing]);
    assert!(!cat.status.success() && !String::from_utf8_lossy(&cat.stderr).trim().is_empty(), "{cat:?}");
}

/// `cairn daemon --enable-gc` collects on its own once the repo holds more than
/// `Datastore.StorageGCWatermark` percent of `StorageMax`, checking every `GCPeriod`.
#[test]
fn enable_gc_collects_past_the_watermark() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("r");
    let run = runner(&repo);
    run(&["init", "--profile", "test"]);
    run(&["config", "Datastore.StorageMax", "1MB"]);
    run(&["config", "Datastore.GCPeriod", "1s"]);
    run(&["config", "--json", "Datastore.StorageGCWatermark", "50"]);
    let bad = cairn().arg("--repo").arg(&repo).args(["config", "Datastore.GCPeriod", "often"]).output().unwrap();
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("Datastore.GCPeriod"));
    let data = crate::integrity::unique_bytes(700_000);
    let file = tmp.path().join("unpinned.bin");
    std::fs::write(&file, &data).unwrap();
    let kept = tmp.path().join("kept.txt");
    std::fs::write(&kept, "kept").unwrap();
    let cid = run(&["add", "-Q", "--pin=false", file.to_str().unwrap()]).trim().to_owned();
    let pinned = run(&["add", "-Q", kept.to_str().unwrap()]).trim().to_owned();
    let objects = || -> u64 {
        let stat = run(&["repo", "stat"]);
        stat.lines().find_map(|l| l.strip_prefix("NumObjects:")).unwrap().trim().parse().unwrap()
    };
    // The unpinned file's blocks go; the pinned one stays.
    let before = objects();
    assert!(before >= 5, "{before}");
    let _daemon = Daemon::start_with(&repo, &["--enable-gc"], None);
    let started = Instant::now();
    while objects() >= before {
        assert!(started.elapsed() < Duration::from_secs(30), "nothing was collected");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(run(&["cat", &pinned]), "kept");
    assert!(run(&["pin", "ls"]).contains(&pinned));
    let _ = cid;
}
