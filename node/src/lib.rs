//! `cairn-node`: the repo, the block store, pins, the network and the `Node` facade.
//!
//! This crate sits between the pure data model in [`cairn_merkle`] and the front ends
//! (`cairn-gateway`, the `cairn` binary). It is the only layer that does I/O on behalf of
//! the data model. Its parts arrive with the repo and network issues; today it re-exports
//! the data model so that front ends depend on one crate.

pub use cairn_merkle as merkle;
