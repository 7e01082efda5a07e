//! Size tiers and classes (design.md §4): the mapping from request size to bin, and the
//! per-class constants (object size, page-run length, batch sizes, cache limits).
//!
//! Up to 2,048 bytes the classes are 16 bytes apart (bins `0..128`). Above that, up to
//! [`ARENA_MAX`] (256 KiB), they are geometric, four per doubling as in jemalloc and mimalloc
//! (2,560, 3,072, 3,584, 4,096, 5,120 … 229,376, 262,144), plus the medium tier's 4 KiB steps
//! where those are finer (36, 44, 52 and 60 KiB): so no request above 2 KiB gets a block more
//! than 25 % larger than itself (2,049 → 2,560, 4,097 → 5,120, 9,000 → 10,240), and none gets
//! a larger block than the 4 KiB steps gave. Anything larger is a large block with its own
//! mapping (`large`).
//!
//! How a class is served decides its bin number:
//! - *small* bins `0..SMALL_BINS` are **carved**, several objects to a page run (objects of a
//!   run never go back to their segment): the 16-byte-step classes, then the eight classes
//!   above 2 KiB that are not whole pages (2,560, 3,072, 3,584, 5,120, 6,144, 7,168, 10,240,
//!   14,336), whose runs are a whole number of objects (2,560 × 8 = five pages);
//! - *medium* bins `SMALL_BINS..NUM_BINS` are **page runs**, one object per run, given back to
//!   their segment run by run: the classes that are whole pages (4 KiB to 64 KiB in 4 KiB
//!   steps, then 80, 96, 112, 128, 160 … 256 KiB), which a run fits exactly — the medium and
//!   arena-large classes as they were before the carved ones were added.
//!
//! So bin numbers above 127 do not follow size order; `bin_of` maps a size above 2,048 through
//! a 512-entry table indexed by `(size − 1) >> 9` (every class above 2 KiB is a multiple of
//! 512 bytes).
//!
//! Alignment: a run starts on a page, so a medium object is page aligned and a carved object
//! is aligned to the largest power of two dividing its size (2,560: 512; 6,144: 2,048). A
//! request rounded up to a multiple of `align ≤ 4096` lands in a class that `align` divides
//! (the geometric classes of the doubling above 2^k are 2^(k−2) × 5, 6, 7, 8, and a multiple
//! of 2^(k−1) or 2^k there is itself a class), which is what `memalign` relies on.
//!
//! Serving large blocks up to 256 KiB from the arena is a measured deviation from design.md §4
//! (which caches them as mappings): with a mapping per block, random 64 KiB–512 KiB traffic ran
//! at 0.5 M ops/s against glibc's 2.1 M (every miss an mmap, every eviction a munmap with a
//! TLB shootdown); page runs reuse memory without system calls.

use crate::config::SMALL_REFILL_BATCH;

/// Largest class of the 16-byte steps.
pub const SMALL_MAX: usize = 2048;
/// Largest class a thread bin holds more than one object of.
pub const MEDIUM_MAX: usize = 65536;
/// Largest size served from the arena.
pub const ARENA_MAX: usize = 256 << 10;
/// Bins of the 16-byte-step classes (up to [`SMALL_MAX`]): bins `0..STEP_BINS`.
pub const STEP_BINS: usize = SMALL_MAX / 16;
const PAGE: usize = 4096;
/// Granularity of the classes above [`SMALL_MAX`]: all are multiples of 512 bytes.
const ABOVE_SHIFT: u32 = 9;

/// Whether `size` (a multiple of 512 above [`SMALL_MAX`], at most [`ARENA_MAX`]) is a class:
/// a geometric one, 2^(k−2) × 5, 6, 7 or 8 in the doubling above 2^k (four per doubling), or a
/// multiple of 4 KiB up to [`MEDIUM_MAX`] (the medium tier's 4 KiB steps, finer than four per
/// doubling above 16 KiB: 36, 44, 52 and 60 KiB).
const fn is_class_above(size: usize) -> bool {
    let k = usize::BITS - 1 - (size - 1).leading_zeros();
    size.is_multiple_of(1 << (k - 2)) || (size.is_multiple_of(PAGE) && size <= MEDIUM_MAX)
}

/// Classes above [`SMALL_MAX`], and how many of them are carved (not whole pages).
const ABOVE_COUNTS: (usize, usize) = {
    let (mut n, mut carved) = (0, 0);
    let mut size = SMALL_MAX + (1 << ABOVE_SHIFT);
    while size <= ARENA_MAX {
        if is_class_above(size) {
            n += 1;
            if !size.is_multiple_of(PAGE) {
                carved += 1;
            }
        }
        size += 1 << ABOVE_SHIFT;
    }
    (n, carved)
};

/// Carved bins: the 16-byte steps, then the classes above 2 KiB that are not whole pages.
pub const SMALL_BINS: usize = STEP_BINS + ABOVE_COUNTS.1;
/// Bins with one object per page run (medium and arena-large): the whole-page classes.
pub const MEDIUM_BINS: usize = ABOVE_COUNTS.0 - ABOVE_COUNTS.1;
pub const NUM_BINS: usize = SMALL_BINS + MEDIUM_BINS;

/// `bin_of` above [`SMALL_MAX`]: entry `i` is the bin of sizes `512·i + 1 ..= 512·(i + 1)`.
/// Carved classes are numbered from [`STEP_BINS`], whole-page ones from [`SMALL_BINS`], each
/// group in size order. Entries below `SMALL_MAX >> 9` are never read.
const ABOVE_OF: [u8; ARENA_MAX >> ABOVE_SHIFT] = {
    let mut t = [0u8; ARENA_MAX >> ABOVE_SHIFT];
    let (mut carved, mut runs) = (STEP_BINS, SMALL_BINS);
    // From the top down: each entry takes the smallest class at or above its sizes.
    let mut i = t.len();
    let mut bin = 0;
    while i > SMALL_MAX >> ABOVE_SHIFT {
        i -= 1;
        let size = (i + 1) << ABOVE_SHIFT;
        if is_class_above(size) {
            bin = if size.is_multiple_of(PAGE) {
                runs += 1;
                NUM_BINS - (runs - SMALL_BINS)
            } else {
                carved += 1;
                SMALL_BINS - (carved - STEP_BINS)
            };
        }
        t[i] = bin as u8;
    }
    t
};

/// [`ABOVE_OF`] times 16, the form [`bin16_of`] returns.
static ABOVE_OF16: [u16; ARENA_MAX >> ABOVE_SHIFT] = {
    let mut t = [0u16; ARENA_MAX >> ABOVE_SHIFT];
    let mut i = 0;
    while i < t.len() {
        t[i] = (ABOVE_OF[i] as u16) << 4;
        i += 1;
    }
    t
};

/// Object size of every bin.
const BIN_SIZE: [u32; NUM_BINS] = {
    let mut t = [0u32; NUM_BINS];
    let mut b = 0;
    while b < STEP_BINS {
        t[b] = ((b + 1) << 4) as u32;
        b += 1;
    }
    let mut i = SMALL_MAX >> ABOVE_SHIFT;
    while i < ABOVE_OF.len() {
        let size = (i + 1) << ABOVE_SHIFT;
        if is_class_above(size) {
            t[ABOVE_OF[i] as usize] = size as u32;
        }
        i += 1;
    }
    t
};

/// Object size of every small bin, for sums over the bins (`bin_size` tests its argument).
pub const SMALL_SIZES: [u32; SMALL_BINS] = {
    let mut t = [0u32; SMALL_BINS];
    let mut b = 0;
    while b < SMALL_BINS {
        t[b] = BIN_SIZE[b];
        b += 1;
    }
    t
};

/// Bin for a request of `size` bytes, `None` for 0 and for the large tier.
#[inline(always)]
pub fn bin_of(size: usize) -> Option<usize> {
    let bin = bin16_of(size)? >> 4;
    // SAFETY: every bin `bin16_of` gives is below `NUM_BINS` (`(s & !15) >> 4` for `s <
    // SMALL_MAX`, else an entry of `ABOVE_OF`: both checked at compile time below). Stated so
    // that indexing by it leaves no panic path.
    unsafe { core::hint::assert_unchecked(bin < NUM_BINS) };
    Some(bin)
}

const _: () = {
    assert!((SMALL_MAX - 1) >> 4 < NUM_BINS);
    let mut i = 0;
    while i < ABOVE_OF.len() {
        assert!((ABOVE_OF[i] as usize) < NUM_BINS);
        i += 1;
    }
};

/// 16 × [`bin_of`]: the malloc fast path's form, which up to 2 KiB is `(size − 1)` with its
/// low four bits cleared (one `and`; the thread cache addresses bins by it, design.md §5).
/// Two compares, and that `and` or one table load. The sizes above 2 KiB are laid out of the
/// small sizes' way, so the small path runs straight through.
#[inline(always)]
pub fn bin16_of(size: usize) -> Option<usize> {
    let s = size.wrapping_sub(1);
    if s < SMALL_MAX {
        Some(s & !15)
    } else if s < ARENA_MAX {
        core::hint::cold_path();
        Some(ABOVE_OF16[s >> ABOVE_SHIFT] as usize)
    } else {
        core::hint::cold_path();
        None
    }
}

/// Whether `bin` is carved several objects to a run (not one object per page run).
#[inline]
pub const fn is_small(bin: usize) -> bool {
    bin < SMALL_BINS
}

/// Whether a remote free of `bin` goes straight to its owner's stash instead of waiting in
/// the freeing thread's remote ring or bank: the carved classes above 2 KiB. Their objects are
/// few and large, so a ring chain of one (owner, class) fills slowly, and a thread that mostly
/// frees (a queue's consumer) flushes its ring rarely: buffered, they sat there while their
/// owners carved new runs (`tests/py/queue_rss.py`: 133 MiB peak against 118 MiB before these
/// classes existed, 119 MiB sent straight). The page-run classes they split sent their runs
/// home directly too (`medium-adopt`), one push per run.
#[inline(always)]
pub const fn sent_unbuffered(bin: usize) -> bool {
    bin.wrapping_sub(STEP_BINS) < SMALL_BINS - STEP_BINS
}

/// Object size of a bin (0 for no bin: the test replaces an index check, whose panic path
/// would sit inside `malloc` and `free`, at the same cost).
#[inline]
pub const fn bin_size(bin: usize) -> usize {
    if bin < STEP_BINS {
        (bin + 1) << 4
    } else if bin < NUM_BINS {
        BIN_SIZE[bin] as usize
    } else {
        0
    }
}

/// Pages in one run of a bin: medium = the object; small = see [`small_run_pages`] (0 for no
/// bin, as in [`bin_size`]).
pub const fn run_pages(bin: usize) -> usize {
    if bin < NUM_BINS {
        RUN_PAGES[bin] as usize
    } else {
        0
    }
}

/// Run length of a carved class. Up to 2 KiB: the shortest run of 1, 2, 4 or 8 pages whose
/// tail waste is under 1/8 (hz3 always used one page, wasting up to half of it). Above: the
/// shortest run with at least two objects and a tail under 1/32, which for these classes is
/// the exact fit (2,560: 5 pages, 8 objects; 14,336: 7 pages, 2 objects).
const fn small_run_pages(size: usize) -> usize {
    if size > SMALL_MAX {
        let mut pages = 1;
        loop {
            let bytes = pages * PAGE;
            if bytes / size >= 2 && (bytes % size) * 32 < bytes {
                return pages;
            }
            pages += 1;
        }
    }
    let mut pages = 1;
    while pages < 8 {
        let bytes = pages * PAGE;
        if (bytes % size) * 8 < bytes {
            break;
        }
        pages *= 2;
    }
    pages
}

const RUN_PAGES: [u8; NUM_BINS] = {
    let mut t = [0u8; NUM_BINS];
    let mut b = 0;
    while b < NUM_BINS {
        let pages = if b < SMALL_BINS {
            small_run_pages(bin_size(b))
        } else {
            bin_size(b) / PAGE
        };
        assert!(pages <= u8::MAX as usize);
        t[b] = pages as u8;
        b += 1;
    }
    t
};

/// The hardened lane's start-of-object test of `bin` in one multiply and one compare:
/// `(c, lim)` such that, for every `at < 2^20`, `at * c mod 2^64 < lim` exactly when an
/// object of `bin` starts `at` bytes into one of its runs (a whole number of objects in, and
/// inside the run). Lemire's divisibility test extended to the run's bounds: with `c` the
/// least multiplier above `2^64 / size` and `e = c * size − 2^64` (`0 < e <= size`), an
/// offset `q * size` maps to `q * e`, which grows with `q`, and any other offset to at least
/// `c > 2^46`, far above `lim` (at most a run's bytes).
pub const fn start_test(bin: usize) -> (u64, u64) {
    let size = bin_size(bin) as u64;
    let mut c = u64::MAX / size + 1;
    if c.wrapping_mul(size) == 0 {
        // A power of two: `c * size` is exactly 2^64, and `e` must not be 0.
        c += 1;
    }
    let e = c.wrapping_mul(size);
    let objs = if is_small(bin) { objs_per_run(bin) } else { 1 } as u64;
    (c, (objs - 1) * e + 1)
}

/// Whether an object of `bin` starts `at` bytes into one of its runs (`at < 2^20`; see
/// [`start_test`]).
pub const fn starts_object(bin: usize, at: usize) -> bool {
    let (c, lim) = start_test(bin);
    (at as u64).wrapping_mul(c) < lim
}

/// Objects carved from one run of a small bin.
pub const fn objs_per_run(bin: usize) -> usize {
    objs_in(bin, run_pages(bin) * PAGE)
}

/// Objects of `bin` that `bytes` hold (0 for no bin). A class size is never 0, but the
/// compiler cannot see it: `checked_div` leaves the callers in `malloc` no panic path.
pub const fn objs_in(bin: usize, bytes: usize) -> usize {
    match bytes.checked_div(bin_size(bin)) {
        Some(n) => n,
        None => 0,
    }
}

/// Objects moved into a thread bin per refill: 32 up to 2 KiB *(hz3)*; above, by size, as
/// hz3's medium batches: 12 up to 4 KiB, 8 up to 8 KiB, 4 up to 20 KiB, 3 up to 40 KiB, 2 up
/// to 64 KiB, then 1.
pub const fn refill_batch(bin: usize) -> u32 {
    let size = bin_size(bin);
    if size <= SMALL_MAX {
        SMALL_REFILL_BATCH
    } else if size <= 4 << 10 {
        12
    } else if size <= 8 << 10 {
        8
    } else if size <= 20 << 10 {
        4
    } else if size <= 40 << 10 {
        3
    } else if size <= MEDIUM_MAX {
        2
    } else {
        1
    }
}

/// Thread-bin cap: beyond it a free sheds the bin to the heap's central list (`front::tcache`).
/// At least two refills (no ping-pong); otherwise ~64 KiB per bin up to 2 KiB (at most 256
/// objects) and ~256 KiB per bin above.
pub const fn bin_limit(bin: usize) -> u32 {
    if bin_size(bin) > MEDIUM_MAX {
        // Large classes: one cached block per thread; the heap's central list holds more.
        return 1;
    }
    let two = 2 * refill_batch(bin);
    let (bytes, max) = if bin_size(bin) > SMALL_MAX {
        (256 << 10, u32::MAX)
    } else {
        (64 << 10, 256)
    };
    let by_bytes = (bytes / bin_size(bin)) as u32;
    let l = if by_bytes > two { by_bytes } else { two };
    if l > max {
        max
    } else {
        l
    }
}

/// Bin limit of a medium or arena-large class for a thread that frees it without allocating
/// it: [`crate::config::MEDIUM_FREER_BYTES`] worth, possibly 0 (every free goes on at once).
pub const fn freer_limit(bin: usize) -> u32 {
    (crate::config::MEDIUM_FREER_BYTES / bin_size(bin)) as u32
}

/// The most a thread bin's limit grows to when the thread keeps allocating a batch and
/// freeing it (`front::tcache::overflow`): for classes up to 2 KiB, 32,768 objects (a
/// tree of 65,535 nodes over three classes, docs/ab.md) and [`crate::config::BIN_GROW_BUDGET`] bytes at most;
/// the default for the others.
pub const fn bin_limit_max(bin: usize) -> u32 {
    let l = bin_limit(bin);
    if bin_size(bin) > SMALL_MAX {
        return l;
    }
    let by_bytes = (crate::config::BIN_GROW_BUDGET / bin_size(bin)) as u32;
    let m = if by_bytes < 32768 { by_bytes } else { 32768 };
    if m < l {
        l
    } else {
        m
    }
}

/// Medium runs a heap keeps in its central list per bin (about `bytes`, at least two) before
/// the surplus goes back to the segments' page bitmaps (or, for adopted runs, to their owner).
pub const fn medium_central_cap(bin: usize, bytes: usize) -> u32 {
    let by_bytes = (bytes / bin_size(bin)) as u32;
    if by_bytes > 2 {
        by_bytes
    } else {
        2
    }
}

const _: () = assert!(ABOVE_COUNTS.0 == 32 && SMALL_BINS == 136 && NUM_BINS == 160);
const _: () = assert!(BIN_SIZE[NUM_BINS - 1] as usize == ARENA_MAX);
// The page tag and the remote ring keep `bin + 1` in 16 bits; `ABOVE_OF` in 8.
const _: () = assert!(NUM_BINS < 256);

#[cfg(test)]
mod tests {
    #[test]
    fn starts_object_matches_division() {
        for b in 0..NUM_BINS {
            let size = bin_size(b);
            let run = run_pages(b) * PAGE;
            let objs = if is_small(b) { objs_per_run(b) } else { 1 };
            let mut at = 0;
            while at < (1 << 20) {
                let want = at % size == 0 && at / size < objs;
                assert_eq!(starts_object(b, at), want, "bin {b} at {at}");
                at += if at < (2 * run).min(1 << 16) { 1 } else { 4093 };
            }
            for q in 0..=objs + 1 {
                let at = q * size;
                if at < 1 << 20 {
                    assert_eq!(starts_object(b, at), q < objs, "bin {b} object {q}");
                }
            }
        }
    }

    use super::*;
    use std::vec::Vec;

    /// The bins in size order.
    fn by_size() -> Vec<usize> {
        let mut v: Vec<usize> = (0..NUM_BINS).collect();
        v.sort_by_key(|&b| bin_size(b));
        v
    }

    #[test]
    fn bins_cover_every_size_and_fit() {
        assert_eq!(bin_of(0), None);
        assert_eq!(bin_of(ARENA_MAX + 1), None);
        assert_eq!(bin_of(usize::MAX), None);
        let order = by_size();
        let rank: Vec<usize> = {
            let mut r = std::vec![0; NUM_BINS];
            for (i, &b) in order.iter().enumerate() {
                r[b] = i;
            }
            r
        };
        for w in order.windows(2) {
            assert!(bin_size(w[0]) < bin_size(w[1]), "distinct sizes");
        }
        let mut prev = 0;
        for size in 1..=ARENA_MAX {
            let b = bin_of(size).unwrap();
            assert!(b < NUM_BINS);
            assert!(bin_size(b) >= size, "size {size} bin {b}");
            // Tightest class: the next smaller class is too small.
            if rank[b] > 0 {
                assert!(bin_size(order[rank[b] - 1]) < size, "size {size}");
            }
            assert!(rank[b] >= prev, "monotone in size order");
            prev = rank[b];
        }
        // Every class is reached, by its own size.
        for b in 0..NUM_BINS {
            assert_eq!(bin_of(bin_size(b)), Some(b), "bin {b}");
        }
        for size in (0..=ARENA_MAX + 1).chain([usize::MAX]) {
            assert_eq!(bin16_of(size), bin_of(size).map(|b| b * 16), "size {size}");
        }
        assert_eq!(bin_of(16), Some(0));
        assert_eq!(bin_of(17), Some(1));
        assert_eq!(bin_of(2048), Some(127));
        assert_eq!(bin_of(2049), Some(128));
        assert_eq!(bin_size(128), 2560);
        assert_eq!(bin_size(bin_of(4096).unwrap()), 4096);
        assert_eq!(bin_size(bin_of(4097).unwrap()), 5120);
        assert_eq!(bin_size(bin_of(9000).unwrap()), 10240);
        assert_eq!(bin_size(bin_of(65536).unwrap()), 65536);
        assert_eq!(bin_size(NUM_BINS - 1), ARENA_MAX);
        // Carved bins are exactly the classes up to 2 KiB and those that are not whole pages;
        // the carved ones above 2 KiB are sent home unbuffered.
        for b in 0..NUM_BINS {
            assert_eq!(sent_unbuffered(b), is_small(b) && bin_size(b) > SMALL_MAX);
            assert_eq!(
                is_small(b),
                bin_size(b) <= SMALL_MAX || !bin_size(b).is_multiple_of(PAGE),
                "bin {b}"
            );
        }
    }

    #[test]
    fn usable_size_within_a_quarter_above_2_kib() {
        for n in SMALL_MAX + 1..=ARENA_MAX {
            let u = bin_size(bin_of(n).unwrap());
            // Within 25 % of the request, and under 20 % of the block wasted.
            assert!(u * 4 <= n * 5, "{n} -> {u}");
            assert!((u - n) * 5 < u, "{n} -> {u}");
        }
        // Classes at most 25 % apart from 2 KiB up.
        let order = by_size();
        for w in order.windows(2).filter(|w| bin_size(w[0]) >= SMALL_MAX) {
            assert!(bin_size(w[1]) * 4 <= bin_size(w[0]) * 5, "{w:?}");
        }
    }

    /// Every request above 2 KiB gets a block at most as large as before the carved classes:
    /// 4 KiB steps up to 64 KiB, then 80, 96, 112, 128, 160 … 256 KiB.
    #[test]
    fn never_larger_than_the_page_steps() {
        for n in SMALL_MAX + 1..=ARENA_MAX {
            let old = if n <= MEDIUM_MAX {
                n.next_multiple_of(PAGE)
            } else {
                // A quarter of the largest power of two below n.
                let base = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
                n.next_multiple_of(base / 4)
            };
            assert!(bin_size(bin_of(n).unwrap()) <= old, "{n}");
        }
    }

    #[test]
    fn small_runs_waste_little() {
        for b in 0..SMALL_BINS {
            let bytes = run_pages(b) * PAGE;
            let waste = bytes - objs_per_run(b) * bin_size(b);
            assert!(objs_per_run(b) >= 2, "bin {b}");
            if bin_size(b) <= SMALL_MAX {
                assert!(waste * 8 < bytes, "bin {b}: {waste} of {bytes}");
                assert!(run_pages(b).is_power_of_two() && run_pages(b) <= 8);
            } else {
                assert_eq!(waste, 0, "bin {b}");
                assert!(run_pages(b) <= 7, "bin {b}");
            }
        }
        for b in SMALL_BINS..NUM_BINS {
            assert_eq!(run_pages(b) * PAGE, bin_size(b), "bin {b}");
        }
        assert_eq!(run_pages(0), 1);
        assert_eq!(run_pages(127), 1);
        // 1376-byte objects waste a third of one page; four pages bring it under 1/8.
        assert_eq!(run_pages(bin_of(1376).unwrap()), 4);
        assert_eq!((run_pages(128), objs_per_run(128)), (5, 8));
    }

    /// What `memalign` relies on: a request rounded up to a multiple of `align` (up to a page)
    /// lands in a class whose objects are `align`-aligned: a page run, or a carved class whose
    /// size `align` divides (runs start on a page).
    #[test]
    fn rounded_requests_keep_their_alignment() {
        let mut align = 32;
        while align <= PAGE {
            for size in 1..=ARENA_MAX {
                let s = size.next_multiple_of(align);
                let Some(b) = bin_of(s) else {
                    assert!(s > ARENA_MAX);
                    continue;
                };
                if is_small(b) {
                    assert_eq!(bin_size(b) % align, 0, "align {align} size {size}");
                } else {
                    assert_eq!(bin_size(b) % PAGE, 0);
                }
            }
            align *= 2;
        }
    }

    /// A run holds a whole number of objects and no room for another; medium runs hold one;
    /// every run fits in a segment; the sizes between two classes map to the larger one.
    #[test]
    fn runs_and_objects_consistent() {
        let seg_pages = 1 << (crate::config::SEGMENT_SHIFT - crate::config::PAGE_SHIFT);
        for b in 0..NUM_BINS {
            let bytes = run_pages(b) * PAGE;
            assert!(run_pages(b) >= 1 && run_pages(b) <= seg_pages, "bin {b}");
            assert!(objs_per_run(b) * bin_size(b) <= bytes, "bin {b}");
            assert!((objs_per_run(b) + 1) * bin_size(b) > bytes, "bin {b}");
            if !is_small(b) {
                assert_eq!(objs_per_run(b), 1, "bin {b}");
            }
            assert!(bin_size(b).is_multiple_of(16), "bin {b}");
        }
        let order = by_size();
        for w in order.windows(2) {
            let (lo, hi) = (bin_size(w[0]), bin_size(w[1]));
            for s in [lo + 1, (lo + hi) / 2, hi] {
                assert_eq!(bin_of(s), Some(w[1]), "size {s}");
            }
        }
        assert_eq!(bin_of(1), Some(order[0]));
        assert_eq!(bin_of(ARENA_MAX), Some(order[NUM_BINS - 1]));
    }

    #[test]
    fn limits_allow_two_refills() {
        for b in 0..NUM_BINS {
            if bin_size(b) > MEDIUM_MAX {
                assert_eq!((bin_limit(b), refill_batch(b)), (1, 1));
                continue;
            }
            assert!(bin_limit(b) >= 2 * refill_batch(b));
            assert!(refill_batch(b) >= 1);
            // A thread bin holds at most 256 KiB (two refills of 12 × 4 KiB = 96 KiB aside).
            assert!(bin_limit(b) as usize * bin_size(b) <= 256 << 10, "bin {b}");
        }
    }
}
