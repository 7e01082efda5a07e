//! A medium run carved in a released heap's resident free pages (`registry::lend_run`, which
//! `OwnedHeap::carve_run` tries when its own heap has no resident free page) keeps the
//! lender's tag with the borrower's class: its usable size is its class's, it is freed by its
//! borrower and by another thread, and the lender's next owner takes the lender's memory
//! again. Thread B claims its heap first and waits; thread A fills three segments with 32 KiB
//! runs, keeps one run in each nine live (so no segment empties and goes to the pool), frees
//! the rest and exits, its heap released with resident free pages; B then carves runs of
//! another class with no segment of its own. Its own test binary (its own process), so the
//! released heaps are this test's. (In the hardened lane a run with no tag or a wrong one
//! aborts its `free` as an invalid free.)

mod reuse;

use hakozuna::Hakozuna;
use std::alloc::{GlobalAlloc, Layout};
use std::sync::mpsc;
use std::thread;

#[global_allocator]
static A: Hakozuna = Hakozuna;

/// Thread A's class: 8 pages a run, 32 in a 1 MiB segment.
const FILL: usize = 32 << 10;
/// Runs A allocates; it keeps every [`KEEP_EVERY`]th live.
const FILLED: usize = 90;
const KEEP_EVERY: usize = 9;
/// Thread B's class: 7 pages a run, another class than A's.
const CARVE: usize = 28 << 10;
/// Runs B allocates.
const N: usize = 16;

fn lent() -> u64 {
    hakozuna::stats().events.medium_runs_lent
}

#[test]
fn runs_lent_by_a_released_heap_keep_its_tag_and_their_class() {
    let fill = Layout::from_size_align(FILL, 8).unwrap();
    let carve = Layout::from_size_align(CARVE, 8).unwrap();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (got_tx, got_rx) = mpsc::channel::<(Vec<usize>, u64)>();
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let b = thread::spawn(move || {
        // B's heap, claimed before A's is released.
        drop(vec![0u8; 64]);
        ready_tx.send(()).unwrap();
        go_rx.recv().unwrap();
        let before = lent();
        let got = reuse::alloc_filled(&A, carve, N);
        let lent_here = lent() - before;
        for &p in &got {
            // SAFETY: a live block from this allocator.
            let u = unsafe { hakozuna::alloc::usable_size(p as *mut u8) };
            assert_eq!(u, CARVE, "usable size of a carved run: its tag's class");
        }
        // Half freed here, half by the main thread.
        for &p in &got[..N / 2] {
            // SAFETY: allocated above with `carve`, freed once.
            unsafe { A.dealloc(p as *mut u8, carve) };
        }
        got_tx.send((got[N / 2..].to_vec(), lent_here)).unwrap();
    });
    ready_rx.recv().unwrap();
    let kept = thread::spawn(move || {
        // Written whole: its pages made resident.
        let all = reuse::alloc_filled(&A, fill, FILLED);
        let mut kept = Vec::new();
        for (i, p) in all.into_iter().enumerate() {
            if i % KEEP_EVERY == 0 {
                kept.push(p);
            } else {
                // SAFETY: allocated above with `fill`, freed once.
                unsafe { A.dealloc(p as *mut u8, fill) };
            }
        }
        kept
    })
    .join()
    .unwrap();
    go_tx.send(()).unwrap();
    let (rest, lent_here) = got_rx.recv().unwrap();
    b.join().unwrap();
    // Lending needs `medium-adopt`; the count, `stats`.
    if cfg!(all(feature = "medium-adopt", feature = "stats")) {
        assert!(
            lent_here > 0,
            "no run lent: the test did not reach registry::lend_run"
        );
    }
    for p in rest {
        // SAFETY: allocated by B with `carve`, freed once.
        unsafe { A.dealloc(p as *mut u8, carve) };
    }
    // A later thread (A's heap's next owner, or any) allocates both classes again.
    thread::spawn(move || {
        for layout in [fill, carve] {
            reuse::alloc_check_free(&A, layout, N);
        }
    })
    .join()
    .unwrap();
    for p in kept {
        // SAFETY: allocated by A with `fill`, freed once.
        unsafe { A.dealloc(p as *mut u8, fill) };
    }
}
