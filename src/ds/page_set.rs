//! Free objects held by page (design.md §5, "Round trips larger than the bins"): a set of free
//! small objects kept as one bit per object in a bitmap per 4 KiB page, and handed out a page
//! at a time. A thread whose round trips are larger than its bins (a tree of 12 MiB built and
//! freed again and again) sends what its bins shed here instead of to the heap's central list:
//! there the blocks waited in free order and came back scattered over thousands of pages, so
//! every malloc and every read of a node missed, and sorting that list afterwards cost a cache
//! miss per object in its walk
//! ([ab.md](../../docs/ab.md#round-trips-larger-than-the-bins-objects-held-by-page-issue-18)).
//! Here an object is filed while it is still warm from its free (the shed has just walked it):
//! its bit is set and its link written to point at its neighbour in address order. A refill
//! then takes a page's objects in address order, and links only the last object of each run
//! of neighbours held (a page wholly held: its last object alone), so the objects it hands out
//! are first touched by the mallocs that pop them, in address order, as a fresh run's are.
//! Kept as per-page lists in free order instead, the order within a page got more scrambled
//! with every round and the mallocs' pointer chase missed on it
//! ([ab.md](../../docs/ab.md#held-by-page-links-laid-at-the-shed-issue-18)).
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
    /// Per class: objects held, the top of its stack of pages, and its object size (the
    /// distance between neighbours in its runs).
    held: [u32; BINS],
    top: [u16; BINS],
    size: [u32; BINS],
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
    /// Makes an all-zero set ready; `size(bin)` is class `bin`'s object size, the distance
    /// between neighbouring objects in its runs.
    pub fn init(&mut self, size: impl Fn(usize) -> usize) {
        self.top = [NONE; BINS];
        self.last = 0;
        for (bin, s) in self.size.iter_mut().enumerate() {
            *s = size(bin) as u32;
        }
    }

    /// Objects of class `bin` held.
    #[inline]
    pub fn held(&self, bin: usize) -> u32 {
        self.held[bin]
    }

    /// Files the first `n` objects of the list at `head`, free objects of small class `bin`,
    /// and returns the rest of the list (from the first object not filed) and how many it
    /// filed: fewer than `n` when the table is full. Each object filed is linked to the
    /// address one object size above it, which [`take`](Self::take) relies on.
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
            let size = self.size[bin % BINS] as usize;
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
                let q = unsafe { next(p) };
                // Linked ahead to its neighbour in address order, which a take then need not
                // link when it is held too (`take`); in the hardened lane this also marks it
                // free, and nothing writes a held object's words until a take hands it out.
                // SAFETY: `p` is one of the caller's free objects (at least 16 bytes), given
                // up to the set here, and its link was read above.
                unsafe { set_next(p, p.wrapping_add(size)) };
                p = q;
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
    /// order, linked into a list. `put` linked every object to its neighbour in address order,
    /// so only the last object of each run of neighbours held is linked here: a page whose
    /// objects are all held is taken without touching them but its last.
    ///
    /// # Safety
    /// The objects held were given by [`put`](Self::put) and are still the caller's.
    pub unsafe fn take(&mut self, bin: usize, want: u32) -> LocalList {
        // A stand-in object before the first, so every object is linked the same way.
        // `bin` < BINS (every caller's): stated so that no index below has a panic path.
        let bin = bin % BINS;
        let mut before = [0usize; 2];
        let first: *mut u8 = before.as_mut_ptr().cast();
        let mut last = first;
        // The address `last` links to (`put`); the stand-in's, none.
        let mut ahead: *mut u8 = null_mut();
        let size = self.size[bin] as usize;
        // Bits between neighbours (0: not a multiple of 16 bytes, no run test).
        let stride = if size.is_multiple_of(16) {
            (size >> 4) as u32
        } else {
            0
        };
        let mut n = 0;
        while n < want && self.top[bin] != NONE {
            let i = self.top[bin] as usize % SLOTS;
            let s = &mut self.slot[i];
            // The whole page when its count fits (no count test per object), else part of
            // it, and the rest stays on top.
            let whole = u32::from(s.count) <= want - n;
            let k = if whole { u32::from(s.count) } else { want - n };
            n += k;
            s.count -= k as u16;
            let base = s.page << PAGE_SHIFT;
            // SAFETY: the objects held on this page are the caller's (caller contract), and
            // `last` is the stand-in or an object this take handed out, so both writable; its
            // link points at `ahead` (`put` linked each object one size ahead, and `last` was
            // not relinked since it became `last`), or `ahead` is null for the stand-in.
            unsafe {
                if whole && (1..64).contains(&stride) {
                    link_runs(&mut s.bits, base, stride, &mut last, &mut ahead);
                } else if whole {
                    link_page::<true>(&mut s.bits, base, k, size, &mut last, &mut ahead);
                } else {
                    link_page::<false>(&mut s.bits, base, k, size, &mut last, &mut ahead);
                }
            }
            if whole {
                let below = s.next;
                self.top[bin] = below;
                if below != NONE {
                    self.slot[below as usize % SLOTS].prev = NONE;
                }
                self.remove(i);
            }
        }
        // SAFETY: as above.
        unsafe { relink(last, null_mut()) };
        self.held[bin] -= n;
        LocalList {
            // SAFETY: the stand-in's link is the first object (or null).
            head: unsafe { next(first) },
            count: n,
        }
    }
}

/// Writes the link of `p`, an object a take hands out or its stand-in (counted in the tests,
/// which check that a take writes only the ends of runs).
///
/// # Safety
/// As [`set_next`].
#[inline(always)]
unsafe fn relink(p: *mut u8, n: *mut u8) {
    #[cfg(test)]
    tests::LINKS_WRITTEN.with(|c| c.set(c.get() + 1));
    // SAFETY: caller contract.
    unsafe { set_next(p, n) };
}

/// Takes the first `k` objects of a page's bitmap (all of them when `WHOLE`: then `k` is its
/// count), in address order, clearing their bits, and links each after `*last` unless `*last`
/// already links to it (`*ahead`, its neighbour that `put` linked it to).
///
/// # Safety
/// `*last` is writable (a stand-in or an object the caller owns), and so is every object whose
/// bit is set; `*ahead` is where `*last`'s link points, or an address no object has.
#[inline(always)]
unsafe fn link_page<const WHOLE: bool>(
    bits: &mut [u64; WORDS],
    mut base: usize,
    mut k: u32,
    size: usize,
    last: &mut *mut u8,
    ahead: &mut *mut u8,
) {
    for word in bits.iter_mut() {
        let mut b = *word;
        while b != 0 && (WHOLE || k > 0) {
            let o = (base + ((b.trailing_zeros() as usize) << 4)) as *mut u8;
            b &= b - 1;
            k = k.wrapping_sub(1);
            if o != *ahead {
                // SAFETY: caller contract.
                unsafe { relink(*last, o) };
            }
            *last = o;
            *ahead = o.wrapping_add(size);
        }
        *word = b;
        base += 1 << WORD_SHIFT;
    }
}

/// Takes every object of a page's bitmap, in address order, clearing it: [`link_page`] for
/// objects `stride` bits apart (`stride` in 1..64, their size `16 × stride`), which visits only
/// the first and last object of each run of neighbours held, not the objects between.
///
/// # Safety
/// As [`link_page`].
#[inline(always)]
unsafe fn link_runs(
    bits: &mut [u64; WORDS],
    mut base: usize,
    stride: u32,
    last: &mut *mut u8,
    ahead: &mut *mut u8,
) {
    debug_assert!((1..64).contains(&stride));
    let size = (stride as usize) << 4;
    let b = *bits;
    let mut prev = 0u64;
    for w in 0..WORDS {
        let cur = b[w];
        let next_w = if w + 1 < WORDS { b[w + 1] } else { 0 };
        // Objects whose neighbour below (above) in the page is held too.
        let below = cur << stride | prev >> (64 - stride);
        let above = cur >> stride | next_w << (64 - stride);
        let (starts, ends) = (cur & !below, cur & !above);
        let mut m = starts | ends;
        while m != 0 {
            let at = m.trailing_zeros();
            m &= m - 1;
            let o = (base + ((at as usize) << 4)) as *mut u8;
            if starts >> at & 1 != 0 && o != *ahead {
                // SAFETY: caller contract.
                unsafe { relink(*last, o) };
            }
            if ends >> at & 1 != 0 {
                *last = o;
                *ahead = o.wrapping_add(size);
            }
        }
        prev = cur;
        base += 1 << WORD_SHIFT;
    }
    *bits = [0; WORDS];
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ds::list::tests::{collect, link};
    extern crate std;
    use std::boxed::Box;
    use std::vec::Vec;

    std::thread_local! {
        /// Links a take wrote on this thread ([`relink`]).
        pub static LINKS_WRITTEN: core::cell::Cell<usize> = const { core::cell::Cell::new(0) };
    }

    fn new_set() -> Box<PageSet<8>> {
        // SAFETY: all-zero is a valid set before `init`.
        let mut s: Box<PageSet<8>> = Box::new(unsafe { core::mem::zeroed() });
        s.init(|_| 48);
        s
    }

    /// `n` distinct objects `size` bytes apart in one leaked buffer, the first at a page
    /// boundary (so 16-byte aligned, and laid out on pages as a run would be).
    fn objects(n: usize, size: usize) -> Vec<*mut u8> {
        let buf: &'static mut [u8] = std::vec![0u8; n * size + (1 << PAGE_SHIFT)].leak();
        let base = buf.as_mut_ptr();
        let first = base.align_offset(1 << PAGE_SHIFT);
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
        let objs = objects(MAX_PAGES + 10, page);
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
        let objs = objects(2 * MAX_PAGES, page);
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

    /// A small LCG for the tests' shuffles and choices.
    fn rng(x: &mut u64) -> usize {
        *x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (*x >> 33) as usize
    }

    fn shuffle<T>(v: &mut [T], x: &mut u64) {
        for i in (1..v.len()).rev() {
            v.swap(i, rng(x) % (i + 1));
        }
    }

    #[test]
    fn a_take_writes_only_the_links_at_the_ends_of_runs() {
        let page = 1 << PAGE_SHIFT;
        let size = 64;
        // Three pages of 64-byte objects, all filed but one on the middle page and four on
        // the last, in a shuffled chain (a bin's order).
        let buf: &'static mut [u8] = std::vec![0u8; 4 * page].leak();
        let base = buf.as_mut_ptr();
        let first = base.align_offset(page);
        let per_page = page / size;
        let mut filed: Vec<*mut u8> = (0..3 * per_page)
            .filter(|&k| k != per_page + 5 && !(2 * per_page + 20..2 * per_page + 24).contains(&k))
            .map(|k| base.wrapping_add(first + k * size))
            .collect();
        let mut x = 99;
        shuffle(&mut filed, &mut x);
        let mut s = new_set();
        s.size = [size as u32; 8];
        // SAFETY: distinct 16-byte aligned test objects, not yet held.
        let (rest, n) = unsafe { s.put(2, link(&filed).head, filed.len() as u32) };
        assert!(rest.is_null() && n as usize == filed.len());
        LINKS_WRITTEN.with(|c| c.set(0));
        // SAFETY: filed above.
        let l = unsafe { s.take(2, u32::MAX) };
        let written = LINKS_WRITTEN.with(|c| c.get());
        // SAFETY: the list just taken.
        let v = unsafe { collect(l.head) };
        assert_eq!(v.len(), filed.len());
        assert_eq!(l.count as usize, filed.len());
        let mut sorted = v.clone();
        sorted.sort();
        filed.sort();
        assert_eq!(sorted, filed);
        // The stand-in's link, the null at the end, and one per object not followed by its
        // neighbour: three pages, two gaps, so no more than seven.
        let breaks = v
            .windows(2)
            .filter(|w| w[1] as usize != w[0] as usize + size)
            .count();
        assert_eq!(written, 2 + breaks);
        assert!(written <= 7, "{written} links written");
    }

    /// Every class of the 16-byte steps (each stride `link_runs` takes, 1 to 63 bits, across
    /// word and page boundaries, and the strides of 64 and more that `link_page` takes), in
    /// random puts and partial and whole takes against a model: each list, walked through
    /// `next` (which decodes in the hardened lane, aborting on a bad link), holds exactly the
    /// objects taken, each page's together and in address order; the counts stay exact; and
    /// in the hardened lane every object taken carries the free mark, which its put wrote
    /// (the test wipes the mark before each put) and the take left in place.
    #[test]
    fn every_step_class_gives_back_exactly_what_was_held_through_the_links_put_laid() {
        let page = 1 << PAGE_SHIFT;
        let n_pages = 6;
        let mut x = 77u64;
        for size in (16..=2048).step_by(16) {
            let bin = size / 16 % 8;
            let per_page = page / size + 1;
            let all = objects(n_pages * page / size, size);
            let mut s = new_set();
            s.size[bin] = size as u32;
            let mut outside = all.clone();
            let mut held = std::collections::BTreeSet::new();
            for round in 0..120 {
                let put = !rng(&mut x).is_multiple_of(3);
                if put && round != 119 && !outside.is_empty() {
                    shuffle(&mut outside, &mut x);
                    let k = 1 + rng(&mut x) % outside.len().min(3 * per_page);
                    let chain: Vec<*mut u8> = outside.drain(..k).collect();
                    // SAFETY: distinct 16-byte aligned test objects of this class, not held.
                    let head = unsafe { link(&chain).head };
                    for &p in &chain {
                        // SAFETY: a test object of at least 16 bytes, not held: its second
                        // word made anything but the mark.
                        unsafe { *(p as *mut usize).add(1) = !crate::sys::secret::mark() };
                    }
                    // SAFETY: as above.
                    let (rest, filed) = unsafe { s.put(bin, head, k as u32) };
                    assert!(rest.is_null() && filed as usize == k);
                    held.extend(chain.iter().map(|&p| p as usize));
                } else {
                    let want = if round == 119 {
                        u32::MAX as usize
                    } else {
                        1 + rng(&mut x) % (3 * per_page)
                    };
                    // SAFETY: the objects held were filed above.
                    let l = unsafe { s.take(bin, want as u32) };
                    // SAFETY: the list just taken.
                    let v = unsafe { collect(l.head) };
                    assert_eq!(v.len(), l.count as usize, "size {size}");
                    assert_eq!(v.len(), want.min(held.len()), "size {size}");
                    let mut pages_seen = std::collections::BTreeSet::new();
                    for (i, &p) in v.iter().enumerate() {
                        let pg = p as usize >> PAGE_SHIFT;
                        if i == 0 || v[i - 1] as usize >> PAGE_SHIFT != pg {
                            assert!(pages_seen.insert(pg), "size {size}: a page split");
                        } else {
                            assert!(v[i - 1] < p, "size {size}: out of address order");
                        }
                        assert!(held.remove(&(p as usize)), "size {size}: not held: {p:?}");
                        if crate::config::SECURE {
                            // SAFETY: a test object of at least 16 bytes.
                            assert!(unsafe { crate::ds::list::is_free(p) }, "size {size}");
                        }
                    }
                    outside.extend(v);
                }
                assert_eq!(s.held(bin) as usize, held.len(), "size {size}");
                let count: u32 = s
                    .slot
                    .iter()
                    .filter(|sl| sl.page != 0)
                    .map(|sl| {
                        let ones: u32 = sl.bits.iter().map(|w| w.count_ones()).sum();
                        assert_eq!(ones, u32::from(sl.count), "size {size}");
                        ones
                    })
                    .sum();
                assert_eq!(count as usize, held.len(), "size {size}");
            }
            assert!(held.is_empty() && s.n_used == 0, "size {size}");
        }
    }

    #[test]
    fn random_puts_and_takes_give_every_object_back_once_in_page_order() {
        let page = 1 << PAGE_SHIFT;
        let n_pages = 24;
        // Objects of each size laid out from a page-aligned buffer, crossing pages; 1024 and
        // 2048 bytes take the path without the run test.
        const SIZES: [usize; 7] = [16, 48, 64, 208, 1024, 2048, 32];
        let mut x = 5u64;
        for (round, &size) in SIZES.iter().enumerate() {
            let bin = round + 1;
            let all = objects(n_pages * page / size, size);
            let mut s = new_set();
            s.size[bin] = size as u32;
            let mut outside = all.clone();
            let mut held = std::collections::BTreeSet::new();
            for _ in 0..200 {
                if rng(&mut x).is_multiple_of(2) && !outside.is_empty() {
                    // Put a shuffled chain of some of the objects not held.
                    shuffle(&mut outside, &mut x);
                    let k = 1 + rng(&mut x) % outside.len().min(300);
                    let chain: Vec<*mut u8> = outside.drain(..k).collect();
                    // SAFETY: distinct 16-byte aligned test objects of this class, not held.
                    let (rest, filed) = unsafe { s.put(bin, link(&chain).head, k as u32) };
                    assert!(rest.is_null() && filed as usize == k);
                    held.extend(chain.iter().map(|&p| p as usize));
                } else {
                    let want = 1 + rng(&mut x) % 400;
                    // SAFETY: the objects held were filed above.
                    let l = unsafe { s.take(bin, want as u32) };
                    // SAFETY: the list just taken.
                    let v = unsafe { collect(l.head) };
                    assert_eq!(v.len(), l.count as usize);
                    assert_eq!(v.len(), want.min(held.len()));
                    for w in v.windows(2) {
                        if (w[0] as usize) >> PAGE_SHIFT == (w[1] as usize) >> PAGE_SHIFT {
                            assert!(w[0] < w[1], "size {size}: out of address order");
                        }
                    }
                    for &p in &v {
                        assert!(held.remove(&(p as usize)), "size {size}: not held: {p:?}");
                    }
                    outside.extend(v);
                }
                assert_eq!(s.held(bin) as usize, held.len());
            }
            // SAFETY: as above.
            let l = unsafe { s.take(bin, u32::MAX) };
            // SAFETY: the list just taken.
            let v = unsafe { collect(l.head) };
            let got: std::collections::BTreeSet<usize> = v.iter().map(|&p| p as usize).collect();
            assert_eq!(got.len(), v.len());
            assert_eq!(got, held, "size {size}");
            assert_eq!(s.n_used, 0);
        }
    }
}
