//! Free objects held by page (design.md §5, "Round trips larger than the bins"): a set of free
//! small objects kept as one bit per object in a bitmap per 4 KiB page, not linked, and handed
//! out a page at a time. A thread whose round trips are larger than its bins (a tree of 12 MiB
//! built and freed again and again) sends what its bins shed here instead of to the heap's
//! central list: there the blocks waited in free order and came back scattered over thousands
//! of pages, so every malloc and every read of a node missed, and sorting that list afterwards
//! cost a cache miss per object in its walk
//! ([ab.md](../../docs/ab.md#round-trips-larger-than-the-bins-objects-held-by-page-issue-18)).
//! Here an object is filed while it is still warm from its free (the shed has just walked it),
//! and a refill takes a page's objects in address order and links only those, which the
//! thread's next mallocs touch anyway: mimalloc's per-page free lists give it the same
//! locality.
//!
//! One table per thread cache (metadata memory, never `malloc`), shared by the classes that
//! use it: an open-addressed table of pages, each slot with its bitmap, its class and its place
//! in the class's stack of pages that hold objects. Slots are not deleted one by one: a page
//! whose objects are all taken stays in the table, empty, until the whole table is empty and
//! is cleared at once; a set that would need more than [`MAX_PAGES`] slots refuses the rest.

use crate::config::PAGE_SHIFT;
use crate::ds::list::{next, set_next, LocalList};
use core::ptr::null_mut;

/// Pages the table may hold (16 MiB of 4 KiB pages); objects on further pages are refused.
pub const MAX_PAGES: usize = 4096;
/// Table slots: a power of two, twice [`MAX_PAGES`], so probes stay short.
const SLOTS: usize = 8192;
/// Objects start 16-byte aligned: 256 possible starts per 4 KiB page.
const WORDS: usize = (1 << (PAGE_SHIFT - 4)) / 64;
/// No slot (the end of a class's stack).
const NONE: u16 = u16::MAX;

#[repr(C)]
#[derive(Clone, Copy)]
struct Slot {
    /// Page number (address >> PAGE_SHIFT); 0 = free slot (no object lies in page 0).
    page: usize,
    bits: [u64; WORDS],
    /// The class (bin) of the page's objects.
    bin: u16,
    /// The next slot in the class's stack of pages holding objects, or [`NONE`].
    next: u16,
    /// Whether the slot is on its class's stack.
    listed: bool,
}

/// The set, for classes (bins) `0..BINS`. All-zero is a valid empty set except for the class
/// heads, which [`init`](Self::init) sets.
#[repr(C)]
pub struct PageSet<const BINS: usize> {
    slot: [Slot; SLOTS],
    /// Slots taken since the table was last cleared, in the order taken.
    used: [u16; MAX_PAGES],
    n_used: u32,
    /// Objects held, all classes together.
    total: u32,
    /// Per class: objects held, and the top of its stack of pages.
    held: [u32; BINS],
    top: [u16; BINS],
    /// The slot of the last page filed: neighbours in a shed chain often share a page.
    last: u16,
}

impl<const BINS: usize> PageSet<BINS> {
    /// Makes an all-zero set ready.
    pub fn init(&mut self) {
        self.top = [NONE; BINS];
        self.last = 0;
    }

    /// Objects of class `bin` held.
    #[inline]
    pub fn held(&self, bin: usize) -> u32 {
        self.held[bin]
    }

    /// Files the first `n` objects of the list at `head`, free objects of small class `bin`,
    /// and returns the rest of the list (from the first object not filed) and how many it
    /// filed: fewer than `n` when the table is full.
    ///
    /// # Safety
    /// `head` starts a well-formed list of at least `n` distinct free objects of `bin`
    /// (16-byte aligned) that the caller owns; it gives up the ones filed, and none of them is
    /// already held.
    pub unsafe fn put(&mut self, bin: usize, head: *mut u8, n: u32) -> (*mut u8, u32) {
        let mut p = head;
        let mut i = self.last as usize % SLOTS;
        // The page of slot `i` if it is on its class's stack, else 0 (no object lies in page
        // 0): a take may have emptied the last page filed and taken it off the stack since, and
        // bits set there without `find` would be on no stack, never taken again.
        let mut at = if self.slot[i].listed {
            self.slot[i].page
        } else {
            0
        };
        let mut filed = 0;
        while filed < n {
            let a = p as usize;
            let page = a >> PAGE_SHIFT;
            if at != page {
                match self.find(page, bin) {
                    Some(j) => (i, at) = (j, page),
                    None => break,
                }
            }
            debug_assert!(self.slot[i].listed && self.slot[i].bin as usize == bin);
            let s = &mut self.slot[i];
            let k = (a >> 4) % (1 << (PAGE_SHIFT - 4));
            s.bits[k / 64] |= 1 << (k % 64);
            filed += 1;
            // SAFETY: `p` is one of the first `n` objects of the caller's well-formed list.
            p = unsafe { next(p) };
        }
        self.last = i as u16;
        self.held[bin] += filed;
        self.total += filed;
        (p, filed)
    }

    /// The slot of `page` (of class `bin`), taken if new; `None` when the table is full.
    fn find(&mut self, page: usize, bin: usize) -> Option<usize> {
        let mut i = page.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (usize::BITS - SLOTS.ilog2());
        loop {
            let s = &mut self.slot[i];
            if s.page == page || s.page == 0 {
                if s.page == 0 {
                    // `>=`, not `==`, though `n_used` never passes MAX_PAGES: the compiler
                    // then knows the index below is in range, and `put` (inside `free`) keeps
                    // no bounds-check panic path; so do `% SLOTS` and `.min(MAX_PAGES)` in
                    // `take` and `clear`.
                    if self.n_used as usize >= MAX_PAGES {
                        return None;
                    }
                    s.page = page;
                    s.listed = false;
                    self.used[self.n_used as usize] = i as u16;
                    self.n_used += 1;
                }
                if !s.listed {
                    // A page whose objects were all taken may have been given back and carved
                    // again for another class.
                    s.bin = bin as u16;
                    s.listed = true;
                    s.next = self.top[bin];
                    self.top[bin] = i as u16;
                }
                debug_assert!(s.bin as usize == bin);
                return Some(i);
            }
            i = (i + 1) % SLOTS;
        }
    }

    /// Takes up to `want` objects of class `bin`, `size` bytes apart: page by page, each
    /// page's in address order, linked into a list.
    ///
    /// # Safety
    /// The objects held were given by [`put`](Self::put) and are still the caller's.
    pub unsafe fn take(&mut self, bin: usize, want: u32) -> LocalList {
        // A stand-in object before the first, so every object is linked the same way.
        let mut before = [0usize; 2];
        let first: *mut u8 = before.as_mut_ptr().cast();
        let mut last = first;
        let mut n = 0;
        while n < want && self.top[bin] != NONE {
            let i = self.top[bin] as usize % SLOTS;
            let s = &mut self.slot[i];
            let base = s.page << PAGE_SHIFT;
            for w in 0..WORDS {
                while s.bits[w] != 0 && n < want {
                    let o =
                        (base + ((w * 64 + s.bits[w].trailing_zeros() as usize) << 4)) as *mut u8;
                    s.bits[w] &= s.bits[w] - 1;
                    // SAFETY: `last` is the stand-in or an object taken here, which the
                    // caller owns.
                    unsafe { set_next(last, o) };
                    last = o;
                    n += 1;
                }
            }
            if s.bits == [0; WORDS] {
                s.listed = false;
                self.top[bin] = s.next;
            }
        }
        // SAFETY: as above.
        unsafe { set_next(last, null_mut()) };
        self.held[bin] -= n;
        self.total -= n;
        if self.total == 0 {
            self.clear();
        }
        LocalList {
            // SAFETY: the stand-in's link is the first object (or null).
            head: unsafe { next(first) },
            count: n,
        }
    }

    /// Empties the table once it holds no object, so its slots serve new pages.
    fn clear(&mut self) {
        for &i in &self.used[..(self.n_used as usize).min(MAX_PAGES)] {
            let s = &mut self.slot[i as usize % SLOTS];
            s.page = 0;
            s.listed = false;
        }
        self.n_used = 0;
        self.top = [NONE; BINS];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ds::list::tests::{collect, link};
    extern crate std;
    use std::boxed::Box;
    use std::vec::Vec;

    fn new_set() -> Box<PageSet<8>> {
        // SAFETY: all-zero is a valid set before `init`.
        let mut s: Box<PageSet<8>> = Box::new(unsafe { core::mem::zeroed() });
        s.init();
        s
    }

    /// `n` distinct 16-byte aligned objects `size` bytes apart in one leaked buffer.
    fn objects(n: usize, size: usize) -> Vec<*mut u8> {
        let buf: &'static mut [u8] = std::vec![0u8; n * size + 4096].leak();
        let base = buf.as_mut_ptr();
        let first = base.align_offset(16);
        (0..n)
            .map(|i| base.wrapping_add(first + i * size))
            .collect()
    }

    #[test]
    fn takes_back_every_object_a_page_at_a_time_in_address_order() {
        let size = 48;
        let mut objs = objects(3000, size);
        let want: std::collections::BTreeSet<usize> = objs.iter().map(|&p| p as usize).collect();
        let mut x = 12345u32;
        for i in (1..objs.len()).rev() {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            objs.swap(i, (x >> 8) as usize % (i + 1));
        }
        let mut s = new_set();
        // Filed in two chains, one class.
        let (a, b) = objs.split_at(1000);
        for part in [a, b] {
            // SAFETY: distinct 16-byte aligned test objects, not yet held.
            let (rest, filed) = unsafe { s.put(3, link(part).head, part.len() as u32) };
            assert!(rest.is_null() && filed as usize == part.len());
        }
        assert_eq!(s.held(3), 3000);
        let mut got = Vec::new();
        while s.held(3) > 0 {
            // SAFETY: the objects were filed above.
            let l = unsafe { s.take(3, 256) };
            assert!(l.count > 0 && l.count <= 256);
            // SAFETY: the list just taken.
            let v = unsafe { collect(l.head) };
            assert_eq!(v.len(), l.count as usize);
            // Within a page, ascending.
            for w in v.windows(2) {
                if (w[0] as usize) >> PAGE_SHIFT == (w[1] as usize) >> PAGE_SHIFT {
                    assert!(w[0] < w[1]);
                }
            }
            got.extend(v.iter().map(|&p| p as usize));
        }
        // Every object once; each page's objects together.
        let set: std::collections::BTreeSet<usize> = got.iter().copied().collect();
        assert_eq!(set, want);
        assert_eq!(got.len(), want.len());
        let mut pages: Vec<usize> = got.iter().map(|a| a >> PAGE_SHIFT).collect();
        pages.dedup();
        let mut distinct = pages.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(
            pages.len(),
            distinct.len(),
            "a page came back in two pieces"
        );
        // Empty again: cleared.
        assert_eq!(s.n_used, 0);
        assert!(s
            .slot
            .iter()
            .all(|sl| sl.page == 0 && sl.bits == [0; WORDS]));
    }

    #[test]
    fn a_page_emptied_by_a_take_and_filed_again_first_is_taken_again() {
        let page = 1 << PAGE_SHIFT;
        // Four objects on each of two pages, P and Q.
        let buf: &'static mut [u8] = std::vec![0u8; 3 * page].leak();
        let base = buf.as_mut_ptr();
        let first = base.align_offset(page);
        let q: Vec<*mut u8> = (0..4).map(|i| base.wrapping_add(first + i * 64)).collect();
        let p: Vec<*mut u8> = (0..4)
            .map(|i| base.wrapping_add(first + page + i * 64))
            .collect();
        let mut s = new_set();
        // Q's objects, then P's: P is filed last and tops the class's stack.
        let chain: Vec<*mut u8> = q.iter().chain(&p).copied().collect();
        // SAFETY: distinct 16-byte aligned test objects, not yet held.
        let (rest, filed) = unsafe { s.put(3, link(&chain).head, 8) };
        assert!(rest.is_null() && filed == 8);
        // A take of four empties P (Q still holds objects, so the table is not cleared).
        // SAFETY: filed above.
        let l = unsafe { s.take(3, 4) };
        // SAFETY: the list just taken.
        assert_eq!(unsafe { collect(l.head) }, p);
        // P's objects come back, first in the next chain filed: they must be taken again.
        // SAFETY: the objects just taken, ours again, not held.
        let (rest, filed) = unsafe { s.put(3, link(&p).head, 4) };
        assert!(rest.is_null() && filed == 4);
        assert_eq!(s.held(3), 8);
        // SAFETY: filed above.
        let l = unsafe { s.take(3, u32::MAX) };
        // SAFETY: the list just taken.
        let mut got = unsafe { collect(l.head) };
        got.sort();
        let mut want = chain.clone();
        want.sort();
        assert_eq!(got, want, "objects filed on an emptied page were lost");
        assert_eq!(s.held(3), 0);
        assert_eq!(s.n_used, 0);
    }

    #[test]
    fn classes_are_kept_apart_and_a_full_table_refuses_the_rest() {
        let page = 1 << PAGE_SHIFT;
        // One object on each of MAX_PAGES + 10 pages: class 1 gets the first 10, class 2 the
        // others, of which the last 10 find no slot.
        let buf: &'static mut [u8] = std::vec![0u8; (MAX_PAGES + 11) * page].leak();
        let base = buf.as_mut_ptr();
        let first = base.align_offset(page);
        let objs: Vec<*mut u8> = (0..MAX_PAGES + 10)
            .map(|i| base.wrapping_add(first + i * page))
            .collect();
        let mut s = new_set();
        // SAFETY: distinct page-aligned test objects, not yet held.
        let (rest, filed) = unsafe { s.put(1, link(&objs[..10]).head, 10) };
        assert!(rest.is_null() && filed == 10);
        // A list longer than what is filed: the rest is returned as it was.
        // SAFETY: as above.
        let (rest, filed) = unsafe { s.put(2, link(&objs[10..]).head, MAX_PAGES as u32) };
        assert_eq!(filed as usize, MAX_PAGES - 10);
        // SAFETY: the refused objects are the caller's again.
        assert_eq!(unsafe { collect(rest) }, objs[MAX_PAGES..].to_vec());
        assert_eq!(s.held(1), 10);
        assert_eq!(s.held(2), (MAX_PAGES - 10) as u32);
        // SAFETY: filed above.
        let l = unsafe { s.take(1, 1000) };
        assert_eq!(l.count, 10);
        // SAFETY: the list just taken.
        let mut got = unsafe { collect(l.head) };
        got.sort();
        assert_eq!(got, objs[..10].to_vec());
        // SAFETY: filed above.
        let l = unsafe { s.take(2, u32::MAX) };
        assert_eq!(l.count as usize, MAX_PAGES - 10);
        assert_eq!(s.n_used, 0);
    }
}
