//! Bounded caches (design.md §10, "Bounds"): the arena's segment pool holds at most
//! `POOL_RESIDENT_SEGMENTS` (64) resident segments while the heaps hold few, the segments
//! given back past that purged at once rather than at the pool's next decay pass, at most
//! `POOL_PURGE_PER_GIVE_BACK` (8) in one `free`; the shared
//! pool holds at most `MEDIUM_POOL_BYTES` (64 MiB) of medium runs while the heaps hold little,
//! the runs past that sent home. Its own test binary (its own process), so the pools hold only
//! what these tests give back; the tests take turns.

use hakozuna::Hakozuna;
use std::alloc::{GlobalAlloc, Layout};
use std::sync::{mpsc, Mutex};
use std::thread;

/// The tests share the pools and their figures: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

#[global_allocator]
static A: Hakozuna = Hakozuna;

/// A medium class: its runs go back to their segments once the heap's central list holds
/// 16 MiB of them (`MEDIUM_CENTRAL_BYTES`), and a segment whose runs are all back joins the
/// pool resident.
const SIZE: usize = 32 << 10;
/// Bytes allocated and freed: far more than the cap plus what the bin and central list keep.
const BYTES: usize = 256 << 20;
/// `config::POOL_RESIDENT_SEGMENTS` segments of 1 MiB (the cap while the heaps hold fewer
/// than four times as many).
const CAP: u64 = 64 << 20;
/// `config::POOL_PURGE_PER_GIVE_BACK` segments of 1 MiB: what one `free` may purge.
const PER_FREE: u64 = 8 << 20;

#[test]
fn segment_pool_keeps_at_most_its_cap_resident() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let layout = Layout::from_size_align(SIZE, 8).unwrap();
    let mut blocks = Vec::with_capacity(BYTES / SIZE);
    for i in 0..BYTES / SIZE {
        // SAFETY: a non-zero size.
        let p = unsafe { A.alloc(layout) };
        assert!(!p.is_null());
        // SAFETY: `p` holds `SIZE` bytes: one write per page makes them resident.
        for off in (0..SIZE).step_by(4096) {
            unsafe { p.add(off).write(i as u8) };
        }
        blocks.push(p);
    }
    let during = hakozuna::stats();
    // The most one `free` purged from the pool (it purges only when a segment it empties
    // takes the pool past its cap; nothing else runs in this process meanwhile).
    let mut purged = during.pooled_purged_bytes;
    let mut most = 0;
    for p in blocks {
        // SAFETY: allocated above with this layout, freed once.
        unsafe { A.dealloc(p, layout) };
        let now = hakozuna::stats().pooled_purged_bytes;
        most = most.max(now.saturating_sub(purged));
        purged = now;
    }
    let s = hakozuna::stats();
    eprintln!(
        "pool: {} resident / {} purged bytes after freeing {} MiB ({} in use before); \
         one free purged at most {most} bytes",
        s.pooled_resident_bytes,
        s.pooled_purged_bytes,
        BYTES >> 20,
        during.in_use_bytes
    );
    assert!(
        most <= PER_FREE,
        "one free purged {most} bytes of pooled segments, more than {PER_FREE}"
    );
    assert!(
        s.pooled_resident_bytes + s.pooled_purged_bytes >= (BYTES / 2) as u64,
        "the freed runs did not empty their segments into the pool"
    );
    assert!(
        s.pooled_resident_bytes <= CAP,
        "the segment pool holds {} resident bytes, past its cap of {CAP}",
        s.pooled_resident_bytes
    );
}

/// Twelve medium classes (20–64 KiB): the shared pool's slots alone would take up to about
/// 16 MiB of each.
const MEDIUM_SIZES: [usize; 12] = [
    20_000, 24_000, 28_000, 32_000, 36_000, 40_000, 44_000, 48_000, 52_000, 56_000, 60_000, 64_000,
];
/// Bytes of each size thread A allocates (120 MiB in all: a quarter of it, what the budget
/// grows to with the heaps' memory, stays below 64 MiB).
const PER_SIZE: usize = 10 << 20;
/// `config::MEDIUM_POOL_BYTES`.
const MEDIUM_BUDGET: u64 = 64 << 20;

/// Thread A allocates runs of twelve medium classes and hands them to thread B, which allocates
/// each class once (so the classes are in demand there and its bins shed the adopted runs into
/// its central list, which parks them in the shared pool past one bin limit) and frees them
/// all, while A stays alive.
#[test]
fn shared_pool_keeps_at_most_its_medium_budget() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (runs_tx, runs_rx) = mpsc::channel::<Vec<(usize, usize)>>();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let a = thread::spawn(move || {
        let mut runs = Vec::new();
        for &size in &MEDIUM_SIZES {
            let layout = Layout::from_size_align(size, 8).unwrap();
            for _ in 0..PER_SIZE / size {
                // SAFETY: a non-zero size.
                let p = unsafe { A.alloc(layout) };
                assert!(!p.is_null());
                // SAFETY: `p` holds `size` bytes.
                unsafe { p.write(1) };
                runs.push((p as usize, size));
            }
        }
        runs_tx.send(runs).unwrap();
        done_rx.recv().unwrap();
    });
    let runs = runs_rx.recv().unwrap();
    let parked = thread::spawn(move || {
        for &size in &MEDIUM_SIZES {
            let layout = Layout::from_size_align(size, 8).unwrap();
            // SAFETY: a non-zero size; freed at once.
            unsafe { A.dealloc(A.alloc(layout), layout) };
        }
        for (p, size) in runs {
            // SAFETY: allocated by thread A with this layout, freed once.
            unsafe { A.dealloc(p as *mut u8, Layout::from_size_align(size, 8).unwrap()) };
        }
        hakozuna::stats()
    })
    .join()
    .unwrap();
    done_tx.send(()).unwrap();
    a.join().unwrap();
    eprintln!(
        "shared pool: {} bytes of medium runs after freeing {} MiB ({} in runs)",
        parked.shared_pool_medium_bytes,
        (PER_SIZE * MEDIUM_SIZES.len()) >> 20,
        parked.run_bytes
    );
    if parked.events_counted && parked.events.medium_pool_parks == 0 {
        // A build without the shared pool for medium runs (`medium-adopt` with `shared-pool`).
        assert_eq!(parked.shared_pool_medium_bytes, 0);
    }
    assert!(
        parked.shared_pool_medium_bytes <= MEDIUM_BUDGET,
        "the shared pool holds {} bytes of medium runs, past its budget of {MEDIUM_BUDGET}",
        parked.shared_pool_medium_bytes
    );
}
