//! The dag-pb node in its IPLD data-model form, written as DAG-JSON.
//!
//! The dag-pb spec describes a node as `{"Data": bytes?, "Links": [{"Hash": link,
//! "Name": string?, "Tsize": int?}]}`. Tools such as `ipfs dag get` print it that way, and an
//! encoder must refuse any value that is not exactly of that shape before it produces bytes.
//! [`PbNode::from_dag_json`] is that check (matching the cases of the ipld/codec-fixtures
//! negative fixtures), and [`PbNode::to_dag_json`] writes the form back out.
//!
//! In DAG-JSON, bytes are `{"/": {"bytes": "<base64, no padding>"}}` and links are
//! `{"/": "<cid>"}`.

use bytes::Bytes;
use cid::Cid;
use data_encoding::{BASE64, BASE64_NOPAD};
use serde_json::{Map, Value};

use crate::dagpb::{PbLink, PbNode};

/// Why a data-model value is not a dag-pb node. The messages follow the wording of the
/// reference implementation's errors (`Invalid DAG-PB form (...)`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum DagPbFormError {
    /// The value is not a map (or is a bytes or link value).
    #[error("Invalid DAG-PB form")]
    NotAMap,
    /// The node has keys other than `Data` and `Links`.
    #[error("Invalid DAG-PB form (extraneous properties)")]
    ExtraneousProperties,
    /// `Data` is present but not bytes.
    #[error("Invalid DAG-PB form (Data must be bytes)")]
    DataNotBytes,
    /// `Links` is absent or not a list.
    #[error("Invalid DAG-PB form (Links must be a list)")]
    LinksNotAList,
    /// An element of `Links` is not a map (or is a bytes or link value).
    #[error("Invalid DAG-PB form (bad link) at link {0}")]
    BadLink(usize),
    /// A link has keys other than `Hash`, `Name` and `Tsize`.
    #[error("Invalid DAG-PB form (extraneous properties on link) at link {0}")]
    ExtraneousLinkProperties(usize),
    /// A link has no `Hash`.
    #[error("Invalid DAG-PB form (link must have a Hash) at link {0}")]
    MissingHash(usize),
    /// A link's `Hash` is not a link value holding a valid CID.
    #[error("Invalid DAG-PB form (link Hash must be a CID) at link {0}")]
    HashNotACid(usize),
    /// A link's `Name` is present but not a string.
    #[error("Invalid DAG-PB form (link Name must be a string) at link {0}")]
    NameNotAString(usize),
    /// A link's `Tsize` is present but not an integer (or too large for 64 bits).
    #[error("Invalid DAG-PB form (link Tsize must be an integer) at link {0}")]
    TsizeNotAnInteger(usize),
    /// A link's `Tsize` is negative.
    #[error("Invalid DAG-PB form (link Tsize cannot be negative) at link {0}")]
    TsizeNegative(usize),
    /// Links are not sorted by the bytes of their names (a missing name sorts as `""`).
    #[error("Invalid DAG-PB form (links must be sorted by Name bytes) at link {0}")]
    Unsorted(usize),
}

impl PbNode {
    /// Converts the DAG-JSON data-model form of a dag-pb node into a node, refusing every
    /// value an encoder must refuse.
    ///
    /// `Links` is required (an empty list for a node without links); `Data` is optional.
    /// Links must already be sorted by name bytes, as the dag-pb spec requires of encoders;
    /// links with equal names keep their order.
    pub fn from_dag_json(value: &Value) -> Result<PbNode, DagPbFormError> {
        let map = match value {
            Value::Object(m) if !is_special(m) => m,
            _ => return Err(DagPbFormError::NotAMap),
        };
        if map.keys().any(|k| k != "Data" && k != "Links") {
            return Err(DagPbFormError::ExtraneousProperties);
        }
        let data = match map.get("Data") {
            None => None,
            Some(v) => Some(as_bytes(v).ok_or(DagPbFormError::DataNotBytes)?),
        };
        let Some(Value::Array(raw_links)) = map.get("Links") else {
            return Err(DagPbFormError::LinksNotAList);
        };
        let mut links: Vec<PbLink> = Vec::with_capacity(raw_links.len());
        for (i, raw) in raw_links.iter().enumerate() {
            let link = match raw {
                Value::Object(m) if !is_special(m) => m,
                _ => return Err(DagPbFormError::BadLink(i)),
            };
            if link.keys().any(|k| k != "Hash" && k != "Name" && k != "Tsize") {
                return Err(DagPbFormError::ExtraneousLinkProperties(i));
            }
            let hash = link.get("Hash").ok_or(DagPbFormError::MissingHash(i))?;
            let cid = as_link(hash).ok_or(DagPbFormError::HashNotACid(i))?;
            let name = match link.get("Name") {
                None => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(_) => return Err(DagPbFormError::NameNotAString(i)),
            };
            let tsize = match link.get("Tsize") {
                None => None,
                Some(Value::Number(n)) => match (n.as_u64(), n.as_i64()) {
                    (Some(t), _) => Some(t),
                    (None, Some(neg)) if neg < 0 => return Err(DagPbFormError::TsizeNegative(i)),
                    _ => return Err(DagPbFormError::TsizeNotAnInteger(i)),
                },
                Some(_) => return Err(DagPbFormError::TsizeNotAnInteger(i)),
            };
            let link = PbLink { cid, name, tsize };
            if let Some(prev) = links.last() {
                if link.name().as_bytes() < prev.name().as_bytes() {
                    return Err(DagPbFormError::Unsorted(i));
                }
            }
            links.push(link);
        }
        Ok(PbNode { links, data })
    }

    /// The node's DAG-JSON data-model form, as `ipfs dag get` prints it: `Data` only when
    /// present, `Links` always; `Name` and `Tsize` only when present.
    pub fn to_dag_json(&self) -> Value {
        let mut node = Map::new();
        if let Some(d) = &self.data {
            node.insert("Data".into(), bytes_value(d));
        }
        let links = self
            .links
            .iter()
            .map(|l| {
                let mut m = Map::new();
                m.insert("Hash".into(), link_value(&l.cid));
                if let Some(name) = &l.name {
                    m.insert("Name".into(), Value::String(name.clone()));
                }
                if let Some(t) = l.tsize {
                    m.insert("Tsize".into(), Value::from(t));
                }
                Value::Object(m)
            })
            .collect();
        node.insert("Links".into(), Value::Array(links));
        Value::Object(node)
    }
}

/// Whether a map is the DAG-JSON encoding of bytes or of a link (a lone `"/"` key).
fn is_special(m: &Map<String, Value>) -> bool {
    m.len() == 1 && m.contains_key("/")
}

/// The bytes of `{"/": {"bytes": "<base64>"}}`, if `v` is that.
pub(crate) fn as_bytes(v: &Value) -> Option<Bytes> {
    let Value::Object(outer) = v else { return None };
    let Some(Value::Object(inner)) = outer.get("/").filter(|_| outer.len() == 1) else {
        return None;
    };
    let Some(Value::String(b64)) = inner.get("bytes").filter(|_| inner.len() == 1) else {
        return None;
    };
    // DAG-JSON writes unpadded base64; accept padded input as well.
    let raw = BASE64_NOPAD.decode(b64.as_bytes()).or_else(|_| BASE64.decode(b64.as_bytes())).ok()?;
    Some(Bytes::from(raw))
}

/// The CID of `{"/": "<cid>"}`, if `v` is that and the string is a CID.
pub(crate) fn as_link(v: &Value) -> Option<Cid> {
    let Value::Object(m) = v else { return None };
    let Some(Value::String(s)) = m.get("/").filter(|_| m.len() == 1) else {
        return None;
    };
    Cid::try_from(s.as_str()).ok()
}

/// `{"/": {"bytes": "<base64, no padding>"}}`.
pub(crate) fn bytes_value(b: &[u8]) -> Value {
    let mut inner = Map::new();
    inner.insert("bytes".into(), Value::String(BASE64_NOPAD.encode(b)));
    let mut outer = Map::new();
    outer.insert("/".into(), Value::Object(inner));
    Value::Object(outer)
}

/// `{"/": "<cid>"}`.
pub(crate) fn link_value(cid: &Cid) -> Value {
    let mut m = Map::new();
    m.insert("/".into(), Value::String(cid.to_string()));
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_through_the_json_form() {
        let cid = Cid::try_from("QmNPWHBrVQiiV8FpyNuEPhB9E2rbvdy9Yx79EY1EJuyf9o").unwrap();
        let node = PbNode {
            links: vec![PbLink { cid, name: None, tsize: None }, PbLink::new(cid, "a", 3)],
            data: Some(Bytes::from_static(&[1, 2, 3])),
        };
        let v = node.to_dag_json();
        assert_eq!(v["Data"], json!({"/": {"bytes": "AQID"}}));
        assert_eq!(PbNode::from_dag_json(&v), Ok(node));
    }

    #[test]
    fn rejects_unsorted_and_negative() {
        let h = json!({"/": "QmNPWHBrVQiiV8FpyNuEPhB9E2rbvdy9Yx79EY1EJuyf9o"});
        let v = json!({"Links": [{"Hash": h, "Name": "b"}, {"Hash": h, "Name": "a"}]});
        assert_eq!(PbNode::from_dag_json(&v), Err(DagPbFormError::Unsorted(1)));
        let v = json!({"Links": [{"Hash": h, "Tsize": -1}]});
        assert_eq!(PbNode::from_dag_json(&v), Err(DagPbFormError::TsizeNegative(0)));
        let v = json!({"Links": [{"Hash": h, "Tsize": 18446744073709551615u64}]});
        assert!(PbNode::from_dag_json(&v).is_ok());
    }
}
