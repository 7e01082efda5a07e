//! Address order for a free list (design.md §5, "Bins at rest"): relinks a list of free objects
//! so that it runs through memory page by page, lowest address first, as a freshly carved run
//! does. A thread bin reused LIFO over many round trips (a tree built and freed again and
//! again) hands out objects scattered over all its pages, and every pop and every read of the
//! program then misses where a sequential pass would be prefetched
//! ([ab.md](../../docs/ab.md#bins-at-rest-in-address-order-issue-18-item-3)).
//!
//! One walk of the list sets a bit per object in a per-page bitmap (a small open-addressed
//! table of pages), then one pass over the pages in address order writes the links. The table
//! is scratch memory the caller keeps (metadata memory, never `malloc`).

use crate::config::PAGE_SHIFT;
use crate::ds::list::{next, set_next};
use core::ptr::null_mut;

/// Pages a list may span; more and it is left as it is.
pub const MAX_PAGES: usize = 1024;
/// Table slots: a power of two, a quarter more than [`MAX_PAGES`] or better, so probes stay
/// short.
const SLOTS: usize = 2048;
/// Objects start 16-byte aligned: 256 possible starts per 4 KiB page.
const WORDS: usize = (1 << (PAGE_SHIFT - 4)) / 64;

/// The scratch table. All-zero is empty (no object lies in page 0), and [`sort`] leaves it
/// empty.
#[repr(C)]
pub struct Scratch {
    page: [usize; SLOTS],
    bits: [[u64; WORDS]; SLOTS],
    used: [u16; MAX_PAGES],
}

/// Relinks the list at `head` of objects `size` bytes apart in address order and returns its
/// new head and the share of its objects (÷ 256) that lay right after the object before
/// them (how much of it was in address order already), or `None`, with the list untouched, when its
/// objects lie in more than [`MAX_PAGES`] pages.
///
/// # Safety
/// `head` is a well-formed, null-terminated list of distinct free objects (16-byte aligned)
/// that the caller owns; `s` is empty (all-zero, or left by an earlier call).
pub unsafe fn sort(s: &mut Scratch, head: *mut u8, size: usize) -> Option<(*mut u8, u32)> {
    let mut used = 0;
    let (mut n, mut adjacent, mut prev) = (0usize, 0usize, 0usize);
    let mut p = head;
    // The slot of the last object's page: neighbours in a list often share a page.
    let mut i = 0;
    while !p.is_null() {
        let a = p as usize;
        adjacent += usize::from(a.wrapping_sub(prev) == size);
        n += 1;
        prev = a;
        let page = a >> PAGE_SHIFT;
        if s.page[i % SLOTS] != page {
            i = page.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (usize::BITS - SLOTS.ilog2());
            while s.page[i] != page {
                if s.page[i] == 0 {
                    // `>=`, not `==`, though `used` never passes MAX_PAGES: the compiler then
                    // knows the index below is in range, and `sort` (inside `free`) keeps no
                    // bounds-check panic path; so do `% SLOTS` and `.min(MAX_PAGES)` below.
                    if used >= MAX_PAGES {
                        clear(s, used);
                        return None;
                    }
                    s.page[i] = page;
                    s.used[used] = i as u16;
                    used += 1;
                    break;
                }
                i = (i + 1) % SLOTS;
            }
        }
        let k = (a >> 4) % (1 << (PAGE_SHIFT - 4));
        s.bits[i % SLOTS][k / 64 % WORDS] |= 1 << (k % 64);
        // SAFETY: `p` is an object of the caller's well-formed list.
        p = unsafe { next(p) };
    }
    // At most MAX_PAGES pages, by page number (no allocation: core's in-place sort; a list
    // walked from its most recently freed object usually finds them in descending order).
    let used = used.min(MAX_PAGES);
    let page = &s.page;
    s.used[..used].sort_unstable_by_key(|&i| page[i as usize % SLOTS]);
    // A stand-in object before the first, so every object is linked the same way.
    let mut before = [0usize; 2];
    let mut last: *mut u8 = before.as_mut_ptr().cast();
    for &i in &s.used[..used] {
        let i = i as usize % SLOTS;
        let base = s.page[i] << PAGE_SHIFT;
        for w in 0..WORDS {
            let mut bits = s.bits[i][w];
            while bits != 0 {
                let o = (base + ((w * 64 + bits.trailing_zeros() as usize) << 4)) as *mut u8;
                bits &= bits - 1;
                // SAFETY: `last` is the stand-in or one of the list's objects, which the
                // caller owns.
                unsafe { set_next(last, o) };
                last = o;
            }
        }
        s.bits[i] = [0; WORDS];
        s.page[i] = 0;
    }
    // SAFETY: as above; the stand-in's link is the first object.
    unsafe {
        set_next(last, null_mut());
        Some((
            next(before.as_mut_ptr().cast()),
            (adjacent * 256 / n.max(1)) as u32,
        ))
    }
}

/// Empties the first `used` slots the walk filled.
fn clear(s: &mut Scratch, used: usize) {
    for &i in s.used.iter().take(used) {
        let i = i as usize % SLOTS;
        s.page[i] = 0;
        s.bits[i] = [0; WORDS];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ds::list::tests::{collect, link};
    extern crate std;
    use std::boxed::Box;
    use std::vec::Vec;

    #[repr(align(16))]
    struct Obj([u64; 2]);

    #[test]
    fn sorts_a_shuffled_list_and_keeps_every_object() {
        // Over several pages: 500 objects of 16 bytes, every third one in the list.
        let buf: &'static mut [Obj] = (0..1500).map(|_| Obj([0; 2])).collect::<Vec<_>>().leak();
        let mut objs: Vec<*mut u8> = buf
            .iter_mut()
            .step_by(3)
            .map(|o| o.0.as_mut_ptr().cast())
            .collect();
        let mut want = objs.clone();
        want.sort();
        // A fixed shuffle.
        let mut x = 12345u32;
        for i in (1..objs.len()).rev() {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            objs.swap(i, (x >> 8) as usize % (i + 1));
        }
        // SAFETY: all-zero is a valid, empty table.
        let mut s: Box<Scratch> = Box::new(unsafe { core::mem::zeroed() });
        // SAFETY: a list of distinct 16-byte aligned test objects.
        let c = unsafe { link(&objs) };
        let (h, ordered) = unsafe { sort(&mut s, c.head, 48) }.unwrap();
        assert!(ordered < 16, "a shuffled list looked in order: {ordered}");
        // SAFETY: the relinked list.
        let got = unsafe { collect(h) };
        assert_eq!(got, want);
        assert!(s.page.iter().all(|&p| p == 0) && s.bits.iter().all(|b| *b == [0; WORDS]));
        // Sorted, every object but the first follows its neighbour.
        // SAFETY: the relinked list.
        let (h2, ordered) = unsafe { sort(&mut s, h, 48) }.unwrap();
        assert_eq!(h2, want[0]);
        assert!(
            ordered > 250,
            "a sorted list looked out of order: {ordered}"
        );
    }

    #[test]
    fn a_list_over_too_many_pages_is_left_as_it_is() {
        // One object in each of MAX_PAGES + 1 pages, in descending address order.
        let page = 1 << PAGE_SHIFT;
        let buf: &'static mut [u8] = std::vec![0u8; (MAX_PAGES + 2) * page].leak();
        let base = buf.as_mut_ptr();
        let first = base.align_offset(page);
        let mut objs: Vec<*mut u8> = (0..=MAX_PAGES)
            .map(|i| base.wrapping_add(first + i * page))
            .collect();
        objs.reverse();
        // SAFETY: all-zero is a valid, empty table.
        let mut s: Box<Scratch> = Box::new(unsafe { core::mem::zeroed() });
        // SAFETY: a list of distinct page-aligned test objects of 16 bytes or more.
        let c = unsafe { link(&objs) };
        // SAFETY: that list, and the table is empty.
        assert!(unsafe { sort(&mut s, c.head, 16) }.is_none());
        // SAFETY: the list, untouched.
        assert_eq!(unsafe { collect(c.head) }, objs);
        assert!(s.page.iter().all(|&p| p == 0) && s.bits.iter().all(|b| *b == [0; WORDS]));
        // The table is usable again: the list less its first page fits.
        // SAFETY: the same list from its second object, and the table was left empty.
        let (h, _) = unsafe { sort(&mut s, objs[1], 16) }.unwrap();
        let mut want = objs[1..].to_vec();
        want.sort();
        // SAFETY: the relinked list.
        assert_eq!(unsafe { collect(h) }, want);
    }
}
