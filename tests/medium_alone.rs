//! Medium bins of the only heap (design.md §5, `config::MEDIUM_ALONE_BINS`): while one thread
//! owns a heap, a medium bin holds four default limits, so freeing more runs of a class than a
//! default bin holds does not overflow; `malloc_trim` cuts the bin back to its default limit
//! and gives the rest back to the segments. Its own binary without the test harness, so that
//! `main` is the only thread and owns the only heap.

use hakozuna::Hakozuna;
use std::alloc::{GlobalAlloc, Layout};

#[global_allocator]
static A: Hakozuna = Hakozuna;

/// Runs of 32 KiB: a default bin holds 8, the only heap's 32.
const SIZE: usize = 32 << 10;
/// More than a default bin holds, less than the only heap's bin less a refill batch (3).
const N: usize = 24;

fn main() {
    let layout = Layout::from_size_align(SIZE, 16).unwrap();
    let mut blocks = Vec::with_capacity(N);
    for _ in 0..N {
        // SAFETY: a non-zero-sized layout.
        let p = unsafe { A.alloc(layout) };
        assert!(!p.is_null());
        blocks.push(p);
    }
    let before = hakozuna::stats().events;
    for &p in &blocks {
        // SAFETY: allocated above with `layout`, freed once.
        unsafe { A.dealloc(p, layout) };
    }
    let freed = hakozuna::stats().events;
    assert_eq!(
        freed.bin_overflows, before.bin_overflows,
        "{N} frees of one medium class overflowed the only heap's bin"
    );
    // SAFETY: not called from inside an allocator call.
    unsafe { hakozuna::alloc::trim() };
    let trimmed = hakozuna::stats().events;
    // The bin keeps its default limit (8) and the rest goes back to the segments.
    let returned = trimmed.medium_runs_returned - freed.medium_runs_returned;
    assert!(
        returned >= (N - 8) as u64,
        "malloc_trim gave back {returned} of the {N} runs freed"
    );
    println!("medium_alone: ok ({returned} runs given back by malloc_trim)");
}
