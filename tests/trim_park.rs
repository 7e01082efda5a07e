//! `malloc_trim` leaves no medium run in the shared pool (design.md §10), also when a heap's
//! trim drains runs sent home to it into a central list while the class was taken from the
//! pool within the last decay interval, the case where a central list past one bin limit parks
//! its own surplus in the pool (`park_own_surplus`). Its own binary without the test harness,
//! so that `main` owns one heap and the threads it starts the others.

use hakozuna::Hakozuna;
use std::alloc::{GlobalAlloc, Layout};
use std::sync::mpsc;
use std::thread;

#[global_allocator]
static A: Hakozuna = Hakozuna;

/// Runs of 16 KiB: a default bin, and one chain of the pool, holds 16.
const SIZE: usize = 16 << 10;
/// Runs `main` allocates and another thread frees: several bin limits.
const N: usize = 96;

fn main() {
    let layout = Layout::from_size_align(SIZE, 16).unwrap();
    let ours: Vec<usize> = (0..N)
        .map(|_| {
            // SAFETY: a non-zero-sized layout.
            let p = unsafe { A.alloc(layout) };
            assert!(!p.is_null());
            p as usize
        })
        .collect();
    // A second thread, which owns a heap until the end, frees `main`'s runs: they stay in its
    // bin as adopted runs, and what overflows it goes to its central list and, past one bin
    // limit (other heaps' runs), to the shared pool.
    let (freed_tx, freed_rx) = mpsc::channel::<()>();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let other = thread::spawn(move || {
        // A refill of the class makes it one this thread allocates (in demand), so the runs
        // its bin sheds go to central, and past one bin limit to the pool, not home at once.
        // SAFETY: a non-zero-sized layout.
        let mine = unsafe { A.alloc(layout) };
        assert!(!mine.is_null());
        for &p in &ours {
            // SAFETY: allocated by `main` with `layout`, freed once.
            unsafe { A.dealloc(p as *mut u8, layout) };
        }
        freed_tx.send(()).unwrap();
        done_rx.recv().unwrap();
        // SAFETY: allocated above with `layout`, freed once.
        unsafe { A.dealloc(mine, layout) };
    });
    freed_rx.recv().unwrap();
    let parked = hakozuna::stats().shared_pool_medium_bytes;
    assert!(
        parked >= 2 * 16 * SIZE as u64,
        "the other thread's frees parked only {parked} bytes in the shared pool"
    );
    // `main` takes a chain of the class from the pool (its thread bin is empty and so is its
    // central list), which stamps the class as taken now.
    let before = hakozuna::stats().events.medium_refill_pool;
    // SAFETY: a non-zero-sized layout.
    let p = unsafe { A.alloc(layout) };
    assert!(!p.is_null());
    assert!(
        hakozuna::stats().events.medium_refill_pool > before,
        "the refill did not take a chain from the shared pool"
    );
    // SAFETY: allocated above with `layout`, freed once.
    unsafe { A.dealloc(p, layout) };
    // `malloc_trim` sends the pool's chains home to `main`'s heap, whose trim drains them into
    // its central list: more than a bin limit of a class taken within the decay interval.
    // SAFETY: not called from inside an allocator call.
    unsafe { hakozuna::alloc::trim() };
    let left = hakozuna::stats().shared_pool_medium_bytes;
    done_tx.send(()).unwrap();
    other.join().unwrap();
    assert_eq!(
        left, 0,
        "malloc_trim left {left} bytes of medium runs in the shared pool ({parked} before it)"
    );
    println!("trim_park: ok ({parked} bytes parked before malloc_trim, 0 after)");
}
