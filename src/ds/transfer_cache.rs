//! The transfer cache (S42): per (heap, small bin) a few slots each holding one whole chain.
//! Producers park a chain in an empty slot (one CAS); a consumer takes a slot with one swap.
//! It is insurance for when the owner stash refuses a push; with an uncapped stash it can never
//! be fed, and the allocator then never probes it (`config::XFER_FED`). The same slots, more
//! of them, make the shared pool (`shared_pool`), where every heap is a consumer: a swap
//! hands a chain to exactly one taker, so any number of consumers is safe.
//!
//! A parked chain's length travels in its head object's second word.
//!
//! An occupancy word says which slots may hold a chain, so a take from an empty cache is one
//! load, not a scan of every slot (the shared pool is probed before every new-page refill).
//! It is a hint, kept safe by its order: a producer sets a slot's bit after its CAS filled the
//! slot, and a taker clears the bit before its swap empties it. So whenever a slot holds a
//! chain, either its bit is set or a taker has cleared the bit and has still to swap, and that
//! swap takes whatever the slot holds: no chain can sit in a slot unseen.

use crate::config::TRANSFER_SLOTS;
use crate::ds::list::{Chain, LocalList};
use crate::sys::atomics::{AtomicPtr, AtomicU64};
use core::ptr::null_mut;
use core::sync::atomic::Ordering::*;

#[repr(C)]
pub struct TransferCache<const N: usize = TRANSFER_SLOTS> {
    /// Bit `i`: slot `i` may hold a chain (see the module doc for why a hint is enough).
    occupied: AtomicU64,
    slots: [AtomicPtr<u8>; N],
}

/// # Safety
/// `head` is a free object the caller owns (every free object is at least 16 bytes).
unsafe fn set_len(head: *mut u8, n: u32) {
    // SAFETY: the second word of a free object we own is unused (caller contract; list.rs).
    unsafe { *(head as *mut usize).add(1) = n as usize };
}

/// # Safety
/// `head` is a chain head parked by [`TransferCache::push`] and now owned by the caller.
unsafe fn get_len(head: *mut u8) -> u32 {
    // SAFETY: `push` wrote the length into the head's second word before publishing it, and
    // the caller's Acquire take makes that write visible (caller contract).
    unsafe { *(head as *mut usize).add(1) as u32 }
}

impl<const N: usize> TransferCache<N> {
    /// Tests' constructor: the allocator's live in zeroed static memory, so no `Default`.
    #[cfg(any(test, loom))]
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        TransferCache {
            occupied: AtomicU64::new(0),
            slots: core::array::from_fn(|_| AtomicPtr::new(null_mut())),
        }
    }

    const FITS: () = assert!(N >= 1 && N <= 64);

    /// Parks a chain in a free slot (any thread); gives it back when all slots are taken.
    ///
    /// # Safety
    /// `c` is a well-formed non-empty null-terminated chain the caller owns.
    pub unsafe fn push(&self, c: Chain) -> Result<(), Chain> {
        let () = Self::FITS;
        // SAFETY: `c` is non-empty and ours (caller contract), so `c.head` is a free object we
        // own; a refused chain gets back only an unused word changed.
        unsafe { set_len(c.head, c.n) };
        // Relaxed: the word is a hint; the slot's CAS carries the chain (module doc).
        let mut free = !self.occupied.load(Relaxed) & Self::ALL;
        while free != 0 {
            let i = free.trailing_zeros() as usize;
            free &= free - 1;
            // Release: the chain's links and length are visible to the taker's Acquire swap.
            if self.slots[i]
                .compare_exchange(null_mut(), c.head, Release, Relaxed)
                .is_ok()
            {
                // After the CAS (module doc). Release, with the taker's Acquire clear: a taker
                // whose clear comes after this set in the word's order then swaps after our
                // CAS, so it cannot miss the chain (the module doc's "still to swap").
                self.occupied.fetch_or(1 << i, Release);
                return Ok(());
            }
        }
        Err(c)
    }

    /// Takes one parked chain (any thread). The chain's tail is not tracked: the result is a
    /// `LocalList` ready to become a thread bin.
    pub fn pop(&self) -> LocalList {
        // Relaxed: a stale read only skips a chain or tries an empty slot; the slot's swap
        // carries the chain (module doc).
        let mut bits = self.occupied.load(Relaxed);
        while bits != 0 {
            let i = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            // Before the swap (module doc). Acquire: pairs with the producer's Release set.
            self.occupied.fetch_and(!(1 << i), Acquire);
            // Acquire: pairs with the producer's Release CAS.
            let h = self.slots[i].swap(null_mut(), Acquire);
            if !h.is_null() {
                return LocalList {
                    head: h,
                    // SAFETY: `h` is a chain head parked by `push`, which wrote its length
                    // before its Release CAS; our Acquire swap made the chain ours.
                    count: unsafe { get_len(h) },
                };
            }
        }
        LocalList {
            head: null_mut(),
            count: 0,
        }
    }

    /// One bit per slot.
    const ALL: u64 = if N == 64 { u64::MAX } else { (1 << N) - 1 };
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::ds::list::tests::{collect, link, objects};

    #[test]
    fn slots_fill_and_drain() {
        // SAFETY: every chain is built by `link` over objects from `objects`.
        unsafe {
            let t = <TransferCache>::new();
            let o = objects(TRANSFER_SLOTS * 2 + 2);
            for i in 0..TRANSFER_SLOTS {
                t.push(link(&o[2 * i..2 * i + 2])).ok().unwrap();
            }
            let extra = link(&o[2 * TRANSFER_SLOTS..]);
            assert!(t.push(extra).is_err());
            let mut total = 0;
            loop {
                let l = t.pop();
                if l.head.is_null() {
                    break;
                }
                assert_eq!(l.count, 2);
                assert_eq!(collect(l.head).len(), 2);
                total += l.count;
            }
            assert_eq!(total as usize, TRANSFER_SLOTS * 2);
            t.push(extra).ok().unwrap();
            assert_eq!(t.pop().count, 2);
        }
    }
}
