//! dag-pb decoding: never panics; whatever decodes re-encodes to bytes that decode to the
//! same node, and its links are the ones `links` reports.
#![no_main]

use bytes::Bytes;
use cairn_merkle::hash::{CidFormat, DAG_PB};
use cairn_merkle::links::links;
use cairn_merkle::PbNode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let bytes = Bytes::copy_from_slice(data);
    let Ok(node) = PbNode::decode(&bytes) else {
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
