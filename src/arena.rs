//! The arena (DESIGN §3): one aligned `PROT_NONE` reservation carved into segments, the page
//! tag table that routes `free`, and the per-segment page bitmaps.
//!
//! Set up once by [`init`]; before that (or if reservation failed) the arena is empty and
//! every range check fails, which sends callers to the large tier.

use crate::bitmap::PageBitmap;
use crate::config::{ARENA_GB_DEFAULT, PAGE_SHIFT, SEGMENT_SHIFT};
use crate::os;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicUsize, Ordering::*};

pub const SEGMENT: usize = 1 << SEGMENT_SHIFT;
pub const PAGES_PER_SEGMENT: usize = SEGMENT >> PAGE_SHIFT;
const _: () = assert!(PAGES_PER_SEGMENT == crate::bitmap::BITS);

// Written once by `init`: BASE, TAGS and SEGS, then LEN with Release. Readers load LEN with
// Acquire before the others.
static BASE: AtomicUsize = AtomicUsize::new(0);
static LEN: AtomicUsize = AtomicUsize::new(0);
static TAGS: AtomicPtr<AtomicU32> = AtomicPtr::new(core::ptr::null_mut());
static SEGS: AtomicPtr<SegMeta> = AtomicPtr::new(core::ptr::null_mut());
static NEXT_SEG: AtomicUsize = AtomicUsize::new(0);

/// Per-segment metadata, owned by the heap that took the segment.
#[repr(C)]
pub struct SegMeta {
    inner: UnsafeCell<SegInner>,
}

#[repr(C)]
pub struct SegInner {
    /// Pages in use.
    pub pages: PageBitmap,
    /// Free pages freed since the last epoch (still resident).
    pub dirty: PageBitmap,
    /// Free pages that were already dirty at the last epoch: purged at the next one.
    pub aged: PageBitmap,
    /// Next segment of the same heap, as index + 1 (0 ends the list).
    pub next: u32,
}

impl SegMeta {
    /// # Safety
    /// Only the owner of the heap that took this segment may call this, and not re-entrantly.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn get(&self) -> &mut SegInner {
        // SAFETY: only the owning heap's owner calls this, never re-entrantly (caller
        // contract), so this `&mut` is the only access to the segment's metadata.
        unsafe { &mut *self.inner.get() }
    }
}

/// Reserves the arena. Tries the configured size, then smaller ones; with nothing reserved the
/// allocator still works through the large tier. Called once, under the init state machine.
pub fn init() {
    let want_gb = crate::diag::env_u64(b"HAKOZUNA_ARENA_GB\0", ARENA_GB_DEFAULT as u64, 0, 1 << 16);
    let mut gb = want_gb as usize;
    while gb > 0 {
        if try_reserve(gb << 30) {
            return;
        }
        gb /= 4;
    }
}

fn try_reserve(len: usize) -> bool {
    let pages = len >> PAGE_SHIFT;
    let nsegs = len / SEGMENT;
    let Some(raw) = os::reserve(len + SEGMENT) else {
        return false;
    };
    let Some(tags) = os::map_rw_noreserve(pages * 4) else {
        // SAFETY: `raw` is our fresh reservation.
        unsafe { os::unmap(raw, len + SEGMENT) };
        return false;
    };
    let Some(segs) = os::map_rw_noreserve(nsegs * core::mem::size_of::<SegMeta>()) else {
        // SAFETY: both ranges are our fresh mappings.
        unsafe {
            os::unmap(raw, len + SEGMENT);
            os::unmap(tags, pages * 4);
        }
        return false;
    };
    // Align the base to a segment; the unaligned slack stays reserved (harmless PROT_NONE).
    let base = (raw as usize + SEGMENT - 1) & !(SEGMENT - 1);
    TAGS.store(tags as *mut AtomicU32, Relaxed);
    SEGS.store(segs as *mut SegMeta, Relaxed);
    BASE.store(base, Relaxed);
    LEN.store(nsegs * SEGMENT, Release);
    true
}

/// Arena byte offset of `p` if `p` lies in the arena.
#[inline(always)]
pub fn offset(p: *const u8) -> Option<usize> {
    // LEN first, with Acquire: a non-zero LEN guarantees we see BASE and the tag table that
    // `try_reserve` stored before its Release. (Both are plain loads on x86-64.)
    let len = LEN.load(Acquire);
    let off = (p as usize).wrapping_sub(BASE.load(Relaxed));
    if off < len {
        Some(off)
    } else {
        None
    }
}

pub fn len() -> usize {
    LEN.load(Acquire)
}

/// Tag of the page at arena offset `off`.
#[inline(always)]
pub fn tag_at(off: usize) -> u32 {
    // SAFETY: `off` came from `offset`, so the page index is inside the tag table, which is
    // mapped for the whole arena before LEN became non-zero.
    unsafe { (*TAGS.load(Relaxed).add(off >> PAGE_SHIFT)).load(Relaxed) }
}

/// Sets the tags of `n` pages starting at `p`.
///
/// # Safety
/// `[p, p + n pages)` is an arena page run owned by the caller's heap.
pub unsafe fn set_tags(p: *mut u8, n: usize, tag: u32) {
    let first = (p as usize - BASE.load(Relaxed)) >> PAGE_SHIFT;
    let t = TAGS.load(Relaxed);
    for i in first..first + n {
        // Relaxed: an object's tag is published to other threads by whatever synchronisation
        // hands them the object.
        // SAFETY: `[p, p + n pages)` is an arena run (caller contract), so page `i` is inside
        // the tag table, mapped for the whole arena before LEN became non-zero.
        unsafe { (*t.add(i)).store(tag, Relaxed) };
    }
}

/// Takes a fresh segment and commits it. `None` when the arena is exhausted or the OS
/// refuses to commit.
pub fn take_segment() -> Option<u32> {
    let nsegs = len() / SEGMENT;
    let idx = NEXT_SEG.fetch_add(1, Relaxed);
    if idx >= nsegs {
        NEXT_SEG.store(nsegs, Relaxed);
        return None;
    }
    // SAFETY: the segment lies inside our reservation and nobody else was given index `idx`.
    if unsafe { os::commit(segment_base(idx as u32), SEGMENT) } {
        Some(idx as u32)
    } else {
        None
    }
}

pub fn segment_base(idx: u32) -> *mut u8 {
    (BASE.load(Relaxed) + ((idx as usize) << SEGMENT_SHIFT)) as *mut u8
}

/// Segment index and page index of an arena pointer.
pub fn locate(p: *const u8) -> (u32, usize) {
    let off = p as usize - BASE.load(Relaxed);
    (
        (off >> SEGMENT_SHIFT) as u32,
        (off & (SEGMENT - 1)) >> PAGE_SHIFT,
    )
}

pub fn seg_meta(idx: u32) -> &'static SegMeta {
    // SAFETY: `idx` was handed out by `take_segment`, so it is below the table length; the table
    // lives for the whole process.
    unsafe { &*SEGS.load(Relaxed).add(idx as usize) }
}

/// Bytes of arena handed to heaps so far.
pub fn committed_bytes() -> usize {
    NEXT_SEG.load(Relaxed).min(len() / SEGMENT) * SEGMENT
}
