//! Shared by the tests that check whether one heap's free objects reach another heap
//! (`shared_pool.rs`, `stash_steal.rs`, `medium_pool.rs`, `lend_tags.rs`).

use std::alloc::{GlobalAlloc, Layout};
use std::collections::HashSet;

/// Allocates `n` blocks of `layout` through `a` and writes each whole with its own pattern.
pub fn alloc_filled(a: &impl GlobalAlloc, layout: Layout, n: usize) -> Vec<usize> {
    // SAFETY: every pointer comes from `alloc` with `layout` and is written within its
    // `layout.size()` bytes; the caller frees each once.
    (0..n)
        .map(|i| unsafe {
            let p = a.alloc(layout);
            assert!(!p.is_null());
            p.write_bytes((i % 251) as u8, layout.size());
            p as usize
        })
        .collect()
}

/// Checks that no block of `ptrs` (from [`alloc_filled`], in order) was overwritten by another
/// (so none was handed out twice or overlaps another), then frees them all.
pub fn check_free(a: &impl GlobalAlloc, layout: Layout, ptrs: &[usize]) {
    for (i, &p) in ptrs.iter().enumerate() {
        // SAFETY: allocated by `alloc_filled` with `layout`, still live.
        let s = unsafe { std::slice::from_raw_parts(p as *const u8, layout.size()) };
        assert!(
            s.iter().all(|&x| x == (i % 251) as u8),
            "object {i} was overwritten"
        );
    }
    let distinct: HashSet<usize> = ptrs.iter().copied().collect();
    assert_eq!(distinct.len(), ptrs.len(), "a pointer was handed out twice");
    for &p in ptrs {
        // SAFETY: allocated with `layout`, freed once.
        unsafe { a.dealloc(p as *mut u8, layout) };
    }
}

/// [`alloc_filled`], then [`check_free`]; returns the addresses.
pub fn alloc_check_free(a: &impl GlobalAlloc, layout: Layout, n: usize) -> Vec<usize> {
    let ptrs = alloc_filled(a, layout, n);
    check_free(a, layout, &ptrs);
    ptrs
}
