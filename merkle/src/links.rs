//! The links (child CIDs) of a block, whatever its codec.
//!
//! [`links`] reads the CIDs a block points at, in the order they are encoded, which is the
//! order a depth-first DAG walk (and so [`crate::car::write_dag`]) visits them:
//!
//! - dag-pb: the node's links, in order.
//! - raw and libp2p-key: none.
//! - dag-cbor: every CID (tag 42) anywhere in the value. Strict DAG-CBOR sorts map keys
//!   length-first and then bytewise, and the decoder refuses other orders, so walking maps in
//!   that order is walking the encoding.
//! - dag-json: every `{"/": "<cid>"}` anywhere in the value. DAG-JSON sorts map keys by their
//!   bytes, which is the order they are walked in.

use std::collections::BTreeMap;

use bytes::Bytes;
use cid::Cid;
use ipld_core::ipld::Ipld;

use crate::dagpb::{DagPbError, PbNode};
use crate::hash::{DAG_CBOR, DAG_JSON, DAG_PB, LIBP2P_KEY, RAW};

/// Why the links of a block could not be read. The caller knows which block it asked about;
/// [`crate::car::CarError::Links`] adds the CID.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum LinksError {
    /// The CID names a codec whose links Cairn cannot read.
    #[error("cannot read the links of codec 0x{0:x}")]
    UnsupportedCodec(u64),
    /// The block claims to be dag-pb but is not.
    #[error("not valid dag-pb: {0}")]
    DagPb(#[from] DagPbError),
    /// The block claims to be dag-cbor but is not strict DAG-CBOR.
    #[error("not valid dag-cbor: {0}")]
    DagCbor(String),
    /// The block claims to be dag-json but is not valid DAG-JSON.
    #[error("not valid dag-json: {0}")]
    DagJson(String),
}

/// The CIDs the block `data` (named by `cid`) links to, in encoding order.
///
/// Duplicates are kept: a node that links to the same child twice lists it twice.
pub fn links(cid: &Cid, data: &Bytes) -> Result<Vec<Cid>, LinksError> {
    match cid.codec() {
        DAG_PB => Ok(PbNode::decode(data)?.links.into_iter().map(|l| l.cid).collect()),
        RAW | LIBP2P_KEY => Ok(Vec::new()),
        DAG_CBOR => dag_cbor_links(data).map_err(LinksError::DagCbor),
        DAG_JSON => dag_json_links(data).map_err(LinksError::DagJson),
        codec => Err(LinksError::UnsupportedCodec(codec)),
    }
}

/// The CIDs in a DAG-CBOR value, in encoding order.
fn dag_cbor_links(data: &[u8]) -> Result<Vec<Cid>, String> {
    check_cbor_counts(data)?;
    let value: Ipld = serde_ipld_dagcbor::from_slice(data).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    collect_cbor(&value, &mut out);
    Ok(out)
}

/// Checks, before a CBOR value is decoded, that the items it declares are there: every array
/// and map holds as many items as it says, every byte and text string as many bytes, and no
/// length is indefinite (which DAG-CBOR forbids).
///
/// The decoder sizes each array's and map's buffer from its declared count (capped at 1 MiB
/// per container) before reading its items, and allows 256 levels of nesting, so without this
/// check a block of 2 KiB of nested arrays that each claim billions of items held 128 MiB at
/// once. Once every declared item is known to be present, the buffers add up to at most one
/// slot per item in the block. The walk reads only headers, in one pass, with no recursion.
pub(crate) fn check_cbor_counts(data: &[u8]) -> Result<(), String> {
    let mut pos = 0usize;
    // Items still to read: the value itself, then whatever its containers declare.
    let mut pending: u64 = 1;
    let short = |at: usize| format!("CBOR ends inside a value at byte {at}");
    while pending > 0 {
        let &head = data.get(pos).ok_or_else(|| short(pos))?;
        pos += 1;
        pending -= 1;
        let (major, info) = (head >> 5, head & 0x1f);
        let arg = match info {
            0..=23 => u64::from(info),
            24..=27 => {
                let n = 1usize << (info - 24);
                let bytes = data.get(pos..pos + n).ok_or_else(|| short(pos))?;
                pos += n;
                bytes.iter().fold(0u64, |acc, &b| acc << 8 | u64::from(b))
            }
            _ => return Err(format!("CBOR item at byte {} has an indefinite or reserved length", pos - 1)),
        };
        let left = (data.len() - pos) as u64;
        match major {
            // Byte and text strings: their bytes follow.
            2 | 3 => {
                if arg > left {
                    return Err(format!("CBOR string at byte {} claims {arg} bytes, {left} remain", pos - 1));
                }
                pos += arg as usize;
            }
            // Arrays, maps (two items an entry) and tags (one item).
            4 => pending = pending.saturating_add(arg),
            5 => pending = pending.saturating_add(arg.saturating_mul(2)),
            6 => pending += 1,
            // Integers, simple values and floats are whole in their header.
            _ => {}
        }
        // Every item takes at least one byte.
        if pending > (data.len() - pos) as u64 {
            return Err(format!("CBOR at byte {pos} declares {pending} more items than its bytes can hold"));
        }
    }
    Ok(())
}

fn collect_cbor(value: &Ipld, out: &mut Vec<Cid>) {
    match value {
        Ipld::Link(cid) => out.push(*cid),
        Ipld::List(items) => items.iter().for_each(|v| collect_cbor(v, out)),
        Ipld::Map(map) => {
            for (_, v) in dag_cbor_order(map) {
                collect_cbor(v, out);
            }
        }
        _ => {}
    }
}

/// A map's entries in DAG-CBOR order: shorter keys first, then bytewise.
fn dag_cbor_order(map: &BTreeMap<String, Ipld>) -> Vec<(&String, &Ipld)> {
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_by(|(a, _), (b, _)| a.len().cmp(&b.len()).then_with(|| a.as_bytes().cmp(b.as_bytes())));
    entries
}

/// The CIDs in a DAG-JSON value, in encoding order.
fn dag_json_links(data: &[u8]) -> Result<Vec<Cid>, String> {
    let value: serde_json::Value = serde_json::from_slice(data).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    collect_json(&value, &mut out)?;
    Ok(out)
}

fn collect_json(value: &serde_json::Value, out: &mut Vec<Cid>) -> Result<(), String> {
    use serde_json::Value;
    match value {
        Value::Array(items) => {
            for v in items {
                collect_json(v, out)?;
            }
        }
        Value::Object(map) => {
            if let (1, Some(Value::String(s))) = (map.len(), map.get("/")) {
                let cid = Cid::try_from(s.as_str()).map_err(|e| format!("bad link {s:?}: {e}"))?;
                out.push(cid);
                return Ok(());
            }
            // Whatever the map implementation's order, walk keys bytewise as DAG-JSON sorts them.
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|(a, _), (b, _)| a.as_bytes().cmp(b.as_bytes()));
            for (_, v) in entries {
                collect_json(v, out)?;
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::{CidFormat, HashAlg};
    use crate::PbLink;

    fn v1(codec: u64, data: &[u8]) -> Cid {
        CidFormat { version: 1, hash: HashAlg::Sha2_256 }.cid(codec, data)
    }

    #[test]
    fn dag_pb_links_in_order() {
        let a = v1(RAW, b"a");
        let b = v1(RAW, b"b");
        let node = PbNode { links: vec![PbLink::new(b, "x", 1), PbLink::new(a, "y", 1)], data: None };
        let bytes = Bytes::from(node.encode());
        assert_eq!(links(&v1(DAG_PB, &bytes), &bytes), Ok(vec![b, a]));
    }

    #[test]
    fn raw_has_none_and_unknown_codec_is_an_error() {
        let data = Bytes::from_static(b"hi");
        assert_eq!(links(&v1(RAW, &data), &data), Ok(vec![]));
        let odd = v1(0x9999, &data);
        assert_eq!(links(&odd, &data), Err(LinksError::UnsupportedCodec(0x9999)));
    }

    #[test]
    fn dag_cbor_links_follow_length_first_key_order() {
        let a = v1(RAW, b"a");
        let b = v1(RAW, b"b");
        let c = v1(RAW, b"c");
        // {"zz": [a], "aaa": b, "b": {"x": c}} encodes as "b", "zz", "aaa"
        let mut inner = BTreeMap::new();
        inner.insert("x".to_string(), Ipld::Link(c));
        let mut map = BTreeMap::new();
        map.insert("zz".to_string(), Ipld::List(vec![Ipld::Link(a)]));
        map.insert("aaa".to_string(), Ipld::Link(b));
        map.insert("b".to_string(), Ipld::Map(inner));
        let bytes = Bytes::from(serde_ipld_dagcbor::to_vec(&Ipld::Map(map)).unwrap());
        assert_eq!(links(&v1(DAG_CBOR, &bytes), &bytes), Ok(vec![c, a, b]));
    }

    #[test]
    fn dag_cbor_garbage_is_an_error() {
        let bytes = Bytes::from_static(&[0xff, 0x00]);
        assert!(matches!(links(&v1(DAG_CBOR, &bytes), &bytes), Err(LinksError::DagCbor(_))));
    }

    #[test]
    fn dag_cbor_counts_are_checked_before_decoding() {
        // 250 nested arrays that each claim 2^32 items: 2 KiB that made the decoder hold
        // 128 MiB at once (found by the `links_decode` fuzz target).
        let bomb: Vec<u8> = [0x9b, 0, 0, 0, 1, 0, 0, 0, 0].repeat(250);
        let bytes = Bytes::from(bomb);
        let err = links(&v1(DAG_CBOR, &bytes), &bytes).unwrap_err();
        assert!(matches!(&err, LinksError::DagCbor(m) if m.contains("more items than")), "{err}");
        // A string longer than the block, an indefinite length, a value cut short.
        for bad in [&[0x5a, 0xff, 0xff, 0xff, 0xff, 0x00][..], &[0x9f, 0xff], &[0x82, 0x01], &[0x19, 0x01]] {
            assert!(check_cbor_counts(bad).is_err(), "{bad:02x?}");
        }
        // Every well-formed value passes: scalars, strings, nesting, tags, floats, trailing data
        // (left to the decoder to refuse).
        for good in [
            &[0x00][..],
            &[0x63, b'a', b'b', b'c'],
            &[0x82, 0x81, 0x01, 0xa1, 0x61, b'k', 0xf6],
            &[0xd8, 0x2a, 0x41, 0x00],
            &[0xfb, 0, 0, 0, 0, 0, 0, 0, 0],
            &[0x01, 0x02],
        ] {
            assert_eq!(check_cbor_counts(good), Ok(()), "{good:02x?}");
        }
    }

    #[test]
    fn dag_json_links_skip_bytes() {
        let a = v1(RAW, b"a");
        let b = v1(RAW, b"b");
        let text =
            format!(r#"{{"a":{{"/":"{a}"}},"b":[{{"/":{{"bytes":"AQID"}}}},{{"/":"{b}"}}],"c":{{"/":"{a}","x":1}}}}"#);
        let bytes = Bytes::from(text);
        assert_eq!(links(&v1(DAG_JSON, &bytes), &bytes), Ok(vec![a, b]));
        let bad = Bytes::from_static(br#"{"/":"not a cid"}"#);
        assert!(matches!(links(&v1(DAG_JSON, &bad), &bad), Err(LinksError::DagJson(_))));
    }
}
