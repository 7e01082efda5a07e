//! The hardened lane's per-process secrets (`config::SECURE`): the key free-list links are
//! encoded with, the free mark (`ds::list` holds both uses) and the address window every
//! decoded link must fall in. Set once at start-up, before any free list exists, then only
//! read.

use core::cell::UnsafeCell;

/// One cache line: every decode reads the key and the window together.
#[repr(C, align(64))]
struct Secrets {
    /// The links' key (`ds::list::encode`); never zero once drawn.
    key: usize,
    /// The word a free object carries in its second word (`ds::list::is_free`).
    mark: usize,
    /// `key ^ lo`: decoding with it gives a link's offset from `lo` in its high bits,
    /// which the window test needs (`ds::list`).
    key_lo: usize,
    /// The window's start, aligned to `2^k`, the least power of two at least as long as the
    /// window (the arena is reserved so).
    lo: usize,
    /// `!(2^k − 1) | 15`: `(p ^ lo) & mask == 0` for a 16-byte aligned `p` in
    /// `[lo, lo + 2^k)`, the window or up to as much again past its end. One `test`.
    mask: usize,
}

struct Cell(UnsafeCell<Secrets>);

// SAFETY: written only by start-up (`init`, `set_window`), while no other thread reads them:
// every reader runs after start-up, on a thread that read its end (DONE) with Acquire from
// the Release store that follows these writes, or on the thread that ran it, so the writes
// happen-before every read (C11) and the plain reads cannot race. Plain, not atomic, so the
// compiler may keep them in registers across a free or a list walk.
unsafe impl Sync for Cell {}

// Until `set_window`, the window is the whole address space.
static S: Cell = Cell(UnsafeCell::new(Secrets {
    key: 0,
    mark: 0,
    key_lo: 0,
    lo: 0,
    mask: 15,
}));

#[inline(always)]
fn get() -> &'static Secrets {
    // SAFETY: no write is concurrent with a read (see `Cell`); the writers use no reference.
    unsafe { &*S.0.get() }
}

/// Draws the key and the mark. Called once by start-up; a fork child restarting start-up
/// keeps its parent's (its inherited lists are encoded and marked with them).
pub fn init() {
    if get().key != 0 {
        return;
    }
    let w = crate::sys::os::random_words();
    // SAFETY: start-up, with no reader (see `Cell`); raw writes, no reference held.
    unsafe {
        // A zero key would read as "not drawn" again.
        (*S.0.get()).key = w[0] as usize | 1;
        (*S.0.get()).mark = w[1] as usize;
        (*S.0.get()).key_lo = w[0] as usize | 1;
    }
}

/// Narrows the window decoded links must fall in to `[lo, lo + len)` (the arena, `lo`
/// aligned to `len` rounded up to a power of two). Called by start-up (the arena's
/// reservation), after [`init`]. Not in the unit tests, whose lists are made of objects
/// outside the arena (`ds::list::tests::objects`) while other tests start the allocator.
pub fn set_window(lo: usize, len: usize) {
    if cfg!(test) {
        return;
    }
    // SAFETY: start-up, with no reader (see `Cell`); raw writes, no reference held.
    unsafe {
        let span = len.next_power_of_two();
        debug_assert!(lo & (span - 1) == 0);
        (*S.0.get()).lo = lo;
        (*S.0.get()).mask = !(span - 1) | 15;
        (*S.0.get()).key_lo = (*S.0.get()).key ^ lo;
    }
}

/// The links' key.
#[inline(always)]
pub fn key() -> usize {
    get().key
}

/// The free mark.
#[inline(always)]
pub fn mark() -> usize {
    get().mark
}

/// `key() ^ lo()` (see `Secrets::key_lo`).
#[inline(always)]
pub fn key_lo() -> usize {
    get().key_lo
}

/// The window's start.
#[inline(always)]
pub fn lo() -> usize {
    get().lo
}

/// Whether `x = p ^ lo()` is the offset of a 16-byte aligned `p` in the window (or in as
/// much again past it, see `Secrets::mask`): a random word passes about once in 2^32 with a
/// 64 GiB arena.
#[inline(always)]
pub fn in_window(x: usize) -> bool {
    x & get().mask == 0
}
