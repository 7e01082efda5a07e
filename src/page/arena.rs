//! The arena (design.md §3): one aligned `PROT_NONE` reservation carved into segments, the page
//! tag table that routes `free`, and the per-segment page bitmaps.
//!
//! Set up once by [`init`]; before that (or if reservation failed) the arena is empty and
//! every range check fails, which sends callers to the large tier.
//!
//! Segments a heap no longer uses come back to a global pool (design.md §10: whole segments go
//! back), so any heap can reuse them: without it, a heap's free pages served only that heap,
//! and remote-free-heavy programs committed a new segment (and faulted it in) in one heap
//! while another heap sat on free ones.

use crate::config::{self, PAGE_SHIFT, SEGMENT_SHIFT};
use crate::page::bitmap::PageBitmap;
use crate::sys::os;
use crate::sys::sync::SpinLock;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicUsize, Ordering::*};

pub const SEGMENT: usize = 1 << SEGMENT_SHIFT;
pub const PAGES_PER_SEGMENT: usize = SEGMENT >> PAGE_SHIFT;
const _: () = assert!(PAGES_PER_SEGMENT == crate::page::bitmap::BITS);

// Written once by `init` (again only in a fork child that restarts start-up): BASE, TAGS and
// SEGS with Relaxed stores, then LEN with Release, then NEG_BASE with Release. Orderings (C11
// model): `len` loads LEN with Acquire, and `offset` loads NEG_BASE with Acquire; reading the
// value `init` stored synchronizes with that Release store, so the stores before it
// happen-before the Relaxed loads that follow it in the same thread, which by coherence read
// them (nothing stores them later). An `offset` that reads NEG_BASE's initial value fails
// whatever LEN it reads (see NEG_BASE), so it reads neither TAGS nor BASE. The other readers
// (`set_tags`, `segment_base`, `locate`, `seg_meta`, `tag_at` at a computed offset) run
// only in heap work, on a thread that passed start-up: it read DONE with Acquire from the
// Release store that ends start-up, after `init` (front::lifecycle), or is the thread that
// ran it. NEXT_SEG is written under the pool lock; `committed_bytes` reads it outside for
// statistics only.
static BASE: AtomicUsize = AtomicUsize::new(0);
/// `BASE` negated, for the range check of `offset` (`p + NEG_BASE < LEN`: one load folded into
/// an add and no register copy of `p`); published last. Its initial value, 2^63, makes the check
/// fail before `init` for every address below 2^63, which every user-space pointer is
/// (`p + 2^63` is at least 2^63, above any arena length).
static NEG_BASE: AtomicUsize = AtomicUsize::new(1 << 63);
static LEN: AtomicUsize = AtomicUsize::new(0);
/// The page-tag table: an [`Entry`] per arena page.
static TAGS: AtomicPtr<Entry> = AtomicPtr::new(core::ptr::null_mut());
/// A page's tag, then (hardened lane) its run start. The run start is a plain word (a load
/// `free` can fold into its subtraction): written with the tag by the run's owner before any
/// of its objects is handed out, and read only by frees of such objects, which the hand-off
/// orders after the write.
#[repr(C)]
struct Entry {
    tag: AtomicU32,
    start: [UnsafeCell<u32>; TAG_WORDS - 1],
}
/// Words per page in the tag table. The hardened lane keeps, after each page's tag, the low 32
/// bits of the arena offset of the run `set_tags` last tagged it for, so [`in_run`] finds where
/// in a carved run a pointer lies (runs are not aligned) with one subtraction (32 bits suffice:
/// a run is at most a segment), from the tag's line and with the tag's base register. Written
/// with the tags, under the same rules.
const TAG_WORDS: usize = if config::SECURE { 2 } else { 1 };
static SEGS: AtomicPtr<SegMeta> = AtomicPtr::new(core::ptr::null_mut());
static NEXT_SEG: AtomicUsize = AtomicUsize::new(0);
/// Segments in the pool that may be resident and purged ones (`cold`):
/// written under the pool lock, read by the statistics without it.
static POOLED_RESIDENT: AtomicUsize = AtomicUsize::new(0);
static POOLED_PURGED: AtomicUsize = AtomicUsize::new(0);

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
    /// First page of each small run (small segments only): from any page of a run, the run
    /// is the nearest start at or below it.
    pub starts: PageBitmap,
    /// Scratch of the small-run sweep (`heap::sweep`): free objects found per run, at the
    /// run's first page.
    pub found: [u16; PAGES_PER_SEGMENT],
    /// Next segment of the same heap (or of the same pool list), as index + 1 (0 ends it).
    pub next: u32,
    /// Run searches skip this segment for runs of this many pages or more: a search found no
    /// free run that long, and no page was freed since (0: not known). Kept next to `next`,
    /// which the searches read anyway, so a full segment costs them one line: in a burst that
    /// fills hundreds of segments each new run scanned every full one's page map.
    pub no_run_of: u16,
    /// Previous segment of the same heap, or of the pool's resident list, as index + 1
    /// (0 = first).
    pub prev: u32,
    /// Clock (ms) when the segment joined the pool's resident list.
    pub pooled_ms: u64,
}

impl SegInner {
    /// Gives back `pages` pages from `start`: free, still resident (dirty), and no longer
    /// known too full for any run (`no_run_of`: freeing is the only thing that lengthens a
    /// free run).
    pub fn free_pages(&mut self, start: usize, pages: usize) {
        self.free_untouched_pages(start, pages);
        self.dirty.set_range(start, pages);
    }

    /// Gives back `pages` pages from `start` that were taken but never touched (small runs
    /// reserved ahead of carving): free, not resident, so not marked dirty; and, as
    /// [`free_pages`](Self::free_pages), no longer known too full for any run.
    pub fn free_untouched_pages(&mut self, start: usize, pages: usize) {
        self.pages.clear_range(start, pages);
        self.no_run_of = 0;
    }
}

impl SegMeta {
    /// # Safety
    /// Only the owner of the heap that took this segment may call this — for a pooled segment
    /// the holder of the pool lock, for a list `purge_list` detached from the pool the thread
    /// that detached it — and not re-entrantly.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn get(&self) -> &mut SegInner {
        // SAFETY: only the owning heap's owner calls this, never re-entrantly (caller
        // contract), so this `&mut` is the only access to the segment's metadata.
        unsafe { &mut *self.inner.get() }
    }
}

/// Smallest reservation [`init`] tries: 64 segments, one commit step
/// ([`config::COMMIT_SEGMENTS`]). Below it so few segments remain that the large tier's
/// mapping per block is the better use of a tight address space.
pub const MIN_RESERVE: usize = 64 << 20;

/// Reserves the arena. Tries the configured size (`HAKOZUNA_ARENA_GB`), then halves it down to
/// [`MIN_RESERVE`] (64 GiB: at most 11 tries, each one failed `mmap`), so a process under
/// a low `RLIMIT_AS` (`ulimit -v`) or a small configured size still gets the largest arena that
/// fits. With 0 configured, or nothing reserved, the allocator still works through the large
/// tier. Called once, under the init state machine.
pub fn init() {
    let mut len = crate::sys::options::arena_gb() << 30;
    while len >= MIN_RESERVE {
        if try_reserve(len) {
            return;
        }
        len /= 2;
    }
}

fn try_reserve(len: usize) -> bool {
    let pages = len >> PAGE_SHIFT;
    let nsegs = len / SEGMENT;
    // The hardened lane aligns the arena to a power of two at least its length, so that a
    // decoded link's window test is one `and` (`sys::secret`): address space, not memory.
    let align = if config::SECURE {
        len.next_power_of_two().max(SEGMENT)
    } else {
        SEGMENT
    };
    let reserved = len + align;
    let Some(raw) = os::reserve(reserved) else {
        return false;
    };
    // Owner stashes pack arena pointers into 48 bits (`owner_stash`): refuse a reservation
    // reaching above that (Linux never places one there without an address hint).
    if raw as usize + reserved > 1 << 48 {
        // SAFETY: `raw` is our fresh reservation.
        unsafe { os::unmap(raw, reserved) };
        return false;
    }
    let tags_len = pages * core::mem::size_of::<Entry>();
    let Some(tags) = os::map_rw_noreserve(tags_len) else {
        // SAFETY: `raw` is our fresh reservation.
        unsafe { os::unmap(raw, reserved) };
        return false;
    };
    let Some(segs) = os::map_rw_noreserve(nsegs * core::mem::size_of::<SegMeta>()) else {
        // SAFETY: both ranges are our fresh mappings.
        unsafe {
            os::unmap(raw, reserved);
            os::unmap(tags, tags_len);
        }
        return false;
    };
    // Align the base; the unaligned slack stays reserved (harmless PROT_NONE).
    let base = (raw as usize + align - 1) & !(align - 1);
    if config::SECURE {
        crate::sys::secret::set_window(base, nsegs * SEGMENT);
    }
    TAGS.store(tags as *mut Entry, Relaxed);
    SEGS.store(segs as *mut SegMeta, Relaxed);
    BASE.store(base, Relaxed);
    LEN.store(nsegs * SEGMENT, Release);
    NEG_BASE.store(base.wrapping_neg(), Release);
    true
}

/// Arena byte offset of `p` if `p` lies in the arena.
#[inline(always)]
pub fn offset(p: *const u8) -> Option<usize> {
    // NEG_BASE first, with Acquire: a value `init` stored guarantees we see LEN and the tag
    // table it stored before; its initial value fails the test whatever LEN is (see NEG_BASE).
    let off = (p as usize).wrapping_add(NEG_BASE.load(Acquire));
    let len = LEN.load(Relaxed);
    if off < len {
        Some(off)
    } else {
        None
    }
}

pub fn len() -> usize {
    LEN.load(Acquire)
}

/// `(owner, bin)` of the page holding `p`, if `p` lies in the arena on a tagged page.
pub fn owner_and_bin(p: *const u8) -> Option<(u32, usize)> {
    crate::page::page_tag::decode(tag_at(offset(p)?))
}

/// The tag-table entry of the page at arena offset `off`.
#[inline(always)]
fn entry(off: usize) -> &'static Entry {
    // SAFETY: `off` came from `offset`, so the page index is inside the tag table, which is
    // mapped for the whole arena before LEN became non-zero and never unmapped.
    unsafe { &*TAGS.load(Relaxed).add(off >> PAGE_SHIFT) }
}

/// Tag of the page at arena offset `off`.
#[inline(always)]
pub fn tag_at(off: usize) -> u32 {
    entry(off).tag.load(Relaxed)
}

/// Hardened lane: the tag of the page at arena offset `off`, and how far into its run `off`
/// lies for a page a run was tagged with (any value for another page; below 2^20 for a tagged
/// page: runs are at most a segment). One load of the table's address for both.
///
/// # Safety
/// Hardened lane only (the tag table holds run starts), and `off` is an arena offset.
#[inline(always)]
pub unsafe fn tag_in_run(off: usize) -> (u32, usize) {
    let e = entry(off);
    // SAFETY: hardened lane (caller contract): the entry has its run-start word; a plain read
    // (see `Entry`).
    let start = unsafe { *(*e.start.as_ptr()).get() };
    (
        e.tag.load(Relaxed),
        (off as u32).wrapping_sub(start) as usize,
    )
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
        // hands them the object (the program's own, or one of our Release/Acquire hand-offs):
        // this store happens-before their load of it, which by coherence reads it or a later
        // tag, and the page is retagged only once none of its objects is live.
        // SAFETY: `[p, p + n pages)` is an arena run (caller contract), so page `i` is inside
        // the tag table, mapped for the whole arena before LEN became non-zero.
        let e = unsafe { &*t.add(i) };
        e.tag.store(tag, Relaxed);
        if config::SECURE && tag != 0 {
            // SAFETY: the entry has its run-start word in this lane; a plain write (see
            // `Entry`): the run is the caller's and none of its objects is handed out yet.
            unsafe { *(*e.start.as_ptr()).get() = (first << PAGE_SHIFT) as u32 };
        }
    }
}

/// The pool of given-back segments: LIFO lists through `SegInner::next` (index + 1).
/// `resident` were given back without being purged, newest first, each stamped with the
/// time it came (`pooled_ms`), and linked back through `SegInner::prev` from the oldest
/// (`resident_tail`), so a give-back past the cap purges the oldest without walking the list;
/// `cold` are purged (committed, not resident).
struct Pool {
    resident: u32,
    resident_tail: u32,
    cold: u32,
    last_decay_ms: u64,
    /// Segments `0 .. committed` of the arena are readable and writable.
    committed: usize,
}

static POOL: SpinLock<Pool> = SpinLock::new(Pool {
    resident: 0,
    resident_tail: 0,
    cold: 0,
    last_decay_ms: 0,
    committed: 0,
});

/// A segment handed to a heap: `resident` if its pages may still be in memory (a reused resident
/// segment), so the heap's page decay must consider them all.
pub struct Taken {
    pub idx: u32,
    pub resident: bool,
}

/// Pops the first segment of a pool list.
fn pop(list: &mut u32) -> Option<u32> {
    let idx = list.checked_sub(1)?;
    // SAFETY: pooled segments belong to the pool, whose lock the caller holds (`list` is
    // borrowed from the locked pool).
    *list = unsafe { seg_meta(idx).get() }.next;
    Some(idx)
}

/// Pops the newest resident segment (see [`pop`]), keeping the back links.
fn pop_resident(p: &mut Pool) -> Option<u32> {
    let idx = pop(&mut p.resident)?;
    match p.resident {
        0 => p.resident_tail = 0,
        // SAFETY: a pooled segment, and the caller holds the pool lock (`p`).
        head => unsafe { seg_meta(head - 1).get() }.prev = 0,
    }
    Some(idx)
}

/// Takes a segment: the most recently given-back one, else a fresh one, committed. `None`
/// when the arena is exhausted or the OS refuses to commit.
pub fn take_segment() -> Option<Taken> {
    let mut p = POOL.lock();
    if let Some(idx) = pop_resident(&mut p) {
        POOLED_RESIDENT.fetch_sub(1, Relaxed);
        return Some(Taken {
            idx,
            resident: true,
        });
    }
    if let Some(idx) = pop(&mut p.cold) {
        POOLED_PURGED.fetch_sub(1, Relaxed);
        return Some(Taken {
            idx,
            resident: false,
        });
    }
    let nsegs = len() / SEGMENT;
    let idx = NEXT_SEG.load(Relaxed);
    if idx >= nsegs {
        return None;
    }
    if idx >= p.committed {
        // Commit [`config::COMMIT_SEGMENTS`] segments at once: each `mprotect` changes the arena's
        // mapping, which stalls every thread faulting in it meanwhile; one per segment
        // idled a fifth of the CPU time of mt-remote T=32 (threads asleep on the mapping).
        // The pages are still faulted in only when touched.
        // The OS may refuse the larger range (a mapping-count limit): then the one segment.
        let mut end = (idx + config::COMMIT_SEGMENTS).min(nsegs);
        loop {
            // SAFETY: segments `idx .. end` lie inside our reservation and none was handed
            // out (`idx` is the next fresh one, and we hold the pool lock).
            if unsafe { os::commit(segment_base(idx as u32), (end - idx) * SEGMENT) } {
                break;
            }
            if end == idx + 1 {
                return None;
            }
            end = idx + 1;
        }
        p.committed = end;
    }
    NEXT_SEG.store(idx + 1, Relaxed);
    Some(Taken {
        idx: idx as u32,
        resident: false,
    })
}

/// Gives a segment back to the pool; `resident` if its pages may still be in memory. When that
/// takes the resident segments past their cap ([`resident_cap`]), the oldest are purged, down
/// to three quarters of the cap but at most [`config::POOL_PURGE_PER_GIVE_BACK`] (this runs
/// inside a `free`; what is left is purged by the next give-backs and by decay). Returns
/// bytes purged.
///
/// # Safety
/// The caller's heap owns segment `idx`, has unlinked it, and no page of it holds a live
/// object or a page tag; ownership passes to the pool.
pub unsafe fn give_back_segment(idx: u32, resident: bool) -> usize {
    let now = if resident { os::now_ms() } else { 0 };
    let old = {
        let mut p = POOL.lock();
        // SAFETY: the segment is now the pool's (caller contract) and we hold the pool lock.
        let m = unsafe { seg_meta(idx).get() };
        m.pooled_ms = now;
        if !resident {
            POOLED_PURGED.fetch_add(1, Relaxed);
            m.next = p.cold;
            p.cold = idx + 1;
            0
        } else {
            let count = POOLED_RESIDENT.fetch_add(1, Relaxed) + 1;
            m.next = p.resident;
            m.prev = 0;
            match p.resident {
                0 => p.resident_tail = idx + 1,
                // SAFETY: a pooled segment, and we hold the pool lock.
                head => unsafe { seg_meta(head - 1).get() }.prev = idx + 1,
            }
            p.resident = idx + 1;
            let cap = resident_cap();
            if count > cap {
                // Down to three quarters of the cap, so a pool at its cap purges a batch
                // (fewer calls, neighbours in one) every few give-backs, not one at each; a
                // pool far past it (the cap fell as trims gave segments back purged) gets
                // there over several give-backs.
                let keep = cap - cap / 4;
                cut_oldest(&mut p, (count - keep).min(config::POOL_PURGE_PER_GIVE_BACK))
            } else {
                0
            }
        }
    };
    purge_list(old)
}

/// Resident segments the pool may hold: [`config::POOL_RESIDENT_SEGMENTS`], or a
/// [`config::POOL_RESIDENT_SHARE`]th of the segments heaps hold if more. The caller holds the
/// pool lock, under which every counter read here changes.
fn resident_cap() -> usize {
    let pooled = POOLED_RESIDENT.load(Relaxed) + POOLED_PURGED.load(Relaxed);
    let held = NEXT_SEG.load(Relaxed).saturating_sub(pooled);
    config::POOL_RESIDENT_SEGMENTS.max(held / config::POOL_RESIDENT_SHARE)
}

/// Purges a detached pool list (owned by the caller, outside the lock) and moves it to `cold`.
/// Returns bytes purged.
fn purge_list(mut list: u32) -> usize {
    let (head, mut tail, mut bytes) = (list, 0, 0);
    let mut purger = SegmentPurger::new();
    while list != 0 {
        let idx = list - 1;
        // SAFETY: the segment is on a list detached from the pool by our caller, so nothing
        // else uses it or its metadata; it holds no live object.
        unsafe { purger.add(idx) };
        bytes += SEGMENT;
        tail = idx;
        // SAFETY: as above.
        list = unsafe { seg_meta(idx).get() }.next;
    }
    purger.finish();
    if head != 0 {
        let mut p = POOL.lock();
        // SAFETY: `tail` ends the detached list; relinking it happens under the pool lock.
        unsafe { seg_meta(tail).get() }.next = p.cold;
        p.cold = head;
        let n = bytes / SEGMENT;
        POOLED_RESIDENT.fetch_sub(n, Relaxed);
        POOLED_PURGED.fetch_add(n, Relaxed);
    }
    bytes
}

/// Purges whole segments, one `madvise` for each stretch of segments adjacent in the arena: a
/// burst given back at thread exit purged about a thousand segments one call each
/// (docs/ab.md). Segments are gathered, up to [`PURGE_BATCH`] at a time (on the stack: no
/// allocation), sorted by address and purged in stretches.
pub struct SegmentPurger {
    idx: [u32; PURGE_BATCH],
    n: usize,
}

/// Segments a [`SegmentPurger`] gathers before it purges.
const PURGE_BATCH: usize = 128;

impl SegmentPurger {
    pub const fn new() -> Self {
        SegmentPurger {
            idx: [0; PURGE_BATCH],
            n: 0,
        }
    }

    /// Adds segment `idx` to be purged by [`finish`](Self::finish) or a later `add`.
    ///
    /// # Safety
    /// Segment `idx` holds no live object and nothing else uses its pages until `finish`
    /// returns.
    pub unsafe fn add(&mut self, idx: u32) {
        if self.n >= PURGE_BATCH {
            self.finish();
        }
        // Always a slot after `finish`; `get_mut` leaves no panic path.
        if let Some(s) = self.idx.get_mut(self.n) {
            *s = idx;
            self.n += 1;
        }
    }

    /// Purges the gathered segments, one call per stretch of neighbours.
    pub fn finish(&mut self) {
        let seg = self.idx.get_mut(..self.n).unwrap_or(&mut []);
        seg.sort_unstable();
        let mut i = 0;
        while i < seg.len() {
            let mut j = i + 1;
            while j < seg.len() && seg[j] == seg[j - 1] + 1 {
                j += 1;
            }
            // SAFETY: segments `seg[i] ..= seg[j - 1]` were each added under `add`'s contract:
            // mapped arena memory that holds no live object.
            unsafe { os::purge(segment_base(seg[i]), (j - i) * SEGMENT) };
            i = j;
        }
        self.n = 0;
    }
}

/// Decay of the pool, at most once per `interval_ms` whatever the number of callers: the
/// resident segments given back at least an interval ago are purged. Returns bytes purged.
pub fn decay_pool(now_ms: u64, interval_ms: u64) -> usize {
    let old = {
        let mut p = POOL.lock();
        if now_ms.saturating_sub(p.last_decay_ms) < interval_ms {
            return 0;
        }
        p.last_decay_ms = now_ms;
        // Newest first: cut the list at the first segment an interval old.
        cut_resident(&mut p, |_, m| {
            now_ms.saturating_sub(m.pooled_ms) >= interval_ms
        })
    };
    purge_list(old)
}

/// Purges every pooled segment now (`malloc_trim`). Returns bytes purged.
pub fn purge_pool() -> usize {
    let resident = {
        let mut p = POOL.lock();
        p.resident_tail = 0;
        core::mem::replace(&mut p.resident, 0)
    };
    purge_list(resident)
}

/// Purges the pool's resident segments but the `keep` most recently given back (a burst
/// given back at thread exit, `heap::registry::trim_eager`). Returns bytes purged.
pub fn purge_pool_beyond(keep: usize) -> usize {
    let old = cut_resident(&mut POOL.lock(), |n, _| n == keep);
    purge_list(old)
}

/// Detaches the pool's resident list (newest first) from the first segment for which `cut`
/// (its position in the list and its metadata) holds, and returns that part (0: none). The
/// caller holds the pool lock (`p`).
fn cut_resident(p: &mut Pool, mut cut: impl FnMut(usize, &SegInner) -> bool) -> u32 {
    // The segment before the one looked at (index + 1; 0: none yet): at the end, the tail.
    let mut before = 0;
    let mut s = p.resident;
    let mut n = 0;
    while s != 0 {
        // SAFETY: a pooled segment, and the caller holds the pool lock.
        let m = unsafe { seg_meta(s - 1).get() };
        if cut(n, m) {
            detach_from(p, s);
            return s;
        }
        n += 1;
        before = s;
        s = m.next;
    }
    debug_assert_eq!(before, p.resident_tail);
    0
}

/// Detaches the `n` oldest resident segments (fewer if the list is shorter) and returns them
/// as a list, oldest last (0: none). The caller holds the pool lock (`p`). At most `n` steps.
fn cut_oldest(p: &mut Pool, n: usize) -> u32 {
    let mut s = p.resident_tail;
    if s == 0 || n == 0 {
        return 0;
    }
    for _ in 1..n {
        // SAFETY: a pooled segment, and the caller holds the pool lock.
        let prev = unsafe { seg_meta(s - 1).get() }.prev;
        if prev == 0 {
            break;
        }
        s = prev;
    }
    detach_from(p, s);
    s
}

/// Cuts the resident list before segment `s` (index + 1, on the list): `s` and the segments
/// after it leave the list, whose tail becomes the one before `s`. The caller holds the pool
/// lock (`p`).
fn detach_from(p: &mut Pool, s: u32) {
    // SAFETY: a pooled segment, and the caller holds the pool lock.
    let before = core::mem::replace(&mut unsafe { seg_meta(s - 1).get() }.prev, 0);
    match before {
        0 => p.resident = 0,
        // SAFETY: as above.
        b => unsafe { seg_meta(b - 1).get() }.next = 0,
    }
    p.resident_tail = before;
}

/// Whether resident segments wait in the pool (for their decay).
pub fn pool_has_resident() -> bool {
    POOLED_RESIDENT.load(Relaxed) > 0
}

pub fn lock_for_fork() {
    POOL.raw_lock();
}

/// In a fork child, after the locks are released: counts the pool's lists again. A purge
/// another thread of the parent had cut from the resident list and not yet relinked
/// (`purge_list`, outside the lock) is not in the child, and its segments stay out of the
/// child's pool; without the recount they would still count as resident, and every slow path
/// would find decay pending for good.
///
/// # Safety
/// Runs in the single-threaded fork child.
pub unsafe fn recount_after_fork() {
    let count = |mut list: u32| {
        let mut n = 0;
        while list != 0 {
            n += 1;
            // SAFETY: a pooled segment; the child is single-threaded (caller contract), so
            // nothing changes the list under us.
            list = unsafe { seg_meta(list - 1).get() }.next;
        }
        n
    };
    let p = POOL.lock();
    let (resident, cold) = (count(p.resident), count(p.cold));
    drop(p);
    POOLED_RESIDENT.store(resident, Relaxed);
    POOLED_PURGED.store(cold, Relaxed);
}

/// # Safety
/// Pairs with [`lock_for_fork`] (parent) or runs in the single-threaded child.
pub unsafe fn unlock_after_fork() {
    // SAFETY: caller contract: we hold the pool lock, or are the only thread in the child.
    unsafe { POOL.raw_unlock() };
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

/// High-water mark of arena bytes handed out as segments (fresh ones ever taken; pooled ones
/// included). Up to [`config::COMMIT_SEGMENTS`] - 1 more segments may be committed ahead.
pub fn committed_bytes() -> usize {
    NEXT_SEG.load(Relaxed).min(len() / SEGMENT) * SEGMENT
}

/// Bytes of segments in the pool: `(resident, purged)`. Resident ones were given back less
/// than a decay interval ago (or no decay pass ran since); purged ones are committed but not
/// resident.
/// Relaxed reads, not a consistent snapshot.
pub fn pooled_bytes() -> (usize, usize) {
    (
        POOLED_RESIDENT.load(Relaxed) * SEGMENT,
        POOLED_PURGED.load(Relaxed) * SEGMENT,
    )
}

/// An estimate of the side tables' touched part: the page tags and segment records of every
/// segment handed out (the tables are mapped for the whole arena and faulted in lazily).
pub fn side_table_bytes() -> usize {
    NEXT_SEG.load(Relaxed).min(len() / SEGMENT)
        * (PAGES_PER_SEGMENT * core::mem::size_of::<u32>() + core::mem::size_of::<SegMeta>())
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::vec::Vec;

    /// The segment pool's bookkeeping, in one test because the arena and the pool are
    /// process-wide: fresh segments in order, the pool's resident and purged lists and their
    /// byte counts, decay by age and its rate limit, and `purge_pool`. The library's
    /// constructor reserved the arena in this process too; no other unit test takes segments.
    #[test]
    fn segments_and_pool_accounting() {
        if len() == 0 {
            assert!(try_reserve(MIN_RESERVE));
        }
        assert_eq!(committed_bytes(), 0, "no other unit test takes segments");
        let n = len();
        assert!(n >= MIN_RESERVE && n.is_multiple_of(SEGMENT));
        let base = segment_base(0);
        assert!((base as usize).is_multiple_of(SEGMENT));
        assert_eq!(offset(base), Some(0));
        assert_eq!(offset(base.wrapping_sub(1)), None);
        assert_eq!(offset(base.wrapping_add(n)), None);
        assert_eq!(offset(base.wrapping_add(n - 1)), Some(n - 1));

        // Fresh segments come in address order, committed (writable), not resident.
        let mut taken = Vec::new();
        for i in 0..10 {
            let t = take_segment().unwrap();
            assert_eq!((t.idx, t.resident), (i, false));
            let p = segment_base(t.idx);
            // SAFETY: a segment we own, committed by `take_segment`.
            unsafe { p.add(SEGMENT - 1).write(0xAB) };
            assert_eq!(locate(p.wrapping_add(5 << PAGE_SHIFT)), (i, 5));
            taken.push(t.idx);
        }
        assert_eq!(committed_bytes(), 10 * SEGMENT);
        assert_eq!(pooled_bytes(), (0, 0));

        // Tags: set on a run, read back per page.
        // SAFETY: pages of segment 3, which we own.
        unsafe { set_tags(segment_base(3).add(2 << PAGE_SHIFT), 4, 0x0002_0007) };
        let off3 = 3 * SEGMENT;
        let tags: Vec<u32> = (0..8).map(|pg| tag_at(off3 + (pg << PAGE_SHIFT))).collect();
        assert_eq!(
            tags,
            [
                0,
                0,
                0x0002_0007,
                0x0002_0007,
                0x0002_0007,
                0x0002_0007,
                0,
                0
            ]
        );
        // SAFETY: as above; clears them again before the segment is given back.
        unsafe { set_tags(segment_base(3).add(2 << PAGE_SHIFT), 4, 0) };

        // Give back 0, 1, 2 resident and 7, 8 purged.
        for idx in [0, 1, 2] {
            // SAFETY: ours, unlinked, no live object or tag.
            unsafe { give_back_segment(idx, true) };
        }
        for idx in [7, 8] {
            // SAFETY: as above.
            unsafe { give_back_segment(idx, false) };
        }
        assert_eq!(pooled_bytes(), (3 * SEGMENT, 2 * SEGMENT));
        // Resident first, most recent first; then purged ones; then fresh.
        let t = take_segment().unwrap();
        assert_eq!((t.idx, t.resident), (2, true));
        let t = take_segment().unwrap();
        assert_eq!((t.idx, t.resident), (1, true));
        assert_eq!(pooled_bytes(), (SEGMENT, 2 * SEGMENT));
        // SAFETY: as above (1 and 2 are ours again).
        unsafe {
            give_back_segment(1, true);
            give_back_segment(2, true);
        }

        // Decay by age (segments are stamped with the clock when given back): a pass purges
        // the resident segments pooled at least an interval before its `now`, at most one pass
        // per interval. The stamps are now, so a pass at now purges nothing, one an interval
        // later every resident segment.
        let interval = 1000;
        let t0 = os::now_ms() + 10;
        assert_eq!(decay_pool(t0, interval), 0);
        assert_eq!(pooled_bytes(), (3 * SEGMENT, 2 * SEGMENT));
        // SAFETY: segment 4 is ours, no live object or tag.
        unsafe { give_back_segment(4, true) };
        // Within the interval of the last pass: not run, whatever the segments' age.
        assert_eq!(decay_pool(t0 + 10 * interval, 10 * interval + 1), 0);
        assert_eq!(decay_pool(t0 + interval + 10, interval), 4 * SEGMENT);
        assert_eq!(pooled_bytes(), (0, 6 * SEGMENT));
        // The purged segment 0 reads zero where we wrote.
        // SAFETY: segment 0 is in the pool and nobody uses it; a read of committed memory.
        assert_eq!(unsafe { segment_base(0).add(SEGMENT - 1).read() }, 0);

        // malloc_trim's purge takes every resident segment at once.
        let t = take_segment().unwrap();
        assert!(!t.resident);
        // SAFETY: ours again, no live object or tag.
        unsafe { give_back_segment(t.idx, true) };
        assert_eq!(pooled_bytes(), (SEGMENT, 5 * SEGMENT));
        assert_eq!(purge_pool(), SEGMENT);
        assert_eq!(pooled_bytes(), (0, 6 * SEGMENT));
        assert_eq!(purge_pool(), 0);

        // Every purged segment comes back (not resident), then fresh ones in order.
        let got: Vec<_> = (0..9).map(|_| take_segment().unwrap()).collect();
        let mut pooled: Vec<u32> = got[..6].iter().map(|t| t.idx).collect();
        pooled.sort_unstable();
        assert_eq!(pooled, [0, 1, 2, 4, 7, 8]);
        assert!(got.iter().all(|t| !t.resident));
        assert_eq!(
            got[6..].iter().map(|t| t.idx).collect::<Vec<_>>(),
            [10, 11, 12]
        );
        assert_eq!(pooled_bytes(), (0, 0));
        assert_eq!(committed_bytes(), 13 * SEGMENT);
        // All back, purged, for the next user of this process's pool.
        for t in got {
            // SAFETY: ours, no live object or tag.
            unsafe { give_back_segment(t.idx, false) };
        }
        assert_eq!(pooled_bytes(), (0, 9 * SEGMENT));
    }
}
