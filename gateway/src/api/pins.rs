//! The pin commands: `pin/add`, `pin/update`, `pin/rm`, `pin/ls`.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use cairn_node::merkle::Cid;
use cairn_node::store::{PinMode, PinOwner};
use cairn_node::IpfsPath;
use serde_json::json;

use super::{blocking, json_response, ndjson, parse_cid, parse_path, Answer, Api, HttpError, Params};

/// How often `pin/add?progress=true` says how far it is.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// One `pin/add`, with what it needs owned, so that it can run while its progress streams.
struct PinJob {
    paths: Vec<IpfsPath>,
    mode: PinMode,
    name: Option<String>,
    node: Arc<cairn_node::Node>,
    net: Option<cairn_node::net::Network>,
    reprovider: Option<cairn_node::services::reprovide::Reprovider>,
    /// Blocks of the DAGs met so far (held or fetched).
    progress: Arc<AtomicU64>,
}

impl PinJob {
    /// Fetches what the DAGs lack (online, recursive or depth-limited: one DAG fetch each, many
    /// blocks in flight), pins them, and announces them; the CIDs pinned.
    async fn run(mut self) -> Result<Vec<String>, HttpError> {
        if let (true, Some(net)) = (self.mode != PinMode::Direct, &self.net) {
            for path in &mut self.paths {
                let root = resolve(&self.node, path.clone()).await?;
                fetch_dag(&self.node, net, root, self.mode.max_depth(), &self.progress).await?;
                // Resolved once: the pin below starts from the root.
                *path = IpfsPath { root, rest: String::new() };
            }
        }
        let (node, paths, mode, name) = (self.node.clone(), self.paths, self.mode, self.name);
        let pinned = blocking(move || {
            let mut out = Vec::new();
            for path in &paths {
                let cid =
                    node.pin_add_mode(PinOwner::Operator, path, mode, name.clone()).map_err(HttpError::internal)?;
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

/// The CID `path` names, resolved without holding a thread while blocks arrive.
async fn resolve(node: &Arc<cairn_node::Node>, path: IpfsPath) -> Result<Cid, HttpError> {
    if path.rest.is_empty() {
        return Ok(path.root);
    }
    crate::wait::until_local(node, move |node| node.reader_nowait().resolve(&path).map_err(HttpError::node)).await
}

/// Makes every block of the DAG under `root` present, down to `max_depth` links below it
/// (all with `None`): those held are read and walked, the others fetched, many in flight at
/// once ([`cairn_node::net::Network::fetch_dag_within`]), each block met counted in `progress`.
async fn fetch_dag(
    node: &Arc<cairn_node::Node>,
    net: &cairn_node::net::Network,
    root: Cid,
    max_depth: Option<u32>,
    progress: &AtomicU64,
) -> Result<(), HttpError> {
    let timeout = node.repo().settings().map_err(HttpError::internal)?.retrieval_timeout;
    let store: cairn_node::net::SharedStore = Arc::new(cairn_node::online::NodeStore(node.clone()));
    let order = cairn_node::net::session::Order::File;
    net.fetch_dag_within(&store, root, max_depth, order, 32, timeout, progress).await.map_err(HttpError::internal)?;
    Ok(())
}

impl Api {
    /// `pin/update`: moves the recursive pin of `arg` FROM to `arg` TO (paths allowed, as in
    /// Kubo), as IPFS Cluster's connector asks for a new version of a pinned DAG. TO's blocks
    /// that the node lacks are fetched first; those it shares with FROM are held by FROM's pin
    /// and read where they are. TO is pinned (under FROM's name) before FROM is unpinned,
    /// which `unpin=false` skips ([`cairn_node::Node::pin_update`]). Answers
    /// `{"Pins": [FROM, TO]}`, the CIDs the paths name; Kubo's words when FROM is not pinned
    /// recursively or TO is already.
    pub(super) async fn pin_update(&self, p: &Params) -> Answer {
        let args = p.args();
        let (from, to) = match args[..] {
            [] => return Err(HttpError::bad("argument \"from-path\" is required")),
            [_] => return Err(HttpError::bad("argument \"to-path\" is required")),
            [from, to] => (parse_path(from)?, parse_path(to)?),
            _ => return Err(HttpError::bad(format!("expected 2 arguments, got {}", args.len()))),
        };
        let unpin = p.flag("unpin", true)?;
        // As Kubo: both paths resolved, then the pins checked, before anything is fetched.
        let (from, to) = (resolve(&self.node, from).await?, resolve(&self.node, to).await?);
        let node = self.node.clone();
        let (_, mode) = blocking(move || node.check_pin_update(&from, &to).map_err(HttpError::node)).await?;
        if let (true, Some(net)) = (from != to, &self.net) {
            fetch_dag(&self.node, net, to, mode.max_depth(), &AtomicU64::new(0)).await?;
        }
        let node = self.node.clone();
        let size = blocking(move || {
            node.pin_update(&from, &to, unpin).map_err(HttpError::node)?;
            Ok(crate::api::tsize(&node, &to))
        })
        .await?;
        if from != to {
            self.announce(&[(to, size)]).await;
        }
        Ok(json_response(&json!({ "Pins": [from.to_string(), to.to_string()] })))
    }

    /// `pin/add`. With `progress=true` (what IPFS Cluster asks for), a line
    /// `{"Progress": n}` goes out each half second while the DAG's blocks are met (held or
    /// fetched), as Kubo sends them, so that a client can tell a long pin from a stuck one;
    /// then the `{"Pins": [...]}` line. A failure then cuts the stream off.
    pub(super) async fn pin_add(&self, p: &Params) -> Answer {
        let paths = p.args().into_iter().map(parse_path).collect::<Result<Vec<_>, _>>()?;
        if paths.is_empty() {
            return Err(HttpError::bad("argument \"ipfs-path\" is required"));
        }
        // IPFS Cluster's `max-depth` (with `recursive=true`; below 0 is all the way): a
        // depth-limited pin, listed as recursive. Kubo 0.43 ignores it and pins the whole DAG.
        let mode = match (p.flag("recursive", true)?, p.get("max-depth")) {
            (false, _) => PinMode::Direct,
            (true, None) => PinMode::Recursive,
            (true, Some(d)) => PinMode::from_max_depth(
                d.parse().map_err(|_| HttpError::bad(format!("max-depth: {d:?} is not a number")))?,
            ),
        };
        let job = PinJob {
            paths,
            mode,
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
            roots.push(resolve(&self.node, path).await?);
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
        let cid = resolve(&self.node, parse_path(p.arg()?)?).await?;
        Ok(json_response(&json!({ "Path": format!("/ipfs/{cid}") })))
    }

    /// `pin/ls`. Without `stream`, the answer is one JSON object, which holds at most
    /// [`MAX_PIN_LS_ENTRIES`] pins (past that, a 400 that says to stream); with
    /// `stream=true`, a line goes out per pin as it is found, the indirect ones as the walks
    /// of the recursive pins reach them, so that the answer is never held whole. Pins asked
    /// for by `arg` are looked up one by one.
    pub(super) async fn pin_ls(&self, p: &Params) -> Answer {
        let kind = p.get("type").unwrap_or("all").to_owned();
        if !["all", "direct", "recursive", "indirect"].contains(&kind.as_str()) {
            return Err(HttpError::bad(format!(
                "invalid type {kind:?}, must be one of direct, indirect, recursive, all"
            )));
        }
        let only = p.args().into_iter().map(parse_cid).collect::<Result<Vec<_>, _>>()?;
        let stream = p.flag("stream", false)?;
        if only.is_empty() && stream {
            let fetch = crate::wait::one_block(&self.node);
            let body = crate::wait::streamed(&self.node, None, "pin/ls", fetch, move |node, tx| {
                let mut out = tx.writer();
                each_pin(node, &kind, &mut |cid, kind, name| {
                    let line = stream_line(&cid.to_string(), kind, name.unwrap_or_default());
                    writeln!(out, "{line}")
                        .map_err(|source| cairn_node::NodeError::Output { path: "the answer".into(), source })
                })
                .map_err(HttpError::internal)?;
                out.flush().map_err(HttpError::internal)
            });
            let mut r = hyper::Response::new(body);
            r.headers_mut()
                .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
            r.headers_mut().insert("X-Chunked-Output", hyper::header::HeaderValue::from_static("1"));
            return Ok(r);
        }
        let node = self.node.clone();
        let keys = blocking(move || match only.is_empty() {
            true => every_pin(&node, &kind),
            false => these_pins(&node, &kind, only),
        })
        .await?;
        if stream {
            let lines: Vec<_> = keys.into_iter().map(|(cid, (kind, name))| stream_line(&cid, kind, name)).collect();
            return Ok(ndjson(&lines));
        }
        let keys: serde_json::Map<_, _> =
            keys.into_iter().map(|(cid, (kind, name))| (cid, json!({"Type": kind, "Name": name}))).collect();
        Ok(json_response(&json!({ "Keys": keys })))
    }
}

/// Pins one `pin/ls` answer holds unless streamed (`stream=true`): some 10 MB of JSON.
pub const MAX_PIN_LS_ENTRIES: usize = 100_000;

/// Pins by CID text: their type and name (empty when none), as one answer lists them.
type Listed = std::collections::BTreeMap<String, (&'static str, String)>;

/// Kubo's streamed form of a pin: `{"Cid", "Type"}`, and `"Name"` when it has one.
fn stream_line(cid: &str, kind: &str, name: String) -> serde_json::Value {
    let mut line = json!({"Cid": cid, "Type": kind});
    if !name.is_empty() {
        line["Name"] = json!(name);
    }
    line
}

/// Hands `visit` every pin of type `kind` (`all`, `direct`, `recursive` or `indirect`), each
/// CID once: a CID several owners pin under its strongest pin (recursive or depth-limited first, then the
/// operator's own), then the indirect pins that are not pinned themselves, as the walks of
/// the recursive pins reach them. Holds the pins (not the blocks under them) and the keys of
/// the blocks walked.
fn each_pin(
    node: &cairn_node::Node,
    kind: &str,
    visit: &mut dyn FnMut(Cid, &'static str, Option<String>) -> Result<(), cairn_node::NodeError>,
) -> Result<(), cairn_node::NodeError> {
    let mut pins: Vec<_> = node.pins()?.into_iter().filter(|p| kind == "all" || kind == p.mode.as_str()).collect();
    // Per CID, the strongest pin last.
    pins.sort_by_key(|p| (p.cid.to_bytes(), p.mode != PinMode::Direct, p.owner == PinOwner::Operator));
    let mut listed = std::collections::HashSet::new();
    let mut pins = pins.into_iter().peekable();
    while let Some(pin) = pins.next() {
        if pins.peek().is_none_or(|next| next.cid != pin.cid) {
            listed.insert(pin.cid);
            visit(pin.cid, pin.mode.as_str(), pin.name)?;
        }
    }
    if kind == "all" || kind == "indirect" {
        node.each_indirect_pin(&mut |c| match listed.contains(&c) {
            true => Ok(()),
            false => visit(c, "indirect", None),
        })?;
    }
    Ok(())
}

/// Every pin of type `kind`, refused past [`MAX_PIN_LS_ENTRIES`] with a 400 that says to
/// stream.
fn every_pin(node: &cairn_node::Node, kind: &str) -> Result<Listed, HttpError> {
    let mut keys = Listed::new();
    let r = each_pin(node, kind, &mut |cid, kind, name| {
        if keys.len() >= MAX_PIN_LS_ENTRIES {
            let why = format!("more than {MAX_PIN_LS_ENTRIES} pins: ask for them with stream=true");
            return Err(cairn_node::NodeError::Quota(why));
        }
        keys.insert(cid.to_string(), (kind, name.unwrap_or_default()));
        Ok(())
    });
    match r {
        Err(cairn_node::NodeError::Quota(why)) => Err(HttpError::bad(why)),
        r => r.map(|()| keys).map_err(HttpError::internal),
    }
}

/// The pins of type `kind` of the CIDs in `only`, each of which must be pinned so (Kubo's
/// words otherwise); only they are held.
fn these_pins(node: &cairn_node::Node, kind: &str, only: Vec<Cid>) -> Result<Listed, HttpError> {
    let mut wanted: std::collections::HashSet<Cid> = only.iter().copied().collect();
    let mut keys = Listed::new();
    let r = each_pin_of(node, kind, &mut wanted, &mut |cid, kind, name| {
        keys.insert(cid.to_string(), (kind, name.unwrap_or_default()));
    });
    r.map_err(HttpError::internal)?;
    match only.iter().find(|c| !keys.contains_key(&c.to_string())) {
        Some(c) => Err(HttpError::internal(format!("path '{c}' is not pinned"))),
        None => Ok(keys),
    }
}

/// [`each_pin`] for the CIDs in `wanted` only, each found taken out of it: their own pins
/// looked up, then (for `all` and `indirect`) the walks of the recursive pins, skipped when
/// nothing is left to find. Holds none of the blocks walked but their keys.
fn each_pin_of(
    node: &cairn_node::Node,
    kind: &str,
    wanted: &mut std::collections::HashSet<Cid>,
    found: &mut dyn FnMut(Cid, &'static str, Option<String>),
) -> Result<(), cairn_node::NodeError> {
    for cid in wanted.clone() {
        let strongest = node
            .pins_of(&cid)?
            .into_iter()
            .filter(|p| kind == "all" || kind == p.mode.as_str())
            .max_by_key(|p| (p.mode != PinMode::Direct, p.owner == PinOwner::Operator));
        if let Some(pin) = strongest {
            wanted.remove(&cid);
            found(cid, pin.mode.as_str(), pin.name);
        }
    }
    if (kind == "all" || kind == "indirect") && !wanted.is_empty() {
        node.each_indirect_pin(&mut |c| {
            if wanted.remove(&c) {
                found(c, "indirect", None);
            }
            Ok(())
        })?;
    }
    Ok(())
}
