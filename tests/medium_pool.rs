//! Adopted medium runs beyond one bin limit in a heap's central list go to the shared pool,
//! where a third heap about to carve takes them (`medium-adopt` with `shared-pool`); without
//! the pool they stay with the heap that freed them (issue 18, cross-churn). Its own test
//! binary (its own process), so no other test parks runs of the class used here.

mod reuse;

use hakozuna::Hakozuna;
use std::alloc::{GlobalAlloc, Layout};
use std::collections::HashSet;
use std::sync::mpsc;
use std::thread;

#[global_allocator]
static A: Hakozuna = Hakozuna;

/// A medium class (whole pages, one run per block).
const SIZE: usize = 8192;
const N: usize = 2_000;

/// Thread A allocates `N` runs and hands them to thread B, which allocates the class once
/// (so the class is in demand there and its sheds keep adopted runs) and then frees A's runs.
/// A and B stay alive (their heaps stay owned); thread C, with a heap of its own, then
/// allocates `N` runs of the class. With the pool C must get some of A's runs; without it
/// none (A's runs sit in B's central list or go home to A).
#[test]
fn adopted_surplus_serves_a_third_heap() {
    let layout = Layout::from_size_align(SIZE, 8).unwrap();
    let (runs_tx, runs_rx) = mpsc::channel::<Vec<usize>>();
    let (freed_tx, freed_rx) = mpsc::channel::<()>();
    let (done_a_tx, done_a_rx) = mpsc::channel::<()>();
    let (done_b_tx, done_b_rx) = mpsc::channel::<()>();
    let a = thread::spawn(move || {
        let ptrs = reuse::alloc_filled(&A, layout, N);
        runs_tx.send(ptrs).unwrap();
        done_a_rx.recv().unwrap();
    });
    let from_a = runs_rx.recv().unwrap();
    let set_a: HashSet<usize> = from_a.iter().copied().collect();
    let b = thread::spawn(move || {
        // SAFETY: a block of `layout` allocated and freed once here.
        unsafe {
            let p = A.alloc(layout);
            assert!(!p.is_null());
            A.dealloc(p, layout);
        }
        reuse::check_free(&A, layout, &from_a);
        freed_tx.send(()).unwrap();
        done_b_rx.recv().unwrap();
    });
    freed_rx.recv().unwrap();
    let c = thread::spawn(move || reuse::alloc_check_free(&A, layout, N));
    let got = c.join().unwrap();
    done_a_tx.send(()).unwrap();
    done_b_tx.send(()).unwrap();
    a.join().unwrap();
    b.join().unwrap();
    let reused = got.iter().filter(|p| set_a.contains(p)).count();
    if cfg!(all(feature = "medium-adopt", feature = "shared-pool")) {
        assert!(reused > 0, "no run A allocated reached C through the pool");
    } else {
        assert_eq!(reused, 0, "A's runs reached a third heap without the pool");
    }
    eprintln!("C reused {reused} of its {N} runs from A");
}
