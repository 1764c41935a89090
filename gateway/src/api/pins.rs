//! The pin commands: `pin/add`, `pin/rm`, `pin/ls`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use cairn_node::IpfsPath;
use serde_json::json;

use super::{blocking, json_response, ndjson, parse_cid, parse_path, Answer, Api, HttpError, Params};

/// How often `pin/add?progress=true` says how far it is.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// One `pin/add`, with what it needs owned, so that it can run while its progress streams.
struct PinJob {
    paths: Vec<IpfsPath>,
    recursive: bool,
    name: Option<String>,
    node: Arc<cairn_node::Node>,
    net: Option<cairn_node::net::Network>,
    reprovider: Option<cairn_node::services::reprovide::Reprovider>,
    /// Blocks of the DAGs met so far (held or fetched).
    progress: Arc<AtomicU64>,
}

impl PinJob {
    /// Fetches what the DAGs lack (online, recursive: one DAG fetch each, many blocks in
    /// flight), pins them, and announces them; the CIDs pinned.
    async fn run(mut self) -> Result<Vec<String>, HttpError> {
        if let (true, Some(net)) = (self.recursive, &self.net) {
            let timeout = self.node.repo().settings().map_err(HttpError::internal)?.retrieval_timeout;
            let store: cairn_node::net::SharedStore = Arc::new(cairn_node::online::NodeStore(self.node.clone()));
            for path in &mut self.paths {
                let p = path.clone();
                let root = crate::wait::until_local(&self.node, move |node| {
                    node.reader_nowait().resolve(&p).map_err(HttpError::node)
                })
                .await?;
                let order = cairn_node::net::session::Order::File;
                net.fetch_dag_counting(&store, root, order, 32, timeout, &self.progress)
                    .await
                    .map_err(HttpError::internal)?;
                // Resolved once: the pin below starts from the root.
                *path = IpfsPath { root, rest: String::new() };
            }
        }
        let (node, paths, recursive, name) = (self.node.clone(), self.paths, self.recursive, self.name);
        let pinned = blocking(move || {
            let mut out = Vec::new();
            for path in &paths {
                let cid = node.pin_add(path, recursive, name.clone()).map_err(HttpError::internal)?;
                let size = node.stat_path(&IpfsPath { root: cid, rest: String::new() }).map(|s| s.size).unwrap_or(0);
                out.push((cid, size));
            }
            Ok(out)
        })
        .await?;
        super::net::announce(self.net.as_ref(), self.reprovider.as_ref(), &pinned).await;
        Ok(pinned.iter().map(|(c, _)| c.to_string()).collect())
    }
}

impl Api {
    /// `pin/add`. With `progress=true` (what IPFS Cluster asks for), a line
    /// `{"Progress": n}` goes out each half second while the DAG's blocks are met (held or
    /// fetched), as Kubo sends them, so that a client can tell a long pin from a stuck one;
    /// then the `{"Pins": [...]}` line. A failure then cuts the stream off.
    pub(super) async fn pin_add(&self, p: &Params) -> Answer {
        let paths = p.args().into_iter().map(parse_path).collect::<Result<Vec<_>, _>>()?;
        if paths.is_empty() {
            return Err(HttpError::bad("argument \"ipfs-path\" is required"));
        }
        let job = PinJob {
            paths,
            recursive: p.flag("recursive", true)?,
            name: p.get("name").map(str::to_owned),
            node: self.node.clone(),
            net: self.net.clone(),
            reprovider: self.reprovider.clone(),
            progress: Arc::default(),
        };
        if !p.flag("progress", false)? {
            return Ok(json_response(&json!({ "Pins": job.run().await? })));
        }
        let (tx, body) = crate::body::channel(None);
        tokio::spawn(async move {
            let progress = job.progress.clone();
            // The pin runs on its own, so that a client slow to take the progress lines
            // never holds it back; one that leaves does not stop it either.
            let mut work = tokio::spawn(job.run());
            let mut tick = tokio::time::interval(PROGRESS_EVERY);
            let mut told = 0;
            let send = async |line: serde_json::Value| {
                tx.send(format!("{line}\n").into())?;
                tx.drain().await
            };
            let pins = loop {
                tokio::select! {
                    done = &mut work => break done,
                    _ = tick.tick() => {
                        let n = progress.load(Ordering::Relaxed);
                        if n != told {
                            told = n;
                            if send(json!({ "Progress": n })).await.is_err() {
                                return; // The client left.
                            }
                        }
                    }
                }
            };
            match pins {
                Ok(Ok(pins)) => drop(send(json!({ "Pins": pins })).await),
                Ok(Err(e)) => tx.fail_async(std::io::Error::other(e.message)).await,
                Err(e) => tx.fail_async(std::io::Error::other(format!("the pin's task failed: {e}"))).await,
            }
        });
        let mut r = hyper::Response::new(body);
        r.headers_mut()
            .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
        r.headers_mut().insert("X-Chunked-Output", hyper::header::HeaderValue::from_static("1"));
        Ok(r)
    }

    pub(super) async fn pin_rm(&self, p: &Params) -> Answer {
        let paths = p.args().into_iter().map(parse_path).collect::<Result<Vec<_>, _>>()?;
        // Paths are resolved first, without holding a thread while blocks arrive.
        let mut roots = Vec::with_capacity(paths.len());
        for path in paths {
            roots.push(match path.rest.is_empty() {
                true => path.root,
                false => self.read(move |node| node.reader_nowait().resolve(&path).map_err(HttpError::node)).await?,
            });
        }
        let node = self.node.clone();
        let removed = blocking(move || {
            let mut removed = Vec::with_capacity(roots.len());
            for root in roots {
                let cid = node.pin_rm(&IpfsPath { root, rest: String::new() }).map_err(|e| match e {
                    // Kubo's words, which IPFS Cluster's connector looks for.
                    cairn_node::NodeError::NotPinned(_) => HttpError::internal("not pinned or pinned indirectly"),
                    e => HttpError::internal(e),
                })?;
                removed.push(cid.to_string());
            }
            Ok(removed)
        })
        .await?;
        Ok(json_response(&json!({ "Pins": removed })))
    }

    /// `resolve`: the CID an `/ipfs/` path names, as `{"Path": "/ipfs/<cid>"}`.
    pub(super) async fn resolve(&self, p: &Params) -> Answer {
        let path = parse_path(p.arg()?)?;
        let cid = match path.rest.is_empty() {
            true => path.root,
            false => self.read(move |node| node.reader_nowait().resolve(&path).map_err(HttpError::node)).await?,
        };
        Ok(json_response(&json!({ "Path": format!("/ipfs/{cid}") })))
    }

    pub(super) async fn pin_ls(&self, p: &Params) -> Answer {
        let kind = p.get("type").unwrap_or("all").to_owned();
        if !["all", "direct", "recursive", "indirect"].contains(&kind.as_str()) {
            return Err(HttpError::bad(format!(
                "invalid type {kind:?}, must be one of direct, indirect, recursive, all"
            )));
        }
        let only = p.args().into_iter().map(parse_cid).collect::<Result<Vec<_>, _>>()?;
        let node = self.node.clone();
        let keys = blocking(move || {
            let mut keys = serde_json::Map::new();
            // A CID several owners pin is listed once, under its strongest pin (recursive
            // first, then the operator's own).
            let mut pins = node.pins().map_err(HttpError::internal)?;
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
                for c in node.indirect_pins().map_err(HttpError::internal)? {
                    keys.entry(c.to_string()).or_insert_with(|| json!({"Type": "indirect", "Name": ""}));
                }
            }
            if only.is_empty() {
                return Ok(keys);
            }
            let mut picked = serde_json::Map::new();
            for c in only {
                let v =
                    keys.get(&c.to_string()).ok_or_else(|| HttpError::internal(format!("path '{c}' is not pinned")))?;
                picked.insert(c.to_string(), v.clone());
            }
            Ok(picked)
        })
        .await?;
        if p.get("stream") == Some("true") {
            // Kubo's streamed form: a line a pin, `{"Cid", "Type"}` (and `"Name"` when set).
            let lines: Vec<_> = keys
                .into_iter()
                .map(|(cid, v)| {
                    let mut line = json!({"Cid": cid, "Type": v["Type"]});
                    if v["Name"].as_str().is_some_and(|n| !n.is_empty()) {
                        line["Name"] = v["Name"].clone();
                    }
                    line
                })
                .collect();
            return Ok(ndjson(&lines));
        }
        Ok(json_response(&json!({ "Keys": keys })))
    }
}
