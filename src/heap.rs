//! Heaps (DESIGN §4, hz3 "shards"): an owner identity with its shared structures. A thread
//! claims a heap id on first use and releases it at exit; the next claimant adopts whatever
//! was queued meanwhile. Heaps live in metadata memory and are recycled, never destroyed, so a
//! `&'static Heap` from [`get`] stays valid forever.
//!
//! Shared part: written by any thread through atomics (owner stash, transfer cache, central
//! intake, medium inbox). Local part: touched only by the current owner (spills, central
//! lists, carve pointers, segment list).

use crate::arena::{self, SegInner, PAGES_PER_SEGMENT};
use crate::bitmap::PageBitmap;
use crate::config::{self, STASH_MAX_OBJS, STASH_PUSH, TRANSFER_CACHE};
use crate::list::{set_next, Chain, LocalList};
use crate::mpsc::MpscStack;
use crate::owner_stash::{OwnerStash, PopMode};
use crate::page_tag::{self, MAX_OWNER};
use crate::shared_pool;
use crate::size_class::{self as sc, MEDIUM_BINS, NUM_BINS, SMALL_BINS};
use crate::stats::{Counters, Ev};
use crate::sync::SpinLock;
use crate::transfer_cache::TransferCache;
use core::cell::UnsafeCell;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicPtr, AtomicU32, Ordering::*};

#[repr(C)]
pub struct HeapShared {
    pub stash: [OwnerStash; SMALL_BINS],
    pub xfer: [TransferCache; SMALL_BINS],
    /// Remote frees that neither the stash nor the transfer cache took; drained into central.
    pub intake: [MpscStack; NUM_BINS],
    /// Medium remote frees.
    pub inbox: [MpscStack; MEDIUM_BINS],
}

#[repr(C)]
struct SmallLocal {
    spill: LocalList,
    central: LocalList,
    bump: *mut u8,
    end: *mut u8,
}

#[repr(C)]
pub struct HeapLocal {
    small: [SmallLocal; SMALL_BINS],
    medium: [LocalList; MEDIUM_BINS],
    /// Fewest runs each medium central held since the last decay pass: runs nobody needed for
    /// a whole interval, released at the next one.
    medium_low: [u32; MEDIUM_BINS],
    /// Clock (ms) of the last decay pass.
    last_decay_ms: u64,
    /// Owned segments by kind ([`SMALL_SEGS`], [`RUN_SEGS`]) as doubly linked lists through
    /// `SegInner::next`/`prev` (index + 1; 0 = none).
    seg_head: [u32; 2],
    /// Per kind, the segment most likely to have room (index + 1).
    seg_hint: [u32; 2],
    next_free: *mut Heap,
    /// `stash-steal`: the heap id the next probe starts at (round robin).
    steal_next: u32,
}

#[repr(C, align(64))]
pub struct Heap {
    pub shared: HeapShared,
    local: UnsafeCell<HeapLocal>,
    pub stats: Counters,
    pub id: u32,
}

pub const MAX_HEAPS: usize = MAX_OWNER as usize + 1;

/// Segment kinds. Small page runs never go back to their segment (objects of a run are not
/// counted), so they get segments of their own: mixed in, they would pin segments whose
/// medium runs all came back, which can then return to the arena's pool.
const SMALL_SEGS: usize = 0;
/// Medium and large-class runs: given back run by run, and the segment once all are back.
const RUN_SEGS: usize = 1;

static HEAPS: [AtomicPtr<Heap>; MAX_HEAPS] = [const { AtomicPtr::new(null_mut()) }; MAX_HEAPS];
/// Heaps published in [`HEAPS`] (ids `0..PUBLISHED`), for `stash-steal`'s lock-free probe.
static PUBLISHED: AtomicU32 = AtomicU32::new(0);

/// Released heaps wait in a FIFO queue, so every one is adopted again in turn and what other
/// threads keep freeing into it is reclaimed (a LIFO stack could strand a heap forever).
struct Registry {
    free: *mut Heap,
    free_tail: *mut Heap,
    next_id: u32,
}

// SAFETY: the raw pointer names a 'static heap; the registry lock serialises access.
unsafe impl Send for Registry {}

static REG: SpinLock<Registry> = SpinLock::new(Registry {
    free: null_mut(),
    free_tail: null_mut(),
    next_id: 0,
});

/// Claims a heap for the calling thread: the longest-released one, else a new one.
/// `None` only when 65,535 heaps are live or metadata memory is exhausted.
pub fn claim() -> Option<&'static Heap> {
    let mut r = REG.lock();
    if !r.free.is_null() {
        let h = r.free;
        // SAFETY: heaps on the free list are 'static and unowned; we hold the registry lock.
        unsafe {
            r.free = (*(*h).local.get()).next_free;
            if r.free.is_null() {
                r.free_tail = null_mut();
            }
            (*h).stats.add(Ev::HeapsAdopted, 1);
            return Some(&*h);
        }
    }
    if r.next_id as usize >= MAX_HEAPS {
        return None;
    }
    if config::SHARED_POOL && !shared_pool::init() {
        return None;
    }
    let id = r.next_id;
    let p = crate::meta::alloc(core::mem::size_of::<Heap>(), 64)? as *mut Heap;
    // SAFETY: fresh zeroed metadata memory; all-zero is a valid empty heap (null lists, zero
    // counts, zero atomics), so only the id needs writing.
    unsafe {
        (*p).id = id;
        (*p).stats.add(Ev::HeapsCreated, 1);
    }
    r.next_id = id + 1;
    // Release: a thread that reads this slot (for a tag carrying `id`) sees the initialised heap.
    HEAPS[id as usize].store(p, Release);
    // Release: a thread that reads the count finds the slots below it published.
    PUBLISHED.store(id + 1, Release);
    // SAFETY: `p` is 'static metadata memory.
    Some(unsafe { &*p })
}

/// Returns a heap to the registry (thread exit). The caller must no longer use it as owner.
pub fn release(h: &'static Heap) {
    let mut r = REG.lock();
    let hp = h as *const Heap as *mut Heap;
    // SAFETY: we are the owner giving it up, under the registry lock; heaps on the queue are
    // 'static and touched only under this lock.
    unsafe {
        (*h.local.get()).next_free = null_mut();
        if r.free_tail.is_null() {
            r.free = hp;
        } else {
            (*(*r.free_tail).local.get()).next_free = hp;
        }
    }
    r.free_tail = hp;
}

/// The heap with id `id`, which a page tag named.
#[inline]
pub fn get(id: u32) -> &'static Heap {
    // SAFETY: a tag with owner `id` is written only after heap `id` was published (Release
    // above); heaps are never freed.
    unsafe { &*HEAPS[id as usize].load(Acquire) }
}

pub fn heap_count() -> usize {
    REG.lock().next_id as usize
}

pub fn for_each_heap(mut f: impl FnMut(&Counters)) {
    let n = heap_count();
    for slot in HEAPS.iter().take(n) {
        let p = slot.load(Acquire);
        if !p.is_null() {
            // SAFETY: published heaps are 'static.
            f(unsafe { &(*p).stats });
        }
    }
}

pub fn lock_for_fork() {
    REG.raw_lock();
}

/// # Safety
/// Pairs with [`lock_for_fork`] in the parent, or runs in the single-threaded child.
pub unsafe fn unlock_after_fork() {
    // SAFETY: caller contract: we hold the lock from `lock_for_fork`, or are the only thread
    // left in the child.
    unsafe { REG.raw_unlock() };
}

/// Hands a chain of free objects of heap `dst`, bin `bin` to that heap (any thread):
/// small → owner stash, else transfer cache, else central intake; medium → inbox.
/// `stats` are the sender's counters.
///
/// # Safety
/// `c` is a non-empty chain of free objects whose page tags name `dst` and `bin`.
pub unsafe fn send(dst: u32, bin: usize, c: Chain, stats: &Counters, shared_stats: bool) {
    let h = get(dst);
    let ev = |e: Ev, n: u64| {
        if shared_stats {
            stats.add_shared(e, n)
        } else {
            stats.add(e, n)
        }
    };
    if !sc::is_small(bin) {
        ev(Ev::InboxPushes, 1);
        // SAFETY: `c` is a non-empty chain of free objects of `dst`/`bin` the caller hands over
        // (caller contract); the inbox is `dst`'s stack for this medium bin.
        unsafe { h.shared.inbox[bin - SMALL_BINS].push(c) };
        return;
    }
    let mut c = c;
    if STASH_PUSH {
        // SAFETY: `c` is a non-empty chain of free objects of `dst`'s small bin `bin` (caller
        // contract), so it belongs in this stash.
        match unsafe { h.shared.stash[bin].push_list(c, PopMode::CONFIGURED, STASH_MAX_OBJS) } {
            Ok(()) => {
                ev(Ev::StashPushes, 1);
                ev(Ev::StashPushObjs, c.n as u64);
                return;
            }
            Err(back) => {
                ev(Ev::StashRefused, 1);
                c = back;
            }
        }
    }
    if TRANSFER_CACHE {
        // SAFETY: `c` is a non-empty null-terminated chain we own (caller contract; a refused
        // stash push hands it back untouched).
        match unsafe { h.shared.xfer[bin].push(c) } {
            Ok(()) => {
                ev(Ev::XferPushes, 1);
                return;
            }
            Err(back) => c = back,
        }
    }
    ev(Ev::IntakePushes, 1);
    // SAFETY: `c` is a non-empty chain of free objects of `dst`/`bin` we own (caller contract;
    // refusals above hand it back untouched).
    unsafe { h.shared.intake[bin].push(c) };
}

/// [`send`] for a single object.
///
/// # Safety
/// `p` is a free object whose page tag names `dst` and `bin`; ownership passes to the heap.
pub unsafe fn send_one(p: *mut u8, dst: u32, bin: usize, stats: &Counters, shared_stats: bool) {
    // SAFETY: `p` is free and ours to link (caller contract); as a one-object null-terminated
    // chain it satisfies `send`'s contract.
    unsafe {
        set_next(p, null_mut());
        send(
            dst,
            bin,
            Chain {
                head: p,
                tail: p,
                n: 1,
            },
            stats,
            shared_stats,
        );
    }
}

/// Whether the transfer cache can ever hold anything: only when the stash may refuse a push.
const XFER_FED: bool = TRANSFER_CACHE && (!STASH_PUSH || config::STASH_CAPPED);

impl Heap {
    /// # Safety
    /// Only the heap's current owner may call this, and must not hold two results at once.
    #[allow(clippy::mut_from_ref)]
    unsafe fn local(&self) -> &mut HeapLocal {
        // SAFETY: owner only and one result at a time (caller contract): nothing else reads or
        // writes the local part while this `&mut` is live.
        unsafe { &mut *self.local.get() }
    }

    /// Refill sources for a small bin, in the seeds' order up to the central list, then ours:
    /// spill → owner stash → transfer cache → central (with its remote intake) → shared pool →
    /// other heaps' stashes (`stash-steal`).
    /// Returns an empty list when all are empty; the caller then carves
    /// ([`carve_small`](Self::carve_small)). (The caller flushes its own remote ring at the
    /// entry of every refill, as the seeds do, rather than between central and carving.)
    ///
    /// `self.local()` is re-borrowed in each step and never held across a call that borrows
    /// it again, so no two `&mut HeapLocal` are ever live at once.
    ///
    /// # Safety
    /// Owner only.
    pub unsafe fn refill_small_shared(&self, bin: usize, want: u32) -> LocalList {
        if config::STASH_POP {
            // SAFETY: owner only (caller contract).
            let got = unsafe { self.pop_stash(bin, want) };
            if got.count > 0 {
                return got;
            }
        } else if STASH_PUSH {
            // Pops are switched off: drain the stash whole into central so nothing strands.
            let all = self.shared.stash[bin].take_all();
            if !all.is_null() {
                // SAFETY: owner only (caller contract), no other `local()` result is live; `all`
                // is a null-terminated list of free objects the swap made exclusively ours.
                unsafe {
                    self.local().small[bin]
                        .central
                        .push_chain(Chain::measure(all));
                }
            }
        }
        if XFER_FED {
            let got = self.shared.xfer[bin].pop();
            if got.count > 0 {
                self.stats.add(Ev::RefillXfer, 1);
                return got;
            }
        }
        // SAFETY: owner only (caller contract); the intake of `bin` holds free objects of this
        // heap and `bin`.
        unsafe { self.absorb(&self.shared.intake[bin], bin) };
        // SAFETY: owner only (caller contract); no other `local()` result is live, and none is
        // taken while `central` is.
        let central = unsafe { &mut self.local().small[bin].central };
        if central.count > 0 {
            self.stats.add(Ev::RefillCentral, 1);
            // Whole if it fits in the bin: its objects are often cold (frees of other threads,
            // or a bin handed back at thread exit).
            // SAFETY: the owner-only central list is well formed with an exact count.
            return unsafe { central.take_whole_or(sc::bin_limit(bin), want) };
        }
        if config::SHARED_POOL {
            let got = shared_pool::take(bin);
            if got.count > 0 {
                self.stats.add(Ev::RefillPool, 1);
                return got;
            }
        }
        // Not below a cache line, as `small-adopt`: a smaller object shares its line with
        // neighbours that may be live on the owner's thread (passive false sharing).
        if config::STASH_STEAL && sc::bin_size(bin) >= config::ADOPT_MIN_SIZE {
            // SAFETY: owner only (caller contract).
            return unsafe { self.steal_small(bin, want) };
        }
        LocalList::EMPTY
    }

    /// `stash-steal`: probes up to [`STEAL_PROBES`] other heaps' stashes of `bin`, round robin,
    /// and takes from the first that holds objects. The objects keep their owner's tag, as
    /// shared-pool objects do. Why: an owner that is descheduled (or no longer allocates the
    /// class) cannot take what other threads freed to it, while running threads carve pages.
    ///
    /// [`STEAL_PROBES`]: config::STEAL_PROBES
    ///
    /// # Safety
    /// Owner only.
    unsafe fn steal_small(&self, bin: usize, want: u32) -> LocalList {
        // Acquire: pairs with `claim`'s Release, so the slots below `n` are published.
        let n = PUBLISHED.load(Acquire);
        if n < 2 {
            return LocalList::EMPTY;
        }
        // SAFETY: owner only (caller contract); no other `local()` result is live.
        let l = unsafe { self.local() };
        for _ in 0..config::STEAL_PROBES.min(n - 1) {
            let mut v = l.steal_next % n;
            if v == self.id {
                v = (v + 1) % n;
            }
            l.steal_next = v + 1;
            // SAFETY: `v < PUBLISHED`, so heap `v` is published (Acquire above) and 'static.
            let victim = unsafe { &*HEAPS[v as usize].load(Relaxed) };
            // SAFETY: any thread may steal (`OwnerStash::steal`); the objects become ours.
            let got = unsafe {
                victim.shared.stash[bin].steal(
                    want.min(config::STASH_DRAIN_LIMIT),
                    sc::bin_limit(bin),
                    PopMode::CONFIGURED,
                )
            };
            if got.count > 0 {
                self.stats.add(Ev::RefillSteal, 1);
                return got;
            }
        }
        LocalList::EMPTY
    }

    /// Spill first, then one `pop_batch` of the owner stash.
    ///
    /// # Safety
    /// Owner only.
    pub unsafe fn pop_stash(&self, bin: usize, want: u32) -> LocalList {
        if !config::STASH_POP {
            return LocalList::EMPTY;
        }
        // SAFETY: owner only (caller contract); no other `local()` result is live.
        let spill = unsafe { &mut self.local().small[bin].spill };
        // SAFETY: owner only, so we are the stash's single consumer; `spill` is this heap's
        // owner-only spill for `bin`.
        let p = unsafe {
            self.shared.stash[bin].pop_batch(
                spill,
                want.min(config::STASH_DRAIN_LIMIT),
                sc::bin_limit(bin),
                PopMode::CONFIGURED,
            )
        };
        if p.list.count > 0 {
            if p.from_spill {
                self.stats.add(Ev::RefillSpill, 1);
            } else {
                self.stats.add(Ev::RefillStash, 1);
                self.stats.add(Ev::StashPops, 1);
                self.stats.add(Ev::StashPopObjs, p.list.count as u64);
            }
        }
        p.list
    }

    /// Carves up to `want` fresh objects of a small bin, taking a new page run when the
    /// current one is used up. Empty only when the arena cannot supply a run.
    ///
    /// # Safety
    /// Owner only.
    pub unsafe fn carve_small(&self, bin: usize, want: u32) -> LocalList {
        let size = sc::bin_size(bin);
        let exhausted = {
            // SAFETY: owner only (caller contract); the borrow ends with this block.
            let l = unsafe { &self.local().small[bin] };
            l.bump == l.end
        };
        if exhausted {
            let pages = sc::run_pages(bin);
            // SAFETY: owner only (caller contract); no `local()` result is live here.
            let Some(run) = (unsafe { self.alloc_run(pages, SMALL_SEGS) }) else {
                return LocalList::EMPTY;
            };
            // SAFETY: `run` is a page run of `pages` pages `alloc_run` just took for this heap.
            unsafe { arena::set_tags(run, pages, page_tag::encode(self.id, bin)) };
            // SAFETY: owner only (caller contract); no other `local()` result is live.
            let l = unsafe { &mut self.local().small[bin] };
            l.bump = run;
            // SAFETY: `objs_per_run(bin) * size` bytes fit in the run of `run_pages(bin)` pages.
            l.end = unsafe { run.add(sc::objs_per_run(bin) * size) };
            self.stats.add(Ev::PagesCarved, 1);
        }
        // SAFETY: owner only (caller contract); no other `local()` result is live.
        let l = unsafe { &mut self.local().small[bin] };
        let avail = (l.end as usize - l.bump as usize) / size;
        let n = (want as usize).min(avail);
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
        self.stats.add(Ev::RefillNewPage, 1);
        LocalList {
            head,
            count: n as u32,
        }
    }

    /// Objects in the central list of small `bin`.
    ///
    /// # Safety
    /// Owner only.
    pub unsafe fn small_central_len(&self, bin: usize) -> u32 {
        // SAFETY: owner only (caller contract); the borrow ends with this expression.
        unsafe { self.local().small[bin].central.count }
    }

    /// Takes back objects from a thread bin (overflow or thread exit).
    ///
    /// # Safety
    /// Owner only; `c` holds free objects of `bin`, all of this heap except adopted ones of
    /// other heaps ([`config::MEDIUM_ADOPT`], [`config::SMALL_ADOPT`]) and small ones a
    /// refill took from the shared pool or another heap's stash. A small object is
    /// simply a free object of its class wherever it is kept: small pages never go back to
    /// their segment, so nothing needs an owner's bitmap for it.
    pub unsafe fn put_central(&self, bin: usize, c: Chain) {
        if c.n == 0 {
            return;
        }
        // SAFETY: owner only (caller contract); `l` is last used before `free_runs` below
        // takes its own `local()` result.
        let l = unsafe { self.local() };
        if sc::is_small(bin) {
            let central = &mut l.small[bin].central;
            let limit = sc::bin_limit(bin);
            // Chains of at most a bin limit only: a taker installs one as its bin.
            let c = if config::SHARED_POOL
                && c.n <= limit
                && central.count + c.n > config::SHARED_KEEP * limit
            {
                // SAFETY: `c` is a non-empty chain of free objects of small `bin` that we own
                // (caller contract).
                match unsafe { shared_pool::park(bin, c) } {
                    Ok(()) => {
                        self.stats.add(Ev::PoolParks, 1);
                        return;
                    }
                    Err(c) => c,
                }
            } else {
                c
            };
            // SAFETY: `c` holds free objects of `bin` (caller contract).
            unsafe { central.push_chain(c) };
            return;
        }
        let central = &mut l.medium[bin - SMALL_BINS];
        // SAFETY: `c` holds free runs of `bin` (caller contract).
        unsafe { central.push_chain(c) };
        let cap = sc::medium_central_cap(bin, config::MEDIUM_CENTRAL_BYTES);
        if central.count > cap {
            // Give the surplus runs back to their segments so other classes can use the pages.
            // SAFETY: owner only; the central list is well formed and `extra` is detached from
            // it, free runs of medium `bin` (ours or adopted).
            unsafe {
                let extra = central.take(central.count - cap);
                self.free_runs(bin, extra);
            }
        }
    }

    /// A thread bin coming back at thread exit: like [`put_central`](Self::put_central), but
    /// a small bin is appended without walking it when the central list is the shorter (the
    /// objects of a bin filled whole from the stash were never touched, and walking them at
    /// every thread exit was a cache miss per object).
    ///
    /// # Safety
    /// Owner only; `list` is a well-formed list of free objects of `bin` with an exact count,
    /// shared with no other list, as [`put_central`](Self::put_central) accepts them.
    pub unsafe fn take_back(&self, bin: usize, mut list: LocalList) {
        if sc::is_small(bin) {
            // SAFETY: owner only (caller contract); no other `local()` result is live. Both
            // lists are well formed with exact counts and share no object.
            unsafe { self.local().small[bin].central.append(&mut list) };
        } else {
            // SAFETY: as the caller contract; `take_all` detaches the whole list.
            unsafe { self.put_central(bin, list.take_all()) };
        }
    }

    /// Gives runs back to their segments; an adopted run of another heap goes to its owner's
    /// inbox instead, since only the owner touches a segment's bitmap.
    ///
    /// # Safety
    /// Owner only; `c` is a detached chain of free runs of medium `bin` (ours or adopted).
    unsafe fn free_runs(&self, bin: usize, c: Chain) {
        // SAFETY: `c` is a detached chain of free runs of `bin` (caller contract).
        let own = unsafe { self.send_foreign_home(bin, c) };
        let mut p = own.head;
        for _ in 0..own.n {
            // SAFETY: `p` is one of the `own.n` free runs of this heap in `own`: its link is
            // read before the run goes back to its segment, and nothing else references it.
            unsafe {
                let nx = crate::list::next(p);
                self.free_run(p, sc::run_pages(bin));
                p = nx;
            }
        }
        self.stats.add(Ev::RunsReturned, own.n as u64);
    }

    /// Sends the adopted runs of `c` (other heaps' runs) to their owners' inboxes and returns
    /// the rest, this heap's own runs, as a chain (in reverse order).
    ///
    /// # Safety
    /// Owner only; `c` is a detached chain of free runs of medium `bin`.
    pub unsafe fn send_foreign_home(&self, bin: usize, c: Chain) -> Chain {
        if !config::MEDIUM_ADOPT {
            return c;
        }
        let keep = |p: *mut u8| match self.foreign_owner(p) {
            Some(dst) => {
                // SAFETY: the run's tag names `dst` and `bin`; it is free and, handed to us by
                // `retain`, now the inbox's.
                unsafe { send_one(p, dst, bin, &self.stats, false) };
                self.stats.add(Ev::RunsSentHome, 1);
                false
            }
            None => true,
        };
        // SAFETY: `c` is a detached chain of free runs the caller owns (caller contract).
        unsafe { c.retain(keep) }
    }

    /// The owner of a medium run held by this heap when that is another heap (an adopted run).
    fn foreign_owner(&self, run: *mut u8) -> Option<u32> {
        if !config::MEDIUM_ADOPT {
            return None;
        }
        let off = arena::offset(run)?;
        match page_tag::decode(arena::tag_at(off)) {
            Some((owner, _)) if owner != self.id => Some(owner),
            _ => None,
        }
    }

    /// Thread exit: each medium central list shrinks to what a heap keeps while it waits for
    /// a new owner ([`config::MEDIUM_RETIRE_BYTES`]), and adopted runs go home, so a released
    /// heap pins no other heap's segment.
    ///
    /// # Safety
    /// Owner only, no `local()` result live.
    unsafe fn shrink_medium_for_exit(&self) {
        for mi in 0..MEDIUM_BINS {
            let bin = SMALL_BINS + mi;
            let keep = sc::medium_central_cap(bin, config::MEDIUM_RETIRE_BYTES);
            // SAFETY: owner only (caller contract); the borrow ends with this statement.
            let all = unsafe { self.local().medium[mi].take_all() };
            let mut p = all.head;
            for _ in 0..all.n {
                // SAFETY: `p` is one of the `all.n` free runs of `bin` just detached from the
                // central list (ours or adopted); its link is read before it is handed on, and
                // the `local()` borrow ends within the statement. The one-run chain's link
                // still points into `all`, but `free_runs` walks only `n` runs and relinks it.
                unsafe {
                    let nx = crate::list::next(p);
                    if self.foreign_owner(p).is_none() && self.local().medium[mi].count < keep {
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
            // SAFETY: owner only; the borrows above have ended.
            let l = unsafe { self.local() };
            l.medium_low[mi] = l.medium_low[mi].min(l.medium[mi].count);
        }
    }

    /// Medium refill: inbox (whole), then up to `want` runs from central, else `carve` new runs.
    ///
    /// # Safety
    /// Owner only.
    pub unsafe fn refill_medium(&self, bin: usize, want: u32, carve: u32) -> LocalList {
        let mi = bin - SMALL_BINS;
        // SAFETY: owner only (caller contract); the inbox and intake of `bin` hold free runs of
        // this heap and `bin`.
        unsafe {
            if self.absorb(&self.shared.inbox[mi], bin) {
                self.stats.add(Ev::InboxDrains, 1);
                self.stats.add(Ev::MediumInbox, 1);
            }
            self.absorb(&self.shared.intake[bin], bin);
        }
        // SAFETY: owner only (caller contract); no other `local()` result is live, and `l` is
        // dead before `alloc_run` below takes one.
        let l = unsafe { self.local() };
        let central = &mut l.medium[mi];
        if central.count > 0 {
            self.stats.add(Ev::MediumCentral, 1);
            // Whole when it is at most a refill: no walk over a page per run.
            // SAFETY: the owner-only central list is well formed with an exact count.
            let got = unsafe { central.take_whole_or(want, want) };
            l.medium_low[mi] = l.medium_low[mi].min(central.count);
            return got;
        }
        let pages = sc::run_pages(bin);
        let tag = page_tag::encode(self.id, bin);
        let mut out = LocalList::EMPTY;
        for _ in 0..carve {
            // SAFETY: owner only (caller contract); no `local()` result is live.
            let Some(run) = (unsafe { self.alloc_run(pages, RUN_SEGS) }) else {
                break;
            };
            // SAFETY: `run` is a fresh page run of this heap (its first page is tagged), and
            // no other list references it.
            unsafe {
                arena::set_tags(run, 1, tag);
                out.push(run);
            }
        }
        if out.count > 0 {
            self.stats.add(Ev::MediumCarve, 1);
        }
        out
    }

    /// First-fit page run from this heap's segments of `kind`, taking a segment from the
    /// arena (pooled or fresh) when none fits.
    ///
    /// # Safety
    /// Owner only, with no `local()` result live.
    unsafe fn alloc_run(&self, pages: usize, kind: usize) -> Option<*mut u8> {
        // SAFETY: owner only, and no other `local()` result is live (caller contract).
        let l = unsafe { self.local() };
        let hint = l.seg_hint[kind];
        if hint != 0 {
            // SAFETY: `hint - 1` is one of this heap's segments, and we are its owner.
            if let Some(p) = unsafe { Self::alloc_in(hint - 1, pages) } {
                return Some(p);
            }
        }
        let mut s = l.seg_head[kind];
        while s != 0 {
            if s != hint {
                // SAFETY: `s - 1` is on this heap's segment list, and we are its owner.
                if let Some(p) = unsafe { Self::alloc_in(s - 1, pages) } {
                    l.seg_hint[kind] = s;
                    return Some(p);
                }
            }
            // SAFETY: as above: our segment, owner only, no other `SegInner` borrow is live.
            s = unsafe { arena::seg_meta(s - 1).get() }.next;
        }
        let t = arena::take_segment()?;
        let idx = t.idx;
        self.stats.add(
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
        // A reused segment's pages may be resident: let page decay consider them all.
        m.dirty = if t.resident {
            PageBitmap::full()
        } else {
            PageBitmap::new()
        };
        m.aged = PageBitmap::new();
        m.prev = 0;
        m.next = l.seg_head[kind];
        if m.next != 0 {
            // SAFETY: the old head is our segment (owner only); `m` belongs to another segment.
            unsafe { arena::seg_meta(m.next - 1).get() }.prev = idx + 1;
        }
        l.seg_head[kind] = idx + 1;
        l.seg_hint[kind] = idx + 1;
        // SAFETY: `idx` is now on this heap's segment list, and we are its owner.
        unsafe { Self::alloc_in(idx, pages) }
    }

    /// Unlinks an empty run segment and gives it back to the arena's pool.
    ///
    /// # Safety
    /// Owner only, no `local()` result or `SegInner` borrow live; segment `idx` is on this
    /// heap's [`RUN_SEGS`] list and has no page in use (so no live object and no page tag).
    unsafe fn release_segment(&self, idx: u32, resident: bool) {
        // SAFETY: owner only (caller contract).
        let l = unsafe { self.local() };
        // SAFETY: our segment (caller contract); the borrow ends before the neighbours'.
        let (prev, next) = {
            let m = unsafe { arena::seg_meta(idx).get() };
            debug_assert!(m.pages.is_empty());
            (m.prev, m.next)
        };
        // Only run segments come back, and a run tags only its first page, which `free_run`
        // cleared: a pooled segment must route no `free` anywhere.
        debug_assert!((0..arena::PAGES_PER_SEGMENT).all(|i| {
            arena::tag_at(((idx as usize) << config::SEGMENT_SHIFT) + (i << config::PAGE_SHIFT))
                == 0
        }));
        if prev != 0 {
            // SAFETY: a neighbour on our list: our segment, owner only.
            unsafe { arena::seg_meta(prev - 1).get() }.next = next;
        } else {
            l.seg_head[RUN_SEGS] = next;
        }
        if next != 0 {
            // SAFETY: as above.
            unsafe { arena::seg_meta(next - 1).get() }.prev = prev;
        }
        if l.seg_hint[RUN_SEGS] == idx + 1 {
            l.seg_hint[RUN_SEGS] = l.seg_head[RUN_SEGS];
        }
        self.stats.add(Ev::SegmentsReturned, 1);
        // SAFETY: unlinked above, empty (caller contract); ownership passes to the pool.
        unsafe { arena::give_back_segment(idx, resident) };
    }

    /// # Safety
    /// Segment `idx` belongs to the calling owner's heap; no other `SegInner` borrow is live.
    unsafe fn alloc_in(idx: u32, pages: usize) -> Option<*mut u8> {
        // SAFETY: our segment, owner only, not re-entrant (caller contract).
        let m = unsafe { arena::seg_meta(idx).get() };
        let start = m.pages.find_run(pages)?;
        m.pages.set_range(start, pages);
        // Reused: resident again, nothing to purge.
        m.dirty.clear_range(start, pages);
        m.aged.clear_range(start, pages);
        // SAFETY: `find_run` returned a run inside the segment, so the offset stays within it.
        Some(unsafe { arena::segment_base(idx).add(start << config::PAGE_SHIFT) })
    }

    /// Gives a run back to its segment's bitmap, marking its pages dirty. The memory goes
    /// back to the OS only if the pages stay free for a decay interval ([`decay_pages`]):
    /// purging at once cost a `madvise` and a refault per run in remote-free-heavy programs
    /// (mt-remote T=32 16–32768 fell from 2.9 M to 1.7 M ops/s, mostly in TLB shootdowns).
    ///
    /// [`decay_pages`]: Self::decay_pages
    ///
    /// # Safety
    /// Owner only, with no `local()` result or `SegInner` borrow live; `p` starts a run of
    /// `pages` pages of this heap that holds no live object.
    unsafe fn free_run(&self, p: *mut u8, pages: usize) {
        debug_assert_eq!(
            arena::offset(p)
                .and_then(|off| page_tag::decode(arena::tag_at(off)))
                .map(|t| t.0),
            Some(self.id),
            "free_run of a run that is not this heap's (adopted, or already free)"
        );
        // SAFETY: `p` starts a run of this heap (caller contract); only its first page is tagged.
        unsafe { arena::set_tags(p, 1, 0) };
        let (idx, page) = arena::locate(p);
        debug_assert!(page + pages <= PAGES_PER_SEGMENT);
        // SAFETY: segment `idx` holds our run, so it is this heap's and we are its owner; no
        // other `SegInner` borrow is live.
        let m = unsafe { arena::seg_meta(idx).get() };
        m.pages.clear_range(page, pages);
        m.dirty.set_range(page, pages);
        // The segment the heap carves from next stays, so a heap at the edge of needing one
        // does not give it back and take it again.
        // SAFETY: owner only (caller contract); `m` is dead, and no `local()` result is live.
        if m.pages.is_empty() && unsafe { self.local() }.seg_hint[RUN_SEGS] != idx + 1 {
            // SAFETY: segment `idx` is one of our run segments with no page in use.
            unsafe { self.release_segment(idx, true) };
        }
    }

    /// Decay of free pages: purges the free pages that were already dirty at the last pass
    /// (free for at least a whole interval), and ages the pages dirtied since.
    ///
    /// # Safety
    /// Owner only.
    unsafe fn decay_pages(&self) {
        // SAFETY: owner only (caller contract).
        unsafe {
            self.purge_segments(
                |m| m.aged.combine(&m.pages, |aged, used| aged & !used),
                |m| {
                    m.aged = m.dirty.combine(&m.pages, |dirty, used| dirty & !used);
                    m.dirty = PageBitmap::new();
                },
            )
        };
    }

    /// Purges every dirty free page now (`malloc_trim`, thread exit). Returns bytes purged.
    ///
    /// # Safety
    /// Owner only.
    pub unsafe fn purge_free_pages(&self) -> usize {
        // SAFETY: owner only (caller contract).
        unsafe {
            self.purge_segments(
                |m| {
                    m.dirty
                        .combine(&m.aged, |d, a| d | a)
                        .combine(&m.pages, |da, used| da & !used)
                },
                |m| {
                    m.dirty = PageBitmap::new();
                    m.aged = PageBitmap::new();
                },
            )
        }
    }

    /// For each segment of this heap: purges the page runs `pick` selects (which must all be
    /// free), then lets `after` update the segment's dirty/aged maps. Returns bytes purged.
    ///
    /// # Safety
    /// Owner only.
    unsafe fn purge_segments(
        &self,
        pick: impl Fn(&SegInner) -> PageBitmap,
        after: impl Fn(&mut SegInner),
    ) -> usize {
        // SAFETY: owner only (caller contract); the borrow ends with this statement.
        let heads = unsafe { self.local() }.seg_head;
        let mut bytes = 0;
        for mut s in heads {
            while s != 0 {
                // SAFETY: `s - 1` is on this heap's segment list and we are its owner; no other
                // `SegInner` borrow is live.
                let m = unsafe { arena::seg_meta(s - 1).get() };
                let base = arena::segment_base(s - 1);
                for (start, len) in pick(m).set_runs() {
                    let b = len << config::PAGE_SHIFT;
                    // SAFETY: `pick` selects free pages of segment `s - 1`: mapped arena memory that
                    // holds no live object.
                    unsafe { crate::os::purge(base.add(start << config::PAGE_SHIFT), b) };
                    bytes += b;
                }
                after(m);
                s = m.next;
            }
        }
        if bytes > 0 {
            self.stats.add(Ev::BytesPurged, bytes as u64);
        }
        bytes
    }

    /// Moves everything other threads queued in the medium inboxes and central intakes into
    /// the central lists, whose caps then return surplus runs to the segments (adopted ones to
    /// their owners). Called at each epoch and at
    /// thread exit, so queued frees of bins the owner no longer allocates cannot pile up.
    ///
    /// # Safety
    /// Owner only.
    pub unsafe fn drain_queues(&self) {
        for mi in 0..MEDIUM_BINS {
            // SAFETY: owner only (caller contract); a medium inbox holds free runs of its bin.
            if unsafe { self.absorb(&self.shared.inbox[mi], SMALL_BINS + mi) } {
                self.stats.add(Ev::InboxDrains, 1);
            }
        }
        for bin in 0..NUM_BINS {
            // SAFETY: as above; an intake holds free objects of its bin.
            unsafe { self.absorb(&self.shared.intake[bin], bin) };
        }
    }

    /// Moves everything queued in `q` into the central list of `bin`. True if it held any.
    ///
    /// # Safety
    /// Owner only (the single consumer of `q`); `q` holds free objects of this heap and `bin`.
    unsafe fn absorb(&self, q: &MpscStack, bin: usize) -> bool {
        let all = q.take_all();
        if all.is_null() {
            return false;
        }
        // SAFETY: `all` is a null-terminated list the swap made exclusively ours (caller
        // contract for its contents); owner only.
        unsafe { self.put_central(bin, Chain::measure(all)) };
        true
    }

    /// Time-based decay (DESIGN §8), run from the epoch at most once per decay interval
    /// (`HAKOZUNA_DECAY_MS`, default 1 s): medium runs that sat unused in central for a whole
    /// interval go back to their segments (adopted ones to their owners), free pages that
    /// stayed free for a whole interval go back to the OS, and the arena's segment pool and the
    /// thread's large-cache shard expire their old entries. (Per-epoch decay without the clock purged 3 GB in a 2 s mt-remote
    /// run and refaulted it.)
    ///
    /// # Safety
    /// Owner only.
    pub unsafe fn decay_if_due(&self) {
        let now = crate::os::now_ms();
        // SAFETY: owner only (caller contract); the borrow ends with this block.
        {
            let l = unsafe { self.local() };
            if now.saturating_sub(l.last_decay_ms) < crate::large::decay_ms() {
                return;
            }
            l.last_decay_ms = now;
        }
        for mi in 0..MEDIUM_BINS {
            // SAFETY: owner only (caller contract); no other `local()` result is live.
            let l = unsafe { self.local() };
            let idle = l.medium_low[mi];
            if idle > 0 {
                // SAFETY: the owner-only central list is well formed; `c` is detached from it:
                // free runs of this medium bin (ours, or adopted ones `free_runs` sends home).
                unsafe {
                    let c = l.medium[mi].take(idle);
                    self.free_runs(SMALL_BINS + mi, c);
                }
            }
            // SAFETY: owner only; the previous `l` is dead.
            let l = unsafe { self.local() };
            l.medium_low[mi] = l.medium[mi].count;
        }
        // SAFETY: owner only (caller contract).
        unsafe { self.decay_pages() };
        let pooled = arena::decay_pool(now, crate::large::decay_ms());
        if pooled > 0 {
            self.stats.add(Ev::BytesPurged, pooled as u64);
        }
        crate::large::decay();
    }

    /// Thread exit: moves the spill into the central lists (the seeds flush it at thread
    /// exit), absorbs the medium inboxes and central intakes, shrinks each medium central list
    /// to [`config::MEDIUM_RETIRE_BYTES`] and sends adopted runs home; surplus own runs go back
    /// to their segments, whose free pages are then purged. The owner stashes and transfer caches stay as they are: they are the
    /// heap's, and the next owner pops them in the usual order (moving them cost a walk over
    /// every cold object at each thread exit).
    ///
    /// # Safety
    /// Owner only.
    pub unsafe fn retire(&self) {
        // SAFETY: owner only (caller contract), no `local()` result live.
        unsafe {
            self.drain_queues();
            self.shrink_medium_for_exit();
        }
        for b in 0..SMALL_BINS {
            // SAFETY: owner only (caller contract); no other `local()` result is live, and none
            // is taken while `l` is.
            let l = unsafe { &mut self.local().small[b] };
            if l.spill.head.is_null() {
                continue;
            }
            // SAFETY: the spill and central are owner-only, null-terminated lists of free
            // objects of this bin that share no object. Counted stashes keep the spill's count
            // exact; otherwise it is an estimate and the spill is measured first.
            unsafe {
                if !config::STASH_COUNT {
                    l.spill.count = Chain::measure(l.spill.head).n;
                }
                l.central.append(&mut l.spill);
            }
        }
        // A released heap may wait long for adoption: its free pages go back to the OS now,
        // and its empty run segments to the arena's pool for other heaps.
        // SAFETY: owner only (caller contract); no `local()` result is live.
        unsafe {
            self.purge_free_pages();
            self.release_empty_segments();
        }
    }

    /// Gives every empty run segment back to the arena's pool (after a purge: not resident).
    ///
    /// # Safety
    /// Owner only, no `local()` result live.
    unsafe fn release_empty_segments(&self) {
        // SAFETY: owner only (caller contract); the borrow ends with this statement.
        let mut s = unsafe { self.local() }.seg_head[RUN_SEGS];
        while s != 0 {
            // SAFETY: our segment, owner only; the borrow ends with this statement.
            let (next, empty) = {
                let m = unsafe { arena::seg_meta(s - 1).get() };
                (m.next, m.pages.is_empty())
            };
            if empty {
                // SAFETY: one of our run segments with no page in use.
                unsafe { self.release_segment(s - 1, false) };
            }
            s = next;
        }
    }
}
