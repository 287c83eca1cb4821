#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write as _;

/// The largest allocation an input may make: a hostile byte stream must not
/// make the decoder allocate more than a bounded message (the largest
/// max-message class is 16 MiB).
const LIMIT: usize = 128 << 20;

/// The system allocator, aborting (a crash libFuzzer records, with the
/// input) on any allocation over [`LIMIT`]. Hand-written rather than
/// libFuzzer's `-malloc_limit_mb`, which needs a sanitizer's malloc hooks:
/// the volume campaign runs without a sanitizer (issue 18).
struct Limited;

fn check(size: usize) {
    if size > LIMIT {
        // No allocation here: a fixed message, then abort.
        let _ = std::io::stderr().write_all(b"ws_stream: an allocation over 128 MiB\n");
        std::process::abort();
    }
}

// SAFETY: every method checks the size, then forwards its arguments
// unchanged to `System`, which upholds the `GlobalAlloc` contract.
unsafe impl GlobalAlloc for Limited {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        // SAFETY: the caller's contract for `alloc_zeroed` is passed on as is.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` with `layout` (every allocation
        // of this allocator is `System`'s).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        check(new_size);
        // SAFETY: as for `dealloc`; the caller's contract for `realloc` is
        // passed on as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Limited = Limited;

libfuzzer_sys::fuzz_target!(|data: &[u8]| testkit::fuzz::ws_stream(data));
