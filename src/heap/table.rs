//! The id → heap table (design.md §6) that page tags are decoded against: written once per
//! heap by the registry when it creates the heap, read lock-free by any thread. Apart from the
//! registry so that the paths delivering objects to a heap (`send`) need nothing of the
//! registry's.

use super::Heap;
use crate::page::page_tag::MAX_OWNER;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicPtr, AtomicU32, Ordering::*};

pub const MAX_HEAPS: usize = MAX_OWNER as usize + 1;

/// Slots of [`HEAPS`]: a power of two at least [`MAX_HEAPS`], so that an id masked with
/// [`SLOT_MASK`] indexes it without a bounds check (whose panic path would sit inside `malloc`
/// and `free`). Every id is below `MAX_HEAPS`, so the mask changes none.
pub const SLOTS: usize = MAX_HEAPS.next_power_of_two();
const SLOT_MASK: u32 = SLOTS as u32 - 1;

/// The index of heap `id` in a table of [`SLOTS`] entries (`id` itself: ids are below
/// [`MAX_HEAPS`]); the mask shows the compiler the bound.
#[inline(always)]
pub const fn slot(id: u32) -> usize {
    (id & SLOT_MASK) as usize
}

static HEAPS: [AtomicPtr<Heap>; SLOTS] = [const { AtomicPtr::new(null_mut()) }; SLOTS];
/// Heaps published in [`HEAPS`] (ids `0..PUBLISHED`), for `stash-steal`'s lock-free probe.
static PUBLISHED: AtomicU32 = AtomicU32::new(0);

/// Publishes heap `id`.
///
/// # Safety
/// Called once per id, in increasing order, under the registry lock, with `p` an initialised
/// heap that is never freed.
pub(super) unsafe fn publish(id: u32, p: *mut Heap) {
    // Release: a thread that reads this slot (for a tag carrying `id`) sees the initialised heap.
    HEAPS[slot(id)].store(p, Release);
    // Release: a thread that reads the count finds the slots below it published. (C11: its
    // Acquire load synchronizes with this store; slot `id` was stored before it in this
    // thread, and each earlier slot by a publish that happened-before ours through the
    // registry lock, so all happen-before that load. A plain store heads no release sequence
    // over later counts, but each later count's store is itself Release.)
    PUBLISHED.store(id + 1, Release);
}

/// The heap with id `id`, which a page tag named.
#[inline]
pub fn get(id: u32) -> &'static Heap {
    // SAFETY: a tag with owner `id` is written only after heap `id` was published (Release
    // above); heaps are never freed. (C11: the tag reached us through some happens-before
    // chain from its store, which the owner made after publishing the heap, so the slot's
    // store happens-before this load, which therefore reads the heap, never null; the Acquire
    // pairs with the Release directly as well.)
    unsafe { &*HEAPS[slot(id)].load(Acquire) }
}

/// Heaps published so far, ids `0..n`: each [`get`]-able. Acquire pairs with `publish`'s
/// Release.
pub fn published() -> u32 {
    PUBLISHED.load(Acquire)
}
