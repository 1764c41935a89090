//! The API's integrity commands: `manifest/sign` and `manifest/verify` (Cairn's own; Kubo has
//! none), and `pin/verify`.

use std::collections::BTreeMap;

use cairn_node::manifest::ManifestFailure;
use cairn_node::merkle::manifest::META_KEYS;
use hyper::StatusCode;
use serde_json::json;

use super::{blocking, json_response, parse_path, Answer, Api, HttpError, Params};

fn failure(e: ManifestFailure) -> HttpError {
    match e {
        ManifestFailure::NotAManifest { .. } | ManifestFailure::UnknownMeta(_) => HttpError::bad(e),
        other => HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
    }
}

impl Api {
    /// `follow/add?arg=<peer-id>[&name=..][&topic=..]`, `follow/rm?arg=<peer-id>[&unpin=true]`,
    /// `follow/ls`: the followed publishers, changed for the running follower at once.
    pub(super) async fn follow(&self, command: &str, p: &Params) -> Answer {
        use cairn_node::follow;
        let node = self.node.clone();
        match command {
            "follow/add" => {
                let publisher = follow::Publisher {
                    peer: p.arg()?.to_owned(),
                    name: p.get("name").unwrap_or_default().to_owned(),
                    topic: p.get("topic").unwrap_or_default().to_owned(),
                };
                let stored = publisher.clone();
                blocking(move || follow::add(&node, &stored).map_err(HttpError::bad)).await?;
                if let Some(f) = &self.follower {
                    f.follow(publisher.clone()).await.map_err(HttpError::internal)?;
                }
                Ok(json_response(&json!({"Peer": publisher.peer, "Topic": publisher.topic()})))
            }
            "follow/rm" => {
                let peer = p.arg()?.to_owned();
                let unpin = p.flag("unpin", false)?;
                let gone = peer.clone();
                let was = blocking(move || follow::remove(&node, &gone, unpin).map_err(HttpError::internal)).await?;
                if !was {
                    return Err(HttpError::bad(format!("{peer} is not followed")));
                }
                if let Some(f) = &self.follower {
                    f.unfollow(&peer);
                }
                Ok(json_response(&json!({"Peer": peer})))
            }
            _ => {
                let (list, used) = blocking(move || {
                    let list = follow::publishers(&node).map_err(HttpError::internal)?;
                    Ok((list, follow::followed_bytes(&node).map_err(HttpError::internal)?))
                })
                .await?;
                let list: Vec<_> =
                    list.values().map(|p| json!({"Peer": p.peer, "Name": p.name, "Topic": p.topic()})).collect();
                Ok(json_response(&json!({"Publishers": list, "Bytes": used})))
            }
        }
    }

    /// `manifest/sign?arg=<path>[&name=..][&title=..][&source=..][&license=..][&notes=..]`:
    /// `{"Manifest", "Root"}`. The manifest is pinned with its DAG and its root announced.
    pub(super) async fn manifest_sign(&self, p: &Params) -> Answer {
        let path = parse_path(p.arg()?)?;
        let name = p.get("name").map(str::to_owned);
        let meta: BTreeMap<String, String> =
            META_KEYS.iter().filter_map(|k| p.get(k).map(|v| ((*k).to_owned(), v.to_owned()))).collect();
        let node = self.node.clone();
        let (manifest, signed) = blocking(move || node.manifest_sign(&path, name, meta).map_err(failure)).await?;
        let (root, size) = (signed.root, signed.size);
        self.announce(&[(root, size)]).await;
        // Marked as a manifest, so that the publisher's followers mirror it.
        if let Some(net) = &self.net {
            let topics = self.node.repo().config().manifest.announce_topics.clone();
            net.announce_manifest(manifest, size, topics).await;
        }
        Ok(json_response(&json!({"Manifest": manifest.to_string(), "Root": root.to_string()})))
    }

    /// `pin/verify`: a line per pin, `{"Cid", "Ok", "BadNodes": [{"Cid", "Err"}]}`, as Kubo
    /// answers (only the broken ones unless `verbose`).
    pub(super) async fn pin_verify(&self, p: &Params) -> Answer {
        let verbose = p.flag("verbose", false)?;
        let node = self.node.clone();
        let results = blocking(move || node.pin_verify().map_err(HttpError::internal)).await?;
        let lines: Vec<_> = results
            .into_iter()
            .filter(|(_, c)| verbose || !c.corrupt.is_empty() || !c.missing.is_empty())
            .map(|(pin, c)| {
                let bad: Vec<_> = c
                    .corrupt
                    .iter()
                    .map(|b| json!({"Cid": b.to_string(), "Err": "corrupt: the bytes do not hash to the CID"}))
                    .chain(c.missing.iter().map(|b| json!({"Cid": b.to_string(), "Err": "missing"})))
                    .collect();
                json!({"Cid": pin.cid.to_string(), "Ok": bad.is_empty(), "BadNodes": bad})
            })
            .collect();
        Ok(super::ndjson(&lines))
    }

    /// `manifest/verify?arg=<cid>`: the report of `Verified::report`, missing blocks fetched
    /// from peers first.
    pub(super) async fn manifest_verify(&self, p: &Params) -> Answer {
        let cid = parse_path(p.arg()?)?.root;
        let node = self.node.clone();
        let report = blocking(move || node.manifest_verify(&cid, &mut |_| {}).map_err(failure)).await?;
        Ok(json_response(&report.report()))
    }
}
