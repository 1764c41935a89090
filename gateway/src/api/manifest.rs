//! The API's manifest commands: `manifest/sign` and `manifest/verify` (Cairn's own; Kubo has
//! none).

use std::collections::BTreeMap;

use cairn_node::manifest::ManifestFailure;
use cairn_node::merkle::manifest::META_KEYS;
use hyper::StatusCode;
use serde_json::json;

use super::{blocking, json_response, parse_path, Answer, Api, Fail, Params};

fn failure(e: ManifestFailure) -> Fail {
    match e {
        ManifestFailure::NotAManifest { .. } | ManifestFailure::UnknownMeta(_) => Fail::bad(e),
        other => Fail(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
    }
}

impl Api {
    /// `manifest/sign?arg=<path>[&name=..][&title=..][&source=..][&license=..][&notes=..]`:
    /// `{"Manifest", "Root"}`. The manifest is pinned with its DAG and its root announced.
    pub(super) async fn manifest_sign(&self, p: &Params) -> Answer {
        let path = parse_path(p.arg()?)?;
        let name = p.get("name").map(str::to_owned);
        let meta: BTreeMap<String, String> =
            META_KEYS.iter().filter_map(|k| p.get(k).map(|v| ((*k).to_owned(), v.to_owned()))).collect();
        let node = self.node.clone();
        let (manifest, root) = blocking(move || node.manifest_sign(&path, name, meta).map_err(failure)).await?;
        self.announce(&[(manifest, 0), (root, 0)]).await;
        Ok(json_response(&json!({"Manifest": manifest.to_string(), "Root": root.to_string()})))
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
