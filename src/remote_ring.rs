//! The sparse remote ring (S41): a thread-local ring of 16-byte `(dst, bin, ptr)` entries that
//! buffers frees of other heaps' objects. Push is O(1); flushing hands the oldest entries to
//! their owners, grouping entries with the same `(dst, bin)` into one chain so frees to one
//! destination cost one CAS per group. Plain data: only its thread touches it.

use crate::config::RING_LEN;
use crate::list::{set_next, Chain};
use core::mem::MaybeUninit;
use core::ptr::null_mut;

const MASK: u32 = RING_LEN as u32 - 1;
const _: () = assert!(RING_LEN.is_power_of_two() && RING_LEN <= 1 << 16);

#[derive(Clone, Copy)]
#[repr(C)]
pub struct Entry {
    pub dst: u16,
    pub bin: u16,
    _pad: u32,
    pub ptr: *mut u8,
}
const _: () = assert!(core::mem::size_of::<Entry>() == 16);

/// All-zero is a valid empty ring.
#[repr(C)]
pub struct RemoteRing {
    entries: [Entry; RING_LEN],
    head: u32,
    tail: u32,
}

/// Where flushed chains go: `(dst, bin, chain)`.
pub trait Sink {
    fn send(&mut self, dst: u32, bin: usize, chain: Chain);
}

impl RemoteRing {
    /// The `remote_hint`: an empty ring makes every flush free.
    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.head == self.tail
    }

    pub fn len(&self) -> u32 {
        self.tail.wrapping_sub(self.head)
    }

    #[inline(always)]
    pub fn is_full(&self) -> bool {
        self.len() == RING_LEN as u32
    }

    /// Every heap fits in a ring entry.
    #[inline(always)]
    pub fn covers(_dst: u32) -> bool {
        true
    }

    /// Appends an entry; the caller flushes first when [`is_full`](Self::is_full). (`_sink`
    /// keeps the signature shared with the fast lane's bank.)
    #[inline(always)]
    pub fn push(&mut self, dst: u32, bin: usize, ptr: *mut u8, _sink: &mut impl Sink) {
        debug_assert!(!self.is_full());
        let e = &mut self.entries[(self.tail & MASK) as usize];
        e.dst = dst as u16;
        e.bin = bin as u16;
        e.ptr = ptr;
        self.tail = self.tail.wrapping_add(1);
    }

    /// Dispatches up to `budget` oldest entries. Entries are taken in groups of
    /// [`GROUP`]; within a group all entries with the same `(dst, bin)` become one chain, so a
    /// destination that recurs in the group costs one CAS instead of one per object.
    ///
    /// # Safety
    /// Every buffered `ptr` is a free object of heap `dst`, bin `bin`, owned by this ring.
    pub unsafe fn flush(&mut self, budget: u32, sink: &mut impl Sink) -> u32 {
        let n = budget.min(self.len());
        let mut left = n;
        while left > 0 {
            let g = left.min(GROUP as u32);
            // SAFETY: `g <= len()` entries remain, each a free object the ring owns, tagged
            // with its (dst, bin) (caller contract).
            unsafe { self.flush_group(g, sink) };
            left -= g;
        }
        n
    }

    /// One group: an open-addressed table of chains keyed by `(dst, bin)`, with twice as many
    /// slots as entries so it never fills. Only the keys are initialised: a chain slot is
    /// written when its key is claimed (zeroing all of them was a 3 KiB `memset` per flush,
    /// a third of xmalloc-test's instructions).
    ///
    /// # Safety
    /// At least `g` entries are buffered, each a free object of its `(dst, bin)` that the ring
    /// owns.
    unsafe fn flush_group(&mut self, g: u32, sink: &mut impl Sink) {
        let mut keys = [u32::MAX; SLOTS];
        let mut chains = [const { MaybeUninit::<Chain>::uninit() }; SLOTS];
        let mut used = [0u8; GROUP];
        let mut nused = 0;
        for _ in 0..g {
            let e = self.entries[(self.head & MASK) as usize];
            self.head = self.head.wrapping_add(1);
            let key = (e.dst as u32) << 16 | e.bin as u32;
            let mut i = (key.wrapping_mul(0x9E37_79B9) >> (32 - SLOTS.trailing_zeros())) as usize;
            while keys[i] != key && keys[i] != u32::MAX {
                i = (i + 1) & (SLOTS - 1);
            }
            if keys[i] == u32::MAX {
                keys[i] = key;
                used[nused] = i as u8;
                nused += 1;
                // SAFETY: `e.ptr` is a buffered free object the ring owns (caller contract).
                unsafe { set_next(e.ptr, null_mut()) };
                chains[i].write(Chain {
                    head: e.ptr,
                    tail: e.ptr,
                    n: 1,
                });
            } else {
                // SAFETY: slot `i`'s key was claimed earlier in this group, which wrote its
                // chain; `e.ptr` is a buffered free object the ring owns (caller contract).
                unsafe {
                    let c = chains[i].assume_init_mut();
                    set_next(e.ptr, c.head);
                    c.head = e.ptr;
                    c.n += 1;
                }
            }
        }
        for &i in &used[..nused] {
            let key = keys[i as usize];
            // SAFETY: every slot in `used` had its key claimed, which wrote its chain.
            let c = unsafe { chains[i as usize].assume_init_read() };
            sink.send(key >> 16, (key & 0xFFFF) as usize, c);
        }
    }
}

/// Entries grouped per table (bounded stack use: 512 B of keys, 3 KiB of chain slots).
const GROUP: usize = 64;
const SLOTS: usize = 2 * GROUP;
const _: () = assert!(SLOTS <= 256 && SLOTS.is_power_of_two());

#[cfg(test)]
mod tests {
    use super::*;
    use crate::list::tests::{collect, objects};
    extern crate std;
    use std::boxed::Box;
    use std::vec::Vec;

    struct Rec(Vec<(u32, usize, Vec<*mut u8>)>);
    impl Sink for Rec {
        fn send(&mut self, dst: u32, bin: usize, c: Chain) {
            // SAFETY: the ring hands over null-terminated chains of test objects.
            let v = unsafe { collect(c.head) };
            assert_eq!(v.len() as u32, c.n);
            assert_eq!(*v.last().unwrap(), c.tail);
            self.0.push((dst, bin, v));
        }
    }

    fn ring() -> Box<RemoteRing> {
        // SAFETY: all-zero is the documented empty state.
        unsafe { Box::new(core::mem::zeroed()) }
    }

    #[test]
    fn fifo_budget_and_grouping() {
        let mut r = ring();
        assert!(r.is_empty());
        let o = objects(RING_LEN);
        for (i, &p) in o.iter().enumerate() {
            assert!(!r.is_full());
            r.push((i / 10) as u32, i % 2, p, &mut Rec(Vec::new()));
        }
        assert!(r.is_full());
        let mut rec = Rec(Vec::new());
        // SAFETY: every buffered pointer is a distinct object from `objects`.
        assert_eq!(unsafe { r.flush(32, &mut rec) }, 32);
        assert_eq!(r.len(), RING_LEN as u32 - 32);
        // Oldest first, and every object exactly once.
        let flushed: Vec<*mut u8> = rec
            .0
            .iter()
            .flat_map(|(_, _, v)| v.iter().copied())
            .collect();
        let mut sorted = flushed.clone();
        sorted.sort();
        let mut want = o[..32].to_vec();
        want.sort();
        assert_eq!(sorted, want);
        for (dst, bin, v) in &rec.0 {
            for p in v {
                let i = o.iter().position(|q| q == p).unwrap();
                assert_eq!((i / 10) as u32, *dst);
                assert_eq!(i % 2, *bin);
            }
        }
        let mut rec = Rec(Vec::new());
        // SAFETY: as above.
        assert_eq!(unsafe { r.flush(u32::MAX, &mut rec) }, RING_LEN as u32 - 32);
        assert!(r.is_empty());
        // SAFETY: the ring is empty.
        assert_eq!(unsafe { r.flush(8, &mut rec) }, 0);
    }

    #[test]
    fn consecutive_same_destination_is_one_chain() {
        let mut r = ring();
        let o = objects(10);
        for &p in &o {
            r.push(3, 7, p, &mut Rec(Vec::new()));
        }
        let mut rec = Rec(Vec::new());
        // SAFETY: every buffered pointer is a distinct object from `objects`.
        unsafe { r.flush(100, &mut rec) };
        assert_eq!(rec.0.len(), 1);
        assert_eq!(rec.0[0].2.len(), 10);
    }

    #[test]
    fn interleaved_destinations_group_per_flush_group() {
        let mut r = ring();
        let o = objects(GROUP);
        for (i, &p) in o.iter().enumerate() {
            r.push((i % 4) as u32, 9, p, &mut Rec(Vec::new()));
        }
        let mut rec = Rec(Vec::new());
        // SAFETY: every buffered pointer is a distinct object from `objects`.
        unsafe { r.flush(GROUP as u32, &mut rec) };
        assert_eq!(rec.0.len(), 4, "one chain per (dst, bin)");
        for (dst, bin, v) in &rec.0 {
            assert_eq!(*bin, 9);
            assert_eq!(v.len(), GROUP / 4);
            for p in v {
                assert_eq!(o.iter().position(|q| q == p).unwrap() % 4, *dst as usize);
            }
        }
    }

    #[test]
    fn wraps_around() {
        let mut r = ring();
        let o = objects(3 * RING_LEN);
        let mut rec = Rec(Vec::new());
        for &p in &o {
            if r.is_full() {
                // SAFETY: every buffered pointer is a distinct object from `objects`.
                unsafe { r.flush(5, &mut rec) };
            }
            r.push(1, 1, p, &mut Rec(Vec::new()));
        }
        // SAFETY: as above.
        unsafe { r.flush(u32::MAX, &mut rec) };
        let n: usize = rec.0.iter().map(|x| x.2.len()).sum();
        assert_eq!(n, o.len());
    }
}
