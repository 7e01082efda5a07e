//! A thread's share of the budget for free small objects only it reaches (design.md §5,
//! `config::PRIVATE_BUDGET`): past it, the thread's central lists that fit one chain, then
//! whole bins, go to the shared pool, where another thread's refill finds them instead of
//! carving new ones. Alone in its binary so that no other test's thread takes from the pool.

use hakozuna::Hakozuna;
use std::alloc::{GlobalAlloc, Layout};
use std::collections::HashSet;
use std::sync::{mpsc, Arc, Barrier};

#[global_allocator]
static A: Hakozuna = Hakozuna;

/// Threads that own a heap and stay alive: with them, a thread's share is
/// 16 MiB / 34 heaps or less, under 512 KiB.
const OWNERS: usize = 32;
/// Objects freed per class: fewer than any of these classes' bin limits (64 KiB / 1,024 B), so
/// without the budget they all stay in the freeing thread's bins.
const PER_CLASS: usize = 40;
/// The class another thread asks for afterwards.
const PROBE: usize = 512;

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 16).unwrap()
}

#[test]
fn a_threads_surplus_past_its_share_serves_another_thread() {
    // The owners, the freer and this thread, which lets them go once the probe is done.
    let hold = Arc::new(Barrier::new(OWNERS + 2));
    let owners: Vec<_> = (0..OWNERS)
        .map(|_| {
            let hold = Arc::clone(&hold);
            std::thread::spawn(move || {
                // A first allocation makes the thread own a heap.
                let b = std::hint::black_box(Box::new(0u64));
                hold.wait();
                drop(b);
            })
        })
        .collect();

    let (tx, rx) = mpsc::channel::<Vec<usize>>();
    let freer_hold = Arc::clone(&hold);
    let freer = std::thread::spawn(move || {
        // 49 classes from 256 to 1,024 bytes, 40 objects each (about 1.2 MiB), all freed:
        // they stay in this thread's bins, below each bin's limit.
        let mut freed = Vec::new();
        for size in (256..=1024).step_by(16) {
            let blocks: Vec<*mut u8> = (0..PER_CLASS)
                // SAFETY: a non-zero-sized layout.
                .map(|_| unsafe { A.alloc(layout(size)) })
                .collect();
            assert!(blocks.iter().all(|p| !p.is_null()));
            for &p in &blocks {
                if size == PROBE {
                    freed.push(p as usize);
                }
                // SAFETY: allocated above with this layout, freed once.
                unsafe { A.dealloc(p, layout(size)) };
            }
        }
        // First allocations of other classes: each is a refill (a slow-path call), and every
        // 16th checks the thread's share.
        let sizes: Vec<usize> = (16..=240)
            .step_by(16)
            .chain((1040..=2048).step_by(16))
            .collect();
        let kept: Vec<*mut u8> = sizes
            .iter()
            // SAFETY: a non-zero-sized layout.
            .map(|&s| unsafe { A.alloc(layout(s)) })
            .collect();
        tx.send(freed).unwrap();
        // Stay alive (owning the heap) until the other thread has allocated.
        freer_hold.wait();
        for (&p, &s) in kept.iter().zip(&sizes) {
            // SAFETY: allocated above with this layout, freed once.
            unsafe { A.dealloc(p, layout(s)) };
        }
    });

    let freed: HashSet<usize> = rx.recv().unwrap().into_iter().collect();
    let reused = std::thread::spawn(move || {
        let got: Vec<*mut u8> = (0..PER_CLASS)
            // SAFETY: a non-zero-sized layout.
            .map(|_| unsafe { A.alloc(layout(PROBE)) })
            .collect();
        let reused = got
            .iter()
            .filter(|&&p| freed.contains(&(p as usize)))
            .count();
        for &p in &got {
            // SAFETY: allocated above with this layout, freed once.
            unsafe { A.dealloc(p, layout(PROBE)) };
        }
        reused
    })
    .join()
    .unwrap();
    hold.wait();
    freer.join().unwrap();
    for o in owners {
        o.join().unwrap();
    }
    assert!(
        reused > 0,
        "another thread's refill of {PROBE}-byte objects takes from the {PER_CLASS} the idle \
         freer holds past its share (got none of them: it carved new ones)"
    );
}
