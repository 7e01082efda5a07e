//! The fast lane's dense remote bank: a thread-local list per (destination heap, bin) for the
//! first [`BANK_HEAPS`] heaps, so a remote free is a plain push with no atomics. A list goes to
//! its owner when it holds [`BANK_LIST_FLUSH`] objects and the next free to it arrives, on a
//! budgeted round-robin flush, and at thread exit. A bitmap of the non-empty lists keeps a
//! flush from scanning empty ones (a scan of every list at each refill was three quarters of
//! larson's instructions). Frees for heaps beyond the bank's width are dispatched directly by
//! the caller (one CAS), never refused.

use crate::config::{BANK_HEAPS, BANK_LIST_FLUSH};
use crate::ds::list::{set_next, Chain};
use crate::page::page_tag;
use crate::page::size_class::NUM_BINS;
use crate::remote::{Push, Sink};

/// Bitmap words per destination heap.
const WORDS: usize = NUM_BINS.div_ceil(64);

/// All-zero is a valid empty bank.
#[repr(C)]
pub struct RemoteBank {
    lists: [[Chain; NUM_BINS]; BANK_HEAPS],
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
    /// by the bank; `covers_tag(tag)`.
    #[inline(always)]
    #[must_use]
    pub unsafe fn push(&mut self, tag: u32, p: *mut u8) -> Push {
        debug_assert!(Self::covers_tag(tag) && page_tag::decode(tag).is_some());
        let (dst, bin) = page_tag::split(tag);
        let dst = dst as usize;
        // A nonzero tag is `page_tag::encode(dst, bin)` with `bin < NUM_BINS`, and
        // `covers_tag` bounds `dst` below `BANK_HEAPS` (caller contract): the indexing below
        // needs no checks, which would leave a panic path in `free`.
        // SAFETY: as just said, `dst < BANK_HEAPS`.
        unsafe { core::hint::assert_unchecked(dst < BANK_HEAPS && bin < NUM_BINS) };
        let l = &mut self.lists[dst][bin];
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
            self.pending += 1;
            self.nonempty[dst][bin / 64] |= 1 << (bin % 64);
            return Push::Done;
        }
        // A full list goes over as the next object starts its successor, so the list stays
        // non-empty and its bitmap bit set.
        Push::Send(core::mem::replace(l, fresh))
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
                let c = core::mem::replace(&mut self.lists[dst][bin], Chain::EMPTY);
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
        let o = objects(2 * NUM_BINS);
        let mut rec = Rec(Vec::new());
        // Every bin of heaps 1 and 6 (the highest bins too), one object each.
        for (i, &p) in o.iter().enumerate() {
            let dst = if i < NUM_BINS { 1 } else { 6 };
            // SAFETY: each `p` is a distinct unused object from `objects`.
            let tag = page_tag::encode(dst, i % NUM_BINS);
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
        assert_eq!(flushed, 2 * NUM_BINS);
        let mut lists: Vec<(u32, usize)> = rec.0.iter().map(|x| (x.0, x.1)).collect();
        lists.sort();
        lists.dedup();
        assert_eq!(lists.len(), 2 * NUM_BINS, "every list exactly once");
        // SAFETY: the bank is empty.
        assert_eq!(unsafe { b.flush(u32::MAX, &mut rec) }, 0);
    }
}
