//! The hardened lane's checks on the program's pointers (`config::SECURE`, docs/design.md
//! "Hardened lane"): a block passed to `free` or `realloc` must be the start of a live block,
//! and a link popped from a thread bin must name a block of the bin's class. A failed check
//! is reported in one line on stderr and aborts (`sys::diag::fatal`). The other lanes never
//! call this module.

use crate::ds::list;
use crate::page::size_class::{self as sc, NUM_BINS};
use crate::page::{arena, page_tag};
use crate::sys::{diag, options};

/// Aborts unless arena pointer `p` (at offset `off`, on a page tagged `tag`) is the start of a
/// block this allocator handed out and that is not free; returns its bin.
#[inline(always)]
pub fn check_arena(p: *mut u8, off: usize, tag: u32, call: &str) -> usize {
    // Tags are made by `page_tag::encode` or zero: a bin below NUM_BINS means a live run's.
    let bin = page_tag::bin_of(tag);
    if bin >= NUM_BINS {
        invalid(call, "invalid pointer (no block allocated here)", p)
    }
    // SAFETY: `bin < NUM_BINS` (just checked).
    if !unsafe { arena::is_block_start(off, bin) } {
        invalid(call, "invalid pointer (not the start of a block)", p)
    }
    // SAFETY: `p` starts a block of `bin` in a tagged run: mapped, 16-byte aligned, at least
    // 16 bytes.
    if unsafe { list::marked_free(p) } {
        invalid(call, "double free (the block is already free)", p)
    }
    bin
}

/// The `free` check of an arena pointer ([`check_arena`]), then the block is marked free;
/// true instead, with the block left unmarked, when freed blocks are to be zeroed first
/// (`HAKOZUNA_ZERO_ON_FREE`: the caller calls [`zero_and_mark`]). Pointers outside the arena
/// are checked by the large table ([`bad_free`]).
///
/// # Safety
/// `p` (at arena offset `off`, on a page tagged `tag`) is passed to `free`, which goes on to
/// free it.
#[inline(always)]
#[must_use]
pub unsafe fn check_free(p: *mut u8, off: usize, tag: u32) -> bool {
    check_arena(p, off, tag, "free");
    if options::zero_on_free() {
        return true;
    }
    // SAFETY: `p` starts a live block (just checked) of at least 16 bytes, now ours.
    unsafe { list::mark_free(p) };
    false
}

/// Zeroes block `p` of `bin` and marks it free.
///
/// # Safety
/// `p` is a live block of `bin` being freed, accepted by [`check_free`].
pub unsafe fn zero_and_mark(p: *mut u8, bin: usize) {
    // SAFETY: a live block of `bin` the program gives up (caller contract): its bytes are ours.
    unsafe {
        core::ptr::write_bytes(p, 0, sc::bin_size(bin));
        list::mark_free(p);
    }
}

/// The link `n` of an object popped from a thread bin of `bin` (decoded, unchecked): aborts
/// unless it is null or a 16-byte aligned pointer into the arena, on a page of `bin`. Not the
/// exact start-of-block test (`free` makes that): a forged link needs the process's keys,
/// and a corrupted one decodes to a random word, which passes these tests about once in 2^32
/// (alignment and a 64 GiB arena) times the share of arena pages holding `bin`.
#[inline(always)]
pub fn check_link(n: *mut u8, bin: usize) {
    if n.is_null() {
        return;
    }
    let ok = match arena::offset(n) {
        Some(off) => n as usize & 15 == 0 && page_tag::bin_of(arena::tag_at(off)) == bin,
        None => false,
    };
    if !ok {
        diag::fatal(
            "corrupted free list (a link names no free block of its class)",
            n,
        );
    }
}

/// Reports `call(): what: p` and aborts.
#[cold]
#[inline(never)]
pub fn invalid(call: &str, what: &str, p: *mut u8) -> ! {
    let mut l = diag::Line::new();
    l.str("hakozuna: ")
        .str(call)
        .str("(): ")
        .str(what)
        .str(": ")
        .hex(p as u64)
        .emit();
    crate::sys::os::abort()
}

/// A free of a pointer hakozuna cannot take: reported with `checked`, fatal in the hardened
/// lane, otherwise ignored (the block is left alone). Here rather than in `alloc` so that the
/// remote-free path (`tcache`) reaches it without an import cycle.
pub(super) fn bad_free(p: *mut u8, msg: &[u8]) {
    if crate::config::SECURE {
        invalid(
            "free",
            "invalid pointer (not allocated by hakozuna, or already freed)",
            p,
        );
    }
    if crate::config::CHECKED {
        diag::Line::new().bytes(msg).emit();
    }
}

/// [`bad_free`] of an arena pointer whose page tag is zero: no live object starts there.
pub(super) fn bad_tag(p: *mut u8) {
    bad_free(
        p,
        b"hakozuna: free of an arena pointer with no live page (double or wild free) ignored",
    );
}
