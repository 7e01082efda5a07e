//! The C API (design.md §14) of the preload libraries, with glibc's documented semantics.
//! Compiled only into the cdylib crates (feature `capi`).

use crate::front::alloc;
use crate::sys::os::{self, PAGE};
use core::ffi::{c_int, c_void};

#[no_mangle]
pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    // SAFETY: called from C, outside the allocator.
    unsafe { alloc::malloc(size) as *mut c_void }
}

#[no_mangle]
pub unsafe extern "C" fn free(p: *mut c_void) {
    // SAFETY: C contract: `p` is null or a live block from this allocator, not used again.
    unsafe { alloc::free(p as *mut u8) }
}

#[no_mangle]
pub unsafe extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    // SAFETY: called from C, outside the allocator.
    unsafe { alloc::calloc(n, size) as *mut c_void }
}

#[no_mangle]
pub unsafe extern "C" fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: C contract: `p` is null or a live block from this allocator.
    unsafe { alloc::realloc(p as *mut u8, size) as *mut c_void }
}

#[no_mangle]
pub unsafe extern "C" fn reallocarray(p: *mut c_void, n: usize, size: usize) -> *mut c_void {
    match n.checked_mul(size) {
        // SAFETY: C contract: `p` is null or a live block from this allocator.
        Some(total) => unsafe { alloc::realloc(p as *mut u8, total) as *mut c_void },
        None => {
            os::set_errno(libc::ENOMEM);
            core::ptr::null_mut()
        }
    }
}

/// glibc's memalign: alignments below 16 act as 16, a non-power of two is rounded up, and
/// one that cannot be rounded is EINVAL.
unsafe fn memalign_glibc(align: usize, size: usize) -> *mut c_void {
    if align > usize::MAX / 2 + 1 {
        os::set_errno(libc::EINVAL);
        return core::ptr::null_mut();
    }
    // SAFETY: called from the C entry points, outside the allocator; the alignment is a power
    // of two.
    unsafe { alloc::memalign(align.max(1).next_power_of_two(), size) as *mut c_void }
}

#[no_mangle]
pub unsafe extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    // SAFETY: called from C, outside the allocator.
    unsafe { memalign_glibc(align, size) }
}

/// glibc ≤ 2.37 implements aligned_alloc as memalign; we match the system's behaviour.
#[no_mangle]
pub unsafe extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    // SAFETY: called from C, outside the allocator.
    unsafe { memalign_glibc(align, size) }
}

#[no_mangle]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> c_int {
    if !align.is_power_of_two() || !align.is_multiple_of(core::mem::size_of::<*mut c_void>()) {
        return libc::EINVAL;
    }
    let saved = os::errno();
    // SAFETY: called from C, outside the allocator; `align` is a power of two (checked above).
    let p = unsafe { alloc::memalign(align, size) };
    if p.is_null() {
        // posix_memalign reports through its return value and leaves errno alone.
        os::set_errno(saved);
        return libc::ENOMEM;
    }
    // SAFETY: C contract: `out` is a valid pointer to write the result to.
    unsafe { *out = p as *mut c_void };
    0
}

#[no_mangle]
pub unsafe extern "C" fn valloc(size: usize) -> *mut c_void {
    // SAFETY: called from C, outside the allocator; PAGE is a power of two.
    unsafe { alloc::memalign(PAGE, size) as *mut c_void }
}

#[no_mangle]
pub unsafe extern "C" fn pvalloc(size: usize) -> *mut c_void {
    match size.max(1).checked_next_multiple_of(PAGE) {
        // SAFETY: called from C, outside the allocator; PAGE is a power of two.
        Some(rounded) => unsafe { alloc::memalign(PAGE, rounded) as *mut c_void },
        None => {
            os::set_errno(libc::ENOMEM);
            core::ptr::null_mut()
        }
    }
}

#[no_mangle]
pub unsafe extern "C" fn malloc_usable_size(p: *mut c_void) -> usize {
    // SAFETY: C contract: `p` is null or a live block from this allocator.
    unsafe { alloc::usable_size(p as *mut u8) }
}

#[no_mangle]
pub unsafe extern "C" fn malloc_trim(_pad: usize) -> c_int {
    // SAFETY: called from C, outside the allocator.
    unsafe { alloc::trim() as c_int }
}

#[no_mangle]
pub unsafe extern "C" fn free_sized(p: *mut c_void, _size: usize) {
    // SAFETY: C contract: `p` is null or a live block from this allocator, not used again.
    unsafe { alloc::free(p as *mut u8) }
}

#[no_mangle]
pub unsafe extern "C" fn free_aligned_sized(p: *mut c_void, _align: usize, _size: usize) {
    // SAFETY: C contract: `p` is null or a live block from this allocator, not used again.
    unsafe { alloc::free(p as *mut u8) }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    // Never unwind across the C ABI; no formatting (it could allocate through us).
    // SAFETY: abort has no preconditions.
    unsafe { libc::abort() }
}
