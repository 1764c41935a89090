//! `block put`'s options as Kubo 0.43 takes them: `cid-codec`, the deprecated `format`,
//! `mhtype`, `mhlen` and `allow-big-block`, checked in Kubo's order and, where a client may
//! look for them, with Kubo's messages. The CLI and the RPC API share them, so that `cairn
//! block put` names a block alike offline and through the daemon, and as Kubo names it.
//!
//! Kubo stores whatever it is given under whatever CID the options make. Cairn refuses, and
//! says why, what it could not verify or walk later: a codec other than raw, dag-pb, dag-cbor
//! and dag-json; a hash other than sha2-256, sha2-512, blake3 and identity; a digest that
//! `mhlen` cuts short; bytes that decode under no codec it reads (bytes of one named as
//! another, as IPFS Cluster's block streams name them, are kept); and a block over
//! [`BIG_BLOCK_LIMIT`] even with `allow-big-block`. It also checks a block's size before
//! storing it, where Kubo stores (and pins) an oversized block and then refuses it.

use bytes::Bytes;
use cairn_merkle::hash::{
    codec_by_name, CidFormat, HashAlg, DAG_CBOR, DAG_JSON, DAG_PB, IDENTITY, MAX_IDENTITY_DIGEST, RAW,
};
use cairn_merkle::links::LinksError;
use cairn_merkle::{Block, Cid};

use crate::import_settings::{kubo_hash, KuboHash};

/// The largest block stored without `allow-big-block`: 2 MiB, as in Kubo 0.43, the most a
/// Bitswap message carries, so that every block stored can be exchanged.
pub const SOFT_BLOCK_LIMIT: usize = 2 << 20;

/// The largest block stored even with `allow-big-block` (Kubo has no such bound): a block is
/// held whole in memory while it is hashed, and the CAR reader takes blocks of at most 4 MiB.
pub const BIG_BLOCK_LIMIT: usize = 8 << 20;

/// The shortest digest Kubo makes when `mhlen` asks for one shorter than the function's.
const MIN_DIGEST: i64 = 20;

/// Why `block put` refused its options or a block.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum BlockPutError {
    /// `mhtype` is no multihash name Kubo knows (Kubo's words).
    #[error("unrecognized multihash function: {0}")]
    UnknownHash(String),
    /// `mhtype` names a function Kubo refuses as too weak (Kubo's words).
    #[error("potentially insecure hash functions not allowed")]
    InsecureHash,
    /// `mhtype` names a function Kubo makes blocks with and Cairn cannot verify.
    #[error("multihash function {0} is not supported by Cairn (use sha2-256, sha2-512, blake3 or identity)")]
    UnsupportedHash(String),
    /// `format` and a `cid-codec` other than the default together (Kubo's words).
    #[error("unable to use \"format\" (deprecated) and a custom \"cid-codec\" at the same time")]
    FormatAndCodec,
    /// The codec is not one whose blocks Cairn can read (Kubo's words for a name it does
    /// not know, and which ones Cairn takes).
    #[error("unknown multicodec: {0:?} (Cairn stores raw, dag-pb, dag-cbor and dag-json blocks)")]
    UnknownCodec(String),
    /// `format=v0` with another hash or digest length than sha2-256's 32 bytes (Kubo's
    /// words, its misspelling of sha2-256 included).
    #[error("only sha2-255-32 is allowed with CIDv0")]
    V0Hash,
    /// `mhlen` is longer than the function's digest (Kubo's words).
    #[error("invalid cid: requested length was too large for digest")]
    DigestTooLong,
    /// `mhlen` is shorter than Kubo allows (Kubo's words).
    #[error("digest too small: {hash} digest got {len} bytes, minimum 20")]
    DigestTooShort {
        /// The function.
        hash: HashAlg,
        /// The length asked for.
        len: i64,
    },
    /// `mhlen` would cut the digest short, which Kubo does and Cairn could not verify.
    #[error("mhlen {len} would cut the {hash} digest short: Cairn verifies whole digests only (mhlen -1 or {full})")]
    Truncated {
        /// The function.
        hash: HashAlg,
        /// The length asked for.
        len: i64,
        /// The function's whole length.
        full: usize,
    },
    /// An identity "digest" (the block itself) over 128 bytes (Kubo's words).
    #[error("digest too large: identity digest got {0} bytes, maximum {MAX_IDENTITY_DIGEST}")]
    IdentityTooLong(usize),
    /// An identity block of 65 to 128 bytes, which Kubo takes and Cairn's CIDs cannot hold.
    #[error("identity digest of {0} bytes: Cairn's CIDs hold digests of at most 64 bytes (use another mhtype)")]
    IdentityOverCid(usize),
    /// A block over the soft limit without `allow-big-block` (Kubo's words, which its users
    /// know the way out of).
    #[error(
        "produced block is over 2MiB: big blocks can't be exchanged with other peers. consider using UnixFS for \
         automatic chunking of bigger files, or pass --allow-big-block to override"
    )]
    OverSoftLimit,
    /// A block over [`BIG_BLOCK_LIMIT`], which even `allow-big-block` does not let in.
    #[error("produced block is over 8MiB: Cairn stores no larger block, even with --allow-big-block")]
    OverHardLimit,
    /// The bytes do not decode under the codec their CID would name.
    #[error(transparent)]
    Undecodable(#[from] LinksError),
}

/// Kubo's options of one `block put`, as given (`None`: not given).
#[derive(Debug, Clone, Copy, Default)]
pub struct BlockPutFlags<'a> {
    /// `cid-codec`: the multicodec name of the blocks' codec (Kubo's default, `raw`).
    pub cid_codec: Option<&'a str>,
    /// `format`, deprecated: `v0` (dag-pb under CIDv0), `cbor`, `protobuf` or a codec name.
    pub format: Option<&'a str>,
    /// `mhtype`: the multihash function's name (Kubo's default, `sha2-256`).
    pub mhtype: Option<&'a str>,
    /// `mhlen`: the digest's length; negative (Kubo's default, -1) for the function's own.
    pub mhlen: Option<i64>,
    /// `allow-big-block`: blocks over [`SOFT_BLOCK_LIMIT`] too.
    pub allow_big_block: bool,
}

/// How the blocks of one `block put` are named and bounded, from checked [`BlockPutFlags`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockPut {
    codec: u64,
    /// 0 with `format=v0`, else 1.
    version: u8,
    /// `None`: identity, the block is its own digest.
    hash: Option<HashAlg>,
    limit: usize,
}

impl BlockPut {
    /// Checks `flags` as Kubo does, in its order, and refuses what Cairn could not verify.
    pub fn new(flags: &BlockPutFlags<'_>) -> Result<BlockPut, BlockPutError> {
        let name = flags.mhtype.unwrap_or("sha2-256");
        let hash = match kubo_hash(name) {
            KuboHash::Unknown => return Err(BlockPutError::UnknownHash(name.to_owned())),
            KuboHash::NotAllowed => return Err(BlockPutError::InsecureHash),
            KuboHash::Allowed if name == "identity" => None,
            KuboHash::Allowed => {
                Some(name.parse::<HashAlg>().map_err(|_| BlockPutError::UnsupportedHash(name.to_owned()))?)
            }
        };
        let cid_codec = flags.cid_codec.filter(|c| !c.is_empty());
        let (codec, version) = match flags.format.filter(|f| !f.is_empty()) {
            Some(_) if cid_codec.is_some_and(|c| c != "raw") => return Err(BlockPutError::FormatAndCodec),
            // The deprecated names: only `v0` makes a CIDv0.
            Some("v0") => (DAG_PB, 0),
            Some("protobuf") => (DAG_PB, 1),
            Some("cbor") => (DAG_CBOR, 1),
            Some(name) => (codec(name)?, 1),
            None => (codec(cid_codec.unwrap_or("raw"))?, 1),
        };
        let mhlen = flags.mhlen.unwrap_or(-1);
        if version == 0 && (hash != Some(HashAlg::Sha2_256) || !matches!(mhlen, -1 | 32)) {
            return Err(BlockPutError::V0Hash);
        }
        if let Some(hash) = hash.filter(|_| mhlen >= 0) {
            let full = hash.digest_len();
            match mhlen {
                n if n > full as i64 => return Err(BlockPutError::DigestTooLong),
                n if n < MIN_DIGEST => return Err(BlockPutError::DigestTooShort { hash, len: n }),
                n if n < full as i64 => return Err(BlockPutError::Truncated { hash, len: n, full }),
                _ => {}
            }
        }
        let limit = if flags.allow_big_block { BIG_BLOCK_LIMIT } else { SOFT_BLOCK_LIMIT };
        Ok(BlockPut { codec, version, hash, limit })
    }

    /// Refuses a block of `len` bytes (or one that has reached `len` bytes and goes on) that
    /// is over the limit, so that an upload can stop before it holds more.
    pub fn check_size(&self, len: usize) -> Result<(), BlockPutError> {
        match len {
            n if n <= self.limit => Ok(()),
            _ if self.limit == SOFT_BLOCK_LIMIT => Err(BlockPutError::OverSoftLimit),
            _ => Err(BlockPutError::OverHardLimit),
        }
    }

    /// `data` as a block under these options, named as Kubo names it. Bytes over the limit,
    /// an identity block over 128 bytes, and bytes that decode under none of the codecs Cairn
    /// reads are refused.
    pub fn block(&self, data: Bytes) -> Result<Block, BlockPutError> {
        self.check_size(data.len())?;
        let cid = match self.hash {
            Some(hash) => CidFormat { version: self.version, hash }.cid(self.codec, &data),
            None => match data.len() {
                n if n > MAX_IDENTITY_DIGEST => return Err(BlockPutError::IdentityTooLong(n)),
                n => {
                    let digest = cid::multihash::Multihash::<64>::wrap(IDENTITY, &data)
                        .map_err(|_| BlockPutError::IdentityOverCid(n))?;
                    Cid::new_v1(self.codec, digest)
                }
            },
        };
        if self.codec != RAW {
            if let Err(e) = cairn_merkle::links::links(&cid, &data) {
                // IPFS Cluster puts a stream of blocks under the first one's options: a
                // sharded add's dag-cbor shard nodes come named dag-pb, and Cluster then pins
                // them by their own CIDs. The store keys blocks by multihash, so bytes that are
                // a block of another codec Cairn reads are kept, as Kubo keeps them; anything
                // else is refused.
                let mut other = [DAG_PB, DAG_CBOR, DAG_JSON].into_iter().filter(|&c| c != self.codec);
                if !other.any(|c| cairn_merkle::links::links(&Cid::new_v1(c, *cid.hash()), &data).is_ok()) {
                    return Err(e.into());
                }
            }
        }
        Ok(Block::new_unchecked(cid, data))
    }
}

/// A codec by its multicodec name, among those Cairn reads.
fn codec(name: &str) -> Result<u64, BlockPutError> {
    codec_by_name(name).ok_or_else(|| BlockPutError::UnknownCodec(name.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The flags of a query as Kubo's clients send it: `mhtype=sha2-512&mhlen=32`.
    fn q(query: &'static str) -> BlockPutFlags<'static> {
        let mut flags = BlockPutFlags::default();
        for (key, value) in query.split('&').filter(|p| !p.is_empty()).map(|p| p.split_once('=').unwrap()) {
            match key {
                "cid-codec" => flags.cid_codec = Some(value),
                "format" => flags.format = Some(value),
                "mhtype" => flags.mhtype = Some(value),
                "mhlen" => flags.mhlen = Some(value.parse().unwrap()),
                "allow-big-block" => flags.allow_big_block = value == "true",
                other => panic!("no flag {other}"),
            }
        }
        flags
    }

    /// The CID `flags` give `data`, or the error's message.
    fn put(flags: BlockPutFlags<'_>, data: &[u8]) -> Result<String, String> {
        let opts = BlockPut::new(&flags).map_err(|e| e.to_string())?;
        opts.block(Bytes::copy_from_slice(data)).map(|b| b.cid().to_string()).map_err(|e| e.to_string())
    }

    const RAW_BLOCK: &[u8] = b"a raw block";
    /// A dag-pb node with `Data` "hi" and no links.
    const PB_BLOCK: &[u8] = b"\x0a\x02hi";
    /// `{"a": 1}` in DAG-CBOR.
    const CBOR_BLOCK: &[u8] = b"\xa1\x61\x61\x01";

    /// What Kubo 0.43.1's `block/put` answered, byte for byte, to each of the queries with
    /// the block.
    #[test]
    fn cids_are_kubos() {
        const RAW_CID: &str = "bafkreie6xpbgp3uqrtzu5753gu6txssyxn4yubdeormuebemdoksxy7xkm";
        const PB_V0: &str = "QmNnqpGdvgQayTy9CvUhD2BvDVUixoGjdPJxxKroeoPDTR";
        const PB_V1: &str = "bafybeiagwwulai7ibwdmxfkobhaxnlc4vyyrwuqqxvqp6nsyesftaxgkdq";
        const CBOR: &str = "bafyreihltcnuuyqp2jm24aqydpnlj7b6w3ogwrplomrjtg5rifv44mmjey";
        let cases: &[(&[&'static str], &[u8], &str)] = &[
            (&["", "mhlen=32", "mhlen=-2", "cid-codec=", "format=raw"], RAW_BLOCK, RAW_CID),
            (
                &["mhtype=sha2-512"],
                RAW_BLOCK,
                "bafkrgqhfmfxmzkcdk6hbxxjrqctd64wyvmeufmuwfernfdz7ugdbuujod7zglbzvlzdkupayrqzvzla54ndiph6bs3c5lkfevikbpwku6c7dw",
            ),
            (&["mhtype=blake3"], RAW_BLOCK, "bafkr4ihkpretjphibwr5tvq6rlrl55ezgzldqzq5qncirfww2rmt5yphfi"),
            (&["mhtype=identity", "mhtype=identity&mhlen=5"], RAW_BLOCK, "bafkqac3bebzgc5zamjwg6y3l"),
            (&["cid-codec=dag-cbor", "format=cbor", "format=dag-cbor"], CBOR_BLOCK, CBOR),
            (&["cid-codec=dag-json"], b"{\"a\":1}", "baguqeeraafnl2724yv5c3wklowipaswybbbhhec64m7mltv6vzrco2ux7bra"),
            (&["cid-codec=dag-pb", "format=protobuf", "format=dag-pb"], PB_BLOCK, PB_V1),
            (
                &["cid-codec=dag-pb&mhtype=sha2-512"],
                PB_BLOCK,
                "bafybgqc6jedfp2uynou236j7ecmwkggortaix27tovnqj7pgiy3vxsqdnopudnkuimt4mthsyjina42ukvabbphkumftnsqqr4rxzukwwg246",
            ),
            (&["format=v0", "format=v0&mhlen=32", "format=v0&cid-codec=raw"], PB_BLOCK, PB_V0),
            // An empty `format` is no format: the bytes are raw.
            (&["format="], PB_BLOCK, "bafkreiagwwulai7ibwdmxfkobhaxnlc4vyyrwuqqxvqp6nsyesftaxgkdq"),
            (&[""], b"", "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"),
        ];
        for (queries, data, want) in cases {
            for query in *queries {
                assert_eq!(put(q(query), data).as_deref(), Ok(*want), "{query}");
            }
        }
    }

    /// Kubo 0.43.1's refusals, word for word; and Cairn's own where Kubo would store a block
    /// Cairn could not verify or read.
    #[test]
    fn refusals_are_kubos_or_say_why() {
        let kubo: &[(BlockPutFlags<'static>, &[u8], &str)] = &[
            (q("mhtype=nope"), RAW_BLOCK, "unrecognized multihash function: nope"),
            (q("mhtype=SHA2-256"), RAW_BLOCK, "unrecognized multihash function: SHA2-256"),
            (q("mhtype=md5"), RAW_BLOCK, "potentially insecure hash functions not allowed"),
            (q("mhlen=33"), RAW_BLOCK, "invalid cid: requested length was too large for digest"),
            (q("mhtype=sha2-512&mhlen=65"), RAW_BLOCK, "invalid cid: requested length was too large for digest"),
            (q("mhlen=0"), RAW_BLOCK, "digest too small: sha2-256 digest got 0 bytes, minimum 20"),
            (q("mhlen=19"), RAW_BLOCK, "digest too small: sha2-256 digest got 19 bytes, minimum 20"),
            (q("mhtype=blake3&mhlen=16"), RAW_BLOCK, "digest too small: blake3 digest got 16 bytes, minimum 20"),
            (q("format=v0&mhtype=sha2-512"), PB_BLOCK, "only sha2-255-32 is allowed with CIDv0"),
            (q("format=v0&mhtype=blake3"), PB_BLOCK, "only sha2-255-32 is allowed with CIDv0"),
            (q("format=v0&mhlen=20"), PB_BLOCK, "only sha2-255-32 is allowed with CIDv0"),
            (
                q("format=v0&cid-codec=dag-pb"),
                PB_BLOCK,
                "unable to use \"format\" (deprecated) and a custom \"cid-codec\" at the same time",
            ),
            (q("mhtype=identity"), &[b'x'; 129], "digest too large: identity digest got 129 bytes, maximum 128"),
        ];
        for (flags, data, want) in kubo {
            assert_eq!(put(*flags, data), Err((*want).to_owned()), "{flags:?}");
        }
        // Kubo stores these; Cairn could not verify or walk them.
        let cairn: &[(BlockPutFlags<'static>, &[u8], &str)] = &[
            (q("mhtype=sha3-256"), RAW_BLOCK, "sha3-256 is not supported by Cairn"),
            (q("mhtype=identity"), &[b'x'; 65], "Cairn's CIDs hold digests of at most 64"),
            (q("mhlen=20"), RAW_BLOCK, "mhlen 20 would cut the sha2-256 digest short"),
            (q("mhtype=blake3&mhlen=64"), RAW_BLOCK, "too large for digest"),
            (q("cid-codec=git-raw"), RAW_BLOCK, "unknown multicodec: \"git-raw\""),
            // As `cid-codec`, these are the multicodecs protobuf (0x50) and cbor (0x51).
            (q("cid-codec=protobuf"), PB_BLOCK, "unknown multicodec: \"protobuf\""),
            (q("cid-codec=cbor"), CBOR_BLOCK, "unknown multicodec: \"cbor\""),
            (q("format=V0"), PB_BLOCK, "unknown multicodec: \"V0\""),
            (q("cid-codec=dag-pb"), RAW_BLOCK, "not valid dag-pb"),
            (q("cid-codec=dag-cbor"), RAW_BLOCK, "not valid dag-cbor"),
            (q("cid-codec=dag-json"), RAW_BLOCK, "not valid dag-json"),
            (q("format=v0"), RAW_BLOCK, "not valid dag-pb"),
        ];
        for (flags, data, want) in cairn {
            let got = put(*flags, data).expect_err(want);
            assert!(got.contains(want), "{flags:?}: {got}");
        }
    }

    /// A block of one codec named as another, as IPFS Cluster's stream of a sharded add names
    /// its dag-cbor shard nodes dag-pb: kept under the CID asked for (same multihash).
    #[test]
    fn a_block_of_another_readable_codec_is_kept() {
        let opts = BlockPut::new(&q("cid-codec=dag-pb")).unwrap();
        let block = opts.block(Bytes::from_static(CBOR_BLOCK)).unwrap();
        assert_eq!(block.cid().codec(), DAG_PB);
        let as_cbor = BlockPut::new(&q("cid-codec=dag-cbor")).unwrap().block(Bytes::from_static(CBOR_BLOCK)).unwrap();
        assert_eq!(block.cid().hash(), as_cbor.cid().hash());
        let pb_as_json = BlockPut::new(&q("cid-codec=dag-json")).unwrap().block(Bytes::from_static(PB_BLOCK));
        assert!(pb_as_json.is_ok());
    }

    /// 2 MiB is the most without `allow-big-block`, with Kubo's message past it; 8 MiB with it.
    #[test]
    fn sizes_are_bounded() {
        let soft = BlockPut::new(&q("")).unwrap();
        assert!(soft.block(Bytes::from(vec![b'x'; 2 << 20])).is_ok());
        let over = soft.block(Bytes::from(vec![b'x'; (2 << 20) + 1])).unwrap_err();
        assert_eq!(over, BlockPutError::OverSoftLimit);
        assert!(over.to_string().starts_with("produced block is over 2MiB: big blocks can't be exchanged"));
        assert!(over.to_string().ends_with("or pass --allow-big-block to override"));
        let big = BlockPut::new(&q("allow-big-block=true")).unwrap();
        assert!(big.block(Bytes::from(vec![b'x'; (2 << 20) + 1])).is_ok());
        assert!(big.check_size(BIG_BLOCK_LIMIT).is_ok());
        assert_eq!(big.check_size(BIG_BLOCK_LIMIT + 1), Err(BlockPutError::OverHardLimit));
    }
}
