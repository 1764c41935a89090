//! The one integration-test binary of `cairn-gateway`: a real node on a RocksDB repo in a
//! temporary directory, the gateway on a loopback port, and requests over TCP.

mod abuse;
mod api_guard;
mod api_pins;
mod api_reads;
mod path_formats;
mod path_gateway;
mod routing;
mod trustless;

mod noise;
pub use noise::pseudo_random;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cairn_gateway::GatewayConfig;
use cairn_node::config::Profile;
use cairn_node::merkle::Cid;
use cairn_node::Node;
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// The gateway-conformance fixtures, committed with their licences (`testnet/fixtures`).
pub fn fixture(rel: &str) -> PathBuf {
    // From the environment at run time: the build cache is shared between clones.
    let here = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")), std::path::PathBuf::from);
    here.join("../testnet/fixtures/gateway-conformance").join(rel)
}

/// Cairn's own test data (`gateway/tests/data`), read from the clone the tests run in.
pub fn test_data(rel: &str) -> PathBuf {
    let here = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")), std::path::PathBuf::from);
    here.join("tests/data").join(rel)
}

/// A node with a gateway in front of it; the gateway stops when this is dropped.
#[derive(Debug)]
pub struct Gateway {
    pub node: Arc<Node>,
    pub addr: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Gateway {
    pub async fn start() -> Gateway {
        Self::start_with(GatewayConfig::default()).await
    }

    pub async fn start_with(config: GatewayConfig) -> Gateway {
        Self::start_configured(async move |_| config).await
    }

    /// A gateway whose config is made from its node (`make` may take the node online).
    pub async fn start_configured(make: impl AsyncFnOnce(&Arc<Node>) -> GatewayConfig) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let node = Arc::new(Node::init(&dir.path().join("repo"), Profile::Test).unwrap());
        let config = make(&node).await;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (addr, _task) = cairn_gateway::spawn("127.0.0.1:0".parse().unwrap(), node.clone(), config, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
        Gateway { node, addr, _stop: tx, _dir: dir }
    }

    /// Imports a CAR (without pinning: some fixtures lack blocks on purpose); returns its root.
    pub fn import(&self, car: &Path) -> Cid {
        let mut f = std::fs::File::open(car).unwrap_or_else(|e| panic!("{}: {e}", car.display()));
        let (roots, _) = self.node.dag_import(&mut f, false, &mut |_| {}).unwrap();
        roots[0]
    }

    /// Adds bytes as one file (pinned) and returns its CID.
    pub fn add_bytes(&self, data: &[u8], opts: &cairn_node::add::AddOptions) -> Cid {
        self.node.add_reader(data, opts, true).unwrap().cid
    }

    /// `GET` (or another method) of `path` with extra headers.
    pub async fn request(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
        http(self.addr, method, path, headers).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.request("GET", path, &[]).await
    }
}

/// `method` of `path` at `addr` with extra headers, the answer read whole.
pub async fn http(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut req = Request::builder().method(method).uri(format!("http://{addr}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = tokio::time::timeout(Duration::from_secs(60), client.request(req.body(Full::default()).unwrap()))
        .await
        .expect("request timed out")
        .expect("request failed");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    Reply { status, headers, body }
}

/// Starts `node`'s network on loopback and lets its reads fetch through it, waiting up to
/// `timeout` a block.
pub async fn online(node: &Arc<Node>, timeout: Duration) -> cairn_node::net::Network {
    let cfg = cairn_node::net::NetConfig::new(vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()]);
    cairn_node::online::start_reading(node, cfg, timeout).await.unwrap().0
}

/// A node with its RPC API on a loopback port, and its network on loopback when online; it
/// stops when dropped.
#[derive(Debug)]
pub struct ApiNode {
    pub node: Arc<Node>,
    pub net: Option<cairn_node::net::Network>,
    pub addr: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

impl ApiNode {
    pub async fn start(online_too: bool) -> ApiNode {
        let dir = tempfile::tempdir().unwrap();
        let node = Arc::new(Node::init(&dir.path().join("repo"), Profile::Test).unwrap());
        let net = match online_too {
            true => Some(online(&node, Duration::from_secs(60)).await),
            false => None,
        };
        let (stop_tx, _) = tokio::sync::mpsc::channel(1);
        let api = cairn_gateway::api::Api::new(node.clone(), net.clone(), stop_tx);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(cairn_gateway::serve_api(listener, api, async {
            let _ = rx.await;
        }));
        ApiNode { node, net, addr, _stop: tx, _dir: dir }
    }

    /// The network of a node started online.
    pub fn net(&self) -> &cairn_node::net::Network {
        self.net.as_ref().expect("the node was started online")
    }

    /// `POST /api/v0/{command}` (the query included), the answer read whole.
    pub async fn post(&self, command: &str) -> Reply {
        http(self.addr, "POST", &format!("/api/v0/{command}"), &[]).await
    }
}

/// Small chunks, so that a few MiB make many blocks.
pub fn small_chunks() -> cairn_node::add::AddOptions {
    use cairn_node::merkle::{chunker::ChunkerSpec, importer::ImportOptions};
    let import = ImportOptions { chunker: ChunkerSpec::Size(16 * 1024), ..Default::default() };
    cairn_node::add::AddOptions { import, recursive: true, ..cairn_node::add::AddOptions::default() }
}

/// Sends each request head (request line and headers, the blank line included) on its own
/// connection and keeps the connections, answers unread. The connections' receive buffers
/// are small, so that the answers stall a few hundred KiB in rather than after the MiB
/// that the kernel would take in otherwise.
pub async fn send_heads(addr: SocketAddr, heads: impl IntoIterator<Item = String>) -> Vec<tokio::net::TcpStream> {
    use tokio::io::AsyncWriteExt;
    let mut open = Vec::new();
    for head in heads {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut s = socket.connect(addr).await.unwrap();
        s.write_all(head.as_bytes()).await.unwrap();
        open.push(s);
    }
    open
}

/// Reads the rest of an HTTP/1.1 answer on `s` (the server closing the connection after
/// it) and returns its body, de-chunked when it came in chunks.
pub async fn read_answer(s: &mut tokio::net::TcpStream) -> Bytes {
    use tokio::io::AsyncReadExt;
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut all)).await.expect("answer timed out").unwrap();
    let end = all.windows(4).position(|w| w == b"\r\n\r\n").expect("a head") + 4;
    let head = String::from_utf8_lossy(&all[..end]).to_ascii_lowercase();
    let mut rest = &all[end..];
    if !head.contains("transfer-encoding: chunked") {
        return Bytes::copy_from_slice(rest);
    }
    let mut body = Vec::new();
    loop {
        let line = rest.windows(2).position(|w| w == b"\r\n").expect("a chunk size");
        let size = usize::from_str_radix(std::str::from_utf8(&rest[..line]).unwrap().trim(), 16).unwrap();
        rest = &rest[line + 2..];
        if size == 0 {
            return body.into();
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// Asserts that `read` answers "served at once" within 2 s, while other requests (`behind`)
/// wait.
pub async fn served_at_once(read: impl std::future::Future<Output = Reply>, behind: &str) {
    let started = std::time::Instant::now();
    let r = read.await;
    let took = started.elapsed();
    assert_eq!(r.text(), "served at once");
    assert!(took < Duration::from_secs(2), "a local read waited {took:?} behind {behind}");
}

/// A runtime of two workers and only 16 blocking threads, where requests that each held a
/// blocking thread while they wait would soon hold them all.
pub fn small_pool() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).max_blocking_threads(16).enable_all().build().unwrap()
}

/// The CIDs of a CAR's blocks, in order, and its roots; every block is verified.
pub fn car_blocks(car: &[u8]) -> (Vec<Cid>, Vec<Cid>) {
    let mut reader = cairn_node::merkle::car::CarReader::new(car).expect("CAR header");
    let roots = reader.roots().to_vec();
    let mut cids = Vec::new();
    while let Some(block) = reader.next_block().expect("CAR block") {
        cids.push(*block.cid());
    }
    (roots, cids)
}
