//! dag-pb decoding: never panics, and holds at most a small multiple of the input in memory;
//! whatever decodes re-encodes to bytes that decode to the same node (canonically: encoding
//! again gives the same bytes), its links are the ones `links` reports, and its DAG-JSON
//! form converts back.
#![no_main]

use bytes::Bytes;
use cairn_fuzz::seeds::{seed, write_if_asked};
use cairn_fuzz::{assert_heap_within, peak_heap_during};
use cairn_merkle::hash::{CidFormat, HashAlg, DAG_PB, RAW};
use cairn_merkle::links::links;
use cairn_merkle::{PbLink, PbNode, UnixFs};
use libfuzzer_sys::fuzz_target;

fn seeds() -> Vec<(String, Vec<u8>)> {
    let raw = CidFormat { version: 1, hash: HashAlg::Sha2_256 }.cid(RAW, b"leaf");
    let v0 = CidFormat::default().cid(DAG_PB, b"node");
    let blake = CidFormat { version: 1, hash: HashAlg::Blake3 }.cid(DAG_PB, b"node");
    let file = PbNode {
        links: vec![PbLink::new(raw, "", 4), PbLink::new(v0, "", 10)],
        data: Some(UnixFs::file_node(vec![4, 10]).to_bytes()),
    };
    let dir = PbNode {
        links: vec![
            PbLink::new(raw, "a.txt", 4),
            PbLink::new(blake, "sub", 99),
            PbLink { cid: v0, name: None, tsize: None },
        ],
        data: Some(UnixFs::directory().to_bytes()),
    };
    vec![
        seed("empty", Vec::new()),
        seed(
            "data-only",
            PbNode { links: vec![], data: Some(Bytes::from_static(b"\x08\x02\x12\x02hi\x18\x02")) }.encode(),
        ),
        seed("file", file.encode()),
        seed("directory", dir.encode()),
        // Links after data, an unknown field, a truncated length: each a different refusal.
        seed("links-after-data", [&b"\x0a\x00"[..], &file.encode()].concat()),
        seed("unknown-field", b"\x18\x01".to_vec()),
        seed("truncated", b"\x12\xff\xff\xff\x0f\x0a".to_vec()),
    ]
}

fuzz_target!(init: write_if_asked(seeds), |data: &[u8]| {
    let bytes = Bytes::copy_from_slice(data);
    let (decoded, peak) = peak_heap_during(|| PbNode::decode(&bytes));
    // A link costs about 150 bytes in memory and takes at least 6 on the wire.
    assert_heap_within("PbNode::decode", peak, 64 * data.len() + 4096);
    let Ok(node) = decoded else {
        return;
    };
    let encoded = node.encode();
    assert_eq!(encoded.len(), node.encoded_len());
    let again = PbNode::decode(&Bytes::from(encoded.clone())).expect("re-encoded node decodes");
    assert_eq!(again, node);
    assert_eq!(again.encode(), encoded, "encoding is canonical");
    let cid = CidFormat::default().cid(DAG_PB, data);
    let expected: Vec<_> = node.links.iter().map(|l| l.cid).collect();
    assert_eq!(links(&cid, &bytes).expect("decodable dag-pb has links"), expected);
    // The data-model form of a decoded node converts back (links need not be sorted in
    // decoded data, so only nodes whose links are sorted are checked).
    let sorted = node.links.windows(2).all(|w| w[0].name().as_bytes() <= w[1].name().as_bytes());
    if sorted {
        assert_eq!(PbNode::from_dag_json(&node.to_dag_json()).as_ref(), Ok(&node));
    }
});
