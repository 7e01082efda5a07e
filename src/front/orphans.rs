//! Heaps of threads that died holding them (design.md §11, "Rare paths"), found again by thread
//! pointer.
//!
//! A thread normally releases its heap in the thread-exit destructor. It dies holding it when
//! it first allocates in glibc's last destructor round (arming our key then runs no further
//! round), or when no destructor could be registered. Every claim is recorded here by the
//! claimant's thread pointer (the address of its thread control block, at the top of its
//! stack) and process id, and forgotten at release. Two live threads never share a thread
//! pointer, so a thread that finds a record with its own thread pointer and pid at activation
//! is looking at a heap whose holder is dead: it adopts that heap and its cache as they are.
//! glibc reuses the stack (and so the thread pointer) of a finished thread for the next thread
//! it creates, and the kernel's top-down `mmap` usually returns the same address for a new
//! stack, so such a heap stays unused only until a thread starts there again.
//!
//! The pid keeps a fork child away from its parent's records: in the child, a new thread can
//! start on the stack of a parent thread that was in the middle of an allocator call at the
//! fork, whose cache may be inconsistent; it claims a heap of its own instead (as before).
//!
//! The records are a hash table from thread pointer to `pid << 16 | heap id` under a lock,
//! taken once at activation and once at release (never together with another lock); its
//! memory comes from the OS (`large::AddrTable`) and counts as metadata.

use crate::page::large::AddrTable;
use crate::sys::sync::SpinLock;

static HOLDERS: SpinLock<AddrTable> = SpinLock::new(AddrTable::new());

fn value(pid: u32, id: u32) -> usize {
    (pid as usize) << 16 | id as usize
}

/// Records that the calling thread (`tp`, in process `pid`) holds heap `id`, replacing a
/// record of a dead thread of another process at the same thread pointer. Without memory for
/// the table the claim goes unrecorded: the heap is then not found again if its holder dies
/// holding it.
pub fn record(tp: usize, pid: u32, id: u32) {
    let mut t = HOLDERS.lock();
    t.remove(tp);
    let _ = t.insert(tp, value(pid, id));
}

/// Forgets the calling thread's record: it is releasing its heap.
pub fn forget(tp: usize) {
    HOLDERS.lock().remove(tp);
}

/// The id of the heap a dead thread of this process held at thread pointer `tp`, which the
/// calling thread (alive at `tp`, so the holder is dead) now holds: the record stays, as its.
pub fn adopt(tp: usize, pid: u32) -> Option<u32> {
    let v = HOLDERS.lock().get(tp)?;
    if v >> 16 != pid as usize {
        return None;
    }
    Some((v & 0xFFFF) as u32)
}

pub fn lock_for_fork() {
    HOLDERS.raw_lock();
}

/// # Safety
/// Pairs with [`lock_for_fork`] (parent) or runs in the single-threaded child.
pub unsafe fn unlock_after_fork() {
    // SAFETY: caller contract: we hold the lock, or are the only thread in the child.
    unsafe { HOLDERS.raw_unlock() };
}
