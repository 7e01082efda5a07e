//! The owner stash (S44): per (heap, small bin) MPSC stack receiving remote frees, popped in
//! batches by the owner on an allocation miss. hz3's S44 variants are selectable (design.md §7):
//!
//! - original: take everything, keep `want`, walk the rest to its tail and push it back;
//! - FASTPOP (S44-3): push the rest back with one CAS when the head is still empty;
//! - COUNT: the head word carries the stash's exact object count beside the pointer. The
//!   hz3 work order kept a separate approximate counter only for the STASH_MAX_OBJS cap; ours is
//!   exact and costs nothing extra (it rides in the same CAS), so a pop that finds at most
//!   `whole` objects installs the list as is, without walking it. That walk is a chain of
//!   cache misses on lines other cores wrote, and was the largest single cost of remote-heavy
//!   rows;
//! - spill (S48): never push back; leftovers go to an owner-only spill consumed first.
//!
//! The head word is `ptr | count << 48`: user-space pointers fit in 48 bits on every target we
//! build for (x86_64 and aarch64 with 48-bit virtual addresses). The count saturates at
//! [`COUNT_UNKNOWN`]; a saturated stash is measured by walking, as with COUNT off.
//!
//! ABA: producers only compare the head word they linked their tail to, so a recycled value
//! still yields a correct list (with the right count, since the count is part of the value);
//! a consumer swaps the whole word and CASes only from zero. The owner is the only thread
//! with a spill (design.md §6); with `stash-steal` other heaps' refills also take, through the
//! same swap and CAS from zero ([`OwnerStash::steal`]), so no step assumes one taker.
//!
//! Orderings (C11 model), as for the MPSC stack (`mpsc`): a push's CAS and a push-back's CAS
//! from zero are Release, a take's swap is Acquire, and every write to the head word is one of
//! these RMWs, so each Release CAS heads a release sequence every later write continues. A
//! take therefore synchronizes with every push (and push-back) whose objects it receives,
//! however many pushes, takes and push-backs came between; a push-back publishes what its
//! taker acquired before and its own writes to the list. Relaxed loads of the word (a push's
//! failed CAS, whose first try guesses an empty stash; the emptiness probe) only choose a value
//! to compare or skip an empty stash. The loom models check these hand-offs; loom does not explore every C11
//! execution (`loom_tests`), so this argument is the proof.

use crate::config;
use crate::ds::list::{set_next, Chain, LocalList};
use crate::sys::atomics::AtomicU64;
use core::ptr::null_mut;
use core::sync::atomic::Ordering::*;

/// Which pop variant to run; the allocator passes the configured one, tests pass each.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PopMode {
    pub fastpop: bool,
    pub spill: bool,
    pub count: bool,
}

impl PopMode {
    pub const CONFIGURED: PopMode = PopMode {
        fastpop: config::STASH_FASTPOP,
        spill: config::STASH_SPILL,
        count: config::STASH_COUNT,
    };
}

const PTR_BITS: u32 = 48;
const PTR_MASK: u64 = (1 << PTR_BITS) - 1;
/// A count field this high means "not known": the list must be walked to be measured.
pub const COUNT_UNKNOWN: u32 = 0xFFFF;

fn pack(p: *mut u8, n: u32) -> u64 {
    debug_assert!(p as u64 & !PTR_MASK == 0, "pointer above 48 bits");
    p as u64 | (n.min(COUNT_UNKNOWN) as u64) << PTR_BITS
}

fn ptr_of(w: u64) -> *mut u8 {
    (w & PTR_MASK) as usize as *mut u8
}

fn count_of(w: u64) -> u32 {
    (w >> PTR_BITS) as u32
}

#[repr(C)]
pub struct OwnerStash {
    head: AtomicU64,
}

/// What a pop took and where it came from (for statistics). `list.count` is exact.
pub struct Popped {
    pub list: LocalList,
    pub from_spill: bool,
}

impl Popped {
    const EMPTY: Popped = Popped {
        list: LocalList {
            head: null_mut(),
            count: 0,
        },
        from_spill: false,
    };
}

impl OwnerStash {
    /// Tests' constructor: the allocator's live in zeroed static memory, so no `Default`.
    #[cfg(any(test, loom))]
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        OwnerStash {
            head: AtomicU64::new(0),
        }
    }

    /// `push_list(owner, bin, head, tail, n)`: prepends a chain (any thread). Returns the chain
    /// back if the cap (`cap > 0`, counted mode only) refuses it.
    ///
    /// # Safety
    /// `c` is a well-formed non-empty chain of free objects of this stash's bin and heap.
    pub unsafe fn push_list(&self, c: Chain, mode: PopMode, cap: u32) -> Result<(), Chain> {
        // The first CAS guesses an empty stash instead of loading the word first: the word's
        // line was last written by the owner's take (or another sender), and a load would
        // fetch it shared only for the CAS to fetch it again exclusive, two transfers where
        // one does. A wrong guess fails with the line already held and the current value.
        let mut old = 0;
        loop {
            let n = count_of(old);
            if mode.count && cap > 0 && n >= cap {
                return Err(c);
            }
            // SAFETY: `c` is a non-empty chain the caller owns (caller contract), so `c.tail`
            // is a free object we may write until the CAS publishes the chain.
            unsafe { set_next(c.tail, ptr_of(old)) };
            let new = pack(c.head, if mode.count { n + c.n } else { 0 });
            // Release: the links written above (and the object contents the freeing thread
            // wrote before freeing) are visible to the owner's Acquire swap.
            match self.head.compare_exchange_weak(old, new, Release, Relaxed) {
                Ok(_) => return Ok(()),
                Err(cur) => old = cur,
            }
        }
    }

    /// Takes the whole stack (owner only): the head of a null-terminated list and its count
    /// (exact in counted mode unless [`COUNT_UNKNOWN`]).
    fn take_word(&self) -> (*mut u8, u32) {
        if self.head.load(Relaxed) == 0 {
            return (null_mut(), 0);
        }
        // Acquire: pairs with the producers' Release CAS so their links are visible.
        let w = self.head.swap(0, Acquire);
        (ptr_of(w), count_of(w))
    }

    /// `pop_batch(owner, bin, out, want)`: objects for one refill (owner only). Takes `want`
    /// by walking; in counted mode, takes everything without walking when the stash (or the
    /// spill) holds at most `whole` objects. `spill` is the owner's heap-resident spill for
    /// this bin, used when `mode.spill`; its count is exact in counted mode and an estimate
    /// otherwise.
    ///
    /// # Safety
    /// Called only by the heap's single consuming thread; `spill` belongs to that thread.
    pub unsafe fn pop_batch(
        &self,
        spill: &mut LocalList,
        want: u32,
        whole: u32,
        mode: PopMode,
    ) -> Popped {
        if mode.spill && !spill.head.is_null() {
            let list = if mode.count && spill.count <= whole {
                core::mem::replace(
                    spill,
                    LocalList {
                        head: null_mut(),
                        count: 0,
                    },
                )
            } else {
                // SAFETY: the spill is the consumer's own well-formed list (caller contract).
                let c = unsafe { spill.take(want) };
                LocalList {
                    head: c.head,
                    count: c.n,
                }
            };
            return Popped {
                list,
                from_spill: true,
            };
        }
        let (all, seen) = self.take_word();
        if all.is_null() {
            return Popped::EMPTY;
        }
        let known = mode.count && seen < COUNT_UNKNOWN;
        if known && seen <= whole {
            return Popped {
                list: LocalList {
                    head: all,
                    count: seen,
                },
                from_spill: false,
            };
        }
        // SAFETY: `all` is a null-terminated list the swap made exclusively ours.
        let (chain, rest) = unsafe { Chain::take(all, want) };
        if !rest.is_null() {
            if mode.spill {
                spill.head = rest;
                spill.count = if known {
                    seen - chain.n
                } else if mode.count {
                    // SAFETY: `rest` is the null-terminated remainder of our list.
                    unsafe { Chain::measure(rest) }.n
                } else {
                    0
                };
            } else if mode.fastpop && known && self.push_back_if_empty(rest, seen - chain.n, mode) {
                // Pushed back with one CAS, no walk.
            } else {
                // SAFETY: `rest` is the non-empty null-terminated remainder of our list.
                let back = unsafe { Chain::measure(rest) };
                // The tail is known now; FASTPOP still tries the single CAS first.
                if !(mode.fastpop && self.push_back_if_empty(rest, back.n, mode)) {
                    // SAFETY: `back` is a well-formed non-empty chain we own; ownership passes
                    // back to the stack.
                    let r = unsafe { self.push_list(back, mode, 0) };
                    // Cap 0: a push is never refused, so nothing is dropped here.
                    debug_assert!(r.is_ok());
                }
            }
        }
        Popped {
            list: LocalList {
                head: chain.head,
                count: chain.n,
            },
            from_spill: false,
        }
    }

    /// FASTPOP: reinstalls a null-terminated list of `n` objects with one CAS if the stash is
    /// still empty (owner only).
    fn push_back_if_empty(&self, head: *mut u8, n: u32, mode: PopMode) -> bool {
        let w = pack(head, if mode.count { n } else { 0 });
        // Release: as for `push_list` (the owner's own writes to the list are published).
        self.head.compare_exchange(0, w, Release, Relaxed).is_ok()
    }

    /// `stash-steal`: objects for a refill of another heap (any thread): the whole stash when
    /// its exact count is at most `whole`, else `want` of them with the rest pushed back.
    /// `mode` is the owner's (its spill is ignored).
    /// Any number of threads may call this beside the owner's pops: it is `pop_batch` without
    /// the spill, whose only operations on the word are the swap of the whole word, a CAS from
    /// zero and a producer's push, none of which assumes one consumer (see the ABA note).
    ///
    /// # Safety
    /// None beyond the stash's own invariant (every pushed chain is a well-formed list of free
    /// objects); the result is the caller's.
    pub unsafe fn steal(&self, want: u32, whole: u32, mode: PopMode) -> LocalList {
        let mut no_spill = LocalList::EMPTY;
        let mode = PopMode {
            spill: false,
            ..mode
        };
        // SAFETY: without the spill, `pop_batch` is safe for any thread (above); `no_spill` is
        // ours and unused.
        unsafe { self.pop_batch(&mut no_spill, want, whole, mode) }.list
    }

    /// Everything in the stash (owner only): used when pops are switched off and at adoption.
    pub fn take_all(&self) -> *mut u8 {
        self.take_word().0
    }

    /// Objects in the stash: exact in counted mode (saturating at [`COUNT_UNKNOWN`]), 0 otherwise.
    #[cfg(all(test, not(loom)))]
    pub fn approx_count(&self) -> u32 {
        count_of(self.head.load(Relaxed))
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.head.load(Relaxed) == 0
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::ds::list::tests::{collect, link, objects};
    extern crate std;
    use std::collections::HashSet;
    use std::vec::Vec;

    const MODES: [PopMode; 6] = [
        PopMode {
            fastpop: false,
            spill: false,
            count: false,
        },
        PopMode {
            fastpop: true,
            spill: false,
            count: false,
        },
        PopMode {
            fastpop: true,
            spill: false,
            count: true,
        },
        PopMode {
            fastpop: false,
            spill: true,
            count: false,
        },
        PopMode {
            fastpop: true,
            spill: true,
            count: true,
        },
        PopMode {
            fastpop: false,
            spill: false,
            count: true,
        },
    ];

    /// Drains `s` (and `spill`), checking every pop's count against its list; returns the
    /// objects seen.
    unsafe fn drain(
        s: &OwnerStash,
        spill: &mut LocalList,
        want: u32,
        whole: u32,
        mode: PopMode,
    ) -> HashSet<usize> {
        let mut seen = HashSet::new();
        loop {
            // SAFETY: this thread is the only consumer and owns `spill` (caller contract).
            let p = unsafe { s.pop_batch(spill, want, whole, mode) };
            if p.list.count == 0 {
                assert!(p.list.head.is_null());
                break;
            }
            assert!(p.list.count <= want.max(whole), "{mode:?}");
            if !mode.count {
                assert!(p.list.count <= want, "{mode:?}");
            }
            // SAFETY: the popped list is null-terminated and now ours.
            let got = unsafe { collect(p.list.head) };
            assert_eq!(got.len() as u32, p.list.count, "{mode:?}");
            for x in got {
                assert!(seen.insert(x as usize), "duplicate in {mode:?}");
            }
        }
        seen
    }

    #[test]
    fn pop_batch_returns_everything_once_in_every_mode() {
        for (want, whole) in [(32, 32), (32, 64), (8, 256), (1, 1)] {
            for mode in MODES {
                // SAFETY: every chain is built by `link` over distinct objects from `objects`,
                // and this thread is the only consumer.
                unsafe {
                    let s = OwnerStash::new();
                    let o = objects(100);
                    for chunk in o.chunks(7) {
                        s.push_list(link(chunk), mode, 0).ok().unwrap();
                    }
                    if mode.count {
                        assert_eq!(s.approx_count(), 100);
                    } else {
                        assert_eq!(s.approx_count(), 0);
                    }
                    let mut spill = LocalList::EMPTY;
                    let seen = drain(&s, &mut spill, want, whole, mode);
                    assert_eq!(seen.len(), 100, "{mode:?}");
                    assert!(spill.head.is_null() && s.is_empty());
                }
            }
        }
    }

    #[test]
    fn counted_pop_takes_a_small_stash_whole() {
        let mode = PopMode {
            fastpop: true,
            spill: true,
            count: true,
        };
        // SAFETY: every chain is built by `link` over distinct objects from `objects`, and
        // this thread is the only consumer.
        unsafe {
            let s = OwnerStash::new();
            let o = objects(300);
            s.push_list(link(&o[..40]), mode, 0).ok().unwrap();
            s.push_list(link(&o[40..50]), mode, 0).ok().unwrap();
            let mut spill = LocalList::EMPTY;
            let p = s.pop_batch(&mut spill, 32, 64, mode);
            assert_eq!(p.list.count, 50);
            assert_eq!(collect(p.list.head).len(), 50);
            assert!(s.is_empty() && spill.head.is_null());
            // Above `whole`: `want` now, the rest to the spill with an exact count, which the
            // next pop takes whole once it fits.
            s.push_list(link(&o[50..]), mode, 0).ok().unwrap();
            let p = s.pop_batch(&mut spill, 32, 64, mode);
            assert_eq!((p.list.count, p.from_spill), (32, false));
            assert_eq!(spill.count, 218);
            let mut n = 32;
            while spill.count > 64 {
                let p = s.pop_batch(&mut spill, 32, 64, mode);
                assert_eq!((p.list.count, p.from_spill), (32, true));
                n += 32;
            }
            let left = spill.count;
            let p = s.pop_batch(&mut spill, 32, 64, mode);
            assert_eq!((p.list.count, p.from_spill), (left, true));
            assert_eq!(collect(p.list.head).len() as u32, left);
            assert_eq!(n + left, 250);
        }
    }

    #[test]
    fn saturated_count_falls_back_to_walking() {
        for spill_on in [false, true] {
            let mode = PopMode {
                fastpop: true,
                spill: spill_on,
                count: true,
            };
            // SAFETY: every chain is built by `link` over distinct objects from `objects`, and
            // this thread is the only consumer.
            unsafe {
                let s = OwnerStash::new();
                let total = COUNT_UNKNOWN as usize + 1000;
                let o = objects(total);
                for chunk in o.chunks(5000) {
                    s.push_list(link(chunk), mode, 0).ok().unwrap();
                }
                assert_eq!(s.approx_count(), COUNT_UNKNOWN);
                let mut spill = LocalList::EMPTY;
                let seen = drain(&s, &mut spill, 32, u32::MAX, mode);
                assert_eq!(seen.len(), total);
            }
        }
    }

    #[test]
    fn cap_refuses_when_counted() {
        // SAFETY: every chain is built by `link` over distinct objects from `objects`, and
        // this thread is the only consumer.
        unsafe {
            let mode = PopMode {
                fastpop: true,
                spill: false,
                count: true,
            };
            let s = OwnerStash::new();
            let o = objects(20);
            s.push_list(link(&o[..10]), mode, 10).ok().unwrap();
            assert_eq!(s.approx_count(), 10);
            assert!(s.push_list(link(&o[10..]), mode, 10).is_err());
            let mut spill = LocalList::EMPTY;
            let p = s.pop_batch(&mut spill, 4, 4, mode);
            assert_eq!(p.list.count, 4);
            assert_eq!(s.approx_count(), 6);
            let all: Vec<_> = collect(s.take_all());
            assert_eq!(all.len(), 6);
            assert_eq!(s.approx_count(), 0);
        }
    }

    #[test]
    fn concurrent_pushes_and_pops_lose_nothing() {
        for mode in MODES {
            let s = std::sync::Arc::new(OwnerStash::new());
            let per = 20_000usize;
            let producers = 3;
            let objs: Vec<Vec<usize>> = (0..producers)
                .map(|_| objects(per).into_iter().map(|p| p as usize).collect())
                .collect();
            let handles: Vec<_> = objs
                .clone()
                .into_iter()
                .map(|v| {
                    let s = s.clone();
                    // SAFETY: each producer links its own distinct objects from `objects`.
                    std::thread::spawn(move || unsafe {
                        for chunk in v.chunks(3) {
                            let ptrs: Vec<*mut u8> = chunk.iter().map(|&p| p as *mut u8).collect();
                            s.push_list(link(&ptrs), mode, 0).ok().unwrap();
                        }
                    })
                })
                .collect();
            let mut seen = HashSet::new();
            let mut spill = LocalList::EMPTY;
            let total = per * producers;
            while seen.len() < total {
                // SAFETY: this thread is the stash's only consumer and owns `spill`.
                let p = unsafe { s.pop_batch(&mut spill, 32, 64, mode) };
                // SAFETY: the popped list is null-terminated and now ours.
                let got = unsafe { collect(p.list.head) };
                assert_eq!(got.len() as u32, p.list.count, "{mode:?}");
                for x in got {
                    assert!(seen.insert(x as usize));
                }
            }
            for h in handles {
                h.join().unwrap();
            }
            assert!(s.is_empty() && spill.head.is_null());
        }
    }
}
