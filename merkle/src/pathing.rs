//! Following a path through a DAG-CBOR or DAG-JSON block, as the path gateway does: each
//! segment names a map key or a list index, and a path goes on into another block only
//! through a link (a CID: CBOR tag 42, or DAG-JSON's `{"/": "<cid>"}`).
//!
//! Only links are traversed. A path that ends at, or runs on past, any other kind of value
//! (a map, a string, a number...) is [`Followed::Value`]: the path gateway answers those with
//! 501, since it serves blocks, not values inside them.

use cid::Cid;
use ipld_core::ipld::Ipld;

use crate::hash::{DAG_CBOR, DAG_JSON};
use crate::links::check_cbor_counts;

/// Where a path led inside one block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Followed {
    /// To a link, after `used` segments (at least one); the rest go on in the linked block.
    Link { cid: Cid, used: usize },
    /// To a value that is not a link, after `used` segments; the path's other segments (if
    /// any) cannot go on from it.
    Value { used: usize },
}

/// Why a path could not be followed through a block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathingError {
    /// No key or index of that name where the path looked for it.
    #[error("no field {segment:?} in {cid}")]
    NoSuchField { cid: Box<Cid>, segment: String },
    /// The block does not decode as its codec says.
    #[error("{cid} is not valid {codec}: {why}")]
    Invalid { cid: Box<Cid>, codec: &'static str, why: String },
    /// The block's codec is neither DAG-CBOR nor DAG-JSON.
    #[error("{0} has a codec that paths cannot go through")]
    NotTraversable(Box<Cid>),
}

/// Whether paths go through blocks of `cid`'s codec with [`follow`].
pub fn traversable(cid: &Cid) -> bool {
    matches!(cid.codec(), DAG_CBOR | DAG_JSON)
}

/// Follows `segments` (none empty) through the block `data` named by `cid`, until a link
/// or until they run out or reach a value that is not a map or a list.
pub fn follow(cid: &Cid, data: &[u8], segments: &[String]) -> Result<Followed, PathingError> {
    match cid.codec() {
        DAG_CBOR => {
            let invalid = |why: String| PathingError::Invalid { cid: Box::new(*cid), codec: "dag-cbor", why };
            check_cbor_counts(data).map_err(invalid)?;
            let value: Ipld = serde_ipld_dagcbor::from_slice(data).map_err(|e| invalid(e.to_string()))?;
            walk(cid, &View::Cbor(&value), segments)
        }
        DAG_JSON => {
            let value: serde_json::Value = serde_json::from_slice(data).map_err(|e| PathingError::Invalid {
                cid: Box::new(*cid),
                codec: "dag-json",
                why: e.to_string(),
            })?;
            walk(cid, &View::Json(&value), segments)
        }
        _ => Err(PathingError::NotTraversable(Box::new(*cid))),
    }
}

/// A decoded value of either codec, seen as the IPLD kinds pathing cares about.
enum View<'a> {
    Cbor(&'a Ipld),
    Json(&'a serde_json::Value),
}

enum Kind {
    Link(Cid),
    Map,
    List,
    Other,
}

impl<'a> View<'a> {
    fn kind(&self, cid: &Cid) -> Result<Kind, PathingError> {
        use serde_json::Value;
        Ok(match self {
            View::Cbor(Ipld::Link(c)) => Kind::Link(*c),
            View::Cbor(Ipld::Map(_)) => Kind::Map,
            View::Cbor(Ipld::List(_)) => Kind::List,
            View::Json(Value::Object(m)) => match (m.len(), m.get("/")) {
                (1, Some(Value::String(s))) => {
                    Kind::Link(Cid::try_from(s.as_str()).map_err(|e| PathingError::Invalid {
                        cid: Box::new(*cid),
                        codec: "dag-json",
                        why: format!("bad link {s:?}: {e}"),
                    })?)
                }
                // `{"/": {"bytes": ...}}` is bytes, not a map.
                (1, Some(Value::Object(_))) => Kind::Other,
                _ => Kind::Map,
            },
            View::Json(Value::Array(_)) => Kind::List,
            _ => Kind::Other,
        })
    }

    fn get(&self, segment: &str) -> Option<View<'a>> {
        use serde_json::Value;
        match self {
            View::Cbor(Ipld::Map(m)) => m.get(segment).map(View::Cbor),
            View::Cbor(Ipld::List(l)) => index(segment).and_then(|i| l.get(i)).map(View::Cbor),
            View::Json(Value::Object(m)) => m.get(segment).map(View::Json),
            View::Json(Value::Array(l)) => index(segment).and_then(|i| l.get(i)).map(View::Json),
            _ => None,
        }
    }
}

/// A list index as IPLD paths write it: decimal, no sign, no leading zeros.
fn index(segment: &str) -> Option<usize> {
    let canonical = segment == "0" || (!segment.starts_with('0') && segment.bytes().all(|b| b.is_ascii_digit()));
    canonical.then(|| segment.parse().ok()).flatten()
}

fn walk(cid: &Cid, root: &View<'_>, segments: &[String]) -> Result<Followed, PathingError> {
    let mut at = match root {
        View::Cbor(v) => View::Cbor(v),
        View::Json(v) => View::Json(v),
    };
    for (i, segment) in segments.iter().enumerate() {
        // Only maps and lists have fields. (A block that is nothing but a link is a value
        // here too: every step of a path goes down at least one segment.)
        if !matches!(at.kind(cid)?, Kind::Map | Kind::List) {
            return Ok(Followed::Value { used: i });
        }
        at = at
            .get(segment)
            .ok_or_else(|| PathingError::NoSuchField { cid: Box::new(*cid), segment: segment.clone() })?;
        if let Kind::Link(link) = at.kind(cid)? {
            return Ok(Followed::Link { cid: link, used: i + 1 });
        }
    }
    Ok(Followed::Value { used: segments.len() })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::hash::{CidFormat, RAW};

    fn segs(p: &str) -> Vec<String> {
        p.split('/').map(str::to_owned).collect()
    }

    #[test]
    fn cbor_paths_go_through_maps_and_lists_to_links() {
        let target = CidFormat::default().cid(RAW, b"leaf");
        let mut inner = BTreeMap::new();
        inner.insert("link".to_owned(), Ipld::Link(target));
        inner.insert("n".to_owned(), Ipld::Integer(7));
        let mut top = BTreeMap::new();
        top.insert("foo".to_owned(), Ipld::Map(inner));
        top.insert("list".to_owned(), Ipld::List(vec![Ipld::Null, Ipld::Link(target)]));
        let data = serde_ipld_dagcbor::to_vec(&Ipld::Map(top)).unwrap();
        let cid = CidFormat::default().cid(DAG_CBOR, &data);

        assert_eq!(follow(&cid, &data, &segs("foo/link/more")), Ok(Followed::Link { cid: target, used: 2 }));
        assert_eq!(follow(&cid, &data, &segs("list/1")), Ok(Followed::Link { cid: target, used: 2 }));
        assert_eq!(follow(&cid, &data, &segs("foo")), Ok(Followed::Value { used: 1 }));
        assert_eq!(follow(&cid, &data, &segs("foo/n/x")), Ok(Followed::Value { used: 2 }));
        for missing in ["bar", "foo/nope", "list/2", "list/01", "list/-1", "list/+1"] {
            assert!(matches!(follow(&cid, &data, &segs(missing)), Err(PathingError::NoSuchField { .. })), "{missing}");
        }
        assert!(matches!(follow(&cid, b"\xa1", &segs("foo")), Err(PathingError::Invalid { .. })));
        // A block claiming billions of entries is refused before anything is allocated.
        assert!(matches!(
            follow(&cid, &[0x9b, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0], &segs("0")),
            Err(PathingError::Invalid { .. })
        ));
    }

    #[test]
    fn json_paths_know_links_from_bytes_and_maps() {
        let target = CidFormat::default().cid(RAW, b"leaf");
        let data = format!(
            r#"{{"bytes":{{"/":{{"bytes":"AAE"}}}},"foo":{{"link":{{"/":"{target}"}}}},"list":[{{"/":"{target}"}}]}}"#
        );
        let cid = CidFormat::default().cid(DAG_JSON, data.as_bytes());
        let data = data.as_bytes();
        assert_eq!(follow(&cid, data, &segs("foo/link")), Ok(Followed::Link { cid: target, used: 2 }));
        assert_eq!(follow(&cid, data, &segs("list/0/x")), Ok(Followed::Link { cid: target, used: 2 }));
        assert_eq!(follow(&cid, data, &segs("bytes/bytes")), Ok(Followed::Value { used: 1 }));
        assert!(matches!(follow(&cid, br#"{"a":{"/":"not a cid"}}"#, &segs("a")), Err(PathingError::Invalid { .. })));
        let raw = CidFormat::default().cid(RAW, data);
        assert_eq!(follow(&raw, data, &segs("foo")), Err(PathingError::NotTraversable(Box::new(raw))));
    }
}
