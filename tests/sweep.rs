//! Small runs go back to their segments (the sweep, design.md §10): small blocks that exited
//! threads freed, half of them on other threads, leave no run behind after `malloc_trim`, and
//! the memory handed out again by `alloc_zeroed` reads zero. Its own test binary (its own
//! process), so the figures count only this test's memory.

use hakozuna::Hakozuna;
use std::alloc::{GlobalAlloc, Layout};
use std::sync::{mpsc, Arc, Barrier};
use std::thread;

#[global_allocator]
static A: Hakozuna = Hakozuna;

const THREADS: usize = 4;
/// Bytes each thread allocates.
const BYTES: usize = 16 << 20;
/// What may stay in runs after the trim: the test harness's own blocks and the bins and
/// central lists of the threads still alive (measured: under 1 MiB), not the 64 MiB burst.
const SLACK: u64 = 16 << 20;

/// Small sizes: 7 in 8 of 16 B – 2 KiB, the rest 2 KiB – 14 KiB.
fn size(s: &mut u32) -> usize {
    *s = s.wrapping_mul(1664525).wrapping_add(1013904223);
    let r = (*s >> 8) as usize;
    if !r.is_multiple_of(8) {
        16 + (r >> 3) % 2033
    } else {
        2049 + (r >> 3) % 12288
    }
}

fn layout(n: usize) -> Layout {
    Layout::from_size_align(n, 8).unwrap()
}

/// Allocates `BYTES` of small blocks filled with `fill`; frees the even ones and returns the
/// odd ones (address, size) for another thread to free.
fn burst(t: usize, fill: u8) -> Vec<(usize, usize)> {
    let mut s = 0x9e37_79b9u32.wrapping_mul(t as u32 + 1);
    let mut blocks = Vec::new();
    let mut total = 0;
    while total < BYTES {
        let n = size(&mut s);
        // SAFETY: a non-zero size.
        let p = unsafe { A.alloc(layout(n)) };
        assert!(!p.is_null());
        // SAFETY: `p` holds `n` bytes.
        unsafe { p.write_bytes(fill, n) };
        blocks.push((p as usize, n));
        total += n;
    }
    let mut handed = Vec::with_capacity(blocks.len() / 2 + 1);
    for (i, &(p, n)) in blocks.iter().enumerate() {
        if i % 2 == 1 {
            handed.push((p, n));
        } else {
            // SAFETY: allocated above with this layout, freed once.
            unsafe { A.dealloc(p as *mut u8, layout(n)) };
        }
    }
    handed
}

/// Runs [`burst`] on `THREADS` threads and returns the run bytes measured while they are still
/// alive (so no decay of their released heaps can have run, whatever `HAKOZUNA_DECAY_MS`
/// says); then, once they have exited, frees each one's odd blocks on another new thread.
fn burst_all(fill: u8) -> u64 {
    let (tx, rx) = mpsc::channel();
    let done = Arc::new(Barrier::new(THREADS + 1));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (tx, done) = (tx.clone(), done.clone());
            thread::spawn(move || {
                tx.send(burst(t, fill)).unwrap();
                done.wait();
            })
        })
        .collect();
    let handed: Vec<Vec<(usize, usize)>> = (0..THREADS).map(|_| rx.recv().unwrap()).collect();
    let held = run_bytes();
    done.wait();
    for t in threads {
        t.join().unwrap();
    }
    for blocks in handed {
        thread::spawn(move || {
            for (p, n) in blocks {
                // SAFETY: allocated by `burst` with this layout, freed once.
                unsafe {
                    assert_eq!(*(p as *const u8), fill);
                    A.dealloc(p as *mut u8, layout(n));
                }
            }
        })
        .join()
        .unwrap();
    }
    held
}

fn run_bytes() -> u64 {
    hakozuna::stats().run_bytes
}

#[test]
fn trim_returns_the_small_runs_of_exited_threads_and_calloc_reads_zero() {
    let base = run_bytes();
    let held = burst_all(0xa5);
    // SAFETY: not called from inside an allocator call.
    unsafe { hakozuna::alloc::trim() };
    let after = run_bytes();
    eprintln!("run bytes: {base} at start, {held} during the burst, {after} after the trim");
    assert!(
        held >= base + (THREADS * BYTES / 2) as u64,
        "the burst did not show in the run bytes ({base} -> {held})"
    );
    assert!(
        after <= base + SLACK,
        "small runs stayed after malloc_trim: {after} run bytes (at start {base})"
    );
    let s = hakozuna::stats();
    if s.events_counted {
        assert!(s.events.small_runs_returned > 0, "no small run returned");
    }

    // The swept runs and purged pages are handed out again: zeroed blocks read zero.
    let mut seed = 7u32;
    let mut blocks = Vec::new();
    let mut total = 0;
    while total < THREADS * BYTES {
        let n = size(&mut seed);
        // SAFETY: a non-zero size.
        let p = unsafe { A.alloc_zeroed(layout(n)) };
        assert!(!p.is_null());
        // SAFETY: `p` holds `n` bytes.
        let bytes = unsafe { std::slice::from_raw_parts(p, n) };
        if let Some(i) = bytes.iter().position(|&b| b != 0) {
            panic!("alloc_zeroed({n}) at {p:?}: byte {i} is {:#x}", bytes[i]);
        }
        blocks.push((p, n));
        total += n;
    }
    for (p, n) in blocks {
        // SAFETY: allocated above with this layout, freed once.
        unsafe { A.dealloc(p, layout(n)) };
    }
}
