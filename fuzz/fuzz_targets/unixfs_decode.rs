//! UnixFS `Data` decoding, alone and inside a dag-pb node: never panics, holds at most a
//! small multiple of the input, refuses HAMT parameters a reader could not use, and what it
//! accepts encodes to bytes that decode to the same message.
#![no_main]

use bytes::Bytes;
use cairn_fuzz::seeds::{seed, write_if_asked};
use cairn_fuzz::{assert_heap_within, peak_heap_during};
use cairn_merkle::unixfs::{DataType, HAMT_HASH_MURMUR3, MAX_HAMT_FANOUT};
use cairn_merkle::{PbNode, UnixFs};
use libfuzzer_sys::fuzz_target;

fn seeds() -> Vec<(String, Vec<u8>)> {
    let mut with_mtime = UnixFs::file_leaf(Bytes::from_static(b"hello"));
    with_mtime.mode = Some(0o644);
    with_mtime.mtime = Some(cairn_merkle::unixfs::UnixTime { seconds: -1, fractional_nanoseconds: Some(5) });
    vec![
        seed("leaf", UnixFs::file_leaf(Bytes::from_static(b"hello")).to_bytes()),
        seed("node", UnixFs::file_node(vec![262_144, 262_144, 7]).to_bytes()),
        seed("absurd-sizes", UnixFs { blocksizes: vec![u64::MAX, 1], ..UnixFs::file_node(vec![]) }.to_bytes()),
        seed("directory", UnixFs::directory().to_bytes()),
        seed("symlink", UnixFs::symlink("../x").to_bytes()),
        seed("hamt", UnixFs::hamt_shard(Bytes::from_static(&[0xff; 32]), 256).to_bytes()),
        seed("hamt-bad-fanout", UnixFs::hamt_shard(Bytes::new(), 3).to_bytes()),
        seed("mode-mtime", with_mtime.to_bytes()),
        seed("in-dag-pb", PbNode { links: vec![], data: Some(UnixFs::directory().to_bytes()) }.encode()),
    ]
}

fuzz_target!(init: write_if_asked(seeds), |data: &[u8]| {
    let bytes = Bytes::copy_from_slice(data);
    let (decoded, peak) = peak_heap_during(|| UnixFs::decode(bytes.clone()));
    // A blocksize costs 8 bytes in memory (16 while its vector doubles) and takes one byte
    // in a packed field.
    assert_heap_within("UnixFs::decode", peak, 32 * data.len() + 4096);
    if let Ok(fs) = decoded {
        let kind = fs.kind().expect("decode refuses unknown types");
        if kind == DataType::HamtShard {
            let fanout = fs.fanout.expect("a shard has a fanout");
            assert!(fanout.is_power_of_two() && (2..=MAX_HAMT_FANOUT).contains(&fanout), "fanout {fanout}");
            assert_eq!(fs.hash_type, Some(HAMT_HASH_MURMUR3));
        }
        let _ = fs.inline_data();
        let again = UnixFs::decode(fs.to_bytes()).expect("re-encoded message decodes");
        assert_eq!(again, fs);
        assert_eq!(again.to_bytes(), fs.to_bytes());
    }
    if let Ok(node) = PbNode::decode(&bytes) {
        if let Some(d) = node.data {
            if let Ok(fs) = UnixFs::decode(d) {
                let _ = fs.kind();
            }
        }
    }
});
