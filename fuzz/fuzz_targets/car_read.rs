//! CAR reading (CARv1, and CARv2 through its pragma): never panics, holds at most a small
//! multiple of the input in memory whatever the length prefixes claim, returns only blocks
//! whose bytes hash to their CIDs, and the blocks it accepts, written again with
//! `CarWriter`, read back the same.
#![no_main]

use bytes::Bytes;
use cairn_fuzz::seeds::{seed, write_if_asked};
use cairn_fuzz::{assert_heap_within, peak_heap_during};
use cairn_merkle::car::{CarReader, CarWriter, CARV2_PRAGMA};
use cairn_merkle::hash::{multihash_matches, CidFormat, HashAlg, DAG_PB, RAW};
use cairn_merkle::{Block, PbLink, PbNode};
use libfuzzer_sys::fuzz_target;

/// Blocks read from one input at most: enough for any seed, and a bound on the run's time.
const MAX_BLOCKS: usize = 10_000;

fn car(roots: &[cairn_merkle::Cid], blocks: &[Block]) -> Vec<u8> {
    let mut w = CarWriter::new(Vec::new(), roots).expect("writing to a Vec");
    for b in blocks {
        w.write_block(b).expect("writing to a Vec");
    }
    w.finish().expect("writing to a Vec")
}

fn seeds() -> Vec<(String, Vec<u8>)> {
    let v1 = CidFormat { version: 1, hash: HashAlg::Sha2_256 };
    let leaf = Block::new_unchecked(v1.cid(RAW, b"leaf"), Bytes::from_static(b"leaf"));
    let blake = CidFormat { version: 1, hash: HashAlg::Blake3 };
    let leaf3 = Block::new_unchecked(blake.cid(RAW, b"leaf3"), Bytes::from_static(b"leaf3"));
    let node = Bytes::from(PbNode { links: vec![PbLink::new(*leaf.cid(), "a", 4)], data: None }.encode());
    let root = Block::new_unchecked(CidFormat::default().cid(DAG_PB, &node), node);
    let v1_car = car(&[*root.cid()], &[root.clone(), leaf.clone(), leaf3]);
    // CARv2: the pragma, a 40-byte header (characteristics, data offset, data size, index
    // offset) and the CARv1 payload, with no index.
    let mut v2 = CARV2_PRAGMA.to_vec();
    v2.extend_from_slice(&[0; 16]);
    v2.extend_from_slice(&51u64.to_le_bytes());
    v2.extend_from_slice(&(v1_car.len() as u64).to_le_bytes());
    v2.extend_from_slice(&0u64.to_le_bytes());
    v2.extend_from_slice(&v1_car);
    let mut forged = car(&[*leaf.cid()], &[leaf.clone()]);
    let last = forged.len() - 1;
    forged[last] ^= 1;
    vec![
        seed("v1", v1_car.clone()),
        seed("v2", v2),
        seed("no-roots", car(&[], &[])),
        seed("hash-mismatch", forged),
        seed("truncated", v1_car[..v1_car.len() - 3].to_vec()),
        // A section that claims 4 GiB, and a header that claims 1 TiB.
        seed("huge-section", [&car(&[], &[])[..], &[0x80, 0x80, 0x80, 0x80, 0x10, 0x01][..]].concat()),
        seed("huge-header", vec![0x80, 0x80, 0x80, 0x80, 0x80, 0x20, 0xa1]),
    ]
}

fuzz_target!(init: write_if_asked(seeds), |data: &[u8]| {
    let (read, peak) = peak_heap_during(|| {
        let reader = CarReader::new(data).ok()?;
        let roots = reader.roots().to_vec();
        let blocks: Vec<_> = reader.take(MAX_BLOCKS).filter_map(Result::ok).collect();
        Some((roots, blocks))
    });
    // A root or a block header costs about 150 bytes in memory and at least 8 on the wire;
    // a declared length costs at most one 64 KiB buffer before its bytes arrive.
    assert_heap_within("CarReader", peak, 64 * data.len() + (1 << 20));
    let Some((roots, blocks)) = read else {
        return;
    };
    for b in &blocks {
        assert!(multihash_matches(b.cid().hash(), b.data()).unwrap_or(false), "block {} does not match", b.cid());
    }
    let bytes = car(&roots, &blocks);
    let again = CarReader::new(&bytes[..]).expect("our own header reads");
    assert_eq!(again.roots(), &roots[..]);
    let back: Vec<_> = again.collect::<Result<_, _>>().expect("our own blocks read");
    assert_eq!(back, blocks);
});
