//! The small refill chain (design.md §7): where a thread bin's next batch comes from, in order
//! spill → owner stash → transfer cache → central (with its remote intake) → shared pool →
//! other heaps' stashes (`stash-steal`) → a freshly carved page run.

use super::{pool, registry, Heap, OwnedHeap, SMALL_SEGS};
use crate::config::{self, STASH_PUSH, TRANSFER_CACHE};
use crate::ds::list::{set_next, LocalList};
use crate::ds::owner_stash::PopMode;
use crate::page::{arena, page_tag, size_class as sc};
use crate::stats::Ev;
use core::ptr::null_mut;

/// Whether the transfer cache can ever hold anything: only when the stash may refuse a push.
const XFER_FED: bool = TRANSFER_CACHE && (!STASH_PUSH || config::STASH_CAPPED);

/// Most objects a small refill keeps of one shared-pool chain, the rest being parked again:
/// half a fresh run's objects (at least 2) at the owner's first take of the class, twice as
/// many at each further take (a slow start, as tcmalloc's thread caches grow a list's length),
/// so that from the 8th take on every chain is taken whole, as before. Why: a refill took a
/// whole chain (up to a bin limit), a thread that needed a few objects of a class kept the
/// rest in its bin until it exited while other threads carved, and at its exit all of it came
/// back as one longer chain; in thread churn the classes of 257–2,048 bytes grew to two or
/// three times what a generation uses (docs/ab.md, "Thread churn: shared-pool chains"). Not
/// capped at the refill batch: a thread that keeps taking a class would then walk every chain
/// (cold objects, in `leak-churn`) where it installed it whole.
fn pool_take_max(bin: usize, takes: u32) -> u32 {
    let first = (sc::objs_per_run(bin) as u32 / 2).max(2);
    first << takes.min(POOL_TAKE_DOUBLINGS)
}

/// Doublings after which [`pool_take_max`] exceeds every small bin limit (at most 256
/// objects), so chains are taken whole.
const POOL_TAKE_DOUBLINGS: u32 = 8;
const _: () = assert!(2 << POOL_TAKE_DOUBLINGS > 256);

/// Objects a carve of small `bin` links from `bump`, where `avail` objects are left in the
/// run: up to `want`, and with `by_page` (the heap's first run of the class) and a class up
/// to 2 KiB only those that start in `bump`'s page (`carve_small`). At least one whenever
/// `avail` and `want` are.
fn carve_count(bin: usize, bump: usize, avail: usize, want: u32, by_page: bool) -> usize {
    let n = (want as usize).min(avail);
    let size = sc::bin_size(bin);
    if size <= sc::SMALL_MAX && by_page {
        // Objects that start before the page's end: `objs_in` rounds down, so ask for one
        // byte short of a further object.
        let page_end = (bump | (crate::sys::os::PAGE - 1)) + 1;
        n.min(sc::objs_in(bin, page_end - bump + size - 1))
    } else {
        n
    }
}

impl OwnedHeap {
    /// The refill sources of a small bin up to the shared ones, in hz3's order up to the
    /// central list, then ours; `whole` is the limit of the bin to fill. Returns an empty list
    /// when all are empty; the caller then carves ([`carve_small`](Self::carve_small)). (The
    /// caller flushes its own remote buffer at the entry of every refill, as hz3 does, rather
    /// than between central and carving.)
    pub fn refill_small_shared(&mut self, bin: usize, want: u32, whole: u32) -> LocalList {
        let h = self.heap();
        if config::STASH_POP {
            let got = self.pop_stash(bin, want);
            if got.count > 0 {
                return got;
            }
        } else if STASH_PUSH {
            // Pops are switched off: drain the stash whole into central so nothing strands.
            self.stash_to_central(bin);
        }
        if XFER_FED {
            let got = h.shared.xfer[bin].pop();
            if got.count > 0 {
                h.stats.add(Ev::RefillXfer, 1);
                return got;
            }
        }
        // SAFETY: the intake of `bin` holds free objects of this heap and `bin`.
        unsafe { self.absorb(&h.shared.intake[bin], bin) };
        let l = &mut self.local().small[bin];
        if l.central.count > 0 {
            h.stats.add(Ev::RefillCentral, 1);
            // Whole if it fits in the bin (`whole`, its limit, or the default if more): its
            // objects are often cold (frees of other threads, a bin handed back at thread
            // exit, the older part a grown bin shed).
            // SAFETY: the central list is well formed with an exact count.
            let got = unsafe { l.central.take_whole_or(whole.max(sc::bin_limit(bin)), want) };
            l.note_low();
            return got;
        }
        if config::SHARED_POOL {
            // Part of a chain, growing with the owner's takes of the class ([`pool_take_max`]);
            // whole while no other thread owns a heap: the pool then holds only this heap's
            // surplus and what exited threads left, and no other heap waits for the rest
            // (split, `leak-churn`'s one thread grew 30 bins instead of 5 and ran 1.4-3x slower).
            let max = if registry::others_own_heaps() {
                pool_take_max(bin, l.pool_takes)
            } else {
                u32::MAX
            };
            let got = pool::take_at_most(bin, max);
            if got.count > 0 {
                l.pool_takes = l.pool_takes.saturating_add(1);
                h.stats.add(Ev::RefillPool, 1);
                return got;
            }
        }
        // Not below a cache line, as `small-adopt`: a smaller object shares its line with
        // neighbours that may be live on the owner's thread (passive false sharing).
        if config::STASH_STEAL && sc::bin_size(bin) >= config::ADOPT_MIN_SIZE {
            return self.steal_small(bin, want);
        }
        LocalList::EMPTY
    }

    /// `stash-steal`: probes up to [`STEAL_PROBES`] other heaps' stashes of `bin`, round robin,
    /// and takes from the first that holds objects. The objects keep their owner's tag, as
    /// shared-pool objects do. Why: an owner that is descheduled (or no longer allocates the
    /// class) cannot take what other threads freed to it, while running threads carve pages.
    ///
    /// [`STEAL_PROBES`]: config::STEAL_PROBES
    fn steal_small(&mut self, bin: usize, want: u32) -> LocalList {
        let got = self.probe_others(|victim| {
            // SAFETY: any thread may steal (`OwnerStash::steal`); the objects become ours.
            unsafe {
                victim.shared.stash[bin].steal(
                    want.min(config::STASH_DRAIN_LIMIT),
                    sc::bin_limit(bin),
                    PopMode::CONFIGURED,
                )
            }
        });
        if got.count > 0 {
            self.heap().stats.add(Ev::RefillSteal, 1);
        }
        got
    }

    /// Offers up to [`STEAL_PROBES`] other heaps to `take`, round robin from the heap's steal
    /// cursor (shared by `stash-steal` and `inbox-steal`), and returns the first non-empty list
    /// it gives.
    ///
    /// [`STEAL_PROBES`]: config::STEAL_PROBES
    pub(super) fn probe_others(&mut self, mut take: impl FnMut(&Heap) -> LocalList) -> LocalList {
        let id = self.heap().id;
        let n = registry::published();
        if n < 2 {
            return LocalList::EMPTY;
        }
        let l = self.local();
        for _ in 0..config::STEAL_PROBES.min(n - 1) {
            let mut v = l.steal_next % n;
            if v == id {
                v = (v + 1) % n;
            }
            l.steal_next = v + 1;
            let got = take(registry::get(v));
            if got.count > 0 {
                return got;
            }
        }
        LocalList::EMPTY
    }

    /// Spill first, then one `pop_batch` of the owner stash.
    pub fn pop_stash(&mut self, bin: usize, want: u32) -> LocalList {
        if !config::STASH_POP {
            return LocalList::EMPTY;
        }
        let h = self.heap();
        let spill = &mut self.local().small[bin].spill;
        // SAFETY: the owner is the stash's single consumer, and we hold the owner's handle;
        // `spill` is this heap's spill for `bin`.
        let p = unsafe {
            h.shared.stash[bin].pop_batch(
                spill,
                want.min(config::STASH_DRAIN_LIMIT),
                sc::bin_limit(bin),
                PopMode::CONFIGURED,
            )
        };
        if p.list.count > 0 {
            if p.from_spill {
                h.stats.add(Ev::RefillSpill, 1);
            } else {
                h.stats.add(Ev::RefillStash, 1);
                h.stats.add(Ev::StashPops, 1);
                h.stats.add(Ev::StashPopObjs, p.list.count as u64);
            }
        }
        p.list
    }

    /// Carves up to `want` fresh objects of a small bin, taking a new page run when the
    /// current one is used up. In the heap's first run of a class up to 2 KiB, only those that
    /// start in the bump pointer's page, so that run is touched a page at a time, as the thread
    /// needs its objects: every heap carves its own first run of each class it allocates, and
    /// a thread that needed a few objects of a class made the whole run resident (docs/ab.md,
    /// "mt-remote 16–2,048"). Later runs, carved while the heap's use of the class grows, are
    /// linked a refill batch at a time (a page at a time, every carve of a 2-page run was two
    /// refills: +10 % instructions on mt-remote T=8). Empty only when the arena cannot supply
    /// a run.
    pub fn carve_small(&mut self, bin: usize, want: u32) -> LocalList {
        let h = self.heap();
        let size = sc::bin_size(bin);
        let exhausted = {
            let l = &self.local().small[bin];
            l.bump == l.end
        };
        if exhausted {
            // A run before this one: the heap's first run of the class is used up.
            let grew = !self.local().small[bin].bump.is_null();
            let pages = sc::run_pages(bin);
            let Some(run) = self.next_small_run(bin, pages) else {
                return LocalList::EMPTY;
            };
            // SAFETY: `run` is a page run of `pages` pages of this heap that `next_small_run`
            // just took or had reserved, untouched by any other class.
            unsafe { arena::set_tags(run, pages, page_tag::encode(h.id, bin)) };
            let (idx, page) = arena::locate(run);
            // SAFETY: the run lies in one of this heap's small segments and we hold the
            // owner's handle; no other `SegInner` borrow is live.
            unsafe { arena::seg_meta(idx).get() }
                .starts
                .set_range(page, 1);
            if config::SECURE {
                // SAFETY: the run is fresh and this heap's; its objects are `size` apart.
                unsafe { crate::ds::list::mark_run(run, sc::objs_per_run(bin), size) };
            }
            let l = &mut self.local().small[bin];
            l.grew |= grew;
            l.bump = run;
            // SAFETY: `objs_per_run(bin) * size` bytes fit in the run of `run_pages(bin)` pages.
            l.end = unsafe { run.add(sc::objs_per_run(bin) * size) };
            h.stats.add(Ev::PagesCarved, 1);
            registry::note_small_run();
        }
        let l = &mut self.local().small[bin];
        let avail = sc::objs_in(bin, l.end as usize - l.bump as usize);
        let n = carve_count(bin, l.bump as usize, avail, want, !l.grew);
        let head = l.bump;
        let mut p = head;
        // SAFETY: [bump, end) is the uncarved, unused tail of this bin's current run, and the
        // `n <= avail` objects of `size` bytes linked here all lie inside it; `p.add(size)` of
        // the last one is at most `end`.
        unsafe {
            for _ in 1..n {
                let nx = p.add(size);
                set_next(p, nx);
                p = nx;
            }
            set_next(p, null_mut());
            l.bump = p.add(size);
        }
        h.stats.add(Ev::RefillNewPage, 1);
        LocalList {
            head,
            count: n as u32,
        }
    }

    /// The next run of small `bin` (`pages` pages) to carve: the first of the runs reserved
    /// ahead, else a run where the heap would take one anyway (first fit, so free pages that
    /// are still resident are reused as before) together with as many of the next
    /// [`SmallLocal::group`] − 1 runs' pages right after it as are free, reserved ahead.
    /// Why: with one page run per take, first fit laid the classes' runs in turn (64 B,
    /// 128 B, 32 B, 64 B …), and what a class hands out jumped a page at each run's end;
    /// Python's collector, walking objects in allocation order, ran slower than over
    /// tcmalloc's two-page spans (docs/ab.md, "Python dict/JSON: small runs side by side").
    ///
    /// [`SmallLocal::group`]: super::SmallLocal
    fn next_small_run(&mut self, bin: usize, pages: usize) -> Option<*mut u8> {
        let l = &mut self.local().small[bin];
        if l.ahead_runs > 0 {
            let run = l.ahead;
            l.ahead_runs -= 1;
            // SAFETY: the reservation holds `ahead_runs` more runs of `pages` pages after
            // `run`, in one segment; after the last, `ahead` is one past it (at most the
            // segment's end) and is not used again.
            l.ahead = unsafe { run.add(pages << config::PAGE_SHIFT) };
            return Some(run);
        }
        // Only while no other thread owns a heap: with 8 threads on mt-remote, classes carved
        // their reserved pages while resident free pages of their heaps waited, and peak RSS
        // rose by a quarter (docs/ab.md).
        let max = if registry::others_own_heaps() {
            1
        } else {
            (config::SMALL_GROUP_PAGES / pages).max(1) as u32
        };
        let k = l.group.clamp(1, max);
        l.group = (k * 2).min(max);
        let run = self.alloc_run(pages, SMALL_SEGS)?;
        if k > 1 {
            let got = self.claim_after(run, pages, k as usize - 1);
            if got > 0 {
                let l = &mut self.local().small[bin];
                l.ahead_runs = got as u32;
                // SAFETY: `claim_after` took `got` runs of `pages` pages right after `run`,
                // in its segment.
                l.ahead = unsafe { run.add(pages << config::PAGE_SHIFT) };
            }
        }
        Some(run)
    }

    /// Gives back every small class's runs reserved ahead of carving, and puts every class's
    /// group back to one run (a sweep that gave runs back, a trim, a thread's exit).
    pub(super) fn drop_ahead_runs(&mut self) {
        for bin in 0..sc::SMALL_BINS {
            let l = &mut self.local().small[bin];
            l.group = 1;
            let n = core::mem::take(&mut l.ahead_runs) as usize;
            if n == 0 {
                continue;
            }
            let pages = n * sc::run_pages(bin);
            let (idx, page) = arena::locate(l.ahead);
            // SAFETY: the reserved pages lie in one of this heap's small segments and we hold
            // the owner's handle; no other `SegInner` borrow is live.
            let m = unsafe { arena::seg_meta(idx).get() };
            // Free, neither dirty nor aged: `claim_after` reserves only pages that are not
            // resident (never touched, or purged), and carving has not reached these (nothing
            // for decay or a trim to purge).
            m.free_untouched_pages(page, pages);
            self.heap()
                .stats
                .run_bytes_moved(pages << config::PAGE_SHIFT, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::carve_count;
    use crate::page::size_class as sc;
    use crate::sys::os::PAGE;

    /// A model of the first run's carving over every small class and every carving point of
    /// its run (runs start on a page): with room, a carve links at least one object; carved
    /// a page at a time, it links exactly the objects that start in the bump pointer's page
    /// (the last may cross into the next page, none lies past the run's objects), and
    /// successive carves cover the run's objects, each once; later runs and classes above
    /// 2 KiB are linked `want` at a time.
    #[test]
    fn a_first_run_is_carved_by_the_objects_that_start_in_each_page() {
        for bin in 0..sc::SMALL_BINS {
            let size = sc::bin_size(bin);
            let objs = sc::objs_per_run(bin);
            assert!(objs >= 1);
            // A run at an arbitrary page-aligned address.
            let run = 0x7f00_0000_0000usize + 37 * PAGE;
            for want in [1u32, 3, 32, u32::MAX] {
                let mut carved = 0;
                while carved < objs {
                    let bump = run + carved * size;
                    let avail = objs - carved;
                    let later = carve_count(bin, bump, avail, want, false);
                    assert_eq!(later, avail.min(want as usize), "bin {bin}");
                    let n = carve_count(bin, bump, avail, want, true);
                    assert!(
                        n >= 1 && n <= avail && n <= want as usize,
                        "bin {bin} at {carved}"
                    );
                    if size <= sc::SMALL_MAX {
                        let page = bump / PAGE;
                        // Every linked object starts in the bump pointer's page.
                        assert_eq!(
                            (bump + (n - 1) * size) / PAGE,
                            page,
                            "bin {bin} at {carved}"
                        );
                        // Unless capped by `want` or the run, the next one starts past it.
                        if n < avail && n < want as usize {
                            assert!((bump + n * size) / PAGE > page, "bin {bin} at {carved}");
                        }
                    } else {
                        assert_eq!(n, later);
                    }
                    carved += n;
                }
                assert_eq!(carved, objs, "bin {bin}: the run's objects, each once");
            }
        }
    }
}
