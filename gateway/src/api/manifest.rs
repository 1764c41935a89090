//! The API's integrity commands: `manifest/sign` and `manifest/verify` (Cairn's own; Kubo has
//! none), and `pin/verify`.

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

    /// `pin/verify`: a line per pin, `{"Cid", "Ok", "BadNodes": [{"Cid", "Err"}]}`, as Kubo
    /// answers (only the broken ones unless `verbose`).
    pub(super) async fn pin_verify(&self, p: &Params) -> Answer {
        let verbose = p.flag("verbose", false)?;
        let node = self.node.clone();
        let results = blocking(move || node.pin_verify().map_err(Fail::internal)).await?;
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
