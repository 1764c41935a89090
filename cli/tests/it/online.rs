//! Commands against a running daemon, through its RPC API: `id`, `swarm`, `add`, `cat`,
//! `pin add` and `routing` between two daemons on loopback; `bootstrap` edits the config;
//! the API refuses what it must.

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use crate::cairn;
use crate::daemon::Daemon;

fn run(repo: &Path, args: &[&str]) -> String {
    let out = cairn().arg("--repo").arg(repo).args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn fails(repo: &Path, args: &[&str]) -> String {
    let out = cairn().arg("--repo").arg(repo).args(args).output().unwrap();
    assert!(!out.status.success(), "{args:?} should fail");
    String::from_utf8(out.stderr).unwrap()
}

/// A raw HTTP/1.0 request to the API at `$repo/api`; the whole response.
fn api_request(repo: &Path, head: &str, body: &[u8]) -> String {
    let text = std::fs::read_to_string(repo.join("api")).unwrap();
    let parts: Vec<&str> = text.trim().split('/').collect();
    let mut s = std::net::TcpStream::connect(format!("{}:{}", parts[2], parts[4])).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "{head}\r\nContent-Length: {}\r\n\r\n", body.len()).unwrap();
    s.write_all(body).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn commands_go_through_the_daemon() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    run(&a, &["init", "--profile", "test"]);
    run(&b, &["init", "--profile", "test"]);
    // Offline, `id` reads the repo; `swarm` needs the daemon.
    let offline: serde_json::Value = serde_json::from_str(&run(&a, &["id"])).unwrap();
    assert!(offline["ID"].as_str().unwrap().starts_with("12D3KooW"));
    assert!(fails(&a, &["swarm", "peers"]).contains("online mode"));

    let da = Daemon::start(&a);
    let db = Daemon::start(&b);
    let id_a: serde_json::Value = serde_json::from_str(&run(&a, &["id"])).unwrap();
    assert_eq!(id_a["ID"], offline["ID"]);
    let addrs: Vec<&str> = id_a["Addresses"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(addrs.contains(&da.swarm_addr().as_str()), "{addrs:?}");
    let listen = run(&a, &["swarm", "addrs", "listen"]);
    assert!(listen.lines().any(|l| l.starts_with("/ip4/127.0.0.1/tcp/")), "{listen}");

    let connected = run(&b, &["swarm", "connect", &da.swarm_addr()]);
    assert_eq!(connected.trim(), format!("connect {} success", offline["ID"].as_str().unwrap()));
    assert!(run(&a, &["swarm", "peers"]).contains(&db.swarm_addr().rsplit('/').next().unwrap().to_owned()));

    // `add` while the daemon holds the repo: a file and a tree, uploaded to the daemon.
    let data: Vec<u8> = (0..700_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
    let file = tmp.path().join("big.bin");
    std::fs::write(&file, &data).unwrap();
    let tree = tmp.path().join("tree");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    std::fs::write(tree.join("sub/x.txt"), "x\n").unwrap();
    std::fs::write(tree.join(".hidden"), "h\n").unwrap();
    let added = run(&a, &["add", file.to_str().unwrap()]);
    let cid = added.split_whitespace().nth(1).unwrap().to_owned();
    assert_eq!(added.trim(), format!("added {cid} big.bin"));
    // Standard input goes up too, named by its CID as offline.
    let piped = cairn().arg("--repo").arg(&a).arg("add").write_stdin(data.clone()).output().unwrap();
    assert!(piped.status.success(), "{}", String::from_utf8_lossy(&piped.stderr));
    assert_eq!(String::from_utf8(piped.stdout).unwrap().trim(), format!("added {cid} {cid}"));
    // The same bytes hash to the same CID offline (`-n` needs no daemon).
    assert_eq!(run(&a, &["add", "-n", "-Q", file.to_str().unwrap()]).trim(), cid);
    let tree_out = run(&a, &["add", "-r", tree.to_str().unwrap()]);
    let names: Vec<&str> = tree_out.lines().map(|l| l.rsplit(' ').next().unwrap()).collect();
    assert_eq!(names, ["tree/sub/x.txt", "tree/sub", "tree"], "{tree_out}");
    let tree_offline = run(&a, &["add", "-n", "-r", "-Q", tree.to_str().unwrap()]);
    assert_eq!(tree_out.lines().last().unwrap().split_whitespace().nth(1).unwrap(), tree_offline.trim());
    // An IPIP-499 profile and the flags over it reach the daemon's importer: the same root as
    // offline, and a bad one refused before anything is uploaded.
    let v1: &[&str] = &["-r", "-Q", "--profile", "unixfs-v1-2025", "--max-directory-links", "1"];
    // (Not pinned: the reprovide sweep below counts the pins.)
    let v1_online = run(&a, &[&["add", "--pin=false"], v1, &[tree.to_str().unwrap()]].concat());
    let v1_offline = run(&a, &[&["add", "-n"], v1, &[tree.to_str().unwrap()]].concat());
    assert!(v1_online.starts_with("bafy") && v1_online.trim() == v1_offline.trim(), "{v1_online} {v1_offline}");
    assert_ne!(v1_online.trim(), tree_offline.trim());
    assert!(fails(&a, &["add", "--max-hamt-fanout", "12", file.to_str().unwrap()]).contains("fanout"));

    // `get` through the daemon: a tree (hidden files were left out by `add`) and a file.
    let tree_root = tree_out.lines().last().unwrap().split_whitespace().nth(1).unwrap().to_owned();
    let got = tmp.path().join("got");
    run(&a, &["get", &tree_root, "-o", got.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(got.join("sub/x.txt")).unwrap(), "x\n");
    assert!(!got.join(".hidden").exists());
    let got_file = tmp.path().join("got.bin");
    run(&a, &["get", &cid, "-o", got_file.to_str().unwrap()]);
    assert!(std::fs::read(&got_file).unwrap() == data);
    assert!(fails(&a, &["get", &cid, "-o", got_file.to_str().unwrap()]).contains("already exists"));
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.starts_with(".cairn-get"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // b reads a's file through its own daemon, which fetches it over Bitswap.
    let out = cairn().arg("--repo").arg(&b).args(["cat", &cid]).output().unwrap();
    assert!(out.status.success() && out.stdout == data, "cat through b's daemon");
    let part = cairn().arg("--repo").arg(&b).args(["cat", "--offset", "10", "--length", "5", &cid]).output().unwrap();
    assert_eq!(part.stdout, data[10..15]);
    // At a terminal, cat through the daemon shows a bar with the bytes, the rate and the
    // daemon's peers on stderr; its output is still just the file (`script` gives it a pty).
    let bin = assert_cmd::cargo::cargo_bin("cairn");
    let cat_out = tmp.path().join("cat-at-terminal.bin");
    let line = format!("{} --repo {} cat {cid} > {}", bin.display(), b.display(), cat_out.display());
    let term = std::process::Command::new("script").args(["-qec", &line, "/dev/null"]).output().unwrap();
    let shown = String::from_utf8_lossy(&term.stdout);
    assert!(term.status.success(), "{shown}");
    assert!(shown.contains(" 1 peer, "), "no peer count on the terminal: {shown:?}");
    assert!(shown.contains(" sending"), "no count of sending peers on the terminal: {shown:?}");
    // b's Bitswap counters: the file's four blocks (three leaves and the root) came from a,
    // its one partner.
    let stat = run(&b, &["bitswap", "stat"]);
    assert!(stat.starts_with("bitswap status\n"), "{stat}");
    let received: u64 = stat
        .lines()
        .find_map(|l| l.trim().strip_prefix("blocks received: "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{stat}"));
    assert!(received >= 4, "{stat}");
    assert!(stat.contains("partners [1]"), "{stat}");
    assert!(std::fs::read(&cat_out).unwrap() == data, "cat at a terminal wrote other bytes");

    // a announced the root it added: b's DHT lookup names a.
    let provs = run(&b, &["routing", "findprovs", "-n", "1", &cid]);
    assert_eq!(provs.trim(), offline["ID"].as_str().unwrap());
    run(&a, &["routing", "provide", "-r", &cid]);
    // A sweep now: the roots strategy renews the two pins (the file and the tree), in one
    // lookup since b is the whole DHT.
    let swept = run(&a, &["routing", "reprovide"]);
    assert!(swept.starts_with("reprovided 2 keys (0 reached no peer) in "), "{swept}");
    assert!(swept.trim_end().ends_with("1 region lookups, 1 streams (0 failed)"), "{swept}");
    let metrics = api_request(&a, "GET /debug/metrics/prometheus HTTP/1.0", b"");
    for line in ["cairn_reprovide_last_sweep_keys 2", "cairn_reprovide_last_sweep_lookups 1"] {
        assert!(metrics.lines().any(|l| l == line), "no {line:?} in {metrics}");
    }
    // b pins what it fetched, through its daemon.
    assert_eq!(run(&b, &["pin", "add", &cid]).trim(), format!("pinned {cid} recursively"));
    // A DAG b has never read: pinning it fetches every block.
    let other: Vec<u8> = data.iter().rev().copied().chain(data.iter().copied()).collect();
    let other_file = tmp.path().join("other.bin");
    std::fs::write(&other_file, &other).unwrap();
    let other_cid = run(&a, &["add", "-Q", other_file.to_str().unwrap()]).trim().to_owned();
    assert_eq!(run(&b, &["pin", "add", &other_cid]).trim(), format!("pinned {other_cid} recursively"));
    drop(db);
    assert!(run(&b, &["pin", "ls"]).contains(&cid), "the pin outlived b's daemon");
    let out = cairn().arg("--repo").arg(&b).args(["cat", &other_cid]).output().unwrap();
    assert!(out.status.success() && out.stdout == other, "b holds the whole pinned DAG");

    // The API takes POST only, and an upload cannot write outside its spool directory.
    let get = api_request(&a, "GET /api/v0/id HTTP/1.0", b"");
    assert!(get.starts_with("HTTP/1.0 405") || get.starts_with("HTTP/1.1 405"), "{get}");
    let body = b"--XX\r\nContent-Disposition: form-data; name=\"file\"; filename=\"..%2F..%2Fescaped\"\r\nContent-Type: application/octet-stream\r\n\r\nevil\r\n--XX--\r\n";
    let evil = api_request(&a, "POST /api/v0/add HTTP/1.0\r\nContent-Type: multipart/form-data; boundary=XX", body);
    assert!(evil.contains(" 400 ") && evil.contains("escapes"), "{evil}");
    assert!(!tmp.path().join("escaped").exists() && !a.join("escaped").exists());
    let bad = api_request(&a, "POST /api/v0/cat?arg=notacid HTTP/1.0", b"");
    assert!(bad.contains(" 400 ") && bad.contains("\"Type\":\"error\""), "{bad}");
    drop(da);
}

#[test]
fn bootstrap_edits_the_list() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("r");
    run(&repo, &["init", "--profile", "test"]);
    assert_eq!(run(&repo, &["bootstrap", "list"]), "");
    let peer = "/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA";
    assert_eq!(run(&repo, &["bootstrap", "add", peer]).trim(), peer);
    assert_eq!(run(&repo, &["bootstrap", "list"]).trim(), peer);
    assert!(fails(&repo, &["bootstrap", "add", "/ip4/127.0.0.1/tcp/1"]).contains("/p2p/"));
    assert!(fails(&repo, &["bootstrap", "add", "not an address"]).contains("not a multiaddr"));
    assert_eq!(run(&repo, &["bootstrap", "rm", "--all"]).trim(), peer);
    assert_eq!(run(&repo, &["bootstrap", "list"]), "");
}

/// The official JavaScript client of Kubo's RPC API (`kubo-rpc-client`, run by
/// `testnet/js/rpc_client.mjs`) adds, cats, pins, lists peers and finds providers through a
/// Cairn daemon, with CIDs checked against the JavaScript UnixFS importer.
#[test]
#[allow(clippy::print_stderr)] // the skip notice is for the person running the tests
fn kubo_rpc_client_works_against_the_daemon() {
    let here = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| env!("CARGO_MANIFEST_DIR").into(), std::path::PathBuf::from);
    let js = here.join("../testnet/js");
    let ready = js.join("node_modules/kubo-rpc-client").is_dir()
        && std::process::Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success());
    if !ready {
        let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
        assert!(!ci, "node or testnet/js/node_modules missing under CI: run scripts/setup.sh");
        eprintln!("SKIPPED: node or kubo-rpc-client missing (scripts/setup.sh installs them)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    run(&a, &["init", "--profile", "test"]);
    run(&b, &["init", "--profile", "test"]);
    let _da = Daemon::start(&a);
    let db = Daemon::start(&b);
    let api = std::fs::read_to_string(a.join("api")).unwrap();
    let scratch = tmp.path().join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let out = std::process::Command::new("node")
        .arg(js.join("rpc_client.mjs"))
        .arg(api.trim())
        .arg(&scratch)
        .arg(db.swarm_addr())
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "kubo-rpc-client failed:\n{report}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(report.lines().filter(|l| l.contains("\"ok\":true")).count() >= 15, "{report}");
}

/// With `API.Authorizations` set, a request without the secret (or with a wrong one) is
/// refused, the CLI (which reads the secret from the repo's config) still works, and the
/// metrics page answers GET. Without secrets, the daemon refuses an API on a non-loopback
/// address.
#[test]
fn api_secrets_are_enforced() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("r");
    run(&repo, &["init", "--profile", "test"]);
    run(&repo, &["config", "Addresses.API", "/ip4/0.0.0.0/tcp/0"]);
    let out = cairn().arg("--repo").arg(&repo).arg("daemon").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("API.Authorizations"), "{out:?}");
    run(&repo, &["config", "Addresses.API", "/ip4/127.0.0.1/tcp/0"]);
    let auth = r#"{"ops": {"AuthSecret": "bearer:s3cret", "AllowedPaths": ["/api/v0", "/debug/metrics"]}}"#;
    run(&repo, &["config", "API.Authorizations", auth, "--json"]);
    let _d = Daemon::start(&repo);
    let denied = api_request(&repo, "POST /api/v0/id HTTP/1.0", b"");
    assert!(denied.contains(" 403 "), "{denied}");
    let wrong = api_request(&repo, "POST /api/v0/id HTTP/1.0\r\nAuthorization: Bearer s3cre", b"");
    assert!(wrong.contains(" 403 "), "{wrong}");
    let ok = api_request(&repo, "POST /api/v0/id HTTP/1.0\r\nAuthorization: Bearer s3cret", b"");
    assert!(ok.contains(" 200 "), "{ok}");
    assert!(run(&repo, &["id"]).contains("\"ID\""));
    // Gateway requests are counted by status, with their latency.
    let gateway = crate::daemon::wait_for(&repo.join("gateway"));
    crate::daemon::http_get_bytes(&gateway, "/ipfs/notacid");
    let metrics = api_request(&repo, "GET /debug/metrics/prometheus HTTP/1.0\r\nAuthorization: Bearer s3cret", b"");
    assert!(metrics.contains(" 200 ") && metrics.contains("cairn_repo_blocks "), "{metrics}");
    assert!(metrics.contains("cairn_dht_routing_table_peers{dht=\"lan\"}"), "{metrics}");
    assert!(metrics.contains("cairn_gateway_requests_total{status=\"400\"} 1"), "{metrics}");
    assert!(metrics.contains("cairn_gateway_response_seconds_count 1"), "{metrics}");
    assert!(metrics.contains("cairn_bitswap_sessions ") && metrics.contains("cairn_bitswap_wants "), "{metrics}");
    assert!(metrics.trim_end().ends_with("# EOF"), "{metrics}");
}

/// With the daemon holding the repo, `ls`, `pin ls|rm`, `block`, `dag` and `repo` go through
/// its API and print what they print offline; a CAR upload cut off mid-part pins nothing.
#[test]
fn repo_commands_through_the_daemon_match_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("r");
    run(&repo, &["init", "--profile", "test"]);
    let tree = tmp.path().join("site");
    std::fs::create_dir_all(tree.join("docs")).unwrap();
    std::fs::write(tree.join("index.txt"), "hello\n").unwrap();
    let big: Vec<u8> = (0..600_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 9) as u8).collect();
    std::fs::write(tree.join("docs/big.bin"), &big).unwrap();
    let root = run(&repo, &["add", "-r", "-Q", tree.to_str().unwrap()]).trim().to_owned();
    let block = tmp.path().join("block.bin");
    std::fs::write(&block, "a raw block").unwrap();
    let raw_cid = run(&repo, &["block", "put", block.to_str().unwrap()]).trim().to_owned();
    let sorted = |text: String| {
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        lines.sort();
        lines
    };
    let offline = [
        run(&repo, &["ls", &root]),
        run(&repo, &["ls", &format!("{root}/docs"), &root]),
        run(&repo, &["block", "stat", &root]),
        run(&repo, &["pin", "ls", "--type", "recursive"]),
    ];
    let offline_pins = sorted(run(&repo, &["pin", "ls"]));
    let car_path = tmp.path().join("site.car");
    let car = cairn().arg("--repo").arg(&repo).args(["dag", "export", &root]).output().unwrap().stdout;
    std::fs::write(&car_path, &car).unwrap();
    let objects: u64 = run(&repo, &["repo", "stat"])
        .lines()
        .find_map(|l| l.strip_prefix("NumObjects:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    let d = Daemon::start(&repo);
    let online = [
        run(&repo, &["ls", &root]),
        run(&repo, &["ls", &format!("{root}/docs"), &root]),
        run(&repo, &["block", "stat", &root]),
        run(&repo, &["pin", "ls", "--type", "recursive"]),
    ];
    assert_eq!(online, offline);
    assert_eq!(sorted(run(&repo, &["pin", "ls"])), offline_pins);
    let got = cairn().arg("--repo").arg(&repo).args(["block", "get", &raw_cid]).output().unwrap();
    assert_eq!(got.stdout, b"a raw block");
    let put = cairn().arg("--repo").arg(&repo).args(["block", "put"]).write_stdin("a raw block").output().unwrap();
    assert_eq!(String::from_utf8(put.stdout).unwrap().trim(), raw_cid);
    let exported = cairn().arg("--repo").arg(&repo).args(["dag", "export", &root]).output().unwrap();
    assert!(exported.status.success() && exported.stdout == car, "the CAR differs from the offline export");
    let stat = run(&repo, &["repo", "stat"]);
    assert!(stat.contains(&format!("NumObjects: {objects}")) && stat.contains("Version:"), "{stat}");
    assert_eq!(run(&repo, &["repo", "verify"]).trim(), "verified repo integrity");
    assert_eq!(run(&repo, &["block", "rm", &raw_cid]).trim(), format!("removed {raw_cid}"));
    assert!(fails(&repo, &["block", "rm", &root]).contains("pinned"));

    // Unpin and collect: the DAG's blocks go.
    assert_eq!(run(&repo, &["pin", "rm", &root]).trim(), format!("unpinned {root}"));
    let gc = run(&repo, &["repo", "gc"]);
    assert!(gc.starts_with("removed ") && !gc.starts_with("removed 0 "), "{gc}");
    assert!(!run(&repo, &["pin", "ls"]).contains(&root));
    // A CAR cut off in the middle of its part: refused, nothing pinned.
    let cut = &car[..car.len() / 2];
    let mut body = b"--XX\r\nContent-Disposition: form-data; name=\"file\"; filename=\"\"\r\nContent-Type: application/octet-stream\r\n\r\n".to_vec();
    body.extend_from_slice(cut);
    let reply =
        api_request(&repo, "POST /api/v0/dag/import HTTP/1.0\r\nContent-Type: multipart/form-data; boundary=XX", &body);
    assert!(reply.contains(" 400 ") && reply.contains("\"Type\":\"error\""), "{reply}");
    assert!(!run(&repo, &["pin", "ls"]).contains(&root));
    // An `add` whose body ends inside a file part: refused, nothing pinned, no spool left.
    let pins_before = run(&repo, &["pin", "ls"]);
    let body = b"--XX\r\nContent-Disposition: form-data; name=\"file\"; filename=\"half.txt\"\r\nContent-Type: application/octet-stream\r\n\r\nthe first half of a fi";
    let reply = api_request(&repo, "POST /api/v0/add HTTP/1.0\r\nContent-Type: multipart/form-data; boundary=XX", body);
    assert!(reply.contains(" 400 ") && reply.contains("\"Type\":\"error\""), "{reply}");
    assert_eq!(run(&repo, &["pin", "ls"]), pins_before);
    let spools: Vec<_> = std::fs::read_dir(&repo)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.starts_with("api-add-"))
        .collect();
    assert!(spools.is_empty(), "{spools:?}");
    // The whole CAR: imported and pinned again.
    let imported = run(&repo, &["dag", "import", "--stats", car_path.to_str().unwrap()]);
    assert!(imported.contains(&format!("Pinned root {root} success")) && imported.contains("Imported "), "{imported}");
    assert_eq!(run(&repo, &["cat", &format!("{root}/index.txt")]), "hello\n");
    drop(d);
    assert!(run(&repo, &["pin", "ls", "--type", "recursive"]).contains(&root));
}
