//! What a thread bin keeps when it overflows (design.md §5): a small class's bin keeps its most
//! recent frees (still in cache, and handed out first by the LIFO pops) and sheds the older
//! rest. Alone in its binary so that no other test's thread shares the process's heaps.

use hakozuna::Hakozuna;
use std::alloc::{GlobalAlloc, Layout};

#[global_allocator]
static A: Hakozuna = Hakozuna;

/// Blocks allocated, then freed in allocation order: more than a bin limit (256 for this
/// class) and less than two.
const N: usize = 300;
/// Objects an overflowing bin keeps (`SMALL_OVERFLOW_KEEP`).
const KEEP: usize = 32;

#[test]
fn an_overflowing_bin_keeps_its_most_recent_frees() {
    let got = std::thread::spawn(|| {
        let layout = Layout::from_size_align(224, 16).unwrap();
        let mut blocks = Vec::with_capacity(N);
        for _ in 0..N {
            // SAFETY: a non-zero-sized layout.
            let p = unsafe { A.alloc(layout) };
            assert!(!p.is_null());
            blocks.push(p);
        }
        let before = hakozuna::stats().events.bin_overflows;
        for &p in &blocks {
            // SAFETY: allocated above with `layout`, freed once.
            unsafe { A.dealloc(p, layout) };
        }
        assert_eq!(
            hakozuna::stats().events.bin_overflows - before,
            1,
            "the frees overflow the bin once"
        );
        // The bin held at most a refill batch of other objects before the frees, so it
        // overflowed at the 226th free or later and kept that free and the 31 before it; the
        // 43 or more frees after stay on top.
        let want = N - (256 - KEEP) - 1;
        let mut again = Vec::with_capacity(want);
        for _ in 0..want {
            // SAFETY: a non-zero-sized layout.
            again.push(unsafe { A.alloc(layout) });
        }
        let recent: Vec<*mut u8> = blocks.iter().rev().take(want).copied().collect();
        for &p in &again {
            // SAFETY: allocated above with `layout`, freed once.
            unsafe { A.dealloc(p, layout) };
        }
        again == recent
    })
    .join()
    .unwrap();
    assert!(
        got,
        "the mallocs after the overflow return the most recent frees, newest first"
    );
}
