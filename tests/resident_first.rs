//! A medium run is carved first where it touches no new page (design.md §10, "Runs carved
//! where they touch no new page"): in free pages a heap's earlier runs left resident, before
//! the untouched tail of the segment it carves from. Thread A fills two segments with 32 KiB
//! runs and a third with a few more, which it keeps live; it frees the rest and exits (its
//! heap keeps 1 MiB of the runs, the others go back to their segments, resident). Thread B
//! then carves runs of another class and writes every page: they must land in those
//! resident pages (or a segment pooled resident), so B takes almost no page fault. Before,
//! first fit from the hint segment carved the third segment's untouched tail, one fault a
//! page. Its own test binary (its own process), so no other test's heaps are in the way.

mod harness;

use hakozuna::Hakozuna;
use harness::thread_faults;
use std::alloc::{GlobalAlloc, Layout};
use std::sync::mpsc;
use std::thread;

#[global_allocator]
static A: Hakozuna = Hakozuna;

/// Thread A's class: 8 pages a run, 32 in a 1 MiB segment.
const FILL: usize = 32 << 10;
/// Runs A frees: two segments' worth.
const FREED: usize = 64;
/// Runs A keeps live, in a third segment (its hint).
const KEPT: usize = 8;
/// Thread B's class: 7 pages a run, another class than A's (the shared pool's parked runs of
/// A's class cannot serve it).
const CARVE: usize = 28 << 10;
/// Runs B allocates.
const N: usize = 16;
const PAGE: usize = 4096;

fn alloc_touched(layout: Layout) -> usize {
    // SAFETY: a non-zero-sized layout.
    let p = unsafe { A.alloc(layout) };
    assert!(!p.is_null());
    for off in (0..layout.size()).step_by(PAGE) {
        // SAFETY: inside the block just allocated.
        unsafe { p.add(off).write_volatile(1) };
    }
    p as usize
}

#[test]
fn medium_runs_are_carved_in_resident_pages_first() {
    let fill = Layout::from_size_align(FILL, 8).unwrap();
    let carve = Layout::from_size_align(CARVE, 8).unwrap();
    let (kept_tx, kept_rx) = mpsc::channel::<Vec<usize>>();
    thread::spawn(move || {
        let freed: Vec<usize> = (0..FREED).map(|_| alloc_touched(fill)).collect();
        let kept: Vec<usize> = (0..KEPT).map(|_| alloc_touched(fill)).collect();
        for p in freed {
            // SAFETY: allocated above with `fill`, freed once.
            unsafe { A.dealloc(p as *mut u8, fill) };
        }
        kept_tx.send(kept).unwrap();
    })
    .join()
    .unwrap();
    let kept = kept_rx.recv().unwrap();
    let faults = thread::spawn(move || {
        // The thread's cache and heap first, outside the count.
        drop(vec![0u8; 64]);
        let before = thread_faults();
        let got: Vec<usize> = (0..N).map(|_| alloc_touched(carve)).collect();
        let faults = thread_faults() - before;
        for p in got {
            // SAFETY: allocated above with `carve`, freed once.
            unsafe { A.dealloc(p as *mut u8, carve) };
        }
        faults
    })
    .join()
    .unwrap();
    for p in kept {
        // SAFETY: allocated by thread A with `fill`, freed once.
        unsafe { A.dealloc(p as *mut u8, fill) };
    }
    let pages = (N * CARVE / PAGE) as i64;
    eprintln!("{faults} minor faults for {pages} pages written");
    assert!(
        faults < pages / 2,
        "{faults} page faults writing {pages} pages: the runs were carved in untouched pages \
         while resident free pages waited"
    );
}
