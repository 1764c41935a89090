//! `cairn-testnet`: many Cairn nodes at once, the reference-peer harness and benchmarks.
//!
//! - [`reference`]: real Kubo (v0.22, in a loopback-only network namespace) and the JavaScript
//!   UnixFS importer, run as CID references for the parity tests in `tests/it/`.

pub mod reference;
