//! Metadata memory: a bump allocator over mmap'd chunks for heaps and side tables. Never goes
//! through `malloc`, never frees (heaps are recycled, not destroyed).

use crate::sys::os;
use crate::sys::sync::SpinLock;
use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};

const CHUNK: usize = 4 << 20;

struct Bump {
    cur: usize,
    end: usize,
}

static META: SpinLock<Bump> = SpinLock::new(Bump { cur: 0, end: 0 });
/// Bytes handed out (written under the lock, read by the statistics without it).
static USED: AtomicUsize = AtomicUsize::new(0);

/// Zeroed memory for `size` bytes aligned to `align` (a power of two ≤ 4096), or `None` when
/// the OS refuses. In the hardened lane each record (a heap, a thread cache, the shared
/// pool: a few per thread) gets its own mapping between guard pages, so an overflow out of an
/// arena block or another record cannot reach it unnoticed; if that mapping fails, the chunk.
pub fn alloc(size: usize, align: usize) -> Option<*mut u8> {
    if crate::config::SECURE {
        if let Some(p) = os::map_guarded(size.next_multiple_of(os::PAGE)) {
            USED.fetch_add(size, Relaxed);
            return Some(p);
        }
    }
    let mut m = META.lock();
    let mut p = (m.cur + align - 1) & !(align - 1);
    if m.cur == 0 || p + size > m.end {
        let len = size.max(CHUNK).next_multiple_of(os::PAGE);
        let c = os::map_rw(len)? as usize;
        m.cur = c;
        m.end = c + len;
        p = c;
    }
    m.cur = p + size;
    USED.fetch_add(size, Relaxed);
    Some(p as *mut u8)
}

/// Bytes of metadata handed out so far (never freed: heaps are recycled). The chunks they come
/// from are mapped 4 MiB at a time and faulted in as used.
pub fn used_bytes() -> usize {
    USED.load(Relaxed)
}

pub fn lock_for_fork() {
    META.raw_lock();
}

/// # Safety
/// Called after [`lock_for_fork`] in the same process image (parent or child).
pub unsafe fn unlock_after_fork() {
    // SAFETY: caller contract: we hold the lock from `lock_for_fork`, or are the only thread
    // left in the child.
    unsafe { META.raw_unlock() };
}
