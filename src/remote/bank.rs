//! The fast lane's dense remote bank: a thread-local list per (destination heap, bin) for the
//! first [`BANK_HEAPS`] heaps, so a remote free is a plain push with no atomics. A list goes to
//! its owner when it reaches [`BANK_LIST_FLUSH`] objects, on a budgeted round-robin flush, and
//! at thread exit. A bitmap of the non-empty lists keeps a flush from scanning empty ones (a
//! scan of every list at each refill was three quarters of larson's instructions). Frees for
//! heaps beyond the bank's width are dispatched directly by the caller (one CAS), never
//! refused.

use crate::config::{BANK_HEAPS, BANK_LIST_FLUSH};
use crate::ds::list::{set_next, Chain};
use crate::page::size_class::NUM_BINS;
use crate::remote::Sink;

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
    #[inline(always)]
    pub fn covers(dst: u32) -> bool {
        (dst as usize) < BANK_HEAPS
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

    /// Buffers a free for `dst < BANK_HEAPS`; returns the list when it is long enough, for
    /// the caller to hand to `dst` at once. `tag` is unused (the ring's key; same signature).
    ///
    /// # Safety
    /// `p` is a free object of heap `dst`, bin `bin`, now owned by the bank.
    #[inline]
    #[must_use]
    pub unsafe fn push(&mut self, dst: u32, bin: usize, _tag: u32, p: *mut u8) -> Option<Chain> {
        let l = &mut self.lists[dst as usize][bin];
        if l.n == 0 {
            // SAFETY: `p` is a free object now owned by the bank (caller contract).
            unsafe { set_next(p, core::ptr::null_mut()) };
            *l = Chain {
                head: p,
                tail: p,
                n: 1,
            };
            self.pending += 1;
            self.nonempty[dst as usize][bin / 64] |= 1 << (bin % 64);
        } else {
            // SAFETY: `p` is a free object now owned by the bank (caller contract).
            unsafe { set_next(p, l.head) };
            l.head = p;
            l.n += 1;
        }
        if l.n >= BANK_LIST_FLUSH {
            let c = core::mem::replace(l, Chain::EMPTY);
            self.pending -= 1;
            self.nonempty[dst as usize][bin / 64] &= !(1 << (bin % 64));
            return Some(c);
        }
        None
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
            if let Some(c) = unsafe { b.push(dst, bin, 0, p) } {
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
        assert!(RemoteBank::covers(0) && !RemoteBank::covers(BANK_HEAPS as u32));
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
            assert!(unsafe { b.push(dst, i % NUM_BINS, 0, p) }.is_none());
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
