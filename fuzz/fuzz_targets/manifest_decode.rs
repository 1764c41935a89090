//! Signed root manifests (DAG-JSON blocks that followers act on): decoding never panics and
//! holds at most a small multiple of the input; a block over the size limit is refused
//! unread; what decodes is exactly what `encode` writes (so the CID covers the fields), its
//! one link is its root, the node's decoder agrees, only known metadata keys come through,
//! and checking the signature never panics, whatever the key bytes (a valid signature stops
//! being valid when one byte of it changes).
#![no_main]

use bytes::Bytes;
use cairn_fuzz::seeds::{seed, write_if_asked};
use cairn_fuzz::{assert_heap_within, peak_heap_during};
use cairn_merkle::hash::{CidFormat, HashAlg, DAG_JSON, RAW};
use cairn_merkle::links::links;
use cairn_merkle::manifest::{Manifest, MAX_MANIFEST_BYTES, META_KEYS};
use cairn_node::manifest::{check_signature, decode, Signature};
use libfuzzer_sys::fuzz_target;
use libp2p_identity::{Keypair, PeerId};

fn signed(mut m: Manifest, key: &Keypair) -> Manifest {
    m.public_key = key.public().encode_protobuf();
    m.publisher = PeerId::from_public_key(&key.public()).to_string();
    m.signature = key.sign(&m.signed_bytes()).expect("ed25519 signs");
    m
}

fn seeds() -> Vec<(String, Vec<u8>)> {
    let key = Keypair::ed25519_from_bytes([7u8; 32]).expect("a 32-byte secret");
    let v1 = CidFormat { version: 1, hash: HashAlg::Sha2_256 };
    let first = Manifest {
        root: v1.cid(RAW, b"content"),
        size: 7,
        name: "notes.txt".into(),
        publisher: String::new(),
        public_key: Vec::new(),
        created: 1_795_000_000,
        meta: [("title".to_owned(), "Field notes, \"draft\" é".to_owned())].into_iter().collect(),
        prev: None,
        signature: Vec::new(),
    };
    let first = signed(first, &key);
    let second = signed(Manifest { prev: Some(first.cid()), meta: Default::default(), ..first.clone() }, &key);
    let mut unsigned = first.clone();
    unsigned.signature = vec![0; 64];
    let text = String::from_utf8(first.encode().to_vec()).expect("DAG-JSON is UTF-8");
    vec![
        seed("signed", first.encode()),
        seed("chained", second.encode()),
        seed("bad-signature", unsigned.encode()),
        seed("not-canonical", text.replacen(',', ", ", 1)),
        seed("unknown-key", text.replacen('{', "{\"zzz\":1,", 1)),
    ]
}

fuzz_target!(init: write_if_asked(seeds), |data: &[u8]| {
    let (decoded, peak) = peak_heap_during(|| Manifest::decode(data));
    // JSON values cost up to about fifty times their text.
    assert_heap_within("Manifest::decode", peak, 64 * data.len().min(MAX_MANIFEST_BYTES + 1) + (1 << 20));
    let cid = CidFormat { version: 1, hash: HashAlg::Sha2_256 }.cid(DAG_JSON, data);
    let by_node = decode(&cid, data);
    let Ok(m) = decoded else {
        assert!(by_node.is_err(), "the node accepts what merkle refuses");
        return;
    };
    assert!(data.len() <= MAX_MANIFEST_BYTES);
    assert_eq!(m.encode().as_ref(), data, "a manifest decodes only from its canonical encoding");
    assert_eq!(m.cid(), cid);
    assert_eq!(Manifest::decode(&m.encode()).as_ref(), Ok(&m));
    assert_eq!(by_node.as_ref().ok(), Some(&m));
    assert!(decode(&CidFormat { version: 1, hash: HashAlg::Sha2_256 }.cid(RAW, data), data).is_err());
    assert!(m.meta.keys().all(|k| META_KEYS.contains(&k.as_str())));
    assert_eq!(links(&cid, &Bytes::copy_from_slice(data)), Ok(vec![m.root]), "a manifest links to its root only");
    if check_signature(&m) == Signature::Valid && !m.signature.is_empty() {
        let mut forged = m.clone();
        forged.signature[0] ^= 1;
        assert_ne!(check_signature(&forged), Signature::Valid, "a changed signature still verifies");
    }
});
