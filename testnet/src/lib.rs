//! `cairn-testnet`: many Cairn nodes at once, the reference-peer harness and benchmarks.
//!
//! - [`reference`]: real Kubo (0.43.1 and 0.22, in loopback-only network namespaces) and the
//!   JavaScript UnixFS importer, run as CID references for the parity tests in `tests/it/`.
//! - [`kubo_daemon`]: a live Kubo 0.43.1 daemon (`ipfs daemon`) for network interop tests.
//! - [`helia_peer`]: a live Helia node (`testnet/js/helia`) for network interop tests.
//! - [`line_peer`]: the child-process plumbing the Helia peer is driven through (JSON lines).
//! - [`netns`]: runs a test in its own loopback-only network namespace, where Kubo peers and
//!   in-process Cairn nodes can reach each other and nothing else.
//! - [`swarm`]: `cairn-testnet run`, swarms of `cairn daemon` processes in network namespaces
//!   of their own behind `tc`-shaped links, running scenario files.

pub mod cluster_peer;
pub mod data;
pub mod helia_peer;
pub mod kubo_daemon;
pub mod line_peer;
pub mod netns;
pub mod reference;
pub mod swarm;
