//! `cairn-testnet`: many Cairn nodes at once, the reference-peer harness and benchmarks.
