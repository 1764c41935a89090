//! `cairn-node`: the repo, the block store, pins, the network and the `Node` facade.
//!
//! This crate sits between the pure data model in [`cairn_merkle`] and the front ends
//! (`cairn-gateway`, the `cairn` binary). It is the only layer that does I/O on behalf of
//! the data model. From the bottom up:
//!
//! - [`store`]: the [`BlockStore`] and [`PinStore`] traits, over RocksDB or memory.
//! - [`config`] and [`settings`]: [`Config`] is the repo's JSON with Kubo's key names;
//!   [`settings::Settings`] is the same, typed and checked once; [`import_settings`] checks
//!   its `Import.*` keys as Kubo does and writes the import profiles' keys.
//! - [`repo`]: [`Repo`], the on-disk layout (config, identity key, lock, database).
//! - [`node`]: [`Node`], the facade over one repo: add, pins, GC, verify, blocks, CAR import;
//!   with [`add`] (files and trees from the file system, as `ipfs add` walks them),
//!   [`block_put`] (how `block put`'s options name a block, as Kubo's do),
//!   [`upload`] (an API upload straight into blocks), [`read`] (paths, `cat`, `ls`, `get`,
//!   tar) and [`manifest`] (signing and checking root manifests).
//! - [`net`]: the libp2p network (Bitswap, the DHTs, gossipsub hints), which knows nothing
//!   of the facade: it reads and writes a [`BlockStore`].
//! - [`online`]: the one place where a network is started for a node.
//! - [`services`]: the long-running jobs above both: scrub, pinning, follow, reprovide and
//!   automatic GC.
//!
//! RocksDB's C++ needs the C++ runtime linked in; `link_cplusplus` does it, whether
//! librocksdb-sys compiled RocksDB or linked the archive `scripts/rocksdb.sh` made.

#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod add;
pub mod block_put;
pub mod config;
pub mod import_settings;
pub mod manifest;
pub mod net;
pub mod node;
pub mod online;
pub mod read;
pub mod repo;
pub mod services;
pub mod settings;
pub mod store;
pub mod upload;

pub use config::Config;
pub use node::{IpfsPath, Node, NodeError};
// The services under the names they had before they moved into `services`.
pub use repo::Repo;
pub use services::{autogc, follow, pinning, scrub};
pub use store::{BlockStore, PinStore};

pub use cairn_merkle as merkle;

// Links the C++ runtime (see the crate docs above).
use link_cplusplus as _;
