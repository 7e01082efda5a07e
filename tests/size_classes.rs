//! Size classes seen through the allocator's own entry points (this test binary runs on
//! `Hakozuna` as its global allocator): the usable size of every request from 2 KiB to the
//! large tier is within 25 % of it, and aligned allocation keeps every power-of-two alignment
//! up to a page over sizes up to 256 KiB, carved classes included.

use hakozuna::{alloc, Hakozuna};

#[global_allocator]
static A: Hakozuna = Hakozuna;

const ARENA_MAX: usize = 256 << 10;

#[test]
fn usable_size_within_a_quarter_from_2_kib_to_256_kib() {
    for n in 2049..=ARENA_MAX {
        // SAFETY: plain allocation and release of our own block.
        unsafe {
            let p = alloc::malloc(n);
            assert!(!p.is_null(), "malloc({n})");
            let u = alloc::usable_size(p);
            assert!(
                u >= n && u * 4 <= n * 5,
                "malloc_usable_size(malloc({n})) = {u}"
            );
            // The whole usable size is ours.
            p.write(1);
            p.add(u - 1).write(2);
            alloc::free(p);
        }
    }
}

/// Sizes to try: every size up to 4 KiB + 64, then a stride, plus each class boundary ±1.
fn sizes() -> Vec<usize> {
    let mut v: Vec<usize> = (1..=4160).collect();
    v.extend((4160..=ARENA_MAX).step_by(37));
    let mut c = 2048;
    while c < ARENA_MAX {
        for q in [5, 6, 7, 8] {
            let class = c / 4 * q;
            v.extend([class - 1, class, class + 1]);
        }
        c *= 2;
    }
    v.retain(|&s| s <= ARENA_MAX);
    v
}

#[test]
fn memalign_keeps_alignments_up_to_a_page() {
    let sizes = sizes();
    let mut align = 32;
    while align <= 4096 {
        // Several live blocks per class, so objects other than a run's first are checked too.
        let mut live = Vec::with_capacity(sizes.len());
        for (i, &size) in sizes.iter().enumerate() {
            // SAFETY: `align` is a power of two; the block is ours until freed below.
            unsafe {
                let p = alloc::memalign(align, size);
                assert!(!p.is_null(), "memalign({align}, {size})");
                assert_eq!(p as usize % align, 0, "memalign({align}, {size}) = {p:p}");
                let u = alloc::usable_size(p);
                assert!(u >= size, "memalign({align}, {size}): usable {u}");
                p.write(i as u8);
                p.add(size - 1).write(i as u8);
                live.push((p, i as u8, size));
            }
            if live.len() == 64 {
                release(&mut live);
            }
        }
        release(&mut live);
        align *= 2;
    }
}

fn release(live: &mut Vec<(*mut u8, u8, usize)>) {
    for (p, tag, size) in live.drain(..) {
        // SAFETY: live blocks from `memalign` above, written at both ends.
        unsafe {
            assert_eq!((p.read(), p.add(size - 1).read()), (tag, tag), "overlap");
            alloc::free(p);
        }
    }
}
