//! A heap whose owner is idle has its stash taken by another heap's refill (`stash-steal`), and
//! without it the objects wait for their owner. Its own test binary (its own process), so no
//! other test's objects of the class used here are in any stash.

mod reuse;

use hakozuna::Hakozuna;
use std::alloc::{GlobalAlloc, Layout};
use std::collections::HashSet;
use std::sync::mpsc;
use std::thread;

#[global_allocator]
static A: Hakozuna = Hakozuna;

const SIZE: usize = 256;
const N: usize = 20_000;

/// Thread A allocates `N` objects of one small class and stays alive, idle, so its heap keeps
/// its owner and never refills. Thread C frees them all (remote frees, which reach A's stash
/// when C exits and flushes its remote buffer). Thread B, with a heap of its own, then
/// allocates `N` objects of the same class: with `stash-steal` some must be A's, without it
/// none.
#[test]
fn idle_owners_stash_serves_another_heap() {
    let layout = Layout::from_size_align(SIZE, 8).unwrap();
    let (ptrs_tx, ptrs_rx) = mpsc::channel::<Vec<usize>>();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let a = thread::spawn(move || {
        // Thread C frees each once.
        let ptrs = reuse::alloc_filled(&A, layout, N);
        ptrs_tx.send(ptrs).unwrap();
        // Keep this thread's heap owned (and idle) until B is done.
        done_rx.recv().unwrap();
    });
    let ptrs = ptrs_rx.recv().unwrap();
    let freed: HashSet<usize> = ptrs.iter().copied().collect();
    thread::spawn(move || {
        for &p in &ptrs {
            // SAFETY: allocated by A with `layout` and freed once, here.
            unsafe { A.dealloc(p as *mut u8, layout) };
        }
    })
    .join()
    .unwrap();
    let b = thread::spawn(move || reuse::alloc_check_free(&A, layout, N));
    let got = b.join().unwrap();
    done_tx.send(()).unwrap();
    a.join().unwrap();
    let reused = got.iter().filter(|p| freed.contains(p)).count();
    if cfg!(feature = "stash-steal")
        && cfg!(feature = "owner-stash")
        && cfg!(feature = "owner-stash-push")
    {
        assert!(reused > 0, "no object of A's idle stash reached B");
    } else {
        assert_eq!(reused, 0, "A's stashed objects reached another heap");
    }
    eprintln!("B reused {reused} of its {N} objects from A's stash");
}
