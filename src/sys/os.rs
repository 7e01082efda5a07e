//! Platform layer: the only module that makes system calls. Every function is a thin safe
//! wrapper that reports failure as `None`/`false`; nothing here allocates.

use core::ptr::null_mut;
use core::sync::atomic::AtomicU32;

pub const PAGE: usize = 4096;

/// Reserves `len` bytes of address space with no access and no swap reservation.
pub fn reserve(len: usize) -> Option<*mut u8> {
    map(len, libc::PROT_NONE, libc::MAP_NORESERVE)
}

/// Maps `len` bytes of zeroed read/write memory.
pub fn map_rw(len: usize) -> Option<*mut u8> {
    map(len, libc::PROT_READ | libc::PROT_WRITE, 0)
}

/// Maps `len` bytes of lazily-faulted zeroed read/write memory that is not charged to
/// overcommit accounting (side tables sized for the whole arena).
pub fn map_rw_noreserve(len: usize) -> Option<*mut u8> {
    map(len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_NORESERVE)
}

fn map(len: usize, prot: i32, extra: i32) -> Option<*mut u8> {
    // SAFETY: an anonymous private mapping at a kernel-chosen address cannot alias any
    // existing Rust object.
    let p = unsafe {
        libc::mmap(
            null_mut(),
            len,
            prot,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | extra,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        None
    } else {
        Some(p as *mut u8)
    }
}

/// Unmaps a range this crate mapped.
///
/// # Safety
/// `[p, p+len)` was mapped by this module and holds no live object.
pub unsafe fn unmap(p: *mut u8, len: usize) {
    // SAFETY: `[p, p+len)` was mapped by this module and holds no live object (caller
    // contract), so no Rust reference points into it.
    unsafe { libc::munmap(p as *mut libc::c_void, len) };
}

/// Makes a reserved range readable and writable.
///
/// # Safety
/// `[p, p+len)` lies in a reservation made by [`reserve`].
pub unsafe fn commit(p: *mut u8, len: usize) -> bool {
    // SAFETY: `[p, p+len)` lies in our own `PROT_NONE` reservation (caller contract); making
    // it readable and writable affects no existing object.
    unsafe {
        libc::mprotect(
            p as *mut libc::c_void,
            len,
            libc::PROT_READ | libc::PROT_WRITE,
        ) == 0
    }
}

/// Maps `len` bytes (a multiple of [`PAGE`]) of zeroed read/write memory between two
/// inaccessible guard pages, so a linear overflow into or out of it faults (hardened lane).
/// Never unmapped.
pub fn map_guarded(len: usize) -> Option<*mut u8> {
    let r = reserve(len + 2 * PAGE)?;
    // SAFETY: `r + PAGE .. + len` lies inside the reservation just made.
    let p = unsafe { r.add(PAGE) };
    // SAFETY: as above: our own fresh `PROT_NONE` reservation.
    if unsafe { commit(p, len) } {
        Some(p)
    } else {
        // SAFETY: our fresh reservation, holding nothing.
        unsafe { unmap(r, len + 2 * PAGE) };
        None
    }
}

/// 24 bytes from the kernel's random source (`getrandom`, not blocking), mixed with the
/// time-stamp counter and an address so that a failed call still gives per-process values.
pub fn random_words() -> [u64; 3] {
    let mut w = [0u64; 3];
    // SAFETY: `w` is a valid out-buffer of 24 bytes; a short or failed read leaves zeros.
    unsafe { libc::getrandom(w.as_mut_ptr() as *mut libc::c_void, 24, libc::GRND_NONBLOCK) };
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `rdtsc` only reads the time-stamp counter.
    let tsc = unsafe { core::arch::x86_64::_rdtsc() };
    #[cfg(not(target_arch = "x86_64"))]
    let tsc = now_ms();
    let mut seed = tsc ^ (&w as *const _ as u64).rotate_left(32);
    for x in &mut w {
        // splitmix64
        seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        *x ^= z ^ (z >> 31);
    }
    w
}

/// Ends the process with `SIGABRT`, as glibc does on a detected heap error.
pub fn abort() -> ! {
    // SAFETY: `abort` takes no arguments and does not return.
    unsafe { libc::abort() }
}

/// Makes a range of whole pages read-only (a static that must never be written again).
///
/// # Safety
/// `[p, p+len)` is page aligned and no Rust code writes it afterwards.
pub unsafe fn protect_read(p: *mut u8, len: usize) -> bool {
    // SAFETY: the range holds only objects nobody writes any more (caller contract), so
    // removing write access breaks nothing.
    unsafe { libc::mprotect(p as *mut libc::c_void, len, libc::PROT_READ) == 0 }
}

/// Gives the physical pages of a range back to the OS; the range stays mapped and reads as zero.
///
/// # Safety
/// `[p, p+len)` is mapped by this crate and holds no live object.
pub unsafe fn purge(p: *mut u8, len: usize) -> bool {
    // SAFETY: `[p, p+len)` is mapped by this crate and holds no live object (caller contract),
    // so zeroing its pages loses nothing.
    unsafe { libc::madvise(p as *mut libc::c_void, len, libc::MADV_DONTNEED) == 0 }
}

/// Grows or shrinks a mapped range, moving it if needed; its resident pages move with it.
///
/// # Safety
/// `[p, p+old)` lies within one mapping made by this module, and nothing else uses it.
pub unsafe fn remap(p: *mut u8, old: usize, new: usize) -> Option<*mut u8> {
    // SAFETY: `[p, p+old)` is a range of one of our mappings that nothing else uses (caller
    // contract); moving or resizing it invalidates only that range, which the caller replaces.
    let q = unsafe { libc::mremap(p as *mut libc::c_void, old, new, libc::MREMAP_MAYMOVE) };
    if q == libc::MAP_FAILED {
        None
    } else {
        Some(q as *mut u8)
    }
}

/// Moves the pages of `[p, p+len)` to `[dst, dst+len)`, replacing what was mapped there: the
/// page tables move, so resident pages stay resident and nothing is copied. False (and nothing
/// moved) if the kernel refuses, e.g. a source spanning two mappings on kernels before 6.17.
///
/// # Safety
/// `[p, p+len)` is a range of our mappings that nothing uses; `[dst, dst+len)` is a range of
/// our mappings that holds nothing anyone reads, disjoint from the source.
pub unsafe fn remap_fixed(p: *mut u8, len: usize, dst: *mut u8) -> bool {
    // SAFETY: both ranges are ours and unused (caller contract): moving the source's pages over
    // the destination invalidates only those two ranges, which the caller accounts for.
    let q = unsafe {
        libc::mremap(
            p as *mut libc::c_void,
            len,
            len,
            libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
            dst as *mut libc::c_void,
        )
    };
    q == dst as *mut libc::c_void
}

pub fn set_errno(e: i32) {
    // SAFETY: __errno_location returns this thread's errno slot, always valid.
    unsafe { *libc::__errno_location() = e }
}

pub fn errno() -> i32 {
    // SAFETY: as in `set_errno`.
    unsafe { *libc::__errno_location() }
}

/// Sleeps while `*word == expected` (the check and the sleep are atomic with respect to
/// [`futex_wake_one`] on the same word, futex(2)). Returns on a wake, a signal, at once when
/// the word differs, or spuriously: the caller re-checks. Leaves errno unchanged (a lock taken
/// inside `free` must not change it).
pub fn futex_wait(word: &AtomicU32, expected: u32) {
    let saved = errno();
    // SAFETY: FUTEX_WAIT reads the aligned 32-bit word `word` points to, which is alive for
    // the whole call (a shared borrow); a null timeout means no other memory is read.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            null_mut::<libc::timespec>(),
        );
    }
    set_errno(saved);
}

/// Wakes up to `n` threads sleeping in [`futex_wait`] on `word`. Leaves errno unchanged.
pub fn futex_wake(word: &AtomicU32, n: i32) {
    let saved = errno();
    // SAFETY: FUTEX_WAKE only uses the address as a key; it reads and writes no memory.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            n,
        );
    }
    set_errno(saved);
}

/// `sched_yield`: the thread gives its CPU to another runnable thread, if any (the locks sleep
/// on futexes instead; `front::interleave` and the lock tests' spin-then-yield model use it).
pub fn yield_now() {
    // SAFETY: no preconditions.
    unsafe {
        libc::sched_yield();
    }
}

/// The time-stamp counter (`rdtsc`): cycles at a constant rate on the x86-64 CPUs this crate
/// builds for, read without a system call.
pub fn cycles() -> u64 {
    // SAFETY: `rdtsc` has no preconditions on x86-64.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// CPUs this process may run on (`sched_getaffinity` of the first caller, at least 1), read
/// once: a later change of the affinity is not seen.
pub fn cpus() -> usize {
    static CPUS: AtomicU32 = AtomicU32::new(0);
    let n = CPUS.load(core::sync::atomic::Ordering::Relaxed);
    if n != 0 {
        return n as usize;
    }
    // SAFETY: an all-zero `cpu_set_t` is valid, and the call fills at most its size.
    let n = unsafe {
        let mut set: libc::cpu_set_t = core::mem::zeroed();
        if libc::sched_getaffinity(0, core::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0 {
            libc::CPU_COUNT(&set).max(1) as u32
        } else {
            1
        }
    };
    // Relaxed: every caller computes the same count; the cache only saves the system call.
    CPUS.store(n, core::sync::atomic::Ordering::Relaxed);
    n as usize
}

/// Milliseconds of CLOCK_MONOTONIC_COARSE (a vDSO read, no syscall).
pub fn now_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// Writes bytes to stderr, ignoring errors (diagnostics only).
pub fn write_stderr(b: &[u8]) {
    write_fd(2, b);
}

/// Writes all of `b` to descriptor `fd`, retrying short writes and `EINTR`. False on any
/// other error (the rest is dropped).
pub fn write_fd(fd: i32, mut b: &[u8]) -> bool {
    while !b.is_empty() {
        // SAFETY: the slice is valid for reads of its length.
        let n = unsafe { libc::write(fd, b.as_ptr() as *const libc::c_void, b.len()) };
        if n < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            return false;
        }
        if n == 0 {
            return false;
        }
        b = b.get(n as usize..).unwrap_or(&[]);
    }
    true
}

/// Reads an environment variable without allocating. `name` must end in NUL.
pub fn getenv(name: &[u8]) -> Option<&'static [u8]> {
    debug_assert_eq!(name.last(), Some(&0));
    // SAFETY: `name` is NUL-terminated; getenv returns NULL or a NUL-terminated string owned by
    // the environment, which we only read during start-up.
    unsafe {
        let p = libc::getenv(name.as_ptr() as *const libc::c_char);
        if p.is_null() {
            return None;
        }
        let len = libc::strlen(p);
        Some(core::slice::from_raw_parts(p as *const u8, len))
    }
}

/// The calling thread's thread pointer (`%fs:0`): a distinct, constant address per live
/// thread, read without a call.
#[inline]
pub fn thread_pointer() -> usize {
    let tp: usize;
    // SAFETY: reads the thread control block's self pointer at %fs:0, which x86-64 Linux sets
    // for every thread, and touches no other memory.
    unsafe {
        core::arch::asm!(
            "movq %fs:0, {0}",
            out(reg) tp,
            options(att_syntax, nostack, pure, readonly, preserves_flags),
        );
    }
    tp
}

/// Hints the CPU to load the line at `p` (any address, null included: a prefetch never
/// faults). The next malloc from a bin reads its new head's link; objects freed by other
/// threads arrive cold, and the prefetch overlaps that miss with the caller's work.
#[inline(always)]
pub fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `prefetcht0` has no architectural effect and never faults, whatever `p` is.
    unsafe {
        core::arch::x86_64::_mm_prefetch(p as *const i8, core::arch::x86_64::_MM_HINT_T0)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    /// The permissions `/proc/self/maps` shows for address `a`.
    fn perms_at(a: usize) -> std::string::String {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        for l in maps.lines() {
            let (range, rest) = l.split_once(' ').unwrap();
            let (lo, hi) = range.split_once('-').unwrap();
            let (lo, hi) = (
                usize::from_str_radix(lo, 16).unwrap(),
                usize::from_str_radix(hi, 16).unwrap(),
            );
            if (lo..hi).contains(&a) {
                return rest[..4].into();
            }
        }
        panic!("{a:#x} is not mapped");
    }

    #[test]
    fn guarded_mapping_has_inaccessible_neighbours() {
        let len = 3 * PAGE;
        let p = map_guarded(len).unwrap() as usize;
        assert_eq!(perms_at(p - 1), "---p");
        assert_eq!(perms_at(p), "rw-p");
        assert_eq!(perms_at(p + len - 1), "rw-p");
        assert_eq!(perms_at(p + len), "---p");
        // SAFETY: `p` is a fresh writable mapping of `len` bytes.
        unsafe { core::ptr::write_bytes(p as *mut u8, 1, len) };
    }

    #[test]
    fn random_words_differ() {
        let (a, b) = (random_words(), random_words());
        assert_ne!(a, b);
        assert!(a.iter().all(|&w| w != 0));
    }
}
