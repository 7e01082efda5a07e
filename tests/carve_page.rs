//! A heap's first run of a small class that spans several pages is carved a page at a time
//! (`carve_small`): a thread that takes one object of each of the 45 classes of 592–1,792
//! bytes with runs of 2 or 4 pages (120 pages in all) touches the first page of each run, not
//! the whole run.
//! Before, the first refill of a class linked 32 objects, which touched every page of the
//! run. Its own test binary (its own process), so the thread's heap carves fresh runs in
//! pages nothing touched yet.

mod harness;

use hakozuna::Hakozuna;
use harness::thread_faults;
use std::alloc::{GlobalAlloc, Layout};
use std::thread;

#[global_allocator]
static A: Hakozuna = Hakozuna;

const PAGE: usize = 4096;

/// Pages in a run of class `size` (16-byte steps up to 2 KiB): the shortest of 1, 2, 4 or 8
/// whose tail waste is under an eighth (design.md §4).
fn run_pages(size: usize) -> usize {
    [1, 2, 4, 8]
        .into_iter()
        .find(|p| (p * PAGE) % size < p * PAGE / 8)
        .unwrap_or(8)
}

#[test]
fn runs_of_several_pages_are_touched_a_page_at_a_time() {
    if hakozuna::stats().lane == "secure" {
        // The hardened lane marks every object of a new run free at once (design.md §8).
        return;
    }
    let sizes: Vec<usize> = (16..=2048)
        .step_by(16)
        .filter(|&s| run_pages(s) > 1)
        .collect();
    assert_eq!(sizes.len(), 45);
    let whole: usize = sizes.iter().map(|&s| run_pages(s)).sum();
    assert_eq!(whole, 120);
    let faults = thread::spawn(move || {
        // The thread's cache and heap first (their metadata faults are not counted).
        let warm = Layout::from_size_align(16, 8).unwrap();
        // SAFETY: a non-zero-sized layout; freed below.
        let w = unsafe { A.alloc(warm) };
        assert!(!w.is_null());
        let before = thread_faults();
        let blocks: Vec<(*mut u8, Layout)> = sizes
            .iter()
            .map(|&s| {
                let l = Layout::from_size_align(s, 8).unwrap();
                // SAFETY: a non-zero-sized layout.
                let p = unsafe { A.alloc(l) };
                assert!(!p.is_null());
                (p, l)
            })
            .collect();
        let faults = thread_faults() - before;
        for (p, l) in blocks {
            // SAFETY: allocated above with `l`.
            unsafe { A.dealloc(p, l) };
        }
        // SAFETY: allocated above with `warm`.
        unsafe { A.dealloc(w, warm) };
        faults
    })
    .join()
    .unwrap();
    // One page a class (45), plus what the Vec and the runs' segment records touch; the
    // whole runs would be 120.
    assert!(
        faults < 90,
        "{faults} faults for 45 first objects: runs touched whole"
    );
}
