//! The dag-pb codec (multicodec 0x70), encoded and decoded by hand.
//!
//! The canonical form writes a node's `Links` (field 2) before its `Data` (field 1), and a
//! link's `Hash`, `Name` and `Tsize` in that order. A derive-generated protobuf encoder would
//! write fields in number order and so produce other bytes and another CID; that is why this
//! module does not use one. Decoding is strict in the same ways as the dag-pb spec: unknown
//! fields, wrong wire types, duplicate sections, links after data, out-of-order link fields
//! and links without a hash are errors.

use bytes::Bytes;
use cid::Cid;

/// Why a block is not valid dag-pb.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum DagPbError {
    /// The bytes end inside a field.
    #[error("dag-pb: unexpected end of data")]
    Truncated,
    /// A varint is longer than ten bytes or overflows 64 bits.
    #[error("dag-pb: malformed varint")]
    BadVarint,
    /// A field number or wire type that dag-pb does not have.
    #[error("dag-pb: invalid field {field} with wire type {wire_type} in {context}")]
    UnknownField {
        /// The protobuf field number.
        field: u64,
        /// The protobuf wire type.
        wire_type: u8,
        /// `PBNode` or `PBLink`.
        context: &'static str,
    },
    /// A section appears twice, or links continue after the data.
    #[error("dag-pb: duplicate {0} section")]
    Duplicate(&'static str),
    /// Link fields are not in `Hash`, `Name`, `Tsize` order.
    #[error("dag-pb: invalid order, found {later} before {earlier}")]
    Order {
        /// The field that should come first.
        earlier: &'static str,
        /// The field that came first instead.
        later: &'static str,
    },
    /// A link has no `Hash`, or one that is not a CID.
    #[error("dag-pb: invalid Hash field found in link, expected CID")]
    BadLinkHash,
    /// A link name is not UTF-8.
    #[error("dag-pb: link name is not valid UTF-8")]
    BadName,
}

/// One link of a dag-pb node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PbLink {
    /// The child's CID.
    pub cid: Cid,
    /// The link's name; UnixFS file links carry `Some("")`.
    pub name: Option<String>,
    /// The cumulative size of the child's DAG in bytes, as the encoder stated it.
    pub tsize: Option<u64>,
}

impl PbLink {
    /// A link with a name and a size, as UnixFS writes them.
    pub fn new(cid: Cid, name: impl Into<String>, tsize: u64) -> Self {
        PbLink { cid, name: Some(name.into()), tsize: Some(tsize) }
    }

    /// The name, or `""` when it is absent.
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("")
    }

    /// The length of the link's own encoding (without the `Links` field's tag and length).
    pub(crate) fn encoded_len(&self) -> usize {
        let h = self.cid.encoded_len();
        let mut n = 1 + varint_len(h as u64) + h;
        if let Some(name) = &self.name {
            n += 1 + varint_len(name.len() as u64) + name.len();
        }
        if let Some(t) = self.tsize {
            n += 1 + varint_len(t);
        }
        n
    }
}

/// A dag-pb node: links, then optional data.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PbNode {
    /// The links, in the order they are encoded.
    pub links: Vec<PbLink>,
    /// The data section, if present (for UnixFS, an encoded `Data` message).
    pub data: Option<Bytes>,
}

/// The exact length of a node with these links and a data section of `data_len` bytes, without
/// building it.
pub fn encoded_len(links: &[PbLink], data_len: Option<usize>) -> usize {
    let mut n = 0;
    for l in links {
        let ll = l.encoded_len();
        n += 1 + varint_len(ll as u64) + ll;
    }
    if let Some(d) = data_len {
        n += 1 + varint_len(d as u64) + d;
    }
    n
}

impl PbNode {
    /// Decodes a dag-pb block. Data is sliced from `buf` without copying.
    pub fn decode(buf: &Bytes) -> Result<PbNode, DagPbError> {
        let mut node = PbNode::default();
        let mut r = Reader { buf, pos: 0 };
        let mut seen_links = false;
        while !r.done() {
            let (field, wire_type) = r.key()?;
            if wire_type != 2 {
                return Err(DagPbError::UnknownField { field, wire_type, context: "PBNode" });
            }
            match field {
                1 => {
                    if node.data.is_some() {
                        return Err(DagPbError::Duplicate("Data"));
                    }
                    node.data = Some(r.bytes()?);
                }
                2 => {
                    if node.data.is_some() && seen_links {
                        return Err(DagPbError::Duplicate("Links"));
                    }
                    seen_links = true;
                    let raw = r.bytes()?;
                    node.links.push(decode_link(&raw)?);
                }
                _ => return Err(DagPbError::UnknownField { field, wire_type, context: "PBNode" }),
            }
        }
        Ok(node)
    }

    /// The exact length of [`PbNode::encode`]'s output.
    pub fn encoded_len(&self) -> usize {
        encoded_len(&self.links, self.data.as_ref().map(Bytes::len))
    }

    /// Encodes the node in canonical form: links first, then data.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        for l in &self.links {
            out.push(0x12);
            put_varint(&mut out, l.encoded_len() as u64);
            let hash = l.cid.to_bytes();
            out.push(0x0a);
            put_varint(&mut out, hash.len() as u64);
            out.extend_from_slice(&hash);
            if let Some(name) = &l.name {
                out.push(0x12);
                put_varint(&mut out, name.len() as u64);
                out.extend_from_slice(name.as_bytes());
            }
            if let Some(t) = l.tsize {
                out.push(0x18);
                put_varint(&mut out, t);
            }
        }
        if let Some(d) = &self.data {
            out.push(0x0a);
            put_varint(&mut out, d.len() as u64);
            out.extend_from_slice(d);
        }
        out
    }
}

fn decode_link(buf: &Bytes) -> Result<PbLink, DagPbError> {
    let mut r = Reader { buf, pos: 0 };
    let mut hash: Option<Bytes> = None;
    let mut name: Option<String> = None;
    let mut tsize: Option<u64> = None;
    let unknown = |field, wire_type| DagPbError::UnknownField { field, wire_type, context: "PBLink" };
    while !r.done() {
        let (field, wire_type) = r.key()?;
        match field {
            1 => {
                if hash.is_some() {
                    return Err(DagPbError::Duplicate("Hash"));
                }
                if wire_type != 2 {
                    return Err(unknown(field, wire_type));
                }
                if name.is_some() {
                    return Err(DagPbError::Order { earlier: "Hash", later: "Name" });
                }
                if tsize.is_some() {
                    return Err(DagPbError::Order { earlier: "Hash", later: "Tsize" });
                }
                hash = Some(r.bytes()?);
            }
            2 => {
                if name.is_some() {
                    return Err(DagPbError::Duplicate("Name"));
                }
                if wire_type != 2 {
                    return Err(unknown(field, wire_type));
                }
                if tsize.is_some() {
                    return Err(DagPbError::Order { earlier: "Name", later: "Tsize" });
                }
                let raw = r.bytes()?;
                name = Some(String::from_utf8(raw.to_vec()).map_err(|_| DagPbError::BadName)?);
            }
            3 => {
                if tsize.is_some() {
                    return Err(DagPbError::Duplicate("Tsize"));
                }
                if wire_type != 0 {
                    return Err(unknown(field, wire_type));
                }
                tsize = Some(r.varint()?);
            }
            _ => return Err(unknown(field, wire_type)),
        }
    }
    let hash = hash.ok_or(DagPbError::BadLinkHash)?;
    // The field must hold exactly one CID: trailing bytes would make two encodings of the
    // same link and so two CIDs for one node.
    let mut cursor = std::io::Cursor::new(hash.as_ref());
    let cid = Cid::read_bytes(&mut cursor).map_err(|_| DagPbError::BadLinkHash)?;
    if cursor.position() as usize != hash.len() {
        return Err(DagPbError::BadLinkHash);
    }
    Ok(PbLink { cid, name, tsize })
}

struct Reader<'a> {
    buf: &'a Bytes,
    pos: usize,
}

impl Reader<'_> {
    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn varint(&mut self) -> Result<u64, DagPbError> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let b = *self.buf.get(self.pos).ok_or(DagPbError::Truncated)?;
            self.pos += 1;
            if i == 9 && b > 1 {
                return Err(DagPbError::BadVarint);
            }
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DagPbError::BadVarint)
    }

    fn key(&mut self) -> Result<(u64, u8), DagPbError> {
        let k = self.varint()?;
        Ok((k >> 3, (k & 7) as u8))
    }

    fn bytes(&mut self) -> Result<Bytes, DagPbError> {
        let len = self.varint()?;
        let len = usize::try_from(len).map_err(|_| DagPbError::Truncated)?;
        let end = self.pos.checked_add(len).ok_or(DagPbError::Truncated)?;
        if end > self.buf.len() {
            return Err(DagPbError::Truncated);
        }
        let out = self.buf.slice(self.pos..end);
        self.pos = end;
        Ok(out)
    }
}

/// Number of bytes of `v` as a protobuf varint.
pub(crate) fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// Appends `v` as a protobuf varint.
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn varint_len_matches_encoding() {
        for v in [0u64, 1, 127, 128, 16383, 16384, u64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(b.len(), varint_len(v), "{v}");
        }
    }

    #[test]
    fn trailing_bytes_after_a_link_cid_are_refused() {
        let cid = crate::hash::CidFormat::default().cid(crate::hash::DAG_PB, b"x");
        let mut hash = cid.to_bytes();
        hash.push(0);
        let mut link = vec![0x0a, hash.len() as u8];
        link.extend_from_slice(&hash);
        let mut node = vec![0x12, link.len() as u8];
        node.extend_from_slice(&link);
        assert_eq!(PbNode::decode(&Bytes::from(node)), Err(DagPbError::BadLinkHash));
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        let node = PbNode { links: vec![], data: Some(Bytes::from_static(b"hello")) };
        let enc = node.encode();
        for cut in 0..enc.len() {
            let r = PbNode::decode(&Bytes::copy_from_slice(&enc[..cut]));
            assert!(cut == 0 || r.is_err(), "cut at {cut} decoded");
        }
    }

    fn arb_cid() -> impl Strategy<Value = Cid> {
        (any::<[u8; 16]>(), any::<bool>()).prop_map(|(seed, v1)| {
            let f = crate::hash::CidFormat { version: if v1 { 1 } else { 0 }, ..Default::default() };
            f.cid(crate::hash::DAG_PB, &seed)
        })
    }

    fn arb_node() -> impl Strategy<Value = PbNode> {
        let link = (arb_cid(), proptest::option::of("\\PC{0,12}"), proptest::option::of(any::<u64>()))
            .prop_map(|(cid, name, tsize)| PbLink { cid, name, tsize });
        (proptest::collection::vec(link, 0..8), proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)))
            .prop_map(|(links, data)| PbNode { links, data: data.map(Bytes::from) })
    }

    proptest! {
        #[test]
        fn round_trip(node in arb_node()) {
            let enc = node.encode();
            prop_assert_eq!(enc.len(), node.encoded_len());
            let dec = PbNode::decode(&Bytes::from(enc.clone())).unwrap();
            prop_assert_eq!(&dec, &node);
            prop_assert_eq!(dec.encode(), enc);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = PbNode::decode(&Bytes::from(bytes));
        }
    }
}
