//! hakozuna: a memory allocator with per-thread caches, one-owner heaps, and a remote-free
//! path of sparse per-thread rings, per-owner MPSC stashes, a transfer cache and central
//! lists — a re-creation of the hz3 design (docs/design.md).
//!
//! Use it from Rust as
//! ```ignore
//! #[global_allocator]
//! static A: hakozuna::Hakozuna = hakozuna::Hakozuna;
//! ```
//! or from anything as `LD_PRELOAD=libhakozuna.so`.
//!
//! The source is in layers, each a folder that may use only the layers below it
//! (design.md §2; `tests/layers.rs` checks it): `front` (operations, C API, thread cache,
//! lifecycle) → `remote` (the thread-side remote-free buffers) → `heap` (heaps and their
//! refill, central, medium, segment and decay jobs) → `ds` (lists and lock-free containers) →
//! `page` (arena, segments, page tags, size classes, large tier) → `sys` (OS, locks, metadata
//! memory, options), with `config` and `stats` at the bottom.

#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(test)]
extern crate std;

mod config;
mod ds;
mod front;
mod heap;
#[cfg(all(test, loom))]
mod loom_tests;
mod page;
mod remote;
mod stats;
mod sys;

pub use front::alloc;

use core::alloc::{GlobalAlloc, Layout};

/// The allocator as a Rust `GlobalAlloc`.
pub struct Hakozuna;

// SAFETY: every method forwards to the engine, which returns blocks of at least
// `layout.size()` bytes aligned to `layout.align()` (normal path ≥ 16, `memalign` otherwise)
// and accepts back exactly the pointers it returned.
unsafe impl GlobalAlloc for Hakozuna {
    #[inline(always)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= 16 {
            // SAFETY: called by Rust code, outside the allocator.
            unsafe { alloc::malloc(layout.size()) }
        } else {
            // SAFETY: outside the allocator; a `Layout`'s alignment is a power of two.
            unsafe { alloc::memalign(layout.align(), layout.size()) }
        }
    }

    #[inline(always)]
    unsafe fn dealloc(&self, p: *mut u8, _layout: Layout) {
        // SAFETY: `GlobalAlloc` contract: `p` is a live block from this allocator.
        unsafe { alloc::free(p) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= 16 {
            // SAFETY: called by Rust code, outside the allocator.
            unsafe { alloc::calloc(1, layout.size()) }
        } else {
            // SAFETY: outside the allocator; a `Layout`'s alignment is a power of two.
            let p = unsafe { alloc::memalign(layout.align(), layout.size()) };
            if !p.is_null() {
                // SAFETY: `p` is a fresh block of at least `layout.size()` bytes.
                unsafe { core::ptr::write_bytes(p, 0, layout.size()) };
            }
            p
        }
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.align() <= 16 {
            // SAFETY: `GlobalAlloc` contract: `p` is a live block from this allocator.
            return unsafe { alloc::realloc(p, new_size) };
        }
        // SAFETY: `p` is a live block from this allocator (`GlobalAlloc` contract).
        if new_size <= unsafe { alloc::usable_size(p) } {
            return p;
        }
        // SAFETY: outside the allocator; a `Layout`'s alignment is a power of two.
        let q = unsafe { alloc::memalign(layout.align(), new_size) };
        if !q.is_null() {
            // SAFETY: `p` is live for `layout.size()` bytes, `q` fresh for `new_size`, and live
            // blocks do not overlap; then `p` is given up (`GlobalAlloc` realloc contract).
            unsafe {
                core::ptr::copy_nonoverlapping(p, q, layout.size().min(new_size));
                alloc::free(p);
            }
        }
        q
    }
}

/// Prints the statistics summary at process exit when `HAKOZUNA_STATS=1`. A `.fini_array`
/// entry rather than `atexit`, which may allocate.
#[used]
#[link_section = ".fini_array"]
static FINI: extern "C" fn() = fini;

extern "C" fn fini() {
    front::report::print();
}
