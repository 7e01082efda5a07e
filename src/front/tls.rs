//! Initial-exec TLS for the thread cache (design.md §5): the cache is a `.tbss` symbol defined in
//! assembly and addressed as `%fs:0 + sym@GOTTPOFF` — one GOT load and one add, in the preload
//! library as in executables (where the linker relaxes it to a constant). Stable Rust's
//! `thread_local!` would call `__tls_get_addr` on every access from a cdylib.
//!
//! glibc zero-fills the static TLS block of every new thread, and all-zero is the thread
//! cache's "uninitialised" state, so no per-access check is needed.

use crate::front::tcache::ThreadCache;

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
compile_error!("hakozuna's initial-exec TLS access is implemented for x86-64 Linux only");

core::arch::global_asm!(
    ".pushsection .tbss,\"awT\",@nobits",
    ".p2align 6",
    ".globl hakozuna_tcache_tls",
    ".hidden hakozuna_tcache_tls",
    ".type hakozuna_tcache_tls,@object",
    ".size hakozuna_tcache_tls,{size}",
    "hakozuna_tcache_tls:",
    ".zero {size}",
    ".popsection",
    size = const core::mem::size_of::<ThreadCache>(),
);

const _: () = assert!(core::mem::align_of::<ThreadCache>() <= 64);

/// This thread's cache.
#[inline(always)]
pub fn tcache() -> *mut ThreadCache {
    let p: *mut ThreadCache;
    // SAFETY: reads the thread pointer (%fs:0) and the GOT entry the dynamic linker filled
    // with the symbol's static-TLS offset, and touches no other memory. Both are constant for
    // the life of the thread, which is why `pure, nomem` (reads the compiler need not order
    // against any store) is sound: same thread, same result.
    unsafe {
        core::arch::asm!(
            "movq %fs:0, {0}",
            "addq hakozuna_tcache_tls@GOTTPOFF(%rip), {0}",
            out(reg) p,
            options(att_syntax, nostack, pure, nomem),
        );
    }
    p
}
