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
//! use it: an open-addressed table of pages (linear probing), each slot with its bitmap, its
//! class and its place in the class's stack of pages that hold objects. A slot lives exactly
//! while its page holds an object: a take that empties a page deletes its slot at once
//! (backward-shift deletion, no tombstones), so the table holds the pages with objects and no
//! more, and a set that would need more than [`MAX_PAGES`] such pages refuses the rest.

use crate::config::PAGE_SHIFT;
use crate::ds::list::{next, set_next, LocalList};
use core::ptr::null_mut;

/// Pages the table may hold (16 MiB of 4 KiB pages); objects on further pages are refused.
pub const MAX_PAGES: usize = 4096;
/// Table slots: a power of two, twice [`MAX_PAGES`], so probes stay short.
const SLOTS: usize = 8192;
/// Objects start 16-byte aligned: 256 possible starts per 4 KiB page.
const WORDS: usize = (1 << (PAGE_SHIFT - 4)) / 64;
/// Address bits below an object's bitmap word: 64 starts of 16 bytes.
const WORD_SHIFT: u32 = 4 + 6;
/// No slot (the end of a class's stack).
const NONE: u16 = u16::MAX;

#[repr(C)]
#[derive(Clone, Copy)]
struct Slot {
    /// Page number (address >> PAGE_SHIFT); 0 = free slot (no object lies in page 0). A slot
    /// in use holds at least one object and is on its class's stack.
    page: usize,
    bits: [u64; WORDS],
    /// Objects held on the page: the bits set.
    count: u16,
    /// The class (bin) of the page's objects.
    bin: u16,
    /// The neighbours in the class's stack of pages (towards the bottom and the top), or
    /// [`NONE`]: a slot moved by a deletion elsewhere is relinked where it now is.
    next: u16,
    prev: u16,
}

/// The set, for classes (bins) `0..BINS`. All-zero is a valid empty set except for the class
/// heads, which [`init`](Self::init) sets.
#[repr(C)]
pub struct PageSet<const BINS: usize> {
    slot: [Slot; SLOTS],
    /// Slots in use (pages holding objects), at most [`MAX_PAGES`].
    n_used: u32,
    /// Per class: objects held, and the top of its stack of pages.
    held: [u32; BINS],
    top: [u16; BINS],
    /// The slot of the last page filed: neighbours in a shed chain often share a page. A hint
    /// only: a deletion may have freed the slot or moved another page into it.
    last: u16,
}

/// The slot where `page`'s probe starts.
#[inline(always)]
fn home(page: usize) -> usize {
    page.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (usize::BITS - SLOTS.ilog2())
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
        let mut left = n;
        let mut i = self.last as usize % SLOTS;
        while left > 0 {
            let page = p as usize >> PAGE_SHIFT;
            // A slot in use for `page` holds objects of `page`, whose class is `bin`: the
            // hint needs no class check.
            if self.slot[i].page != page {
                match self.find(page, bin) {
                    Some(j) => i = j,
                    None => break,
                }
            }
            debug_assert!(self.slot[i].bin as usize == bin);
            // The run of the chain on this page, with the slot's bitmap at hand.
            let s = &mut self.slot[i];
            let base = page << PAGE_SHIFT;
            let before = left;
            // The offset in the page, which the page test computes.
            let mut off = p as usize - base;
            loop {
                // SAFETY: `off` < the page size (so on entry, `page` being `p`'s, and tested
                // below), so its word is one of the page's `WORDS`.
                let w = unsafe { s.bits.get_unchecked_mut(off >> WORD_SHIFT) };
                *w |= 1 << ((off >> 4) % 64);
                left -= 1;
                // SAFETY: `p` is one of the first `n` objects of the caller's well-formed list.
                p = unsafe { next(p) };
                off = (p as usize).wrapping_sub(base);
                if left == 0 || off >> PAGE_SHIFT != 0 {
                    break;
                }
            }
            // At most 256 objects on a page (none held twice: caller contract).
            s.count += (before - left) as u16;
        }
        self.last = i as u16;
        let filed = n - left;
        self.held[bin] += filed;
        (p, filed)
    }

    /// The slot of `page` (of class `bin`), taken and pushed on the class's stack if new;
    /// `None` when the table is full.
    fn find(&mut self, page: usize, bin: usize) -> Option<usize> {
        let mut i = home(page);
        loop {
            let s = &self.slot[i];
            if s.page == page {
                return Some(i);
            }
            if s.page == 0 {
                // `>=`, not `==`, though `n_used` never passes MAX_PAGES; indices are taken
                // `% SLOTS` everywhere so that `put` (inside `free`) keeps no bounds-check
                // panic path.
                if self.n_used as usize >= MAX_PAGES {
                    return None;
                }
                self.n_used += 1;
                let top = self.top[bin];
                self.slot[i] = Slot {
                    page,
                    bits: [0; WORDS],
                    count: 0,
                    bin: bin as u16,
                    next: top,
                    prev: NONE,
                };
                if top != NONE {
                    self.slot[top as usize % SLOTS].prev = i as u16;
                }
                self.top[bin] = i as u16;
                return Some(i);
            }
            i = (i + 1) % SLOTS;
        }
    }

    /// Frees slot `i`, already off its class's stack: the slots after it in its probe run
    /// that may move back do (Knuth's algorithm R), relinked where they land.
    fn remove(&mut self, mut i: usize) {
        self.n_used -= 1;
        let mut j = i;
        loop {
            j = (j + 1) % SLOTS;
            let page = self.slot[j].page;
            if page == 0 {
                break;
            }
            // `j` stays when its home lies cyclically in (i, j]: a probe for it from there
            // never passes `i`.
            let h = home(page);
            let stays = if i <= j {
                i < h && h <= j
            } else {
                i < h || h <= j
            };
            if stays {
                continue;
            }
            self.slot[i] = self.slot[j];
            let s = self.slot[i];
            if s.prev == NONE {
                self.top[s.bin as usize % BINS] = i as u16;
            } else {
                self.slot[s.prev as usize % SLOTS].next = i as u16;
            }
            if s.next != NONE {
                self.slot[s.next as usize % SLOTS].prev = i as u16;
            }
            if self.last as usize == j {
                self.last = i as u16;
            }
            i = j;
        }
        self.slot[i].page = 0;
    }

    /// Takes up to `want` objects of class `bin`: page by page, each page's in address
    /// order, linked into a list.
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
            let mut base = s.page << PAGE_SHIFT;
            if u32::from(s.count) <= want - n {
                // The whole page: its count is known, no test per object.
                n += u32::from(s.count);
                for w in 0..WORDS {
                    let mut bits = s.bits[w];
                    // Two objects a turn, so `last` needs no copy.
                    while bits != 0 {
                        let o = (base + ((bits.trailing_zeros() as usize) << 4)) as *mut u8;
                        bits &= bits - 1;
                        // SAFETY: `last` is the stand-in or an object taken here, which the
                        // caller owns.
                        unsafe { set_next(last, o) };
                        if bits == 0 {
                            last = o;
                            break;
                        }
                        let o2 = (base + ((bits.trailing_zeros() as usize) << 4)) as *mut u8;
                        bits &= bits - 1;
                        // SAFETY: as above.
                        unsafe { set_next(o, o2) };
                        last = o2;
                    }
                    base += 1 << WORD_SHIFT;
                }
                let below = s.next;
                self.top[bin] = below;
                if below != NONE {
                    self.slot[below as usize % SLOTS].prev = NONE;
                }
                self.remove(i);
            } else {
                // Part of it, and the rest stays on top.
                let part = want - n;
                n = want;
                s.count -= part as u16;
                let mut k = part;
                for w in 0..WORDS {
                    let mut bits = s.bits[w];
                    while bits != 0 && k > 0 {
                        let o = (base + ((bits.trailing_zeros() as usize) << 4)) as *mut u8;
                        bits &= bits - 1;
                        // SAFETY: as above.
                        unsafe { set_next(last, o) };
                        last = o;
                        k -= 1;
                    }
                    s.bits[w] = bits;
                    base += 1 << WORD_SHIFT;
                }
            }
        }
        // SAFETY: as above.
        unsafe { set_next(last, null_mut()) };
        self.held[bin] -= n;
        LocalList {
            // SAFETY: the stand-in's link is the first object (or null).
            head: unsafe { next(first) },
            count: n,
        }
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
        // Empty again: every slot free.
        assert_eq!(s.n_used, 0);
        assert!(s.slot.iter().all(|sl| sl.page == 0));
        assert!(s.top.iter().all(|&t| t == NONE));
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
        // A take of four empties P, while Q still holds objects.
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

    #[test]
    fn pages_emptied_while_others_stay_held_free_their_slots() {
        let page = 1 << PAGE_SHIFT;
        // One object of class 2 stays held throughout; class 1 files one object on each of
        // MAX_PAGES - 1 pages, takes them all, then does the same on as many other pages.
        let buf: &'static mut [u8] = std::vec![0u8; (2 * MAX_PAGES + 1) * page].leak();
        let base = buf.as_mut_ptr();
        let first = base.align_offset(page);
        let objs: Vec<*mut u8> = (0..2 * MAX_PAGES)
            .map(|i| base.wrapping_add(first + i * page))
            .collect();
        let mut s = new_set();
        // SAFETY: distinct page-aligned test objects, not yet held.
        let (_, filed) = unsafe { s.put(2, link(&objs[..1]).head, 1) };
        assert_eq!(filed, 1);
        for round in [&objs[1..MAX_PAGES], &objs[MAX_PAGES..2 * MAX_PAGES - 1]] {
            let k = round.len() as u32;
            // SAFETY: as above; the first round's objects were all taken back.
            let (rest, filed) = unsafe { s.put(1, link(round).head, k) };
            assert!(rest.is_null(), "a page no longer held kept its slot");
            assert_eq!(filed, k);
            // SAFETY: filed above.
            let l = unsafe { s.take(1, u32::MAX) };
            assert_eq!(l.count, k);
            // SAFETY: the list just taken.
            let mut got = unsafe { collect(l.head) };
            got.sort();
            assert_eq!(got, round.to_vec());
        }
        assert_eq!(s.n_used, 1);
        // SAFETY: filed above.
        let l = unsafe { s.take(2, u32::MAX) };
        // SAFETY: the list just taken.
        assert_eq!(unsafe { collect(l.head) }, objs[..1].to_vec());
        assert_eq!(s.n_used, 0);
    }

    #[test]
    fn deletions_keep_every_page_findable_and_every_stack_linked() {
        // Many pages of three classes in a crowded table, taken in small bites so that pages
        // empty (and slots move back) while others stay: every object comes back once.
        let page = 1 << PAGE_SHIFT;
        let n_pages = MAX_PAGES;
        let buf: &'static mut [u8] = std::vec![0u8; (n_pages + 1) * page].leak();
        let base = buf.as_mut_ptr();
        let first = base.align_offset(page);
        let mut x = 7u32;
        let mut by_class: [Vec<*mut u8>; 3] = [Vec::new(), Vec::new(), Vec::new()];
        for pg in 0..n_pages {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let c = (x >> 20) as usize % 3;
            for k in 0..3 {
                by_class[c].push(base.wrapping_add(first + pg * page + k * 1024 + 16 * c));
            }
        }
        let mut s = new_set();
        for (c, objs) in by_class.iter().enumerate() {
            // SAFETY: distinct 16-byte aligned test objects, not yet held.
            let (rest, filed) = unsafe { s.put(c + 1, link(objs).head, objs.len() as u32) };
            assert!(rest.is_null() && filed as usize == objs.len());
        }
        assert_eq!(s.n_used as usize, n_pages);
        let mut got: [Vec<*mut u8>; 3] = [Vec::new(), Vec::new(), Vec::new()];
        let mut refile = true;
        while (1..4).any(|c| s.held(c) > 0) {
            for (c, g) in got.iter_mut().enumerate() {
                // SAFETY: filed above.
                let l = unsafe { s.take(c + 1, 5) };
                // SAFETY: the list just taken.
                let v = unsafe { collect(l.head) };
                if refile && !v.is_empty() {
                    // Once, file a bite back: its page is found again or taken anew.
                    refile = false;
                    // SAFETY: the objects just taken, ours again, not held.
                    let (rest, filed) = unsafe { s.put(c + 1, link(&v).head, v.len() as u32) };
                    assert!(rest.is_null() && filed as usize == v.len());
                    continue;
                }
                g.extend(v);
            }
        }
        for (c, (g, objs)) in got.iter_mut().zip(&by_class).enumerate() {
            g.sort();
            let mut want = objs.clone();
            want.sort();
            assert_eq!(*g, want, "class {c}");
        }
        assert_eq!(s.n_used, 0);
        assert!(s.slot.iter().all(|sl| sl.page == 0));
    }
}
