//! Medium bins of the only heap (design.md §5, `config::MEDIUM_ALONE_BINS`): while one thread
//! owns a heap, a medium bin holds four default limits, so freeing more runs of a class than a
//! default bin holds does not overflow; `malloc_trim` cuts the bin back to its default limit
//! and gives the rest back to the segments; once another thread owns a heap, the bin's next
//! overflow cuts it back to its default limit. Its own binary without the test harness, so
//! that `main` is the only thread and owns the only heap until it starts a second one.

use hakozuna::Hakozuna;
use std::alloc::{GlobalAlloc, Layout};
use std::sync::mpsc;
use std::thread;

#[global_allocator]
static A: Hakozuna = Hakozuna;

/// Runs of 32 KiB: a default bin holds 8, the only heap's 32.
const SIZE: usize = 32 << 10;
/// More than a default bin holds, less than the only heap's bin less a refill batch (3).
const N: usize = 24;

fn main() {
    if std::env::var_os(FALLBACK_CHILD).is_some() {
        return fallback_child();
    }
    let layout = Layout::from_size_align(SIZE, 16).unwrap();
    let blocks = alloc_n(layout, N);
    let before = hakozuna::stats().events;
    free_each(layout, &blocks);
    let freed = hakozuna::stats().events;
    assert_eq!(
        freed.bin_overflows, before.bin_overflows,
        "{N} frees of one medium class overflowed the only heap's bin"
    );
    // SAFETY: not called from inside an allocator call.
    unsafe { hakozuna::alloc::trim() };
    let trimmed = hakozuna::stats().events;
    // The bin keeps its default limit (8) and the rest goes back to the segments.
    let returned = trimmed.medium_runs_returned - freed.medium_runs_returned;
    assert!(
        returned >= (N - 8) as u64,
        "malloc_trim gave back {returned} of the {N} runs freed"
    );
    let after_trim = overflow_after_others_start(layout);
    let parked = pool_after_trim();
    fallback_keeps_default_limits();
    println!(
        "medium_alone: ok ({returned} runs given back by malloc_trim; {after_trim} overflows \
         once another thread owned a heap; {parked} bytes in the shared pool after the last \
         malloc_trim; the fallback cache kept its default limits)"
    );
}

/// `n` blocks of `layout` (not zero-sized), allocated in turn.
fn alloc_n(layout: Layout, n: usize) -> Vec<*mut u8> {
    (0..n)
        .map(|_| {
            // SAFETY: a non-zero-sized layout (caller contract).
            let p = unsafe { A.alloc(layout) };
            assert!(!p.is_null());
            p
        })
        .collect()
}

/// Frees each of `ps`, blocks the caller allocated with `layout` and gives up here.
fn free_each(layout: Layout, ps: &[*mut u8]) {
    for &p in ps {
        // SAFETY: allocated with `layout` and freed once (caller contract).
        unsafe { A.dealloc(p, layout) };
    }
}

/// Set in the child process [`fallback_keeps_default_limits`] runs.
const FALLBACK_CHILD: &str = "MEDIUM_ALONE_FALLBACK_CHILD";

/// The shared fallback cache serves threads without a heap of their own; its heap is not one a
/// thread owns, and its medium bins keep their default limits even while one thread owns the
/// only other heap. Runs this binary again with `HAKOZUNA_MAX_HEAPS=1`, so a second thread
/// gets no heap ([`fallback_child`]).
fn fallback_keeps_default_limits() {
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .env(FALLBACK_CHILD, "1")
        .env("HAKOZUNA_MAX_HEAPS", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "fallback child failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// With `HAKOZUNA_MAX_HEAPS=1` `main` owns the only heap, and a second thread allocates from
/// the fallback cache: 48 runs of 16 KiB, freed (they go to the fallback heap's inbox), then 16
/// more. A default bin holds 16 runs and a refill takes half a bin from central, so the 16
/// take two refills from central; at four limits one refill took 32.
fn fallback_child() {
    const M: usize = 48;
    let layout = Layout::from_size_align(16 << 10, 16).unwrap();
    let refills = thread::spawn(move || {
        free_each(layout, &alloc_n(layout, M));
        let before = hakozuna::stats().events.medium_refill_central;
        let again = alloc_n(layout, 16);
        let refills = hakozuna::stats().events.medium_refill_central - before;
        free_each(layout, &again);
        refills
    })
    .join()
    .unwrap();
    assert!(
        refills >= 2,
        "16 mallocs of the fallback cache took {refills} refill(s) from central: its bin held \
         more than half a default limit"
    );
}

/// `malloc_trim` sends every shared-pool chain home (design.md §10), also what its cut of the
/// only heap's bins sheds: `main`, alone, refills runs of 16 KiB (a default bin holds 16, the
/// only heap's 64); a second thread allocates 48 of them and exits; `main`, alone again,
/// frees them into its bin (adopted runs of a released heap, no overflow) and calls
/// `malloc_trim`, whose cut of the bin to its default limit sheds 33 runs to the central
/// list, which parks adopted runs past a bin limit in the shared pool. Returns the medium
/// bytes left in the pool.
fn pool_after_trim() -> u64 {
    const M: usize = 48;
    let layout = Layout::from_size_align(16 << 10, 16).unwrap();
    let mut blocks = alloc_n(layout, 1);
    // Addresses: raw pointers do not cross threads.
    let theirs = thread::spawn(move || {
        alloc_n(layout, M)
            .into_iter()
            .map(|p| p as usize)
            .collect::<Vec<usize>>()
    })
    .join()
    .unwrap();
    blocks.splice(0..0, theirs.into_iter().map(|p| p as *mut u8));
    let before = hakozuna::stats().events.bin_overflows;
    free_each(layout, &blocks);
    assert_eq!(
        hakozuna::stats().events.bin_overflows,
        before,
        "{M} adopted frees overflowed the only heap's bin"
    );
    // SAFETY: not called from inside an allocator call.
    unsafe { hakozuna::alloc::trim() };
    let parked = hakozuna::stats().shared_pool_medium_bytes;
    assert_eq!(
        parked, 0,
        "malloc_trim left {parked} bytes of medium runs in the shared pool"
    );
    parked
}

/// The only heap's bin fills to 24 of its 32 runs; a second thread claims a heap and waits;
/// 9 more frees overflow the bin, which, others owning heaps now, drops to its default limit
/// (8) and keeps half of it; 5 more frees overflow it again. Had it kept its 32-run limit, the
/// first overflow would have kept 16 and the 5 frees would fit. Returns the overflows counted.
fn overflow_after_others_start(layout: Layout) -> u64 {
    let blocks = alloc_n(layout, N + 14);
    let before = hakozuna::stats().events.bin_overflows;
    free_each(layout, &blocks[..N]);
    assert_eq!(
        hakozuna::stats().events.bin_overflows,
        before,
        "{N} frees overflowed the only heap's bin after a trim and new refills"
    );
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let other = thread::spawn(move || {
        // This thread's heap, owned until it exits.
        let v = std::hint::black_box(vec![1u8; 64]);
        ready_tx.send(()).unwrap();
        done_rx.recv().unwrap();
        drop(v);
    });
    ready_rx.recv().unwrap();
    free_each(layout, &blocks[N..N + 9]);
    let first = hakozuna::stats().events.bin_overflows - before;
    free_each(layout, &blocks[N + 9..]);
    let both = hakozuna::stats().events.bin_overflows - before;
    done_tx.send(()).unwrap();
    other.join().unwrap();
    assert_eq!(
        first, 1,
        "9 frees past 24 runs did not overflow the 32-run bin once"
    );
    assert_eq!(
        both, 2,
        "5 more frees did not overflow again: the bin kept the only heap's limit after \
         another thread owned a heap"
    );
    both
}
