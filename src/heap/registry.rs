//! The heap registry (design.md §6): heap ids, claiming and releasing heaps, the id → heap
//! table page tags are decoded against, and the registry's share of the fork lock.

use super::{pool, Heap, OwnedHeap};
use crate::config;
use crate::page::page_tag::MAX_OWNER;
use crate::stats::{Counters, Ev};
use crate::sys::sync::SpinLock;
use core::ptr::{null_mut, NonNull};
use core::sync::atomic::{AtomicPtr, AtomicU32, Ordering::*};

pub const MAX_HEAPS: usize = MAX_OWNER as usize + 1;

static HEAPS: [AtomicPtr<Heap>; MAX_HEAPS] = [const { AtomicPtr::new(null_mut()) }; MAX_HEAPS];
/// Heaps published in [`HEAPS`] (ids `0..PUBLISHED`), for `stash-steal`'s lock-free probe.
static PUBLISHED: AtomicU32 = AtomicU32::new(0);

/// Released heaps wait in a FIFO queue, so every one is adopted again in turn and what other
/// threads keep freeing into it is reclaimed (a LIFO stack could strand a heap forever).
struct Registry {
    free: *mut Heap,
    free_tail: *mut Heap,
    next_id: u32,
}

// SAFETY: the raw pointers name 'static heaps; the registry lock serialises access.
unsafe impl Send for Registry {}

static REG: SpinLock<Registry> = SpinLock::new(Registry {
    free: null_mut(),
    free_tail: null_mut(),
    next_id: 0,
});

/// Claims a heap for the calling thread: the longest-released one, else a new one.
/// `None` only when 65,535 heaps are live or metadata memory is exhausted.
pub fn claim() -> Option<OwnedHeap> {
    let mut r = REG.lock();
    if let Some(h) = NonNull::new(r.free) {
        // SAFETY: heaps on the queue are 'static and unowned; their link is touched only under
        // the registry lock, which we hold.
        unsafe {
            r.free = *h.as_ref().next_free.get();
            if r.free.is_null() {
                r.free_tail = null_mut();
            }
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
    // SAFETY: heaps on the queue are 'static and their links are touched only under the
    // registry lock, which we hold.
    unsafe {
        *(*hp).next_free.get() = null_mut();
        if r.free_tail.is_null() {
            r.free = hp;
        } else {
            *(*r.free_tail).next_free.get() = hp;
        }
    }
    r.free_tail = hp;
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

/// Heaps created so far.
pub fn heap_count() -> usize {
    REG.lock().next_id as usize
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
