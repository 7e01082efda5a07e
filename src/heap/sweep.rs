//! Small runs back to their segments (design.md §10, "the sweep"). A carved object circulates
//! through thread bins, spills, stashes, transfer caches, central lists and the shared pool
//! without its run hearing of it: counting each run's live objects on those paths would cost
//! every malloc and free. Instead the holder of a heap's handle sweeps it at decay and trim
//! time: it gathers the heap's queued free objects of a class into the central list, counts
//! them per run, and a run whose every carved object is there holds no live object and has no
//! object anywhere else, so its objects are unlinked and the run goes back to its segment. A
//! small segment left with no run goes to the arena's pool. Objects of other heaps met on the
//! way (adopted, stolen or taken from the shared pool) are sent home.
//!
//! A run with an object in a thread bin, a remote ring or another heap is simply not found
//! whole, so the sweep needs no hand-off with the paths that free into the heap: they only
//! ever add objects to queues the sweep does not read in the same pass.

use super::send::send_home;
use super::{OwnedHeap, SMALL_SEGS};
use crate::config::{self, PAGE_SHIFT, STASH_PUSH, TRANSFER_CACHE};
use crate::ds::list::{next, Chain, LocalList};
use crate::page::arena::{self, SegInner, PAGES_PER_SEGMENT};
use crate::page::size_class::{self as sc, SMALL_BINS};
use crate::stats::Ev;
use core::ptr::null_mut;

/// A set of small bins.
pub(super) type BinSet = crate::ds::bin_set::BinSet<SMALL_BINS, { SMALL_BINS.div_ceil(64) }>;

/// `found` of a run the sweep returns: above any real count.
const DOOMED: u16 = u16::MAX;
const _: () = {
    let mut b = 0;
    while b < SMALL_BINS {
        assert!(sc::objs_per_run(b) < DOOMED as usize);
        b += 1;
    }
};

impl OwnedHeap {
    /// Sweeps every small bin: each one's queued free objects join its central list, then
    /// every run found whole there goes back to its segment. Unless `force`, a heap whose
    /// central lists hold just as many objects as after its last full sweep is left alone
    /// (a released heap's lists only grow, so it has nothing new). Returns runs returned.
    pub(super) fn sweep_all(&mut self, force: bool) -> usize {
        let all = BinSet::all();
        if !force {
            for bin in 0..SMALL_BINS {
                self.gather(bin);
            }
            if self.central_total() == self.local().swept_total {
                return 0;
            }
        }
        let n = self.sweep_small(all);
        self.local().swept_total = self.central_total();
        n
    }

    fn central_total(&mut self) -> u64 {
        let l = self.local();
        l.small.iter().map(|s| s.central.count as u64).sum()
    }

    /// Sweeps the small bins in `bins` (see the module doc). Returns runs returned.
    pub(super) fn sweep_small(&mut self, bins: BinSet) -> usize {
        if bins.is_empty() {
            return 0;
        }
        let h = self.heap();
        for bin in bins.iter() {
            self.gather(bin);
        }
        self.reset_found();
        let mut foreign = 0;
        for bin in bins.iter() {
            let head = self.local().small[bin].central.head;
            // SAFETY: the central list of `bin` is this heap's, well formed; we hold the handle.
            foreign += unsafe { self.count_found(head) };
        }
        let doomed = self.doom_whole_runs(bins);
        if doomed == 0 && foreign == 0 {
            return 0;
        }
        for bin in bins.iter() {
            // SAFETY: the central list is well formed with an exact count; detached here, its
            // objects are ours to relink.
            let all = unsafe { self.local().small[bin].central.take_all() };
            // SAFETY: `all` holds free objects of small `bin` detached from central, counted
            // by this pass.
            let (kept, foreign) = unsafe { self.split(all.head) };
            // SAFETY: `kept` holds free objects of this heap and `bin`, in no other list.
            unsafe { self.local().small[bin].central.push_chain(kept) };
            self.local().small[bin].note_low();
            // SAFETY: `foreign` is a null-terminated list of free objects of `bin` whose tags
            // name other heaps; nothing else references them.
            unsafe { send_home(bin, foreign, &h.stats, false) };
        }
        if doomed > 0 {
            // Pages come free: runs reserved ahead would have classes carve untouched pages
            // beside them; give them back, and let first fit place runs again.
            self.drop_ahead_runs();
        }
        self.free_doomed_runs();
        h.stats.add(Ev::SmallRunsReturned, doomed as u64);
        doomed
    }

    /// Moves the owner stash, spill, transfer cache and intake of small `bin` into central.
    fn gather(&mut self, bin: usize) {
        // Always a small bin (callers iterate a `BinSet`); the test leaves the indexing below
        // no panic path.
        if !sc::is_small(bin) {
            return;
        }
        let h = self.heap();
        if STASH_PUSH {
            self.stash_to_central(bin);
        }
        self.spill_to_central(bin);
        if TRANSFER_CACHE {
            loop {
                let got = h.shared.xfer[bin].pop();
                if got.count == 0 {
                    break;
                }
                // SAFETY: the swap made the chain ours: free objects of this heap and `bin`.
                unsafe {
                    self.local().small[bin]
                        .central
                        .push_chain(Chain::measure(got.head))
                };
            }
        }
        let q = h.shared.intake[bin].take_all();
        if !q.is_null() {
            // SAFETY: the swap made the list ours: free objects of this heap and `bin`.
            unsafe {
                self.local().small[bin]
                    .central
                    .push_chain(Chain::measure(q))
            };
        }
    }

    /// Zeroes the per-run counts of every small segment of this heap.
    fn reset_found(&mut self) {
        let mut s = self.local().seg_head[SMALL_SEGS];
        while s != 0 {
            // SAFETY: `s - 1` is on this heap's segment list and we hold the handle; the
            // borrow ends with this block.
            let m = unsafe { arena::seg_meta(s - 1).get() };
            m.found = [0; PAGES_PER_SEGMENT];
            s = m.next;
        }
    }

    /// Counts this heap's objects of the list at `head` into their runs' `found`. Returns
    /// how many objects of other heaps it holds.
    ///
    /// # Safety
    /// `head` starts a well-formed list of free small objects the caller holds.
    unsafe fn count_found(&mut self, mut p: *mut u8) -> usize {
        let id = self.heap().id;
        let mut foreign = 0;
        while !p.is_null() {
            if owner_of(p) != Some(id) {
                foreign += 1;
            } else {
                // SAFETY: the tag names this heap, whose handle we hold; no other
                // `SegInner` borrow is live.
                match unsafe { run_of(p) } {
                    // Saturating below DOOMED: a count above the run's objects (a double
                    // free) then only keeps the run.
                    (m, Some(start)) => m.found[start] = (m.found[start] + 1).min(DOOMED - 1),
                    (_, None) => debug_assert!(false, "small object outside any run"),
                }
            }
            // SAFETY: `p` is a member of the caller's well-formed list.
            p = unsafe { next(p) };
        }
        foreign
    }

    /// Marks [`DOOMED`] each run of a bin in `bins` whose carved objects were all found.
    /// The bin's current carving run counts only what was carved from it; if that is all
    /// found, carving starts afresh. Returns runs marked.
    fn doom_whole_runs(&mut self, bins: BinSet) -> usize {
        let mut doomed = 0;
        let mut s = self.local().seg_head[SMALL_SEGS];
        while s != 0 {
            let idx = s - 1;
            let base = arena::segment_base(idx);
            // SAFETY: our segment and we hold the handle; no other `SegInner` borrow is live.
            let m = unsafe { arena::seg_meta(idx).get() };
            for start in m.starts.ones() {
                // SAFETY: `start` is a run of ours, so the page lies in the arena.
                let run = unsafe { base.add(start << PAGE_SHIFT) };
                let bin = tag_bin(run);
                if !bins.contains(bin) || m.found[start] == 0 {
                    continue;
                }
                let size = sc::bin_size(bin);
                let run_bytes = sc::objs_per_run(bin) * size;
                let l = &mut self.local().small[bin];
                let carving = !l.end.is_null() && l.end as usize - run_bytes == run as usize;
                let carved = if carving {
                    sc::objs_in(bin, l.bump as usize - run as usize)
                } else {
                    sc::objs_per_run(bin)
                };
                if m.found[start] as usize == carved {
                    m.found[start] = DOOMED;
                    doomed += 1;
                    if carving {
                        l.bump = null_mut();
                        l.end = null_mut();
                    }
                }
            }
            s = m.next;
        }
        doomed
    }

    /// Splits a detached list into this heap's objects of live runs (kept, as a chain) and
    /// other heaps' objects (a null-terminated list); objects of doomed runs are dropped.
    ///
    /// # Safety
    /// `p` starts a detached, well-formed list of free small objects the caller owns, counted
    /// by this pass.
    unsafe fn split(&mut self, mut p: *mut u8) -> (Chain, *mut u8) {
        let id = self.heap().id;
        let mut kept = LocalList::EMPTY;
        let mut kept_tail = null_mut();
        let mut foreign = LocalList::EMPTY;
        while !p.is_null() {
            // SAFETY: `p` is a member of the caller's list; its link is read before relinking.
            let nx = unsafe { next(p) };
            if owner_of(p) == Some(id) {
                // SAFETY: the tag names us, and we hold the handle; no other `SegInner`
                // borrow is live.
                let (m, start) = unsafe { run_of(p) };
                if m.found[start.unwrap_or(0)] != DOOMED {
                    if kept.count == 0 {
                        kept_tail = p;
                    }
                    // SAFETY: `p` is detached and ours; it joins only `kept`.
                    unsafe { kept.push(p) };
                }
            } else {
                // SAFETY: `p` is detached and ours; it joins only `foreign`.
                unsafe { foreign.push(p) };
            }
            p = nx;
        }
        (
            Chain {
                head: kept.head,
                tail: kept_tail,
                n: kept.count,
            },
            foreign.head,
        )
    }

    /// Gives every [`DOOMED`] run back to its segment; small segments left empty go to the
    /// arena's pool, except the one carving starts from next (and during a trim, which gives
    /// them back purged).
    fn free_doomed_runs(&mut self) {
        let h = self.heap();
        let mut s = self.local().seg_head[SMALL_SEGS];
        while s != 0 {
            let idx = s - 1;
            let base = arena::segment_base(idx);
            // SAFETY: our segment and we hold the handle; `m` is dead before
            // `release_segment` takes its own borrow.
            let (next_seg, empty) = {
                let m = unsafe { arena::seg_meta(idx).get() };
                let starts = m.starts;
                for start in starts.ones() {
                    if m.found[start] != DOOMED {
                        continue;
                    }
                    // SAFETY: `start` is a run of ours, so the page lies in the arena.
                    let run = unsafe { base.add(start << PAGE_SHIFT) };
                    let pages = sc::run_pages(tag_bin(run));
                    // SAFETY: the run is ours and holds no live object (all its carved objects
                    // were found free and unlinked); its tags go so that no `free` routes here.
                    unsafe { arena::set_tags(run, pages, 0) };
                    m.starts.clear_range(start, 1);
                    m.free_pages(start, pages);
                    m.found[start] = 0;
                    h.stats.run_bytes_moved(pages << config::PAGE_SHIFT, false);
                }
                (m.next, m.pages.is_empty())
            };
            let l = self.local();
            if empty && l.seg_hint[SMALL_SEGS] != s && !l.trimming {
                // SAFETY: one of our small segments with no page in use and no tag; no
                // `SegInner` borrow is live.
                unsafe { self.release_segment(idx, SMALL_SEGS, true) };
            }
            s = next_seg;
        }
    }
}

/// The segment record of this heap's small object `p` and the first page of its run (`None`
/// only if no run starts at or below its page, which the sweep never leaves so).
///
/// # Safety
/// `p`'s page tag names the heap whose handle the caller holds, and no other `SegInner`
/// borrow is live while the result is.
unsafe fn run_of(p: *mut u8) -> (&'static mut SegInner, Option<usize>) {
    let (idx, page) = arena::locate(p);
    // SAFETY: the segment holds a run of the caller's heap (caller contract), so it is one of
    // its small segments, and the borrow is the only one (caller contract).
    let m = unsafe { arena::seg_meta(idx).get() };
    let start = m.starts.prev_set(page);
    (m, start)
}

/// The owner a small object's page tag names.
fn owner_of(p: *mut u8) -> Option<u32> {
    arena::owner_and_bin(p).map(|(owner, _)| owner)
}

/// The bin of a run's first page (a value `>= NUM_BINS` if untagged).
fn tag_bin(run: *mut u8) -> usize {
    arena::owner_and_bin(run).map_or(usize::MAX, |(_, bin)| bin)
}
