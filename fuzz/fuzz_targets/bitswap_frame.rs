//! Bitswap's length-delimited framing, read from a peer's stream: never panics, never
//! returns a frame over the message limit, never allocates more than one limit's worth for a
//! length it has not seen the bytes of, counts exactly the body bytes of large frames as
//! they arrive, copes with reads cut anywhere, and the frames it reads, written again,
//! read back the same. Each frame is then decoded as a message.
//!
//! The first input byte sets how many bytes each read of the stream returns at most.
#![no_main]

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use cairn_fuzz::seeds::{seed, write_if_asked};
use cairn_fuzz::{assert_heap_within, peak_heap_during};
use cairn_node::net::bitswap::proto::{read_frame_counting, write_frame, COUNTED_FROM, MAX_MESSAGE};
use cairn_node::net::bitswap::{Message, Version};
use futures::executor::block_on;
use futures::io::{AsyncRead, Cursor};
use libfuzzer_sys::fuzz_target;

/// A stream that hands out at most `step` bytes per read, as a network does.
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl AsyncRead for Trickle<'_> {
    fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut [u8]) -> Poll<std::io::Result<usize>> {
        let n = buf.len().min(self.step).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Poll::Ready(Ok(n))
    }
}

fn frames(msgs: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    block_on(async {
        for m in msgs {
            write_frame(&mut out, m).await.expect("writing to a Vec");
        }
    });
    out
}

fn seeds() -> Vec<(String, Vec<u8>)> {
    let msg = Message { full: true, ..Message::default() }.encode(Version::V1_2);
    let big = vec![0x12; COUNTED_FROM + 3];
    vec![
        seed("two-frames", [&[0u8][..], &frames(&[&msg, b""])].concat()),
        seed("large-frame-bytewise", [&[1u8][..], &frames(&[&big])].concat()),
        // A length over the limit, a length longer than ten bytes, a frame cut short.
        seed("over-limit", [0u8, 0x81, 0x80, 0x80, 0x02].to_vec()),
        seed("long-varint", [vec![7u8], vec![0xff; 11]].concat()),
        seed("cut", [0u8, 0x05, 1, 2].to_vec()),
    ]
}

fuzz_target!(init: write_if_asked(seeds), |data: &[u8]| {
    let Some((&step, stream)) = data.split_first() else {
        return;
    };
    let step = usize::from(step).max(1) * if step >= 128 { 4096 } else { 1 };
    let arrived = AtomicU64::new(0);
    let (read, peak) = peak_heap_during(|| {
        block_on(async {
            let mut io = Trickle { data: stream, step };
            let mut got = Vec::new();
            loop {
                match read_frame_counting(&mut io, &arrived).await {
                    Ok(Some(frame)) => got.push(frame),
                    Ok(None) => return (got, true),
                    Err(_) => return (got, false),
                }
            }
        })
    });
    let (got, clean_end) = read;
    // One frame's buffer may be allocated from its length before its bytes arrive.
    assert_heap_within("read_frame", peak, MAX_MESSAGE + 4 * stream.len() + 65536);
    let body: usize = got.iter().map(Vec::len).sum();
    assert!(got.iter().all(|f| f.len() <= MAX_MESSAGE));
    assert!(body + got.len() <= stream.len(), "{body} bytes in {} frames out of {}", got.len(), stream.len());
    let counted: usize = got.iter().filter(|f| f.len() >= COUNTED_FROM).map(Vec::len).sum();
    let arrived = arrived.load(Ordering::Relaxed) as usize;
    if clean_end {
        assert_eq!(arrived, counted, "bytes counted as arrived");
    } else {
        // A large frame cut short counts the part that came.
        assert!(arrived >= counted && arrived <= stream.len());
    }
    let written = frames(&got.iter().map(Vec::as_slice).collect::<Vec<_>>());
    let again = block_on(async {
        let mut io = Cursor::new(&written[..]);
        let mut back = Vec::new();
        let zero = AtomicU64::new(0);
        while let Some(f) = read_frame_counting(&mut io, &zero).await.expect("our own frames read") {
            back.push(f);
        }
        back
    });
    assert_eq!(again, got);
    for f in &got {
        let _ = Message::decode(&f[..]);
    }
});
