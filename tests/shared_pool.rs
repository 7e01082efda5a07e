//! The shared pool hands one heap's surplus free objects to another heap (`shared-pool`), and
//! without it they stay with their heap. Its own test binary (its own process), so no other
//! test parks chains of the class used here.

use hakozuna::Hakozuna;
use std::alloc::{GlobalAlloc, Layout};
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
        // SAFETY: every pointer comes from `alloc` with `layout` and is freed once.
        let ptrs: Vec<usize> = (0..N)
            .map(|i| unsafe {
                let p = A.alloc(layout);
                assert!(!p.is_null());
                p.write_bytes(i as u8, SIZE);
                p as usize
            })
            .collect();
        for &p in &ptrs {
            // SAFETY: allocated above with `layout`, freed once.
            unsafe { A.dealloc(p as *mut u8, layout) };
        }
        freed_tx.send(ptrs).unwrap();
        // Keep this thread's heap owned until B is done.
        done_rx.recv().unwrap();
    });
    let freed: HashSet<usize> = freed_rx.recv().unwrap().into_iter().collect();
    let b = thread::spawn(move || {
        // SAFETY: every pointer comes from `alloc` with `layout`; each is written whole (so a
        // pointer handed out twice, or overlapping another, is caught below) and freed once.
        let ptrs: Vec<usize> = (0..N)
            .map(|i| unsafe {
                let p = A.alloc(layout);
                assert!(!p.is_null());
                p.write_bytes((i % 251) as u8, SIZE);
                p as usize
            })
            .collect();
        for (i, &p) in ptrs.iter().enumerate() {
            // SAFETY: allocated above, still live.
            let s = unsafe { std::slice::from_raw_parts(p as *const u8, SIZE) };
            assert!(
                s.iter().all(|&x| x == (i % 251) as u8),
                "object {i} was overwritten"
            );
        }
        let distinct: HashSet<usize> = ptrs.iter().copied().collect();
        assert_eq!(distinct.len(), N, "a pointer was handed out twice");
        for &p in &ptrs {
            // SAFETY: allocated above with `layout`, freed once.
            unsafe { A.dealloc(p as *mut u8, layout) };
        }
        ptrs
    });
    let got = b.join().unwrap();
    done_tx.send(()).unwrap();
    a.join().unwrap();
    let reused = got.iter().filter(|p| freed.contains(p)).count();
    if hakozuna::config::SHARED_POOL {
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
