//! The RPC API: a subset of Kubo's `/api/v0`, served by `cairn daemon` on `Addresses.API`.
//!
//! As in Kubo, every command is a `POST` (anything else is 405, so that a web page cannot
//! trigger commands with a plain link), arguments are query parameters (`arg` repeated for
//! positional ones), and answers are JSON, newline-delimited JSON for streams, or raw bytes for
//! `cat`. Errors are JSON `{"Message", "Code": 0, "Type": "error"}` with status 500 (400 for a
//! bad argument), as Kubo's clients expect.
//!
//! Commands: `version`, `id`, `swarm/peers`, `swarm/connect`, `swarm/addrs/listen`,
//! `routing/provide`, `routing/findprovs`, `routing/reprovide`, `add` (multipart), `cat`, `get` (tar), `pin/add`, `pin/rm`,
//! `pin/ls`, `ls`, `block/get|put|stat|rm`, `dag/export|import`, `repo/gc|stat|verify`,
//! `manifest/sign|verify`, `pin/verify`, `follow/add|rm|ls`, `shutdown`. Adding or pinning
//! announces the new roots on the DHT (per
//! `Reprovider.Strategy`) and as an availability hint.

use std::sync::Arc;
use std::time::Duration;

use cairn_node::add::AddOptions;
use cairn_node::merkle::chunker::ChunkerSpec;
use cairn_node::merkle::exporter::{self, Stat};
use cairn_node::merkle::hash::HashAlg;
use cairn_node::merkle::importer::{ImportOptions, Layout};
use cairn_node::merkle::Cid;
use cairn_node::net::reprovide::Reprovider;
use cairn_node::net::Network;
use cairn_node::{BlockStore, IpfsPath, Node};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};

use crate::body::{self, Body};

mod add;
mod guard;
mod manifest;
mod store;

pub use store::MAX_LS_ENTRIES;

/// The API's shared state.
pub struct Api {
    node: Arc<Node>,
    net: Option<Network>,
    reprovider: Option<Reprovider>,
    stop: tokio::sync::mpsc::Sender<()>,
    /// Who may call: web origins, host names and `API.Authorizations`.
    guard: guard::Guard,
    /// `API.MaxUploadBytes` and `API.MaxUploadEntries`.
    limits: add::UploadBodyLimits,
    /// The daemon's other services, shown on the metrics page.
    services: crate::metrics::Services,
    /// The running follower, told of `follow` changes at once.
    follower: Option<Arc<cairn_node::follow::Follower>>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").finish_non_exhaustive()
    }
}

/// A failed command: the status and the message.
#[derive(Debug)]
struct Fail {
    status: StatusCode,
    message: String,
    /// Not a failure yet: a read stopped at this block, which is being fetched; the command
    /// waits for it, holding no thread, and reads on ([`crate::wait::until_local`]).
    pending: Option<Box<Cid>>,
}

impl Fail {
    fn new(status: StatusCode, message: String) -> Fail {
        Fail { status, message, pending: None }
    }
    fn bad(msg: impl std::fmt::Display) -> Fail {
        Fail::new(StatusCode::BAD_REQUEST, msg.to_string())
    }
    fn internal(msg: impl std::fmt::Display) -> Fail {
        Fail::new(StatusCode::INTERNAL_SERVER_ERROR, msg.to_string())
    }
    /// A node error, kept apart when it is a read stopped at a block being fetched.
    fn node(e: cairn_node::NodeError) -> Fail {
        match e.pending() {
            Some(cid) => Fail { pending: Some(Box::new(cid)), ..Fail::internal(&e) },
            None => Fail::internal(e),
        }
    }
}

impl std::fmt::Display for Fail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl crate::wait::Stop for Fail {
    fn pending(&self) -> Option<Cid> {
        self.pending.as_deref().copied()
    }
    fn unfetched(e: cairn_node::merkle::SourceError) -> Fail {
        Fail::internal(e)
    }
    fn lost(why: String) -> Fail {
        Fail::internal(why)
    }
}

type Answer = Result<Response<Body>, Fail>;

/// The query parameters of a request, in order.
struct Params(Vec<(String, String)>);

impl Params {
    fn of(req: &Request<hyper::body::Incoming>) -> Params {
        Params(form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()).into_owned().collect())
    }
    fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
    fn args(&self) -> Vec<&str> {
        self.0.iter().filter(|(k, _)| k == "arg").map(|(_, v)| v.as_str()).collect()
    }
    fn arg(&self) -> Result<&str, Fail> {
        self.get("arg").ok_or_else(|| Fail::bad("argument \"arg\" is required"))
    }
    fn flag(&self, key: &str, default: bool) -> Result<bool, Fail> {
        match self.get(key) {
            None => Ok(default),
            Some("" | "true" | "1") => Ok(true),
            Some("false" | "0") => Ok(false),
            Some(v) => Err(Fail::bad(format!("{key}: {v:?} is not a boolean"))),
        }
    }
    fn number(&self, key: &str) -> Result<Option<u64>, Fail> {
        self.get(key).map(|v| v.parse().map_err(|_| Fail::bad(format!("{key}: {v:?} is not a number")))).transpose()
    }
}

fn json_response(v: &Value) -> Response<Body> {
    let mut r = Response::new(body::full(format!("{v}\n")));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn ndjson(lines: &[Value]) -> Response<Body> {
    let text: String = lines.iter().map(|v| format!("{v}\n")).collect();
    let mut r = Response::new(body::full(text));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut().insert("X-Chunked-Output", HeaderValue::from_static("1"));
    r
}

fn failure(f: Fail) -> Response<Body> {
    let mut r = json_response(&json!({"Message": f.message, "Code": 0, "Type": "error"}));
    *r.status_mut() = f.status;
    r
}

fn parse_cid(s: &str) -> Result<Cid, Fail> {
    let s = s.strip_prefix("/ipfs/").unwrap_or(s);
    s.parse::<Cid>().map_err(|e| Fail::bad(format!("invalid CID {s:?}: {e}")))
}

fn parse_path(s: &str) -> Result<IpfsPath, Fail> {
    s.parse::<IpfsPath>().map_err(|e| Fail::bad(e.to_string()))
}

/// Runs blocking repo work off the runtime.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, Fail> + Send + 'static) -> Result<T, Fail> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Fail::internal(format!("task failed: {e}")))?
}

/// The import settings from `add`'s parameters, named as in Kubo.
fn add_options(p: &Params) -> Result<AddOptions, Fail> {
    let version = p.number("cid-version")?.map(|v| u8::try_from(v).unwrap_or(u8::MAX));
    let raw = p.get("raw-leaves").map(|_| p.flag("raw-leaves", true)).transpose()?;
    let hash = p.get("hash").map(str::parse::<HashAlg>).transpose().map_err(Fail::bad)?;
    let mut import = ImportOptions::from_flags(version, raw, hash).map_err(Fail::bad)?;
    if let Some(c) = p.get("chunker") {
        import.chunker = c.parse::<ChunkerSpec>().map_err(Fail::bad)?;
    }
    if p.flag("trickle", false)? {
        import.layout = Layout::Trickle;
    }
    Ok(AddOptions { import, recursive: true, hidden: p.flag("hidden", true)? })
}

impl Api {
    /// The API over `node`, with the network's commands when `net` is given. A `shutdown`
    /// command sends on `stop`.
    pub fn new(node: Arc<Node>, net: Option<Network>, stop: tokio::sync::mpsc::Sender<()>) -> Api {
        let reprovider = net.as_ref().and_then(|n| Reprovider::from_repo(node.clone(), n.clone()).ok());
        let config = node.repo().config();
        let guard = guard::Guard::new(&config.api);
        let limits = add::UploadBodyLimits::of(config);
        Api {
            node,
            net,
            reprovider,
            stop,
            guard,
            limits,
            services: crate::metrics::Services::default(),
            follower: None,
        }
    }

    /// Shows the gateway's request counters on the metrics page.
    pub fn with_gateway_metrics(mut self, metrics: Arc<crate::GatewayMetrics>) -> Api {
        self.services.gateway = Some(metrics);
        self
    }

    /// Sends `follow` changes to the running follower.
    pub fn with_follower(mut self, follower: Arc<cairn_node::follow::Follower>) -> Api {
        self.follower = Some(follower);
        self
    }

    /// Shows the scrub's, the pinning service's and the follower's counters on the metrics
    /// page (whichever run).
    pub fn with_services(mut self, services: crate::metrics::Services) -> Api {
        let gateway = self.services.gateway.take();
        self.services = services;
        self.services.gateway = self.services.gateway.take().or(gateway);
        self
    }

    fn net(&self) -> Result<&Network, Fail> {
        self.net.as_ref().ok_or_else(|| Fail::internal("this command must be run in online mode"))
    }

    /// Answers one request.
    pub async fn handle(self: Arc<Self>, req: Request<hyper::body::Incoming>) -> Response<Body> {
        let origin = match self.guard.check_web(req.headers()) {
            Ok(origin) => origin,
            Err(f) => return failure(f),
        };
        if req.method() == Method::OPTIONS {
            return self.guard.preflight(origin.as_deref());
        }
        let mut r = if self.guard.authorized(&req) {
            self.answer(req).await
        } else {
            failure(Fail::new(StatusCode::FORBIDDEN, "a valid API.Authorizations secret is required".into()))
        };
        self.guard.decorate(&mut r, origin.as_deref());
        r
    }

    /// Answers one request that passed the guard.
    async fn answer(&self, req: Request<hyper::body::Incoming>) -> Response<Body> {
        if req.method() == Method::GET && req.uri().path() == "/debug/metrics/prometheus" {
            let text = crate::metrics::render(&self.node, self.net.as_ref(), &self.services).await;
            let mut r = Response::new(body::full(text));
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(crate::metrics::CONTENT_TYPE));
            return r;
        }
        if req.method() != Method::POST {
            let mut r = failure(Fail::new(StatusCode::METHOD_NOT_ALLOWED, "the RPC API takes POST only".into()));
            r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
            return r;
        }
        let Some(command) = req.uri().path().strip_prefix("/api/v0/").map(str::to_owned) else {
            return failure(Fail::new(StatusCode::NOT_FOUND, format!("{} is not an API path", req.uri().path())));
        };
        let p = Params::of(&req);
        let answer = match command.as_str() {
            "version" => Ok(json_response(&json!({
                "Version": env!("CARGO_PKG_VERSION"), "Commit": "", "Repo": "1",
                "System": format!("{}/{}", std::env::consts::ARCH, std::env::consts::OS), "Golang": "",
            }))),
            "id" => self.id().await,
            "swarm/peers" => self.swarm_peers().await,
            "bitswap/stat" => self.bitswap_stat().await,
            "swarm/connect" => self.swarm_connect(&p).await,
            "swarm/addrs/listen" | "swarm/addrs/local" => {
                self.net().map(|n| json_response(&json!({"Strings": listen_strings(n, false)})))
            }
            "routing/provide" | "dht/provide" => self.provide(&p).await,
            "routing/findprovs" | "dht/findprovs" => self.findprovs(&p).await,
            "routing/reprovide" | "bitswap/reprovide" => self.reprovide().await,
            "add" => self.add(req, &p).await,
            "cat" => self.cat(&p).await,
            "get" => self.get(&p).await,
            "pin/add" => self.pin_add(&p).await,
            "pin/rm" => self.pin_rm(&p).await,
            "pin/ls" => self.pin_ls(&p).await,
            "pin/verify" => self.pin_verify(&p).await,
            "ls" => self.ls(&p).await,
            "block/get" => self.block_get(&p).await,
            "block/stat" => self.block_stat(&p).await,
            "block/put" => self.block_put(req, &p).await,
            "block/rm" => self.block_rm(&p).await,
            "dag/export" => self.dag_export(&p).await,
            "dag/import" => self.dag_import(req, &p).await,
            "repo/gc" => self.repo_gc().await,
            "repo/stat" => self.repo_stat(&p).await,
            "repo/verify" => self.repo_verify().await,
            "manifest/sign" => self.manifest_sign(&p).await,
            "manifest/verify" => self.manifest_verify(&p).await,
            "follow/add" | "follow/rm" | "follow/ls" => self.follow(&command, &p).await,
            "shutdown" => {
                let _ = self.stop.try_send(());
                Ok(Response::new(body::empty()))
            }
            other => Err(Fail::new(StatusCode::NOT_FOUND, format!("unknown command {other:?}"))),
        };
        answer.unwrap_or_else(failure)
    }

    async fn id(&self) -> Answer {
        let repo = self.node.repo();
        let key = repo.keypair().public().encode_protobuf();
        let addrs = self.net.as_ref().map(|n| listen_strings(n, true)).unwrap_or_default();
        Ok(json_response(&json!({
            "ID": repo.peer_id().to_string(),
            "PublicKey": data_encoding::BASE64.encode(&key),
            "Addresses": addrs,
            "AgentVersion": cairn_node::net::AGENT,
            "ProtocolVersion": "ipfs/0.1.0",
        })))
    }

    async fn swarm_peers(&self) -> Answer {
        let peers = self.net()?.peers().await.map_err(Fail::internal)?;
        let list: Vec<Value> =
            peers.iter().map(|p| json!({"Addr": strip_p2p(&p.addr.to_string()), "Peer": p.peer.to_string()})).collect();
        Ok(json_response(&json!({ "Peers": list })))
    }

    /// Kubo's `bitswap/stat` counters and partners (the connected peers), with the number of
    /// blocks wanted now (`WantlistLength`) and of peers that delivered a block lately
    /// (`SendingPeers`).
    async fn bitswap_stat(&self) -> Answer {
        let net = self.net()?;
        let (stats, peers) = (net.stats().await.map_err(Fail::internal)?, net.peers().await.map_err(Fail::internal)?);
        let partners: Vec<String> = peers.iter().map(|p| p.peer.to_string()).collect();
        Ok(json_response(&json!({
            "BlocksReceived": stats.blocks_received,
            "DataReceived": stats.bytes_received,
            "BlocksSent": stats.blocks_sent,
            "DataSent": stats.bytes_sent,
            "DupBlksReceived": stats.duplicate_blocks,
            "WantlistLength": stats.wants,
            "Peers": partners,
            "SendingPeers": stats.sending_peers,
        })))
    }

    async fn swarm_connect(&self, p: &Params) -> Answer {
        let net = self.net()?;
        let mut done = Vec::new();
        for a in p.args() {
            let addr = a.parse().map_err(|e| Fail::bad(format!("{a:?} is not a multiaddr: {e}")))?;
            let peer = net.connect(addr).await.map_err(Fail::internal)?;
            done.push(format!("connect {peer} success"));
        }
        if done.is_empty() {
            return Err(Fail::bad("argument \"address\" is required"));
        }
        Ok(json_response(&json!({ "Strings": done })))
    }

    async fn provide(&self, p: &Params) -> Answer {
        let net = self.net()?.clone();
        let mut roots = Vec::new();
        for a in p.args() {
            let cid = parse_cid(a)?;
            if !self.node.repo().store().has(&cid).map_err(Fail::internal)? {
                return Err(Fail::internal(format!("block {cid} not found locally, cannot provide")));
            }
            roots.push(cid);
        }
        if roots.is_empty() {
            return Err(Fail::bad("argument \"key\" is required"));
        }
        let keys = if p.flag("recursive", false)? {
            let node = self.node.clone();
            blocking(move || {
                let mut all = Vec::new();
                for r in roots {
                    all.extend(node.dag_cids(&r).map_err(Fail::internal)?);
                }
                Ok(all)
            })
            .await?
        } else {
            roots
        };
        let (ok, failed) = match &self.reprovider {
            Some(rp) => rp.announce_now(keys).await,
            None => net.provide(keys).await,
        }
        .map_err(Fail::internal)?;
        if ok == 0 && failed > 0 {
            return Err(Fail::internal("failed to find any peer in table"));
        }
        tracing::debug!("provided {ok} keys, {failed} reached no peer");
        Ok(ndjson(&[]))
    }

    /// Renews every announcement of `Reprovider.Strategy` now (a whole sweep, by region), and
    /// says how it went.
    async fn reprovide(&self) -> Answer {
        self.net()?;
        let rp = self.reprovider.as_ref().ok_or_else(|| Fail::internal("the reprovider is not configured"))?;
        let s = rp.sweep().await.map_err(Fail::internal)?;
        Ok(json_response(&json!({
            "Provided": s.provided,
            "Failed": s.failed,
            "Lookups": s.lookups,
            "Streams": s.streams,
            "FailedStreams": s.failed_streams,
            "Seconds": s.took.as_secs_f64(),
        })))
    }

    async fn findprovs(&self, p: &Params) -> Answer {
        let cid = parse_cid(p.arg()?)?;
        let max = p.number("num-providers")?.unwrap_or(20).clamp(1, 1000) as usize;
        let found = self.net()?.find_providers(cid, max, Duration::from_secs(60)).await.map_err(Fail::internal)?;
        let lines: Vec<Value> = found
            .iter()
            .map(|peer| json!({"Type": 4, "ID": "", "Extra": "", "Responses": [{"ID": peer.to_string(), "Addrs": []}]}))
            .collect();
        Ok(ndjson(&lines))
    }

    /// Tells the network about new roots: DHT announcements (per the strategy) and a hint.
    async fn announce(&self, roots: &[(Cid, u64)]) {
        let (Some(net), Some(rp)) = (&self.net, &self.reprovider) else { return };
        let cids: Vec<Cid> = roots.iter().map(|(c, _)| *c).collect();
        let rp2 = rp.clone();
        if let Ok(keys) = tokio::task::spawn_blocking(move || rp2.keys_for(&cids)).await {
            rp.announce_later(keys).await;
        }
        for (root, size) in roots {
            net.announce_root(*root, *size).await;
        }
    }

    /// Runs a read on the blocking pool through [`Node::reader_nowait`], waiting for missing
    /// blocks on the runtime between its runs ([`crate::wait::until_local`]).
    async fn read<T: Send + 'static>(
        &self,
        job: impl FnMut(&Node) -> Result<T, Fail> + Send + 'static,
    ) -> Result<T, Fail> {
        crate::wait::until_local(&self.node, job).await
    }

    /// What `path` names, and its stat, read without holding a thread while blocks arrive.
    async fn resolve_stat(&self, path: IpfsPath) -> Result<(Cid, Stat), Fail> {
        self.read(move |node| {
            let reader = node.reader_nowait();
            let cid = reader.resolve(&path).map_err(Fail::node)?;
            let stat = exporter::stat(reader.source(), &cid).map_err(|e| Fail::node(e.into()))?;
            Ok((cid, stat))
        })
        .await
    }

    /// How a streamed answer over the whole DAG under `root` waits for blocks: at its first
    /// stop, all that is missing of the DAG is fetched at once, many blocks in flight (as
    /// `pin/add` does); at a later stop (a block the collector took since), the one block.
    fn dag_fetch(&self, root: Cid) -> impl FnMut(Cid) -> crate::wait::Fetch<Fail> + Send + 'static {
        let mut one = crate::wait::one_block(&self.node);
        let timeout = self.node.repo().config().retrieval_timeout().ok();
        let store: cairn_node::net::SharedStore = Arc::new(cairn_node::net::NodeStore(self.node.clone()));
        let mut whole = self.net.clone().zip(timeout).map(|(net, timeout)| (net, store, timeout));
        move |cid| match whole.take() {
            Some((net, store, timeout)) => Box::pin(async move {
                let fetched = net.fetch_dag(&store, root, cairn_node::net::session::Order::File, 32, timeout).await;
                fetched.map(|_| ()).map_err(Fail::internal)
            }),
            None => one(cid),
        }
    }

    /// `cat`: the file's bytes, streamed. After a stop at a block being fetched, or for a
    /// slow client, the read goes on from the byte it stopped at.
    async fn cat(&self, p: &Params) -> Answer {
        let path = parse_path(p.arg()?)?;
        let offset = p.number("offset")?.unwrap_or(0);
        let length = p.number("length")?;
        // Errors found before the first byte get a proper error answer; a failure later can
        // only cut the stream.
        let (cid, stat) = self.resolve_stat(path).await?;
        if stat.kind.is_dir() {
            return Err(Fail::internal("this dag node is a directory"));
        }
        let mut sent = 0u64;
        let one = crate::wait::one_block::<Fail>(&self.node);
        let body = crate::wait::streamed(&self.node, None, "cat", one, move |node, tx| {
            let left = length.map(|l| l.saturating_sub(sent));
            let source = crate::wait::Paced::new(*node.reader_nowait().source(), tx);
            let segments = exporter::FileSegments::new(&source, &cid, offset + sent, left);
            for seg in segments.map_err(|e| Fail::node(e.into()))? {
                let seg = seg.map_err(|e| Fail::node(e.into()))?;
                let n = seg.len() as u64;
                tx.send(seg).map_err(Fail::internal)?;
                sent += n;
            }
            Ok(())
        });
        let mut r = Response::new(body);
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        r.headers_mut().insert("X-Stream-Output", HeaderValue::from_static("1"));
        Ok(r)
    }

    /// The file or tree at `arg` as a tar stream, its top entry named after the path's last
    /// component (or the CID); `X-Content-Length` tells the file bytes to come, when known.
    /// A tar stopped at a block being fetched goes on from where it stopped once the DAG's
    /// missing blocks are in; one whose client is slower than it stops between blocks,
    /// letting its thread go, and goes on the same way.
    async fn get(&self, p: &Params) -> Answer {
        let path = parse_path(p.arg()?)?;
        let name = path.rest.rsplit('/').find(|c| !c.is_empty()).map_or_else(|| path.root.to_string(), str::to_owned);
        let (cid, stat) = self.resolve_stat(path).await?;
        let mut at = cairn_node::read::Tar::new(&cid, &name);
        let body = crate::wait::streamed(&self.node, None, "get", self.dag_fetch(cid), move |node, tx| {
            let source = crate::wait::Paced::new(*node.reader_nowait().source(), tx);
            cairn_node::read::write_tar(&source, &mut at, &mut tx.writer(), &mut |_| {}).map_err(Fail::node)
        });
        let mut r = Response::new(body);
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-tar"));
        r.headers_mut().insert("X-Stream-Output", HeaderValue::from_static("1"));
        if !stat.kind.is_dir() {
            r.headers_mut().insert("X-Content-Length", HeaderValue::from(stat.size));
        }
        Ok(r)
    }

    async fn pin_add(&self, p: &Params) -> Answer {
        let mut paths = p.args().into_iter().map(parse_path).collect::<Result<Vec<_>, _>>()?;
        if paths.is_empty() {
            return Err(Fail::bad("argument \"ipfs-path\" is required"));
        }
        let recursive = p.flag("recursive", true)?;
        let name = p.get("name").map(str::to_owned);
        // Online, a recursive pin's missing blocks are fetched as one DAG fetch (many blocks
        // in flight) rather than one by one as the pin's walk meets them.
        if let (true, Some(net)) = (recursive, &self.net) {
            let timeout = self.node.repo().config().retrieval_timeout().map_err(Fail::internal)?;
            let store: cairn_node::net::SharedStore = Arc::new(cairn_node::net::NodeStore(self.node.clone()));
            for path in &mut paths {
                let p = path.clone();
                let root = self.read(move |node| node.reader_nowait().resolve(&p).map_err(Fail::node)).await?;
                net.fetch_dag(&store, root, cairn_node::net::session::Order::File, 32, timeout)
                    .await
                    .map_err(Fail::internal)?;
                // Resolved once: the pin below starts from the root.
                *path = IpfsPath { root, rest: String::new() };
            }
        }
        let node = self.node.clone();
        let pinned = blocking(move || {
            let mut out = Vec::new();
            for path in &paths {
                let cid = node.pin_add(path, recursive, name.clone()).map_err(Fail::internal)?;
                let size = node.stat_path(&IpfsPath { root: cid, rest: String::new() }).map(|s| s.size).unwrap_or(0);
                out.push((cid, size));
            }
            Ok(out)
        })
        .await?;
        self.announce(&pinned).await;
        let list: Vec<String> = pinned.iter().map(|(c, _)| c.to_string()).collect();
        Ok(json_response(&json!({ "Pins": list })))
    }

    async fn pin_rm(&self, p: &Params) -> Answer {
        let paths = p.args().into_iter().map(parse_path).collect::<Result<Vec<_>, _>>()?;
        // Paths are resolved first, without holding a thread while blocks arrive.
        let mut roots = Vec::with_capacity(paths.len());
        for path in paths {
            roots.push(match path.rest.is_empty() {
                true => path.root,
                false => self.read(move |node| node.reader_nowait().resolve(&path).map_err(Fail::node)).await?,
            });
        }
        let node = self.node.clone();
        let removed = blocking(move || {
            let mut removed = Vec::with_capacity(roots.len());
            for root in roots {
                let cid = node.pin_rm(&IpfsPath { root, rest: String::new() }).map_err(Fail::internal)?;
                removed.push(cid.to_string());
            }
            Ok(removed)
        })
        .await?;
        Ok(json_response(&json!({ "Pins": removed })))
    }

    async fn pin_ls(&self, p: &Params) -> Answer {
        let kind = p.get("type").unwrap_or("all").to_owned();
        if !["all", "direct", "recursive", "indirect"].contains(&kind.as_str()) {
            return Err(Fail::bad(format!("invalid type {kind:?}, must be one of direct, indirect, recursive, all")));
        }
        let only = p.args().into_iter().map(parse_cid).collect::<Result<Vec<_>, _>>()?;
        let node = self.node.clone();
        let keys = blocking(move || {
            let mut keys = serde_json::Map::new();
            // A CID several owners pin is listed once, under its strongest pin (recursive
            // first, then the operator's own).
            let mut pins = node.pins().map_err(Fail::internal)?;
            pins.sort_by_key(|p| {
                (p.mode == cairn_node::store::PinMode::Recursive, p.owner == cairn_node::store::PinOwner::Operator)
            });
            for pin in pins {
                let t = pin.mode.as_str();
                if kind == "all" || kind == t {
                    keys.insert(pin.cid.to_string(), json!({"Type": t, "Name": pin.name.unwrap_or_default()}));
                }
            }
            if kind == "all" || kind == "indirect" {
                for c in node.indirect_pins().map_err(Fail::internal)? {
                    keys.entry(c.to_string()).or_insert_with(|| json!({"Type": "indirect", "Name": ""}));
                }
            }
            if only.is_empty() {
                return Ok(keys);
            }
            let mut picked = serde_json::Map::new();
            for c in only {
                let v = keys.get(&c.to_string()).ok_or_else(|| Fail::internal(format!("path '{c}' is not pinned")))?;
                picked.insert(c.to_string(), v.clone());
            }
            Ok(picked)
        })
        .await?;
        Ok(json_response(&json!({ "Keys": keys })))
    }
}

/// A multiaddr without its `/p2p/<id>` suffix.
fn strip_p2p(s: &str) -> String {
    s.find("/p2p/").map_or_else(|| s.to_owned(), |i| s[..i].to_owned())
}

/// Whether `given` is `secret`, compared in full whatever the input, so that the time taken
/// says nothing of the secret.
pub(crate) fn same_secret(secret: &str, given: &str) -> bool {
    secret.len() == given.len() && secret.bytes().zip(given.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// The swarm's listen addresses as strings, with or without the `/p2p/` suffix.
fn listen_strings(net: &Network, with_id: bool) -> Vec<String> {
    net.listen_addrs().iter().map(|a| if with_id { a.to_string() } else { strip_p2p(&a.to_string()) }).collect()
}

/// The cumulative size of the DAG under `cid` (what Kubo reports as an added entry's
/// `Size`): the root block's length plus its links' sizes as they state them.
pub(crate) fn tsize(node: &Node, cid: &Cid) -> u64 {
    let Ok(Some(data)) = node.repo().store().get(cid) else { return 0 };
    if cid.codec() != cairn_node::merkle::hash::DAG_PB {
        return data.len() as u64;
    }
    let links: u64 = cairn_node::merkle::PbNode::decode(&data)
        .map(|n| n.links.iter().map(|l| l.tsize.unwrap_or(0)).sum())
        .unwrap_or(0);
    data.len() as u64 + links
}
