//! The path gateway's other forms and headers, case by case from the gateway specs, on the
//! gateway-conformance fixtures: tar archives (`?format=tar`), names for downloads,
//! `Cache-Control: only-if-cached`, and CORS.

use std::collections::BTreeMap;
use std::io::Read;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::{fixture, Gateway};

/// `./rootDir` of `path_gateway_tar/fixtures.car` (its README).
const TAR_DIR: &str = "bafybeig6ka5mlwkl4subqhaiatalkcleo4jgnr3hqwvpmsqfca27cijp3i";

/// A tar archive's entries: path to (type, content).
fn entries(tar: &[u8]) -> BTreeMap<String, (tar::EntryType, Vec<u8>)> {
    let mut out = BTreeMap::new();
    for e in tar::Archive::new(tar).entries().expect("a tar") {
        let mut e = e.expect("an entry");
        let path = e.path().unwrap().to_string_lossy().trim_end_matches('/').to_owned();
        let kind = e.header().entry_type();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        out.insert(path, (kind, data));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tree_comes_as_a_tar_by_format_or_accept() {
    let gw = Gateway::start().await;
    assert_eq!(gw.import(&fixture("path_gateway_tar/fixtures.car")).to_string(), TAR_DIR);

    let r = gw.get(&format!("/ipfs/{TAR_DIR}?format=tar")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("content-type"), "application/x-tar");
    assert_eq!(r.header("content-disposition"), format!("attachment; filename=\"{TAR_DIR}.tar\""));
    assert_eq!(r.header("etag"), format!("W/\"{TAR_DIR}.x-tar\""));
    assert_eq!(r.header("x-content-type-options"), "nosniff");
    assert_eq!(r.header("x-ipfs-roots"), TAR_DIR);
    let tree = entries(&r.body);
    let file = |p: &str| tree.get(&format!("{TAR_DIR}/{p}")).unwrap_or_else(|| panic!("{p} missing: {tree:?}"));
    assert_eq!(tree[TAR_DIR].0, tar::EntryType::Directory, "the top entry is the directory, named by its CID");
    assert_eq!(file("ą/ę").0, tar::EntryType::Directory);
    assert_eq!(file("ą/ę/file-źł.txt").1, b"I am a txt file on path with utf8\n");
    assert_eq!(file("ipfs/file.txt").1, b"I am a txt file in confusing /ipfs dir\n");
    assert_eq!(file("api/file.txt").1, b"I am a txt file in confusing /api dir\n");
    assert_eq!(tree.len(), 10, "{:?}", tree.keys());

    // Accept asks for the same archive; the URL's format wins over it.
    let by_accept = gw.request("GET", &format!("/ipfs/{TAR_DIR}"), &[("accept", "application/x-tar")]).await;
    assert_eq!(by_accept.status, StatusCode::OK);
    assert_eq!(by_accept.body, r.body, "the archive is the same however it is asked for");
    let raw = gw.request("GET", &format!("/ipfs/{TAR_DIR}?format=raw"), &[("accept", "application/x-tar")]).await;
    assert_eq!(raw.header("content-type"), "application/vnd.ipld.raw");

    // ?filename= names the download; HEAD has the headers and no body; the ETag gets a 304.
    let named = gw.request("HEAD", &format!("/ipfs/{TAR_DIR}?format=tar&filename=site.tar"), &[]).await;
    assert_eq!(named.status, StatusCode::OK);
    assert!(named.body.is_empty());
    assert_eq!(named.header("content-disposition"), "attachment; filename=\"site.tar\"; filename*=UTF-8''site.tar");
    let etag = r.header("etag");
    let again = gw.request("GET", &format!("/ipfs/{TAR_DIR}?format=tar"), &[("if-none-match", etag)]).await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);

    // A file alone is an archive of one entry, named by its CID.
    let r = gw.get(&format!("/ipfs/{TAR_DIR}/%C4%85/%C4%99/file-%C5%BA%C5%82.txt?format=tar")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let file_cid = "bafkreialihlqnf5uwo4byh4n3cmwlntwqzxxs2fg5vanqdi3d7tb2l5xkm";
    assert_eq!(r.header("content-disposition"), format!("attachment; filename=\"{file_cid}.tar\""));
    let one = entries(&r.body);
    assert_eq!(one.len(), 1, "{one:?}");
    assert_eq!(one[file_cid], (tar::EntryType::Regular, b"I am a txt file on path with utf8\n".to_vec()));

    // A missing path is a 404 before any archive starts.
    assert_eq!(gw.get(&format!("/ipfs/{TAR_DIR}/nothing?format=tar")).await.status, StatusCode::NOT_FOUND);
}

/// The body of a GET, or the error that cut it.
async fn body_or_cut(gw: &Gateway, path: &str) -> (StatusCode, Result<Bytes, String>) {
    body_or_cut_with(gw, path, &[]).await
}

/// [`body_or_cut`] with these request headers.
async fn body_or_cut_with(gw: &Gateway, path: &str, headers: &[(&str, &str)]) -> (StatusCode, Result<Bytes, String>) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut req = Request::get(format!("http://{}{path}", gw.addr));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::default()).unwrap();
    let resp = client.request(req).await.unwrap();
    let status = resp.status();
    (status, resp.into_body().collect().await.map(|b| b.to_bytes()).map_err(|e| format!("{e:?}")))
}

/// A DAG may name an entry `../foo`: written into a tar, that entry would land outside the
/// directory it is unpacked in. Such an archive is cut off with an error instead, so that
/// the client sees a failed transfer, not a short archive. Cairn refuses every name that is
/// not one safe path component, even `../file` under two directories, which would stay
/// inside (`inside-root.car`): a name with `/` in it is not a UnixFS name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tar_whose_names_climb_out_is_cut_off() {
    let gw = Gateway::start().await;
    for car in ["outside-root.car", "inside-root.car"] {
        let root = gw.import(&fixture(&format!("path_gateway_tar/{car}")));
        let (status, body) = body_or_cut(&gw, &format!("/ipfs/{root}?format=tar")).await;
        assert_eq!(status, StatusCode::OK);
        let Err(e) = body else { panic!("{car}: the archive was sent whole") };
        assert!(!e.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_and_car_downloads_take_the_filename_asked_for() {
    let gw = Gateway::start().await;
    let root = gw.import(&fixture("gateway-raw-block.car"));
    let r = gw.get(&format!("/ipfs/{root}/dir/ascii.txt?format=raw&filename=foobar.bin")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-disposition"), "attachment; filename=\"foobar.bin\"; filename*=UTF-8''foobar.bin");
    let r = gw.get(&format!("/ipfs/{root}?format=car&filename=%22quoted%22.car")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.header("content-disposition"),
        "attachment; filename=\"_quoted_.car\"; filename*=UTF-8''%22quoted%22.car",
        "a quote in the name cannot end the header's parameter"
    );
}

/// `Cache-Control: only-if-cached`: a client that must not make the node fetch learns
/// whether it holds the content (200) or not (412), in every format.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_if_cached_answers_without_fetching() {
    let gw = Gateway::start().await;
    let root = gw.import(&fixture("gateway-cache/fixtures.car"));
    let absent = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy";
    for method in ["GET", "HEAD"] {
        for query in ["", "?format=raw", "?format=car"] {
            let held = gw
                .request(
                    method,
                    &format!("/ipfs/{root}/root2/root3/root4/{query}"),
                    &[("cache-control", "no-transform, only-if-cached")],
                )
                .await;
            assert_eq!(held.status, StatusCode::OK, "{method} {query}: {}", held.text());
            let missing =
                gw.request(method, &format!("/ipfs/{absent}{query}"), &[("cache-control", "only-if-cached")]).await;
            assert_eq!(missing.status, StatusCode::PRECONDITION_FAILED, "{method} {query}");
        }
    }
}

/// Any page may read public content from the gateway (the path gateway spec's CORS); the
/// RPC API, on its own port, is another matter (`api_guard.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_is_readable_cross_origin() {
    let gw = Gateway::start().await;
    let root = gw.import(&fixture("gateway-raw-block.car"));
    let check = |r: &crate::Reply, what: &str| {
        assert_eq!(r.header("access-control-allow-origin"), "*", "{what}");
        assert_eq!(r.header("access-control-allow-methods"), "GET, HEAD, OPTIONS", "{what}");
        assert_eq!(r.header("access-control-allow-headers"), "Content-Type, Range, User-Agent, X-Requested-With");
        for exposed in ["Content-Range", "Content-Length", "X-Ipfs-Path", "X-Ipfs-Roots"] {
            assert!(r.header("access-control-expose-headers").contains(exposed), "{what}: {exposed}");
        }
    };
    let origin = [("origin", "https://app.example")];
    let r = gw.request("GET", &format!("/ipfs/{root}/dir/ascii.txt"), &origin).await;
    assert_eq!(r.status, StatusCode::OK);
    check(&r, "GET");
    let r = gw.request("GET", &format!("/ipfs/{root}/dir/ascii.txt?format=car"), &origin).await;
    check(&r, "GET of a CAR");
    let preflight = gw
        .request(
            "OPTIONS",
            &format!("/ipfs/{root}/dir/ascii.txt"),
            &[
                ("origin", "https://app.example"),
                ("access-control-request-method", "GET"),
                ("access-control-request-headers", "Range"),
            ],
        )
        .await;
    assert_eq!(preflight.status, StatusCode::OK);
    check(&preflight, "OPTIONS");
    let r = gw.get("/ipfs/bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy").await;
    check(&r, "an error");
}

/// Blocks of the four codecs the path gateway serves as they are, linked so that paths go
/// through them: a DAG-CBOR root whose `doc` field links a DAG-JSON block, whose `file`
/// field links a UnixFS file.
struct Dag {
    cbor: cairn_node::merkle::Cid,
    json: cairn_node::merkle::Cid,
    file: cairn_node::merkle::Cid,
    cbor_bytes: Vec<u8>,
    json_bytes: Vec<u8>,
}

fn codec_dag(gw: &Gateway) -> Dag {
    use cairn_node::merkle::hash::{CidFormat, DAG_CBOR, DAG_JSON};
    use ipld_core::ipld::Ipld;
    let v1 = cairn_node::add::AddOptions {
        import: cairn_node::merkle::importer::ImportOptions::cid_v1(),
        ..Default::default()
    };
    let file = gw.add_bytes(br#"{"a": "JSON document kept as a file"}"#, &v1);
    let json_bytes = format!(r#"{{"file":{{"/":"{file}"}},"greeting":"hello <b>","n":1}}"#).into_bytes();
    let json = gw.node.block_put(json_bytes.clone().into(), DAG_JSON, CidFormat::default()).unwrap();
    let mut inner = BTreeMap::new();
    inner.insert("doc".to_owned(), Ipld::Link(json));
    inner.insert("n".to_owned(), Ipld::Integer(3));
    let mut top = BTreeMap::new();
    top.insert("inner".to_owned(), Ipld::Map(inner));
    top.insert("list".to_owned(), Ipld::List(vec![Ipld::Link(file)]));
    let cbor_bytes = serde_ipld_dagcbor::to_vec(&Ipld::Map(top)).unwrap();
    let cbor = gw.node.block_put(cbor_bytes.clone().into(), DAG_CBOR, CidFormat::default()).unwrap();
    Dag { cbor, json, file, cbor_bytes, json_bytes }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dag_json_and_dag_cbor_blocks_come_as_they_are() {
    let gw = Gateway::start().await;
    let d = codec_dag(&gw);

    // Asked for by format, by Accept, or not at all: the block, with its codec's type.
    for (path, accept) in [
        (format!("/ipfs/{}?format=dag-cbor", d.cbor), ""),
        (format!("/ipfs/{}", d.cbor), "application/vnd.ipld.dag-cbor"),
        (format!("/ipfs/{}", d.cbor), ""),
    ] {
        let r = gw.request("GET", &path, &[("accept", accept)]).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text());
        assert_eq!(r.body, d.cbor_bytes, "{path}");
        assert_eq!(r.header("content-type"), "application/vnd.ipld.dag-cbor");
        assert_eq!(r.header("content-disposition"), format!("attachment; filename=\"{}.cbor\"", d.cbor));
        assert_eq!(r.header("etag"), format!("\"{}.dag-cbor\"", d.cbor));
        assert_eq!(r.header("cache-control"), "public, max-age=29030400, immutable");
        assert_eq!(r.header("content-length"), d.cbor_bytes.len().to_string());
    }
    let r = gw.get(&format!("/ipfs/{}?format=dag-json", d.json)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, d.json_bytes);
    assert_eq!(r.header("content-type"), "application/vnd.ipld.dag-json");
    assert_eq!(r.header("content-disposition"), format!("inline; filename=\"{}.json\"", d.json));
    let named = gw.get(&format!("/ipfs/{}?format=dag-json&filename=doc.json&download=true", d.json)).await;
    assert_eq!(named.header("content-disposition"), "attachment; filename=\"doc.json\"; filename*=UTF-8''doc.json");
    let etag = format!("\"{}.dag-json\"", d.json);
    let again = gw.request("GET", &format!("/ipfs/{}?format=dag-json", d.json), &[("if-none-match", &etag)]).await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
}

/// IPIP-524: a block asked for in another codec's form is a 406, never a conversion; a
/// UnixFS file asked for as JSON is the file (the path gateway spec's exception).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codecs_are_never_converted() {
    let gw = Gateway::start().await;
    let d = codec_dag(&gw);
    let dir = gw.import(&fixture("gateway-raw-block.car"));
    for path in [
        format!("/ipfs/{}?format=dag-json", d.cbor),
        format!("/ipfs/{}?format=json", d.cbor),
        format!("/ipfs/{}?format=dag-cbor", d.json),
        format!("/ipfs/{}?format=cbor", d.json),
        format!("/ipfs/{dir}/?format=dag-json"),
        format!("/ipfs/{dir}/?format=dag-cbor"),
        format!("/ipfs/{}?format=dag-json", d.file),
    ] {
        let r = gw.get(&path).await;
        assert_eq!(r.status, StatusCode::NOT_ACCEPTABLE, "{path}: {}", r.text());
        assert!(r.text().contains("format=raw"), "{path}: the answer says what to ask for instead");
    }
    let r =
        gw.request("GET", &format!("/ipfs/{dir}/dir/ascii.txt"), &[("accept", "application/vnd.ipld.dag-json")]).await;
    assert_eq!(r.status, StatusCode::NOT_ACCEPTABLE);
    for (path, accept) in
        [(format!("/ipfs/{}?format=json", d.file), ""), (format!("/ipfs/{}", d.file), "application/json")]
    {
        let r = gw.request("GET", &path, &[("accept", accept)]).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert_eq!(r.text(), r#"{"a": "JSON document kept as a file"}"#);
        assert_eq!(r.header("content-type"), "application/json");
    }
    // DAG-JSON is JSON and DAG-CBOR is CBOR: asked for as the plain codec, they are served as
    // they are, with the plain codec's type (as Kubo does).
    for (cid, format, body, media) in
        [(d.json, "json", &d.json_bytes, "application/json"), (d.cbor, "cbor", &d.cbor_bytes, "application/cbor")]
    {
        let r = gw.get(&format!("/ipfs/{cid}?format={format}")).await;
        assert_eq!((r.status, r.header("content-type")), (StatusCode::OK, media));
        assert_eq!(&r.body.to_vec(), body);
    }
    // JSON or CBOR asked of UnixFS (many HTTP clients' default Accept): the content as it
    // is, with its own type.
    let axios = [("accept", "application/json, text/plain, */*")];
    let r = gw.request("GET", &format!("/ipfs/{dir}/"), &axios).await;
    assert_eq!((r.status, r.header("content-type")), (StatusCode::OK, "text/html; charset=utf-8"));
    let r = gw.request("GET", &format!("/ipfs/{dir}/dir/ascii.txt"), &[("accept", "application/cbor")]).await;
    assert_eq!((r.status, r.header("content-type")), (StatusCode::OK, "text/plain; charset=utf-8"));
    // Raw works for every codec.
    let r = gw.get(&format!("/ipfs/{}?format=raw", d.cbor)).await;
    assert_eq!((r.status, r.body.to_vec()), (StatusCode::OK, d.cbor_bytes.clone()));
}

/// Paths go through DAG-CBOR and DAG-JSON fields as far as a link, and on in the linked
/// block; a field that is not there is a 404, and a path that ends in (or runs on past) a
/// value that is not a link is a 501, as the path gateway spec says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_go_through_dag_cbor_and_dag_json_links() {
    let gw = Gateway::start().await;
    let d = codec_dag(&gw);
    let r = gw.get(&format!("/ipfs/{}/inner/doc", d.cbor)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.body, d.json_bytes);
    assert_eq!(r.header("content-type"), "application/vnd.ipld.dag-json");
    assert_eq!(r.header("x-ipfs-roots"), format!("{},{},{}", d.cbor, d.cbor, d.json));
    // Through two links into a UnixFS file, which is served as a file (JSON, by its content).
    let r = gw.get(&format!("/ipfs/{}/inner/doc/file", d.cbor)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.text(), r#"{"a": "JSON document kept as a file"}"#);
    assert_eq!(r.header("content-type"), "application/json");
    let r = gw.get(&format!("/ipfs/{}/list/0?format=raw", d.cbor)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("x-ipfs-roots"), format!("{},{},{}", d.cbor, d.cbor, d.file));

    for missing in ["inner/nope", "nope", "list/1", "inner/doc/nope"] {
        let r = gw.get(&format!("/ipfs/{}/{missing}", d.cbor)).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{missing}: {}", r.text());
    }
    for value in ["inner", "inner/n", "inner/n/more", "inner/doc/greeting", "inner/doc/n/x"] {
        for query in ["", "?format=raw", "?format=car"] {
            let r = gw.get(&format!("/ipfs/{}/{value}{query}", d.cbor)).await;
            assert_eq!(r.status, StatusCode::NOT_IMPLEMENTED, "{value}{query}: {}", r.text());
        }
    }

    // A CAR of a path through them holds the blocks on the way, then the terminal's DAG.
    let r = gw.get(&format!("/ipfs/{}/inner/doc/file?format=car", d.cbor)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let (roots, blocks) = crate::car_blocks(&r.body);
    assert_eq!(roots, vec![d.file], "the CAR's root is the path's terminal");
    assert_eq!(blocks, vec![d.cbor, d.json, d.file]);
}

/// A browser (`Accept: text/html`) gets a page about a DAG-JSON or DAG-CBOR block rather
/// than its bytes; whatever the block holds is escaped on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_get_a_page_about_a_block() {
    let gw = Gateway::start().await;
    let d = codec_dag(&gw);
    let html = [("accept", "text/html,application/xhtml+xml,*/*;q=0.8")];
    // The page is at the path with a trailing `/`, as listings are.
    let r = gw.request("GET", &format!("/ipfs/{}?a=b", d.json), &html).await;
    assert_eq!(r.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(r.header("location"), format!("/ipfs/{}/?a=b", d.json));
    let r = gw.request("GET", &format!("/ipfs/{}/", d.json), &html).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), "text/html; charset=utf-8");
    let page = r.text();
    assert!(page.contains(&d.json.to_string()) && page.contains(&d.file.to_string()), "{page}");
    assert!(page.contains("hello &lt;b&gt;") && !page.contains("hello <b>"), "{page}");
    assert!(page.contains("?format=dag-json"), "{page}");
    assert_ne!(r.header("etag"), format!("\"{}.dag-json\"", d.json), "the page is not the block");
    let r = gw.request("GET", &format!("/ipfs/{}/", d.cbor), &html).await;
    assert!(r.text().contains(&d.json.to_string()), "the page lists the links");
    // download=true wants the block.
    let r = gw.request("GET", &format!("/ipfs/{}?download=true", d.cbor), &html).await;
    assert_eq!(r.body, d.cbor_bytes);
    // An explicit format wins over the browser's Accept.
    let r = gw.request("GET", &format!("/ipfs/{}?format=dag-cbor", d.cbor), &html).await;
    assert_eq!(r.body, d.cbor_bytes);
}

/// `Gateway.PublicGateways`: each host serves the namespaces it names, from subdomains when
/// it says so, and deserialized forms only when it allows them; hosts it does not name (an
/// IP address) get the plain path gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_gateways_serve_what_their_config_says() {
    use cairn_gateway::{GatewayConfig, PublicGateway};
    let host = |host: &str, paths: &[&str], use_subdomains, deserialized_responses| PublicGateway {
        host: host.into(),
        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
        use_subdomains,
        deserialized_responses,
    };
    let gw = Gateway::start_with(GatewayConfig {
        public_gateways: vec![
            host("example.com", &["/ipfs"], true, false),
            host("paths.example", &["/ipfs", "/ipns"], false, true),
            host("none.example", &[], false, true),
        ],
        ..GatewayConfig::default()
    })
    .await;
    let root = gw.import(&fixture("gateway-raw-block.car"));
    let file = format!("/ipfs/{root}/dir/ascii.txt");
    let get = |path: String, host: &'static str| {
        let gw = &gw;
        async move { gw.request("GET", &path, &[("host", host)]).await }
    };

    // Subdomains on example.com, and only verifiable forms there.
    let r = get(file.clone(), "example.com").await;
    assert_eq!(r.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(r.header("location"), format!("http://{root}.ipfs.example.com/dir/ascii.txt"));
    let sub: &'static str = Box::leak(format!("{root}.ipfs.example.com").into_boxed_str());
    let r = get("/dir/ascii.txt".into(), sub).await;
    assert_eq!(r.status, StatusCode::NOT_ACCEPTABLE, "{}", r.text());
    assert!(r.text().contains("format=raw"));
    let r = get("/dir/ascii.txt?format=raw".into(), sub).await;
    assert_eq!((r.status, r.text().as_str()), (StatusCode::OK, "hello application/vnd.ipld.raw\n"));
    let r = get("/dir/ascii.txt?format=tar".into(), sub).await;
    assert_eq!(r.status, StatusCode::NOT_ACCEPTABLE);
    // A path gateway on paths.example; nothing on none.example.
    let r = get(file.clone(), "paths.example").await;
    assert_eq!((r.status, r.text().as_str()), (StatusCode::OK, "hello application/vnd.ipld.raw\n"));
    let r = get(file.clone(), "none.example:8080").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text());
    assert!(r.text().contains("none.example does not serve /ipfs"), "{}", r.text());
    // localhost is not in the list any more: no redirect. An IP address: the path gateway.
    for plain in ["localhost", "127.0.0.1"] {
        let r = get(file.clone(), plain).await;
        assert_eq!(r.status, StatusCode::OK, "{plain}");
    }
}

/// `Gateway.DeserializedResponses` off: a trustless gateway, raw blocks and CARs only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trustless_only_gateway_answers_406_to_the_rest() {
    let gw =
        Gateway::start_with(cairn_gateway::GatewayConfig { deserialized_responses: false, ..Default::default() }).await;
    let d = codec_dag(&gw);
    for (path, accept) in [
        (format!("/ipfs/{}", d.file), ""),
        (format!("/ipfs/{}?format=tar", d.file), ""),
        (format!("/ipfs/{}", d.json), ""),
        (format!("/ipfs/{}", d.cbor), "application/vnd.ipld.dag-cbor"),
    ] {
        let r = gw.request("GET", &path, &[("accept", accept)]).await;
        assert_eq!(r.status, StatusCode::NOT_ACCEPTABLE, "{path} {accept}");
    }
    for (path, accept) in [
        (format!("/ipfs/{}?format=raw", d.file), ""),
        (format!("/ipfs/{}", d.cbor), "application/vnd.ipld.raw"),
        (format!("/ipfs/{}/inner/doc?format=car", d.cbor), ""),
    ] {
        let r = gw.request("GET", &path, &[("accept", accept)]).await;
        assert_eq!(r.status, StatusCode::OK, "{path} {accept}: {}", r.text());
    }
}

/// A peer of `gw`'s node that holds a 64 KiB file (in 1 KiB leaves) of which `gw` holds the
/// root block only, and a second file `gw` lacks altogether: the peer's and the gateway's
/// networks (kept running by the caller), the file, and the other file.
async fn a_peer_with_content(
    gw: &Gateway,
) -> (
    cairn_node::net::Network,
    cairn_node::net::Network,
    tempfile::TempDir,
    cairn_node::merkle::Cid,
    cairn_node::merkle::Cid,
) {
    use std::sync::Arc;
    use std::time::Duration;
    let net = crate::online(&gw.node, Duration::from_secs(30)).await;
    let seed_dir = tempfile::tempdir().unwrap();
    let seed =
        Arc::new(cairn_node::Node::init(&seed_dir.path().join("repo"), cairn_node::config::Profile::Test).unwrap());
    let seed_net = crate::online(&seed, Duration::from_secs(30)).await;
    net.connect(seed_net.listen_addrs()[0].clone()).await.unwrap();

    let import = cairn_node::merkle::importer::ImportOptions {
        chunker: cairn_node::merkle::chunker::ChunkerSpec::Size(1024),
        ..Default::default()
    };
    let opts = cairn_node::add::AddOptions { import, ..Default::default() };
    let data = crate::pseudo_random(64 * 1024, 5);
    let remote = seed.add_reader(&data[..], &opts, true).unwrap().cid;
    let root_block = seed.block_get(&remote).unwrap();
    use cairn_node::BlockStore;
    gw.node.repo().store().put_many(&[cairn_node::merkle::block::Block::new_unchecked(remote, root_block)]).unwrap();
    let elsewhere = seed.add_reader(&crate::pseudo_random(1000, 6)[..], &opts, true).unwrap().cid;
    (net, seed_net, seed_dir, remote, elsewhere)
}

/// `Gateway.NoFetch`: a node that could fetch from a peer serves only what it holds, and
/// answers 404 at once for the rest, whether the root or a block under it is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_fetch_serves_only_what_the_repo_holds() {
    use std::time::Duration;
    let gw = Gateway::start_with(cairn_gateway::GatewayConfig { no_fetch: true, ..Default::default() }).await;
    let (_net, _seed_net, _seed_dir, remote, elsewhere) = a_peer_with_content(&gw).await;
    use cairn_node::BlockStore;

    let started = std::time::Instant::now();
    let r = gw.get(&format!("/ipfs/{elsewhere}")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text());
    let r = gw.get(&format!("/ipfs/{elsewhere}?format=raw")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // The file's type is sniffed from its first leaf, which is not here.
    assert_eq!(gw.get(&format!("/ipfs/{remote}")).await.status, StatusCode::NOT_FOUND);
    let (status, body) = body_or_cut(&gw, &format!("/ipfs/{remote}?format=car")).await;
    assert_eq!(status, StatusCode::OK, "the root is here, so the answer starts");
    assert!(body.is_err(), "and is cut off at the first leaf it lacks");
    assert!(started.elapsed() < Duration::from_secs(10), "nothing waited for a fetch");
    assert!(!gw.node.repo().store().has(&elsewhere).unwrap(), "nothing was fetched");
}

/// `only-if-cached` holds for the whole answer, not only its root: a file whose root is here
/// and whose leaves a peer has is not fetched for such a request (404 at once, the CAR cut
/// at the first leaf), while a request without it fetches the leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_if_cached_fetches_nothing_under_the_root() {
    use std::time::Duration;
    let gw = Gateway::start().await;
    let (_net, _seed_net, _seed_dir, remote, _) = a_peer_with_content(&gw).await;
    use cairn_node::BlockStore;
    let cached = [("cache-control", "only-if-cached")];
    let started = std::time::Instant::now();
    let r = gw.request("GET", &format!("/ipfs/{remote}"), &cached).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text());
    let (status, body) = body_or_cut_with(&gw, &format!("/ipfs/{remote}?format=car"), &cached).await;
    assert_eq!(status, StatusCode::OK, "the root is here, so the answer starts");
    assert!(body.is_err(), "and is cut off at the first leaf it lacks");
    assert!(started.elapsed() < Duration::from_secs(10), "nothing waited for a fetch");
    let leaves = cairn_node::merkle::links::links(&remote, &gw.node.block_get(&remote).unwrap()).unwrap();
    assert!(!gw.node.repo().store().has(&leaves[0]).unwrap(), "a leaf was fetched for an only-if-cached request");
    // Without it, the same request fetches what it needs.
    let r = gw.get(&format!("/ipfs/{remote}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body.len(), 64 * 1024);
}

/// A copy of the example site of the web redirects file spec (its pages, and its
/// `_redirects` rules), in `dir`, with `_redirects` replaced when `redirects` says.
fn copy_site(dir: &std::path::Path, redirects: Option<&[u8]>) {
    let site = crate::test_data("redirects-site");
    std::fs::create_dir_all(dir.join("articles")).unwrap();
    for name in
        ["index.html", "one.html", "two.html", "404.html", "410.html", "451.html", "articles/a.html", "_redirects"]
    {
        std::fs::copy(site.join(name), dir.join(name)).unwrap();
    }
    if let Some(r) = redirects {
        std::fs::write(dir.join("_redirects"), r).unwrap();
    }
}

/// On a site's own origin (a subdomain), paths its DAG lacks are answered as its
/// `_redirects` file says; paths it has are served as they are; a bad or oversized file is a
/// 500 that says why; on the path gateway, where sites share an origin, the file is ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sites_redirects_file_answers_paths_it_lacks() {
    let gw = Gateway::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let add = |dir: &std::path::Path| {
        let opts = cairn_node::add::AddOptions {
            import: cairn_node::merkle::importer::ImportOptions::cid_v1(),
            recursive: true,
            ..Default::default()
        };
        gw.node.add(dir, &opts, true, &mut |_| {}).unwrap().cid
    };
    copy_site(&tmp.path().join("site"), None);
    let site = add(&tmp.path().join("site"));
    let port = gw.addr.port();
    let host = format!("{site}.ipfs.localhost:{port}");
    let get = |path: &str| {
        let (gw, host, path) = (&gw, host.clone(), path.to_owned());
        async move { gw.request("GET", &path, &[("host", &host)]).await }
    };
    for (path, status, location) in [
        ("/redirect-one", 301, "/one.html"),
        ("/redirect-one?a=b", 301, "/one.html?a=b"),
        ("/302-redirect-two", 302, "/two.html"),
        ("/posts/2022/06/15/hello", 301, "/articles/2022/06/15/hello"),
        ("/splat/one/two.html", 301, "/redirected-splat/one/two.html"),
    ] {
        let r = get(path).await;
        assert_eq!((r.status.as_u16(), r.header("location")), (status, location), "{path}");
    }
    for (path, status, body) in [
        ("/200-index", 200, "my index"),
        ("/not-found/x", 404, "my 404"),
        ("/gone/x", 410, "gone"),
        ("/unavail/x/y", 451, "unavail"),
        ("/anything/else", 200, "my index"),
        ("/one.html", 200, "one"),
        ("/articles/a.html", 200, "article"),
    ] {
        let r = get(path).await;
        assert_eq!((r.status.as_u16(), r.text().as_str()), (status, body), "{path}");
    }
    // A rewrite's answer is the target's, ETag included, so a cached page gets its 304.
    let etag = get("/index.html").await.header("etag").to_owned();
    let r = gw.request("GET", "/missing-page", &[("host", &host), ("if-none-match", &etag)]).await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    // A page whose block the node does not have is not a page the site left out: a 404, not
    // the catch-all's index (which a cache would then keep as the page).
    copy_site(&tmp.path().join("holed"), None);
    // (Content of its own: the other sites, pinned, hold the same pages.)
    std::fs::write(tmp.path().join("holed/one.html"), "a page of its own").unwrap();
    let opts = cairn_node::add::AddOptions {
        import: cairn_node::merkle::importer::ImportOptions::cid_v1(),
        recursive: true,
        ..Default::default()
    };
    let holed = gw.node.add(&tmp.path().join("holed"), &opts, false, &mut |_| {}).unwrap().cid;
    let one = gw.node.resolve(&format!("{holed}/one.html").parse().unwrap()).unwrap();
    assert!(gw.node.block_rm(&[one]).unwrap()[0].is_ok());
    let r = gw.request("GET", "/one.html", &[("host", &format!("{holed}.ipfs.localhost:{port}"))]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text());
    // The path gateway shares one origin among all sites: no redirects there.
    assert_eq!(gw.get(&format!("/ipfs/{site}/redirect-one")).await.status, StatusCode::NOT_FOUND);

    // A file that does not parse, or is too large, is a 500 saying so, for missing paths only.
    for (name, redirects, why) in
        [("bad", b"/a /b 999\n".to_vec(), "_redirects line 1"), ("large", vec![b'#'; 64 * 1024 + 1], "at most 65536")]
    {
        copy_site(&tmp.path().join(name), Some(&redirects));
        let cid = add(&tmp.path().join(name));
        let host = format!("{cid}.ipfs.localhost:{port}");
        let r = gw.request("GET", "/missing", &[("host", &host)]).await;
        assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{name}");
        assert!(r.text().contains(why), "{name}: {}", r.text());
        assert_eq!(gw.request("GET", "/one.html", &[("host", &host)]).await.status, StatusCode::OK);
    }
}

/// A service worker may not be registered at a namespace root (it would control every root
/// on the path gateway's origin); `/ipfs/?uri=ipfs://...`, from a browser's protocol
/// handler, moves to the path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_workers_and_protocol_handlers() {
    let gw = Gateway::start().await;
    let root = gw.import(&fixture("gateway-raw-block.car"));
    let sw = [("service-worker", "script")];
    let r = gw.request("GET", &format!("/ipfs/{root}"), &sw).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.text().contains("serviceWorker"));
    let r = gw.request("GET", &format!("/ipfs/{root}/dir/ascii.txt"), &sw).await;
    assert_eq!(r.status, StatusCode::OK, "below a root, a worker is scoped to that root's path");
    let r = gw.get(&format!("/ipfs/?uri=ipfs%3A%2F%2F{root}%2Fdir%2Fascii.txt")).await;
    assert_eq!(
        (r.status, r.header("location")),
        (StatusCode::MOVED_PERMANENTLY, format!("/ipfs/{root}/dir/ascii.txt").as_str())
    );
    assert_eq!(gw.get("/ipfs/?uri=https%3A%2F%2Fexample.com").await.status, StatusCode::BAD_REQUEST);
}
