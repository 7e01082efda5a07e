//! The fast lane's dense remote bank: a thread-local list per (destination heap, bin) for the
//! first [`BANK_HEAPS`] heaps, so a remote free is a plain push with no atomics. A list goes to
//! its owner when it reaches [`BANK_LIST_FLUSH`] objects, on a budgeted round-robin scan, and
//! at thread exit. Frees for heaps beyond the bank's width are dispatched directly by the
//! caller (one CAS), never refused.

use crate::config::{BANK_HEAPS, BANK_LIST_FLUSH, BANK_SCAN_FACTOR};
use crate::list::{set_next, Chain};
use crate::remote_ring::Sink;
use crate::size_class::NUM_BINS;

/// All-zero is a valid empty bank.
#[repr(C)]
pub struct RemoteBank {
    lists: [[Chain; NUM_BINS]; BANK_HEAPS],
    /// Lists holding objects (a cheap hint that makes empty flushes free).
    pending: u32,
    /// Round-robin scan position over `BANK_HEAPS * NUM_BINS` lists.
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

    /// Buffers a free for `dst < BANK_HEAPS`; hands the list over when it is long enough.
    ///
    /// # Safety
    /// `p` is a free object of heap `dst`, bin `bin`, now owned by the bank.
    #[inline]
    pub unsafe fn push(&mut self, dst: u32, bin: usize, p: *mut u8, sink: &mut impl Sink) {
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
        } else {
            // SAFETY: `p` is a free object now owned by the bank (caller contract).
            unsafe { set_next(p, l.head) };
            l.head = p;
            l.n += 1;
        }
        if l.n >= BANK_LIST_FLUSH {
            let c = core::mem::replace(l, Chain::EMPTY);
            self.pending -= 1;
            sink.send(dst, bin, c);
        }
    }

    /// Scans up to `budget` lists round-robin, handing over the non-empty ones.
    ///
    /// # Safety
    /// As for [`push`](Self::push): the bank owns every buffered object.
    pub unsafe fn flush(&mut self, budget: u32, sink: &mut impl Sink) -> u32 {
        let total = BANK_HEAPS * NUM_BINS;
        let budget = (budget as usize).saturating_mul(BANK_SCAN_FACTOR);
        let mut sent = 0;
        for _ in 0..budget.min(total) {
            if self.pending == 0 {
                break;
            }
            let i = self.cursor as usize % total;
            self.cursor = ((i + 1) % total) as u32;
            let l = &mut self.lists[i / NUM_BINS][i % NUM_BINS];
            if l.n > 0 {
                let c = core::mem::replace(l, Chain::EMPTY);
                self.pending -= 1;
                sent += c.n;
                sink.send((i / NUM_BINS) as u32, i % NUM_BINS, c);
            }
        }
        sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::list::tests::{collect, objects};
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
            // SAFETY: each `p` is a distinct unused object from `objects`.
            unsafe { b.push((i % BANK_HEAPS) as u32, i % 3, p, &mut rec) };
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
}
