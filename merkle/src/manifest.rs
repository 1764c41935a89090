//! Signed root manifests: who published a DAG, as a DAG-JSON block (codec 0x0129).
//!
//! A manifest names a root CID and its total size, a name, the publisher's public key
//! (libp2p's protobuf encoding) and peer ID, a creation time, and optional metadata (title,
//! source URL, licence, notes). The publisher signs the canonical DAG-JSON encoding of every
//! field but `signature`; the block is that same map with `signature` added, encoded the same
//! way. Canonical means what the DAG-JSON spec asks of encoders: map keys sorted by their UTF-8
//! bytes, no whitespace, links as `{"/": "<cid>"}`, bytes as `{"/": {"bytes": "<base64>"}}`
//! (unpadded standard base64).
//!
//! This module only encodes, decodes and says what is signed; the signature itself is made and
//! checked by the node, which holds the keys.
//!
//! ```text
//! {"created":1795000000,"meta":{"title":"..."},"name":"site","publisher":{"id":"12D3Koo...",
//!  "key":{"/":{"bytes":"CAES..."}}},"root":{"/":"bafy..."},"signature":{"/":{"bytes":"..."}},
//!  "size":1234,"type":"cairn-manifest/1"}
//! ```
//!
//! A publisher's manifests form a chain: each names the one signed before it in `prev` (a CID
//! as text), so a follower that hears of the newest can find all the others.
//!
//! ```text
//! ```

use std::collections::BTreeMap;

use bytes::Bytes;
use cid::Cid;
use serde_json::{Map, Value};

use crate::dagpb_json::{as_bytes, as_link, bytes_value, link_value};
use crate::hash::{CidFormat, DAG_JSON};

/// The `type` every manifest carries.
pub const MANIFEST_TYPE: &str = "cairn-manifest/1";

/// The metadata keys a manifest may carry.
pub const META_KEYS: [&str; 4] = ["title", "source", "license", "notes"];

/// The largest manifest block decoded.
pub const MAX_MANIFEST_BYTES: usize = 64 << 10;

/// A manifest's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The DAG it vouches for.
    pub root: Cid,
    /// The DAG's total size in bytes: every block's bytes, each block counted once.
    pub size: u64,
    /// A name for the content.
    pub name: String,
    /// The publisher's peer ID, as text.
    pub publisher: String,
    /// The publisher's public key, in libp2p's protobuf encoding.
    pub public_key: Vec<u8>,
    /// When it was signed, in seconds since the Unix epoch.
    pub created: u64,
    /// Optional metadata, under [`META_KEYS`].
    pub meta: BTreeMap<String, String>,
    /// The publisher's previous manifest, if any: the chain through which a follower finds
    /// every manifest of a publisher from the newest. Written as text, not as a link, so that
    /// pinning a manifest pins its own DAG and not the publisher's whole history.
    pub prev: Option<Cid>,
    /// The signature over [`Manifest::signed_bytes`]; empty until signed.
    pub signature: Vec<u8>,
}

/// Why bytes are not a manifest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// Not JSON, or over [`MAX_MANIFEST_BYTES`].
    #[error("not a manifest: {0}")]
    NotJson(String),
    /// JSON, but a field is missing or of the wrong kind.
    #[error("not a manifest: {0}")]
    Field(String),
    /// Valid fields, but not in the canonical encoding (so it was not made by a signer that
    /// follows DAG-JSON's rules, or was altered).
    #[error("manifest is not in canonical DAG-JSON form")]
    NotCanonical,
}

/// Writes `v` canonically: keys sorted bytewise at every level, no whitespace.
fn write_canonical(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(&Value::String(k.clone()), out);
                out.push(b':');
                write_canonical(&map[k], out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        // Strings, numbers, booleans and null: serde_json's compact form. Writing to a Vec
        // cannot fail.
        other => {
            let _ = serde_json::to_writer(&mut *out, other);
        }
    }
}

impl Manifest {
    /// The map of every field, with or without the signature.
    fn to_value(&self, with_signature: bool) -> Value {
        let mut m = Map::new();
        m.insert("type".into(), Value::String(MANIFEST_TYPE.into()));
        m.insert("root".into(), link_value(&self.root));
        m.insert("size".into(), Value::from(self.size));
        m.insert("name".into(), Value::String(self.name.clone()));
        let mut publisher = Map::new();
        publisher.insert("id".into(), Value::String(self.publisher.clone()));
        publisher.insert("key".into(), bytes_value(&self.public_key));
        m.insert("publisher".into(), Value::Object(publisher));
        m.insert("created".into(), Value::from(self.created));
        if !self.meta.is_empty() {
            let meta = self.meta.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
            m.insert("meta".into(), Value::Object(meta));
        }
        if let Some(prev) = &self.prev {
            m.insert("prev".into(), Value::String(prev.to_string()));
        }
        if with_signature {
            m.insert("signature".into(), bytes_value(&self.signature));
        }
        Value::Object(m)
    }

    /// The bytes the publisher signs: the canonical encoding of every field but the signature.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        write_canonical(&self.to_value(false), &mut out);
        out
    }

    /// The manifest block's bytes (with the signature).
    pub fn encode(&self) -> Bytes {
        let mut out = Vec::new();
        write_canonical(&self.to_value(true), &mut out);
        Bytes::from(out)
    }

    /// The manifest block's CID (CIDv1, DAG-JSON, sha2-256).
    pub fn cid(&self) -> Cid {
        CidFormat { version: 1, hash: crate::hash::HashAlg::Sha2_256 }.cid(DAG_JSON, &self.encode())
    }

    /// Reads a manifest block. Refuses anything but the canonical encoding, so that the bytes
    /// hashed into its CID are exactly the bytes that [`Manifest::encode`] gives back.
    pub fn decode(data: &[u8]) -> Result<Manifest, ManifestError> {
        if data.len() > MAX_MANIFEST_BYTES {
            return Err(ManifestError::NotJson(format!("{} bytes, over {MAX_MANIFEST_BYTES}", data.len())));
        }
        let v: Value = serde_json::from_slice(data).map_err(|e| ManifestError::NotJson(e.to_string()))?;
        let m = v.as_object().ok_or_else(|| ManifestError::Field("not a map".into()))?;
        let field = |k: &str| m.get(k).ok_or_else(|| ManifestError::Field(format!("no {k:?}")));
        let text = |k: &str| -> Result<String, ManifestError> {
            field(k)?.as_str().map(str::to_owned).ok_or_else(|| ManifestError::Field(format!("{k:?} is not text")))
        };
        if text("type")? != MANIFEST_TYPE {
            return Err(ManifestError::Field(format!("type is not {MANIFEST_TYPE:?}")));
        }
        let number = |k: &str| field(k)?.as_u64().ok_or_else(|| ManifestError::Field(format!("{k:?} is not a count")));
        let publisher = field("publisher")?.as_object().ok_or_else(|| ManifestError::Field("bad publisher".into()))?;
        let mut meta = BTreeMap::new();
        if let Some(v) = m.get("meta") {
            let map = v.as_object().ok_or_else(|| ManifestError::Field("meta is not a map".into()))?;
            for (k, v) in map {
                if !META_KEYS.contains(&k.as_str()) {
                    return Err(ManifestError::Field(format!("unknown meta key {k:?}")));
                }
                let v = v.as_str().ok_or_else(|| ManifestError::Field(format!("meta {k:?} is not text")))?;
                meta.insert(k.clone(), v.to_owned());
            }
        }
        let known = ["type", "root", "size", "name", "publisher", "created", "meta", "prev", "signature"];
        let prev = match m.get("prev") {
            None => None,
            Some(v) => Some(
                v.as_str()
                    .and_then(|t| t.parse::<Cid>().ok())
                    .ok_or_else(|| ManifestError::Field("prev is not a CID".into()))?,
            ),
        };
        if let Some(k) = m.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(ManifestError::Field(format!("unknown key {k:?}")));
        }
        let manifest = Manifest {
            root: as_link(field("root")?).ok_or_else(|| ManifestError::Field("root is not a link".into()))?,
            size: number("size")?,
            name: text("name")?,
            publisher: publisher
                .get("id")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| ManifestError::Field("publisher id is not text".into()))?,
            public_key: publisher
                .get("key")
                .and_then(as_bytes)
                .map(|b| b.to_vec())
                .ok_or_else(|| ManifestError::Field("publisher key is not bytes".into()))?,
            created: number("created")?,
            meta,
            prev,
            signature: as_bytes(field("signature")?)
                .map(|b| b.to_vec())
                .ok_or_else(|| ManifestError::Field("signature is not bytes".into()))?,
        };
        if manifest.encode() != data {
            return Err(ManifestError::NotCanonical);
        }
        Ok(manifest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::RAW;

    fn sample() -> Manifest {
        Manifest {
            root: CidFormat { version: 1, hash: crate::hash::HashAlg::Sha2_256 }.cid(RAW, b"content"),
            size: 7,
            name: "notes.txt".into(),
            publisher: "12D3KooWexample".into(),
            public_key: vec![8, 1, 18, 32, 1, 2, 3],
            created: 1_795_000_000,
            meta: [("title".to_owned(), "Field notes, \"draft\" é".to_owned())].into_iter().collect(),
            prev: None,
            signature: vec![9; 64],
        }
    }

    #[test]
    fn encodes_canonically_and_round_trips() {
        let m = sample();
        let bytes = m.encode();
        let text = std::str::from_utf8(&bytes).unwrap();
        // Keys in byte order at every level, no whitespace, links and bytes in DAG-JSON form.
        let order = [
            "\"created\"",
            "\"meta\"",
            "\"name\"",
            "\"publisher\"",
            "\"root\"",
            "\"signature\"",
            "\"size\"",
            "\"type\"",
        ];
        let positions: Vec<usize> = order.iter().map(|k| text.find(k).unwrap()).collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{text}");
        assert!(text.starts_with("{\"created\":1795000000,\"meta\":{\"title\":\"Field notes"), "{text}");
        assert!(text.contains(&format!("\"root\":{{\"/\":\"{}\"}}", m.root)), "{text}");
        assert!(text.contains("\"key\":{\"/\":{\"bytes\":\"CAESIAECAw\"}}"), "{text}");
        assert_eq!(Manifest::decode(&bytes).unwrap(), m);
        assert_eq!(m.cid().codec(), DAG_JSON);
        // The signed bytes are the same map without the signature.
        let signed = String::from_utf8(m.signed_bytes()).unwrap();
        assert!(!signed.contains("signature") && signed.contains("\"size\":7"));
        // Links are found by the generic DAG-JSON link walker: pinning a manifest pins its DAG.
        assert_eq!(crate::links::links(&m.cid(), &bytes).unwrap(), vec![m.root]);
        // A chained manifest names its predecessor as text: signed, but not a link.
        let mut next = sample();
        next.prev = Some(m.cid());
        let bytes = next.encode();
        assert!(std::str::from_utf8(&bytes).unwrap().contains(&format!("\"prev\":\"{}\"", m.cid())));
        assert!(String::from_utf8(next.signed_bytes()).unwrap().contains("prev"));
        assert_eq!(Manifest::decode(&bytes).unwrap(), next);
        assert_eq!(crate::links::links(&next.cid(), &bytes).unwrap(), vec![next.root]);
        let bad = String::from_utf8(bytes.to_vec()).unwrap().replace(&m.cid().to_string(), "nope");
        assert!(Manifest::decode(bad.as_bytes()).is_err());
    }

    #[test]
    fn refuses_what_it_did_not_write() {
        let bytes = sample().encode();
        let text = std::str::from_utf8(&bytes).unwrap();
        // Whitespace, reordered keys, unknown keys, missing fields, wrong kinds.
        let spaced = text.replacen(",", ", ", 1);
        assert_eq!(Manifest::decode(spaced.as_bytes()), Err(ManifestError::NotCanonical));
        let extra = text.replacen("{", "{\"zzz\":1,", 1);
        assert!(matches!(Manifest::decode(extra.as_bytes()), Err(ManifestError::Field(_))));
        let no_sig = String::from_utf8(sample().signed_bytes()).unwrap();
        assert!(matches!(Manifest::decode(no_sig.as_bytes()), Err(ManifestError::Field(_))));
        let bad_size = text.replace("\"size\":7", "\"size\":-7");
        assert!(matches!(Manifest::decode(bad_size.as_bytes()), Err(ManifestError::Field(_))));
        assert!(matches!(Manifest::decode(b"not json"), Err(ManifestError::NotJson(_))));
        let huge = vec![b' '; MAX_MANIFEST_BYTES + 1];
        assert!(matches!(Manifest::decode(&huge), Err(ManifestError::NotJson(_))));
    }
}
