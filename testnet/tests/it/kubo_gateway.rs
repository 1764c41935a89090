//! Cairn's gateway beside Kubo 0.43.1's, on the same blocks: every request below is sent to
//! both, and their statuses, types, bodies (tar archives entry by entry) and the headers
//! that matter must agree. The requests are the path gateway's newer cases (DAG-JSON and
//! DAG-CBOR blocks as they are and pathing through their links, 406 for another codec's form
//! as IPIP-524 says, 501 for a path into a value, tar archives, `only-if-cached`, CORS) and
//! the older ones beside them (ranges, raw blocks, CARs block by block, redirects, errors).
//!
//! Kubo runs offline-only in a loopback-only network namespace; both gateways import the
//! same CARs.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::Duration;

use cairn_merkle::car::CarWriter;
use cairn_merkle::hash::{CidFormat, DAG_CBOR, DAG_JSON};
use cairn_merkle::Cid;
use cairn_node::add::AddOptions;
use cairn_node::config::Profile;
use cairn_node::Node;
use cairn_testnet::kubo_daemon::{KuboDaemon, Routing};
use cairn_testnet::netns;
use cairn_testnet::reference::{self, Reference};
use ipld_core::ipld::Ipld;

/// A gateway's answer.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }

    /// The media type without parameters.
    fn essence(&self) -> &str {
        self.header("content-type").split(';').next().unwrap_or_default().trim()
    }
}

/// `GET path` from the gateway at `base` (`http://host:port`) over HTTP/1.0, so that the
/// body is not chunked.
fn get(base: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
    let addr = base.trim_start_matches("http://").trim_end_matches('/');
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut head = format!("GET {path} HTTP/1.0\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    let mut raw = Vec::new();
    // A response cut off on purpose ends in an error; what came is the answer.
    let _ = s.read_to_end(&mut raw);
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("no end of head");
    let text = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = text.lines();
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|c| c.parse().ok()).unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Answer { status, headers, body: raw[split + 4..].to_vec() }
}

/// A tar archive's entries: path, type and content.
fn tar_entries(tar: &[u8]) -> Result<BTreeMap<String, (u8, Vec<u8>)>, String> {
    let mut out = BTreeMap::new();
    for e in tar::Archive::new(tar).entries().map_err(|e| e.to_string())? {
        let mut e = e.map_err(|e| e.to_string())?;
        let path = e.path().map_err(|e| e.to_string())?.to_string_lossy().trim_end_matches('/').to_owned();
        let kind = e.header().entry_type().as_byte();
        let mut data = Vec::new();
        e.read_to_end(&mut data).map_err(|e| e.to_string())?;
        out.insert(path, (kind, data));
    }
    Ok(out)
}

/// A CAR's roots and its blocks' CIDs, in order.
fn car_blocks(car: &[u8]) -> Result<(Vec<Cid>, Vec<Cid>), String> {
    let mut reader = cairn_merkle::car::CarReader::new(car).map_err(|e| e.to_string())?;
    let roots = reader.roots().to_vec();
    let mut cids = Vec::new();
    while let Some(block) = reader.next_block().map_err(|e| e.to_string())? {
        cids.push(*block.cid());
    }
    Ok((roots, cids))
}

/// Blocks of every codec the requests need, in one CAR: a DAG-CBOR root whose
/// `inner/doc` links a DAG-JSON block, whose `file` links a UnixFS file (a JSON document).
struct Content {
    cbor: Cid,
    json: Cid,
    file: Cid,
    car: Vec<u8>,
}

fn content(node: &Node) -> Content {
    let v1 = AddOptions { import: cairn_merkle::importer::ImportOptions::cid_v1(), ..Default::default() };
    let file = node.add_reader(&br#"{"a": "a JSON document kept as a file"}"#[..], &v1, true).unwrap().cid;
    let json_bytes = format!(r#"{{"file":{{"/":"{file}"}},"greeting":"hello","n":1}}"#).into_bytes();
    let json = CidFormat::default().cid(DAG_JSON, &json_bytes);
    let inner = Ipld::Map(BTreeMap::from([("doc".to_owned(), Ipld::Link(json)), ("n".to_owned(), Ipld::Integer(3))]));
    let top = Ipld::Map(BTreeMap::from([
        ("inner".to_owned(), inner),
        ("list".to_owned(), Ipld::List(vec![Ipld::Link(file)])),
    ]));
    let cbor_bytes = serde_ipld_dagcbor::to_vec(&top).unwrap();
    let cbor = CidFormat::default().cid(DAG_CBOR, &cbor_bytes);
    let mut car = CarWriter::new(Vec::new(), &[cbor]).unwrap();
    car.write_block_once(&cbor, &cbor_bytes).unwrap();
    car.write_block_once(&json, &json_bytes).unwrap();
    car.write_block_once(&file, &node.block_get(&file).unwrap()).unwrap();
    Content { cbor, json, file, car: car.finish().unwrap() }
}

/// Cairn's node and gateway and Kubo 0.43.1's daemon, in a namespace of their own; `None`
/// when the test is to be skipped.
struct Pair {
    node: std::sync::Arc<Node>,
    kubo: KuboDaemon,
    cairn_url: String,
    kubo_url: String,
    _runtime: tokio::runtime::Runtime,
    tmp: tempfile::TempDir,
}

impl Pair {
    fn start(test: &str) -> Option<Pair> {
        if !(reference::require(Reference::Kubo043) && netns::enter_private_netns(test)) {
            return None;
        }
        let tmp = tempfile::tempdir().unwrap();
        let node = std::sync::Arc::new(Node::init(&tmp.path().join("repo"), Profile::Test).unwrap());
        let kubo = KuboDaemon::start(Routing::None).unwrap();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let (addr, _task) = runtime
            .block_on(cairn_gateway::spawn(
                "127.0.0.1:0".parse().unwrap(),
                node.clone(),
                cairn_gateway::GatewayConfig::default(),
                std::future::pending::<()>(),
            ))
            .unwrap();
        let kubo_url = kubo.gateway_url().unwrap();
        Some(Pair { node, kubo, cairn_url: format!("http://{addr}"), kubo_url, _runtime: runtime, tmp })
    }

    /// Imports a CAR into both.
    fn import(&self, car: &std::path::Path) -> Cid {
        let root = self.node.dag_import(&mut std::fs::File::open(car).unwrap(), false, &mut |_| {}).unwrap().0[0];
        let car = car.to_string_lossy();
        self.kubo.ipfs(&["dag", "import", "--pin-roots=false", &car], Duration::from_secs(60)).unwrap();
        root
    }

    /// Adds a directory to Cairn (CIDv1) and gives Kubo its blocks.
    fn add_dir(&self, dir: &std::path::Path) -> Cid {
        let opts = AddOptions {
            import: cairn_merkle::importer::ImportOptions::cid_v1(),
            recursive: true,
            ..Default::default()
        };
        let root = self.node.add(dir, &opts, true, &mut |_| {}).unwrap().cid;
        let car = self.tmp.path().join(format!("{root}.car"));
        std::fs::write(&car, cairn_merkle::car::write_dag(&self.node.source(), &root, Vec::new()).unwrap()).unwrap();
        self.import(&car)
    }
}

/// A website's `_redirects` file, read by both on the site's subdomain: redirects,
/// rewrites, pages served with 404, 410 and 451, placeholders, splats, queries, and files
/// that are bad or too large (500 from both).
#[test]
fn redirects_files_are_read_alike() {
    let Some(p) = Pair::start("kubo_gateway::redirects_files_are_read_alike") else { return };
    let site = reference::testnet_dir().join("../gateway/tests/data/redirects-site");
    let good = p.add_dir(&site);
    let mut roots = vec![(good, "good")];
    for (name, redirects) in [("bad", b"/a /b 999\n".to_vec()), ("large", vec![b'#'; 64 * 1024 + 1])] {
        let dir = p.tmp.path().join(name);
        std::fs::create_dir_all(dir.join("articles")).unwrap();
        for f in ["index.html", "one.html", "articles/a.html"] {
            std::fs::copy(site.join(f), dir.join(f)).unwrap();
        }
        std::fs::write(dir.join("_redirects"), redirects).unwrap();
        roots.push((p.add_dir(&dir), name));
    }
    let paths = [
        "/redirect-one",
        "/redirect-one?a=b",
        "/301-redirect-one",
        "/302-redirect-two",
        "/200-index",
        "/posts/2022/06/15/hello",
        "/posts/2022/06",
        "/splat/one/two.html",
        "/not-found/x",
        "/gone/x",
        "/unavail/x/y",
        "/anything/else",
        "/one.html",
        "/articles/a.html",
    ];
    let mut differences = Vec::new();
    for (root, name) in &roots {
        for path in paths {
            let answer = |base: &str| {
                let port = base.rsplit(':').next().unwrap();
                let host = format!("{root}.ipfs.localhost:{port}");
                get(base, path, &[("host", &host)])
            };
            let (ours, theirs) = (answer(&p.cairn_url), answer(&p.kubo_url));
            let what = format!("{name} site, GET {path}");
            if ours.status != theirs.status {
                differences.push(format!("{what}: status: Cairn {}, Kubo {}", ours.status, theirs.status));
                continue;
            }
            match ours.status {
                301..=308 if ours.header("location") != theirs.header("location") => differences.push(format!(
                    "{what}: location: Cairn {:?}, Kubo {:?}",
                    ours.header("location"),
                    theirs.header("location")
                )),
                200 | 404 | 410 | 451 if ours.body != theirs.body => differences.push(format!(
                    "{what}: body: Cairn {:?}, Kubo {:?}",
                    String::from_utf8_lossy(&ours.body),
                    String::from_utf8_lossy(&theirs.body)
                )),
                _ => {}
            }
        }
    }
    assert!(differences.is_empty(), "{} answers differ:\n{}", differences.len(), differences.join("\n"));
}

#[test]
fn cairn_and_kubo_gateways_answer_alike() {
    let Some(p) = Pair::start("kubo_gateway::cairn_and_kubo_gateways_answer_alike") else { return };
    let c = content(&p.node);
    let codec_car = p.tmp.path().join("codecs.car");
    std::fs::write(&codec_car, &c.car).unwrap();
    p.import(&codec_car);
    let dir = p.import(&reference::testnet_dir().join("fixtures/gateway-conformance/path_gateway_tar/fixtures.car"));
    let twice = p.import(
        &reference::testnet_dir()
            .join("fixtures/gateway-conformance/trustless_gateway_car/dir-with-duplicate-files.car"),
    );
    let (cairn, kubo_url) = (&p.cairn_url, &p.kubo_url);

    let (cbor, json, file) = (c.cbor, c.json, c.file);
    let absent = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy";
    let html = ("accept", "text/html,application/xhtml+xml,*/*;q=0.8");
    let cases: Vec<(String, Vec<(&str, &str)>)> = vec![
        (format!("/ipfs/{cbor}"), vec![]),
        (format!("/ipfs/{cbor}?format=dag-cbor"), vec![]),
        (format!("/ipfs/{cbor}"), vec![("accept", "application/vnd.ipld.dag-cbor")]),
        (format!("/ipfs/{cbor}?format=dag-json"), vec![]),
        (format!("/ipfs/{cbor}?format=json"), vec![]),
        (format!("/ipfs/{cbor}?format=cbor"), vec![]),
        (format!("/ipfs/{json}"), vec![]),
        (format!("/ipfs/{json}?format=dag-json"), vec![]),
        (format!("/ipfs/{json}?format=dag-cbor"), vec![]),
        (format!("/ipfs/{json}"), vec![("accept", "application/json")]),
        (format!("/ipfs/{cbor}/inner/doc"), vec![]),
        (format!("/ipfs/{cbor}/inner/doc/file"), vec![]),
        (format!("/ipfs/{cbor}/list/0?format=raw"), vec![]),
        (format!("/ipfs/{cbor}/inner/n"), vec![]),
        (format!("/ipfs/{cbor}/inner"), vec![]),
        (format!("/ipfs/{cbor}/inner/doc/greeting"), vec![]),
        (format!("/ipfs/{cbor}/nope"), vec![]),
        (format!("/ipfs/{file}?format=json"), vec![]),
        (format!("/ipfs/{file}"), vec![("accept", "application/json")]),
        (format!("/ipfs/{file}?format=dag-json"), vec![]),
        (format!("/ipfs/{dir}/?format=dag-json"), vec![]),
        (format!("/ipfs/{dir}?format=tar"), vec![]),
        (format!("/ipfs/{dir}"), vec![("accept", "application/x-tar")]),
        (format!("/ipfs/{dir}/%C4%85/%C4%99/file-%C5%BA%C5%82.txt?format=tar"), vec![]),
        (format!("/ipfs/{dir}/api/file.txt"), vec![("cache-control", "only-if-cached")]),
        (format!("/ipfs/{absent}"), vec![("cache-control", "only-if-cached")]),
        (format!("/ipfs/{json}"), vec![html]),
        (format!("/ipfs/{json}/"), vec![html]),
        (format!("/ipfs/{cbor}/"), vec![html]),
        (format!("/ipfs/{cbor}?download=true"), vec![html]),
        (format!("/ipfs/{json}?format=json"), vec![]),
        (format!("/ipfs/{dir}/api/file.txt"), vec![("origin", "https://app.example")]),
        (format!("/ipfs/{dir}/api/file.txt"), vec![("range", "bytes=2-5")]),
        (format!("/ipfs/{dir}/api/file.txt?format=raw"), vec![]),
        (format!("/ipfs/{dir}/api/file.txt?format=car&dag-scope=block"), vec![]),
        (format!("/ipfs/{dir}?format=car&dag-scope=entity"), vec![]),
        (format!("/ipfs/{dir}?format=car"), vec![]),
        (format!("/ipfs/{cbor}/inner/doc/file?format=car"), vec![]),
        (format!("/ipfs/{cbor}?format=car&dag-scope=block"), vec![]),
        (format!("/ipfs/{twice}"), vec![("accept", "application/vnd.ipld.car; version=1; order=dfs; dups=y")]),
        (
            format!("/ipfs/{twice}?format=car"),
            vec![("accept", "application/vnd.ipld.car; version=1; order=dfs; dups=y")],
        ),
        (format!("/ipfs/{twice}"), vec![("accept", "application/vnd.ipld.car; dups=n")]),
        (format!("/ipfs/{twice}"), vec![("accept", "application/vnd.ipld.car; order=unk")]),
        (format!("/ipfs/{dir}"), vec![]),
        (format!("/ipfs/{dir}/"), vec![]),
        (format!("/ipfs/{dir}/nothing"), vec![]),
        ("/ipfs/notacid".to_owned(), vec![]),
    ];
    // Where Kubo 0.43.1 departs from the path gateway spec, Cairn follows the spec: Cairn's
    // status and Kubo's are both checked, so that the test says when Kubo comes round.
    let spec_over_kubo = [(
        format!("/ipfs/{cbor}?format=json"),
        (406, 400),
        "a DAG-CBOR block asked for as JSON: the spec says 406 for a codec mismatch",
    )];
    let mut differences = Vec::new();
    for (path, headers) in &cases {
        let (ours, theirs) = (get(cairn, path, headers), get(kubo_url, path, headers));
        let what = format!("GET {path} {headers:?}");
        if let Some((_, statuses, why)) = spec_over_kubo.iter().find(|(p, _, _)| p == path && headers.is_empty()) {
            assert_eq!((ours.status, theirs.status), *statuses, "{what} (Cairn, Kubo): {why}");
            continue;
        }
        let mut differ = |aspect: &str, a: &str, b: &str| {
            if a != b {
                differences.push(format!("{what}: {aspect}: Cairn {a:?}, Kubo {b:?}"));
            }
        };
        differ("status", &ours.status.to_string(), &theirs.status.to_string());
        if ours.status == 301 && theirs.status == 301 {
            differ("location", ours.header("location"), theirs.header("location"));
        }
        if !(ours.status == theirs.status && matches!(ours.status, 200 | 206)) {
            continue;
        }
        differ("content type", ours.essence(), theirs.essence());
        differ("CORS", ours.header("access-control-allow-origin"), theirs.header("access-control-allow-origin"));
        match ours.essence() {
            // Each gateway draws its own page.
            "text/html" => {}
            "application/vnd.ipld.car" => {
                let (a, b) = (car_blocks(&ours.body), car_blocks(&theirs.body));
                differ("CAR roots and blocks", &format!("{a:?}"), &format!("{b:?}"));
                let dups = |a: &Answer| {
                    a.header("content-type")
                        .split(';')
                        .map(str::trim)
                        .find(|p| p.starts_with("dups="))
                        .unwrap_or("")
                        .to_owned()
                };
                differ("CAR dups", &dups(&ours), &dups(&theirs));
            }
            "application/x-tar" => {
                let (a, b) = (tar_entries(&ours.body), tar_entries(&theirs.body));
                differ("tar entries", &format!("{a:?}"), &format!("{b:?}"));
            }
            _ => {
                differ("body", &String::from_utf8_lossy(&ours.body), &String::from_utf8_lossy(&theirs.body));
                let disposition =
                    |a: &Answer| a.header("content-disposition").split(';').next().unwrap_or("").to_owned();
                differ("disposition", &disposition(&ours), &disposition(&theirs));
            }
        }
    }
    assert!(
        differences.is_empty(),
        "{} of {} requests differ:\n{}",
        differences.len(),
        cases.len(),
        differences.join("\n")
    );
}

/// The subdomain gateway on `localhost`, both ways: path requests redirected to the root's
/// own origin (CIDv0 made CIDv1, the query kept), content on it, and the errors.
#[test]
fn subdomains_are_served_alike() {
    let Some(p) = Pair::start("kubo_gateway::subdomains_are_served_alike") else { return };
    let dir = p.import(&reference::testnet_dir().join("fixtures/gateway-conformance/path_gateway_tar/fixtures.car"));
    let v0 = "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn";
    let cases: Vec<(String, &str)> = vec![
        (format!("/ipfs/{dir}/api/file.txt?a=b"), "localhost"),
        (format!("/ipfs/{dir}"), "localhost"),
        (format!("/ipfs/{v0}"), "localhost"),
        ("/api/file.txt".into(), "{dir}.ipfs.localhost"),
        ("/api".into(), "{dir}.ipfs.localhost"),
        ("/nothing".into(), "{dir}.ipfs.localhost"),
        ("/".into(), "notacid.ipfs.localhost"),
        (format!("/ipfs/{dir}/api/file.txt"), "127.0.0.1"),
        (format!("/ipfs/{dir}/api/file.txt"), "{dir}.ipfs.localhost"),
        (format!("/ipfs/?uri=ipfs%3A%2F%2F{dir}%2Fapi"), "localhost"),
        (format!("/ipfs/?uri=ipfs%3A%2F%2F{dir}%2Fapi"), "127.0.0.1"),
        ("/ipfs/?uri=https%3A%2F%2Fexample.com".to_owned(), "127.0.0.1"),
        ("/ipfs/?uri=ipfs%3A%2F%2FQmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn".to_owned(), "127.0.0.1"),
        ("/ipfs/?uri=not%20a%20uri".to_owned(), "127.0.0.1"),
    ];
    let mut differences = Vec::new();
    for (path, host) in &cases {
        let answer = |base: &str| {
            let port = base.rsplit(':').next().unwrap();
            let host = format!("{}:{port}", host.replace("{dir}", &dir.to_string()));
            let location = get(base, path, &[("host", &host)]);
            (location.status, location.header("location").replace(port, "PORT"), location.body)
        };
        let (ours, theirs) = (answer(&p.cairn_url), answer(&p.kubo_url));
        let what = format!("GET {path} on {host}");
        if (ours.0, &ours.1) != (theirs.0, &theirs.1) {
            differences.push(format!("{what}: Cairn {} {:?}, Kubo {} {:?}", ours.0, ours.1, theirs.0, theirs.1));
        } else if ours.0 == 200 && path.ends_with(".txt") && ours.2 != theirs.2 {
            differences.push(format!("{what}: the bodies differ"));
        }
    }
    assert!(differences.is_empty(), "{} answers differ:\n{}", differences.len(), differences.join("\n"));
}
