//! The UnixFS `Data` message carried in a dag-pb node's data section.
//!
//! Field order within this message follows field numbers, so a derived encoder gives the
//! same bytes as Kubo; only the outer dag-pb node needs hand encoding (see [`crate::dagpb`]).
//! [`UnixFs::decode`] checks the invariants a reader depends on (a known type, a sane HAMT
//! fanout and hash) and reports violations as [`UnixFsError`].

use bytes::Bytes;
use prost::Message;

/// The multihash code of murmur3-x64-64, the only HAMT hash function UnixFS uses.
pub const HAMT_HASH_MURMUR3: u64 = 0x22;
/// The largest HAMT fanout Cairn accepts when reading.
pub const MAX_HAMT_FANOUT: u64 = 1024;

/// UnixFS node types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum DataType {
    /// Raw bytes (legacy leaves).
    Raw = 0,
    /// A plain directory.
    Directory = 1,
    /// A file or a piece of one.
    File = 2,
    /// Metadata (unused by Kubo's importer).
    Metadata = 3,
    /// A symbolic link; `data` holds the target.
    Symlink = 4,
    /// A HAMT-sharded directory node.
    HamtShard = 5,
}

/// Seconds and nanoseconds since the Unix epoch.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct UnixTime {
    /// Whole seconds.
    #[prost(int64, required, tag = "1")]
    pub seconds: i64,
    /// Fractional part in nanoseconds.
    #[prost(fixed32, optional, tag = "2")]
    pub fractional_nanoseconds: Option<u32>,
}

/// The UnixFS `Data` protobuf message.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct UnixFs {
    /// The node type, as a [`DataType`].
    #[prost(enumeration = "DataType", required, tag = "1")]
    pub r#type: i32,
    /// File bytes, a symlink target, or a HAMT bitfield.
    #[prost(bytes = "bytes", optional, tag = "2")]
    pub data: Option<Bytes>,
    /// Total file size under this node.
    #[prost(uint64, optional, tag = "3")]
    pub filesize: Option<u64>,
    /// The file size under each child link, in link order.
    #[prost(uint64, repeated, packed = "false", tag = "4")]
    pub blocksizes: Vec<u64>,
    /// HAMT hash function (multihash code).
    #[prost(uint64, optional, tag = "5")]
    pub hash_type: Option<u64>,
    /// HAMT fanout.
    #[prost(uint64, optional, tag = "6")]
    pub fanout: Option<u64>,
    /// Unix permission bits.
    #[prost(uint32, optional, tag = "7")]
    pub mode: Option<u32>,
    /// Modification time.
    #[prost(message, optional, tag = "8")]
    pub mtime: Option<UnixTime>,
}

/// Why a dag-pb data section is not a valid UnixFS node.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum UnixFsError {
    /// The protobuf itself is malformed or truncated.
    #[error("unixfs: malformed Data message: {0}")]
    Protobuf(String),
    /// The node has no data section at all.
    #[error("unixfs: dag-pb node has no Data section")]
    Missing,
    /// The type number is not one UnixFS defines.
    #[error("unixfs: unknown node type {0}")]
    UnknownType(i32),
    /// A HAMT fanout that is zero, not a power of two, or larger than [`MAX_HAMT_FANOUT`].
    #[error("unixfs: HAMT fanout {0} is not a power of two between 2 and {MAX_HAMT_FANOUT}")]
    BadFanout(u64),
    /// A HAMT hash function other than murmur3-x64-64.
    #[error("unixfs: HAMT hash 0x{0:x} is not murmur3-x64-64 (0x22)")]
    BadHamtHash(u64),
}

impl UnixFs {
    /// A file node of one chunk (or a leaf of a larger file).
    pub fn file_leaf(chunk: Bytes) -> UnixFs {
        let len = chunk.len() as u64;
        UnixFs {
            r#type: DataType::File as i32,
            data: (len > 0).then_some(chunk),
            filesize: Some(len),
            ..Default::default()
        }
    }

    /// An inner file node over children holding `blocksizes` bytes each.
    pub fn file_node(blocksizes: Vec<u64>) -> UnixFs {
        UnixFs {
            r#type: DataType::File as i32,
            filesize: Some(blocksizes.iter().sum()),
            blocksizes,
            ..Default::default()
        }
    }

    /// A plain directory node.
    pub fn directory() -> UnixFs {
        UnixFs { r#type: DataType::Directory as i32, ..Default::default() }
    }

    /// A HAMT shard node with its occupancy bitfield.
    pub fn hamt_shard(bitfield: Bytes, fanout: u64) -> UnixFs {
        UnixFs {
            r#type: DataType::HamtShard as i32,
            data: Some(bitfield),
            hash_type: Some(HAMT_HASH_MURMUR3),
            fanout: Some(fanout),
            ..Default::default()
        }
    }

    /// A symlink to `target`.
    pub fn symlink(target: &str) -> UnixFs {
        UnixFs {
            r#type: DataType::Symlink as i32,
            data: Some(Bytes::copy_from_slice(target.as_bytes())),
            ..Default::default()
        }
    }

    /// The node type.
    pub fn kind(&self) -> Result<DataType, UnixFsError> {
        DataType::try_from(self.r#type).map_err(|_| UnixFsError::UnknownType(self.r#type))
    }

    /// The bytes held inline, or an empty slice.
    pub fn inline_data(&self) -> Bytes {
        self.data.clone().unwrap_or_default()
    }

    /// Encodes the message.
    pub fn to_bytes(&self) -> Bytes {
        Bytes::from(self.encode_to_vec())
    }

    /// Decodes and checks a UnixFS data section, without copying file bytes.
    pub fn decode(data: Bytes) -> Result<UnixFs, UnixFsError> {
        let fs = <UnixFs as Message>::decode(data).map_err(|e| UnixFsError::Protobuf(e.to_string()))?;
        if fs.kind()? == DataType::HamtShard {
            let fanout = fs.fanout.unwrap_or(0);
            if !(2..=MAX_HAMT_FANOUT).contains(&fanout) || !fanout.is_power_of_two() {
                return Err(UnixFsError::BadFanout(fanout));
            }
            let hash = fs.hash_type.unwrap_or(0);
            if hash != HAMT_HASH_MURMUR3 {
                return Err(UnixFsError::BadHamtHash(hash));
            }
        }
        Ok(fs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_leaf_matches_kubo_bytes() {
        // Kubo's empty file node holds `Type: File, filesize: 0` and no Data field.
        assert_eq!(UnixFs::file_leaf(Bytes::new()).encode_to_vec(), [0x08, 0x02, 0x18, 0x00]);
    }

    #[test]
    fn leaf_fields_are_in_number_order() {
        let enc = UnixFs::file_leaf(Bytes::from_static(b"hi")).encode_to_vec();
        assert_eq!(enc, [0x08, 0x02, 0x12, 0x02, b'h', b'i', 0x18, 0x02]);
    }

    #[test]
    fn blocksizes_are_not_packed() {
        let enc = UnixFs::file_node(vec![1, 2]).encode_to_vec();
        assert_eq!(enc, [0x08, 0x02, 0x18, 0x03, 0x20, 0x01, 0x20, 0x02]);
    }

    #[test]
    fn absurd_fanout_is_refused() {
        for fanout in [0, 3, 2048, u64::MAX] {
            let fs = UnixFs::hamt_shard(Bytes::new(), fanout);
            assert_eq!(UnixFs::decode(fs.to_bytes()), Err(UnixFsError::BadFanout(fanout)));
        }
        let mut fs = UnixFs::hamt_shard(Bytes::new(), 256);
        fs.hash_type = Some(0x12);
        assert_eq!(UnixFs::decode(fs.to_bytes()), Err(UnixFsError::BadHamtHash(0x12)));
    }

    #[test]
    fn unknown_type_and_truncation_are_errors() {
        assert_eq!(UnixFs::decode(Bytes::from_static(&[0x08, 0x09])), Err(UnixFsError::UnknownType(9)));
        assert!(matches!(
            UnixFs::decode(Bytes::from_static(&[0x08, 0x02, 0x12, 0x05, 1])),
            Err(UnixFsError::Protobuf(_))
        ));
    }
}
