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

#[cfg(all(test, not(loom)))]
mod tests {
    use super::MpscStack;
    use crate::ds::list::tests::{collect, link, objects};
    use crate::ds::list::Chain;
    use crate::sys::atomics::AtomicPtr;
    use core::ptr::null_mut;
    use core::sync::atomic::{AtomicBool, Ordering::Relaxed};
    extern crate std;
    use std::collections::HashMap;
    use std::vec::Vec;

    /// Two producers push chains of one to three objects while a thief takes the whole stack,
    /// keeps its first object and restores the rest (as `inbox-steal` does) and the owner takes
    /// everything: every object arrives exactly once. With real threads that yield now and
    /// then, so that `restore`'s CAS is refused thousands of times a run (a `restore` that
    /// dropped the chains it took then failed every run); the loom model
    /// `mpsc_thief_vs_take_all` checks the orderings and every branch on three objects.
    #[test]
    fn a_thief_restores_while_producers_push_and_the_owner_takes() {
        const PER_PRODUCER: usize = 20_000;
        let objs = objects(2 * PER_PRODUCER);
        let addrs: Vec<usize> = objs.iter().map(|&p| p as usize).collect();
        let st = MpscStack {
            head: AtomicPtr::new(null_mut()),
        };
        let done = AtomicBool::new(false);
        let (thief, mut got) = std::thread::scope(|s| {
            let producers: Vec<_> = addrs
                .chunks(PER_PRODUCER)
                .map(|mine| {
                    let st = &st;
                    s.spawn(move || {
                        let mut i = 0;
                        while i < mine.len() {
                            let n = (1 + i % 3).min(mine.len() - i);
                            let c: Vec<*mut u8> =
                                mine[i..i + n].iter().map(|&a| a as *mut u8).collect();
                            // SAFETY: this producer's own unused objects, each pushed once.
                            unsafe { st.push(link(&c)) };
                            i += n;
                            if i % 16 < 3 {
                                std::thread::yield_now();
                            }
                        }
                    })
                })
                .collect();
            let thief = s.spawn(|| {
                let mut kept = Vec::new();
                while !done.load(Relaxed) {
                    let all = st.take_all();
                    if all.is_null() {
                        continue;
                    }
                    // SAFETY: the swap made the list ours; the rest goes back unwalked.
                    unsafe {
                        let (one, rest): (Chain, *mut u8) = Chain::take(all, 1);
                        if !rest.is_null() {
                            // Descheduled between its take and its restore, as a thief on a
                            // busy machine may be: producers and the owner run meanwhile.
                            std::thread::yield_now();
                            st.restore(rest);
                        }
                        kept.extend(collect(one.head).iter().map(|&p| p as usize));
                    }
                }
                kept
            });
            let mut got = Vec::new();
            while producers.iter().any(|p| !p.is_finished()) {
                // SAFETY: the swap made the list ours.
                got.extend(
                    unsafe { collect(st.take_all()) }
                        .iter()
                        .map(|&p| p as usize),
                );
                std::thread::yield_now();
            }
            for p in producers {
                p.join().unwrap();
            }
            done.store(true, Relaxed);
            (thief.join().unwrap(), got)
        });
        // SAFETY: every other thread has been joined; the swap made the list ours.
        got.extend(
            unsafe { collect(st.take_all()) }
                .iter()
                .map(|&p| p as usize),
        );
        assert!(st.is_empty());
        let mut seen: HashMap<usize, u32> = HashMap::new();
        for a in got.iter().chain(&thief) {
            *seen.entry(*a).or_default() += 1;
        }
        assert!(seen.values().all(|&n| n == 1), "an object arrived twice");
        assert_eq!(seen.len(), addrs.len(), "an object was lost");
    }
}
