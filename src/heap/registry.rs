//! The heap registry (design.md §6): heap ids, the owner's handle ([`OwnedHeap`]), claiming and
//! releasing heaps, the id → heap table page tags are decoded against, the decay and trim of
//! released heaps (design.md §10), and the registry's share of the fork lock.

use super::{pool, Heap, HeapLocal};
use crate::config::{self, RELEASED_DECAY_MAX};
use crate::page::page_tag::MAX_OWNER;
use crate::stats::{Counters, Ev, GLOBAL};
use crate::sys::sync::SpinLock;
use crate::sys::{options, os};
use core::ptr::{null_mut, NonNull};
use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering::*};

pub const MAX_HEAPS: usize = MAX_OWNER as usize + 1;
const _: () = assert!(options::MAX_HEAPS_DEFAULT as usize == MAX_HEAPS - 1);

static HEAPS: [AtomicPtr<Heap>; MAX_HEAPS] = [const { AtomicPtr::new(null_mut()) }; MAX_HEAPS];
/// Heaps published in [`HEAPS`] (ids `0..PUBLISHED`), for `stash-steal`'s lock-free probe.
static PUBLISHED: AtomicU32 = AtomicU32::new(0);

/// The owning thread's handle on its heap, and the only way to the heap's local part.
///
/// Only this module makes one: [`claim`] for a heap nobody owns, and the released-heap passes
/// below for a heap they hold off the queue or under the registry lock. [`release`] consumes
/// it. So at most one exists per heap at a time. It is neither `Clone` nor `Send` (a `NonNull`
/// field), so it stays with the thread that holds it, and a `&mut OwnedHeap` is exclusive access
/// to the local part. `repr(transparent)`: `Option<OwnedHeap>` is then one word whose all-zero
/// value is `None`, which the thread cache's all-zero start relies on.
#[repr(transparent)]
pub struct OwnedHeap {
    heap: NonNull<Heap>,
}

const _: () = assert!(core::mem::size_of::<Option<OwnedHeap>>() == core::mem::size_of::<usize>());

impl OwnedHeap {
    /// The heap, shared part and counters; `'static` because heaps are never freed, so the
    /// result does not hold the handle borrowed.
    #[inline(always)]
    pub fn heap(&self) -> &'static Heap {
        // SAFETY: `heap` came from `claim` or the released queue: 'static heaps in metadata
        // memory that is never freed.
        unsafe { self.heap.as_ref() }
    }

    /// The local part.
    #[inline(always)]
    pub(super) fn local(&mut self) -> &mut HeapLocal {
        // SAFETY: this handle is the only one for its heap (only this module makes one, one per
        // heap at a time) and nothing else reaches `local`, so `&mut self` is exclusive access;
        // the result borrows `self`, so two cannot be live at once.
        unsafe { &mut *self.heap().local.get() }
    }
}

/// A heap's place on the queue of released heaps.
pub(super) struct Link {
    next: *mut Heap,
    /// Clock (ms) when the heap was released.
    released_ms: u64,
}

/// The link of heap `h`.
///
/// # Safety
/// The caller holds the registry lock, or holds `h` off the queue (detached by `trim_released`),
/// and has no other reference to the link.
#[allow(clippy::mut_from_ref)]
unsafe fn link(h: NonNull<Heap>) -> &'static mut Link {
    // SAFETY: heaps are 'static; exclusive access to the link by the caller contract.
    unsafe { &mut *h.as_ref().link.get() }
}

/// Released heaps wait in a FIFO queue, so every one is claimed again in turn and what other
/// threads keep freeing into it is reused. A LIFO stack (the most recently released, warmest
/// heap first) was tried: a new thread then always took the same few heaps, and small objects
/// freed into the deeper ones waited unused (16 exited threads' 32-byte objects: RSS 71.6 →
/// 93.0 MiB while 8 later threads allocated 24 MiB, against no growth with the queue;
/// docs/ab.md). Each heap is just as warm when threads come and go one generation at a time.
struct Registry {
    free: *mut Heap,
    free_tail: *mut Heap,
    next_id: u32,
}

// SAFETY: the raw pointer names a 'static heap; the registry lock serialises access.
unsafe impl Send for Registry {}

static REG: SpinLock<Registry> = SpinLock::new(Registry {
    free: null_mut(),
    free_tail: null_mut(),
    next_id: 0,
});

/// Clock (ms) of the last [`decay_released`] pass.
static RELEASED_DECAY_MS: AtomicU64 = AtomicU64::new(0);

/// Claims a heap for the calling thread: the longest-released one, else a new one.
/// `None` when `HAKOZUNA_MAX_HEAPS` heaps (at most 65,534) exist and none is released, or
/// metadata memory is exhausted.
pub fn claim() -> Option<OwnedHeap> {
    claim_below(options::max_heaps() as usize)
}

/// [`claim`] for the shared fallback heap (`front::fallback`), which may also take the one id
/// [`claim`] never hands out, so it exists even when threads own every other.
pub fn claim_fallback() -> Option<OwnedHeap> {
    claim_below(MAX_HEAPS)
}

fn claim_below(limit: usize) -> Option<OwnedHeap> {
    let mut r = REG.lock();
    if let Some(h) = NonNull::new(r.free) {
        // SAFETY: heaps on the queue are 'static and unowned; we hold the registry lock.
        unsafe {
            r.free = link(h).next;
            if r.free.is_null() {
                r.free_tail = null_mut();
            }
            h.as_ref().stats.add(Ev::HeapsAdopted, 1);
        }
        // Taken off the queue under the lock: nobody else holds a handle on it.
        return Some(OwnedHeap { heap: h });
    }
    if r.next_id as usize >= limit.min(MAX_HEAPS) {
        return None;
    }
    if config::SHARED_POOL && !pool::init() {
        return None;
    }
    let id = r.next_id;
    let p = crate::sys::meta::alloc(core::mem::size_of::<Heap>(), 64)? as *mut Heap;
    // SAFETY: fresh zeroed metadata memory; all-zero is a valid empty heap (null lists, zero
    // counts, zero atomics), so only the id needs writing.
    unsafe {
        (*p).id = id;
        (*p).stats.add(Ev::HeapsCreated, 1);
    }
    r.next_id = id + 1;
    // Release: a thread that reads this slot (for a tag carrying `id`) sees the initialised heap.
    HEAPS[id as usize].store(p, Release);
    // Release: a thread that reads the count finds the slots below it published. (C11: its
    // Acquire load synchronizes with this store; slot `id` was stored before it in this
    // thread, and each earlier slot by a claim that released the registry lock before we took
    // it, so all happen-before that load. A plain store heads no release sequence over later
    // counts, but each later count's store is itself Release.)
    PUBLISHED.store(id + 1, Release);
    // SAFETY: `meta::alloc` returned a non-null pointer. A new heap: nobody else has a handle.
    Some(OwnedHeap {
        heap: unsafe { NonNull::new_unchecked(p) },
    })
}

/// Returns a heap to the registry (thread exit), consuming the owner's handle.
pub fn release(owned: OwnedHeap) {
    let now = os::now_ms();
    let hp = owned.heap;
    let mut r = REG.lock();
    // SAFETY: we hold the registry lock; the heap is not on the queue yet, and the old tail is.
    unsafe {
        let l = link(hp);
        l.next = null_mut();
        l.released_ms = now;
        match NonNull::new(r.free_tail) {
            Some(t) => link(t).next = hp.as_ptr(),
            None => r.free = hp.as_ptr(),
        }
    }
    r.free_tail = hp.as_ptr();
}

/// Decay of released heaps, which have no thread to run it (design.md §10): from any thread's
/// epoch and from every thread exit, at most once per decay interval for the whole process.
/// The walk starts at the longest-released heap; heaps released less than an interval ago are
/// left warm for the next threads to claim. Each older one whose own decay is due has its queues drained, its decay pass run, its empty
/// segments given to the arena's pool and its small free objects offered to the shared pool; a
/// pass stops after [`RELEASED_DECAY_MAX`] heaps that had something to give back, so heaps
/// already given back cost only their check and deeper ones are reached.
pub fn decay_released() {
    let now = os::now_ms();
    let interval = options::decay_ms();
    let last = RELEASED_DECAY_MS.load(Relaxed);
    // Relaxed: the stamp only elects one caller per interval; the heaps themselves are
    // reached under the registry lock.
    if now.saturating_sub(last) < interval
        || RELEASED_DECAY_MS
            .compare_exchange(last, now, Relaxed, Relaxed)
            .is_err()
    {
        return;
    }
    {
        let r = REG.lock();
        let mut budget = RELEASED_DECAY_MAX;
        let mut h = r.free;
        while let Some(nn) = NonNull::new(h) {
            // SAFETY: a heap on the queue; we hold the registry lock.
            let l = unsafe { link(nn) };
            h = l.next;
            if now.saturating_sub(l.released_ms) < interval {
                continue;
            }
            // A released heap has no owner, and none can claim it while we hold the lock: this
            // handle is the only one while it lives, and it ends with this iteration, the heap
            // staying on the queue.
            let mut lent = OwnedHeap { heap: nn };
            if !lent.decay_due(now) {
                continue;
            }
            lent.drain_queues();
            let mut worked = lent.decay_local(now);
            lent.release_empty_segments(true);
            worked |= lent.offer_small();
            if worked {
                budget -= 1;
                if budget == 0 {
                    break;
                }
            }
        }
    }
    // The process-wide part, once per pass and outside the registry lock.
    super::decay::decay_shared(now, &GLOBAL, true);
}

/// `malloc_trim` for released heaps: every one's queues drained, free pages purged, empty
/// segments given to the arena's pool and small free objects offered to the shared pool.
/// The heaps are taken off the queue for the purge and put back after, so the registry lock
/// is not held across `madvise` (threads starting meanwhile get new heaps; a fork meanwhile
/// leaves them unreachable in the child, as other threads' heaps are). Returns bytes purged.
pub fn trim_released() -> usize {
    let detached = {
        let mut r = REG.lock();
        r.free_tail = null_mut();
        core::mem::replace(&mut r.free, null_mut())
    };
    let mut bytes = 0;
    let mut h = detached;
    let mut last = null_mut();
    while let Some(nn) = NonNull::new(h) {
        // SAFETY: the detached heaps are reachable only through `detached`, which we hold.
        h = unsafe { link(nn) }.next;
        // Off the queue and unowned: this handle is the only one while it lives.
        let mut lent = OwnedHeap { heap: nn };
        lent.drain_queues();
        bytes += lent.purge_free_pages();
        lent.release_empty_segments(false);
        lent.offer_small();
        last = nn.as_ptr();
    }
    if let Some(last) = NonNull::new(last) {
        let mut r = REG.lock();
        // SAFETY: `last` ends the detached list, which we still hold; relinking it happens
        // under the registry lock. The detached heaps were released before any queued since,
        // so they go back in front.
        unsafe { link(last) }.next = r.free;
        if r.free.is_null() {
            r.free_tail = last.as_ptr();
        }
        r.free = detached;
    }
    bytes
}

/// The heap with id `id`, which a page tag named.
#[inline]
pub fn get(id: u32) -> &'static Heap {
    // SAFETY: a tag with owner `id` is written only after heap `id` was published (Release
    // above); heaps are never freed. (C11: the tag reached us through some happens-before
    // chain from its store, which the owner made after publishing the heap, so the slot's
    // store happens-before this load, which therefore reads the heap, never null; the Acquire
    // pairs with the Release directly as well.)
    unsafe { &*HEAPS[id as usize].load(Acquire) }
}

/// Heaps published so far, ids `0..n`: each [`get`]-able. Acquire pairs with `claim`'s
/// Release.
pub fn published() -> u32 {
    PUBLISHED.load(Acquire)
}

/// Calls `f` with every published heap's counters.
pub fn for_each_heap(mut f: impl FnMut(&Counters)) {
    for id in 0..published() {
        f(&get(id).stats);
    }
}

pub fn lock_for_fork() {
    REG.raw_lock();
}

/// # Safety
/// Pairs with [`lock_for_fork`] in the parent, or runs in the single-threaded child.
pub unsafe fn unlock_after_fork() {
    // SAFETY: caller contract: we hold the lock from `lock_for_fork`, or are the only thread
    // left in the child.
    unsafe { REG.raw_unlock() };
}
