//! Link extraction from dag-cbor and dag-json blocks (what GC, pinning, `dag export` and the
//! CAR writer follow), and the DAG-JSON form of dag-pb nodes.
//!
//! The first input byte picks the codec (dag-cbor, dag-json, dag-pb, raw, or one Cairn cannot
//! read); the rest is the block. Checks: no panic; memory within a multiple of the input (a
//! declared array length must not be trusted for an allocation); no more links than the
//! block has room for; re-encoding the decoded value gives the same links in the same order
//! (the order is the encoding's, which the DAG walk depends on); a dag-pb node accepted from
//! DAG-JSON converts back and forth unchanged.
#![no_main]

use bytes::Bytes;
use cairn_fuzz::seeds::{seed, write_if_asked};
use cairn_fuzz::{assert_heap_within, peak_heap_during};
use cairn_merkle::hash::{CidFormat, HashAlg, DAG_CBOR, DAG_JSON, DAG_PB, RAW};
use cairn_merkle::links::links;
use cairn_merkle::{Cid, PbNode};
use ipld_core::ipld::Ipld;
use libfuzzer_sys::fuzz_target;

const CODECS: [u64; 5] = [DAG_CBOR, DAG_JSON, DAG_PB, RAW, 0x0300];

fn cid_of(codec: u64, data: &[u8]) -> Cid {
    CidFormat { version: 1, hash: HashAlg::Sha2_256 }.cid(codec, data)
}

fn seeds() -> Vec<(String, Vec<u8>)> {
    let a = cid_of(RAW, b"a");
    let b = CidFormat { version: 0, hash: HashAlg::Sha2_256 }.cid(DAG_PB, b"b");
    let id = Cid::new_v1(RAW, cid::multihash::Multihash::<64>::wrap(0, b"inline").expect("short"));
    let cbor = Ipld::Map(
        [
            ("zz".to_owned(), Ipld::List(vec![Ipld::Link(a), Ipld::Integer(-3), Ipld::Bytes(vec![1, 2])])),
            ("b".to_owned(), Ipld::Map([("x".to_owned(), Ipld::Link(b))].into_iter().collect())),
            ("aaa".to_owned(), Ipld::Link(id)),
            ("f".to_owned(), Ipld::Float(1.5)),
        ]
        .into_iter()
        .collect(),
    );
    let cbor = serde_ipld_dagcbor::to_vec(&cbor).expect("encodes");
    let json =
        format!(r#"{{"a":{{"/":"{a}"}},"b":[{{"/":{{"bytes":"AQID"}}}},{{"/":"{b}"}}],"c":{{"/":"{a}","x":1}}}}"#);
    let pb_json =
        format!(r#"{{"Data":{{"/":{{"bytes":"CAE"}}}},"Links":[{{"Hash":{{"/":"{a}"}},"Name":"a","Tsize":1}}]}}"#);
    let with = |codec: u8, body: &[u8]| [&[codec][..], body].concat();
    vec![
        seed("cbor", with(0, &cbor)),
        seed("cbor-huge-array", with(0, &[0x9b, 0, 0, 0, 1, 0, 0, 0, 0, 0xd8, 0x2a])),
        seed("cbor-nested", with(0, &[0x81; 64])),
        seed("json", with(1, json.as_bytes())),
        seed("json-pb-node", with(1, pb_json.as_bytes())),
        seed("json-bad-link", with(1, br#"{"/":"not a cid"}"#)),
        seed("raw", with(3, b"anything")),
    ]
}

fuzz_target!(init: write_if_asked(seeds), |data: &[u8]| {
    let Some((&pick, block)) = data.split_first() else {
        return;
    };
    let codec = CODECS[pick as usize % CODECS.len()];
    let bytes = Bytes::copy_from_slice(block);
    let cid = cid_of(codec, block);
    let (found, peak) = peak_heap_during(|| links(&cid, &bytes));
    // Decoded values cost up to about a hundred times their encoding (a one-byte integer
    // becomes an `Ipld`); a claimed length may cost one capped pre-allocation.
    assert_heap_within("links", peak, 256 * block.len() + (2 << 20));
    let Ok(found) = found else {
        return;
    };
    // The shortest link, an identity CID with an empty digest, takes 8 bytes in dag-cbor, 16 in
    // dag-json and 6 in dag-pb.
    assert!(found.len() <= block.len() / 4, "{} links in {} bytes", found.len(), block.len());
    match codec {
        DAG_CBOR => {
            let value: Ipld = serde_ipld_dagcbor::from_slice(block).expect("the links were read from it");
            let again = Bytes::from(serde_ipld_dagcbor::to_vec(&value).expect("a decoded value encodes"));
            assert_eq!(links(&cid_of(DAG_CBOR, &again), &again).as_ref(), Ok(&found), "dag-cbor order");
        }
        DAG_JSON => {
            let value: serde_json::Value = serde_json::from_slice(block).expect("the links were read from it");
            let again = Bytes::from(serde_json::to_vec(&value).expect("a decoded value encodes"));
            assert_eq!(links(&cid_of(DAG_JSON, &again), &again).as_ref(), Ok(&found), "dag-json order");
            if let Ok(node) = PbNode::from_dag_json(&value) {
                assert_eq!(PbNode::from_dag_json(&node.to_dag_json()).as_ref(), Ok(&node));
                let encoded = Bytes::from(node.encode());
                assert_eq!(PbNode::decode(&encoded).as_ref(), Ok(&node), "a DAG-JSON dag-pb node encodes");
                assert_eq!(node.links.iter().map(|l| l.cid).collect::<Vec<_>>(), found);
            }
        }
        RAW => assert!(found.is_empty()),
        _ => {}
    }
});
