//! Free pages inside a heap's segments are found again (design.md §4): run searches skip a
//! segment that was found too full for a run of some length (`SegInner::no_run_of`) only
//! until a page of it is freed. A thread fills segments with runs of 24 pages, frees most of
//! them (one block per segment stays, so no segment leaves the heap), trims, and allocates as
//! many again: the runs must land in the freed pages, not in new segments. Its own test binary
//! (its own process), so the figures count only this test's memory.

use hakozuna::Hakozuna;
use std::alloc::{GlobalAlloc, Layout};

#[global_allocator]
static A: Hakozuna = Hakozuna;

/// An arena-large class: a run of 24 pages (96 KiB), searched by best fit.
const SIZE: usize = 96 << 10;
/// Blocks of the first round: about 48 segments of 1 MiB.
const N: usize = 480;
/// Of the first round, every `KEEP_EVERY`th block stays live.
const KEEP_EVERY: usize = 10;

#[test]
fn freed_pages_of_segments_found_full_are_reused() {
    let grew = std::thread::spawn(|| {
        let layout = Layout::from_size_align(SIZE, 16).unwrap();
        let alloc = |n: usize| -> Vec<*mut u8> {
            (0..n)
                .map(|_| {
                    // SAFETY: a non-zero-sized layout.
                    let p = unsafe { A.alloc(layout) };
                    assert!(!p.is_null());
                    p
                })
                .collect()
        };
        let first = alloc(N);
        let mut kept = Vec::new();
        for (i, &p) in first.iter().enumerate() {
            if i % KEEP_EVERY == 0 {
                kept.push(p);
            } else {
                // SAFETY: allocated above with `layout`, freed once.
                unsafe { A.dealloc(p, layout) };
            }
        }
        // Every freed run back in its segment's page map.
        // SAFETY: not called from inside an allocator call.
        unsafe { hakozuna::alloc::trim() };
        let before = hakozuna::stats().arena_segment_bytes;
        let again = alloc(N - kept.len());
        let after = hakozuna::stats().arena_segment_bytes;
        for p in again.into_iter().chain(kept) {
            // SAFETY: allocated above with `layout`, freed once.
            unsafe { A.dealloc(p, layout) };
        }
        eprintln!("arena segment bytes: {before} before the second round, {after} after");
        after.saturating_sub(before)
    })
    .join()
    .unwrap();
    // The second round fits in the pages the first freed; a few MiB of slack for the bins'
    // and the large tier's own choices.
    assert!(
        grew <= 8 << 20,
        "the second round took {grew} bytes of new segments beside the first round's free pages"
    );
}
