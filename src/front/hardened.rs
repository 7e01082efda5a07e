//! The hardened lane's checks on the program's pointers (`config::SECURE`, docs/design.md
//! "Hardened lane"): a block passed to `free` or `realloc` must be the start of a live block
//! (the links a thread bin pops are checked where they are decoded, `ds::list::next`). A
//! failed check is reported in one line on stderr and aborts. The other lanes never call this
//! module.

use crate::ds::list;
use crate::front::bin::Bin;
use crate::page::size_class::{self as sc, NUM_BINS};
use crate::page::{arena, page_tag};
use crate::sys::{diag, options};

/// The start-of-block test `free` makes on the fast path for class `bin`
/// (`size_class::start_test`), which each thread bin keeps (`Bin::set_start`). With
/// `HAKOZUNA_ZERO_ON_FREE` the limit is 0: each `free` then takes the out-of-line check, which
/// zeroes the block, and the others pay nothing for the option.
pub fn start_test(bin: usize) -> (u64, u64) {
    let (c, lim) = sc::start_test(bin);
    (c, if options::zero_on_free() { 0 } else { lim })
}

/// Aborts unless arena pointer `p` (at offset `off`, on a page tagged `tag`) is the start of a
/// block this allocator handed out and that is not free. The exact test, out of line:
/// `realloc`, and `free` when its quick test failed.
#[cold]
#[inline(never)]
pub fn check_arena(p: *mut u8, off: usize, tag: u32, call: &str) {
    let bin = page_tag::bin_of(tag);
    if bin >= NUM_BINS {
        invalid(call, "invalid pointer (no block allocated here)", p)
    }
    // SAFETY: hardened lane, `off` an arena offset.
    if !sc::starts_object(bin, unsafe { arena::tag_in_run(off) }.1) {
        invalid(call, "invalid pointer (not the start of a block)", p)
    }
    // SAFETY: `p` starts a block of `bin` in a tagged run: mapped, 16-byte aligned, at least
    // 16 bytes.
    if unsafe { list::is_free(p) } {
        invalid(call, "double free (the block is already free)", p)
    }
}

/// The `free` check of an arena pointer: a multiply and a compare for the start of a block,
/// with the test `(c, lim)` of its tag's class from bin `b` (the one the tag names in the
/// calling thread's cache), and the free mark. True when the test failed: then the caller
/// makes the exact test ([`check_arena`]), which aborts on an invalid pointer (a failed test
/// with a valid one is a bin with no test: the guard, a stand-in or retired cache's, or
/// `HAKOZUNA_ZERO_ON_FREE`). The mark itself is written by the push that follows
/// (`list::set_next`). Pointers outside the arena are checked by the large table
/// ([`bad_free`]).
///
/// # Safety
/// `p` is an arena pointer passed to `free`, `at` its offset in its run as
/// `arena::tag_in_run` gives it, and `b` the bin its page tag names in a live cache
/// (`ThreadCache::slot`).
#[inline(always)]
#[must_use]
pub unsafe fn check_free(p: *mut u8, at: usize, b: *const Bin) -> bool {
    // SAFETY: `b` is a live bin (caller contract), hardened lane.
    let (c, lim) = unsafe { Bin::start_test(b) };
    if (at as u64).wrapping_mul(c) >= lim {
        return true;
    }
    // SAFETY: `p` starts a block of its tag's bin in a tagged run: mapped, 16-byte aligned,
    // at least 16 bytes.
    if unsafe { list::is_free(p) } {
        invalid("free", "double free (the block is already free)", p)
    }
    false
}

/// Zeroes block `p` of `bin` (the push that follows marks it free).
///
/// # Safety
/// `p` is a live block of `bin` being freed, accepted by [`check_arena`].
pub unsafe fn zero(p: *mut u8, bin: usize) {
    // SAFETY: a live block of `bin` the program gives up (caller contract): its bytes are ours.
    unsafe { core::ptr::write_bytes(p, 0, sc::bin_size(bin)) };
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
