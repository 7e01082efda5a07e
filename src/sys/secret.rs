//! The hardened lane's per-process secrets (`config::SECURE`): the keys free-list links are
//! encoded with (`ds::list` holds the encoding) and the address window every decoded link
//! must fall in. Set once at start-up, before any free list exists, then only read.

use core::cell::UnsafeCell;

/// One cache line: every decode reads the keys and the window together.
#[repr(C, align(64))]
struct Secrets {
    keys: [usize; 3],
    lo: usize,
    len: usize,
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
    keys: [0; 3],
    lo: 0,
    len: usize::MAX,
}));

#[inline(always)]
fn get() -> &'static Secrets {
    // SAFETY: no write is concurrent with a read (see `Cell`); the writers use no reference.
    unsafe { &*S.0.get() }
}

/// Draws the keys. Called once by start-up; a fork child restarting start-up keeps its
/// parent's keys (its inherited lists are encoded with them).
pub fn init() {
    if get().keys[0] != 0 {
        return;
    }
    let w = crate::sys::os::random_words();
    // SAFETY: start-up, with no reader (see `Cell`); a raw write, no reference held.
    unsafe {
        let k = &raw mut (*S.0.get()).keys;
        // A zero first key would read as "not drawn" again.
        *k = [w[0] as usize | 1, w[1] as usize, w[2] as usize];
    }
}

/// Narrows the window decoded links must fall in to `[lo, lo + len)` (the arena). Called by
/// start-up (the arena's reservation). Not in the unit tests, whose lists are made of objects
/// outside the arena (`ds::list::tests::objects`) while other tests start the allocator.
pub fn set_window(lo: usize, len: usize) {
    if cfg!(test) {
        return;
    }
    // SAFETY: start-up, with no reader (see `Cell`); raw writes, no reference held.
    unsafe {
        (*S.0.get()).lo = lo;
        (*S.0.get()).len = len;
    }
}

/// Key `i` (0, 1 or 2).
#[inline(always)]
pub fn key(i: usize) -> usize {
    get().keys[i]
}

/// Whether `p` lies in the window.
#[inline(always)]
pub fn in_window(p: usize) -> bool {
    let s = get();
    p.wrapping_sub(s.lo) < s.len
}
