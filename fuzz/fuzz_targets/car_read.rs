//! CAR reading: never panics and never allocates what a length prefix merely claims; the
//! blocks it accepts, written again with `CarWriter`, read back the same.
#![no_main]

use cairn_merkle::car::{CarReader, CarWriter};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(reader) = CarReader::new(data) else {
        return;
    };
    let roots = reader.roots().to_vec();
    let blocks: Vec<_> = reader.take(10_000).filter_map(Result::ok).collect();
    let mut writer = CarWriter::new(Vec::new(), &roots).expect("writing to a Vec");
    for b in &blocks {
        writer.write_block(b).expect("writing to a Vec");
    }
    let bytes = writer.finish().expect("writing to a Vec");
    let again = CarReader::new(&bytes[..]).expect("our own header reads");
    assert_eq!(again.roots(), &roots[..]);
    let back: Vec<_> = again.collect::<Result<_, _>>().expect("our own blocks read");
    assert_eq!(back, blocks);
});
