//! The RPC API against hostile web pages and clients: uploads never touch the file system,
//! no web origin or rebound host name drives it, secrets open only their paths, and every
//! upload body is bounded.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cairn_node::config::{Authorization, Profile};
use cairn_node::merkle::exporter::NodeKind;
use cairn_node::{IpfsPath, Node};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A node with only its RPC API served, on a loopback port; it stops when dropped.
struct ApiServer {
    node: Arc<Node>,
    addr: SocketAddr,
    dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl ApiServer {
    async fn start(edit: impl FnOnce(&mut cairn_node::Config)) -> ApiServer {
        let dir = tempfile::tempdir().unwrap();
        let mut node = Node::init(&dir.path().join("repo"), Profile::Test).unwrap();
        let mut config = node.repo().config().clone();
        edit(&mut config);
        node.repo_mut().set_config(config).unwrap();
        let node = Arc::new(node);
        let (stop_tx, _) = tokio::sync::mpsc::channel(1);
        let api = cairn_gateway::api::Api::new(node.clone(), None, stop_tx);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(cairn_gateway::serve_api(listener, api, async {
            let _ = rx.await;
        }));
        ApiServer { node, addr, dir, _stop: tx }
    }

    /// Sends `head` (request line and headers, without the final blank line) and `body`;
    /// returns the status and the whole response text.
    async fn raw(&self, head: &str, body: &[u8]) -> (u16, String) {
        let mut s = TcpStream::connect(self.addr).await.unwrap();
        let req = format!("{head}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n", body.len());
        s.write_all(req.as_bytes()).await.unwrap();
        // The server may answer (and close) before it reads a refused body.
        let _ = s.write_all(body).await;
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut out)).await.expect("no answer");
        let text = String::from_utf8_lossy(&out).into_owned();
        let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        (status, text)
    }

    /// A POST with extra header lines.
    async fn post(&self, path: &str, headers: &[&str], body: &[u8]) -> (u16, String) {
        let mut head = format!("POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{}", self.addr.port());
        for h in headers {
            head.push_str("\r\n");
            head.push_str(h);
        }
        self.raw(&head, body).await
    }

    /// An `add` of `parts` (name, content type, bytes) as one multipart body.
    async fn add(&self, query: &str, parts: &[(&str, &str, &[u8])]) -> (u16, String) {
        let body = multipart(parts);
        self.post(&format!("/api/v0/add{query}"), &["Content-Type: multipart/form-data; boundary=XX"], &body).await
    }

    /// Every file name under the repo directory, recursively.
    fn repo_files(&self) -> Vec<String> {
        fn walk(dir: &std::path::Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).unwrap().flatten() {
                out.push(e.file_name().to_string_lossy().into_owned());
                if e.file_type().unwrap().is_dir() {
                    walk(&e.path(), out);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.dir.path().join("repo"), &mut out);
        out
    }
}

fn multipart(parts: &[(&str, &str, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, kind, data) in parts {
        body.extend_from_slice(
            format!(
                "--XX\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: {kind}\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"--XX--\r\n");
    body
}

/// The `Hash` of the last line of an NDJSON answer.
fn last_hash(answer: &str) -> String {
    let body = answer.split("\r\n\r\n").nth(1).unwrap();
    let last = body.lines().rfind(|l| l.starts_with('{')).unwrap();
    let v: serde_json::Value = serde_json::from_str(last).unwrap();
    v["Hash"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlink_part_cannot_write_through_the_file_system() {
    let api = ApiServer::start(|_| {}).await;
    let victim_dir = tempfile::tempdir().unwrap();
    let victim = victim_dir.path().join("authorized_keys");
    let config = api.dir.path().join("repo/config");
    let config_before = std::fs::read(&config).unwrap();
    let target = victim.to_str().unwrap();
    for t in [target, config.to_str().unwrap()] {
        // The attack of the spooled upload: a symlink part, then a file of the same name.
        let (status, text) = api
            .add(
                "",
                &[
                    ("x", "application/symlink", t.as_bytes()),
                    ("x", "application/octet-stream", b"ssh-ed25519 AAAA evil"),
                ],
            )
            .await;
        assert_eq!(status, 400, "{text}");
        assert!(text.contains("duplicate or conflicting name"), "{text}");
        // Nested under a directory, and with the directory given as a symlink first.
        let (status, text) = api
            .add(
                "",
                &[
                    ("d", "application/x-directory", b""),
                    ("d/s", "application/symlink", victim_dir.path().to_str().unwrap().as_bytes()),
                    ("d/s/authorized_keys", "application/octet-stream", b"evil"),
                ],
            )
            .await;
        assert_eq!(status, 400, "{text}");
    }
    assert!(!victim.exists(), "the upload wrote through a symlink");
    assert_eq!(std::fs::read(&config).unwrap(), config_before, "the upload rewrote the repo's config");

    // A symlink on its own is data: a UnixFS symlink node holding the target.
    let (status, text) = api.add("", &[("link", "application/symlink", target.as_bytes())]).await;
    assert_eq!(status, 200, "{text}");
    let cid = last_hash(&text).parse().unwrap();
    let stat = api.node.stat_path(&IpfsPath { root: cid, rest: String::new() }).unwrap();
    assert_eq!(stat.kind, NodeKind::Symlink);
    assert_eq!(stat.target.as_deref(), Some(target));
    assert!(!victim.exists());
    // And no upload left anything in the repo directory (there is no spool at all).
    let files = api.repo_files();
    assert!(!files.iter().any(|f| f.starts_with("api-add-") || f == "link" || f == "x"), "{files:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tree_uploaded_gives_the_cids_of_a_local_add() {
    let api = ApiServer::start(|_| {}).await;
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path().join("t");
    std::fs::create_dir_all(t.join("sub")).unwrap();
    std::fs::write(t.join("sub/x.txt"), "x\n").unwrap();
    std::fs::write(t.join("a b"), "a").unwrap();
    std::os::unix::fs::symlink("sub/x.txt", t.join("l")).unwrap();
    let opts = cairn_node::add::AddOptions { recursive: true, hidden: true, ..Default::default() };
    let local = cairn_node::add::add_path(&t, &opts, &mut cairn_node::merkle::MemoryBlocks::new()).unwrap();
    let (status, text) = api
        .add(
            "",
            &[
                ("t", "application/x-directory", b""),
                ("t%2Fa%20b", "application/octet-stream", b"a"),
                ("t%2Fl", "application/symlink", b"sub/x.txt"),
                ("t%2Fsub", "application/x-directory", b""),
                ("t%2Fsub%2Fx.txt", "application/octet-stream", b"x\n"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(last_hash(&text), local.last().unwrap().cid.to_string());
    let names: Vec<String> = text
        .split("\r\n\r\n")
        .nth(1)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["Name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["t/a b", "t/l", "t/sub/x.txt", "t/sub", "t"]);
    // Pinned, and readable.
    let root = last_hash(&text).parse().unwrap();
    assert!(api.node.pin_of(&root).unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_names_are_refused_and_nothing_is_pinned() {
    let api = ApiServer::start(|_| {}).await;
    let cases: [&[(&str, &str, &[u8])]; 4] = [
        &[("a", "application/octet-stream", b"1"), ("a", "application/octet-stream", b"2")],
        &[("a", "application/octet-stream", b"1"), ("a%2Fb", "application/octet-stream", b"2")],
        &[("..%2F..%2Fescaped", "application/octet-stream", b"evil")],
        &[("d%2F%00x", "application/octet-stream", b"evil")],
    ];
    for parts in cases {
        let (status, text) = api.add("", parts).await;
        assert_eq!(status, 400, "{parts:?}: {text}");
        assert!(text.contains("\"Type\":\"error\""), "{text}");
    }
    assert!(api.node.pins().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_pages_and_rebound_hosts_get_403() {
    let api = ApiServer::start(|_| {}).await;
    let id = "/api/v0/id";
    let port = api.addr.port();
    // A CORS "simple" request from a page: no preflight, text/plain, any origin.
    let (status, text) = api.post(id, &["Origin: http://evil.example", "Content-Type: text/plain"], b"x").await;
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("evil.example"), "{text}");
    for headers in [
        &["Origin: null"][..],
        &[&*format!("Origin: http://127.0.0.1:{port}")][..],
        &["Referer: http://evil.example/page.html"][..],
        &["Sec-Fetch-Site: cross-site"][..],
        &["Sec-Fetch-Site: same-site", "Sec-Fetch-Mode: no-cors"][..],
    ] {
        let (status, text) = api.post(id, headers, b"").await;
        assert_eq!(status, 403, "{headers:?}: {text}");
    }
    // The upload of the attack, from a page: refused before any part is read.
    let body = multipart(&[("x", "application/octet-stream", b"evil")]);
    let (status, _) = api
        .post("/api/v0/add", &["Origin: http://evil.example", "Content-Type: multipart/form-data; boundary=XX"], &body)
        .await;
    assert_eq!(status, 403);
    assert!(api.node.pins().unwrap().is_empty());
    // DNS rebinding: the page's own name, resolved to 127.0.0.1.
    for host in ["evil.example", "evil.example:5001", "localhost.evil.example", "127.0.0.1.nip.io:5001"] {
        let (status, text) = api.raw(&format!("POST {id} HTTP/1.1\r\nHost: {host}"), b"").await;
        assert_eq!(status, 403, "{host}: {text}");
        assert!(text.contains("API.AllowedHosts"), "{text}");
    }
    // Clients that are not browsers, on loopback names, are served.
    for host in [format!("127.0.0.1:{port}"), format!("localhost:{port}"), format!("[::1]:{port}")] {
        let (status, text) = api.raw(&format!("POST {id} HTTP/1.1\r\nHost: {host}"), b"").await;
        assert_eq!(status, 200, "{host}: {text}");
        assert!(text.to_ascii_lowercase().contains("x-content-type-options: nosniff"), "{text}");
    }
    let (status, _) = api.raw(&format!("POST {id} HTTP/1.0"), b"").await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listed_origins_and_hosts_are_served_with_cors_headers() {
    let api = ApiServer::start(|c| {
        c.api.http_headers.insert("Access-Control-Allow-Origin".into(), vec!["http://app.example:3000".into()]);
        c.api.http_headers.insert("X-Operator".into(), vec!["cairn-test".into()]);
        c.api.allowed_hosts = vec!["node.internal".into()];
    })
    .await;
    let (status, text) = api
        .raw(
            "OPTIONS /api/v0/id HTTP/1.1\r\nHost: node.internal:5001\r\nOrigin: http://app.example:3000\r\n\
             Access-Control-Request-Method: POST",
            b"",
        )
        .await;
    assert_eq!(status, 200, "{text}");
    let lower = text.to_ascii_lowercase();
    assert!(lower.contains("access-control-allow-origin: http://app.example:3000"), "{text}");
    assert!(lower.contains("access-control-allow-methods: post"), "{text}");
    let (status, text) =
        api.post("/api/v0/id", &["Origin: http://app.example:3000", "Sec-Fetch-Site: cross-site"], b"").await;
    assert_eq!(status, 200, "{text}");
    let lower = text.to_ascii_lowercase();
    assert!(lower.contains("access-control-allow-origin: http://app.example:3000"), "{text}");
    assert!(lower.contains("x-operator: cairn-test"), "{text}");
    // Another origin, even with the listed one's host, is still refused.
    let (status, _) = api.post("/api/v0/id", &["Origin: https://app.example:3000"], b"").await;
    assert_eq!(status, 403);
    let (status, _) =
        api.raw("OPTIONS /api/v0/id HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://evil.example", b"").await;
    assert_eq!(status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_checked_on_loopback_too() {
    let api = ApiServer::start(|c| {
        c.api.authorizations.insert(
            "reader".into(),
            Authorization { auth_secret: "bearer:readtok".into(), allowed_paths: vec!["/api/v0/id".into()] },
        );
        c.api.authorizations.insert(
            "admin".into(),
            Authorization { auth_secret: "basic:admin:pw".into(), allowed_paths: vec!["/api/v0".into()] },
        );
    })
    .await;
    let basic = format!("Authorization: Basic {}", data_encoding::BASE64.encode(b"admin:pw"));
    assert_eq!(api.post("/api/v0/id", &[], b"").await.0, 403);
    assert_eq!(api.post("/api/v0/id", &["Authorization: Bearer nope"], b"").await.0, 403);
    assert_eq!(api.post("/api/v0/id", &["Authorization: Bearer readtok"], b"").await.0, 200);
    assert_eq!(api.post("/api/v0/version", &["Authorization: Bearer readtok"], b"").await.0, 403);
    assert_eq!(api.post("/api/v0/version", &[&basic], b"").await.0, 200);
    let (status, text) = api.post("/api/v0/repo/stat", &[&basic], b"").await;
    assert_eq!(status, 200, "{text}");
}

/// `config/show` gives the config (IPFS Cluster reads `Datastore.StorageMax` there) without
/// the secrets in it: the API's own credentials and the Pinning Service API's tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_show_keeps_the_secrets() {
    let api = ApiServer::start(|c| {
        c.api.authorizations.insert(
            "admin".into(),
            Authorization { auth_secret: "bearer:admintok".into(), allowed_paths: vec!["/api/v0".into()] },
        );
        c.pinning_service.tokens.insert("alice".into(), "alicetok".into());
        c.origins.gateways = vec!["http://user:gatewaypw@127.0.0.1:1".into()];
        // Carried over from a Kubo config: Cairn does not use it, but keeps and shows it.
        c.extra.insert(
            "Pinning".into(),
            serde_json::json!({"RemoteServices": {"svc": {"API": {"Endpoint": "http://127.0.0.1:2", "Key": "remotekey"}}}}),
        );
    })
    .await;
    let (status, text) = api.post("/api/v0/config/show", &["Authorization: Bearer admintok"], b"").await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("\"StorageMax\":\"10GB\""), "{text}");
    assert!(text.contains("\"alice\":\"<redacted>\""), "{text}");
    for secret in ["admintok", "alicetok", "gatewaypw", "remotekey"] {
        assert!(!text.contains(secret), "{secret} is shown: {text}");
    }
    assert!(text.contains("http://<redacted>@127.0.0.1:1") && text.contains("http://127.0.0.1:2"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_bodies_are_bounded_by_config() {
    let api = ApiServer::start(|c| {
        c.api.max_upload_bytes = "64KiB".into();
        c.api.max_upload_entries = 3;
    })
    .await;
    let big = vec![7u8; 100 << 10];
    // Declared too large: refused before the body is read.
    let (status, text) = api.add("", &[("big", "application/octet-stream", &big)]).await;
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("API.MaxUploadBytes"), "{text}");
    // Chunked, with no length declared: cut off by the stream limit as it passes.
    let body = multipart(&[("big", "application/octet-stream", &big)]);
    let mut s = TcpStream::connect(api.addr).await.unwrap();
    let head = "POST /api/v0/add HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
                Content-Type: multipart/form-data; boundary=XX\r\nTransfer-Encoding: chunked\r\n\r\n";
    s.write_all(head.as_bytes()).await.unwrap();
    for piece in body.chunks(8 << 10) {
        let _ = s.write_all(format!("{:x}\r\n", piece.len()).as_bytes()).await;
        let _ = s.write_all(piece).await;
        let _ = s.write_all(b"\r\n").await;
    }
    let _ = s.write_all(b"0\r\n\r\n").await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut out)).await.unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("API.MaxUploadBytes"), "{text}");
    assert!(api.node.pins().unwrap().is_empty());
    // Parts beyond the count, for add and for block/put.
    let four: Vec<(String, &str, &[u8])> =
        (0..4).map(|i| (format!("f{i}"), "application/octet-stream", &b"x"[..])).collect();
    let four: Vec<(&str, &str, &[u8])> = four.iter().map(|(n, k, d)| (n.as_str(), *k, *d)).collect();
    let (status, text) = api.add("", &four).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("API.MaxUploadEntries"), "{text}");
    let body = multipart(&four);
    let (status, text) =
        api.post("/api/v0/block/put", &["Content-Type: multipart/form-data; boundary=XX"], &body).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("API.MaxUploadEntries"), "{text}");
    // Within both limits, everything works.
    let (status, text) = api.add("", &four[..3]).await;
    assert_eq!(status, 200, "{text}");
}

/// `ls` of a directory of 100,001 entries: without `stream=true` the answer would hold them
/// all, so it is refused with a 400 that says to stream; with it, one line an entry comes out
/// as each is read, every entry once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ls_streams_and_caps_what_it_holds() {
    use cairn_node::merkle::importer::{build_directory, DirEntry, ImportOptions};

    let api = ApiServer::start(|_| {}).await;
    let leaf = api.node.block_put(bytes::Bytes::from_static(b"one leaf"), 0x55, Default::default()).unwrap();
    let n = cairn_gateway::api::MAX_LS_ENTRIES + 1;
    let entries =
        (0..n).map(|i| DirEntry { name: format!("e{i:06}"), cid: leaf, tsize: 8, size: 8 }).collect::<Vec<_>>();
    let mut blocks = Vec::new();
    let mut sink = |b: cairn_node::merkle::Block| {
        blocks.push(b);
        Ok(())
    };
    let dir = build_directory(entries, &ImportOptions::default(), &mut sink).unwrap().cid;
    cairn_node::store::BlockStore::put_many(api.node.repo().store(), &blocks).unwrap();

    let (status, text) = api.post(&format!("/api/v0/ls?arg={dir}"), &[], b"").await;
    assert_eq!(status, 400, "{}", &text[..text.len().min(300)]);
    assert!(text.contains("stream=true"), "{text}");

    let (status, text) = api.post(&format!("/api/v0/ls?arg={dir}&stream=true"), &[], b"").await;
    assert_eq!(status, 200, "{}", &text[..text.len().min(300)]);
    let body = &text[text.find("\r\n\r\n").unwrap() + 4..];
    let names: std::collections::BTreeSet<String> = body
        .lines()
        // (Lines between the JSON ones are the chunked encoding's sizes.)
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["Objects"][0]["Links"][0]["Name"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(names.len(), n, "entries streamed, each once");
}

/// `repo/gc` streams Kubo's lines, one `{"Key": {"/": cid}}` a block removed (named by its
/// multihash, as raw CIDv1s), what IPFS Cluster's connector reads; `summary=true` gives
/// Cairn's CLI its line of counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repo_gc_streams_a_line_a_removed_block() {
    let api = ApiServer::start(|_| {}).await;
    let opts = cairn_node::add::AddOptions::default();
    let kept = api.node.add_reader(&b"kept"[..], &opts, true).unwrap().cid;
    let data = crate::pseudo_random(600_000, 9);
    let gone = api.node.add_reader(&data[..], &opts, false).unwrap().cid;
    let (status, text) = api.post("/api/v0/repo/gc", &[], b"").await;
    assert_eq!(status, 200, "{text}");
    let body = &text[text.find("\r\n\r\n").unwrap() + 4..];
    let keys: Vec<String> = body
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["Key"]["/"].as_str().unwrap().to_owned())
        .collect();
    // The file's root and its three leaves; the root named by its multihash.
    assert_eq!(keys.len(), 4, "{body}");
    let root_raw = cairn_node::merkle::Cid::new_v1(0x55, *gone.hash()).to_string();
    assert!(keys.contains(&root_raw), "{keys:?}");
    assert!(!keys.contains(&cairn_node::merkle::Cid::new_v1(0x55, *kept.hash()).to_string()));
    let (status, text) = api.post("/api/v0/repo/gc?summary=true", &[], b"").await;
    assert_eq!(status, 200);
    assert!(text.contains("\"RemovedBlocks\":0"), "{text}");
}
