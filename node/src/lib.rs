//! `cairn-node`: the repo, the block store, pins, the network and the `Node` facade.
//!
//! This crate sits between the pure data model in [`cairn_merkle`] and the front ends
//! (`cairn-gateway`, the `cairn` binary). It is the only layer that does I/O on behalf of
//! the data model. Today it holds:
//!
//! - [`add`]: adding files and directory trees from the local file system, as `ipfs add`
//!   does (walk order, hidden files, symlinks, output lines).
//!
//! The repo, RocksDB store, pins and network arrive with their issues.

#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod add;

pub use cairn_merkle as merkle;
