//! The path and subdomain gateways: files, ranges, caching, directories, errors.

use cairn_node::add::AddOptions;
use cairn_node::merkle::importer::ImportOptions;
use hyper::StatusCode;

use crate::{fixture, pseudo_random, Gateway};

fn v1() -> AddOptions {
    AddOptions { import: ImportOptions::cid_v1(), ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_come_back_with_caching_headers() {
    let gw = Gateway::start().await;
    let data = pseudo_random(3 << 20, 1);
    let cid = gw.add_bytes(&data, &AddOptions::default());

    let r = gw.get(&format!("/ipfs/{cid}")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(r.body == data, "body differs");
    assert_eq!(r.header("etag"), format!("\"{cid}\""));
    assert_eq!(r.header("cache-control"), "public, max-age=29030400, immutable");
    assert_eq!(r.header("content-length"), data.len().to_string());
    assert_eq!(r.header("accept-ranges"), "bytes");
    assert_eq!(r.header("x-ipfs-path"), format!("/ipfs/{cid}"));
    assert_eq!(r.header("x-ipfs-roots"), cid.to_string());
    assert_eq!(r.header("content-type"), "application/octet-stream");

    // HEAD: the same headers, no body.
    let h = gw.request("HEAD", &format!("/ipfs/{cid}"), &[]).await;
    assert_eq!(h.status, StatusCode::OK);
    assert!(h.body.is_empty());
    assert_eq!(h.header("content-length"), data.len().to_string());
    assert_eq!(h.header("etag"), r.header("etag"));

    // A matching If-None-Match (strong, weak, in a list, or *) is a 304 with no body.
    for inm in [format!("\"{cid}\""), format!("W/\"{cid}\""), format!("\"x\", \"{cid}\""), "*".to_owned()] {
        let r = gw.request("GET", &format!("/ipfs/{cid}"), &[("if-none-match", &inm)]).await;
        assert_eq!(r.status, StatusCode::NOT_MODIFIED, "{inm}");
        assert!(r.body.is_empty());
        assert_eq!(r.header("etag"), format!("\"{cid}\""));
    }
    let r = gw.request("GET", &format!("/ipfs/{cid}"), &[("if-none-match", "\"other\"")]).await;
    assert_eq!(r.status, StatusCode::OK);

    // ?filename= names the download; download=true makes it an attachment.
    let r = gw.request("HEAD", &format!("/ipfs/{cid}?filename=testтест.tar&download=true"), &[]).await;
    assert_eq!(
        r.header("content-disposition"),
        "attachment; filename=\"test____.tar\"; filename*=UTF-8''test%D1%82%D0%B5%D1%81%D1%82.tar"
    );
    assert_eq!(r.header("content-type"), "application/x-tar");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_are_served_and_checked() {
    let gw = Gateway::start().await;
    let data = pseudo_random(1_000_000, 2);
    let cid = gw.add_bytes(&data, &AddOptions::default());
    let path = format!("/ipfs/{cid}");
    let range = |h: &'static str| {
        let path = path.clone();
        let gw = &gw;
        async move { gw.request("GET", &path, &[("range", h)]).await }
    };

    let r = range("bytes=300000-599999").await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.header("content-range"), "bytes 300000-599999/1000000");
    assert_eq!(r.header("content-length"), "300000");
    assert!(r.body == data[300_000..600_000]);

    let r = range("bytes=-10").await;
    assert_eq!(r.header("content-range"), "bytes 999990-999999/1000000");
    assert!(r.body == data[999_990..]);

    let r = range("bytes=999999-").await;
    assert!(r.body == data[999_999..]);

    // A few ranges: the first is served.
    let r = range("bytes=6-16,0-4").await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.header("content-range"), "bytes 6-16/1000000");

    for bad in ["bytes=1000000-", "bytes=5-2", "bytes=-0", "bytes=x-1", "bytes=-5-10", "bytes=99999999999999999999999-"]
    {
        let r = range(bad).await;
        assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE, "{bad}: {}", r.text());
        assert_eq!(r.header("content-range"), "bytes */1000000", "{bad}");
    }
    let many: &'static str = Box::leak(format!("bytes={}", "0-1,".repeat(500)).into_boxed_str());
    assert_eq!(range(many).await.status, StatusCode::RANGE_NOT_SATISFIABLE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_reads_only_the_blocks_it_covers() {
    // The fixture's file has three 1024-byte leaves and lacks the middle one.
    let gw = Gateway::start().await;
    let root = gw.import(&fixture("trustless_gateway_car/file-3k-and-3-blocks-missing-block.car"));
    for (range, want) in [("bytes=0-1000", "bytes 0-1000/3072"), ("bytes=2200-2201", "bytes 2200-2201/3072")] {
        let r = gw.request("GET", &format!("/ipfs/{root}"), &[("range", range)]).await;
        assert_eq!(r.status, StatusCode::PARTIAL_CONTENT, "{range}: {}", r.text());
        assert_eq!(r.header("content-range"), want);
    }
    // Asking for the missing middle cuts the transfer: the client never sees a short body
    // that looks whole.
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let sent = client
        .request(
            hyper::Request::get(format!("http://{}/ipfs/{root}", gw.addr))
                .header("range", "bytes=1000-1100")
                .body(Default::default())
                .unwrap(),
        )
        .await;
    use http_body_util::BodyExt;
    // Either the connection drops before the head or the body is cut; never a whole body.
    if let Ok(resp) = sent {
        assert!(resp.into_body().collect().await.is_err(), "a body with a missing block completed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directories_list_redirect_and_serve_index_html() {
    let gw = Gateway::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let site = tmp.path().join("site");
    std::fs::create_dir_all(site.join("sub dir/ünï")).unwrap();
    std::fs::write(site.join("sub dir/a <b>.txt"), b"hello").unwrap();
    std::fs::write(site.join("sub dir/ünï/video.mp4"), pseudo_random(5000, 3)).unwrap();
    std::fs::write(site.join("index.html"), b"<!doctype html><title>home</title>").unwrap();
    let opts = AddOptions { recursive: true, ..v1() };
    let root = gw.node.add(&site, &opts, true, &mut |_| {}).unwrap().cid;

    // A directory without a trailing slash moves to one, query kept.
    let r = gw.get(&format!("/ipfs/{root}/sub%20dir?x=1")).await;
    assert_eq!(r.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(r.header("location"), format!("/ipfs/{root}/sub%20dir/?x=1"));

    // index.html is the page, with the directory's ETag and roots.
    let r = gw.get(&format!("/ipfs/{root}/")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.text(), "<!doctype html><title>home</title>");
    assert_eq!(r.header("content-type"), "text/html; charset=utf-8");
    assert_eq!(r.header("etag"), format!("\"{root}\""));
    assert_eq!(r.header("x-ipfs-roots"), root.to_string());

    // Without index.html: a listing with names (escaped), sizes and CIDs, and a way up.
    let r = gw.get(&format!("/ipfs/{root}/sub%20dir/")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("content-type"), "text/html; charset=utf-8");
    let sub = gw.node.resolve(&format!("{root}/sub dir").parse().unwrap()).unwrap();
    assert!(r.header("etag").starts_with("\"DirIndex-") && r.header("etag").ends_with(&format!("_CID-{sub}\"")));
    assert!(!r.header("cache-control").contains("immutable"));
    assert_eq!(r.header("x-ipfs-roots"), format!("{root},{sub}"));
    let page = r.text();
    assert!(page.contains("<a href=\"./a%20%3Cb%3E.txt\">a &lt;b&gt;.txt</a>"), "{page}");
    assert!(page.contains("<a href=\"./%C3%BCn%C3%AF\">ünï</a>"), "{page}");
    assert!(page.contains("<a href=\"../\">..</a>"), "{page}");
    let file = gw.node.resolve(&format!("{root}/sub dir/a <b>.txt").parse().unwrap()).unwrap();
    assert!(page.contains(&file.to_string()), "{page}");

    // Files by path, with a type from the name.
    let r = gw.get(&format!("/ipfs/{root}/sub%20dir/%C3%BCn%C3%AF/video.mp4")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), "video/mp4");
    assert_eq!(r.body.len(), 5000);
    assert_eq!(r.header("x-ipfs-path"), format!("/ipfs/{root}/sub%20dir/%C3%BCn%C3%AF/video.mp4"));
    assert_eq!(r.header("x-ipfs-roots").split(',').count(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_sharded_directory_lists_as_a_stream() {
    use cairn_node::merkle::car::CarWriter;
    use cairn_node::merkle::importer::import_file;
    use cairn_node::merkle::importer::{build_directory, DirEntry};

    const ENTRIES: usize = 100_000;
    let gw = Gateway::start().await;
    // 100k entries, built in memory and imported as a CAR.
    let opts = ImportOptions::cid_v1();
    let mut blocks = Vec::new();
    let mut sink = |b| {
        blocks.push(b);
        Ok(())
    };
    let file = import_file(&b"same bytes in every file"[..], &opts, &mut sink).unwrap();
    let entries = (0..ENTRIES).map(|i| DirEntry::new(format!("entry-{i:06}.txt"), &file)).collect();
    let dir = build_directory(entries, &opts, &mut sink).unwrap();
    let mut car = CarWriter::new(Vec::new(), &[dir.cid]).unwrap();
    for b in &blocks {
        car.write_block_once(b.cid(), b.data()).unwrap();
    }
    let car = car.finish().unwrap();
    gw.node.dag_import(&mut &car[..], true, &mut |_| {}).unwrap();

    let r = gw.get(&format!("/ipfs/{}/", dir.cid)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.header("content-length").is_empty(), "a listing must stream, not be buffered whole");
    let page = r.text();
    assert_eq!(page.matches("<tr><td><a href=\"./entry-").count(), ENTRIES);
    assert!(page.contains("entry-099999.txt") && page.contains(&format!("{ENTRIES} entries")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_have_the_right_status() {
    let gw = Gateway::start().await;
    let cid = gw.add_bytes(b"present", &v1());
    let absent = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy";
    let cases: &[(&str, &str, StatusCode)] = &[
        ("GET", "/ipfs/notacid", StatusCode::BAD_REQUEST),
        ("GET", "/ipfs/QmInvalidCID", StatusCode::BAD_REQUEST),
        ("GET", "/ipfs/", StatusCode::BAD_REQUEST),
        ("GET", "/ipfs", StatusCode::BAD_REQUEST),
        ("GET", &format!("/ipfs/{absent}"), StatusCode::NOT_FOUND),
        ("GET", &format!("/ipfs/{cid}/no/such/path"), StatusCode::NOT_FOUND),
        ("GET", "/ipns/example.com", StatusCode::NOT_IMPLEMENTED),
        ("GET", "/api/v0/add", StatusCode::NOT_FOUND),
        ("POST", "/api/v0/add", StatusCode::METHOD_NOT_ALLOWED),
        ("PUT", &format!("/ipfs/{cid}"), StatusCode::METHOD_NOT_ALLOWED),
        ("GET", "/", StatusCode::NOT_FOUND),
        ("GET", &format!("/ipfs/{cid}?format=zip"), StatusCode::BAD_REQUEST),
    ];
    for (method, path, want) in cases {
        let r = gw.request(method, path, &[]).await;
        assert_eq!(r.status, *want, "{method} {path}: {}", r.text());
        if *method != "HEAD" {
            assert!(!r.body.is_empty() && r.body.len() < 1024, "{method} {path}: body {:?}", r.text());
        }
    }
    let r = gw.get("/ipfs/QmInvalidCID").await;
    assert!(r.text().contains("QmInvalidCID"), "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subdomains_give_each_root_its_origin() {
    let gw = Gateway::start().await;
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("d")).unwrap();
    std::fs::write(tmp.path().join("d/hello.txt"), b"hello subdomain").unwrap();
    let opts = AddOptions { recursive: true, ..Default::default() };
    let v0 = gw.node.add(&tmp.path().join("d"), &opts, true, &mut |_| {}).unwrap().cid;
    assert_eq!(v0.version(), cid::Version::V0);
    let label = cid::Cid::new_v1(v0.codec(), *v0.hash()).to_string();
    let port = gw.addr.port();

    // A path request on localhost moves to the root's subdomain, as CIDv1 base32.
    let host = format!("localhost:{port}");
    let r = gw.request("GET", &format!("/ipfs/{v0}/hello.txt?a=b"), &[("host", &host)]).await;
    assert_eq!(r.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(r.header("location"), format!("http://{label}.ipfs.localhost:{port}/hello.txt?a=b"));
    let r = gw.request("GET", &format!("/ipfs/{v0}"), &[("host", &host), ("x-forwarded-proto", "https")]).await;
    assert_eq!(r.header("location"), format!("https://{label}.ipfs.localhost:{port}/"));

    // The subdomain serves the content at its own root.
    let sub = format!("{label}.ipfs.localhost:{port}");
    let r = gw.request("GET", "/hello.txt", &[("host", &sub)]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.text(), "hello subdomain");
    let r = gw.request("GET", "/", &[("host", &sub)]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text().contains("<a href=\"./hello.txt\">hello.txt</a>"), "{}", r.text());
    assert!(!r.text().contains("<a href=\"../\">"), "the root has no parent row");
    let r = gw.request("GET", "/sub", &[("host", &sub)]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // /ipfs/ is not mounted on a subdomain: it is a path inside the root.
    let r = gw.request("GET", &format!("/ipfs/{label}"), &[("host", &sub)]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // IP hosts are plain path gateways.
    let r = gw.get(&format!("/ipfs/{v0}/hello.txt")).await;
    assert_eq!(r.status, StatusCode::OK);

    // A CID too long for a DNS label (sha2-512) cannot move to a subdomain.
    let long = cid::Cid::new_v1(0x55, cid::multihash::Multihash::<64>::wrap(0x13, &[7u8; 64]).unwrap());
    let r = gw.request("GET", &format!("/ipfs/{long}"), &[("host", &host)]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.text().contains("CID incompatible with DNS label length limit of 63"), "{}", r.text());
    // Labels that are not CIDs are refused.
    let r = gw.request("GET", "/", &[("host", &format!("notacid.ipfs.localhost:{port}"))]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}
