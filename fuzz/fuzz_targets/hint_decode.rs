//! Availability hints (gossipsub messages from any peer): decoding never panics, refuses a
//! message over the size limit, holds at most a small multiple of the input, keeps at most
//! eight addresses, and what it accepts encodes to a hint that decodes the same; the table
//! that remembers hints keeps its bounds per root.
#![no_main]

use cairn_fuzz::seeds::{seed, write_if_asked};
use cairn_fuzz::{assert_heap_within, peak_heap_during};
use cairn_merkle::hash::{CidFormat, HashAlg, RAW};
use cairn_node::net::hints::{decode, encode, Hints, MAX_HINT_BYTES, MAX_PROVIDERS};
use cairn_node::net::{Multiaddr, PeerId};
use libfuzzer_sys::fuzz_target;

/// Fixed senders, so that a crash reproduces (made once: deriving a key is slow).
fn sender(i: u8) -> PeerId {
    static SENDERS: std::sync::OnceLock<Vec<PeerId>> = std::sync::OnceLock::new();
    let all = SENDERS.get_or_init(|| {
        (0..=MAX_PROVIDERS as u8 + 2)
            .map(|i| {
                let key = libp2p_identity::Keypair::ed25519_from_bytes([i; 32]).expect("a 32-byte secret");
                PeerId::from_public_key(&key.public())
            })
            .collect()
    });
    all[i as usize]
}

fn seeds() -> Vec<(String, Vec<u8>)> {
    let root = CidFormat { version: 1, hash: HashAlg::Sha2_256 }.cid(RAW, b"root");
    let addrs: Vec<Multiaddr> = ["/ip4/127.0.0.1/tcp/4001", "/ip6/::1/udp/4001/quic-v1", "/dns4/example.org/tcp/443"]
        .iter()
        .map(|a| a.parse().expect("a valid multiaddr"))
        .collect();
    let nine: Vec<Multiaddr> = std::iter::repeat_n(addrs[0].clone(), 9).collect();
    let mut many = encode(&root, 1, &addrs, false);
    // A tenth address appended by hand (encode keeps eight).
    for a in &nine {
        let bytes = a.to_vec();
        many.push(0x1a);
        many.push(bytes.len() as u8);
        many.extend_from_slice(&bytes);
    }
    vec![
        seed("hint", encode(&root, 42, &addrs, false)),
        seed("manifest", encode(&root, u64::MAX, &[], true)),
        seed("too-many-addrs", many),
        seed("bad-addr", [&encode(&root, 1, &[], false)[..], &[0x1a, 0x03, 0xff, 0xff, 0xff][..]].concat()),
    ]
}

fuzz_target!(init: write_if_asked(seeds), |data: &[u8]| {
    let from = sender(1);
    let (decoded, peak) = peak_heap_during(|| decode(from, data));
    assert_heap_within("hints::decode", peak, 64 * data.len().min(MAX_HINT_BYTES + 1) + 65536);
    let Ok(hint) = decoded else {
        return;
    };
    assert!(data.len() <= MAX_HINT_BYTES);
    assert!(hint.addrs.len() <= 8, "{} addresses kept", hint.addrs.len());
    assert_eq!(hint.provider, from);
    let again = decode(from, &encode(&hint.root, hint.size, &hint.addrs, hint.manifest)).expect("our own hint decodes");
    assert_eq!(again, hint);
    let mut table = Hints::default();
    for i in 0..(MAX_PROVIDERS as u8 + 2) {
        table.remember(cairn_node::net::hints::Available { provider: sender(i), ..hint.clone() });
    }
    assert_eq!(table.providers(&hint.root).len(), MAX_PROVIDERS);
});
