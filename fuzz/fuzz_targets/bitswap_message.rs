//! Bitswap messages from peers: decoding never panics and holds at most a small multiple of
//! the input; every block it returns is named by the CID its bytes hash to; over-long CIDs in
//! wantlists are dropped; a decoded message encodes for 1.2.0 to one that decodes the same,
//! and for 1.1.0 and 1.0.0 to one that leaves out only what those versions cannot carry;
//! merging keeps no block both wanted and cancelled. Block prefixes decode, encode and name
//! CIDs consistently.
#![no_main]

use std::collections::HashSet;

use bytes::Bytes;
use cairn_fuzz::seeds::{seed, write_if_asked};
use cairn_fuzz::{assert_heap_within, peak_heap_during};
use cairn_merkle::hash::{check_cid, multihash_matches, CidFormat, HashAlg, DAG_CBOR, DAG_PB, RAW};
use cairn_merkle::Block;
use cairn_node::net::bitswap::proto::{Prefix, MAX_CID_BYTES};
use cairn_node::net::bitswap::{Message, Version, Want, WantType};
use libfuzzer_sys::fuzz_target;

fn block(format: CidFormat, codec: u64, data: &'static [u8]) -> Block {
    Block::new_unchecked(format.cid(codec, data), Bytes::from_static(data))
}

fn seeds() -> Vec<(String, Vec<u8>)> {
    let v1 = CidFormat { version: 1, hash: HashAlg::Sha2_256 };
    let b3 = CidFormat { version: 1, hash: HashAlg::Blake3 };
    let a = block(v1, RAW, b"alpha");
    let b = block(CidFormat::default(), DAG_PB, b"beta");
    let c = block(b3, DAG_CBOR, b"\xa0");
    let full = Message {
        full: true,
        wants: vec![
            Want { cid: *a.cid(), priority: 7, kind: WantType::Have, send_dont_have: true },
            Want { cid: *b.cid(), priority: -1, kind: WantType::Block, send_dont_have: false },
        ],
        cancels: vec![*c.cid()],
        blocks: vec![a.clone(), b.clone(), c.clone()],
        haves: vec![*a.cid()],
        dont_haves: vec![*b.cid()],
        pending_bytes: 12,
    };
    let blocks_only = Message { blocks: vec![b.clone()], ..Message::default() };
    vec![
        seed("full-1.2", full.encode(Version::V1_2)),
        seed("full-1.1", full.encode(Version::V1_1)),
        seed("blocks-1.0", blocks_only.encode(Version::V1_0)),
        seed("empty", Vec::new()),
        seed("bad-prefix", b"\x1a\x08\x0a\x04\x01\x55\x13\x40\x12\x00".to_vec()),
        seed("prefix", vec![0x01, 0x71, 0x1e, 0x20]),
    ]
}

/// Checks that `m`, built by merging messages into an empty one, wants and cancels each
/// block at most once, and never both.
fn check_merged(m: &Message) {
    let wanted: HashSet<_> = m.wants.iter().map(|w| w.cid.hash().to_bytes()).collect();
    let cancelled: HashSet<_> = m.cancels.iter().map(|c| c.hash().to_bytes()).collect();
    assert_eq!(wanted.len(), m.wants.len(), "a block wanted twice");
    assert_eq!(cancelled.len(), m.cancels.len(), "a block cancelled twice");
    assert!(wanted.is_disjoint(&cancelled), "a block both wanted and cancelled");
}

fuzz_target!(init: write_if_asked(seeds), |data: &[u8]| {
    if data.len() <= 32 {
        if let Ok(p) = Prefix::decode(data) {
            assert_eq!(Prefix::decode(&p.encode()).ok(), Some(p));
            if let Ok(cid) = p.cid_of(b"x") {
                assert_eq!(Prefix::of(&cid), p, "a prefix names CIDs of its own shape");
            }
        }
    }
    let (decoded, peak) = peak_heap_during(|| Message::decode(data));
    // A block or an entry costs a few hundred bytes in memory and takes at least two on the
    // wire (an empty 1.0.0 block).
    assert_heap_within("Message::decode", peak, 256 * data.len() + 65536);
    let Ok(m) = decoded else {
        return;
    };
    for b in &m.blocks {
        assert!(check_cid(b.cid()).is_ok(), "block under an unusable CID {}", b.cid());
        assert!(multihash_matches(b.cid().hash(), b.data()).unwrap_or(false), "block {} is not its bytes", b.cid());
    }
    for w in &m.wants {
        assert!(w.cid.to_bytes().len() <= MAX_CID_BYTES);
    }
    assert_eq!(m.entries(), m.wants.len() + m.cancels.len() + m.haves.len() + m.dont_haves.len());
    let _ = m.summary();

    assert_eq!(Message::decode(&m.encode(Version::V1_2)[..]).expect("our own 1.2.0 message decodes"), m);
    let v11 = Message::decode(&m.encode(Version::V1_1)[..]).expect("our own 1.1.0 message decodes");
    assert!(v11.wants.iter().all(|w| w.kind == WantType::Block && !w.send_dont_have));
    assert!(v11.haves.is_empty() && v11.dont_haves.is_empty());
    assert_eq!((v11.blocks.len(), v11.cancels.len()), (m.blocks.len(), m.cancels.len()));
    let v10 = Message::decode(&m.encode(Version::V1_0)[..]).expect("our own 1.0.0 message decodes");
    let v0: Vec<_> = m.blocks.iter().filter(|b| b.cid().version() == cid::Version::V0).cloned().collect();
    assert_eq!(v10.blocks, v0, "1.0.0 carries exactly the CIDv0 blocks");

    let later = Message { blocks: Vec::new(), full: false, ..m.clone() };
    let mut merged = Message::default();
    merged.merge(later.clone());
    check_merged(&merged);
    merged.merge(Message { wants: later.wants.iter().rev().cloned().collect(), ..later });
    check_merged(&merged);
});
