//! `cairn-testnet`: many Cairn nodes at once, the reference-peer harness and benchmarks.
//!
//! - [`reference`]: real Kubo (v0.22, in a loopback-only network namespace) and the JavaScript
//!   UnixFS importer, run as CID references for the parity tests in `tests/it/`.
//! - [`kubo_peer`]: a live Kubo peer (`kubo.py serve`) for network interop tests.
//! - [`netns`]: runs a test in its own loopback-only network namespace, where Kubo peers and
//!   in-process Cairn nodes can reach each other and nothing else.
//! - [`swarm`]: `cairn-testnet run`, swarms of `cairn daemon` processes in network namespaces
//!   of their own behind `tc`-shaped links, running scenario files.

pub mod data;
pub mod kubo_peer;
pub mod netns;
pub mod reference;
pub mod swarm;
