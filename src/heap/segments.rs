//! Page runs in the heap's own segments (design.md §3, §10): first-fit allocation of runs,
//! taking segments from the arena (pooled or fresh), giving runs back to their segment's
//! bitmap, and empty run segments back to the arena's pool. A segment's metadata is touched
//! only by the owner of the heap whose list holds it.

use super::{registry, OwnedHeap, RUN_SEGS, SMALL_SEGS};
use crate::config;
use crate::page::arena::{self, PAGES_PER_SEGMENT};
use crate::page::bitmap::PageBitmap;
use crate::page::large;
use crate::page::page_tag;
use crate::stats::Ev;

impl OwnedHeap {
    /// First-fit page run from this heap's segments of `kind`, taking a segment from the
    /// arena (pooled or fresh) when none fits.
    pub(super) fn alloc_run(&mut self, pages: usize, kind: usize) -> Option<*mut u8> {
        self.alloc_run_here(pages, kind)
            .or_else(|| self.new_segment_run(pages, kind))
    }

    /// [`alloc_run`](Self::alloc_run) without taking a segment: `None` when this heap's
    /// segments have no room.
    fn alloc_run_here(&mut self, pages: usize, kind: usize) -> Option<*mut u8> {
        if let Some(p) = self.fit_run(pages, kind) {
            return Some(p);
        }
        // Before the heap grows by a segment, the free runs it keeps for other classes (its
        // medium central lists and inboxes) go back to their segments, and the run is sought
        // again among the pages they free.
        if kind == RUN_SEGS && self.reclaim_runs() {
            return self.fit_run(pages, kind);
        }
        None
    }

    /// Takes up to `n` runs of `pages` pages that follow the run at `run` in its segment, as
    /// far as their pages are all free and not resident (neither dirty nor aged); returns how
    /// many. (Small runs reserved ahead of carving, `refill.rs`.) Not resident pages only:
    /// resident free pages reserved ahead of a class that then stops carving would keep other
    /// classes from reusing them, and those would touch new pages instead; pages not yet
    /// touched are what first fit would give the next run anyway. Aged pages too are still
    /// resident: reserved, they lost their aged bit (`take_pages`), and given back untouched
    /// (`drop_ahead_runs`) no purge would have seen them (`tests/reserve_aged.rs`).
    pub(super) fn claim_after(&mut self, run: *mut u8, pages: usize, n: usize) -> usize {
        let (idx, page) = arena::locate(run);
        let from = page + pages;
        let got = {
            // SAFETY: `run` is a run of this heap, so segment `idx` is ours, and we hold the
            // owner's handle; no other `SegInner` borrow is live, and this one ends here.
            let m = unsafe { arena::seg_meta(idx).get() };
            let mut got = 0;
            while got < n {
                let at = from + got * pages;
                if at + pages > PAGES_PER_SEGMENT
                    || (at..at + pages).any(|i| m.pages.get(i) || m.dirty.get(i) || m.aged.get(i))
                {
                    break;
                }
                got += 1;
            }
            got
        };
        if got > 0 {
            // SAFETY: as above; those `got * pages` pages at `from` are free.
            unsafe { take_pages(idx, from, got * pages) };
            self.heap()
                .stats
                .run_bytes_moved((got * pages) << config::PAGE_SHIFT, true);
        }
        got
    }

    /// A new run of medium `bin`, tagged `tag` unless lent, carved where it touches no new
    /// page first: free pages of this heap that are still resident (best fit); then (with
    /// `medium-adopt`, while some heap is released) the resident free pages of a released
    /// heap ([`registry::lend_run`]; the run keeps that heap's tag, and this heap holds it as
    /// an adopted run); then a resident segment from the arena's pool; only then this heap's
    /// other free pages (first fit from the hint segment, after its reclaim) and a purged or
    /// fresh segment. Why: first fit from the hint carved the untouched tail of the heap's
    /// newest segment while pages its earlier runs freed, a released heap's free pages and
    /// pooled segments waited, so heaps whose owners come and go grew by what those left
    /// (docs/ab.md, "Thread churn: released heaps' pages", "Thread churn: resident pages
    /// before untouched ones"). Not for a heap in a burst (its owner took more than
    /// [`config::EXIT_TRIM_SEGMENTS`]): the resident search walks every run segment at each
    /// run, and the heap is given back at its thread's exit anyway.
    pub(super) fn carve_run(&mut self, pages: usize, bin: usize, tag: u32) -> Option<*mut u8> {
        let calm = self.local().segs_taken <= config::EXIT_TRIM_SEGMENTS;
        let mut run = None;
        if calm {
            run = self.take_resident_run(pages);
            // Only with `medium-adopt`, without which a heap takes every run in its lists for
            // its own.
            if run.is_none() && config::MEDIUM_ADOPT && registry::some_released() {
                if let Some(lent) = registry::lend_run(pages, bin) {
                    self.heap().stats.add(Ev::MediumLent, 1);
                    return Some(lent);
                }
            }
            if run.is_none() && arena::pool_has_resident() {
                // Another thread may take that segment first: then a purged or fresh one.
                run = self.new_segment_run(pages, RUN_SEGS);
            }
        }
        let run = match run {
            Some(run) => run,
            None => self.alloc_run(pages, RUN_SEGS)?,
        };
        // SAFETY: `run` is a fresh page run of this heap.
        unsafe { arena::set_tags(run, 1, tag) };
        Some(run)
    }

    /// Takes a run of `pages` free pages that are still resident (dirty) from this heap's run
    /// segments, best fit (a segment with no resident free page, a fresh one, is skipped
    /// unread): for this heap's own carving ([`carve_run`](Self::carve_run)), or for another
    /// heap ([`registry::lend_run`]), when the caller tags it with this heap's id and it comes
    /// home as any adopted run does. (First fit instead kept the instructions the same in
    /// thread churn and lost the gain of a single thread's churn: docs/ab.md.)
    pub(super) fn take_resident_run(&mut self, pages: usize) -> Option<*mut u8> {
        // Clear bits of the combined map: pages both free and dirty.
        // A failure here says nothing of free pages that are not resident: not learnt.
        let (idx, start) = self.best_fit_over(RUN_SEGS, pages, false, |m| {
            if m.dirty.is_empty() {
                return None;
            }
            m.dirty
                .combine(&m.pages, |dirty, used| !(dirty & !used))
                .best_fit(pages)
        })?;
        // SAFETY: segment `idx` is on this heap's list, and we hold the owner's handle; those
        // pages are free; no other `SegInner` borrow is live.
        let p = unsafe { take_pages(idx, start, pages) };
        self.heap()
            .stats
            .run_bytes_moved(pages << config::PAGE_SHIFT, true);
        Some(p)
    }

    /// The segment and first page of the shortest stretch `fit` finds among this heap's
    /// segments of `kind` (the first found on ties, an exact fit of `pages` at once).
    fn best_fit_over(
        &mut self,
        kind: usize,
        pages: usize,
        learn: bool,
        fit: impl Fn(&arena::SegInner) -> Option<(usize, usize)>,
    ) -> Option<(u32, usize)> {
        let mut best: Option<(u32, usize, usize)> = None;
        let mut s = self.local().seg_head[kind];
        while s != 0 {
            // SAFETY: `s - 1` is on this heap's segment list, and we hold the owner's handle;
            // the borrow ends with this iteration.
            let m = unsafe { arena::seg_meta(s - 1).get() };
            if !skips(m, pages) {
                if let Some((start, len)) = fit(m) {
                    if best.is_none_or(|(_, _, b)| len < b) {
                        best = Some((s - 1, start, len));
                        if len == pages {
                            break;
                        }
                    }
                } else if learn {
                    note_no_run(m, pages);
                }
            }
            s = m.next;
        }
        best.map(|(idx, start, _)| (idx, start))
    }

    /// A free run of `pages` pages among this heap's segments of `kind`: runs of at least
    /// [`config::BEST_FIT_PAGES`] by best fit, shorter ones first fit with the hint first.
    fn fit_run(&mut self, pages: usize, kind: usize) -> Option<*mut u8> {
        let h = self.heap();
        let l = self.local();
        if pages >= config::BEST_FIT_PAGES {
            return self.best_fit_run(pages, kind);
        }
        let hint = l.seg_hint[kind];
        if hint != 0 {
            // SAFETY: `hint - 1` is one of this heap's segments, and we hold the owner's handle.
            if let Some(p) = unsafe { alloc_in(hint - 1, pages) } {
                h.stats.run_bytes_moved(pages << config::PAGE_SHIFT, true);
                return Some(p);
            }
        }
        let mut s = l.seg_head[kind];
        while s != 0 {
            if s != hint {
                // SAFETY: `s - 1` is on this heap's segment list, and we hold the owner's handle.
                if let Some(p) = unsafe { alloc_in(s - 1, pages) } {
                    l.seg_hint[kind] = s;
                    h.stats.run_bytes_moved(pages << config::PAGE_SHIFT, true);
                    return Some(p);
                }
            }
            // SAFETY: as above: our segment; no other `SegInner` borrow is live.
            s = unsafe { arena::seg_meta(s - 1).get() }.next;
        }
        None
    }

    /// Best fit among this heap's segments of `kind`: the shortest free run that holds
    /// `pages` (the first found on ties, an exact fit at once). With first fit, long runs
    /// (arena-large classes, 20–64 pages) left gaps in 1 MiB segments that no later long run
    /// fitted, and the heap took new segments beside 2–4 MiB of free pages
    /// (`tests/py/queue_rss.py`, docs/ab.md).
    fn best_fit_run(&mut self, pages: usize, kind: usize) -> Option<*mut u8> {
        let h = self.heap();
        let (idx, start) = self.best_fit_over(kind, pages, true, |m| m.pages.best_fit(pages))?;
        let l = self.local();
        l.seg_hint[kind] = idx + 1;
        // SAFETY: segment `idx` is on this heap's list, and we hold the owner's handle; no
        // other `SegInner` borrow is live.
        let p = unsafe { take_pages(idx, start, pages) };
        h.stats.run_bytes_moved(pages << config::PAGE_SHIFT, true);
        Some(p)
    }

    /// A run of `pages` pages in a segment taken from the arena (pooled or fresh).
    fn new_segment_run(&mut self, pages: usize, kind: usize) -> Option<*mut u8> {
        let h = self.heap();
        let l = self.local();
        let t = arena::take_segment()?;
        let idx = t.idx;
        l.segs_taken = l.segs_taken.saturating_add(1);
        if !t.resident {
            large::process_grew(arena::SEGMENT);
        }
        h.stats.add(
            if t.resident {
                Ev::SegmentsReused
            } else {
                Ev::SegmentsTaken
            },
            1,
        );
        // SAFETY: `take_segment` gave segment `idx` to us alone; `m` is dead before
        // `alloc_in` takes its own borrow.
        let m = unsafe { arena::seg_meta(idx).get() };
        m.pages = PageBitmap::new();
        m.no_run_of = 0;
        // A reused segment's pages may be resident: let page decay consider them all.
        m.dirty = if t.resident {
            PageBitmap::full()
        } else {
            PageBitmap::new()
        };
        m.aged = PageBitmap::new();
        m.starts = PageBitmap::new();
        m.prev = 0;
        m.next = l.seg_head[kind];
        if m.next != 0 {
            // SAFETY: the old head is our segment; `m` belongs to another segment.
            unsafe { arena::seg_meta(m.next - 1).get() }.prev = idx + 1;
        }
        l.seg_head[kind] = idx + 1;
        l.seg_hint[kind] = idx + 1;
        // SAFETY: `idx` is now on this heap's segment list, and we hold the owner's handle.
        let p = unsafe { alloc_in(idx, pages) };
        if p.is_some() {
            h.stats.run_bytes_moved(pages << config::PAGE_SHIFT, true);
        }
        p
    }

    /// Unlinks an empty segment and gives it back to the arena's pool.
    ///
    /// # Safety
    /// No `SegInner` borrow is live; segment `idx` is on this heap's `kind` list and has no
    /// page in use (so no live object and no page tag).
    pub(super) unsafe fn release_segment(&mut self, idx: u32, kind: usize, resident: bool) {
        // SAFETY: our segment (caller contract); the borrow ends before the neighbours'.
        let (prev, next) = {
            let m = unsafe { arena::seg_meta(idx).get() };
            debug_assert!(m.pages.is_empty());
            (m.prev, m.next)
        };
        // A medium run tags only its first page, which `free_run` cleared, and the sweep
        // clears every page of a small run it returns: a pooled segment routes no `free`.
        debug_assert!((0..arena::PAGES_PER_SEGMENT).all(|i| {
            arena::tag_at(((idx as usize) << config::SEGMENT_SHIFT) + (i << config::PAGE_SHIFT))
                == 0
        }));
        let l = self.local();
        if prev != 0 {
            // SAFETY: a neighbour on our list: our segment.
            unsafe { arena::seg_meta(prev - 1).get() }.next = next;
        } else {
            l.seg_head[kind] = next;
        }
        if next != 0 {
            // SAFETY: as above.
            unsafe { arena::seg_meta(next - 1).get() }.prev = prev;
        }
        if l.seg_hint[kind] == idx + 1 {
            l.seg_hint[kind] = l.seg_head[kind];
        }
        self.heap().stats.add(Ev::SegmentsReturned, 1);
        // SAFETY: unlinked above, empty (caller contract); ownership passes to the pool.
        let purged = unsafe { arena::give_back_segment(idx, resident) };
        if purged > 0 {
            self.heap().stats.add(Ev::BytesPurged, purged as u64);
        }
    }

    /// Gives a run back to its segment's bitmap, marking its pages dirty. The memory goes
    /// back to the OS only if the pages stay free for a decay interval (`decay_pages`):
    /// purging at once cost a `madvise` and a refault per run in remote-free-heavy programs
    /// (docs/ab.md).
    ///
    /// # Safety
    /// No `SegInner` borrow is live; `p` starts a run of `pages` pages of this heap that holds
    /// no live object.
    pub(super) unsafe fn free_run(&mut self, p: *mut u8, pages: usize) {
        debug_assert_eq!(
            arena::offset(p)
                .and_then(|off| page_tag::decode(arena::tag_at(off)))
                .map(|t| t.0),
            Some(self.heap().id),
            "free_run of a run that is not this heap's (adopted, or already free)"
        );
        // SAFETY: `p` starts a run of this heap (caller contract); only its first page is tagged.
        unsafe { arena::set_tags(p, 1, 0) };
        let (idx, page) = arena::locate(p);
        debug_assert!(page + pages <= PAGES_PER_SEGMENT);
        // SAFETY: segment `idx` holds our run, so it is this heap's; no other `SegInner`
        // borrow is live.
        let m = unsafe { arena::seg_meta(idx).get() };
        m.free_pages(page, pages);
        self.heap()
            .stats
            .run_bytes_moved(pages << config::PAGE_SHIFT, false);
        // The segment the heap carves from next stays, so a heap at the edge of needing one
        // does not give it back and take it again; during a trim, the trim gives it back
        // once purged.
        let l = self.local();
        if m.pages.is_empty() && l.seg_hint[RUN_SEGS] != idx + 1 && !l.trimming {
            // SAFETY: segment `idx` is one of our run segments with no page in use; `m` is dead.
            unsafe { self.release_segment(idx, RUN_SEGS, true) };
        }
    }

    /// Gives every empty segment back to the arena's pool; `resident` unless the caller has
    /// just purged this heap's free pages.
    pub(super) fn release_empty_segments(&mut self, resident: bool) {
        for kind in [SMALL_SEGS, RUN_SEGS] {
            let mut s = self.local().seg_head[kind];
            while s != 0 {
                // SAFETY: our segment; the borrow ends with this statement.
                let (next, empty) = {
                    let m = unsafe { arena::seg_meta(s - 1).get() };
                    (m.next, m.pages.is_empty())
                };
                if empty {
                    // SAFETY: one of our segments of `kind` with no page in use (a small
                    // segment's pages are all given back by the sweep, which clears their
                    // tags); no borrow is live.
                    unsafe { self.release_segment(s - 1, kind, resident) };
                }
                s = next;
            }
        }
    }
}

/// Takes a run of `pages` free pages from segment `idx`, first fit.
///
/// # Safety
/// Segment `idx` belongs to the heap whose owner's handle the caller holds; no other
/// `SegInner` borrow is live.
unsafe fn alloc_in(idx: u32, pages: usize) -> Option<*mut u8> {
    // SAFETY: our segment, not re-entrant (caller contract); the borrow ends here.
    let m = unsafe { arena::seg_meta(idx).get() };
    if skips(m, pages) {
        return None;
    }
    let Some(start) = m.pages.find_run(pages) else {
        note_no_run(m, pages);
        return None;
    };
    // SAFETY: as above; `find_run` found `pages` free pages at `start`.
    Some(unsafe { take_pages(idx, start, pages) })
}

/// Whether a search for a run of `pages` pages may skip `m` (see `SegInner::no_run_of`).
fn skips(m: &arena::SegInner, pages: usize) -> bool {
    m.no_run_of != 0 && pages >= usize::from(m.no_run_of)
}

/// Records that `m` has no free run of `pages` pages (so none longer either). Taking pages
/// never lengthens a free run; freeing pages clears the record.
fn note_no_run(m: &mut arena::SegInner, pages: usize) {
    let p = pages.min(usize::from(u16::MAX)) as u16;
    if m.no_run_of == 0 || p < m.no_run_of {
        m.no_run_of = p;
    }
}

/// Marks the `pages` free pages at `start` of segment `idx` in use and returns their address.
///
/// # Safety
/// As for [`alloc_in`], and those pages are free.
unsafe fn take_pages(idx: u32, start: usize, pages: usize) -> *mut u8 {
    // SAFETY: our segment, not re-entrant (caller contract).
    let m = unsafe { arena::seg_meta(idx).get() };
    debug_assert!(start + pages <= PAGES_PER_SEGMENT);
    m.pages.set_range(start, pages);
    // Reused: resident again, nothing to purge.
    m.dirty.clear_range(start, pages);
    m.aged.clear_range(start, pages);
    // SAFETY: the run lies inside the segment (caller contract), so the offset stays within it.
    unsafe { arena::segment_base(idx).add(start << config::PAGE_SHIFT) }
}
