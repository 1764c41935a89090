//! The node's long-running services, above both the facade (`crate::node`) and the
//! network (`crate::net`): each uses them, and neither imports a service.
//!
//! - `scrub`: re-reads and re-hashes every block, paced, and repairs from peers.
//! - `pinning`: the Pinning Service's pin requests and the worker that fetches them.
//! - `follow`: mirrors the collections of followed publishers.
//! - `reprovide`: announces what the node holds on the DHTs, in sweeps.
//! - `autogc`: `cairn daemon --enable-gc`, collecting past the watermark.

pub mod autogc;
pub mod follow;
pub mod pinning;
pub mod reprovide;
pub mod scrub;
