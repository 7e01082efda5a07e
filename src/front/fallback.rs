//! The shared fallback cache (design.md §11, "Rare paths"): one thread cache, with a heap of its
//! own, that serves the arena-sized mallocs of threads without a cache of their own under a
//! lock — a retired thread (other keys' destructors run after ours) and a thread that could not
//! claim a heap (`HAKOZUNA_MAX_HEAPS` heaps owned, metadata memory exhausted). Without it each
//! such malloc took a large mapping of at least a page, and a thread without a heap retried the
//! registry on every call.
//!
//! Its heap is claimed on first use with `registry::claim_fallback`, which may take the one heap
//! id threads never get, and is never released. Nobody's TLS slot points at the cache, so no
//! free fast path matches its heap: frees of its blocks, from any thread, are remote frees to
//! it, which its refills take back like any owner's.

use crate::front::bin::Bin;
use crate::front::tcache::{self, ThreadCache, ACTIVE};
use crate::heap::registry;
use crate::sys::sync::SpinLock;
use core::ptr::null_mut;

struct Fallback {
    /// The cache, ACTIVE once claimed; null before, or for good when the claim failed.
    cache: *mut ThreadCache,
    failed: bool,
}

// SAFETY: the cache pointer names metadata memory that lives for ever; the lock serialises
// every use of it.
unsafe impl Send for Fallback {}

static FALLBACK: SpinLock<Fallback> = SpinLock::new(Fallback {
    cache: null_mut(),
    failed: false,
});

/// A block of `bin` from the fallback cache, or null when it cannot have a heap or memory is
/// exhausted (the caller then uses the large tier).
///
/// Callers: start-up has completed and the arena is reserved (`lifecycle::fallback_alloc`).
pub fn alloc(bin: usize) -> *mut u8 {
    let mut f = FALLBACK.lock();
    if f.cache.is_null() {
        if f.failed {
            return null_mut();
        }
        let Some(c) = claim() else {
            f.failed = true;
            return null_mut();
        };
        f.cache = c;
    }
    // SAFETY: the fallback cache is ACTIVE (set up by `claim`) and, under the lock, ours
    // alone; no other reference to it exists (no TLS slot names it).
    let c = unsafe { &mut *f.cache };
    debug_assert!(c.state == ACTIVE);
    // Always a bin (callers pass a small or medium class); `get_mut` leaves no panic path.
    let Some(b) = c.bins.get_mut(bin) else {
        return null_mut();
    };
    // SAFETY: a bin of an ACTIVE cache is a well-formed list with an exact count.
    let p = unsafe { Bin::pop(b, bin) };
    if !p.is_null() {
        return p;
    }
    // SAFETY: ACTIVE, and the bin is empty (just checked), as `refill` requires.
    unsafe { c.refill(bin) }
}

/// The fallback heap and its cache, made ACTIVE.
fn claim() -> Option<*mut ThreadCache> {
    let mut h = registry::claim_fallback()?;
    let Some(c) = tcache::cache_of(h.heap().id) else {
        h.enter();
        let given_back = h.retire();
        h.leave();
        registry::release(h, given_back);
        return None;
    };
    // SAFETY: `c` is the cache of the heap we now own, not referenced by anyone (a released
    // heap's cache was retired by its last owner, whose slot no longer names it).
    unsafe {
        (*c).start(h);
        (*c).fallback = true;
    }
    Some(c)
}

pub fn lock_for_fork() {
    FALLBACK.raw_lock();
}

/// # Safety
/// Pairs with [`lock_for_fork`] (parent) or runs in the single-threaded child.
pub unsafe fn unlock_after_fork() {
    // SAFETY: caller contract: we hold the lock, or are the only thread in the child.
    unsafe { FALLBACK.raw_unlock() };
}
