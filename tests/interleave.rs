//! `interleave` (front/interleave.rs): a thread yields its CPU only while more threads own
//! heaps than the process may run on CPUs, and then after each quantum of allocator-dense
//! running. Read through `hakozuna::stats().events.cpu_yields`. Its own binary without the
//! test harness, so that `main` is the only thread that owns a heap until it starts others.

use hakozuna::Hakozuna;
use std::sync::{Arc, Barrier};

#[global_allocator]
static A: Hakozuna = Hakozuna;

/// Rounds per loop. A round allocates [`BATCH`] blocks of one class and frees them all: more
/// than its bin holds, so every few dozen operations are slow-path calls (refills, overflows),
/// and a loop runs many quanta of 2^20 cycles.
const ROUNDS: usize = 2_000;
const BATCH: usize = 512;

/// Rounds of [`BATCH`] blocks, the size cycling through 32 classes of 256 B to 8 KiB.
fn churn(seed: usize) -> usize {
    let mut sum = 0;
    let mut live: Vec<Vec<u8>> = Vec::with_capacity(BATCH);
    for r in 0..ROUNDS {
        let size = 256 * (1 + (r + seed) % 32);
        for i in 0..BATCH {
            live.push(vec![i as u8; size]);
        }
        sum += live.drain(..).map(|v| v.len()).sum::<usize>();
    }
    sum
}

fn yields() -> u64 {
    hakozuna::stats().events.cpu_yields
}

fn main() {
    if !cfg!(feature = "interleave") || !cfg!(feature = "stats") {
        println!("interleave: skipped (built without the interleave or stats feature)");
        return;
    }
    // Alone: one heap owned, never more than the CPUs.
    std::hint::black_box(churn(0));
    assert_eq!(yields(), 0, "a lone thread yielded its CPU");

    // Three more threads than CPUs, all alive (and owning heaps) until every one is done.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let n = cpus + 3;
    let start = Arc::new(Barrier::new(n));
    let done = Arc::new(Barrier::new(n));
    let threads: Vec<_> = (0..n)
        .map(|t| {
            let (start, done) = (Arc::clone(&start), Arc::clone(&done));
            std::thread::spawn(move || {
                start.wait();
                let s = churn(t);
                done.wait();
                s
            })
        })
        .collect();
    for t in threads {
        std::hint::black_box(t.join().unwrap());
    }
    let y = yields();
    assert!(y > 0, "{n} threads on {cpus} CPUs never yielded");
    println!("interleave: {n} threads on {cpus} CPUs yielded {y} times; alone 0");
}
