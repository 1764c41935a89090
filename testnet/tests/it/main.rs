//! `cairn-testnet`'s one integration-test binary (STYLE.md 13: one per crate).
//!
//! - [`kubo`]: CID parity of `cairn_node::add` with the real Kubo 0.43.1 (defaults, CIDv1, the
//!   IPIP-499 profiles, layouts and chunkers) and the JavaScript UnixFS importer; Kubo 0.22 for
//!   the CIDs older Kubo made.
//! - [`ipip499`]: the fixtures of IPIP-499 (UnixFS CID profiles) with the spec's CIDs, and the
//!   real Kubo 0.43.1 on the same inputs.
//! - [`car_interop`]: CARs written by Cairn read with `@ipld/car` and js-ipfs-unixfs, CARs written
//!   by them imported into Cairn, and the gateway-conformance CARs imported.
//! - [`kubo_wire`]: a real Kubo 0.43.1 daemon and Cairn, both ways: Bitswap (and one fetch
//!   drawing on Kubo and Helia at once), providers through a loopback DHT, a reprovide sweep's
//!   records, gossipsub, and the RPC API's answers compared field by field.
//! - [`kubo_gateway`]: Cairn's gateway beside Kubo 0.43.1's on the same blocks, request by
//!   request (DAG-JSON and DAG-CBOR, pathing, codec 406s, tar, `only-if-cached`, CORS).
//! - [`wire`]: what the wire tests share (a fetching Cairn node on loopback, content, checks).
//! - [`kubo_fixtures`]: CIDv1 parity with DAGs a real Kubo made (`ipfs add --cid-version 1`), taken
//!   from the gateway-conformance fixtures and rebuilt from their extracted files.
//! - [`helia`]: Bitswap with a real Helia 7 node (js-libp2p's TCP, Noise and yamux), both ways,
//!   with files and directories.
//! - [`lan`]: mDNS discovery and UPnP port mapping (off unless turned on), dialing a DNS
//!   address, and AutoNAT turning the WAN DHT to server mode.
//! - [`cluster`]: real IPFS Cluster 1.1.0 peers driving Cairn nodes through their RPC API: one
//!   node, then a fleet of three (replication, recovery, the disk informer, the IPFS proxy,
//!   sharded adds).
//! - [`scripts`]: the build scripts' bounds (`scripts/prune.sh` keeps target directories within
//!   their budget).
//! - [`swarm`]: `cairn-testnet run` on `testnet/scenarios/quick.toml`: daemons in network
//!   namespaces of their own behind shaped links.

mod car_interop;
mod cluster;
mod helia;
mod ipip499;
mod kubo;
mod kubo_fixtures;
mod kubo_gateway;
mod kubo_wire;
mod lan;
mod scripts;
mod swarm;
mod wire;
