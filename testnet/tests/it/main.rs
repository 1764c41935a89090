//! `cairn-testnet`'s one integration-test binary (STYLE.md 13: one per crate).
//!
//! - [`kubo`]: CID parity of `cairn_node::add` with a real Kubo (CIDv0, Kubo's defaults) and
//!   with the JavaScript UnixFS importer (CIDv1 with raw leaves, and CIDv0 as a check on the JS
//!   reference itself).
//! - [`kubo_fixtures`]: CIDv1 parity with DAGs a real Kubo made (`ipfs add --cid-version 1`), taken
//!   from the gateway-conformance fixtures and rebuilt from their extracted files.

mod kubo;
mod kubo_fixtures;
