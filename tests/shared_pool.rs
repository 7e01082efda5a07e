//! The shared pool hands one heap's surplus free objects to another heap (`shared-pool`), and
//! without it they stay with their heap. Its own test binary (its own process), so no other
//! test parks chains of the class used here.

mod reuse;

use hakozuna::Hakozuna;
use std::alloc::Layout;
use std::collections::HashSet;
use std::sync::mpsc;
use std::thread;

#[global_allocator]
static A: Hakozuna = Hakozuna;

const SIZE: usize = 256;
const N: usize = 20_000;

/// Thread A allocates and frees `N` objects of one small class and stays alive (so its heap
/// is not handed to the next thread); thread B, with a heap of its own, then allocates `N`
/// objects of the same class. With the pool B must get some of A's objects; without it none.
#[test]
fn surplus_of_one_heap_serves_another() {
    let layout = Layout::from_size_align(SIZE, 8).unwrap();
    let (freed_tx, freed_rx) = mpsc::channel::<Vec<usize>>();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let a = thread::spawn(move || {
        let ptrs = reuse::alloc_check_free(&A, layout, N);
        freed_tx.send(ptrs).unwrap();
        // Keep this thread's heap owned until B is done.
        done_rx.recv().unwrap();
    });
    let freed: HashSet<usize> = freed_rx.recv().unwrap().into_iter().collect();
    let b = thread::spawn(move || reuse::alloc_check_free(&A, layout, N));
    let got = b.join().unwrap();
    done_tx.send(()).unwrap();
    a.join().unwrap();
    let reused = got.iter().filter(|p| freed.contains(p)).count();
    if cfg!(feature = "shared-pool") {
        assert!(
            reused > 0,
            "no object A freed reached B through the shared pool"
        );
    } else {
        assert_eq!(
            reused, 0,
            "A's objects reached another heap without the pool"
        );
    }
    eprintln!("B reused {reused} of its {N} objects from A");
}
