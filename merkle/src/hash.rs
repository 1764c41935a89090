//! Hash functions, multicodec numbers and CID construction.
//!
//! Cairn makes CIDs with sha2-256 (Kubo's default), sha2-512 or blake3, and accepts the
//! identity hash for small inlined blocks. Everything else is refused with [`CidError`] so that a caller
//! learns early that it cannot verify a block, instead of trusting it blindly.

use cid::Cid;
use multihash::Multihash;

/// Multicodec of dag-pb blocks (UnixFS nodes).
pub const DAG_PB: u64 = 0x70;
/// Multicodec of raw blocks (raw leaves).
pub const RAW: u64 = 0x55;
/// Multicodec of dag-cbor blocks (CAR headers, some DAGs read through a CAR).
pub const DAG_CBOR: u64 = 0x71;
/// Multicodec of dag-json blocks (signed manifests).
pub const DAG_JSON: u64 = 0x0129;
/// The codec a block command names by its multicodec name: `raw`, `dag-pb`, `dag-cbor` or
/// `dag-json`. Only the exact names: `protobuf` and `cbor` are other multicodecs (0x50, 0x51),
/// whose blocks Cairn cannot read.
pub fn codec_by_name(name: &str) -> Option<u64> {
    Some(match name {
        "raw" => RAW,
        "dag-pb" => DAG_PB,
        "dag-cbor" => DAG_CBOR,
        "dag-json" => DAG_JSON,
        _ => return None,
    })
}

/// Multicodec of libp2p public keys (`/ipns/<libp2p-key>` names).
pub const LIBP2P_KEY: u64 = 0x72;

/// Multihash code of the identity "hash" (the digest is the data itself).
pub const IDENTITY: u64 = 0x00;
/// Multihash code of sha2-256.
pub const SHA2_256: u64 = 0x12;
/// Multihash code of sha2-512 (64-byte digest).
pub const SHA2_512: u64 = 0x13;
/// Multihash code of blake3 (32-byte digest).
pub const BLAKE3: u64 = 0x1e;

/// The longest digest Cairn accepts for an identity CID, as Kubo does.
pub const MAX_IDENTITY_DIGEST: usize = 128;

/// Errors about CIDs and multihashes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CidError {
    /// The text or bytes are not a CID at all.
    #[error("malformed CID: {0}")]
    Malformed(String),
    /// The CID names a codec Cairn cannot decode.
    #[error("unsupported codec 0x{0:x} (Cairn reads dag-pb 0x70, raw 0x55, dag-cbor 0x71 and dag-json 0x129)")]
    UnsupportedCodec(u64),
    /// The CID names a hash function Cairn cannot compute, so it could not verify the block.
    #[error("unsupported hash function 0x{0:x} (Cairn verifies sha2-256 0x12, sha2-512 0x13, blake3 0x1e and identity 0x00)")]
    UnsupportedHash(u64),
    /// An identity CID carries more than [`MAX_IDENTITY_DIGEST`] bytes.
    #[error("identity CID holds {0} bytes; at most {MAX_IDENTITY_DIGEST} are allowed")]
    IdentityTooLong(usize),
    /// The digest has the wrong length for its hash function.
    #[error("digest of {got} bytes for hash 0x{code:x}, expected {expected}")]
    DigestLength {
        /// Multihash code.
        code: u64,
        /// Length found.
        got: usize,
        /// Length the function produces.
        expected: usize,
    },
}

/// The hash functions Cairn can build DAGs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum HashAlg {
    /// sha2-256, Kubo's default.
    #[default]
    Sha2_256,
    /// sha2-512, a 64-byte digest: CIDv1 only.
    Sha2_512,
    /// blake3 with a 32-byte digest.
    Blake3,
}

impl HashAlg {
    /// The multihash code.
    pub fn code(self) -> u64 {
        match self {
            HashAlg::Sha2_256 => SHA2_256,
            HashAlg::Sha2_512 => SHA2_512,
            HashAlg::Blake3 => BLAKE3,
        }
    }

    /// The length of its digest in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            HashAlg::Sha2_512 => 64,
            HashAlg::Sha2_256 | HashAlg::Blake3 => 32,
        }
    }

    /// Hashes `data` into a multihash.
    pub fn digest(self, data: &[u8]) -> Multihash<64> {
        let wrap = |d: &[u8]| Multihash::wrap(self.code(), d).expect("a digest of at most 64 bytes fits in 64");
        match self {
            HashAlg::Sha2_256 => wrap(sha256(data).as_ref()),
            HashAlg::Sha2_512 => wrap(ring::digest::digest(&ring::digest::SHA512, data).as_ref()),
            HashAlg::Blake3 => wrap(blake3::hash(data).as_bytes()),
        }
    }
}

impl HashAlg {
    /// Hashes many independent messages at once.
    ///
    /// For sha2-256 this runs the messages in lockstep, one per SIMD lane (AVX-512 or AVX2
    /// where the CPU has them), which on CPUs without SHA extensions is several times faster
    /// than hashing them one after another. The importer uses it for batches of leaves.
    pub fn digest_many(self, messages: &[&[u8]]) -> Vec<Multihash<64>> {
        match self {
            HashAlg::Sha2_256 => {
                let mut out = vec![[0u8; 32]; messages.len()];
                tape_sha256::hash_many(messages, &mut out);
                out.iter().map(|d| Multihash::wrap(SHA2_256, d).expect("32-byte digest fits in 64")).collect()
            }
            HashAlg::Sha2_512 | HashAlg::Blake3 => messages.iter().map(|m| self.digest(m)).collect(),
        }
    }
}

impl std::str::FromStr for HashAlg {
    type Err = CidError;
    fn from_str(s: &str) -> Result<Self, CidError> {
        match s {
            "sha2-256" => Ok(HashAlg::Sha2_256),
            "sha2-512" => Ok(HashAlg::Sha2_512),
            "blake3" => Ok(HashAlg::Blake3),
            other => {
                Err(CidError::Malformed(format!("unknown hash function {other:?} (use sha2-256, sha2-512 or blake3)")))
            }
        }
    }
}

impl std::fmt::Display for HashAlg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HashAlg::Sha2_256 => "sha2-256",
            HashAlg::Sha2_512 => "sha2-512",
            HashAlg::Blake3 => "blake3",
        })
    }
}

/// SHA-256 through `ring`, whose assembly (AVX2 where the CPU has it) is markedly faster
/// than portable implementations on CPUs without SHA extensions.
fn sha256(data: &[u8]) -> ring::digest::Digest {
    ring::digest::digest(&ring::digest::SHA256, data)
}

/// The CID version and hash a DAG is built with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CidFormat {
    /// 0 or 1. CIDv0 is only possible for dag-pb with sha2-256.
    pub version: u8,
    /// The hash function.
    pub hash: HashAlg,
}

impl Default for CidFormat {
    fn default() -> Self {
        CidFormat { version: 0, hash: HashAlg::Sha2_256 }
    }
}

impl CidFormat {
    /// Makes the CID of a block under `codec` from its multihash.
    pub fn cid_from_hash(self, codec: u64, mh: Multihash<64>) -> Cid {
        if self.version == 0 && codec == DAG_PB && mh.code() == SHA2_256 {
            Cid::new_v0(mh).expect("sha2-256 multihash is a valid CIDv0")
        } else {
            Cid::new_v1(codec, mh)
        }
    }

    /// Hashes `data` and makes its CID under `codec`.
    ///
    /// CIDv0 is used only where it can express the block (dag-pb with sha2-256); other
    /// blocks get CIDv1, as Kubo does for raw leaves and blake3.
    pub fn cid(self, codec: u64, data: &[u8]) -> Cid {
        self.cid_from_hash(codec, self.hash.digest(data))
    }
}

/// Parses a CID from text and checks that Cairn can handle it ([`check_cid`]).
pub fn parse_cid(s: &str) -> Result<Cid, CidError> {
    let cid = Cid::try_from(s).map_err(|e| CidError::Malformed(format!("{s:?}: {e}")))?;
    check_cid(&cid)?;
    Ok(cid)
}

/// Parses a binary CID and checks that Cairn can handle it ([`check_cid`]).
///
/// An identity CID whose digest is too long is reported as [`CidError::IdentityTooLong`],
/// even where it is too long to be held at all.
pub fn parse_cid_bytes(bytes: &[u8]) -> Result<Cid, CidError> {
    let mut cursor = std::io::Cursor::new(bytes);
    match Cid::read_bytes(&mut cursor) {
        Ok(_) if cursor.position() as usize != bytes.len() => {
            Err(CidError::Malformed(format!("{} bytes after the CID", bytes.len() - cursor.position() as usize)))
        }
        Ok(cid) => {
            check_cid(&cid)?;
            Ok(cid)
        }
        Err(e) => Err(diagnose(bytes).unwrap_or_else(|| CidError::Malformed(e.to_string()))),
    }
}

/// Finds a more precise reason why `bytes` failed to parse as a CIDv1, if there is one.
fn diagnose(bytes: &[u8]) -> Option<CidError> {
    use unsigned_varint::decode::u64 as varint;
    let (version, rest) = varint(bytes).ok()?;
    if version != 1 {
        return None;
    }
    let (_codec, rest) = varint(rest).ok()?;
    let (code, rest) = varint(rest).ok()?;
    let (len, _) = varint(rest).ok()?;
    match code {
        IDENTITY if len as usize > MAX_IDENTITY_DIGEST => Some(CidError::IdentityTooLong(len as usize)),
        IDENTITY | SHA2_256 | SHA2_512 | BLAKE3 => None,
        other => Some(CidError::UnsupportedHash(other)),
    }
}

/// Whether `cid` names the empty block: its digest is the hash of zero bytes. Such a block
/// needs no peer to be had (Kubo 0.43's Bitswap never serves it: a wanted empty block is
/// neither sent nor refused), so fetchers make it themselves.
pub fn names_empty_block(cid: &Cid) -> bool {
    // Hashed once: this is asked of every block fetched from the network.
    static EMPTY: std::sync::LazyLock<[Multihash<64>; 3]> = std::sync::LazyLock::new(|| {
        [HashAlg::Sha2_256.digest(b""), HashAlg::Sha2_512.digest(b""), HashAlg::Blake3.digest(b"")]
    });
    EMPTY.contains(cid.hash())
}

/// Checks that a CID uses a codec and hash Cairn supports, with a sane digest.
pub fn check_cid(cid: &Cid) -> Result<(), CidError> {
    match cid.codec() {
        DAG_PB | RAW | DAG_CBOR | DAG_JSON | LIBP2P_KEY => {}
        other => return Err(CidError::UnsupportedCodec(other)),
    }
    check_multihash(cid.hash())
}

/// Checks that a multihash uses a supported function and has the right digest size.
pub fn check_multihash(mh: &Multihash<64>) -> Result<(), CidError> {
    let len = mh.digest().len();
    let expected = match mh.code() {
        IDENTITY => {
            if len > MAX_IDENTITY_DIGEST {
                return Err(CidError::IdentityTooLong(len));
            }
            return Ok(());
        }
        SHA2_256 | BLAKE3 => 32,
        SHA2_512 => 64,
        other => return Err(CidError::UnsupportedHash(other)),
    };
    if len != expected {
        return Err(CidError::DigestLength { code: mh.code(), got: len, expected });
    }
    Ok(())
}

/// Hashes `data` with the function named by `mh` and tells whether the digests match.
pub fn multihash_matches(mh: &Multihash<64>, data: &[u8]) -> Result<bool, CidError> {
    check_multihash(mh)?;
    Ok(match mh.code() {
        IDENTITY => mh.digest() == data,
        SHA2_256 => mh.digest() == sha256(data).as_ref(),
        SHA2_512 => mh.digest() == HashAlg::Sha2_512.digest(data).digest(),
        BLAKE3 => mh.digest() == blake3::hash(data).as_bytes(),
        other => return Err(CidError::UnsupportedHash(other)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_raw_block_has_known_cid() {
        // `ipfs add --cid-version=1` of an empty file gives a bare raw block.
        let cid = CidFormat { version: 1, hash: HashAlg::Sha2_256 }.cid(RAW, b"");
        assert_eq!(cid.to_string(), "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku");
        assert!(names_empty_block(&cid));
        for alg in [HashAlg::Sha2_256, HashAlg::Sha2_512, HashAlg::Blake3] {
            assert!(names_empty_block(&CidFormat { version: 1, hash: alg }.cid(DAG_PB, b"")));
            assert!(!names_empty_block(&CidFormat { version: 1, hash: alg }.cid(RAW, b"\0")));
        }
    }

    #[test]
    fn identity_cid_over_128_bytes_is_refused() {
        let mh = Multihash::<64>::wrap(IDENTITY, &[7u8; 64]).unwrap();
        assert!(check_multihash(&mh).is_ok());
        // version 1, raw, identity, length 129 (varint 0x81 0x01), then the digest
        let mut bytes = vec![0x01, 0x55, 0x00, 0x81, 0x01];
        bytes.extend(std::iter::repeat_n(1u8, 129));
        assert_eq!(parse_cid_bytes(&bytes), Err(CidError::IdentityTooLong(129)));
    }

    #[test]
    fn batched_hashing_equals_one_by_one() {
        // Every length around the 64-byte block and padding edges, plus leaf sizes.
        let data: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let lens = [0usize, 1, 55, 56, 63, 64, 65, 119, 120, 127, 128, 1000, 262_144, 262_158];
        for alg in [HashAlg::Sha2_256, HashAlg::Sha2_512, HashAlg::Blake3] {
            for n in [1usize, 3, 8, 16, 17, 33] {
                let msgs: Vec<&[u8]> = (0..n).map(|i| &data[i..i + lens[i % lens.len()]]).collect();
                let batched = alg.digest_many(&msgs);
                let single: Vec<_> = msgs.iter().map(|m| alg.digest(m)).collect();
                assert_eq!(batched, single, "{alg} n={n}");
            }
        }
    }

    #[test]
    fn unsupported_codec_and_hash_are_named() {
        let c = Cid::new_v1(0x1234, HashAlg::Sha2_256.digest(b"x"));
        assert_eq!(check_cid(&c), Err(CidError::UnsupportedCodec(0x1234)));
        // sha3-256: Kubo makes it, Cairn cannot verify it.
        let mh = Multihash::<64>::wrap(0x16, &[0u8; 32]).unwrap();
        assert_eq!(check_multihash(&mh), Err(CidError::UnsupportedHash(0x16)));
    }

    #[test]
    fn sha2_512_cids_are_kubos() {
        // Kubo 0.43.1: `block put --mhtype=sha2-512` of these bytes.
        let cid = CidFormat { version: 1, hash: HashAlg::Sha2_512 }.cid(RAW, b"a raw block");
        assert_eq!(
            cid.to_string(),
            "bafkrgqhfmfxmzkcdk6hbxxjrqctd64wyvmeufmuwfernfdz7ugdbuujod7zglbzvlzdkupayrqzvzla54ndiph6bs3c5lkfevikbpwku6c7dw"
        );
        assert_eq!(check_cid(&cid), Ok(()));
        assert_eq!(multihash_matches(cid.hash(), b"a raw block"), Ok(true));
        assert_eq!(multihash_matches(cid.hash(), b"a raw blocK"), Ok(false));
        // No CIDv0 for it: v0 is sha2-256 only.
        assert_eq!(CidFormat { version: 0, hash: HashAlg::Sha2_512 }.cid(DAG_PB, b"").version(), cid::Version::V1);
        let short = Multihash::<64>::wrap(SHA2_512, &[0u8; 32]).unwrap();
        assert!(matches!(check_multihash(&short), Err(CidError::DigestLength { got: 32, expected: 64, .. })));
    }
}
