//! Central lists (design.md §7): a heap's owner-only store of free objects per bin, fed by its
//! thread's bin overflows and drained remote queues, and drawn on by refills. A small class
//! keeps [`SHARED_KEEP`] bin limits while its heap is the only one owned, none while other
//! threads own heaps, and parks the surplus in the shared pool; a medium class
//! keeps [`MEDIUM_CENTRAL_BYTES`] and gives surplus runs back to their segments; past one bin
//! limit it keeps no other heap's runs ([`MEDIUM_POOL`]: they go to the shared pool), nor its
//! own while other heaps take the class from the pool.
//!
//! [`MEDIUM_POOL`]: config::MEDIUM_POOL
//! [`SHARED_KEEP`]: config::SHARED_KEEP
//! [`MEDIUM_CENTRAL_BYTES`]: config::MEDIUM_CENTRAL_BYTES

use super::{pool, OwnedHeap};
use crate::config;
use crate::ds::list::{Chain, LocalList};
use crate::ds::mpsc::MpscStack;
use crate::page::size_class::{self as sc, MEDIUM_BINS, SMALL_BINS};
use crate::stats::{Counters, Ev};

impl OwnedHeap {
    /// Objects in the central list of small `bin`.
    pub fn small_central_len(&mut self, bin: usize) -> u32 {
        self.local().small[bin].central.count
    }

    /// Takes back objects from a thread bin (overflow or thread exit).
    ///
    /// # Safety
    /// `c` holds free objects of `bin`, all of this heap except adopted ones of other heaps
    /// ([`config::MEDIUM_ADOPT`], [`config::SMALL_ADOPT`]) and small ones a refill took from
    /// the shared pool or another heap's stash. A small object is simply a free object of its
    /// class wherever it is kept: small pages never go back to their segment, so nothing needs
    /// an owner's bitmap for it.
    pub unsafe fn put_central(&mut self, bin: usize, c: Chain) {
        if c.n == 0 {
            return;
        }
        if sc::is_small(bin) {
            let limit = sc::bin_limit(bin);
            if config::SHARED_POOL && c.n > limit {
                // A grown thread bin sheds more than a bin limit: in chains of one limit, so
                // they can be parked (a refill then takes one whole, without a walk).
                let mut c = c;
                while c.n > 0 {
                    // SAFETY: `c` is a well-formed chain we own; the piece and the rest are
                    // detached from each other by `Chain::take`.
                    let (piece, rest) = unsafe { Chain::take(c.head, limit) };
                    c = Chain {
                        head: rest,
                        tail: if rest.is_null() { rest } else { c.tail },
                        n: c.n - piece.n,
                    };
                    // SAFETY: `piece` is a non-empty chain of at most a bin limit of the
                    // caller's objects, its tail known.
                    unsafe { self.put_small_piece(bin, piece) };
                }
                return;
            }
            // SAFETY: `c` is a non-empty well-formed chain of free objects of small `bin` that
            // we own (caller contract), its tail known.
            unsafe { self.put_small_piece(bin, c) };
            return;
        }
        let mut c = c;
        if config::MEDIUM_POOL
            && self.local().medium[bin - SMALL_BINS].count + c.n > sc::bin_limit(bin)
        {
            // Past one bin limit, other heaps' runs go to the shared pool (or home), not here.
            // SAFETY: `c` is a detached chain of free runs of medium `bin` (caller contract).
            c = unsafe { self.park_foreign(bin, c) };
        }
        // SAFETY: `c` holds free runs of `bin` (caller contract).
        unsafe { self.local().medium[bin - SMALL_BINS].push_chain(c) };
        // Past one bin limit, our own runs go to the shared pool too while other heaps take.
        self.park_own_surplus(bin);
        let central = &mut self.local().medium[bin - SMALL_BINS];
        let cap = sc::medium_central_cap(bin, config::MEDIUM_CENTRAL_BYTES);
        if central.count > cap {
            // Give the surplus runs back to their segments so other classes can use the pages.
            // SAFETY: the central list is well formed; `extra` is detached from it: free runs
            // of medium `bin` (ours or adopted).
            unsafe {
                let extra = central.take(central.count - cap);
                self.free_runs(bin, extra);
            }
            self.local().note_medium_low(bin - SMALL_BINS);
        }
    }

    /// Takes back the part of a thread bin a shed sends off, as a list whose tail is not
    /// known: parked whole when central already holds its keep (always while other threads own
    /// heaps, but during a trim), installed whole in an empty central list, and walked only to
    /// join a non-empty one (the shorter of the two) or to cut one longer than a bin limit (a
    /// grown bin's) into pieces of one limit, each object once, unless no other thread owns a
    /// heap and central is empty.
    ///
    /// # Safety
    /// `list` is a well-formed null-terminated list of exactly `list.count` free objects of
    /// small `bin`, shared with no other list, as [`put_central`](Self::put_central) accepts
    /// them.
    pub unsafe fn put_small_list(&mut self, bin: usize, mut list: LocalList) {
        let limit = sc::bin_limit(bin);
        let central = &mut self.local().small[bin].central;
        if list.count > limit && central.count == 0 && !super::registry::others_own_heaps() {
            // A grown bin's older part, in the only heap a thread owns: kept whole for the
            // bin's next refill, which takes an empty central list's objects whole up to the
            // bin's limit. (While other threads own heaps it goes to the pool, where they can
            // take it.)
            *central = list;
            return;
        }
        while list.count > 0 {
            let piece = if list.count > limit {
                // SAFETY: the list is well formed with an exact count (caller contract); the
                // cut finds the piece's tail.
                unsafe { list.take(limit) }
            } else {
                let rest = core::mem::replace(&mut list, LocalList::EMPTY);
                Chain {
                    head: rest.head,
                    tail: core::ptr::null_mut(),
                    n: rest.count,
                }
            };
            // SAFETY: a non-empty null-terminated chain of exactly `piece.n` free objects of
            // small `bin` that we own (caller contract), at most a bin limit; its tail known
            // from a cut, or null for the rest.
            unsafe { self.put_small_piece(bin, piece) };
        }
    }

    /// One chain of at most a bin limit of small `bin` into central, or parked in the shared
    /// pool when central would hold more than [`SHARED_KEEP`](config::SHARED_KEEP) bin
    /// limits with it, or at all while other threads own heaps (a taker installs a parked
    /// chain as its bin, hence the bound). Its tail may be
    /// unknown (null): it then joins central by [`LocalList::append`], which walks the shorter
    /// of the two.
    ///
    /// # Safety
    /// `c` is a non-empty, well-formed, null-terminated chain of exactly `c.n` free objects of
    /// small `bin` that we own, shared with no other list, at most a bin limit with
    /// `shared-pool`; `c.tail` is its last object or null.
    unsafe fn put_small_piece(&mut self, bin: usize, c: Chain) {
        let limit = sc::bin_limit(bin);
        let h = self.heap();
        // Not during a trim: its drain of the queues would park again what `malloc_trim` is
        // about to sweep back to the segments (with `stash-max`, whose intake this reaches).
        let keep = if super::registry::others_own_heaps() && !self.local().trimming {
            0
        } else {
            config::SHARED_KEEP
        };
        let central = &mut self.local().small[bin].central;
        let c = if config::SHARED_POOL && central.count + c.n > keep * limit {
            // SAFETY: as the caller contract; `park` reads only the head and the count.
            match unsafe { pool::park(bin, c) } {
                Ok(()) => {
                    h.stats.add(Ev::PoolParks, 1);
                    return;
                }
                Err(c) => c,
            }
        } else {
            c
        };
        if c.tail.is_null() {
            let mut l = LocalList {
                head: c.head,
                count: c.n,
            };
            // SAFETY: both lists are well formed with exact counts and share no object
            // (caller contract).
            unsafe { central.append(&mut l) };
        } else {
            // SAFETY: `c` holds free objects of `bin` with its tail known (caller contract).
            unsafe { central.push_chain(c) };
        }
    }

    /// Bytes of free objects in this heap's small central lists, all classes together.
    pub fn small_central_bytes(&mut self) -> usize {
        self.local()
            .small
            .iter()
            .zip(sc::SMALL_SIZES)
            .map(|(l, size)| l.central.count as usize * size as usize)
            .sum()
    }

    /// Parks a thread bin's surplus of small `bin` in the shared pool for any heap to take;
    /// [`put_central`](Self::put_central) takes it when it is longer than a bin limit or the
    /// class's slots are full (or without `shared-pool`).
    ///
    /// # Safety
    /// As [`put_central`](Self::put_central), with `bin` small and `c.n` exact; `c.tail` may
    /// be null (which `put_central` accepts for a small bin only).
    pub unsafe fn park_surplus(&mut self, bin: usize, c: Chain) {
        let c = if config::SHARED_POOL && c.n <= sc::bin_limit(bin) {
            // SAFETY: caller contract; `park` reads only the head and the count.
            match unsafe { pool::park(bin, c) } {
                Ok(()) => {
                    self.heap().stats.add(Ev::PoolParks, 1);
                    return;
                }
                Err(c) => c,
            }
        } else {
            c
        };
        // SAFETY: caller contract.
        unsafe { self.put_central(bin, c) };
    }

    /// Parks each small central list that fits one chain (at most a bin limit) in the shared
    /// pool, for any heap to take; a list the pool refuses stays. Returns the bytes parked.
    pub fn park_centrals(&mut self) -> usize {
        if !config::SHARED_POOL {
            return 0;
        }
        (0..SMALL_BINS)
            .map(|bin| self.park_central_whole(bin, Ev::PoolParks) as usize * sc::bin_size(bin))
            .sum()
    }

    /// Parks the central list of small `bin` in the shared pool whole, without a walk (the
    /// pool reads only a chain's head and length), when it holds one chain (1 to a bin limit
    /// of objects); a list the pool refuses stays as it was. Counts `ev` and returns the
    /// objects parked.
    fn park_central_whole(&mut self, bin: usize, ev: Ev) -> u32 {
        let h = self.heap();
        let Some(l) = self.local().small.get_mut(bin) else {
            return 0;
        };
        if l.central.count == 0 || l.central.count > sc::bin_limit(bin) {
            return 0;
        }
        let whole = core::mem::replace(&mut l.central, LocalList::EMPTY);
        let c = Chain {
            head: whole.head,
            tail: core::ptr::null_mut(),
            n: whole.count,
        };
        // SAFETY: the whole central list, detached above: a non-empty null-terminated list of
        // exactly `c.n` (central counts are exact) free objects of small `bin` that we own, at
        // most a bin limit; its tail is not known (null), which `park` does not read.
        match unsafe { pool::park(bin, c) } {
            Ok(()) => {
                h.stats.add(ev, 1);
                // What was parked left the central list: decay must not count it as idle.
                l.note_low();
                whole.count
            }
            // Refused: the list goes back as it was (only an unused word changed).
            Err(_) => {
                l.central = whole;
                0
            }
        }
    }

    /// Bytes of free runs in this heap's medium central lists, all classes together.
    pub(super) fn medium_central_bytes(&mut self) -> usize {
        let l = self.local();
        (0..MEDIUM_BINS)
            .map(|mi| l.medium[mi].count as usize * sc::bin_size(SMALL_BINS + mi))
            .sum()
    }

    /// A thread bin coming back at thread exit: like [`put_central`](Self::put_central), but
    /// a small bin is appended without walking it when the central list is the shorter (the
    /// objects of a bin filled whole from the stash were never touched, and walking them at
    /// every thread exit was a cache miss per object).
    ///
    /// # Safety
    /// `list` is a well-formed list of free objects of `bin` with an exact count, shared with
    /// no other list, as [`put_central`](Self::put_central) accepts them.
    pub unsafe fn take_back(&mut self, bin: usize, mut list: LocalList) {
        if sc::is_small(bin) {
            // SAFETY: both lists are well formed with exact counts and share no object.
            unsafe { self.local().small[bin].central.append(&mut list) };
        } else {
            // SAFETY: as the caller contract; `take_all` detaches the whole list.
            unsafe { self.put_central(bin, list.take_all()) };
        }
    }

    /// A released heap's small free objects, made available to every heap (released-heap
    /// decay and trim): for each small class, the owner stash and the spill join the central
    /// list, and what it holds beyond [`SHARED_KEEP`] + 1 bin limits goes to the shared pool in
    /// chains of one bin limit, as far as the pool has room. Without this a heap deep in the
    /// released queue would keep them until claimed, and `stash-steal` does not take classes
    /// below a cache line. Returns whether anything went to the pool.
    ///
    /// [`SHARED_KEEP`]: config::SHARED_KEEP
    pub(super) fn offer_small(&mut self) -> bool {
        if !config::SHARED_POOL {
            return false;
        }
        let h = self.heap();
        let mut offered = false;
        for bin in 0..SMALL_BINS {
            if config::STASH_PUSH {
                self.stash_to_central(bin);
            }
            self.spill_to_central(bin);
            let l = &mut self.local().small[bin];
            let limit = sc::bin_limit(bin);
            while l.central.count > config::SHARED_KEEP * limit + limit {
                // SAFETY: the central list is well formed with an exact count above `limit`;
                // the chain taken is detached from it, free objects of small `bin`.
                let c = unsafe { l.central.take(limit) };
                // SAFETY: `c` is a non-empty chain of free objects of `bin` that we own.
                match unsafe { pool::park(bin, c) } {
                    Ok(()) => {
                        offered = true;
                        h.stats.add(Ev::PoolParks, 1);
                    }
                    Err(c) => {
                        // SAFETY: the chain just taken goes back where it came from.
                        unsafe { l.central.push_chain(c) };
                        break;
                    }
                }
            }
            l.note_low();
        }
        offered
    }

    /// Thread exit, warm: the free objects a released heap would keep for its next owner are
    /// parked in the shared pool instead, where the next thread of *any* heap about to carve
    /// takes them: the central list of each small class above [`EXIT_PARK_MIN_SIZE`] (whole,
    /// without a walk, when it fits one chain, the usual case; else in chains of a bin limit)
    /// and the medium runs [`shrink_medium_for_exit`] kept, in chains of a bin limit. A chain
    /// the pool refuses (its class's slots all taken) stays. Why: with a central list per
    /// heap, a program whose threads come and go holds, per class, the sum over its heaps of
    /// each heap's peak, though its threads never needed them all at once (thread churn: peak
    /// 38 → 28 MiB with five heaps; docs/ab.md). The parked objects keep their owner's tag and
    /// pin their runs as any parked chain does; the pool's decay sends a class home after an
    /// interval without takers.
    ///
    /// [`EXIT_PARK_MIN_SIZE`]: config::EXIT_PARK_MIN_SIZE
    ///
    /// [`shrink_medium_for_exit`]: Self::shrink_medium_for_exit
    pub(super) fn park_for_exit(&mut self) {
        if !config::SHARED_POOL {
            return;
        }
        let h = self.heap();
        for bin in 0..SMALL_BINS {
            if sc::bin_size(bin) <= config::EXIT_PARK_MIN_SIZE {
                continue;
            }
            if self.local().small[bin].central.count <= sc::bin_limit(bin) {
                // The usual case, one chain (or none): parked whole, without a walk.
                self.park_central_whole(bin, Ev::ExitParks);
                continue;
            }
            let l = &mut self.local().small[bin].central;
            // SAFETY: the central list of small `bin`: free objects of the class that we own.
            unsafe { park_chains(&h.stats, bin, l) };
        }
        // What was parked left the central lists: the next owner's first decay pass must not
        // count it as idle there (nor sweep a class for objects that came after).
        for s in self.local().small.iter_mut() {
            s.note_low();
        }
        if !config::MEDIUM_POOL {
            return;
        }
        for mi in 0..MEDIUM_BINS {
            let bin = SMALL_BINS + mi;
            let l = &mut self.local().medium[mi];
            // SAFETY: the central list of medium `bin`: this heap's free runs of the class
            // (`shrink_medium_for_exit` sent the adopted ones home), each first page tagged
            // with its owner, that we own.
            unsafe { park_chains(&h.stats, bin, l) };
            self.local().note_medium_low(mi);
        }
    }

    /// Moves the whole owner stash of small `bin` into its central list.
    pub(super) fn stash_to_central(&mut self, bin: usize) {
        // Always a small bin (callers pass one); `get` leaves no panic path.
        let Some(stash) = self.heap().shared.stash.get(bin) else {
            return;
        };
        let all = stash.take_all();
        if !all.is_null() {
            // SAFETY: `all` is a null-terminated list of free objects of `bin` the swap made
            // exclusively ours.
            unsafe {
                self.local().small[bin]
                    .central
                    .push_chain(Chain::measure(all))
            };
        }
    }

    /// Moves the spill of small `bin` into its central list.
    pub(super) fn spill_to_central(&mut self, bin: usize) {
        // Always a small bin (callers pass one); `get_mut` leaves no panic path.
        let Some(l) = self.local().small.get_mut(bin) else {
            return;
        };
        if l.spill.head.is_null() {
            return;
        }
        // SAFETY: the spill and central are null-terminated lists of free objects of this bin
        // that share no object. Counted stashes keep the spill's count exact; otherwise it is an
        // estimate and the spill is measured first.
        unsafe {
            if !config::STASH_COUNT {
                l.spill.count = Chain::measure(l.spill.head).n;
            }
            l.central.append(&mut l.spill);
        }
    }

    /// Moves the spill of every small bin into its central list.
    pub(super) fn spills_to_central(&mut self) {
        for bin in 0..SMALL_BINS {
            self.spill_to_central(bin);
        }
    }

    /// Moves everything queued in `q` into the central list of `bin`. True if it held any.
    ///
    /// # Safety
    /// `q` is one of this heap's queues (we, the owner, are its single consumer) and holds
    /// free objects of this heap and `bin`.
    pub(super) unsafe fn absorb(&mut self, q: &MpscStack, bin: usize) -> bool {
        let all = q.take_all();
        if all.is_null() {
            return false;
        }
        // SAFETY: `all` is a null-terminated list the swap made exclusively ours (caller
        // contract for its contents).
        unsafe { self.put_central(bin, Chain::measure(all)) };
        true
    }
}

/// Parks central list `l` of `bin` in the shared pool in chains of a bin limit, until it is
/// empty or the pool refuses a chain (which goes back to `l`); counts each park in `stats`.
///
/// # Safety
/// `l` is a well-formed list with an exact count of free blocks of `bin` (objects of a small
/// class, or runs of a medium class with their first pages tagged) that the caller owns.
unsafe fn park_chains(stats: &Counters, bin: usize, l: &mut LocalList) {
    let limit = sc::bin_limit(bin);
    while l.count > 0 {
        // SAFETY: `l` is well formed with an exact count (caller contract); the chain taken is
        // detached from it: at most a bin limit of its blocks.
        let c = unsafe { l.take(limit) };
        // SAFETY: `c` is a non-empty null-terminated chain of free blocks of `bin` that the
        // caller owns.
        match unsafe { pool::park(bin, c) } {
            Ok(()) => stats.add(Ev::ExitParks, 1),
            Err(c) => {
                // SAFETY: the chain just taken goes back where it came from.
                unsafe { l.push_chain(c) };
                break;
            }
        }
    }
}
