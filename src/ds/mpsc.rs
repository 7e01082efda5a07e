//! A multi-producer, single-consumer intrusive stack: producers prepend whole chains with one
//! CAS, the single consumer takes everything with one swap. Used for the medium inbox and for
//! the central lists' remote intake. (The owner stash is the same stack with a count packed
//! into the head word: `owner_stash`.)
//!
//! ABA: producers only compare the head they linked their tail to, so a recycled head value
//! still yields a correct list; a taker never CASes a non-null head (a thief's `restore`
//! compares with null, and any empty stack is a correct place for its list). The consumer is
//! normally the heap's owner (design.md §6), but a take is one swap, so two takers (the owner
//! and an `inbox-steal` thief, which restores what it does not keep) get disjoint lists:
//! nothing in the take depends on there being one.
//!
//! Orderings (C11 model): each producer's successful CAS is Release and the consumer's swap
//! Acquire. Every write to the head is an RMW (the producers' CAS, the consumer's swap), so
//! each producer's CAS heads a release sequence that every later write continues: the swap,
//! which reads the latest head, synchronizes with every producer whose chain it takes — not
//! only the last one, whose value it read, but each earlier one that later CASes linked onto.
//! The producers' loads of the head (the first, and a failed CAS) are Relaxed: the value is
//! only written into the producer's own tail and compared, never dereferenced. A thief's
//! `restore` is a Release CAS (null to its remainder) of objects its Acquire swap received:
//! the original producers' writes happen-before it, and so do the thief's own (the link it
//! writes from the tail of chains pushed meanwhile, which it took with another Acquire swap,
//! to its remainder). Every later write to the head being an RMW, that CAS heads a release
//! sequence which the next taker's Acquire swap reads from, so all of them reach that taker.
//! Its refused CAS (Relaxed) only sends it to take; the Relaxed probe in that take reads the
//! refused value or a later one (coherence), so a null there means a taker emptied the stack
//! meanwhile. The loom models check these hand-offs but for the thief's own link, plain
//! memory loom does not see (with `restore`'s CAS Relaxed they still pass, though that link
//! would then race with the next taker's walk); nor does loom explore every C11 execution
//! (`loom_tests`), so this argument is the proof.

use crate::ds::list::{set_next, Chain};
use crate::sys::atomics::AtomicPtr;
use core::ptr::null_mut;
use core::sync::atomic::Ordering::*;

#[repr(C)]
pub struct MpscStack {
    head: AtomicPtr<u8>,
}

impl MpscStack {
    #[cfg(loom)]
    pub fn new() -> Self {
        MpscStack {
            head: AtomicPtr::new(null_mut()),
        }
    }

    /// Prepends a chain (any thread).
    ///
    /// # Safety
    /// `c` is a well-formed non-empty chain the caller owns; ownership passes to the stack.
    pub unsafe fn push(&self, c: Chain) {
        let mut old = self.head.load(Relaxed);
        loop {
            // SAFETY: `c` is a non-empty chain the caller owns (caller contract), so `c.tail`
            // is a free object we may write until the CAS publishes the chain.
            unsafe { set_next(c.tail, old) };
            // Release: the links written above (and the object contents the freeing thread
            // wrote before freeing) are visible to the consumer's Acquire swap.
            match self
                .head
                .compare_exchange_weak(old, c.head, Release, Relaxed)
            {
                Ok(_) => return,
                Err(cur) => old = cur,
            }
        }
    }

    /// Puts back a null-terminated list the caller took with [`take_all`](Self::take_all)
    /// (an `inbox-steal` thief's remainder) without walking it: one CAS while the stack is
    /// still empty. If producers pushed meanwhile, the caller takes their chains, walks only
    /// them to link the list behind their tail, and tries again. Why: a thief that measured
    /// its remainder to push it back walked a whole inbox of descheduled owners, a cache miss
    /// per run (mt-remote T=8 R=90 16–32768, docs/ab.md).
    ///
    /// # Safety
    /// `head` starts a well-formed non-empty null-terminated list the caller owns; ownership
    /// passes to the stack.
    pub unsafe fn restore(&self, mut head: *mut u8) {
        loop {
            // Release: the list's links (and what its producers wrote, which happened before
            // the caller's Acquire take) reach the next taker's Acquire swap.
            match self
                .head
                .compare_exchange(null_mut(), head, Release, Relaxed)
            {
                Ok(_) => return,
                Err(_) => {
                    let fresh = self.take_all();
                    if !fresh.is_null() {
                        // SAFETY: the swap made `fresh` ours, a null-terminated list whose
                        // links its producers' Release CASes published to our Acquire swap;
                        // its tail is linked to the caller's list, which is ours too.
                        unsafe {
                            let c = Chain::measure(fresh);
                            set_next(c.tail, head);
                        }
                        head = fresh;
                    }
                }
            }
        }
    }

    /// Cheap emptiness probe (may be stale).
    pub fn is_empty(&self) -> bool {
        self.head.load(Relaxed).is_null()
    }

    /// Takes the whole stack (the owner, or an `inbox-steal` thief). Returns the head of a
    /// null-terminated list.
    pub fn take_all(&self) -> *mut u8 {
        if self.is_empty() {
            return null_mut();
        }
        // Acquire: pairs with the producers' Release CAS so their links are visible.
        self.head.swap(null_mut(), Acquire)
    }
}
