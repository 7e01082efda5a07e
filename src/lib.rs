//! hakozuna: a general-purpose memory allocator in Rust without the standard library, with
//! per-thread caches, one-owner heaps and a batched remote-free path (a re-creation of the hz3
//! design). Use it as Rust's global allocator:
//!
//! ```
//! #[global_allocator]
//! static ALLOC: hakozuna::Hakozuna = hakozuna::Hakozuna;
//!
//! fn main() {
//!     let v: Vec<u64> = (0..100_000).collect(); // served by hakozuna
//!     let s = hakozuna::stats();
//!     assert!(s.in_use_bytes >= 800_000);
//!     println!("{} bytes in use, {} committed", s.in_use_bytes, s.committed_bytes);
//!     drop(v);
//! }
//! ```
//!
//! `examples/global_alloc.rs` is the same program, run with `cargo run --example global_alloc`.
//!
//! **Platform:** x86-64 Linux only (glibc or another libc with `pthread` and `dlsym`). The thread
//! cache is reached through initial-exec thread-local storage written in x86-64 assembly; the
//! crate does not build for other targets.
//!
//! **From C and C++:** the same engine is built as `libhakozuna.so` (scale lane) and
//! `libhakozuna_fast.so` (fast lane) by the repository's workspace, for `LD_PRELOAD`; they
//! export the C `malloc` family, the C++ `operator new`/`delete` forms, glibc's `mallinfo2` and
//! friends, and `hakozuna_stats_json`. This crate alone exports none of them: C code linked
//! into a Rust program keeps its system `malloc`.
//!
//! **What it offers:** [`Hakozuna`] (the `GlobalAlloc`), [`stats()`] (memory figures and event
//! counts, safe to call while other threads allocate), and the raw operations in [`alloc`]. The
//! `HAKOZUNA_*` environment variables (arena size, decay interval, a statistics report at exit)
//! are read once at start-up.
//!
//! The source is in layers, each a folder that may use only the layers below it
//! (design.md §2; `tests/layers.rs` checks it): `front` (operations, C API, thread cache,
//! lifecycle, statistics) → `remote` (the thread-side remote-free buffers) → `heap` (heaps and
//! their refill, central, medium, segment and decay jobs) → `ds` (lists and lock-free
//! containers) → `page` (arena, segments, page tags, size classes, large tier) → `sys` (OS,
//! locks, metadata memory, options), with `config` and `stats` at the bottom.

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
pub use front::report::Stats;
pub use stats::Events;

/// A snapshot of the allocator's memory figures and event counts (see [`Stats`] for what each
/// figure counts). Safe to call at any time from any thread, also while others allocate: it
/// reads counters with relaxed loads, takes no lock and does not allocate. Before the
/// allocator's first use every figure is 0.
///
/// ```
/// let s = hakozuna::stats();
/// assert_eq!(s.committed_bytes, s.in_use_bytes + s.free_bytes + s.metadata_bytes);
/// ```
pub fn stats() -> Stats {
    front::report::snapshot()
}

use core::alloc::{GlobalAlloc, Layout};

/// The allocator as a Rust `GlobalAlloc`: declare it with `#[global_allocator]` (crate docs).
///
/// The crate's default features build the scale lane; `default-features = false, features =
/// ["fast-defaults"]` builds the fast lane (design.md §8). Alignments up to 16 go to `malloc`,
/// larger ones to [`alloc::memalign`].
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

/// Prints the statistics report at process exit when `HAKOZUNA_STATS` is `1` or `json`. A
/// `.fini_array` entry rather than `atexit`, which may allocate.
#[used]
#[link_section = ".fini_array"]
static FINI: extern "C" fn() = fini;

extern "C" fn fini() {
    front::report::print();
}
