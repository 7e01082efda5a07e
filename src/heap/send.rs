//! Delivering free objects to their heap from any thread (design.md §7): a small chain goes to
//! the owner stash, else the transfer cache, else the central intake; a medium chain to the
//! inbox. Only the shared part of the destination is touched.

use super::table::get;
use crate::config::{STASH_MAX_OBJS, STASH_PUSH, TRANSFER_CACHE};
use crate::ds::list::{set_next, Chain};
use crate::ds::owner_stash::PopMode;
use crate::page::size_class::{self as sc, NUM_BINS, SMALL_BINS};
use crate::stats::{Counters, Ev};
use core::ptr::null_mut;

/// Hands a chain of free objects of heap `dst`, bin `bin` to that heap (any thread).
/// `stats` are the sender's counters; `shared_stats` when other threads may bump them too.
///
/// # Safety
/// `c` is a non-empty chain of free objects whose page tags name `dst` and `bin`.
pub unsafe fn send(dst: u32, bin: usize, c: Chain, stats: &Counters, shared_stats: bool) {
    // SAFETY: page tags name bins below `NUM_BINS` only, and `bin` is what the chain's tags
    // name (caller contract). Stated so that indexing the inboxes leaves no panic path.
    unsafe { core::hint::assert_unchecked(bin < NUM_BINS) };
    let h = get(dst);
    let ev = |e: Ev, n: u64| {
        if shared_stats {
            stats.add_shared(e, n)
        } else {
            stats.add(e, n)
        }
    };
    if !sc::is_small(bin) {
        ev(Ev::InboxPushes, 1);
        // SAFETY: `c` is a non-empty chain of free objects of `dst`/`bin` the caller hands over
        // (caller contract); the inbox is `dst`'s stack for this medium bin.
        unsafe { h.shared.inbox[bin - SMALL_BINS].push(c) };
        return;
    }
    let mut c = c;
    if STASH_PUSH {
        // SAFETY: `c` is a non-empty chain of free objects of `dst`'s small bin `bin` (caller
        // contract), so it belongs in this stash.
        match unsafe { h.shared.stash[bin].push_list(c, PopMode::CONFIGURED, STASH_MAX_OBJS) } {
            Ok(()) => {
                ev(Ev::StashPushes, 1);
                ev(Ev::StashPushObjs, c.n as u64);
                return;
            }
            Err(back) => {
                ev(Ev::StashRefused, 1);
                c = back;
            }
        }
    }
    if TRANSFER_CACHE {
        // SAFETY: `c` is a non-empty null-terminated chain we own (caller contract; a refused
        // stash push hands it back untouched).
        match unsafe { h.shared.xfer[bin].push(c) } {
            Ok(()) => {
                ev(Ev::XferPushes, 1);
                return;
            }
            Err(back) => c = back,
        }
    }
    ev(Ev::IntakePushes, 1);
    // SAFETY: `c` is a non-empty chain of free objects of `dst`/`bin` we own (caller contract;
    // refusals above hand it back untouched).
    unsafe { h.shared.intake[bin].push(c) };
}

/// [`send`] for a single object.
///
/// # Safety
/// `p` is a free object whose page tag names `dst` and `bin`; ownership passes to the heap.
pub unsafe fn send_one(p: *mut u8, dst: u32, bin: usize, stats: &Counters, shared_stats: bool) {
    // SAFETY: `p` is free and ours to link (caller contract); as a one-object null-terminated
    // chain it satisfies `send`'s contract.
    unsafe {
        set_next(p, null_mut());
        send(
            dst,
            bin,
            Chain {
                head: p,
                tail: p,
                n: 1,
            },
            stats,
            shared_stats,
        );
    }
}

/// Sends each object of a list of `bin` objects to the heap its page tag names, runs of
/// consecutive objects of one owner as one chain (the sweep's foreign objects, the shared
/// pool's idle chains: small objects, or medium runs, which go to their owner's inbox).
///
/// # Safety
/// `p` starts a null-terminated list of free objects of `bin` in arena pages tagged with
/// their owner (a medium run: its first page), which the caller owns and nothing else
/// references.
pub unsafe fn send_home(bin: usize, mut p: *mut u8, stats: &Counters, shared_stats: bool) {
    let mut run = Chain::EMPTY;
    let mut dst = 0;
    while !p.is_null() {
        // SAFETY: `p` is a member of the caller's list; its link is read before relinking.
        let nx = unsafe { crate::ds::list::next(p) };
        let Some((owner, _)) = crate::page::arena::owner_and_bin(p) else {
            debug_assert!(false, "a free object in an untagged page");
            p = nx;
            continue;
        };
        if run.n > 0 && owner != dst {
            // SAFETY: `run` is a non-empty null-terminated chain of free objects of `dst`/`bin`.
            unsafe { send(dst, bin, run, stats, shared_stats) };
            run = Chain::EMPTY;
        }
        dst = owner;
        // SAFETY: `p` is ours and detached from the caller's list; it becomes `run`'s tail.
        unsafe {
            set_next(p, null_mut());
            if run.n == 0 {
                run.head = p;
            } else {
                set_next(run.tail, p);
            }
        }
        run.tail = p;
        run.n += 1;
        p = nx;
    }
    if run.n > 0 {
        // SAFETY: as above.
        unsafe { send(dst, bin, run, stats, shared_stats) };
    }
}
