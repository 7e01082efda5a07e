//! The transfer cache (S42): per (heap, small bin) a few slots each holding one whole chain.
//! Producers park a chain in an empty slot (one CAS); a consumer takes a slot with one swap.
//! It is insurance for when the owner stash refuses a push; with an uncapped stash it can never
//! be fed, and the allocator then never probes it (`config::XFER_FED`). The same slots, more
//! of them, make the shared pool (`shared_pool`), where every heap is a consumer: a swap
//! hands a chain to exactly one taker, so any number of consumers is safe.
//!
//! A parked chain's length travels in its head object's second word; in the hardened lane,
//! whose free mark is there, in the slot word's top 16 bits (arena pointers fit in 48).
//!
//! An occupancy word says which slots may hold a chain, so a take from an empty cache is one
//! load, not a scan of every slot (the shared pool is probed before every new-page refill).
//! It is a hint, kept safe by its order: a producer sets a slot's bit after its CAS filled the
//! slot, and a taker clears the bit before its swap empties it.
//!
//! # Hand-off and the no-stranded-chain argument (C11 model)
//!
//! The chain: a producer writes its links and its length (in the head's second word) and
//! then parks it with a Release CAS; the taker's Acquire swap reads that value, so it
//! synchronizes with the CAS and sees those writes, and what the freeing threads wrote
//! before them. A swap is an RMW: each parked chain is read by exactly one swap, so any number
//! of takers is safe.
//!
//! The hint never strands a chain (leaves one in a slot whose bit stays clear, which no take
//! would try). The argument uses the C11/C++20 model only, not x86's single total order of
//! locked instructions:
//!
//! 1. Every write to the occupancy word is an RMW (`fetch_or`, `fetch_and`; the word starts
//!    zeroed). So every later write continues the release sequence headed by an earlier
//!    Release RMW, and an Acquire RMW later in the word's modification order synchronizes
//!    with every earlier Release RMW on it. Both RMWs are `AcqRel`, so each synchronizes with
//!    every earlier one: happens-before orders them all in the word's modification order.
//!    (The argument needs only the producer's Release half and the taker's Acquire half; the
//!    others are free on x86-64, where every locked RMW is a full barrier.)
//! 2. Suppose a chain `c` parked in slot `i` by producer P is never taken and bit `i` is
//!    clear once every thread has stopped. P set bit `i` after its CAS, so some taker T cleared
//!    it later in the word's modification order. By 1, P's `fetch_or` happens-before T's
//!    `fetch_and`, hence P's CAS (sequenced before the former) happens-before T's swap
//!    (sequenced after the latter). By coherence T's swap then follows P's CAS in the slot's
//!    modification order. Nothing but a swap replaces `c` (a CAS only fills a null slot), and
//!    an RMW reads the value just before it, so the first swap after P's CAS — T's or an
//!    earlier one — took `c`: a contradiction.
//!
//! The pairs the argument does not need carry no ordering: the slot's swap does not
//! synchronize with a later CAS that refills it (no happens-before from a taker to the next
//! producer), and the Relaxed loads of the word in [`push`](TransferCache::push) and
//! [`pop`](TransferCache::pop) only pick slots to try. A stale load skips a slot whose chain
//! stays there, bit set, for a later take; or tries an empty one. A bit left set over an empty
//! slot (a take between a producer's CAS and its `fetch_or`) costs a later take one empty
//! swap, which clears it.
//!
//! The loom models (`loom_tests::transfer_cache_*`) check these interleavings, but loom does
//! not model every C11 execution. It runs the threads as one interleaving, in which an RMW
//! reads the latest value, so it never produces a stranding: T's swap reading the slot as it
//! was before P's CAS, although P's CAS precedes P's `fetch_or`, which precedes T's
//! `fetch_and` in the word's order, which precedes T's swap — a cycle of program order,
//! reads-from and modification order, the load-buffering kind loom's README lists as not
//! explored. With both RMWs `Relaxed` the models still pass. The written argument above is the
//! proof.

use crate::config::{SECURE, TRANSFER_SLOTS};
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

/// Pointers a slot word may hold in the hardened lane (the rest carries the length).
const PTR_BITS: u32 = 48;

/// The slot word for chain `c`: its head, with its length above [`PTR_BITS`] in the hardened
/// lane (`push` refuses a chain whose length does not fit), else in the head's second word.
///
/// # Safety
/// `c` is non-empty and the caller's.
#[inline(always)]
unsafe fn pack(c: &Chain) -> *mut u8 {
    if SECURE {
        return c.head.map_addr(|a| a | (c.n as usize) << PTR_BITS);
    }
    // SAFETY: `c.head` is a free object we own (caller contract).
    unsafe { set_len(c.head, c.n) };
    c.head
}

/// The chain head and length a slot word `h` (non-null, from [`pack`]) names.
///
/// # Safety
/// `h` was parked by `push` and is now the caller's (see `get_len`).
#[inline(always)]
unsafe fn unpack(h: *mut u8) -> (*mut u8, u32) {
    if SECURE {
        return (
            h.map_addr(|a| a & ((1 << PTR_BITS) - 1)),
            (h.addr() >> PTR_BITS) as u32,
        );
    }
    // SAFETY: as for this function (caller contract).
    (h, unsafe { get_len(h) })
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

    /// Parks a chain in a free slot (any thread); gives it back when all slots are taken (or,
    /// in the hardened lane, when its length does not fit in 16 bits).
    ///
    /// # Safety
    /// `c` is a well-formed non-empty null-terminated chain the caller owns, whose objects
    /// lie below 2^48.
    pub unsafe fn push(&self, c: Chain) -> Result<(), Chain> {
        let () = Self::FITS;
        if SECURE && c.n >> (usize::BITS - PTR_BITS) != 0 {
            return Err(c);
        }
        // SAFETY: `c` is non-empty and ours (caller contract); a refused chain gets back only
        // an unused word changed.
        let w = unsafe { pack(&c) };
        // Relaxed: the word is a hint; the slot's CAS carries the chain (module doc).
        let mut free = !self.occupied.load(Relaxed) & Self::ALL;
        while free != 0 {
            let i = free.trailing_zeros() as usize;
            free &= free - 1;
            // Release: the chain's links and length are visible to the taker's Acquire swap.
            // A failed CAS publishes nothing and the chain stays ours (Relaxed).
            if self.slots[i]
                .compare_exchange(null_mut(), w, Release, Relaxed)
                .is_ok()
            {
                // After the CAS. AcqRel: its Release half heads a release sequence on the
                // word, so a taker whose clear of this bit comes later in the word's order
                // happens-after our CAS and its swap takes the chain (module doc, point 2).
                self.occupied.fetch_or(1 << i, AcqRel);
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
            // Before the swap. AcqRel: its Acquire half synchronizes with every producer's
            // `fetch_or` earlier in the word's order (all writes to it are RMWs, so each such
            // set heads a release sequence this clear continues), so our swap below comes after
            // their CAS in the slot's order (module doc, point 2).
            self.occupied.fetch_and(!(1 << i), AcqRel);
            // Acquire: synchronizes with the Release CAS that parked the chain we read.
            // Only bits below `N` are ever set; `get` leaves no panic path.
            let Some(slot) = self.slots.get(i) else {
                break;
            };
            let h = slot.swap(null_mut(), Acquire);
            if !h.is_null() {
                // SAFETY: `h` is a chain parked by `push`, which wrote its length before its
                // Release CAS; our Acquire swap read that CAS's value, so it synchronizes
                // with it, and being an RMW it made the chain ours alone.
                let (head, count) = unsafe { unpack(h) };
                return LocalList { head, count };
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
