//! The allocator's operations, shared by the C API and `GlobalAlloc`: the malloc/free fast
//! paths (design.md §5) and everything built on them (calloc, realloc, aligned allocation,
//! usable size, trim). errno is set to ENOMEM on every failed allocation.

use crate::front::background;
use crate::front::bin::Bin;
use crate::front::hardened;
use crate::front::lifecycle;
use crate::front::tcache::{self, ThreadCache, ACTIVE, UNINIT};
use crate::front::tls;
use crate::heap::registry;
use crate::page::size_class::{self as sc, ARENA_MAX};
use crate::page::{arena, large, page_tag};
use crate::stats::{Ev, GLOBAL};
use crate::sys::os::{self, PAGE};

/// malloc: size → bin, pop the thread bin, return. Everything else is `malloc_slow`.
/// Returns a block of at least `size` bytes aligned to 16, or null with errno ENOMEM.
///
/// # Safety
/// Not called re-entrantly on a thread that is already inside an allocator call (for example
/// from a signal handler that interrupted one): like glibc's, these functions are not
/// async-signal-safe.
#[inline(always)]
pub unsafe fn malloc(size: usize) -> *mut u8 {
    if let Some(bin16) = sc::bin16_of(size) {
        let tc = tls::tcache();
        // SAFETY: `tc` is this thread's cache or a stand-in (`tls`), live for the whole thread;
        // `bin16_of` returns 16 × a bin below NUM_BINS, so the pointer is one of its `bins`; a
        // bin is a well-formed list, a stand-in's always empty (`pop` then only reads), and no
        // reference to the cache is held across this call.
        let p = unsafe { Bin::pop(ThreadCache::bin16(tc, bin16), bin16 >> 4) };
        if !p.is_null() {
            return p;
        }
    }
    // SAFETY: same caller contract as ours (not re-entered from inside the allocator).
    unsafe { malloc_slow(size) }
}

/// Every allocation the thread bin cannot serve: activation, refills, the large tier.
///
/// # Safety
/// As for [`malloc`].
#[cold]
#[inline(never)]
unsafe fn malloc_slow(size: usize) -> *mut u8 {
    let Some(bin) = sc::bin_of(size) else {
        if size == 0 {
            // SAFETY: same caller contract as ours (not re-entered from inside the allocator).
            return unsafe { malloc(1) };
        }
        return large_alloc(size, 0);
    };
    let mut tc = tls::tcache();
    // The state test inline: `activate` is a call with a frame, and every refill passes here.
    // SAFETY: `tc` is the calling thread's cache or a stand-in; a plain read.
    if unsafe { (*tc).state } != ACTIVE {
        // SAFETY: not re-entered from inside the allocator (our caller contract).
        tc = unsafe { lifecycle::activate() };
    }
    if !tc.is_null() {
        // SAFETY: this thread's own ACTIVE cache (the state test or `activate`), which
        // nothing else references; activation returned and holds no reference to it.
        let tc = unsafe { &mut *tc };
        // Activation may itself have allocated into this bin.
        // SAFETY: a thread bin is a well-formed list with an exact count.
        let p = unsafe { Bin::pop(&mut tc.bins[bin], bin) };
        if !p.is_null() {
            return p;
        }
        // SAFETY: the cache is ACTIVE; the bin is empty (checked just above), as `refill`
        // requires.
        let p = unsafe { tc.refill(bin) };
        // SAFETY: start-up has completed (the cache is ACTIVE), and the cache is not used
        // again in this call.
        unsafe { background::start_if_absent() };
        if !p.is_null() {
            return p;
        }
    }
    // No cache of its own (retired, or no heap to be had): the shared fallback cache; without
    // one either (no arena, init recursion, no memory), the large tier.
    let p = lifecycle::fallback_alloc(bin);
    if !p.is_null() {
        return p;
    }
    large_alloc(sc::bin_size(bin), 0)
}

fn large_alloc(size: usize, align: usize) -> *mut u8 {
    let (p, _) = large::alloc(size, align);
    if p.is_null() {
        os::set_errno(libc::ENOMEM);
    }
    p
}

/// free: arena range check, one tag load, the test of the bin the tag names (ours, or a class
/// this thread adopts) → push on that bin. Null is ignored; a pointer this allocator did not
/// hand out is ignored and leaked (reported with the `checked` feature; in the hardened lane,
/// that and a double free abort: `hardened`).
///
/// # Safety
/// `p` is null or a live block from this allocator that nobody uses after the call, and the
/// call is not re-entrant (as for [`malloc`]).
#[inline(always)]
pub unsafe fn free(p: *mut u8) {
    if let Some(off) = arena::offset(p) {
        // The hardened lane reads the page's run start with its tag (`at`: `p`'s offset in
        // its run).
        let (tag, at) = if crate::config::SECURE {
            // SAFETY: hardened lane, `off` an arena offset.
            unsafe { arena::tag_in_run(off) }
        } else {
            (arena::tag_at(off), 0)
        };
        // This thread's cache, or a stand-in (`tls`), whose bins take no tag: then the free
        // takes `free_other`, which activates.
        let tc = tls::tcache();
        // The bin the tag names: the test below decides, with one compare and no branch of
        // its own, whether the object is ours or one `small-adopt` keeps (`Bin::takes`; its
        // key and accept are set by `ThreadCache::start`, `set_adopt` and `retire`).
        // SAFETY: `tc` is live for the whole thread and `tag` was read from the tag table.
        let b = unsafe { ThreadCache::slot(tc, tag) };
        if crate::config::SECURE {
            // SAFETY: `p` is passed to `free`, which frees it below (caller contract); `b` is
            // the bin `tag` names in this thread's live cache or stand-in.
            if unsafe { hardened::check_free(p, at, b) } {
                // SAFETY: `p` is an arena pointer being freed.
                return unsafe { free_checked(p) };
            }
        }
        // SAFETY: `p` is an arena block being freed (caller contract), at offset `off`, `tag`
        // its page tag, and `b` the bin `tag` names in `tc`, the thread's cache or stand-in.
        unsafe { free_arena(p, off, tag, tc, b) }
    } else if !p.is_null() {
        // SAFETY: `p` is being freed (caller contract) and lies outside the arena.
        unsafe { free_outside(p) };
    }
}

/// `free` of an arena block: the tag's bin takes it (ours, or adopted) → push, else `free_other`.
///
/// # Safety
/// `p` is an arena block being freed (as for [`free`]), at arena offset `off`, `tag` its page
/// tag, `tc` the calling thread's cache or stand-in (`tls::tcache`) and `b` the bin `tag`
/// names in it (`ThreadCache::slot`).
#[inline(always)]
unsafe fn free_arena(p: *mut u8, off: usize, tag: u32, tc: *mut ThreadCache, b: *mut Bin) {
    // SAFETY: `b` is a bin (or the guard) of the live cache `tc` (caller contract); plain
    // reads.
    if unsafe { Bin::takes(b, tag) } {
        // SAFETY: a bin takes tags only while its cache owns a heap (`accept` is set with
        // ACTIVE in `start` and zeroed before the heap is taken in `retire`; a stand-in's is
        // 0), so the cache is this thread's own and nothing else references it; the tag is
        // our heap's of the bin's class, or one `set_adopt` lets the bin adopt; `p` is being
        // freed (caller contract: a live block, not used again).
        if unsafe { Bin::push(b, p) } {
            // SAFETY: as above: the thread's own ACTIVE cache; `b` is one of its bins (the
            // guard takes no tag), so its index is below NUM_BINS.
            unsafe { (*tc).overflow(ThreadCache::index(tc, b)) };
        }
        return;
    }
    // The tag read again rather than kept: the test above then consumes its register (one
    // copy fewer on the fast path, one load more here). The tag of a live block's page does
    // not change while the block is live.
    // SAFETY: `p` is an arena pointer being freed (caller contract), this its page tag, and
    // `tc` the thread's cache or stand-in (caller contract).
    unsafe { free_other(p, arena::tag_at(off), tc) };
}

/// Hardened lane: `free` of an arena pointer that failed the quick start-of-block test (every
/// one with `HAKOZUNA_ZERO_ON_FREE=1`, and those of a thread with no cache of its own): the
/// exact test, which aborts on an invalid pointer, then zero the block if asked and free it.
/// Out of line and reached by a tail call, so that the other frees save no registers for it;
/// it finds the offset and tag again, so that the fast path keeps no copy of them.
///
/// # Safety
/// `p` is an arena pointer being freed.
#[cold]
#[inline(never)]
unsafe fn free_checked(p: *mut u8) {
    // SAFETY: `p` is an arena pointer (caller contract).
    let off = unsafe { arena::offset(p).unwrap_unchecked() };
    let tag = arena::tag_at(off);
    hardened::check_arena(p, off, tag, "free");
    // SAFETY: `p` is a live block of its tag's bin (just checked), being freed, at `off`.
    unsafe {
        if crate::sys::options::zero_on_free() {
            hardened::zero(p, page_tag::bin_of(tag));
        }
        let tc = tls::tcache();
        free_arena(p, off, tag, tc, ThreadCache::slot(tc, tag))
    }
}

/// A free of an arena block whose tag is not our heap's: a remote free on an active cache
/// (kept free of calls that need saved registers: its slow paths are tail calls). `free`
/// passes the cache it already holds, which saves reading the thread pointer again.
///
/// # Safety
/// `p` is an arena block being freed, `tag` its page tag and `tc` the calling thread's cache
/// or stand-in (`tls::tcache`).
#[cold]
#[inline(never)]
unsafe fn free_other(p: *mut u8, tag: u32, tc: *mut ThreadCache) {
    // SAFETY: this thread's cache or a stand-in (caller contract), live for the whole thread;
    // a plain read.
    if unsafe { (*tc).state } == ACTIVE {
        // SAFETY: ACTIVE, so the thread's own cache, which nothing else references; `free`
        // found that the tag does not name our heap (`owner_base` cannot change in between:
        // only this thread changes it); `p` is being freed (caller contract) and `tag` is its
        // page tag.
        return unsafe { (*tc).free_remote(p, tag) };
    }
    // SAFETY: `p` is an arena block being freed and `tag` its page tag (caller contract).
    unsafe { free_inactive(p, tag) }
}

/// `free_other` on a cache that is not active: activate it (first call of the thread) or take
/// the shared path (thread exiting or exited).
///
/// # Safety
/// `p` is an arena block being freed and `tag` its page tag.
#[cold]
#[inline(never)]
unsafe fn free_inactive(p: *mut u8, tag: u32) {
    let Some((dst, bin)) = page_tag::decode(tag) else {
        return hardened::bad_tag(p);
    };
    // A stand-in in state UNINIT is the thread's first call: activate. DEAD is a thread that
    // retired or is inside activation: the shared path.
    // SAFETY: `tls::tcache()` is live for the whole thread; a plain read of its state.
    let tc = if unsafe { (*tls::tcache()).state } == UNINIT {
        // SAFETY: not re-entered from inside the allocator (our callers' contract).
        unsafe { lifecycle::activate() }
    } else {
        core::ptr::null_mut()
    };
    if !tc.is_null() {
        // SAFETY: the thread's own ACTIVE cache; activation returned and holds no reference
        // to it.
        let tc = unsafe { &mut *tc };
        if tc.owns(tag) {
            // Activation claimed the very heap this object belongs to: what `free` does with
            // our own object (not `free` itself, whose hardened check would see a second free).
            // SAFETY: ACTIVE (just activated), so the thread's own cache; `bin < NUM_BINS`
            // (decoded from a tag); `p` is a free object of our heap's `bin` (caller contract).
            return unsafe { tc.push_free(p, bin) };
        }
        // A just-activated cache does not adopt (`small-adopt` waits for its first refills).
        // SAFETY: ACTIVE (just activated); `p` is being freed (caller contract) and its tag
        // is nonzero and not our heap's (`mine` failed just above).
        unsafe { tc.free_remote(p, tag) };
    } else {
        // SAFETY: `p` is being freed (caller contract) and its tag decodes to (dst, bin).
        unsafe { tcache::free_shared(p, dst, bin) };
    }
}

/// A free of a pointer outside the arena: a large block, or not ours.
///
/// # Safety
/// `p` is non-null, outside the arena, and being freed (as for [`free`]).
#[cold]
#[inline(never)]
unsafe fn free_outside(p: *mut u8) {
    // SAFETY: `p` is being freed (caller contract): if it is a live large block, nobody uses it
    // after this call.
    if !unsafe { large::free(p) } {
        // Not ours: memory from before the library was loaded, or a wild pointer. We cannot
        // return it anywhere safely, so it is left alone (leaked).
        hardened::bad_free(
            p,
            b"hakozuna: free of a pointer hakozuna did not allocate ignored",
        );
    }
}

/// What a pointer is, for usable-size and realloc.
enum Block {
    Arena(usize),
    Large(usize),
    Unknown,
}

fn classify(p: *mut u8) -> Block {
    if let Some(off) = arena::offset(p) {
        return match page_tag::decode(arena::tag_at(off)) {
            Some((_, bin)) => Block::Arena(sc::bin_size(bin)),
            None => Block::Unknown,
        };
    }
    match large::usable(p) {
        Some(len) => Block::Large(len),
        None => Block::Unknown,
    }
}

/// The usable size of block `p`: at least what was asked for; 0 for null or a pointer this
/// allocator does not know.
///
/// # Safety
/// `p` is null or a live block from this allocator (any other pointer is tolerated, but may
/// be misread if it lies inside the arena).
pub unsafe fn usable_size(p: *mut u8) -> usize {
    match classify(p) {
        Block::Arena(n) | Block::Large(n) => n,
        Block::Unknown => 0,
    }
}

/// A zeroed block of `n * size` bytes, or null with ENOMEM (also when the product overflows).
///
/// # Safety
/// Not called re-entrantly on a thread that is already inside an allocator call (for example
/// from a signal handler that interrupted one): like glibc's, these functions are not
/// async-signal-safe.
pub unsafe fn calloc(n: usize, size: usize) -> *mut u8 {
    let Some(total) = n.checked_mul(size) else {
        os::set_errno(libc::ENOMEM);
        return core::ptr::null_mut();
    };
    if total > ARENA_MAX {
        let (p, zero) = large::alloc(total, 0);
        if p.is_null() {
            os::set_errno(libc::ENOMEM);
        } else if !zero {
            // SAFETY: `p` is a fresh large block of at least `total` bytes.
            unsafe { core::ptr::write_bytes(p, 0, total) };
        }
        return p;
    }
    // SAFETY: same caller contract as ours (not re-entered from inside the allocator).
    let p = unsafe { malloc(total) };
    if !p.is_null() {
        // SAFETY: `p` is a fresh block of at least `total` bytes.
        unsafe { core::ptr::write_bytes(p, 0, total) };
    }
    p
}

/// glibc semantics: `realloc(NULL, n)` = malloc; `realloc(p, 0)` frees and returns NULL; on
/// failure NULL with ENOMEM and the old block untouched.
///
/// # Safety
/// `p` is null or a live block from this allocator; when the result is non-null (or `size` is
/// 0) `p` is given up and not used again. Not re-entrant (as for [`malloc`]).
pub unsafe fn realloc(p: *mut u8, size: usize) -> *mut u8 {
    if p.is_null() {
        // SAFETY: same caller contract as ours.
        return unsafe { malloc(size) };
    }
    if size == 0 {
        // SAFETY: `p` is a block of ours the caller gives up (realloc(p, 0) frees it).
        unsafe { free(p) };
        return core::ptr::null_mut();
    }
    if crate::config::SECURE {
        if let Some(off) = arena::offset(p) {
            hardened::check_arena(p, off, arena::tag_at(off), "realloc");
        }
    }
    let old = match classify(p) {
        Block::Arena(old) => {
            // Same class, or a shrink that keeps at least half: stay in place.
            if size <= old && (sc::bin_of(size) == sc::bin_of(old) || size > old / 2) {
                return p;
            }
            old
        }
        Block::Large(old) => {
            if size <= old && size > old / 2 {
                return p;
            }
            if size > ARENA_MAX {
                // SAFETY: `classify` found `p` in the large table: a live large block.
                return match unsafe { large::resize(p, size) } {
                    Some(q) => q,
                    None => {
                        os::set_errno(libc::ENOMEM);
                        core::ptr::null_mut()
                    }
                };
            }
            old
        }
        Block::Unknown => {
            if crate::config::SECURE {
                hardened::invalid(
                    "realloc",
                    "invalid pointer (not allocated by hakozuna, or already freed)",
                    p,
                );
            }
            // Not ours (see free_outside): its size is unknown, so it cannot be moved.
            os::set_errno(libc::ENOMEM);
            return core::ptr::null_mut();
        }
    };
    // SAFETY: same caller contract as ours.
    let q = unsafe { malloc(size) };
    if q.is_null() {
        return q;
    }
    // SAFETY: `p` is live with `old` usable bytes, `q` is a fresh block of at least `size`
    // bytes, and distinct live blocks do not overlap; then the caller gives `p` up to us.
    unsafe {
        core::ptr::copy_nonoverlapping(p, q, old.min(size));
        free(p);
    }
    q
}

/// Aligned allocation; `align` is a power of two. Alignments up to a page are served by
/// rounding the size up to a multiple of `align`: its class is a carved class whose size is a
/// multiple of `align` (objects of page-aligned runs) or a medium page run (page aligned;
/// `size_class` module note and its tests); only larger alignments take a large mapping.
///
/// # Safety
/// `align` is a power of two. Not re-entrant (as for [`malloc`]).
pub unsafe fn memalign(align: usize, size: usize) -> *mut u8 {
    debug_assert!(align.is_power_of_two());
    if align <= 16 {
        // SAFETY: same caller contract as ours.
        return unsafe { malloc(size) };
    }
    if size > large::MAX_REQUEST {
        os::set_errno(libc::ENOMEM);
        return core::ptr::null_mut();
    }
    if align <= PAGE {
        let s = size.max(1).next_multiple_of(align);
        // SAFETY: same caller contract as ours.
        return unsafe { malloc(s) };
    }
    large_alloc(size.max(1), align)
}

/// `malloc_trim`: sends the shared pool's chains and this thread's buffered remote frees
/// home, sweeps this thread's heap, the heaps of other live threads that are not in a slow
/// path at that moment, and every released heap (threads that exited), so whole small runs go
/// back to their segments, and returns to the OS their free pages, the arena's segment pool
/// and the large cache. Objects cached in threads' bins stay, except what this thread's medium
/// bins hold past their default limits (`MEDIUM_ALONE_BINS`), cut first. True when anything
/// was returned.
///
/// # Safety
/// Not called re-entrantly on a thread that is already inside an allocator call (for example
/// from a signal handler that interrupted one): like glibc's, these functions are not
/// async-signal-safe.
pub unsafe fn trim() -> bool {
    let tc = tls::tcache();
    // SAFETY: `tc` is live for the whole thread; when ACTIVE it is the thread's own, and no
    // other reference to it is live (not called from inside the allocator). Before the pool's
    // chains go home: what central parks of the runs the cut sheds goes with them.
    unsafe {
        if (*tc).state == ACTIVE {
            (*tc).cut_medium_bins();
        }
    }
    registry::trim_pool();
    // SAFETY: `tc` is live for the whole thread; when ACTIVE it is the thread's own, and no
    // other reference to it is live (not called from inside the allocator). A stand-in has
    // no heap to trim.
    let own = unsafe {
        if (*tc).state == ACTIVE {
            (*tc).trim()
        } else {
            0
        }
    };
    // SAFETY: as above; a plain read of the heap id when ACTIVE.
    let own_id = unsafe { ((*tc).state == ACTIVE).then(|| (*tc).heap_id()) };
    let others = registry::trim_owned(own_id);
    let released = registry::trim_released();
    // After the heaps, which give their empty segments to the pool. Heaps count their own
    // purges; the pool's are the process's (as in decay).
    let pooled = arena::purge_pool();
    GLOBAL.add_shared(Ev::BytesPurged, pooled as u64);
    own + others + released + pooled + large::purge_cache() > 0
}
