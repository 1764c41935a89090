//! The gateway's `Range` header: parsing never panics; a range it serves lies inside the
//! file and is not empty; it answers with the whole file only when there is no byte range
//! to serve (no header, another unit, an empty file); the range it serves, written back as
//! a header, parses to the same range; and its refusals stay short.
//!
//! Input: a byte choosing the file size (a few edge sizes, or the next eight bytes), then the
//! header value.
#![no_main]

use cairn_fuzz::seeds::{seed, write_if_asked};
use cairn_fuzz::Input;
use cairn_gateway::fuzzing::{parse_range, RangeRequest};
use hyper::header::HeaderValue;
use libfuzzer_sys::fuzz_target;

const SIZES: [u64; 7] = [0, 1, 10, 1000, 1 << 32, u64::MAX - 1, u64::MAX];

fn seeds() -> Vec<(String, Vec<u8>)> {
    let with = |size: u8, h: &str| [&[size][..], h.as_bytes()].concat();
    vec![
        seed("first-byte", with(2, "bytes=0-0")),
        seed("open", with(3, "bytes=2-")),
        seed("suffix", with(3, "bytes=-30")),
        seed("several", with(3, "bytes=6-16,0-4")),
        seed("past-end", with(2, "bytes=10-")),
        seed("overflow", with(6, "bytes=99999999999999999999999-")),
        seed("huge-file", with(6, "bytes=18446744073709551614-18446744073709551615")),
        seed("other-unit", with(3, "items=0-1")),
        seed("many", with(3, &format!("bytes={}", "0-1,".repeat(40)))),
        seed("explicit-size", [&[7u8][..], &500u64.to_le_bytes(), b" bytes = 5 - 9 "].concat()),
    ]
}

fuzz_target!(init: write_if_asked(seeds), |data: &[u8]| {
    let mut input = Input::new(data);
    let pick = input.u8() as usize;
    let size = SIZES.get(pick).copied().unwrap_or_else(|| input.u64());
    let raw = input.rest();
    assert_eq!(parse_range(None, size), RangeRequest::Whole);
    let Ok(header) = HeaderValue::from_bytes(raw) else {
        return;
    };
    match parse_range(Some(&header), size) {
        RangeRequest::Whole => {
            let text = header.to_str().expect("a non-ASCII header is refused, not served whole").trim();
            assert!(!text.starts_with("bytes=") || size == 0, "{text:?} of a {size}-byte file served whole");
        }
        RangeRequest::Part { start, end } => {
            assert!(start < end && end <= size, "{start}..{end} of {size}");
            let back = HeaderValue::from_str(&format!("bytes={start}-{}", end - 1)).expect("ASCII");
            assert_eq!(parse_range(Some(&back), size), RangeRequest::Part { start, end });
            if end == size {
                let suffix = HeaderValue::from_str(&format!("bytes=-{}", end - start)).expect("ASCII");
                assert_eq!(parse_range(Some(&suffix), size), RangeRequest::Part { start, end });
            }
        }
        RangeRequest::Unsatisfiable(why) => {
            assert!(size > 0 || !header.to_str().is_ok_and(|t| t.trim().starts_with("bytes=")));
            assert!(why.len() <= 2 * raw.len() + 200, "a {}-byte reason", why.len());
        }
    }
});
