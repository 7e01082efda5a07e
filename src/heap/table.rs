//! The id → heap table (design.md §6) that page tags are decoded against: written once per
//! heap by the registry when it creates the heap, read lock-free by any thread. Apart from the
//! registry so that the paths delivering objects to a heap (`send`) need nothing of the
//! registry's.

use super::Heap;
use crate::page::page_tag::MAX_OWNER;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicPtr, AtomicU32, Ordering::*};

pub const MAX_HEAPS: usize = MAX_OWNER as usize + 1;

static HEAPS: [AtomicPtr<Heap>; MAX_HEAPS] = [const { AtomicPtr::new(null_mut()) }; MAX_HEAPS];
/// Heaps published in [`HEAPS`] (ids `0..PUBLISHED`), for `stash-steal`'s lock-free probe.
static PUBLISHED: AtomicU32 = AtomicU32::new(0);

/// Publishes heap `id`.
///
/// # Safety
/// Called once per id, in increasing order, under the registry lock, with `p` an initialised
/// heap that is never freed.
pub(super) unsafe fn publish(id: u32, p: *mut Heap) {
    // Release: a thread that reads this slot (for a tag carrying `id`) sees the initialised heap.
    HEAPS[id as usize].store(p, Release);
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
    unsafe { &*HEAPS[id as usize].load(Acquire) }
}

/// Heaps published so far, ids `0..n`: each [`get`]-able. Acquire pairs with `publish`'s
/// Release.
pub fn published() -> u32 {
    PUBLISHED.load(Acquire)
}
