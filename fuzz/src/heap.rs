//! A global allocator that counts, so that "bounded allocation" is something a target can
//! assert on the stable toolchain, where libFuzzer's own `-malloc_limit_mb` does not work
//! (it needs a sanitizer's allocator hooks).
//!
//! Two checks come of it:
//!
//! - A hard ceiling, [`HEAP_LIMIT`]: an allocation that would take the live heap past it
//!   fails, and Rust then aborts with "memory allocation of N bytes failed". libFuzzer
//!   reports the abort as a crash and saves the input, so a decoder that trusts a length
//!   prefix is caught at the allocation itself, not by the machine running out of memory.
//! - A budget per input: [`peak_heap_during`] measures the most heap a closure held at once,
//!   and a target compares it with what its input could justify ([`assert_heap_within`]).
//!
//! libFuzzer itself allocates through C's `malloc`, which this allocator does not see.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// The most heap the Rust side of a fuzz process may hold at once.
pub const HEAP_LIMIT: usize = 1 << 30;

/// Bytes allocated and not yet freed.
static LIVE: AtomicUsize = AtomicUsize::new(0);
/// The highest `LIVE` seen since the last [`peak_heap_during`] began.
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// The system allocator, counting (see the module docs).
#[derive(Debug)]
pub struct CountingAlloc;

/// Takes `n` more bytes into the count, or refuses them past [`HEAP_LIMIT`].
fn reserve(n: usize) -> bool {
    let now = LIVE.fetch_add(n, Relaxed).saturating_add(n);
    if now > HEAP_LIMIT {
        LIVE.fetch_sub(n, Relaxed);
        return false;
    }
    PEAK.fetch_max(now, Relaxed);
    true
}

fn release(n: usize) {
    LIVE.fetch_sub(n, Relaxed);
}

// SAFETY: every call is passed on to `System` unchanged; the counters only decide whether to
// ask `System` at all, and a refusal is a null pointer, which `GlobalAlloc` allows.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !reserve(layout.size()) {
            return std::ptr::null_mut();
        }
        let p = System.alloc(layout);
        if p.is_null() {
            release(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !reserve(layout.size()) {
            return std::ptr::null_mut();
        }
        let p = System.alloc_zeroed(layout);
        if p.is_null() {
            release(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        release(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = layout.size();
        if new_size > old && !reserve(new_size - old) {
            return std::ptr::null_mut();
        }
        let p = System.realloc(ptr, layout, new_size);
        if p.is_null() {
            if new_size > old {
                release(new_size - old);
            }
        } else if new_size < old {
            release(old - new_size);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Runs `f` and returns its result with the most heap, in bytes, held at once while it ran,
/// beyond what was already live when it started. Threads that `f` starts count too.
pub fn peak_heap_during<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let base = LIVE.load(Relaxed);
    PEAK.store(base, Relaxed);
    let r = f();
    (r, PEAK.load(Relaxed).saturating_sub(base))
}

/// Fails the run when `peak` is over `budget`, naming what was measured.
#[track_caller]
pub fn assert_heap_within(what: &str, peak: usize, budget: usize) {
    assert!(peak <= budget, "{what} held {peak} bytes of heap at once, over its budget of {budget}");
}
