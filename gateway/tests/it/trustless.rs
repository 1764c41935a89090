//! The trustless gateway: raw blocks and CARs with `dag-scope` and `entity-bytes`, checked
//! against the gateway-conformance fixtures and the block-selection rules of the spec.

use cairn_node::merkle::links::links;
use cairn_node::merkle::Cid;
use hyper::StatusCode;

use crate::{car_blocks, fixture, Gateway};

/// The CIDs a node links to.
fn children(gw: &Gateway, cid: &Cid) -> Vec<Cid> {
    links(cid, &gw.node.block_get(cid).unwrap()).unwrap()
}

fn resolve(gw: &Gateway, path: &str) -> Cid {
    gw.node.resolve(&path.parse().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_blocks_come_back_verbatim() {
    let gw = Gateway::start().await;
    let root = gw.import(&fixture("gateway-raw-block.car"));
    let leaf = resolve(&gw, &format!("{root}/dir/ascii.txt"));
    for (path, headers) in [
        (format!("/ipfs/{root}/dir/ascii.txt?format=raw"), vec![]),
        (format!("/ipfs/{leaf}"), vec![("accept", "application/vnd.ipld.raw")]),
    ] {
        let r = gw.request("GET", &path, &headers).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text());
        assert_eq!(r.body, gw.node.block_get(&leaf).unwrap());
        assert_eq!(r.text(), "hello application/vnd.ipld.raw\n");
        assert_eq!(r.header("content-type"), "application/vnd.ipld.raw");
        assert_eq!(r.header("etag"), format!("\"{leaf}.raw\""));
        assert_eq!(r.header("content-disposition"), format!("attachment; filename=\"{leaf}.bin\""));
        assert_eq!(r.header("x-content-type-options"), "nosniff");
        assert_eq!(r.header("cache-control"), "public, max-age=29030400, immutable");
        assert_eq!(r.header("content-length"), "31");
    }
    // The probe every trustless client may send: the empty identity block.
    let r = gw.get("/ipfs/bafkqaaa?format=raw").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.is_empty());
    // An absent block is a 404, in both formats.
    let absent = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy";
    for format in ["raw", "car"] {
        assert_eq!(gw.get(&format!("/ipfs/{absent}?format={format}")).await.status, StatusCode::NOT_FOUND);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn car_scopes_select_the_spec_blocks() {
    let gw = Gateway::start().await;
    let root = gw.import(&fixture("trustless_gateway_car/subdir-with-mixed-block-files.car"));
    let subdir = resolve(&gw, &format!("{root}/subdir"));
    let file = resolve(&gw, &format!("{root}/subdir/multiblock.txt"));
    let leaves = children(&gw, &file);
    assert_eq!(leaves.len(), 5, "the fixture's file has five leaves");
    let car = |query: &str| {
        let path = format!("/ipfs/{root}/subdir/multiblock.txt?format=car{query}");
        let gw = &gw;
        async move {
            let r = gw.get(&path).await;
            assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text());
            (car_blocks(&r.body).1, r)
        }
    };
    let path = [root, subdir, file];
    let with = |extra: &[usize]| path.iter().copied().chain(extra.iter().map(|&i| leaves[i])).collect::<Vec<_>>();

    let (blocks, r) = car("&dag-scope=block").await;
    assert_eq!(blocks, with(&[]));
    assert_eq!(r.header("content-type"), "application/vnd.ipld.car; version=1; order=dfs; dups=n");
    assert_eq!(r.header("content-disposition"), format!("attachment; filename=\"{file}.car\""));
    assert_eq!(r.header("x-content-type-options"), "nosniff");
    assert_eq!(r.header("accept-ranges"), "none");
    assert_eq!(r.header("cache-control"), "public, max-age=29030400, immutable");
    let block_etag = r.header("etag").to_owned();
    assert_eq!(car_blocks(&r.body).0, vec![file], "the header names the terminal");

    let (blocks, r) = car("&dag-scope=entity").await;
    assert_eq!(blocks, with(&[0, 1, 2, 3, 4]));
    assert_ne!(r.header("etag"), block_etag, "each scope has its own ETag");
    assert_eq!(car("").await.0, with(&[0, 1, 2, 3, 4]), "the default scope is all");

    // entity-bytes selects the leaves that overlap the range (the file is 1026 bytes, in
    // leaves of 256, 256, 256, 256 and 2).
    for (range, want) in [
        ("0:0", vec![0]),
        ("512:*", vec![2, 3, 4]),
        ("512:1023", vec![2, 3]),
        ("-5:*", vec![3, 4]),
        ("-9999:-3", vec![0, 1, 2, 3]),
        ("512:-256", vec![2, 3]),
        ("5000:*", vec![]),
    ] {
        let (blocks, _) = car(&format!("&dag-scope=entity&entity-bytes={range}")).await;
        assert_eq!(blocks, with(&want), "entity-bytes={range}");
    }

    // A directory's entity is its own block; a CAR of everything matches `dag export`.
    let r = gw.get(&format!("/ipfs/{root}/subdir?format=car&dag-scope=entity")).await;
    assert_eq!(car_blocks(&r.body).1, vec![root, subdir]);
    let r = gw.get(&format!("/ipfs/{root}?format=car")).await;
    let mut exported = Vec::new();
    gw.node.dag_export(&root, &mut exported).unwrap();
    assert!(r.body == exported, "a whole-DAG CAR differs from dag export");

    // The same CAR again is a 304.
    let etag = r.header("etag").to_owned();
    let again = gw.request("GET", &format!("/ipfs/{root}?format=car"), &[("if-none-match", &etag)]).await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn car_paths_through_shards_cbor_and_missing_blocks() {
    let gw = Gateway::start().await;
    // Through a HAMT: the shard nodes on the way, then the file.
    let hamt = gw.import(&fixture("trustless_gateway_car/single-layer-hamt-with-multi-block-files.car"));
    let file = resolve(&gw, &format!("{hamt}/685.txt"));
    let is_shard = |cid: &Cid| {
        let stat = cairn_node::merkle::exporter::stat(&gw.node.source(), cid).unwrap();
        stat.kind == cairn_node::merkle::exporter::NodeKind::HamtDirectory
    };
    let r = gw.get(&format!("/ipfs/{hamt}/685.txt?format=car&dag-scope=block")).await;
    let blocks = car_blocks(&r.body).1;
    assert_eq!(blocks.first(), Some(&hamt));
    assert_eq!(blocks.last(), Some(&file));
    let route = &blocks[1..blocks.len() - 1];
    assert!(!route.is_empty() && route.iter().all(is_shard), "between them only the shards on the route: {blocks:?}");
    // The entity of a sharded directory is every shard, and nothing under them.
    let r = gw.get(&format!("/ipfs/{hamt}?format=car&dag-scope=entity")).await;
    let shards = car_blocks(&r.body).1;
    assert_eq!(shards[0], hamt);
    assert!(shards.iter().all(is_shard), "{shards:?}");
    assert!(route.iter().all(|c| shards.contains(c)));
    // Every shard, counted independently: the HAMT's dag-pb children that are shards.
    let mut all_shards = vec![hamt];
    let mut i = 0;
    while i < all_shards.len() {
        let kids: Vec<Cid> =
            children(&gw, &all_shards[i]).into_iter().filter(|c| c.codec() == 0x70 && is_shard(c)).collect();
        all_shards.extend(kids);
        i += 1;
    }
    assert_eq!(shards.len(), all_shards.len());

    // A dag-cbor terminus: the entity is the block alone, links not followed.
    let root = gw.import(&fixture("trustless_gateway_car/dir-with-dag-cbor-with-links.car"));
    let doc = resolve(&gw, &format!("{root}/document"));
    let r = gw.get(&format!("/ipfs/{root}/document?format=car&dag-scope=entity")).await;
    assert_eq!(car_blocks(&r.body).1, vec![root, doc]);

    // Ranges that avoid the fixture's missing middle leaf succeed.
    let file = gw.import(&fixture("trustless_gateway_car/file-3k-and-3-blocks-missing-block.car"));
    let leaves = children(&gw, &file);
    for (range, leaf) in [("0:1000", 0), ("2200:*", 2)] {
        let r = gw.get(&format!("/ipfs/{file}?format=car&dag-scope=entity&entity-bytes={range}")).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(car_blocks(&r.body).1, vec![file, leaves[leaf]], "{range}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_car_requests_are_refused() {
    let gw = Gateway::start().await;
    let root = gw.import(&fixture("trustless_gateway_car/subdir-with-two-single-block-files.car"));
    for (query, accept, want) in [
        ("?format=car&dag-scope=everything", "", StatusCode::BAD_REQUEST),
        ("?format=car&entity-bytes=9:1", "", StatusCode::BAD_REQUEST),
        ("?format=car&entity-bytes=x", "", StatusCode::BAD_REQUEST),
        ("", "application/vnd.ipld.car; version=2", StatusCode::NOT_ACCEPTABLE),
        ("", "application/vnd.ipld.car; dups=maybe", StatusCode::NOT_ACCEPTABLE),
        ("?format=car&car-dups=sometimes", "", StatusCode::NOT_ACCEPTABLE),
        ("?format=car", "application/vnd.ipld.car; version=3", StatusCode::NOT_ACCEPTABLE),
        ("", "application/vnd.ipld.car; order=dfs; dups=n", StatusCode::OK),
        ("?format=car&car-order=unk", "", StatusCode::OK),
    ] {
        let headers: Vec<(&str, &str)> = if accept.is_empty() { vec![] } else { vec![("accept", accept)] };
        let r = gw.request("GET", &format!("/ipfs/{root}{query}"), &headers).await;
        assert_eq!(r.status, want, "{query} {accept}: {}", r.text());
    }
}

/// `dups=y` and `order=unk` as the conformance suite's `TestTrustlessCarOrderAndDuplicates`
/// asks for them, on its fixture: a directory holding the same file twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn car_dups_sends_a_block_each_time_the_walk_reaches_it() {
    let gw = Gateway::start().await;
    let root = gw.import(&fixture("trustless_gateway_car/dir-with-duplicate-files.car"));
    let at = |name: &str| resolve(&gw, &format!("{root}/{name}"));
    let (ascii, copy, hello, multi) = (at("ascii.txt"), at("ascii-copy.txt"), at("hello.txt"), at("multiblock.txt"));
    assert_eq!(ascii, copy, "the fixture holds one file twice");
    let leaves = children(&gw, &multi);
    assert_eq!(leaves.len(), 5);
    // The directory's links, in encoded order, name ascii-copy.txt before ascii.txt.
    let dfs_with_repeats: Vec<Cid> =
        [root, copy, ascii, hello, multi].into_iter().chain(leaves.iter().copied()).collect();
    let dfs_once: Vec<Cid> = [root, ascii, hello, multi].into_iter().chain(leaves.iter().copied()).collect();
    for (query, accept, content_type, want) in [
        ("", "application/vnd.ipld.car; version=1; order=dfs; dups=y", "dups=y", &dfs_with_repeats),
        ("", "application/vnd.ipld.car; version=1; order=dfs; dups=n", "dups=n", &dfs_once),
        // ?format=car with a CAR in Accept: Accept's parameters count (IPIP-523).
        ("?format=car", "application/vnd.ipld.car; version=1; order=dfs; dups=y", "dups=y", &dfs_with_repeats),
        ("?format=car&car-dups=y", "", "dups=y", &dfs_with_repeats),
        // order=unk: the gateway says which order it used.
        ("", "application/vnd.ipld.car; version=1; order=unk", "dups=n", &dfs_once),
    ] {
        let headers: Vec<(&str, &str)> = if accept.is_empty() { vec![] } else { vec![("accept", accept)] };
        let r = gw.request("GET", &format!("/ipfs/{root}{query}"), &headers).await;
        assert_eq!(r.status, StatusCode::OK, "{query} {accept}: {}", r.text());
        assert_eq!(r.header("content-type"), format!("application/vnd.ipld.car; version=1; order=dfs; {content_type}"));
        assert_eq!(&car_blocks(&r.body).1, want, "{query} {accept}");
    }
    // The two forms are different responses to a cache.
    let etag = |accept: &'static str| {
        let gw = &gw;
        async move { gw.request("GET", &format!("/ipfs/{root}"), &[("accept", accept)]).await.header("etag").to_owned() }
    };
    assert_ne!(etag("application/vnd.ipld.car; dups=y").await, etag("application/vnd.ipld.car; dups=n").await);
    // Identity blocks are never sent, repeats or not.
    let r = gw
        .request(
            "GET",
            "/ipfs/bafkqaf3imvwgy3zaneqgc3janfxgy2lomvscay3jmqfa",
            &[("accept", "application/vnd.ipld.car; dups=y")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.header("content-type").contains("dups=y"));
    assert!(car_blocks(&r.body).1.is_empty());
    // A range of a file's blocks goes without repeats, and the type says so.
    let r = gw.get(&format!("/ipfs/{multi}?format=car&dag-scope=entity&entity-bytes=0:*&car-dups=y")).await;
    assert_eq!(r.header("content-type"), "application/vnd.ipld.car; version=1; order=dfs; dups=n");
}
