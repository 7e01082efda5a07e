//! Medium runs (design.md §7): refills from the inbox, central, the shared pool and new runs,
//! and the way runs leave a heap: back to their segments, or, when adopted from another heap,
//! to the shared pool or home to their owner's inbox (only the owner touches a segment's
//! bitmap).

use super::send::{send_home, send_one};
use super::{pool, OwnedHeap};
use crate::config;
use crate::ds::list::{set_next, Chain, LocalList};
use crate::page::size_class::{self as sc, MEDIUM_BINS, SMALL_BINS};
use crate::page::{arena, page_tag};
use crate::stats::Ev;
use crate::sys::{options, os};

impl OwnedHeap {
    /// Medium refill: this class's inbox (whole; if it held runs, the other classes' inboxes
    /// go back to the segments, [`return_inboxes`](Self::return_inboxes)), then up to `want`
    /// runs from central, else a chain from the shared pool (other heaps' runs), else (the
    /// other inboxes back to the segments first) from another heap's inbox
    /// ([`steal_inbox`](Self::steal_inbox)), else `carve` new runs.
    pub fn refill_medium(&mut self, bin: usize, want: u32, carve: u32) -> LocalList {
        let h = self.heap();
        let mi = bin - SMALL_BINS;
        // SAFETY: the inbox and intake of `bin` are this heap's queues of free runs of `bin`.
        let homed = unsafe { self.absorb(&h.shared.inbox[mi], bin) };
        if homed {
            h.stats.add(Ev::InboxDrains, 1);
            h.stats.add(Ev::MediumInbox, 1);
            self.return_inboxes(mi);
        }
        // SAFETY: as above.
        unsafe { self.absorb(&h.shared.intake[bin], bin) };
        let l = self.local();
        let central = &mut l.medium[mi];
        if central.count > 0 {
            h.stats.add(Ev::MediumCentral, 1);
            // Whole when it is at most a refill: no walk over a page per run.
            // SAFETY: the central list is well formed with an exact count.
            let got = unsafe { central.take_whole_or(want, want) };
            l.note_medium_low(mi);
            return got;
        }
        if config::MEDIUM_POOL {
            let got = pool::take(bin);
            if got.count > 0 {
                h.stats.add(Ev::MediumPool, 1);
                return got;
            }
        }
        if !homed {
            self.return_inboxes(mi);
        }
        if config::INBOX_STEAL {
            let got = self.steal_inbox(mi, want);
            if got.count > 0 {
                h.stats.add(Ev::MediumSteal, 1);
                return got;
            }
        }
        let pages = sc::run_pages(bin);
        let tag = page_tag::encode(h.id, bin);
        let mut out = LocalList::EMPTY;
        for _ in 0..carve {
            let Some(run) = self.carve_run(pages, bin, tag) else {
                break;
            };
            // SAFETY: `run` is a fresh page run, its first page tagged, that no other list
            // references.
            unsafe { out.push(run) };
        }
        if out.count > 0 {
            h.stats.add(Ev::MediumCarve, 1);
        }
        out
    }

    /// The runs other threads sent home of every medium class but `except` (a medium bin
    /// index) go back to their segments, where they coalesce with their neighbours and serve
    /// any class. Kept per class until the owner next refilled that class, each inbox held
    /// about one run per class between refills, runs that served no other class
    /// (`tests/py/queue_rss.py`, where consumers send every run home, docs/ab.md). Called by
    /// a refill whose own inbox held runs (other threads send this heap runs home) and by one
    /// about to take runs elsewhere; a refill served by its central list alone does not probe
    /// the inboxes (random-mixed 16–32768: 47.7 Ir/op when every refill probed, 46.2 without).
    fn return_inboxes(&mut self, except: usize) {
        let h = self.heap();
        for mi in 0..MEDIUM_BINS {
            let q = &h.shared.inbox[mi];
            if mi == except || q.is_empty() {
                continue;
            }
            let all = q.take_all();
            if !all.is_null() {
                // SAFETY: the swap made the list ours: free runs of this heap's medium bin
                // `SMALL_BINS + mi`, which `free_runs` gives back (or sends home if adopted).
                unsafe { self.free_runs(SMALL_BINS + mi, Chain::measure(all)) };
            }
        }
    }

    /// `inbox-steal`: probes up to [`STEAL_PROBES`] other heaps' inboxes of medium bin
    /// index `mi`, round robin (the cursor `stash-steal` uses), and takes up to `want` runs
    /// from the first that holds any; the rest goes back. The runs keep their owner's tag, as
    /// adopted runs do, and go home when they are freed and leave a bin. Why: an owner that is
    /// not running (a producer blocked on a full queue) cannot reuse the runs its consumers
    /// sent home, while the producer that runs carves new ones (`tests/py/queue_rss.py`:
    /// 70 → 50 MiB, docs/ab.md). Any thread may take an inbox: a take is one swap, so takers
    /// get disjoint lists (`ds/mpsc.rs`).
    ///
    /// [`STEAL_PROBES`]: config::STEAL_PROBES
    fn steal_inbox(&mut self, mi: usize, want: u32) -> LocalList {
        self.probe_others(|victim| {
            let q = &victim.shared.inbox[mi];
            let all = q.take_all();
            if all.is_null() {
                return LocalList::EMPTY;
            }
            // SAFETY: the swap made the list ours: free runs of the victim heap, medium bin
            // index `mi`, linked through their first word.
            let (got, rest) = unsafe { Chain::take(all, want) };
            if !rest.is_null() {
                // SAFETY: `rest` is the null-terminated remainder of that list, still ours;
                // it goes back to the inbox it came from, unwalked.
                unsafe { q.restore(rest) };
            }
            LocalList {
                head: got.head,
                count: got.n,
            }
        })
    }

    /// Gives runs back to their segments; an adopted run of another heap goes to its owner's
    /// inbox instead, since only the owner touches a segment's bitmap.
    ///
    /// # Safety
    /// `c` is a detached chain of free runs of medium `bin` (ours or adopted).
    pub(super) unsafe fn free_runs(&mut self, bin: usize, c: Chain) -> u32 {
        // SAFETY: `c` is a detached chain of free runs of `bin` (caller contract).
        let own = unsafe { self.send_foreign_home(bin, c) };
        let mut p = own.head;
        for _ in 0..own.n {
            // SAFETY: `p` is one of the `own.n` free runs of this heap in `own`: its link is
            // read before the run goes back to its segment, and nothing else references it.
            unsafe {
                let nx = crate::ds::list::next(p);
                self.free_run(p, sc::run_pages(bin));
                p = nx;
            }
        }
        self.heap().stats.add(Ev::RunsReturned, own.n as u64);
        own.n
    }

    /// Sends the adopted runs of `c` (other heaps' runs) to their owners' inboxes and returns
    /// the rest, this heap's own runs, as a chain (in reverse order).
    ///
    /// # Safety
    /// `c` is a detached chain of free runs of medium `bin`.
    pub unsafe fn send_foreign_home(&mut self, bin: usize, c: Chain) -> Chain {
        if !config::MEDIUM_ADOPT {
            return c;
        }
        let h = self.heap();
        let keep = |p: *mut u8| match foreign_owner(h.id, p) {
            Some(dst) => {
                // SAFETY: the run's tag names `dst` and `bin`; it is free and, handed to us by
                // `retain`, now the inbox's.
                unsafe { send_one(p, dst, bin, &h.stats, false) };
                h.stats.add(Ev::RunsSentHome, 1);
                false
            }
            None => true,
        };
        // SAFETY: `c` is a detached chain of free runs the caller owns (caller contract).
        unsafe { c.retain(keep) }
    }

    /// Parks what medium `bin`'s central list holds past one bin limit (after
    /// [`park_foreign`](Self::park_foreign), mostly this heap's own runs) in the shared pool, in
    /// chains of at most a bin limit, the most recently freed first, while some heap has taken
    /// a chain of the class within the last decay interval; a chain the pool refuses stays.
    /// Why: a central list is reachable only by its owner, so runs it keeps past what the next
    /// refills need wait there while other heaps carve new runs of the class (cross-churn, issue
    /// 18: medium central lists held 8–26 MiB at the peak, docs/ab.md); parked, any heap about
    /// to carve takes them, as small classes do past [`config::SHARED_KEEP`] bin limits. A class
    /// nobody takes from keeps the central cap's behaviour (the surplus past it goes back to the
    /// segments): parked anyway, a thread that freed 32 MiB of runs held the pool's share on top
    /// of the cap's 16 MiB (`tests/stats_api.rs`). The gate costs a clock read per medium shed
    /// that finds the list past one bin limit. Never during a trim: its drain of the queues
    /// (the chains `malloc_trim` sent home from the pool among them) would park them again,
    /// where they stayed resident after `malloc_trim` returned; they go back to their segments
    /// with the rest of central.
    pub(super) fn park_own_surplus(&mut self, bin: usize) {
        if !config::MEDIUM_POOL
            || self.local().trimming
            || !pool::taken_within(bin, os::now_ms(), options::decay_ms())
        {
            return;
        }
        let h = self.heap();
        let limit = sc::bin_limit(bin);
        let central = &mut self.local().medium[bin - SMALL_BINS];
        while central.count > limit {
            // SAFETY: the central list is well formed with an exact count; `take` detaches a
            // non-empty chain of at most `limit` of its free runs of `bin`.
            let piece = unsafe { central.take((central.count - limit).min(limit)) };
            // SAFETY: `piece` is a non-empty detached chain of free runs of `bin` we own.
            match unsafe { pool::park(bin, piece) } {
                Ok(()) => h.stats.add(Ev::MediumParks, 1),
                Err(back) => {
                    // SAFETY: the refused chain is the one just detached: back where it was.
                    unsafe { central.push_chain(back) };
                    break;
                }
            }
        }
        // What was parked left the list: the next decay pass must not return the runs that
        // stay as if they had sat there for the whole interval.
        self.local().note_medium_low(bin - SMALL_BINS);
    }

    /// Takes the adopted runs (other heaps') out of `c` and parks them in the shared pool in
    /// chains of at most a bin limit, for any heap about to carve the class; a chain that finds
    /// the class's slots full goes home. Returns this heap's own runs (in reverse order).
    ///
    /// # Safety
    /// `c` is a detached chain of free runs of medium `bin` that the caller owns.
    pub(super) unsafe fn park_foreign(&mut self, bin: usize, c: Chain) -> Chain {
        if !config::MEDIUM_POOL {
            return c;
        }
        let h = self.heap();
        let limit = sc::bin_limit(bin);
        let mut piece = Chain::EMPTY;
        let park = |piece: &mut Chain| {
            if piece.n == 0 {
                return;
            }
            // SAFETY: `piece` is a non-empty null-terminated chain of free runs of `bin` that
            // we own (built below from the caller's chain).
            match unsafe { pool::park(bin, *piece) } {
                Ok(()) => h.stats.add(Ev::MediumParks, 1),
                Err(back) => {
                    // SAFETY: the refused chain is ours, null-terminated: other heaps' free runs
                    // of `bin`, each first page tagged with its owner.
                    unsafe { send_home(bin, back.head, &h.stats, false) };
                    h.stats.add(Ev::RunsSentHome, back.n as u64);
                }
            }
            *piece = Chain::EMPTY;
        };
        let keep = |p: *mut u8| {
            if foreign_owner(h.id, p).is_none() {
                return true;
            }
            // SAFETY: `p` is handed to us by `retain` (its link already read): it becomes the
            // head of `piece`, a null-terminated chain.
            unsafe { set_next(p, piece.head) };
            if piece.n == 0 {
                piece.tail = p;
            }
            piece.head = p;
            piece.n += 1;
            if piece.n == limit {
                park(&mut piece);
            }
            false
        };
        // SAFETY: `c` is a detached chain of free runs the caller owns (caller contract).
        let own = unsafe { c.retain(keep) };
        park(&mut piece);
        own
    }

    /// Before the heap takes a purged or fresh segment (a heap not in a burst takes a resident
    /// one from the arena's pool before this: `carve_run`): the medium inboxes join the
    /// central lists, and if those then hold more than [`config::MEDIUM_RECLAIM_MIN`] bytes,
    /// every run in them goes back to its segment (adopted runs go home), so the new run can
    /// take their pages instead of a new segment. True if any run went back. Below the
    /// threshold the lists are left alone: a single-threaded mix of classes re-carved what it
    /// gave back and fragmented its segments (random-mixed 16–32768: 6.0 → 9.2 MiB peak at a
    /// 1 MiB threshold).
    pub(super) fn reclaim_runs(&mut self) -> bool {
        let h = self.heap();
        for mi in 0..MEDIUM_BINS {
            let bin = SMALL_BINS + mi;
            // SAFETY: the inbox and intake of `bin` are this heap's queues of free runs of it.
            unsafe {
                self.absorb(&h.shared.inbox[mi], bin);
                self.absorb(&h.shared.intake[bin], bin);
            }
        }
        if self.medium_central_bytes() <= config::MEDIUM_RECLAIM_MIN {
            return false;
        }
        let mut returned = 0;
        for mi in 0..MEDIUM_BINS {
            let l = self.local();
            if l.medium[mi].count > 0 {
                // SAFETY: detaches the whole central list: free runs of its bin, ours or
                // adopted.
                unsafe {
                    let all = l.medium[mi].take_all();
                    returned += self.free_runs(SMALL_BINS + mi, all);
                }
                self.local().medium_low[mi] = 0;
            }
        }
        returned > 0
    }

    /// Thread exit: the medium central lists shrink to what a heap keeps while it waits for
    /// a new owner ([`config::MEDIUM_RETIRE_BYTES`], all classes together, the smallest
    /// classes first), and adopted runs go home, so a released
    /// heap pins no other heap's segment.
    pub(super) fn shrink_medium_for_exit(&mut self) {
        let id = self.heap().id;
        let mut budget = config::MEDIUM_RETIRE_BYTES;
        for mi in 0..MEDIUM_BINS {
            let bin = SMALL_BINS + mi;
            let keep = (budget / sc::bin_size(bin)) as u32;
            // SAFETY: detaches the whole central list, well formed with an exact count.
            let all = unsafe { self.local().medium[mi].take_all() };
            let mut p = all.head;
            for _ in 0..all.n {
                // SAFETY: `p` is one of the `all.n` free runs of `bin` just detached from the
                // central list (ours or adopted); its link is read before it is handed on. The
                // one-run chain's link still points into `all`, but `free_runs` walks only `n`
                // runs and relinks it.
                unsafe {
                    let nx = crate::ds::list::next(p);
                    if foreign_owner(id, p).is_none() && self.local().medium[mi].count < keep {
                        self.local().medium[mi].push(p);
                    } else {
                        self.free_runs(
                            bin,
                            Chain {
                                head: p,
                                tail: p,
                                n: 1,
                            },
                        );
                    }
                    p = nx;
                }
            }
            let l = self.local();
            l.note_medium_low(mi);
            budget -= l.medium[mi].count as usize * sc::bin_size(bin);
        }
    }
}

/// The owner of a medium run held by heap `me` when that is another heap (an adopted run).
fn foreign_owner(me: u32, run: *mut u8) -> Option<u32> {
    if !config::MEDIUM_ADOPT {
        return None;
    }
    arena::owner_and_bin(run)
        .map(|(owner, _)| owner)
        .filter(|&owner| owner != me)
}
