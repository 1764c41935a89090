//! UnixFS `Data` decoding, alone and inside a dag-pb node: never panics.
#![no_main]

use bytes::Bytes;
use cairn_merkle::{PbNode, UnixFs};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let bytes = Bytes::copy_from_slice(data);
    if let Ok(fs) = UnixFs::decode(bytes.clone()) {
        let _ = fs.kind();
        let _ = fs.inline_data();
        let _ = fs.to_bytes();
    }
    if let Ok(node) = PbNode::decode(&bytes) {
        if let Some(d) = node.data {
            if let Ok(fs) = UnixFs::decode(d) {
                let _ = fs.kind();
            }
        }
    }
});
