//! hakozuna: a memory allocator with per-thread caches, one-owner heaps, and a remote-free
//! path of sparse per-thread rings, per-owner MPSC stashes, a transfer cache and central
//! lists — a re-creation of the hz3 design (see DESIGN.md in the project).
//!
//! Use it from Rust as
//! ```ignore
//! #[global_allocator]
//! static A: hakozuna::Hakozuna = hakozuna::Hakozuna;
//! ```
//! or from anything as `LD_PRELOAD=libhakozuna.so`.
//!
//! Data flows one way: `tcache` → heap structures (`owner_stash`, `transfer_cache`, `mpsc`
//! inbox/intake, central lists in `heap`, the `shared_pool` they overflow to) → page source
//! (`heap` over `arena` segments) → `os`.
//! The large tier (`large`) maps directly.

#![no_std]
#![allow(clippy::missing_safety_doc)]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(test)]
extern crate std;

pub mod alloc;
mod arena;
mod atomics;
mod bitmap;
#[cfg(feature = "capi")]
mod capi;
pub mod config;
mod diag;
mod heap;
mod init;
mod large;
mod list;
#[cfg(all(test, loom))]
mod loom_tests;
mod meta;
mod mpsc;
mod os;
pub mod owner_stash;
mod page_tag;
// Both lanes' remote buffers are compiled in every build (so each is type-checked and unit
// tested); only `config::RemoteBuf` is used.
#[allow(dead_code)]
mod remote_bank;
#[allow(dead_code)]
mod remote_ring;
mod shared_pool;
pub mod size_class;
mod stats;
mod sync;
mod tcache;
mod tls;
pub mod transfer_cache;

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
    stats::report();
}
