//! The heap registry (design.md §6): heap ids, claiming and releasing heaps, the id → heap
//! table page tags are decoded against, the decay and trim of released heaps (design.md §10),
//! and the registry's share of the fork lock.

use super::{pool, Heap, OwnedHeap};
use crate::config::{self, RELEASED_DECAY_MAX};
use crate::page::page_tag::MAX_OWNER;
use crate::stats::{Counters, Ev};
use crate::sys::sync::SpinLock;
use crate::sys::{options, os};
use core::ptr::{null_mut, NonNull};
use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering::*};

pub const MAX_HEAPS: usize = MAX_OWNER as usize + 1;

static HEAPS: [AtomicPtr<Heap>; MAX_HEAPS] = [const { AtomicPtr::new(null_mut()) }; MAX_HEAPS];
/// Heaps published in [`HEAPS`] (ids `0..PUBLISHED`), for `stash-steal`'s lock-free probe.
static PUBLISHED: AtomicU32 = AtomicU32::new(0);

/// Released heaps wait on a LIFO stack: a new thread takes the most recently released heap,
/// whose memory is the most likely to be still resident and in cache (thread churn). A heap
/// deep in the stack is not stranded: [`decay_released`] reaches it, and other heaps' refills
/// steal from its stashes (`stash-steal`).
struct Registry {
    free: *mut Heap,
    next_id: u32,
}

// SAFETY: the raw pointers name 'static heaps; the registry lock serialises access.
unsafe impl Send for Registry {}

static REG: SpinLock<Registry> = SpinLock::new(Registry {
    free: null_mut(),
    next_id: 0,
});

/// Clock (ms) of the last [`decay_released`] pass.
static RELEASED_DECAY_MS: AtomicU64 = AtomicU64::new(0);

/// Claims a heap for the calling thread: the most recently released one, else a new one.
/// `None` only when 65,535 heaps are live or metadata memory is exhausted.
pub fn claim() -> Option<OwnedHeap> {
    let mut r = REG.lock();
    if let Some(h) = NonNull::new(r.free) {
        // SAFETY: heaps on the queue are 'static and unowned; their link is touched only under
        // the registry lock, which we hold.
        unsafe {
            r.free = *h.as_ref().next_free.get();
            h.as_ref().stats.add(Ev::HeapsAdopted, 1);
        }
        // Dequeued under the lock: nobody else holds a handle on it.
        return Some(OwnedHeap { heap: h });
    }
    if r.next_id as usize >= MAX_HEAPS {
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
    // Release: a thread that reads the count finds the slots below it published.
    PUBLISHED.store(id + 1, Release);
    // SAFETY: `meta::alloc` returned a non-null pointer. A new heap: nobody else has a handle.
    Some(OwnedHeap {
        heap: unsafe { NonNull::new_unchecked(p) },
    })
}

/// Returns a heap to the registry (thread exit), consuming the owner's handle.
pub fn release(owned: OwnedHeap) {
    let hp = owned.heap.as_ptr();
    let mut r = REG.lock();
    // SAFETY: heaps on the stack are 'static and their links are touched only under the
    // registry lock, which we hold.
    unsafe { *(*hp).next_free.get() = r.free };
    r.free = hp;
}

/// Runs `f` on each released heap, as its owner for the call, under the registry lock (so no
/// thread can claim one meanwhile), until `f` returns false.
fn for_each_released(mut f: impl FnMut(&mut OwnedHeap) -> bool) {
    let r = REG.lock();
    let mut h = r.free;
    while let Some(nn) = NonNull::new(h) {
        // SAFETY: `h` is on the released stack, 'static, and its link is touched only under
        // the registry lock, which we hold.
        h = unsafe { *nn.as_ref().next_free.get() };
        // A released heap has no owner, and none can claim it while we hold the lock: this
        // handle is the only one while it lives, and it ends with this iteration, the heap
        // staying on the stack.
        let mut lent = OwnedHeap { heap: nn };
        if !f(&mut lent) {
            break;
        }
    }
}

/// Decay of released heaps, which have no thread to run it (design.md §10): from any thread's
/// epoch and from every thread exit, at most once per decay interval for the whole
/// process, each released heap whose own decay is due runs it — remote frees queued to it are
/// drained, medium runs and free pages unused for an interval go back, and empty segments go
/// to the arena's pool — up to [`RELEASED_DECAY_MAX`] heaps per pass; the rest are reached at
/// the next passes, as those decayed are not due again for an interval.
pub fn decay_released() {
    let now = os::now_ms();
    let last = RELEASED_DECAY_MS.load(Relaxed);
    // Relaxed: the stamp only elects one caller per interval; the heaps themselves are
    // reached under the registry lock.
    if now.saturating_sub(last) < options::decay_ms()
        || RELEASED_DECAY_MS
            .compare_exchange(last, now, Relaxed, Relaxed)
            .is_err()
    {
        return;
    }
    let mut budget = RELEASED_DECAY_MAX;
    for_each_released(|h| {
        h.drain_queues();
        if h.decay_if_due() {
            h.release_empty_segments(true);
            budget -= 1;
        }
        budget > 0
    });
}

/// `malloc_trim` for released heaps: every one's queues drained and free pages purged, and
/// its empty segments given to the arena's pool. Returns bytes purged.
pub fn trim_released() -> usize {
    let mut bytes = 0;
    for_each_released(|h| {
        h.drain_queues();
        bytes += h.purge_free_pages();
        h.release_empty_segments(false);
        true
    });
    bytes
}

/// The heap with id `id`, which a page tag named.
#[inline]
pub fn get(id: u32) -> &'static Heap {
    // SAFETY: a tag with owner `id` is written only after heap `id` was published (Release
    // above); heaps are never freed.
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
