//! The one integration-test binary of `cairn-node`.

mod dht;
mod gc;
mod get;
mod hostile;
mod net;

use std::path::Path;

use cairn_node::config::Profile;
use cairn_node::Node;

/// A node on a fresh test repo inside `dir`.
pub fn node(dir: &Path) -> Node {
    Node::init(&dir.join("repo"), Profile::Test).unwrap()
}

/// Deterministic pseudo-random bytes.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 24) as u8
        })
        .collect()
}
