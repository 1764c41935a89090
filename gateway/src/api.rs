//! The RPC API: a subset of Kubo's `/api/v0`, served by `cairn daemon` on `Addresses.API`.
//!
//! As in Kubo, every command is a `POST` (anything else is 405, so that a web page cannot
//! trigger commands with a plain link), arguments are query parameters (`arg` repeated for
//! positional ones), and answers are JSON, newline-delimited JSON for streams, or raw bytes for
//! `cat`. Errors are JSON `{"Message", "Code": 0, "Type": "error"}` with status 500 (400 for a
//! bad argument), as Kubo's clients expect.
//!
//! Commands: `version`, `id`, `swarm/peers`, `swarm/connect`, `swarm/addrs/listen`,
//! `routing/provide`, `routing/findprovs`, `routing/reprovide`, `add` (multipart), `cat`, `get` (tar), `pin/add`, `pin/update`, `pin/rm`,
//! `pin/ls`, `ls`, `block/get|put|stat|rm`, `dag/export|import`, `repo/gc|stat|verify`,
//! `manifest/sign|verify`, `pin/verify`, `follow/add|rm|ls`, `shutdown`. Adding or pinning
//! announces the new roots on the DHT (per
//! `Reprovider.Strategy`) and as an availability hint.
//!
//! This file holds what every command shares (errors, parameters, who may call) and the
//! dispatch; the commands are in `api/`, one file per family: `net.rs` (`id`, `swarm/*`,
//! `routing/*`, `bitswap/stat`), `read.rs` (`cat`, `get`, and the reads that wait for
//! blocks), `pins.rs` (`pin/add|update|rm|ls`), `store.rs` (`ls`, `block/*`, `dag/*`, `repo/*`),
//! `add.rs` (`add` uploads), `manifest.rs` (`manifest/*`, `pin/verify`, `follow/*`), and
//! `guard.rs` (origins, hosts and `API.Authorizations`).

use std::sync::Arc;

use cairn_node::add::AddOptions;
use cairn_node::merkle::chunker::ChunkerSpec;
use cairn_node::merkle::hash::HashAlg;
use cairn_node::merkle::importer::{AddFlags, ImportOptions, Profile};
use cairn_node::merkle::Cid;
use cairn_node::net::Network;
use cairn_node::services::reprovide::Reprovider;
use cairn_node::{BlockStore, IpfsPath, Node};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};

use crate::body::{self, Body};
use crate::error::HttpError;

mod add;
mod guard;
mod manifest;
mod net;
mod pins;
mod read;
mod store;

pub use pins::MAX_PIN_LS_ENTRIES;
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

type Answer = Result<Response<Body>, HttpError>;

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
    fn arg(&self) -> Result<&str, HttpError> {
        self.get("arg").ok_or_else(|| HttpError::bad("argument \"arg\" is required"))
    }
    fn flag(&self, key: &str, default: bool) -> Result<bool, HttpError> {
        match self.get(key) {
            None => Ok(default),
            Some("" | "true" | "1") => Ok(true),
            Some("false" | "0") => Ok(false),
            Some(v) => Err(HttpError::bad(format!("{key}: {v:?} is not a boolean"))),
        }
    }
    fn number(&self, key: &str) -> Result<Option<u64>, HttpError> {
        self.get(key)
            .map(|v| v.parse().map_err(|_| HttpError::bad(format!("{key}: {v:?} is not a number"))))
            .transpose()
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

fn failure(f: HttpError) -> Response<Body> {
    let mut r = json_response(&json!({"Message": f.message, "Code": 0, "Type": "error"}));
    *r.status_mut() = f.status;
    r
}

fn parse_cid(s: &str) -> Result<Cid, HttpError> {
    let s = s.strip_prefix("/ipfs/").unwrap_or(s);
    s.parse::<Cid>().map_err(|e| HttpError::bad(format!("invalid CID {s:?}: {e}")))
}

fn parse_path(s: &str) -> Result<IpfsPath, HttpError> {
    s.parse::<IpfsPath>().map_err(|e| HttpError::bad(e.to_string()))
}

/// Runs blocking repo work off the runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, HttpError> + Send + 'static,
) -> Result<T, HttpError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| HttpError::internal(format!("task failed: {e}")))?
}

/// The import settings from `add`'s parameters, named as in Kubo: each parameter given, then
/// the node's `Import.*` config (`config`), then Kubo's defaults; or, with `profile` (a Cairn
/// addition), the parameters over the IPIP-499 profile it names, the config left aside.
fn add_options(p: &Params, config: &AddFlags) -> Result<AddOptions, HttpError> {
    let size = |key| -> Result<Option<usize>, HttpError> {
        p.number(key)?
            .map(|n| usize::try_from(n).map_err(|_| HttpError::bad(format!("{key} {n} is out of range"))))
            .transpose()
    };
    let given = |key| p.get(key).map(|_| p.flag(key, true)).transpose();
    let flags = AddFlags {
        cid_version: p.number("cid-version")?.map(|v| u8::try_from(v).unwrap_or(u8::MAX)),
        raw_leaves: given("raw-leaves")?,
        hash: p.get("hash").map(str::parse::<HashAlg>).transpose().map_err(HttpError::bad)?,
        chunker: p.get("chunker").map(str::parse::<ChunkerSpec>).transpose().map_err(HttpError::bad)?,
        trickle: given("trickle")?,
        max_file_links: size("max-file-links")?,
        max_directory_links: size("max-directory-links")?,
        max_hamt_fanout: p.number("max-hamt-fanout")?,
        ..AddFlags::default()
    };
    let profile = p.get("profile").map(str::parse::<Profile>).transpose().map_err(HttpError::bad)?;
    let import = match profile {
        Some(profile) => ImportOptions::resolve(Some(profile.options()), &flags),
        None => ImportOptions::resolve(None, &flags.or(config)),
    }
    .map_err(HttpError::bad)?;
    Ok(AddOptions {
        import,
        recursive: true,
        hidden: p.flag("hidden", true)?,
        empty_dirs: p.flag("empty-dirs", true)?,
        ..AddOptions::default()
    })
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

    fn net(&self) -> Result<&Network, HttpError> {
        self.net.as_ref().ok_or_else(|| HttpError::internal("this command must be run in online mode"))
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
            failure(HttpError::new(StatusCode::FORBIDDEN, "a valid API.Authorizations secret is required"))
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
            let mut r = failure(HttpError::new(StatusCode::METHOD_NOT_ALLOWED, "the RPC API takes POST only"));
            r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
            return r;
        }
        let Some(command) = req.uri().path().strip_prefix("/api/v0/").map(str::to_owned) else {
            return failure(HttpError::new(StatusCode::NOT_FOUND, format!("{} is not an API path", req.uri().path())));
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
                self.net().map(|n| json_response(&json!({"Strings": net::listen_strings(n, false)})))
            }
            "routing/provide" | "dht/provide" => self.provide(&p).await,
            "routing/findprovs" | "dht/findprovs" => self.findprovs(&p).await,
            "routing/reprovide" | "bitswap/reprovide" => self.reprovide().await,
            "add" => self.add(req, &p).await,
            "cat" => self.cat(&p).await,
            "get" => self.get(&p).await,
            "pin/add" => self.pin_add(&p).await,
            "pin/update" => self.pin_update(&p).await,
            "pin/rm" => self.pin_rm(&p).await,
            "pin/ls" => self.pin_ls(&p).await,
            "resolve" => self.resolve(&p).await,
            "config/show" => self.config_show().await,
            "pin/verify" => self.pin_verify(&p).await,
            "ls" => self.ls(&p).await,
            "block/get" => self.block_get(&p).await,
            "block/stat" => self.block_stat(&p).await,
            "block/put" => self.block_put(req, &p).await,
            "block/rm" => self.block_rm(&p).await,
            "dag/export" => self.dag_export(&p).await,
            "dag/import" => self.dag_import(req, &p).await,
            "repo/gc" => self.repo_gc(&p).await,
            "repo/stat" => self.repo_stat(&p).await,
            "repo/verify" => self.repo_verify().await,
            "manifest/sign" => self.manifest_sign(&p).await,
            "manifest/verify" => self.manifest_verify(&p).await,
            "follow/add" | "follow/rm" | "follow/ls" => self.follow(&command, &p).await,
            "shutdown" => {
                let _ = self.stop.try_send(());
                Ok(Response::new(body::empty()))
            }
            other => Err(HttpError::new(StatusCode::NOT_FOUND, format!("unknown command {other:?}"))),
        };
        answer.unwrap_or_else(failure)
    }
}

/// Whether `given` is `secret`, compared in full whatever the input, so that the time taken
/// says nothing of the secret.
pub(crate) fn same_secret(secret: &str, given: &str) -> bool {
    secret.len() == given.len() && secret.bytes().zip(given.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
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
