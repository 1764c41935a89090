//! Blocks: bytes together with the CID that names them.
//!
//! A [`Block`] made by [`Block::verified`] has had its bytes hashed and compared with its
//! CID, so code that holds one can pass it on without checking again. Blocks made by this
//! crate's importer are correct by construction and use [`Block::new_unchecked`].

use bytes::Bytes;
use cid::Cid;

use crate::hash::{self, CidError};

/// Why bytes are not the block a CID names.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum BlockError {
    /// The CID itself cannot be handled.
    #[error(transparent)]
    Cid(#[from] CidError),
    /// The bytes hash to something else: the block is corrupt or was forged.
    #[error("block {cid} does not match its hash")]
    HashMismatch {
        /// The CID the bytes were offered under.
        cid: Cid,
    },
}

/// A block of bytes and its CID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    cid: Cid,
    data: Bytes,
}

impl Block {
    /// Hashes `data` and accepts it only when it matches `cid`.
    pub fn verified(cid: Cid, data: impl Into<Bytes>) -> Result<Block, BlockError> {
        let data = data.into();
        hash::check_cid(&cid)?;
        if !hash::multihash_matches(cid.hash(), &data)? {
            return Err(BlockError::HashMismatch { cid });
        }
        Ok(Block { cid, data })
    }

    /// Wraps bytes whose CID the caller just computed from them.
    pub fn new_unchecked(cid: Cid, data: Bytes) -> Block {
        Block { cid, data }
    }

    /// The block's CID.
    pub fn cid(&self) -> &Cid {
        &self.cid
    }

    /// The block's bytes.
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// Splits the block into its CID and bytes.
    pub fn into_parts(self) -> (Cid, Bytes) {
        (self.cid, self.data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::{CidFormat, HashAlg, RAW};

    #[test]
    fn verification_rejects_other_bytes() {
        for alg in [HashAlg::Sha2_256, HashAlg::Sha2_512, HashAlg::Blake3] {
            let cid = CidFormat { version: 1, hash: alg }.cid(RAW, b"abc");
            assert!(Block::verified(cid, Bytes::from_static(b"abc")).is_ok());
            assert_eq!(Block::verified(cid, Bytes::from_static(b"abd")), Err(BlockError::HashMismatch { cid }));
        }
    }
}
