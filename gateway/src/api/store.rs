//! The API's repo commands: `ls`, `block/get|put|stat|rm`, `dag/export|import` and
//! `repo/gc|stat|verify`, with Kubo's parameters and answers.

use bytes::Bytes;
use cairn_node::block_put::{BlockPut, BlockPutFlags};
use cairn_node::merkle::car::{CarWriter, DagWalk};
use cairn_node::merkle::exporter::{ExportError, NodeKind};
use cairn_node::merkle::{BlockSource, SourceError};
use cairn_node::read::Listing;
use cairn_node::IpfsPath;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response};
use serde_json::{json, Value};

use super::add::{body_error, feed_field, refuse_after_body, refuse_after_parts, ChunkReader};
use super::{blocking, json_response, ndjson, parse_path, Answer, Api, HttpError, Params};
use crate::body;

/// Entries one `ls` answer holds unless streamed (`stream=true`): about 20 MB of JSON.
pub const MAX_LS_ENTRIES: usize = 100_000;

/// One entry of an `ls` answer, as Kubo writes it.
fn ls_link(item: cairn_node::merkle::exporter::DirItem, stat: Option<cairn_node::merkle::exporter::Stat>) -> Value {
    let kind = stat.as_ref().map(|s| s.kind);
    let size = match &stat {
        Some(s) if s.kind.is_dir() => 0,
        Some(s) => s.size,
        None => item.tsize,
    };
    let mode = stat.as_ref().and_then(|s| s.mode).unwrap_or(0);
    let mtime = mod_time(stat.as_ref().and_then(|s| s.mtime));
    let target = stat.and_then(|s| s.target).unwrap_or_default();
    json!({
        "Name": item.name,
        "Hash": item.cid.to_string(),
        "Size": size,
        "Type": unixfs_type(kind),
        "Target": target,
        "Mode": mode,
        "ModTime": mtime,
    })
}

/// A UnixFS modification time as Kubo 0.43's `ls` writes it: RFC 3339 in UTC, and Go's zero
/// time, `0001-01-01T00:00:00Z`, when the node records none (or one out of range).
fn mod_time(mtime: Option<(i64, u32)>) -> String {
    const NONE: &str = "0001-01-01T00:00:00Z";
    let Some((secs, nanos)) = mtime else { return NONE.to_owned() };
    let at = time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.replace_nanosecond(nanos).ok())
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok());
    at.unwrap_or_else(|| NONE.to_owned())
}

/// Kubo's UnixFS type numbers in `ls` answers.
fn unixfs_type(kind: Option<NodeKind>) -> u8 {
    match kind {
        Some(NodeKind::Directory | NodeKind::HamtDirectory) => 1,
        Some(NodeKind::File) => 2,
        Some(NodeKind::Symlink) => 4,
        None => 0,
    }
}

impl Api {
    /// Kubo's `ls`. With `stream=true` each entry goes out as it is read, one NDJSON object
    /// per entry (Kubo's streaming form), in constant memory; without it the answer is one
    /// JSON object, which holds at most [`MAX_LS_ENTRIES`] entries (past that, a 400 that
    /// says to stream). A listing stopped at a block being fetched waits for it holding no
    /// thread and goes on from the entry it stopped at; so does a streamed listing whose
    /// client is slower than it.
    pub(super) async fn ls(&self, p: &Params) -> Answer {
        let args: Vec<String> = p.args().into_iter().map(str::to_owned).collect();
        if args.is_empty() {
            return Err(HttpError::bad("argument \"ipfs-path\" is required"));
        }
        let paths = args.iter().map(|a| parse_path(a)).collect::<Result<Vec<_>, _>>()?;
        // Where the listing is: the argument, and the listing of it under way.
        let (mut at, mut listing) = (0usize, None::<Listing>);
        if p.flag("stream", false)? {
            let one = crate::wait::one_block::<HttpError>(&self.node);
            let body = crate::wait::streamed(&self.node, None, "ls", one, move |node, tx| {
                let reader = node.reader_nowait();
                while let Some(path) = paths.get(at) {
                    let open = match &mut listing {
                        Some(l) => l,
                        none => none.insert(Listing::new(reader.resolve(path).map_err(HttpError::node)?)),
                    };
                    let dir = open.dir();
                    let r = reader.ls_on(open, &mut |item, stat| {
                        let line = json!({"Objects": [{"Hash": args[at], "Links": [ls_link(item, stat)]}]});
                        tx.send(Bytes::from(format!("{line}\n")))
                            .map_err(|source| cairn_node::NodeError::Output { path: "the answer".into(), source })?;
                        // A slow client: stop after this entry, letting the thread go (as
                        // at a block being fetched, one the node holds).
                        match tx.paused() {
                            true => Err(ExportError::Source(SourceError::Pending(dir)).into()),
                            false => Ok(()),
                        }
                    });
                    r.map_err(HttpError::node)?;
                    (at, listing) = (at + 1, None);
                }
                Ok(())
            });
            let mut r = Response::new(body);
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            r.headers_mut().insert("X-Chunked-Output", HeaderValue::from_static("1"));
            return Ok(r);
        }
        let (mut objects, mut links) = (Vec::new(), Vec::new());
        let objects = self
            .read(move |node| {
                let reader = node.reader_nowait();
                while let Some(path) = paths.get(at) {
                    let arg = &args[at];
                    let open = match &mut listing {
                        Some(l) => l,
                        none => none.insert(Listing::new(reader.resolve(path).map_err(HttpError::node)?)),
                    };
                    let r = reader.ls_on(open, &mut |item, stat| {
                        if links.len() >= MAX_LS_ENTRIES {
                            let why =
                                format!("{arg} has more than {MAX_LS_ENTRIES} entries: ask for them with stream=true");
                            return Err(cairn_node::NodeError::Quota(why));
                        }
                        links.push(ls_link(item, stat));
                        Ok(())
                    });
                    match r {
                        Err(cairn_node::NodeError::Quota(why)) => return Err(HttpError::bad(why)),
                        r => r.map_err(HttpError::node)?,
                    }
                    objects.push(json!({"Hash": arg, "Links": std::mem::take(&mut links)}));
                    (at, listing) = (at + 1, None);
                }
                Ok(std::mem::take(&mut objects))
            })
            .await?;
        Ok(json_response(&json!({ "Objects": objects })))
    }

    pub(super) async fn block_get(&self, p: &Params) -> Answer {
        let path = parse_path(p.arg()?)?;
        let node = self.node.clone();
        let data = blocking(move || {
            node.block_get(&node.resolve(&path).map_err(HttpError::internal)?).map_err(HttpError::internal)
        })
        .await?;
        let mut r = Response::new(body::full(data));
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
        Ok(r)
    }

    pub(super) async fn block_stat(&self, p: &Params) -> Answer {
        let path = parse_path(p.arg()?)?;
        let node = self.node.clone();
        let (cid, size) = blocking(move || {
            let cid = node.resolve(&path).map_err(HttpError::internal)?;
            Ok((cid, node.block_get(&cid).map_err(HttpError::internal)?.len()))
        })
        .await?;
        Ok(json_response(&json!({"Key": cid.to_string(), "Size": size})))
    }

    /// `block/put`: each part is one block, named as Kubo 0.43 names it from `cid-codec`,
    /// `format`, `mhtype` and `mhlen` ([`BlockPut`]), checked (size, codec) and stored as it
    /// arrives, so memory holds one block at a time. The blocks are pinned, when asked, only
    /// once the whole body is in: a refused or cut-off upload pins nothing (the blocks stored
    /// before it are left unpinned, for the collector).
    pub(super) async fn block_put(&self, req: Request<hyper::body::Incoming>, p: &Params) -> Answer {
        let options = || {
            let mhlen = match p.get("mhlen") {
                None => None,
                Some(v) => Some(v.parse::<i64>().map_err(|_| HttpError::bad(format!("mhlen: {v:?} is not a number")))?),
            };
            let flags = BlockPutFlags {
                cid_codec: p.get("cid-codec"),
                format: p.get("format"),
                mhtype: p.get("mhtype"),
                mhlen,
                allow_big_block: p.flag("allow-big-block", false)?,
            };
            // Kubo answers 500 to each of these refusals.
            Ok((BlockPut::new(&flags).map_err(HttpError::internal)?, p.flag("pin", false)?))
        };
        let (opts, pin) = match options() {
            Ok(options) => options,
            Err(e) => return Err(refuse_after_body(req, e).await),
        };
        let mut parts = self.multipart(req, "block/put")?;
        let mut stored = Vec::new();
        while let Some(mut field) = parts.next_field().await.map_err(|e| body_error(&e))? {
            if stored.len() >= self.limits.entries {
                return Err(HttpError::bad(format!(
                    "the upload has more than {} parts (API.MaxUploadEntries)",
                    self.limits.entries
                )));
            }
            let mut data = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(|e| body_error(&e))? {
                if let Err(e) = opts.check_size(data.len() + chunk.len()) {
                    return Err(refuse_after_parts(&mut field, &mut parts, HttpError::internal(e)).await);
                }
                data.extend_from_slice(&chunk);
            }
            let size = data.len();
            let block = opts.block(Bytes::from(data)).map_err(HttpError::internal)?;
            let node = self.node.clone();
            let cid = blocking(move || node.put_block(block).map_err(HttpError::internal)).await?;
            stored.push((cid, size));
        }
        if stored.is_empty() {
            // Kubo's words.
            return Err(HttpError::bad("file argument 'data' is required"));
        }
        if pin {
            let node = self.node.clone();
            let cids: Vec<_> = stored.iter().map(|(c, _)| *c).collect();
            blocking(move || {
                for cid in cids {
                    node.pin_add(&IpfsPath { root: cid, rest: String::new() }, true, None)
                        .map_err(HttpError::internal)?;
                }
                Ok(())
            })
            .await?;
        }
        let lines: Vec<Value> =
            stored.iter().map(|(cid, size)| json!({"Key": cid.to_string(), "Size": size})).collect();
        Ok(ndjson(&lines))
    }

    /// `block/rm`: one line per block, `Error` set for a block that could not be removed.
    pub(super) async fn block_rm(&self, p: &Params) -> Answer {
        let cids: Vec<_> = p.args().into_iter().map(|a| parse_path(a).map(|p| p.root)).collect::<Result<_, _>>()?;
        if cids.is_empty() {
            return Err(HttpError::bad("argument \"cid\" is required"));
        }
        let force = p.flag("force", false)?;
        let node = self.node.clone();
        let lines = blocking(move || {
            let results = node.block_rm(&cids).map_err(HttpError::internal)?;
            Ok(cids
                .iter()
                .zip(results)
                .map(|(cid, r)| {
                    let err = match r {
                        Ok(()) => String::new(),
                        Err(cairn_node::NodeError::NotFound(_)) if force => String::new(),
                        Err(e) => e.to_string(),
                    };
                    json!({"Hash": cid.to_string(), "Error": err})
                })
                .collect::<Vec<_>>())
        })
        .await?;
        Ok(ndjson(&lines))
    }

    /// `dag/export`: the DAG as a CARv1 stream, each block once. A missing root is an error
    /// answer; a block missing further down can only cut the stream. The walk keeps its
    /// place while blocks are fetched (all that is missing of the DAG at its first stop).
    pub(super) async fn dag_export(&self, p: &Params) -> Answer {
        let path = parse_path(p.arg()?)?;
        let root = self
            .read(move |node| {
                let reader = node.reader_nowait();
                let cid = reader.resolve(&path).map_err(HttpError::node)?;
                reader.source().get(&cid).map_err(|e| HttpError::node(ExportError::Source(e).into()))?;
                Ok(cid)
            })
            .await?;
        let mut walking: Option<(CarWriter<body::ChunkWriter>, DagWalk)> = None;
        let body = crate::wait::streamed(&self.node, None, "dag/export", self.dag_fetch(root), move |node, tx| {
            let (mut car, mut walk) = match walking.take() {
                Some(w) => w,
                None => (CarWriter::new(tx.writer(), &[root]).map_err(HttpError::internal)?, DagWalk::new(root)),
            };
            let source = crate::wait::Paced::new(*node.reader_nowait().source(), tx);
            if let Err(e) = car.write_walk(&source, &mut walk) {
                let e = HttpError::node(e.into());
                walking = Some((car, walk));
                return Err(e);
            }
            car.finish().map(drop).map_err(HttpError::internal)
        });
        let mut r = Response::new(body);
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/vnd.ipld.car"));
        r.headers_mut().insert("X-Stream-Output", HeaderValue::from_static("1"));
        Ok(r)
    }

    /// `dag/import`: each part is a CAR, streamed into the importer as it arrives. Roots are
    /// pinned only once every block of their CAR is stored, so an upload cut off mid-part
    /// pins nothing.
    pub(super) async fn dag_import(&self, req: Request<hyper::body::Incoming>, p: &Params) -> Answer {
        let pin = p.flag("pin-roots", true)?;
        let stats = p.flag("stats", false)?;
        let mut parts = self.multipart(req, "dag/import")?;
        let (mut roots, mut blocks, mut bytes) = (Vec::new(), 0u64, 0u64);
        while let Some(mut field) = parts.next_field().await.map_err(|e| body_error(&e))? {
            let (tx, mut reader) = ChunkReader::channel();
            let node = self.node.clone();
            let import = tokio::task::spawn_blocking(move || {
                let mut n = 0u64;
                let r = node.dag_import(&mut reader, pin, &mut |b| n += b);
                r.map(|(roots, blocks)| (roots, blocks, n))
            });
            // A reader that stops early has its error below.
            if let Err(e) = feed_field(&mut field, &tx).await {
                drop(tx);
                let _ = import.await;
                return Err(e);
            }
            drop(tx);
            let (r, b, n) = import
                .await
                .map_err(|e| HttpError::internal(format!("task failed: {e}")))?
                .map_err(|e| HttpError::bad(format!("importing a CAR: {e}")))?;
            roots.extend(r);
            blocks += b;
            bytes += n;
        }
        let mut lines: Vec<Value> = if pin {
            roots.iter().map(|r| json!({"Root": {"Cid": {"/": r.to_string()}, "PinErrorMsg": ""}})).collect()
        } else {
            Vec::new()
        };
        if stats {
            lines.push(json!({"Stats": {"BlockCount": blocks, "BlockBytesCount": bytes}}));
        }
        if pin {
            let announced: Vec<_> = roots.iter().map(|r| (*r, 0)).collect();
            self.announce(&announced).await;
        }
        Ok(ndjson(&lines))
    }

    /// `repo/gc`: Kubo streams a line per removed block; Cairn's collector counts rather
    /// than lists, so the answer is one line with the totals.
    /// `repo/gc`: as Kubo answers, a line `{"Key": {"/": cid}}` a block removed, streamed as
    /// the collection goes, and `{"Error"}` lines for the holes that stop it (blocks of pinned
    /// DAGs that are missing: nothing is removed then). With `summary=true` (Cairn's CLI),
    /// one line of counts instead: `{"RemovedBlocks", "RemovedBytes", "KeptBlocks", "Holes"}`.
    pub(super) async fn repo_gc(&self, p: &Params) -> Answer {
        if p.flag("summary", false)? {
            let node = self.node.clone();
            let report = blocking(move || node.gc().map_err(HttpError::internal)).await?;
            return Ok(ndjson(&[json!({
                "RemovedBlocks": report.removed_blocks,
                "RemovedBytes": report.removed_bytes,
                "KeptBlocks": report.kept_blocks,
                "Holes": report.holes.iter().map(ToString::to_string).collect::<Vec<_>>(),
            })]));
        }
        let fetch = crate::wait::one_block(&self.node);
        let body = crate::wait::streamed(&self.node, None, "repo gc", fetch, move |node, tx| {
            let send = |line: Value| tx.send(format!("{line}\n").into()).map_err(HttpError::internal);
            let mut cut = None;
            let report = node
                .gc_reporting(&mut |cids| {
                    for cid in cids {
                        if cut.is_none() {
                            cut = send(json!({"Key": {"/": cid.to_string()}})).err();
                        }
                    }
                })
                .map_err(HttpError::internal)?;
            if let Some(e) = cut {
                return Err(e);
            }
            for hole in report.holes {
                send(json!({"Error": format!(
                    "block {hole} of a pinned DAG is missing or unreadable: nothing removed until it is repaired or unpinned"
                )}))?;
            }
            Ok(())
        });
        let mut r = Response::new(body);
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        r.headers_mut().insert("X-Chunked-Output", HeaderValue::from_static("1"));
        Ok(r)
    }

    /// `config/show`: the config, as `cairn config show` prints it, without its secrets:
    /// every value under a key that names one (`...Secret`, `...Token(s)`, `...Password`,
    /// `PrivKey`, an API `Key`) is `<redacted>`, and user names and passwords in URLs are
    /// taken out, whatever section (known, or carried over from Kubo) they are in.
    pub(super) async fn config_show(&self) -> Answer {
        let mut v = serde_json::to_value(self.node.repo().config()).map_err(HttpError::internal)?;
        redact(&mut v);
        Ok(json_response(&v))
    }

    pub(super) async fn repo_stat(&self, p: &Params) -> Answer {
        let size_only = p.flag("size-only", false)?;
        let node = self.node.clone();
        let (stat, max) = blocking(move || {
            let stat = node.stat().map_err(HttpError::internal)?;
            let max = node.repo().config().datastore.storage_max.clone();
            Ok((stat, cairn_node::config::parse_size(&max).unwrap_or(0)))
        })
        .await?;
        let mut v = json!({"RepoSize": stat.disk_bytes, "StorageMax": max});
        if !size_only {
            v["NumObjects"] = json!(stat.store.blocks);
            v["RepoPath"] = json!(stat.path.display().to_string());
            v["Version"] = json!(format!("fs-repo@{}", cairn_node::repo::REPO_VERSION));
            v["Pins"] = json!(stat.pins);
        }
        Ok(json_response(&v))
    }

    /// `repo/verify`: a line per corrupt block, then a summary line.
    pub(super) async fn repo_verify(&self) -> Answer {
        let node = self.node.clone();
        let bad = blocking(move || node.verify(&mut |_| {}).map_err(HttpError::internal)).await?;
        let mut lines: Vec<Value> = bad
            .iter()
            .map(|c| json!({"Msg": format!("block {} was corrupt ({})", c.cid, c.reason), "Cid": c.cid.to_string()}))
            .collect();
        let n = bad.len();
        lines.push(if n == 0 {
            json!({"Msg": "verified repo integrity", "Corrupt": 0})
        } else {
            json!({"Msg": format!("verify complete, {n} corrupt block{}", if n == 1 { "" } else { "s" }), "Corrupt": n})
        });
        Ok(ndjson(&lines))
    }
}

/// Whether a config key names a secret.
fn secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["secret", "token", "password", "privkey", "apikey", "accesskey"].iter().any(|s| k.contains(s)) || k == "key"
}

/// Replaces the secrets in a config's JSON ([`Api::config_show`]).
fn redact(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                if secret_key(key) {
                    *value = redacted(value);
                } else {
                    redact(value);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        Value::String(s) => {
            // `scheme://user:pass@host/...` → `scheme://<redacted>@host/...`.
            if let Some((scheme, rest)) = s.split_once("://") {
                let authority_end = rest.find('/').unwrap_or(rest.len());
                if let Some(at) = rest[..authority_end].rfind('@') {
                    *s = format!("{scheme}://<redacted>@{}", &rest[at + 1..]);
                }
            }
        }
        _ => {}
    }
}

/// A secret's value, hidden: a map keeps its keys (account names), each value hidden.
fn redacted(v: &Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(map.iter().map(|(k, _)| (k.clone(), json!("<redacted>"))).collect()),
        Value::Null => Value::Null,
        _ => json!("<redacted>"),
    }
}
