//! Giving memory back over time (design.md §10): the epoch's drain of remote queues, time
//! decay of medium runs and free pages, the process-wide decay of the segment pool and the
//! large cache, the purge of `malloc_trim`, and a heap's retirement when its thread exits.

use super::sweep::BinSet;
use super::OwnedHeap;
use crate::config;
use crate::page::arena;
use crate::page::bitmap::PageBitmap;
use crate::page::size_class::{self as sc, MEDIUM_BINS, NUM_BINS, SMALL_BINS};
use crate::stats::{Counters, Ev};
use crate::sys::{options, os};

impl OwnedHeap {
    /// Moves everything other threads queued in the medium inboxes and central intakes into
    /// the central lists, whose caps then return surplus runs to the segments (adopted ones to
    /// their owners). Called at each epoch and at thread exit, so queued frees of bins the
    /// owner no longer allocates cannot pile up.
    pub fn drain_queues(&mut self) {
        let h = self.heap();
        for mi in 0..MEDIUM_BINS {
            // SAFETY: a medium inbox of this heap holds free runs of its bin.
            if unsafe { self.absorb(&h.shared.inbox[mi], SMALL_BINS + mi) } {
                h.stats.add(Ev::InboxDrains, 1);
            }
        }
        for bin in 0..NUM_BINS {
            // SAFETY: an intake of this heap holds free objects of its bin.
            unsafe { self.absorb(&h.shared.intake[bin], bin) };
        }
    }

    /// Time-based decay from the owner's epoch, at most once per decay interval
    /// (`HAKOZUNA_DECAY_MS`, default 1 s): the heap's own part ([`decay_local`]), then the
    /// process-wide part ([`decay_shared`]). (Per-epoch decay without the clock purged 3 GB in
    /// a 2 s mt-remote run and refaulted it.)
    ///
    /// [`decay_local`]: Self::decay_local
    pub fn decay_if_due(&mut self) {
        let now = os::now_ms();
        if self.decay_due(now) {
            self.decay_local(now);
            decay_shared(now, &self.heap().stats, false);
        }
    }

    /// Whether this heap's decay pass ran at `now` (a released-heap pass took it already).
    pub(super) fn decayed_at(&mut self, now: u64) -> bool {
        self.local().last_decay_ms == now
    }

    /// Whether this heap's decay pass is due at `now`.
    pub(super) fn decay_due(&mut self, now: u64) -> bool {
        now.saturating_sub(self.local().last_decay_ms) >= options::decay_ms()
    }

    /// The heap's own decay pass at `now`: small bins whose central list kept at least a run's
    /// worth of objects unused for a whole interval are swept (whole runs go back to their
    /// segments), medium runs that sat unused in central for a whole interval go back to their
    /// segments (adopted ones to their owners), and free pages that
    /// stayed free for a whole interval go back to the OS while the pages freed since are aged
    /// for the next pass. Returns whether it gave anything back or left pages to purge next.
    pub(super) fn decay_local(&mut self, now: u64) -> bool {
        self.local().last_decay_ms = now;
        // Owner stashes and spills join the central lists, whose low-water mark is what
        // decides a sweep: a class the owner no longer refills would otherwise keep what other
        // threads free to it there, out of the sweep's reach, for as long as the owner lives.
        if config::STASH_PUSH {
            for bin in 0..SMALL_BINS {
                self.stash_to_central(bin);
            }
        }
        self.spills_to_central();
        let mut idle = BinSet::default();
        for bin in 0..SMALL_BINS {
            let l = &mut self.local().small[bin];
            debug_assert!(l.low <= l.central.count, "a stale low-water mark");
            if l.low as usize >= sc::objs_per_run(bin) {
                idle.insert(bin);
            }
        }
        let mut worked = self.sweep_small(idle) > 0;
        for l in self.local().small.iter_mut() {
            l.low = l.central.count;
        }
        for mi in 0..MEDIUM_BINS {
            let l = self.local();
            let idle = l.medium_low[mi];
            debug_assert!(idle <= l.medium[mi].count, "a stale medium low-water mark");
            if idle > 0 {
                worked = true;
                // SAFETY: the central list is well formed; `c` is detached from it: free runs
                // of this medium bin (ours, or adopted ones `free_runs` sends home).
                unsafe {
                    let c = l.medium[mi].take(idle);
                    self.free_runs(SMALL_BINS + mi, c);
                }
            }
            let l = self.local();
            l.medium_low[mi] = l.medium[mi].count;
        }
        self.decay_pages() || worked
    }

    /// Decay of free pages: purges the free pages that were already dirty at the last pass
    /// (free for at least a whole interval), and ages the pages dirtied since. Returns whether
    /// it purged or aged any.
    fn decay_pages(&mut self) -> bool {
        let purged = self.purge_free_pages(Purge::Aged);
        let mut aged = false;
        for mut s in self.local().seg_head {
            while s != 0 {
                // SAFETY: `s - 1` is on this heap's segment list and we hold the owner's
                // handle; no other `SegInner` borrow is live.
                let m = unsafe { arena::seg_meta(s - 1).get() };
                m.aged = m.dirty.combine(&m.pages, |dirty, used| dirty & !used);
                m.dirty = PageBitmap::new();
                aged |= !m.aged.is_empty();
                s = m.next;
            }
        }
        purged > 0 || aged
    }

    /// `malloc_trim` of a heap: every small bin swept (whole runs back to their segments),
    /// every medium run in central back to its segment, free pages purged, empty segments
    /// given to the arena's pool. Unless `force`, a heap whose central lists have not changed
    /// since its last sweep is not swept again. Free stretches shorter than `min_pages` in a
    /// segment that still holds runs stay dirty for decay (`1`: every free page is purged).
    /// Returns bytes purged.
    pub fn trim(&mut self, force: bool, min_pages: usize) -> usize {
        self.local().trimming = true;
        self.drop_ahead_runs();
        self.drain_queues();
        self.sweep_all(force);
        self.release_medium_central();
        let bytes = self.purge_free_pages(Purge::All { min_pages });
        self.release_empty_segments(false);
        self.local().trimming = false;
        bytes
    }

    /// Decay of a heap released at least an interval ago (`registry::decay_released`): with
    /// no owner for that long, everything free in it is unused, so it gets a trim's treatment
    /// at once rather than aging over several passes. Returns whether it gave anything back.
    pub(super) fn decay_released_heap(&mut self, now: u64) -> bool {
        self.local().last_decay_ms = now;
        self.trim(false, 1) > 0
    }

    /// Gives every medium run in the central lists back to its segment (adopted ones home).
    fn release_medium_central(&mut self) {
        for mi in 0..MEDIUM_BINS {
            let l = self.local();
            l.medium_low[mi] = 0;
            // SAFETY: the central list is well formed with an exact count; `c` is detached
            // from it: free runs of this medium bin (ours, or adopted ones `free_runs` sends
            // home).
            unsafe {
                let c = l.medium[mi].take_all();
                self.free_runs(SMALL_BINS + mi, c);
            }
        }
    }

    /// Purges free pages ([`Purge`] says which), one `madvise` per free stretch (from its first
    /// page to purge to its last; pages purged before lie between them, and purging them again
    /// costs no fault), so pages freed at different times cost one call; segments whose pages
    /// are all free (and for decay, none dirtied since its last pass) are purged whole,
    /// neighbours in the arena together ([`SegmentPurger`]). Returns bytes purged (pages to
    /// purge only).
    ///
    /// [`SegmentPurger`]: arena::SegmentPurger
    fn purge_free_pages(&mut self, which: Purge) -> usize {
        let min_pages = match which {
            Purge::All { min_pages } => min_pages,
            Purge::Aged => 1,
        };
        let heads = self.local().seg_head;
        let mut bytes = 0;
        let mut whole = arena::SegmentPurger::new();
        for mut s in heads {
            while s != 0 {
                // SAFETY: `s - 1` is on this heap's segment list and we hold the owner's
                // handle; no other `SegInner` borrow is live.
                let m = unsafe { arena::seg_meta(s - 1).get() };
                let base = arena::segment_base(s - 1);
                // Pages to purge, and pages no purge may reach over: those in use, and for
                // decay those dirtied since the last pass.
                let (pick, stay) = match which {
                    Purge::All { .. } => (m.dirty.combine(&m.aged, |d, a| d | a), m.pages),
                    Purge::Aged => (m.aged, m.pages.combine(&m.dirty, |u, d| u | d)),
                };
                let pick = pick.combine(&stay, |p, st| p & !st);
                if stay.is_empty() {
                    if !pick.is_empty() {
                        bytes += pick.ones().count() << config::PAGE_SHIFT;
                        // SAFETY: segment `s - 1` is ours and has no page in use: it holds no
                        // live object, and nothing else uses it while we hold the handle.
                        unsafe { whole.add(s - 1) };
                    }
                    m.dirty = PageBitmap::new();
                    m.aged = PageBitmap::new();
                    s = m.next;
                    continue;
                }
                for (start, len) in stay.free_runs() {
                    if len < min_pages {
                        continue;
                    }
                    let mut ones = (start..start + len).filter(|&i| pick.get(i));
                    let Some(first) = ones.next() else { continue };
                    let (last, n) = ones.fold((first, 1), |(_, n), i| (i, n + 1));
                    // SAFETY: pages `first ..= last` lie in a free stretch of segment `s - 1`:
                    // mapped arena memory that holds no live object.
                    unsafe {
                        os::purge(
                            base.add(first << config::PAGE_SHIFT),
                            (last + 1 - first) << config::PAGE_SHIFT,
                        )
                    };
                    bytes += n << config::PAGE_SHIFT;
                    m.dirty.clear_range(start, len);
                    m.aged.clear_range(start, len);
                }
                s = m.next;
            }
        }
        whole.finish();
        if bytes > 0 {
            self.heap().stats.add(Ev::BytesPurged, bytes as u64);
        }
        bytes
    }

    /// Thread exit: moves the spill into the central lists (hz3 flushes it at thread exit),
    /// absorbs the medium inboxes and central intakes, shrinks the medium central lists to
    /// [`config::MEDIUM_RETIRE_BYTES`] together and sends adopted runs home; surplus own runs go
    /// back to their segments, and empty segments to the arena's pool. The owner stashes and
    /// transfer caches stay as they are: they are the heap's, and the next owner pops them in
    /// the usual order (moving them cost a walk over every cold object at each thread exit).
    ///
    /// A heap whose owner took at most [`config::EXIT_TRIM_SEGMENTS`] segments is handed back
    /// warm: nothing is swept or purged, the next thread to claim it reuses it, and decay
    /// purges what stays unused (`registry::decay_released`), so thread churn makes no
    /// `madvise` call. A heap that took more went through a burst that a short-lived thread
    /// does not: it is given back at once as `malloc_trim` gives back a heap ([`trim`], after
    /// the shared pool's chains went home), since nothing may run decay for it later (a
    /// process whose threads exited may only hit its thread caches). Returns whether it was:
    /// the registry then keeps the heap eager for an interval.
    ///
    /// [`trim`]: Self::trim
    pub fn retire(&mut self) -> bool {
        let burst = self.local().segs_taken > config::EXIT_TRIM_SEGMENTS;
        self.local().segs_taken = 0;
        // The next owner's takes from the shared pool start small again (`refill`).
        for l in self.local().small.iter_mut() {
            l.pool_takes = 0;
        }
        if burst {
            self.heap().stats.add(Ev::ExitGiveBacks, 1);
            // Chains the burst parked in the shared pool pin their runs: home first.
            if config::SHARED_POOL {
                super::pool::send_all_home(&self.heap().stats);
            }
            self.trim(true, config::EXIT_PURGE_MIN_PAGES);
            return true;
        }
        self.drain_queues();
        // The next owner may need other classes; reserved pages were never touched.
        self.drop_ahead_runs();
        self.shrink_medium_for_exit();
        self.spills_to_central();
        self.park_for_exit();
        // Empty run segments serve other heaps from the arena's pool, whose decay purges them.
        self.release_empty_segments(true);
        false
    }
}

/// Which free pages [`OwnedHeap::purge_free_pages`] purges.
#[derive(Clone, Copy)]
enum Purge {
    /// A trim's: every dirty or aged free page, except that in a segment that still holds runs,
    /// free stretches shorter than `min_pages` stay dirty for decay (a burst's exit trim met
    /// many short stretches between runs other threads still held, and purging each cost a
    /// call: docs/ab.md). `1`: every one.
    All { min_pages: usize },
    /// Decay's: the aged free pages (free for a whole interval). A stretch stops at the pages
    /// dirtied since, which age for the next pass.
    Aged,
}

/// The process-wide part of decay, each gated by its own clock so any number of callers do it
/// once per interval: the arena's segment pool purges segments given back at least an
/// interval ago, the shared pool sends home the chains of classes nobody took from for an
/// interval, and every large-cache shard unmaps blocks older than the interval. `stats` are the
/// caller's counters (`shared` when other threads may bump them too).
pub fn decay_shared(now: u64, stats: &Counters, shared: bool) {
    let pooled = arena::decay_pool(now, options::decay_ms());
    if pooled > 0 {
        if shared {
            stats.add_shared(Ev::BytesPurged, pooled as u64);
        } else {
            stats.add(Ev::BytesPurged, pooled as u64);
        }
    }
    if config::SHARED_POOL {
        super::pool::decay(now, options::decay_ms(), stats);
    }
    crate::page::large::decay(now);
}
