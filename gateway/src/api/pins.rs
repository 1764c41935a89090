//! The pin commands: `pin/add`, `pin/rm`, `pin/ls`.

use std::sync::Arc;

use cairn_node::IpfsPath;
use serde_json::json;

use super::{blocking, json_response, ndjson, parse_cid, parse_path, Answer, Api, HttpError, Params};

impl Api {
    pub(super) async fn pin_add(&self, p: &Params) -> Answer {
        let mut paths = p.args().into_iter().map(parse_path).collect::<Result<Vec<_>, _>>()?;
        if paths.is_empty() {
            return Err(HttpError::bad("argument \"ipfs-path\" is required"));
        }
        let recursive = p.flag("recursive", true)?;
        let name = p.get("name").map(str::to_owned);
        // Online, a recursive pin's missing blocks are fetched as one DAG fetch (many blocks
        // in flight) rather than one by one as the pin's walk meets them.
        if let (true, Some(net)) = (recursive, &self.net) {
            let timeout = self.node.repo().settings().map_err(HttpError::internal)?.retrieval_timeout;
            let store: cairn_node::net::SharedStore = Arc::new(cairn_node::online::NodeStore(self.node.clone()));
            for path in &mut paths {
                let p = path.clone();
                let root = self.read(move |node| node.reader_nowait().resolve(&p).map_err(HttpError::node)).await?;
                net.fetch_dag(&store, root, cairn_node::net::session::Order::File, 32, timeout)
                    .await
                    .map_err(HttpError::internal)?;
                // Resolved once: the pin below starts from the root.
                *path = IpfsPath { root, rest: String::new() };
            }
        }
        let node = self.node.clone();
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
        self.announce(&pinned).await;
        let list: Vec<String> = pinned.iter().map(|(c, _)| c.to_string()).collect();
        Ok(json_response(&json!({ "Pins": list })))
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
