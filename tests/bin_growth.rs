//! Thread bins that grow on round trips (design.md §5): a thread that allocates more blocks of
//! one class than its bin holds and then frees them all gets a bin that holds the whole round
//! trip, so later rounds neither overflow nor refill; a thread whose bin swings by less keeps
//! the default limit. Read through the event counts of `hakozuna::stats()`, with this test
//! binary on `Hakozuna` as its global allocator.

use hakozuna::Hakozuna;
use std::alloc::{GlobalAlloc, Layout};
use std::sync::Mutex;

#[global_allocator]
static A: Hakozuna = Hakozuna;

/// The tests share one process and its figures: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Rounds of `n` allocations of 48 bytes, then `n` frees, on a fresh thread (a fresh cache).
/// Returns (bin grows, bin overflows) counted over all rounds and over the rounds after the
/// first two.
fn rounds(n: usize, total: usize) -> ((u64, u64), (u64, u64)) {
    std::thread::spawn(move || {
        let layout = Layout::from_size_align(48, 16).unwrap();
        let mut blocks = vec![std::ptr::null_mut(); n];
        let ev = || {
            let e = hakozuna::stats().events;
            (e.bin_grows, e.bin_overflows)
        };
        let start = ev();
        let mut warm = start;
        for round in 0..total {
            if round == 2 {
                warm = ev();
            }
            for b in blocks.iter_mut() {
                // SAFETY: a non-zero-sized layout.
                *b = unsafe { A.alloc(layout) };
                assert!(!b.is_null());
            }
            for &b in blocks.iter() {
                // SAFETY: allocated above with `layout`, freed once.
                unsafe { A.dealloc(b, layout) };
            }
        }
        let end = ev();
        (
            (end.0 - start.0, end.1 - start.1),
            (end.0 - warm.0, end.1 - warm.1),
        )
    })
    .join()
    .unwrap()
}

#[test]
fn a_round_trip_larger_than_the_bin_grows_it() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // 3,000 blocks of 48 bytes: more than a default bin's 256 objects, well inside the growth
    // budget (144 KiB).
    let (all, after) = rounds(3000, 20);
    assert!(all.0 >= 1, "the bin never grew: {all:?}");
    assert_eq!(
        after,
        (0, 0),
        "rounds after the growth still overflowed or grew"
    );
}

#[test]
fn a_round_trip_within_the_bin_does_not_grow_it() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (all, _) = rounds(200, 50);
    assert_eq!(all, (0, 0), "a 200-block round trip fits the default bin");
}
