//! `cairn-merkle`: Cairn's pure data model.
//!
//! Nothing in this crate does network or database I/O, and nothing here uses an async
//! runtime. It turns bytes into blocks and blocks back into bytes:
//!
//! - [`hash`]: CIDs, multihashes ([`hash::HashAlg`], [`hash::CidFormat`]) and their checks.
//! - [`block`]: [`Block`], bytes with a CID, verified on the way in.
//! - [`dagpb`]: the dag-pb codec ([`PbNode`], [`PbLink`]), hand-encoded in canonical order.
//! - [`unixfs`]: the UnixFS `Data` message ([`UnixFs`]).
//! - [`chunker`]: fixed-size, rabin and buzhash chunkers with Kubo's cut points.
//! - [`importer`]: streaming file and directory import (balanced and trickle layouts, HAMT).
//! - [`exporter`]: reading files, byte ranges, directories and paths back out of a DAG.
//! - [`hamt`]: the HAMT-sharded directory layout shared by importer and exporter.
//! - [`car`]: CARv1 reading (every block verified) and writing.
//! - [`manifest`]: signed root manifests (who published a DAG), as canonical DAG-JSON.

#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod block;
pub mod car;
pub mod chunker;
pub mod dagpb;
pub mod dagpb_json;
pub mod exporter;
pub mod hamt;
pub mod hash;
pub mod importer;
pub mod links;
pub mod manifest;
pub mod pathing;
pub mod source;
pub mod unixfs;

pub use block::{Block, BlockError};
pub use cid::Cid;
pub use dagpb::{PbLink, PbNode};
pub use hash::{CidError, CidFormat, HashAlg};
pub use source::{BlockSource, MemoryBlocks, SourceError};
pub use unixfs::UnixFs;
