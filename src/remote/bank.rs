//! The fast lane's dense remote bank: a thread-local list per (destination heap, bin) for the
//! first [`BANK_HEAPS`] heaps, so a remote free is a plain push with no atomics. A list goes to
//! its owner when it holds [`BANK_LIST_FLUSH`] objects and the next free to it arrives, on a
//! budgeted round-robin flush, and at thread exit. A bitmap of the non-empty lists keeps a
//! flush from scanning empty ones (a scan of every list at each refill was three quarters of
//! larson's instructions). Frees for heaps beyond the bank's width are dispatched directly by
//! the caller (one CAS), never refused.
//!
//! A list's slot is found from the page tag alone: slots are [`SLOT`] bytes, the width of a
//! thread-cache bin, so the tag's bin field is already the slot's byte offset (plus one slot)
//! and its owner field the row number (plus one row); both offsets fold into the address's
//! displacement.

use crate::config::{self, BANK_HEAPS, BANK_LIST_FLUSH};
use crate::ds::list::{set_next, Chain};
use crate::page::page_tag::{self, OWNER_SHIFT};
use crate::page::size_class::{NUM_BINS, STEP_BINS};
use crate::remote::{Push, Sink};

/// Bins a row holds: every class the thread cache buffers (`front::tcache::buffered`), the
/// 16-byte-step ones when `medium-adopt` keeps the medium frees, else all.
const BINS: usize = if config::MEDIUM_ADOPT {
    STEP_BINS
} else {
    NUM_BINS
};
/// Bitmap words per destination heap.
const WORDS: usize = BINS.div_ceil(64);
/// Bytes of a slot: `page_tag::field(bin)` is `(bin + 1) * SLOT`.
const SLOT: usize = 1 << page_tag::BIN_SHIFT;
/// Bytes of a row (one destination heap).
const ROW: usize = BINS * SLOT;

/// A list padded to [`SLOT`] bytes.
#[derive(Clone, Copy)]
#[repr(C)]
struct Slot(Chain, [u8; SLOT - core::mem::size_of::<Chain>()]);

const _: () = assert!(core::mem::size_of::<Slot>() == SLOT);

/// All-zero is a valid empty bank.
#[repr(C)]
pub struct RemoteBank {
    lists: [[Slot; BINS]; BANK_HEAPS],
    /// Bit `bin % 64` of word `bin / 64` of row `dst`: list `(dst, bin)` holds objects.
    nonempty: [[u64; WORDS]; BANK_HEAPS],
    /// Lists holding objects (a cheap hint that makes empty flushes free).
    pending: u32,
    /// Round-robin flush position over the `BANK_HEAPS * WORDS` bitmap words.
    cursor: u32,
}

impl RemoteBank {
    /// Whether the heap a nonzero page tag names has lists here (ids below [`BANK_HEAPS`]):
    /// one compare.
    #[inline(always)]
    pub fn covers_tag(tag: u32) -> bool {
        tag < page_tag::owner_base(BANK_HEAPS as u32)
    }

    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.pending == 0
    }

    /// Lists hand themselves over when long enough, so the bank is never full.
    #[inline(always)]
    pub fn is_full(&self) -> bool {
        false
    }

    /// Buffers a free for a heap the bank covers ([`covers_tag`](Self::covers_tag)). A list
    /// that already holds [`BANK_LIST_FLUSH`] objects is handed back, for the caller to give to
    /// its owner, and the object starts the list's next chain. Never [`Push::NoEntry`].
    ///
    /// # Safety
    /// `p` is a free object of the heap and bin the nonzero page tag `tag` encodes, now owned
    /// by the bank; `covers_tag(tag)`, and the bin is one the thread cache buffers (below
    /// [`BINS`]).
    #[inline(always)]
    #[must_use]
    pub unsafe fn push(&mut self, tag: u32, p: *mut u8) -> Push {
        debug_assert!(Self::covers_tag(tag) && page_tag::decode(tag).is_some());
        debug_assert!(page_tag::bin_of(tag) < BINS);
        // `tag` is `(dst + 1) << OWNER_SHIFT | (bin + 1) * SLOT` with `dst < BANK_HEAPS` and
        // `bin < BINS` (caller contract), so this is `dst * ROW + bin * SLOT`, in bounds.
        let off = (tag >> OWNER_SHIFT) as usize * ROW + page_tag::slot(tag) - (ROW + SLOT);
        // SAFETY: `off` is the byte offset of slot `(dst, bin)` in `lists` (just said), a
        // `Slot` (rows and slots are multiples of its alignment); `&mut self` makes it ours.
        let l = unsafe { &mut (*(self.lists.as_mut_ptr() as *mut u8).add(off).cast::<Slot>()).0 };
        // One unsigned compare finds both an empty list and a full one.
        if l.n.wrapping_sub(1) < BANK_LIST_FLUSH - 1 {
            // SAFETY: `p` is a free object now owned by the bank (caller contract).
            unsafe { set_next(p, l.head) };
            l.head = p;
            l.n += 1;
            return Push::Done;
        }
        // SAFETY: `p` is a free object now owned by the bank (caller contract).
        unsafe { set_next(p, core::ptr::null_mut()) };
        let fresh = Chain {
            head: p,
            tail: p,
            n: 1,
        };
        if l.n == 0 {
            *l = fresh;
            // SAFETY: `tag` is as for this function (caller contract).
            unsafe { self.mark_started(tag) };
            return Push::Done;
        }
        // A full list goes over as the next object starts its successor, so the list stays
        // non-empty and its bitmap bit set.
        Push::Send(core::mem::replace(l, fresh))
    }

    /// Counts the list of `tag` that a push just started and sets its bitmap bit. Out of line
    /// so that the common push keeps its arguments where `free` passes them.
    ///
    /// # Safety
    /// `tag` is as for [`push`](Self::push).
    #[cold]
    #[inline(never)]
    unsafe fn mark_started(&mut self, tag: u32) {
        self.pending += 1;
        let (dst, bin) = page_tag::split(tag);
        // SAFETY: `dst < BANK_HEAPS` and `bin < BINS` (caller contract); no bounds check
        // (which would leave a panic path in `free`).
        unsafe { core::hint::assert_unchecked((dst as usize) < BANK_HEAPS && bin < BINS) };
        self.nonempty[dst as usize][bin / 64] |= 1 << (bin % 64);
    }

    /// [`push`](Self::push) (the ring's signature; not reached, since `push` takes every free).
    ///
    /// # Safety
    /// As for `push`.
    #[inline]
    #[must_use]
    pub unsafe fn push_new(&mut self, tag: u32, p: *mut u8) -> Push {
        // SAFETY: as for `push` (caller contract).
        unsafe { self.push(tag, p) }
    }

    /// Hands over up to `budget` non-empty lists, round-robin over the bitmap; returns the
    /// objects handed over.
    ///
    /// # Safety
    /// As for [`push`](Self::push): the bank owns every buffered object.
    pub unsafe fn flush(&mut self, budget: u32, sink: &mut impl Sink) -> u32 {
        const TOTAL: usize = BANK_HEAPS * WORDS;
        let mut left = budget;
        let mut sent = 0;
        for _ in 0..TOTAL {
            if self.pending == 0 || left == 0 {
                break;
            }
            let w = self.cursor as usize % TOTAL;
            let (dst, word) = (w / WORDS, w % WORDS);
            let mut bits = self.nonempty[dst][word];
            while bits != 0 && left > 0 {
                let bin = word * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let c = core::mem::replace(&mut self.lists[dst][bin].0, Chain::EMPTY);
                self.pending -= 1;
                left -= 1;
                sent += c.n;
                sink.send(dst as u32, bin, c);
            }
            self.nonempty[dst][word] = bits;
            if bits == 0 {
                self.cursor = ((w + 1) % TOTAL) as u32;
            }
        }
        sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ds::list::tests::{collect, objects};
    extern crate std;
    use std::boxed::Box;
    use std::vec::Vec;

    struct Rec(Vec<(u32, usize, usize)>);
    impl Sink for Rec {
        fn send(&mut self, dst: u32, bin: usize, c: Chain) {
            // SAFETY: the bank hands over null-terminated chains of test objects.
            let v = unsafe { collect(c.head) };
            assert_eq!(v.len() as u32, c.n);
            assert_eq!(*v.last().unwrap(), c.tail);
            self.0.push((dst, bin, v.len()));
        }
    }

    #[test]
    fn push_threshold_and_full_flush() {
        // SAFETY: all-zero is the documented empty state.
        let mut b: Box<RemoteBank> = unsafe { Box::new(core::mem::zeroed()) };
        let o = objects(1000);
        let mut rec = Rec(Vec::new());
        for (i, &p) in o.iter().enumerate() {
            let (dst, bin) = ((i % BANK_HEAPS) as u32, i % 3);
            // SAFETY: each `p` is a distinct unused object from `objects`.
            if let Push::Send(c) = unsafe { b.push(page_tag::encode(dst, bin), p) } {
                rec.send(dst, bin, c);
            }
        }
        assert!(rec.0.iter().all(|&(_, _, n)| n == BANK_LIST_FLUSH as usize));
        assert!(!b.is_empty());
        // SAFETY: the bank owns every buffered object.
        unsafe { b.flush(u32::MAX, &mut rec) };
        assert!(b.is_empty());
        let n: usize = rec.0.iter().map(|x| x.2).sum();
        assert_eq!(n, 1000);
        let last = BANK_HEAPS as u32 - 1;
        assert!(RemoteBank::covers_tag(page_tag::encode(last, NUM_BINS - 1)));
        assert!(!RemoteBank::covers_tag(page_tag::encode(last + 1, 0)));
    }

    #[test]
    fn budget_counts_lists_and_resumes() {
        // SAFETY: all-zero is the documented empty state.
        let mut b: Box<RemoteBank> = unsafe { Box::new(core::mem::zeroed()) };
        let o = objects(2 * BINS);
        let mut rec = Rec(Vec::new());
        // Every bin of heaps 1 and 6 (the highest bins too), one object each.
        for (i, &p) in o.iter().enumerate() {
            let dst = if i < BINS { 1 } else { 6 };
            // SAFETY: each `p` is a distinct unused object from `objects`.
            let tag = page_tag::encode(dst, i % BINS);
            assert!(matches!(unsafe { b.push(tag, p) }, Push::Done));
        }
        assert!(rec.0.is_empty());
        // SAFETY: the bank owns every buffered object.
        assert_eq!(unsafe { b.flush(5, &mut rec) }, 5);
        assert_eq!(rec.0.len(), 5);
        let mut flushed = 5;
        while !b.is_empty() {
            // SAFETY: as above.
            flushed += unsafe { b.flush(7, &mut rec) } as usize;
        }
        assert_eq!(flushed, 2 * BINS);
        let mut lists: Vec<(u32, usize)> = rec.0.iter().map(|x| (x.0, x.1)).collect();
        lists.sort();
        lists.dedup();
        assert_eq!(lists.len(), 2 * BINS, "every list exactly once");
        // SAFETY: the bank is empty.
        assert_eq!(unsafe { b.flush(u32::MAX, &mut rec) }, 0);
    }
}
