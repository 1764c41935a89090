//! `cairn-node`: the repo, the block store, pins, the network and the `Node` facade.
//!
//! This crate sits between the pure data model in [`cairn_merkle`] and the front ends
//! (`cairn-gateway`, the `cairn` binary). It is the only layer that does I/O on behalf of
//! the data model. Today it holds:
//!
//! - [`add`]: adding files and directory trees from the local file system, as `ipfs add`
//!   does (walk order, hidden files, symlinks, output lines).
//! - [`upload`]: adding the parts of an API upload straight into blocks, with no file system.
//! - [`repo`]: [`Repo`], the on-disk layout (config, identity key, lock, database).
//! - [`config`]: [`Config`], Kubo's key names, edited by dotted key.
//! - [`store`]: the [`BlockStore`] and [`PinStore`] traits, over RocksDB or memory.
//! - [`node`]: [`Node`], the facade: add, pins, GC, verify, blocks, CAR import.
//! - [`read`]: reading DAGs out of the node (paths, `cat`, `ls`, `get`, tar), waiting for
//!   missing blocks or stopping at them for an async caller to fetch.
//! - [`follow`]: mirroring the signed manifests of followed publishers as they announce them.
//! - [`autogc`]: garbage collection on its own, past a watermark of `StorageMax`.
//! - [`scrub`]: the background scrub that re-hashes every block and repairs damage from peers.
//! - [`pinning`]: the Pinning Service API's pin requests and the worker that fetches them.
//!
//! The network arrives with its issue.

#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod add;
pub mod config;
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
