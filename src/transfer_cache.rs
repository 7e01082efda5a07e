//! The transfer cache (S42): per (heap, small bin) a few slots each holding one whole chain.
//! Producers park a chain in an empty slot (one CAS); a consumer takes a slot with one swap.
//! It is insurance for when the owner stash refuses a push; with an uncapped stash it can never
//! be fed, and the allocator then never probes it (`config::XFER_FED`). The same slots, more
//! of them, make the shared pool (`shared_pool`), where every heap is a consumer: a swap
//! hands a chain to exactly one taker, so any number of consumers is safe.
//!
//! A parked chain's length travels in its head object's second word.

use crate::atomics::AtomicPtr;
use crate::config::TRANSFER_SLOTS;
use crate::list::{Chain, LocalList};
use core::ptr::null_mut;
use core::sync::atomic::Ordering::*;

#[repr(C)]
pub struct TransferCache<const N: usize = TRANSFER_SLOTS> {
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
    #[cfg(any(test, loom))]
    pub fn new() -> Self {
        TransferCache {
            slots: core::array::from_fn(|_| AtomicPtr::new(null_mut())),
        }
    }

    /// Parks a chain in a free slot (any thread); gives it back when all slots are taken.
    ///
    /// # Safety
    /// `c` is a well-formed non-empty null-terminated chain the caller owns.
    pub unsafe fn push(&self, c: Chain) -> Result<(), Chain> {
        // SAFETY: `c` is non-empty and ours (caller contract), so `c.head` is a free object we
        // own; a refused chain gets back only an unused word changed.
        unsafe { set_len(c.head, c.n) };
        for s in &self.slots {
            // Release: the chain's links and length are visible to the owner's Acquire swap.
            if s.load(Relaxed).is_null()
                && s.compare_exchange(null_mut(), c.head, Release, Relaxed)
                    .is_ok()
            {
                return Ok(());
            }
        }
        Err(c)
    }

    /// Takes one parked chain (any thread). The chain's tail is not tracked: the result is a
    /// `LocalList` ready to become a thread bin.
    pub fn pop(&self) -> LocalList {
        for s in &self.slots {
            if !s.load(Relaxed).is_null() {
                // Acquire: pairs with the producer's Release CAS.
                let h = s.swap(null_mut(), Acquire);
                if !h.is_null() {
                    return LocalList {
                        head: h,
                        // SAFETY: `h` is a chain head parked by `push`, which wrote its length
                        // before its Release CAS; our Acquire swap made the chain ours.
                        count: unsafe { get_len(h) },
                    };
                }
            }
        }
        LocalList {
            head: null_mut(),
            count: 0,
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::list::tests::{collect, link, objects};

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
