//! The thread-cache pointer in initial-exec TLS (design.md §5): one word per thread, a `.tdata`
//! symbol defined in assembly and read as `%fs:(sym@GOTTPOFF)` — one GOT load and one load
//! through the thread pointer, in the preload library as in executables (where the linker
//! relaxes the GOT load to a constant). Stable Rust's `thread_local!` would call
//! `__tls_get_addr` on every access from a cdylib.
//!
//! Only the pointer is in TLS; the caches themselves are in metadata memory (`lifecycle`).
//! glibc keeps a few hundred bytes of static TLS spare for libraries loaded after start
//! (`glibc.rtld.optional_static_tls`, 512 by default): a word fits, so the libraries, and any
//! cdylib that uses `#[global_allocator] Hakozuna`, can be loaded with `dlopen`.
//!
//! The slot's initial value, in the TLS initialisation image that glibc copies into every new
//! thread (and, for a library loaded with `dlopen`, into every thread alive at that moment),
//! is the address of [`EMPTY`], a static all-zero cache: its bins are empty and its owner
//! bits and adoption range are zero, so the fast paths need no null check — malloc finds an
//! empty bin and free no owner match, and both take their slow paths, where activation
//! replaces the pointer. The address is a relocation in `.tdata`; glibc applies it before it
//! copies the image (rtld copies the initial threads' images after relocating every object;
//! `dlopen` initialises a library's static TLS after relocating it).
//!
//! A retired thread, and a thread while it is being activated, points at [`DEAD`], which is
//! [`EMPTY`] with state DEAD: its mallocs take the fallback cache and its frees the shared path,
//! whatever other destructors run after ours. Neither static is ever written after start-up
//! (`seal` writes DEAD's state once and then maps both read-only, so a stray write faults).

use crate::front::tcache::{ThreadCache, DEAD as DEAD_STATE};
use crate::sys::os;
use core::cell::UnsafeCell;

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
compile_error!("hakozuna's initial-exec TLS access is implemented for x86-64 Linux only");

/// A cache no thread owns, shared by every thread that has no cache of its own. Page aligned
/// and page sized so that [`seal`] can map it read-only without touching anything else.
#[repr(C, align(4096))]
pub struct Stand(UnsafeCell<ThreadCache>);

// SAFETY: after `seal` nothing writes a `Stand` (its pages are read-only); before it only
// start-up writes DEAD's state, before it publishes DONE (Release), and every reader comes
// after an Acquire of DONE (activation and thread exit run after `ensure`).
unsafe impl Sync for Stand {}

impl Stand {
    #[inline(always)]
    fn get(&'static self) -> *mut ThreadCache {
        self.0.get()
    }
}

/// The cache of a thread that has not activated: all zero (UNINIT). In `.bss`.
pub static EMPTY: Stand = Stand(UnsafeCell::new(
    // SAFETY: all-zero is a valid ThreadCache (null lists, zero counts, `heap: None`).
    unsafe { core::mem::zeroed() },
));
/// The cache of a retired thread, or of one inside activation: all zero but its state, DEAD,
/// which [`seal`] writes at start-up (so that it too is in `.bss`, not a file-backed 32 KiB).
pub static DEAD: Stand = Stand(UnsafeCell::new(
    // SAFETY: as for EMPTY.
    unsafe { core::mem::zeroed() },
));

core::arch::global_asm!(
    ".pushsection .tdata,\"awT\",@progbits",
    ".p2align 3",
    ".globl hakozuna_tcache_ptr",
    ".hidden hakozuna_tcache_ptr",
    ".type hakozuna_tcache_ptr,@object",
    ".size hakozuna_tcache_ptr,8",
    "hakozuna_tcache_ptr:",
    ".quad {empty}",
    ".popsection",
    empty = sym EMPTY,
);

/// This thread's cache: its own once activated, else [`EMPTY`] or [`DEAD`]. Only a cache in
/// state ACTIVE (or BUSY, during retirement) is the thread's own and may be written; the fast
/// paths read the others' bins, owner bits and adoption range, which are zero.
#[inline(always)]
pub fn tcache() -> *mut ThreadCache {
    let p: *mut ThreadCache;
    // SAFETY: reads the GOT entry the dynamic linker filled with the slot's static-TLS
    // offset, and the slot through the thread pointer. `readonly`: the slot changes only in
    // `set`, an asm the compiler must assume writes memory, so no read is moved across it.
    unsafe {
        core::arch::asm!(
            "movq hakozuna_tcache_ptr@GOTTPOFF(%rip), {0}",
            "movq %fs:({0}), {0}",
            out(reg) p,
            options(att_syntax, nostack, pure, readonly, preserves_flags),
        );
    }
    p
}

/// Points this thread's slot at `tc`.
///
/// # Safety
/// `tc` is [`EMPTY`], [`DEAD`], or a cache the calling thread owns, live until the slot is
/// pointed elsewhere; no reference to the previous cache is used afterwards on this thread.
#[inline]
pub unsafe fn set(tc: *mut ThreadCache) {
    // SAFETY: writes the calling thread's own TLS slot (offset from the GOT, as in `tcache`).
    unsafe {
        core::arch::asm!(
            "movq hakozuna_tcache_ptr@GOTTPOFF(%rip), {t}",
            "movq {p}, %fs:({t})",
            t = out(reg) _,
            p = in(reg) tc,
            options(att_syntax, nostack, preserves_flags),
        );
    }
}

pub fn empty() -> *mut ThreadCache {
    EMPTY.get()
}

pub fn dead() -> *mut ThreadCache {
    DEAD.get()
}

/// Start-up's part: writes DEAD's state, then maps both stand-in caches read-only. Idempotent
/// (a fork child may run start-up again after its parent sealed them). A failed `mprotect`
/// leaves them writable, which changes nothing for a correct program.
pub fn seal() {
    let d = dead();
    // SAFETY: DEAD is only ever read by threads after start-up, which is running on this
    // thread alone (the caller is `lifecycle::start`); once sealed the state is already DEAD,
    // so the read-only pages are not written.
    unsafe {
        if (*d).state != DEAD_STATE {
            (*d).state = DEAD_STATE;
        }
    }
    for s in [&EMPTY, &DEAD] {
        // SAFETY: a `Stand` is page aligned and a whole number of pages; nothing writes it
        // after this point.
        unsafe { os::protect_read(s.get() as *mut u8, core::mem::size_of::<Stand>()) };
    }
}

/// Whether `tc` is one of the stand-ins rather than a thread's own cache.
#[inline]
pub fn is_stand_in(tc: *mut ThreadCache) -> bool {
    tc == empty() || tc == dead()
}

const _: () = assert!(core::mem::size_of::<Stand>().is_multiple_of(os::PAGE));
