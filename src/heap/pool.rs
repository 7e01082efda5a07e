//! The shared pool: per class, whole chains of free objects that any heap may take
//! (`shared-pool`). A heap's central list keeps at most [`SHARED_KEEP`] bin limits of a small
//! class while its heap is the only one owned, and nothing while other threads own heaps; a
//! chain that would take it past that is parked here instead, and a refill that finds
//! the heap's own sources empty (spill, stash, transfer cache, central) takes a chain from here
//! before it carves a new page, keeping only part of a long one early in its owner's tenure
//! ([`take_at_most`], `refill`'s slow start). With `medium-adopt`, a medium central list past
//! one bin limit parks its adopted runs (other heaps') here too, and a medium refill takes from
//! here before it carves new runs (`medium`).
//!
//! Why: a heap's central list is reachable only by its owner. With many threads per CPU the
//! owners that hold free memory are mostly descheduled while the running threads carve fresh
//! pages; at 16 threads per CPU the central lists held up to 150 MiB of free objects at the
//! moments other threads carved (docs/ab.md). Medium runs freed for other heaps stayed with
//! the freeing heap, which never gave them back while the others carved (cross-churn: up to
//! 260 MiB in one heap). Objects keep their owner's tag: a small object
//! is a free object of its class wherever it is kept (small pages never go back to their
//! segment), a medium run goes back to its segment only through its owner, and a later free
//! of either follows its tag as any remote free does.
//!
//! The slots are a [`TransferCache`] per class: a park is one CAS on an empty slot, a take is
//! one swap, so takers need no lock and cannot see a chain twice.
//!
//! A parked object pins its run (the sweep counts only what its owner holds), so a class
//! nobody took from for a whole decay interval sends its chains home ([`decay`]), and
//! `malloc_trim` sends every chain home ([`send_all_home`]).
//!
//! [`SHARED_KEEP`]: crate::config::SHARED_KEEP

use super::send::send_home;
use crate::config::{self, SHARED_POOL_SLOTS};
use crate::ds::list::{Chain, LocalList};
use crate::ds::transfer_cache::TransferCache;
use crate::page::arena;
use crate::page::size_class::{self as sc, NUM_BINS};
use crate::stats::{Counters, Ev};
use core::ptr::null_mut;
use core::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering::*};

#[repr(C)]
pub struct SharedPool {
    classes: [TransferCache<SHARED_POOL_SLOTS>; NUM_BINS],
    /// Clock (ms) of the last take of a chain of the class.
    taken_ms: [AtomicU64; NUM_BINS],
}

static POOL: AtomicPtr<SharedPool> = AtomicPtr::new(null_mut());
/// Clock (ms) of the last [`decay`] pass.
static DECAY_MS: AtomicU64 = AtomicU64::new(0);
/// Bytes of medium and arena-large runs parked, all classes together; at most
/// [`medium_budget`]. Relaxed: a count, not a hand-off (the chains move by the slots' own
/// Acquire/Release). A park adds its bytes before its push (sequenced before it, and the push
/// is a Release the taker's Acquire pop reads), so the taker's subtraction happens after the
/// addition and comes after it in the counter's modification order: the count never drops
/// below what the slots hold (a refused push subtracts its own bytes again).
static MEDIUM_BYTES: AtomicUsize = AtomicUsize::new(0);

/// Bytes of runs the pool may hold over all medium classes: [`config::MEDIUM_POOL_BYTES`], or
/// a [`config::MEDIUM_POOL_SHARE`]th of the bytes in heaps' segments if more, so a program
/// with a large live set keeps the reuse the pool gives it (mt-remote T=32 16–32768 lost
/// memory to runs sent home at a lower fixed cap: docs/ab.md), and a small one holds little.
fn medium_budget() -> usize {
    let (resident, purged) = arena::pooled_bytes();
    let held = arena::committed_bytes().saturating_sub(resident + purged);
    config::MEDIUM_POOL_BYTES.max(held / config::MEDIUM_POOL_SHARE)
}

/// Bytes of medium runs parked now (statistics).
pub fn medium_bytes() -> usize {
    MEDIUM_BYTES.load(Relaxed)
}

/// Bytes of the runs of a chain of `n` objects of `bin`, 0 for a small class.
fn medium_chain_bytes(bin: usize, n: u32) -> usize {
    if sc::is_small(bin) {
        0
    } else {
        n as usize * sc::bin_size(bin)
    }
}

/// Creates the pool (once, before the first heap is published; the caller holds the heap
/// registry's lock). False when metadata memory is exhausted.
pub fn init() -> bool {
    // Relaxed: the only store is below, made under the registry lock, which we hold; the
    // lock orders it before this load, so coherence makes us read it.
    if !POOL.load(Relaxed).is_null() {
        return true;
    }
    let Some(p) = crate::sys::meta::alloc(core::mem::size_of::<SharedPool>(), 64) else {
        return false;
    };
    // Release: pairs with `get`'s Acquire, which reads this pointer and so synchronizes with
    // this store: the pool's memory (zeroed by the OS, handed out under the metadata lock) is
    // then known to be initialised to its reader. (Every taker also got its heap through the
    // registry lock after this store; the Acquire makes `get` correct without relying on that.)
    POOL.store(p as *mut SharedPool, Release);
    true
}

/// The pool; `None` until the first heap exists.
#[inline]
fn get() -> Option<&'static SharedPool> {
    let p = POOL.load(Acquire);
    // SAFETY: `p` is null or fresh zeroed metadata memory that is never freed; all-zero is a
    // pool of empty slots (null atomics), and only atomics are ever written to it.
    unsafe { p.as_ref() }
}

/// Parks `c` for any heap to take; gives it back when the class's slots are all taken.
///
/// # Safety
/// `c` is a well-formed, non-empty, null-terminated chain of free objects of `bin` that the
/// caller owns (of a medium `bin`: whole free runs, each first page tagged with its owner).
/// Only `c.head` and `c.n` are read (`c.n` exact): `c.tail` may be null, and a refused chain
/// comes back as it was given.
pub unsafe fn park(bin: usize, c: Chain) -> Result<(), Chain> {
    let Some(pool) = get() else { return Err(c) };
    // Always a class (a chain of `bin`'s objects); `get` leaves no panic path.
    let Some(class) = pool.classes.get(bin) else {
        return Err(c);
    };
    let bytes = medium_chain_bytes(bin, c.n);
    if bytes > 0 {
        let budget = medium_budget();
        // Relaxed: see `MEDIUM_BYTES`.
        if MEDIUM_BYTES
            .fetch_update(Relaxed, Relaxed, |b| {
                (b + bytes <= budget).then_some(b + bytes)
            })
            .is_err()
        {
            return Err(c);
        }
    }
    // SAFETY: as the caller contract.
    let r = unsafe { class.push(c) };
    if r.is_err() && bytes > 0 {
        MEDIUM_BYTES.fetch_sub(bytes, Relaxed);
    }
    r
}

/// Pops one chain of `bin` and gives back its share of [`MEDIUM_BYTES`].
fn pop(pool: &SharedPool, bin: usize) -> LocalList {
    // Always a class (callers pass a bin); `get` leaves no panic path.
    let Some(class) = pool.classes.get(bin) else {
        return LocalList::EMPTY;
    };
    let got = class.pop();
    let bytes = medium_chain_bytes(bin, got.count);
    if bytes > 0 {
        MEDIUM_BYTES.fetch_sub(bytes, Relaxed);
    }
    got
}

/// Takes one parked chain of `bin`, or an empty list.
pub fn take(bin: usize) -> LocalList {
    match get() {
        Some(pool) => {
            let got = pop(pool, bin);
            if got.count > 0 {
                stamp_taken(pool, bin);
            }
            got
        }
        None => LocalList::EMPTY,
    }
}

/// Takes one parked chain of small `bin`, or an empty list, keeping at most `max` objects of
/// a longer one: the rest is parked again (walking only the `max` taken), unless the class's
/// slots have filled meanwhile, when the whole chain is taken.
pub fn take_at_most(bin: usize, max: u32) -> LocalList {
    let got = take(bin);
    if got.count <= max || max == 0 {
        return got;
    }
    // SAFETY: a chain the pool held: a well-formed null-terminated list of exactly
    // `got.count` free objects of small `bin`, ours since the take.
    let (piece, rest) = unsafe { Chain::take(got.head, max) };
    let rest = Chain {
        head: rest,
        tail: null_mut(),
        n: got.count - piece.n,
    };
    // SAFETY: `rest` is the detached remainder: non-empty (`got.count > max`), null-terminated,
    // exactly `rest.n` free objects of small `bin` that we own; `park` does not read its tail.
    match unsafe { park(bin, rest) } {
        Ok(()) => LocalList {
            head: piece.head,
            count: piece.n,
        },
        Err(rest) => {
            // SAFETY: `piece.tail` is the last object of the piece cut from this same chain;
            // linking the remainder back restores it.
            unsafe { crate::ds::list::set_next(piece.tail, rest.head) };
            got
        }
    }
}

/// Records a take of `bin` now. Stamps are at least 1: 0 means "never taken", which must not
/// read as a take at boot on a clock that starts at boot (`CLOCK_MONOTONIC`: a machine up for
/// less than an interval saw every class as recently taken).
fn stamp_taken(pool: &SharedPool, bin: usize) {
    // Relaxed: a hint for decay's choice of classes.
    pool.taken_ms[bin].store(crate::sys::os::now_ms().max(1), Relaxed);
}

/// Milliseconds since some heap last took a chain of `bin`; `u64::MAX` if none ever did.
fn since_taken(pool: &SharedPool, bin: usize, now_ms: u64) -> u64 {
    age(pool.taken_ms[bin].load(Relaxed), now_ms)
}

/// Age of a take stamp (0: never).
fn age(stamp: u64, now_ms: u64) -> u64 {
    match stamp {
        0 => u64::MAX,
        t => now_ms.saturating_sub(t),
    }
}

/// Whether some heap took a chain of `bin` within the last `interval_ms` (a relaxed hint).
pub fn taken_within(bin: usize, now_ms: u64, interval_ms: u64) -> bool {
    get().is_some_and(|pool| since_taken(pool, bin, now_ms) < interval_ms)
}

/// Decay of the pool, at most once per `interval_ms` for the whole process: the chains of
/// every class nobody took from for an interval go home. Returns objects sent.
pub fn decay(now_ms: u64, interval_ms: u64, stats: &Counters) -> u64 {
    let last = DECAY_MS.load(Relaxed);
    // Relaxed: the stamp only elects one caller per interval; the chains move by the cache's
    // own Acquire/Release hand-offs.
    if now_ms.saturating_sub(last) < interval_ms
        || DECAY_MS
            .compare_exchange(last, now_ms, Relaxed, Relaxed)
            .is_err()
    {
        return 0;
    }
    let Some(pool) = get() else { return 0 };
    let mut sent = 0;
    for bin in 0..NUM_BINS {
        if since_taken(pool, bin, now_ms) >= interval_ms {
            sent += drain_class(pool, bin, stats);
        }
    }
    sent
}

/// Sends every parked chain home (`malloc_trim`). Returns objects sent.
pub fn send_all_home(stats: &Counters) -> u64 {
    let Some(pool) = get() else { return 0 };
    (0..NUM_BINS).map(|bin| drain_class(pool, bin, stats)).sum()
}

fn drain_class(pool: &SharedPool, bin: usize, stats: &Counters) -> u64 {
    let mut sent = 0;
    loop {
        let got = pop(pool, bin);
        if got.count == 0 {
            break;
        }
        sent += got.count as u64;
        // SAFETY: the swap made the chain ours: null-terminated free objects of `bin`, each in
        // a page tagged with its owner.
        unsafe { send_home(bin, got.head, stats, true) };
    }
    if sent > 0 {
        stats.add_shared(Ev::PoolSentHome, sent);
    }
    sent
}

#[cfg(test)]
mod tests {
    use super::age;

    #[test]
    fn a_class_never_taken_is_not_taken_recently_even_just_after_boot() {
        // The clock starts at boot: 500 ms after it, a stamp of 0 must not read as a take
        // 500 ms ago.
        assert_eq!(age(0, 500), u64::MAX);
        assert_eq!(age(1, 500), 499);
        assert_eq!(age(600, 500), 0);
    }
}
