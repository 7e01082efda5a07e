//! The heap registry (design.md §6): heap ids, the owner's handle ([`OwnedHeap`]), claiming and
//! releasing heaps, the id → heap table page tags are decoded against, the decay and trim of
//! released heaps (design.md §10), and the registry's share of the fork lock.

use super::{pool, Heap, HeapLocal};
use crate::config::{self, EAGER_MAX, RELEASED_DECAY_MAX};
use crate::page::{arena, page_tag};
use crate::stats::{Counters, Ev, GLOBAL};
use crate::sys::sync::{self, SpinLock};
use crate::sys::{options, os};
use core::cell::UnsafeCell;
use core::ptr::{null_mut, NonNull};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::*};

pub use super::table::{get, published, slot, MAX_HEAPS, SLOTS};
const _: () = assert!(options::MAX_HEAPS_DEFAULT as usize == MAX_HEAPS - 1);

/// The owning thread's handle on its heap, and the only way to the heap's local part.
///
/// Only this module makes one: [`claim`] for a heap nobody owns, and the passes below for a heap
/// they borrow ([`Lent`], under the heap's `busy` lock). [`release`] consumes the owner's. Two
/// may exist for one heap at a time: a pass's borrow and the owner's handle (an idle owner's,
/// or that of a thread that claimed a released heap while a pass had it borrowed). So a handle
/// alone is not exclusive access to the local part: [`local`](Self::local) is reached only
/// under `busy` (the owner's [`enter`](Self::enter), which waits for a borrow, or the borrow
/// itself), checked in debug builds. It is neither `Clone` nor `Send` (a `NonNull` field), so
/// it stays with the thread that holds it. `repr(transparent)`: `Option<OwnedHeap>` is then one
/// word whose all-zero value is `None`, which the thread cache's all-zero start relies on.
#[repr(transparent)]
pub struct OwnedHeap {
    heap: NonNull<Heap>,
}

const _: () = assert!(core::mem::size_of::<Option<OwnedHeap>>() == core::mem::size_of::<usize>());

impl OwnedHeap {
    /// The heap, shared part and counters; `'static` because heaps are never freed, so the
    /// result does not hold the handle borrowed.
    #[inline(always)]
    pub fn heap(&self) -> &'static Heap {
        // SAFETY: `heap` came from `claim` or the released queue: 'static heaps in metadata
        // memory that is never freed.
        unsafe { self.heap.as_ref() }
    }

    /// The owner's side of the `busy` lock: taken at the start of each slow path that reaches
    /// the local part, waiting while a decay pass has the heap borrowed.
    #[inline]
    pub fn enter(&mut self) {
        let s = &self.heap().shared;
        // Relaxed: only the owner writes it; decay passes only compare it with what they saw.
        s.activity
            .store(s.activity.load(Relaxed).wrapping_add(1), Relaxed);
        sync::lock(&s.busy);
    }

    /// Ends what [`enter`](Self::enter) began.
    #[inline]
    pub fn leave(&mut self) {
        // SAFETY: `enter` took the lock on this thread (the handle is not `Send`).
        unsafe { sync::unlock(&self.heap().shared.busy) };
    }

    /// The local part.
    #[inline(always)]
    pub(super) fn local(&mut self) -> &mut HeapLocal {
        debug_assert!(
            self.heap().shared.busy.held(),
            "local part of a heap reached without its busy lock"
        );
        // SAFETY: the caller holds the heap's `busy` lock (every caller runs between `enter`
        // and `leave`, or inside a `Lent` borrow; checked above in debug builds), which at
        // most one of the heap's handles holds at a time, and nothing else reaches `local`;
        // the result borrows `self`, so two cannot be live at once through this handle.
        unsafe { &mut *self.heap().local.get() }
    }
}

/// A heap's place in the registry, in two parts reached by different paths, each through the
/// value that guards it: a path that touches one part forms no reference to the other, and
/// the borrow checker keeps two `&mut` to one part from being live at once. (One `&mut Link`
/// for both, handed out by the registry lock or by holding the heap detached, let
/// `trim_released`, walking the `next` links of the heaps it detached, and a decay pass,
/// reading their `queued` flags under the lock, hold two `&mut` to one link at once: undefined
/// behaviour under Rust's aliasing rules even though they touched different fields.)
pub(super) struct Link {
    /// Reached only through [`Records`], which only the registry (under its lock) holds.
    rec: UnsafeCell<Record>,
    /// The next heap on the [`Queue`] that holds this one; reached only through that queue.
    next: UnsafeCell<*mut Heap>,
}

/// The registry's record of a heap.
struct Record {
    /// Clock (ms) when the heap was released.
    released_ms: u64,
    /// Released: on the queue, or on a queue `trim_released` detached from it.
    queued: bool,
    /// The owner's `activity` as a decay pass last saw it, and since when (ms).
    seen_activity: u32,
    seen_ms: u64,
}

/// Access to every heap's [`Record`]: `&Records` reads them, `&mut Records` writes them. Only
/// the registry holds one ([`Registry::recs`], made once for [`REG`]; nothing else in this
/// module makes one), so a borrow of it is a borrow of the registry under its lock.
struct Records(());

impl Records {
    /// The record of heap `h`.
    fn get(&self, h: NonNull<Heap>) -> &Record {
        // SAFETY: heaps are 'static; records are reached only through the one `Records`, and
        // this shared borrow of it excludes any `&mut Record` meanwhile.
        unsafe { &*h.as_ref().link.rec.get() }
    }

    /// The record of heap `h`, to write.
    fn get_mut(&mut self, h: NonNull<Heap>) -> &mut Record {
        // SAFETY: as in `get`; the exclusive borrow of `self` excludes any other reference
        // to a record meanwhile.
        unsafe { &mut *h.as_ref().link.rec.get() }
    }
}

/// A FIFO list of released heaps, linked through their `next` cells. Heaps enter one only
/// from an owner's handle ([`push_back`](Self::push_back) consumes it) and leave it as one
/// ([`pop_front`](Self::pop_front)), or move with a whole queue: so a heap is on at most one
/// queue, whose borrow is the borrow of its heaps' `next` cells (`&self` reads them, `&mut
/// self` writes them).
struct Queue {
    head: *mut Heap,
    tail: *mut Heap,
}

impl Queue {
    const EMPTY: Queue = Queue {
        head: null_mut(),
        tail: null_mut(),
    };

    /// The heap after `h`.
    ///
    /// # Safety
    /// `h` is on this queue.
    unsafe fn next(&self, h: NonNull<Heap>) -> *mut Heap {
        // SAFETY: heaps are 'static; `h` is ours (caller contract), so its cell is reached
        // only through `self`, whose shared borrow excludes writes meanwhile.
        unsafe { *h.as_ref().link.next.get() }
    }

    /// Makes `next` follow `h`.
    ///
    /// # Safety
    /// `h` is on this queue, or is being put on it by the caller.
    unsafe fn set_next(&mut self, h: NonNull<Heap>, next: *mut Heap) {
        // SAFETY: as in `next`, with the exclusive borrow of `self`.
        unsafe { *h.as_ref().link.next.get() = next };
    }

    /// Puts the heap of `owned` at the back; returns it (unowned from now on).
    fn push_back(&mut self, owned: OwnedHeap) -> NonNull<Heap> {
        let h = owned.heap;
        // SAFETY: `h` is being put on this queue; the old tail is on it.
        unsafe {
            self.set_next(h, null_mut());
            match NonNull::new(self.tail) {
                Some(t) => self.set_next(t, h.as_ptr()),
                None => self.head = h.as_ptr(),
            }
        }
        self.tail = h.as_ptr();
        h
    }

    /// Takes the front heap off, owned by the caller from now on.
    fn pop_front(&mut self) -> Option<OwnedHeap> {
        let h = NonNull::new(self.head)?;
        // SAFETY: `h` heads this queue.
        self.head = unsafe { self.next(h) };
        if self.head.is_null() {
            self.tail = null_mut();
        }
        // Off the queue: nobody else holds a handle on it (released heaps are unowned).
        Some(OwnedHeap { heap: h })
    }

    /// Puts the heaps of `front` before this queue's.
    fn prepend(&mut self, front: Queue) {
        let Some(last) = NonNull::new(front.tail) else {
            return;
        };
        // SAFETY: `last` ends `front`, whose heaps join this queue now.
        unsafe { self.set_next(last, self.head) };
        if self.head.is_null() {
            self.tail = last.as_ptr();
        }
        self.head = front.head;
    }

    /// The heaps from the front.
    fn iter(&self) -> impl Iterator<Item = NonNull<Heap>> + '_ {
        let mut h = self.head;
        core::iter::from_fn(move || {
            let nn = NonNull::new(h)?;
            // SAFETY: `nn` is on this queue (reached from its head).
            h = unsafe { self.next(nn) };
            Some(nn)
        })
    }
}

/// A heap a decay pass borrowed: its `busy` lock is held until the end of the borrow.
struct Lent(OwnedHeap);

impl Lent {
    /// Borrows `h` if nobody holds its `busy` lock.
    ///
    /// # Safety
    /// No handle on `h` is used while the borrow lives except by its owner after `enter`
    /// (which waits for it): an owned heap (whose owner may also release it meanwhile:
    /// `trim_owned`, `decay_idle`), a released one the caller holds off any claim (the
    /// registry lock, or detached by `trim_released`), or a released one a thread may claim
    /// meanwhile (`trim_eager`, `decay_released`), whose new owner enters before it touches
    /// the heap.
    unsafe fn try_new(h: NonNull<Heap>) -> Option<Lent> {
        // SAFETY: heaps are 'static.
        let busy = &unsafe { h.as_ref() }.shared.busy;
        if sync::try_lock(busy) {
            Some(Lent(OwnedHeap { heap: h }))
        } else {
            None
        }
    }
}

impl core::ops::Deref for Lent {
    type Target = OwnedHeap;
    fn deref(&self) -> &OwnedHeap {
        &self.0
    }
}

impl core::ops::DerefMut for Lent {
    fn deref_mut(&mut self) -> &mut OwnedHeap {
        &mut self.0
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        // SAFETY: `try_new` took the lock on this thread.
        unsafe { sync::unlock(&self.0.heap().shared.busy) };
    }
}

/// Released heaps wait in a FIFO queue, so every one is claimed again in turn and what other
/// threads keep freeing into it is reused. A LIFO stack (the most recently released, warmest
/// heap first) was tried: a new thread then always took the same few heaps, and small objects
/// freed into the deeper ones waited unused (16 exited threads' 32-byte objects: RSS 71.6 →
/// 93.0 MiB while 8 later threads allocated 24 MiB, against no growth with the queue;
/// docs/ab.md). Each heap is just as warm when threads come and go one generation at a time.
struct Registry {
    free: Queue,
    recs: Records,
    next_id: u32,
    /// Eager heaps ([`trim_eager`]) by id + 1 (0: a free slot): released, given back at their
    /// thread's exit, and still receiving what other threads free into them.
    eager: [u32; EAGER_MAX],
    /// The fallback heap's id + 1 while [`claim_fallback`] has it (0: none): not counted in
    /// [`OWNED`].
    fallback: u32,
}

// SAFETY: the raw pointer names a 'static heap; the registry lock serialises access.
unsafe impl Send for Registry {}

static REG: SpinLock<Registry> = SpinLock::new(Registry {
    free: Queue::EMPTY,
    recs: Records(()),
    next_id: 0,
    eager: [0; EAGER_MAX],
    fallback: 0,
});

/// Heaps threads own now: [`claim`]s less their [`release`]s (a dead thread's heap that no
/// thread has adopted yet counts, as do a fork parent's other threads' heaps in the child).
/// The fallback heap is not counted: it serves the mallocs of threads without a heap of
/// their own (rare), and once claimed it stays for good, so counting it made one thread
/// look like two for the rest of the program (with `HAKOZUNA_BACKGROUND=1`, the purge
/// thread's creation claims it from the main thread's first refill). Written under the
/// registry lock; read without it by [`others_own_heaps`].
static OWNED: AtomicU32 = AtomicU32::new(0);

/// Whether a thread other than the caller (which owns a heap) owns one now, so may take
/// from the shared pool or send the caller its objects. Relaxed: a hint for policy (how much
/// of a pool chain to take, whether a bin gives back adopted objects); a stale answer only
/// delays a change of policy by a call.
#[inline]
pub fn others_own_heaps() -> bool {
    owned_heaps() > 1
}

/// Small page runs heaps took for carving, all heaps together (wrapping). Relaxed: a
/// thread compares it with the value it saw last to learn that memory is coming in
/// (`ThreadCache::share_surplus`).
static SMALL_RUNS: AtomicU32 = AtomicU32::new(0);

/// Counts a small run taken for carving ([`small_runs_taken`]).
#[inline]
pub(super) fn note_small_run() {
    SMALL_RUNS.fetch_add(1, Relaxed);
}

/// Small page runs taken for carving so far, all heaps together (wrapping).
#[inline]
pub fn small_runs_taken() -> u32 {
    SMALL_RUNS.load(Relaxed)
}

/// How many heaps threads own now. Relaxed: a hint, as [`others_own_heaps`].
#[inline]
pub fn owned_heaps() -> usize {
    OWNED.load(Relaxed) as usize
}

/// Whether a slot of `Registry::eager` may be taken: set by [`release`], cleared by a
/// [`trim_eager`] pass that found every slot free. Written under the registry lock; read
/// without it, so a thread exit with no eager heap costs one load. Relaxed: a hint.
static EAGER_ANY: AtomicBool = AtomicBool::new(false);

/// Serialises [`trim_eager`] passes; taken before the registry lock, and by the fork handlers
/// before it, so no pass is left halfway in a fork child with a queued heap borrowed.
static EAGER_PASS: SpinLock<()> = SpinLock::new(());

/// Which thread runs [`trim_eager`]'s passes ([`sync::baton_ask`]); the runner takes
/// [`EAGER_PASS`] after it.
static EAGER_BATON: sync::Word = sync::Word::new();

/// Held by [`decay_released`] (for each batch of heaps it borrows) and [`trim_owned`] (for
/// each heap) while they work on heaps borrowed under the registry lock after they dropped
/// it. Taken before the registry lock, and by the fork handlers before it, so a fork child
/// finds no heap borrowed by a thread it does not have (the forking thread's own heap among
/// them, or a released heap it could claim). A fork waits for at most one batch of
/// [`RELEASED_DECAY_MAX`] heaps or one heap's trim; a thread start or exit (the registry lock)
/// waits for none.
static PURGE_PASS: SpinLock<()> = SpinLock::new(());

/// Heaps a [`decay_released`] pass borrows at a time.
const DECAY_BATCH: usize = RELEASED_DECAY_MAX as usize;

/// Clock (ms) of the last [`decay_released`] pass.
static RELEASED_DECAY_MS: AtomicU64 = AtomicU64::new(0);
/// Whether a released heap may hold memory a [`decay_released`] pass would give back: set
/// at each release, cleared by a pass that found nothing to do. Written under the registry
/// lock; read without it by [`decay_pending`].
static PENDING: AtomicBool = AtomicBool::new(false);

/// Whether a decay pass has work waiting that no owner will do: released heaps not yet
/// given back, resident segments in the arena's pool, or blocks in the large cache. Slow paths then run
/// [`decay_released`] (it checks the clock) at every call, not only at their epoch, so a
/// program that goes quiet gets its memory back at its next call past the interval.
/// Relaxed: a hint; a stale answer only delays or repeats a pass.
#[inline]
pub fn decay_pending() -> bool {
    PENDING.load(Relaxed)
        || crate::page::arena::pool_has_resident()
        || crate::page::large::has_cached()
}

/// Claims a heap for the calling thread: the longest-released one, else a new one.
/// `None` when `HAKOZUNA_MAX_HEAPS` heaps (at most 65,534) exist and none is released, or
/// metadata memory is exhausted.
pub fn claim() -> Option<OwnedHeap> {
    claim_below(options::max_heaps() as usize, false)
}

/// [`claim`] for the shared fallback heap (`front::fallback`), which may also take the one id
/// [`claim`] never hands out, so it exists even when threads own every other.
pub fn claim_fallback() -> Option<OwnedHeap> {
    claim_below(MAX_HEAPS, true)
}

fn claim_below(limit: usize, fallback: bool) -> Option<OwnedHeap> {
    let mut guard = REG.lock();
    let r = &mut *guard;
    let owned = claim_locked(r, limit)?;
    if fallback {
        r.fallback = owned.heap().id + 1;
    } else {
        // Relaxed: written under the registry lock, read as a hint.
        OWNED.store(OWNED.load(Relaxed) + 1, Relaxed);
    }
    Some(owned)
}

/// The body of [`claim_below`], under the registry lock (`r`).
fn claim_locked(r: &mut Registry, limit: usize) -> Option<OwnedHeap> {
    if let Some(owned) = r.free.pop_front() {
        r.recs.get_mut(owned.heap).queued = false;
        owned.heap().stats.add(Ev::HeapsAdopted, 1);
        // An owned heap is not eager: its owner runs its slow paths.
        let id = owned.heap().id + 1;
        for e in r.eager.iter_mut() {
            if *e == id {
                *e = 0;
            }
        }
        return Some(owned);
    }
    if r.next_id as usize >= limit.min(MAX_HEAPS) {
        return None;
    }
    if config::SHARED_POOL && !pool::init() {
        return None;
    }
    let id = r.next_id;
    let p = crate::sys::meta::alloc(core::mem::size_of::<Heap>(), 64)? as *mut Heap;
    // SAFETY: fresh zeroed metadata memory; all-zero is a valid empty heap (null lists, zero
    // counts, zero atomics), so only the id needs writing.
    unsafe {
        (*p).id = id;
        (*p).stats.add(Ev::HeapsCreated, 1);
    }
    r.next_id = id + 1;
    // SAFETY: `p` is heap `id`, initialised above, published once.
    unsafe { super::table::publish(id, p) };
    // SAFETY: `meta::alloc` returned a non-null pointer. A new heap: nobody else has a handle.
    Some(OwnedHeap {
        heap: unsafe { NonNull::new_unchecked(p) },
    })
}

/// Returns a heap to the registry (thread exit), consuming the owner's handle; `eager` when
/// its retirement gave it back (a burst heap, `OwnedHeap::retire`): [`trim_eager`] then
/// trims it again at each thread exit while it has something to give back.
pub fn release(owned: OwnedHeap, eager: bool) {
    let now = os::now_ms();
    let mut guard = REG.lock();
    let r = &mut *guard;
    if r.fallback == owned.heap().id + 1 {
        r.fallback = 0;
    } else {
        // Relaxed: as in `claim_below`.
        OWNED.store(OWNED.load(Relaxed) - 1, Relaxed);
    }
    let hp = r.free.push_back(owned);
    let rec = r.recs.get_mut(hp);
    rec.released_ms = now;
    rec.queued = true;
    PENDING.store(true, Relaxed);
    if eager {
        // A free slot, else the one of the longest-released heap (which loses its eagerness:
        // released-heap decay takes it in its turn).
        let mut pick = 0;
        let mut oldest = u64::MAX;
        for (i, &e) in r.eager.iter().enumerate() {
            if e == 0 {
                pick = i;
                break;
            }
            let at = r.recs.get(NonNull::from(get(e - 1))).released_ms;
            if at < oldest {
                oldest = at;
                pick = i;
            }
        }
        // SAFETY: heaps are 'static; `id` is the heap's.
        r.eager[pick] = unsafe { hp.as_ref() }.id + 1;
        EAGER_ANY.store(true, Relaxed);
    }
}

/// Whether some heap may be released now (a relaxed hint: heaps published less those
/// threads own; the fallback heap, when it exists, counts as released, so from then on the
/// answer is always yes and every carve that misses its own resident pages takes the
/// registry lock in [`lend_run`], as all did before this hint). A stale answer only skips or
/// wastes one [`lend_run`].
pub(super) fn some_released() -> bool {
    super::table::published() as usize > owned_heaps()
}

/// A run of `pages` pages for medium `bin`, carved in the resident free pages of a released
/// heap (`OwnedHeap::take_resident_run`) and tagged with that heap's id: for a heap with no
/// resident free pages of its own (`OwnedHeap::carve_run`), which then holds the run as an
/// adopted one (it returns to the lender's segment through the lender's inbox, as adopted
/// runs do). Probes at most [`config::LEND_PROBES`] heaps from the longest released, each
/// borrowed under its `busy` lock (tried, never waited for, so a caller holding its own
/// heap's `busy` lock cannot deadlock here) while the registry lock keeps it unclaimable.
/// `None` if none has room.
pub(super) fn lend_run(pages: usize, bin: usize) -> Option<*mut u8> {
    let r = REG.lock();
    for nn in r.free.iter().take(config::LEND_PROBES) {
        // SAFETY: a released heap, unclaimable while we hold the registry lock; the borrow
        // ends with this iteration, the heap staying on the queue.
        let Some(mut lent) = (unsafe { Lent::try_new(nn) }) else {
            continue;
        };
        if let Some(run) = lent.take_resident_run(pages) {
            // SAFETY: `run` starts a run of `pages` pages just taken in the lender's segment;
            // its first page carries the lender's tag, as every medium run of that heap does.
            unsafe { arena::set_tags(run, 1, page_tag::encode(lent.heap().id, bin)) };
            return Some(run);
        }
    }
    None
}

/// Bytes of medium runs parked in the shared pool (statistics).
pub fn shared_pool_medium_bytes() -> usize {
    pool::medium_bytes()
}

/// Eager heaps: a burst heap given back at its thread's exit (`OwnedHeap::retire`) may still
/// receive what other threads free into it, typically the rest of the burst, which the
/// threads that freed it flush when they exit in turn. Each thread exit, after its own
/// release, runs this pass: every eager heap is trimmed again as at its exit
/// (`OwnedHeap::trim`; a heap whose lists did not change is not swept again), twice over for
/// the objects one heap's sweep sends to another, so the last thread to exit leaves no burst
/// behind, without waiting for a decay pass that no thread may run. A heap stops being eager
/// when a pass at least an interval after its release found nothing to give back (a window of
/// one interval alone lost heaps whose feeders exited later, on a loaded machine), when it is
/// claimed, or when a newer one takes its slot. Bounded: at most [`EAGER_MAX`] heaps, two
/// rounds. Then the arena's pool keeps
/// [`config::EXIT_POOL_WARM_SEGMENTS`] resident segments and purges the rest (what the burst
/// threads' own frees emptied while they ran). A no-op, one load, while no heap is eager.
///
/// The registry lock is held only to borrow the eager heaps (their `busy` locks, as decay
/// passes borrow heaps) and, after the trims, to update the eager set: the `madvise` calls run
/// without it, so thread starts, exits and decay passes do not wait for them. A thread that
/// claims a borrowed heap meanwhile waits for the borrow at its first slow path, as the owner
/// of an idle heap does.
///
/// Passes run one at a time, all by one thread while it has work (the *runner*, which holds
/// [`EAGER_BATON`] and [`EAGER_PASS`]). A thread exiting while a pass runs does not wait for
/// it: it asks the runner for one more pass ([`sync::baton_ask`]) and goes on exiting, and
/// the runner passes again before it stops, which trims what the asking thread flushed (so
/// the last thread to exit still leaves no burst behind: the runner exits after it). Many
/// threads exiting at once then cost a few passes instead of one each, and none sleeps on the
/// lock while another's pass runs (32 threads exiting together ran 32 passes, each over every
/// eager heap, and slept up to 0.3 s each: docs/ab.md, "Thread exits in a crowd"). Requests
/// made during one pass are answered by one more, so the runner's exit is delayed by no more
/// passes than the requesters would have waited for.
pub fn trim_eager() {
    if !EAGER_ANY.load(Relaxed) {
        return;
    }
    if !sync::baton_ask(&EAGER_BATON) {
        GLOBAL.add_shared(Ev::EagerHandoffs, 1);
        return;
    }
    let _pass = EAGER_PASS.lock();
    for _ in 0..EAGER_RUNNER_PASSES {
        eager_pass();
        GLOBAL.add_shared(Ev::EagerPasses, 1);
        if sync::baton_done(&EAGER_BATON) {
            return;
        }
    }
    // Still asked after its share: the runner stops (its thread must finish exiting, and a
    // program may be joining it) and what the last requests flushed waits for the next exit's
    // pass or a decay pass.
    sync::baton_drop(&EAGER_BATON);
}

/// Passes one runner makes at most before it stops ([`trim_eager`]): exits that keep coming
/// while it passes must not keep its thread from exiting. A crowd of 32 exits took 4-5.
const EAGER_RUNNER_PASSES: u32 = 16;

/// One pass of [`trim_eager`], by the runner under [`EAGER_PASS`].
fn eager_pass() {
    let now = os::now_ms();
    let interval = options::decay_ms();
    // What the exited threads' remote frees parked there since pins their runs.
    if config::SHARED_POOL {
        pool::send_all_home(&GLOBAL);
    }
    // Each slot's heap as borrowed: its id + 1 (0: none), its release clock, the borrow
    // (`None`: busy, e.g. held detached by `trim_released`, and then kept eager).
    let mut ids = [0u32; EAGER_MAX];
    let mut released_ms = [0u64; EAGER_MAX];
    let mut lent: [Option<Lent>; EAGER_MAX] = [const { None }; EAGER_MAX];
    {
        let r = REG.lock();
        for (i, &e) in r.eager.iter().enumerate() {
            if e == 0 {
                continue;
            }
            let nn = NonNull::from(get(e - 1));
            ids[i] = e;
            released_ms[i] = r.recs.get(nn).released_ms;
            // SAFETY: a released heap. A thread may claim it once we drop the registry lock,
            // and then uses its local part only after `enter`, which waits for the borrow;
            // `trim_released` may hold it detached, and then holds its busy lock or has not
            // taken it yet: the borrow is either refused or excludes it. No other pass
            // borrows it without `try_lock`.
            lent[i] = unsafe { Lent::try_new(nn) };
        }
    }
    let mut gave = [false; EAGER_MAX];
    for _ in 0..2 {
        for (l, g) in lent.iter_mut().zip(&mut gave) {
            if let Some(l) = l {
                *g |= l.trim(false, config::EXIT_PURGE_MIN_PAGES) > 0;
            }
        }
    }
    {
        let mut r = REG.lock();
        // Slots may have changed meanwhile: a claim cleared one, a release took one. A heap
        // we borrowed cannot have been released again, since its new owner's release waits
        // for the borrow (which ends below), so its id still names the same tenure.
        let mut any = false;
        for e in r.eager.iter_mut() {
            if *e == 0 {
                continue;
            }
            let done = ids.iter().position(|&id| id == *e).is_some_and(|i| {
                lent[i].is_some() && !gave[i] && now.saturating_sub(released_ms[i]) >= interval
            });
            if done {
                *e = 0;
            } else {
                any = true;
            }
        }
        EAGER_ANY.store(any, Relaxed);
    }
    drop(lent);
    let bytes = crate::page::arena::purge_pool_beyond(config::EXIT_POOL_WARM_SEGMENTS);
    if bytes > 0 {
        GLOBAL.add_shared(Ev::BytesPurged, bytes as u64);
    }
}

/// Decay of released heaps, which have no thread to run it (design.md §10): from any thread's
/// epoch and from every thread exit (and from every slow path while [`decay_pending`]), at
/// most once per decay interval for the whole process. First the shared pool sends home the
/// chains of classes nobody took from for an interval. Then the walk starts at the
/// longest-released heap; heaps released less than an interval ago are left warm for the next
/// threads to claim. Each older one whose own decay is due is given back as `malloc_trim`
/// would ([`OwnedHeap::decay_released_heap`]: unused for an interval, all of its free memory
/// is idle), and the small objects left in partly used runs are offered to the shared pool. A
/// pass stops after [`RELEASED_DECAY_MAX`] heaps that had something to give back, so heaps
/// already given back cost only their check and deeper ones are reached. Last, the
/// process-wide part: the arena's segment pool and the large cache.
///
/// The registry lock is held only to pick and borrow the heaps, [`DECAY_BATCH`] at a time
/// (their `busy` locks, which keep them from any other pass); the trims and their `madvise`
/// calls run without it, so thread starts and exits do not wait for them. A thread that
/// claims a borrowed heap meanwhile waits for the borrow at its first slow path. Each batch
/// runs under [`PURGE_PASS`] (the fork handlers' lock before the registry's).
pub fn decay_released() {
    let now = os::now_ms();
    let interval = options::decay_ms();
    let last = RELEASED_DECAY_MS.load(Relaxed);
    // Relaxed: the stamp only elects one caller per interval; the heaps themselves are
    // reached under the registry lock.
    if now.saturating_sub(last) < interval
        || RELEASED_DECAY_MS
            .compare_exchange(last, now, Relaxed, Relaxed)
            .is_err()
    {
        return;
    }
    if config::SHARED_POOL {
        pool::decay(now, interval, &GLOBAL);
    }
    let mut budget = RELEASED_DECAY_MAX;
    let mut more = false;
    let mut first = true;
    // Each batch ends the heaps it took with `last_decay_ms == now`, which the next batch
    // skips, so the walk goes on where the last one stopped even if the queue changed. At
    // most one batch per heap that can exist: a bound, should heaps keep being released
    // (with `HAKOZUNA_DECAY_MS=0` they are old at once).
    for _ in 0..=MAX_HEAPS / DECAY_BATCH {
        let _pass = PURGE_PASS.lock();
        let mut batch: [Option<Lent>; DECAY_BATCH] = [const { None }; DECAY_BATCH];
        let full = {
            let r = REG.lock();
            if first {
                // A release from now on sets it again (under the registry lock), so the
                // pass's own answer below cannot hide it.
                PENDING.store(false, Relaxed);
                first = false;
            }
            pick_released(&r, now, interval, &mut batch, &mut more)
        };
        if batch[0].is_none() {
            break;
        }
        // Two rounds: the first sends each heap's adopted objects and runs home, and those
        // whose home came earlier in the batch are taken in the second (it skips a heap
        // whose lists did not change).
        let mut worked = [false; DECAY_BATCH];
        for round in 0..2 {
            for (l, w) in batch.iter_mut().zip(&mut worked) {
                if let Some(l) = l {
                    *w |= l.decay_released_heap(now);
                    if round == 1 {
                        *w |= l.offer_small();
                    }
                }
            }
        }
        drop(batch);
        let n = worked.iter().filter(|&&w| w).count() as u32;
        more |= n > 0;
        budget = budget.saturating_sub(n);
        if budget == 0 || !full {
            break;
        }
    }
    if more {
        PENDING.store(true, Relaxed);
    }
    if budget > 0 {
        decay_idle(now, interval, budget);
    }
    // The process-wide part, once per pass and outside the registry lock.
    super::decay::decay_shared(now, &GLOBAL, true);
}

/// Borrows into `batch`, from the front of the released queue, the heaps released at least
/// an interval ago whose decay is due and that no pass of this `now` took yet; sets `more`
/// when a heap is left for a later pass (too young, busy, or not due). Returns whether the
/// batch is full (more may wait behind it). The caller holds the registry lock (`r`).
fn pick_released(
    r: &Registry,
    now: u64,
    interval: u64,
    batch: &mut [Option<Lent>; DECAY_BATCH],
    more: &mut bool,
) -> bool {
    let mut n = 0;
    for nn in r.free.iter() {
        if now.saturating_sub(r.recs.get(nn).released_ms) < interval {
            *more = true;
            continue;
        }
        // SAFETY: a released heap: no owner. A thread may claim it once the caller drops the
        // registry lock, and then uses its local part only after `enter`, which waits for
        // the borrow; `trim_released` may hold it detached (then it is not on the queue).
        // Every other pass only tries the lock.
        let Some(mut lent) = (unsafe { Lent::try_new(nn) }) else {
            *more = true;
            continue;
        };
        if lent.decayed_at(now) {
            continue;
        }
        if !lent.decay_due(now) {
            *more = true;
            continue;
        }
        if n == DECAY_BATCH {
            *more = true;
            return true;
        }
        batch[n] = Some(lent);
        n += 1;
    }
    false
}

/// The part of [`decay_released`] for heaps whose threads are alive but idle: a heap whose
/// owner entered no slow path for a whole interval (its `activity` unchanged) and is not in
/// one now is borrowed under its `busy` lock and given back as a released heap is. Its owner,
/// if it wakes meanwhile, waits for the borrow at its next slow path. Stops after `budget`
/// heaps that gave something back. As in [`decay_released`], the registry lock is held only
/// to pick and borrow a batch (the links' `seen` fields are its), and each batch runs under
/// [`PURGE_PASS`].
fn decay_idle(now: u64, interval: u64, mut budget: u32) {
    let mut next = 0;
    while next < published() {
        let _pass = PURGE_PASS.lock();
        let mut batch: [Option<Lent>; DECAY_BATCH] = [const { None }; DECAY_BATCH];
        next = pick_idle(&mut REG.lock().recs, next, now, interval, &mut batch);
        for l in batch.iter_mut().flatten() {
            if l.decay_released_heap(now) {
                l.heap().stats.add_shared(Ev::IdleHeapsDecayed, 1);
                budget -= 1;
                if budget == 0 {
                    return;
                }
            }
        }
    }
}

/// Borrows into `batch` the idle owned heaps from id `from` on (see [`decay_idle`]), noting
/// every owned heap's activity on the way. Returns the id to go on from.
fn pick_idle(
    recs: &mut Records,
    from: u32,
    now: u64,
    interval: u64,
    batch: &mut [Option<Lent>; DECAY_BATCH],
) -> u32 {
    let mut n = 0;
    for id in from..published() {
        if n == DECAY_BATCH {
            return id;
        }
        let nn = NonNull::from(get(id));
        let l = recs.get_mut(nn);
        if l.queued {
            continue;
        }
        // Relaxed: a hint; the borrow itself is ordered by the busy lock.
        let activity = get(id).shared.activity.load(Relaxed);
        if activity != l.seen_activity || l.seen_ms == 0 {
            l.seen_activity = activity;
            l.seen_ms = now;
            continue;
        }
        if now.saturating_sub(l.seen_ms) < interval {
            continue;
        }
        // SAFETY: an owned heap: its owner touches the local part only between `enter` and
        // `leave`, which take the same lock. If it exits while the caller works on the heap
        // without the registry lock, its retirement enters first (and waits); a thread that
        // claims it after the release enters before it touches it.
        let Some(lent) = (unsafe { Lent::try_new(nn) }) else {
            continue;
        };
        l.seen_ms = now;
        batch[n] = Some(lent);
        n += 1;
    }
    published()
}

/// `malloc_trim` for released heaps: every one trimmed as [`OwnedHeap::trim`] does (queues
/// drained, small bins swept, free pages purged, empty segments given to the arena's pool).
/// The heaps are taken off the queue for the purge and put back after, so the registry lock
/// is not held across `madvise` (threads starting meanwhile get new heaps; a fork meanwhile
/// leaves them unreachable in the child, as other threads' heaps are). Returns bytes purged.
pub fn trim_released() -> usize {
    let detached = core::mem::replace(&mut REG.lock().free, Queue::EMPTY);
    let mut bytes = 0;
    // A second pass takes the objects one released heap's sweep sent home to another that
    // the first pass had already trimmed.
    for force in [true, false] {
        for nn in detached.iter() {
            // SAFETY: off the queue and unowned, so no claim reaches it, and decay passes skip
            // it (it is still marked queued).
            let Some(mut lent) = (unsafe { Lent::try_new(nn) }) else {
                continue;
            };
            bytes += lent.trim(force, 1);
        }
    }
    // The detached heaps were released before any queued since, so they go back in front.
    REG.lock().free.prepend(detached);
    bytes
}

/// `malloc_trim` for heaps other live threads own: each one whose owner is not in a slow path
/// right now is borrowed and trimmed as [`OwnedHeap::trim`] does (its owner, if it calls
/// meanwhile, waits at its next slow path); one that is busy is skipped. `skip` is the
/// caller's own heap (trimmed by its owner). Returns bytes purged. The registry lock is held
/// only to check and borrow each heap, not across its trim; each heap's borrow and trim run
/// under [`PURGE_PASS`].
pub fn trim_owned(skip: Option<u32>) -> usize {
    let mut bytes = 0;
    for id in 0..published() {
        if Some(id) == skip {
            continue;
        }
        let nn = NonNull::from(get(id));
        let _pass = PURGE_PASS.lock();
        let lent = {
            let r = REG.lock();
            if r.recs.get(nn).queued {
                continue;
            }
            // SAFETY: an owned heap: its owner touches the local part only between `enter`
            // and `leave`, which take the same lock. If it exits during the trim, its
            // retirement enters first (and waits); after its release, a thread that claims
            // it enters before it touches it, and every other pass only tries the lock.
            unsafe { Lent::try_new(nn) }
        };
        if let Some(mut lent) = lent {
            bytes += lent.trim(true, 1);
        }
    }
    bytes
}

/// `malloc_trim` for the shared pool: every parked chain goes home to its owners, whose trim
/// then sweeps it. Returns objects sent.
pub fn trim_pool() -> u64 {
    if config::SHARED_POOL {
        pool::send_all_home(&GLOBAL)
    } else {
        0
    }
}

/// Calls `f` with every published heap's counters.
pub fn for_each_heap(mut f: impl FnMut(&Counters)) {
    for id in 0..published() {
        f(&get(id).stats);
    }
}

/// The registry's locks for the fork handlers: the eager pass's, the purge passes', then the
/// registry's.
pub fn lock_for_fork() {
    EAGER_PASS.raw_lock();
    PURGE_PASS.raw_lock();
    REG.raw_lock();
}

/// In the fork child, after [`unlock_after_fork`]: a thread of the parent that held the
/// eager passes' baton (waiting for [`EAGER_PASS`], which the fork handlers held) is not in
/// the child, so nobody would pass there again; the child starts with no runner.
pub fn forget_eager_runner_after_fork() {
    sync::baton_drop(&EAGER_BATON);
}

/// # Safety
/// Pairs with [`lock_for_fork`] in the parent, or runs in the single-threaded child.
pub unsafe fn unlock_after_fork() {
    // SAFETY: caller contract: we hold the locks from `lock_for_fork`, or are the only thread
    // left in the child.
    unsafe {
        REG.raw_unlock();
        PURGE_PASS.raw_unlock();
        EAGER_PASS.raw_unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::{Heap, OwnedHeap, Queue, Records};
    use core::ptr::NonNull;
    use std::vec::Vec;

    /// Zeroed heaps (all-zero is an empty heap), never published; the test frees them. From
    /// the test's own allocator, not metadata memory, whose addresses come from an integer:
    /// Miri checks the aliasing of pointers with provenance only.
    fn heaps<const N: usize>() -> [NonNull<Heap>; N] {
        core::array::from_fn(|_| {
            // SAFETY: `Heap` has a non-zero size.
            let p = unsafe { std::alloc::alloc_zeroed(std::alloc::Layout::new::<Heap>()) };
            NonNull::new(p as *mut Heap).unwrap()
        })
    }

    fn ids(q: &Queue, all: &[NonNull<Heap>]) -> Vec<usize> {
        q.iter()
            .map(|h| all.iter().position(|&a| a == h).unwrap())
            .collect()
    }

    #[test]
    fn the_released_queue_is_fifo_and_a_detached_queue_goes_back_in_front() {
        let hs = heaps::<5>();
        let mut q = Queue::EMPTY;
        assert!(q.pop_front().is_none());
        for &h in &hs[2..] {
            q.push_back(OwnedHeap { heap: h });
        }
        // What `trim_released` does: detach the whole queue, let releases go on meanwhile,
        // put the detached heaps back in front.
        let detached = core::mem::replace(&mut q, Queue::EMPTY);
        assert_eq!(ids(&detached, &hs), [2, 3, 4]);
        // While `trim_released` walks the detached heaps' `next` cells, a decay pass writes
        // their records under the registry lock (`pick_idle`): interleaved here, so that Miri
        // (`cargo +nightly miri test -p hakozuna --lib heap::registry`) checks that the two
        // paths' references never alias. (A `Records` of the test's own: these heaps are not
        // the registry's.)
        let mut recs = Records(());
        for h in detached.iter() {
            let r = recs.get_mut(h);
            assert!(!r.queued);
            r.queued = true;
            r.seen_ms += 1;
        }
        assert!(detached.iter().all(|h| recs.get(h).queued));
        q.push_back(OwnedHeap { heap: hs[0] });
        q.prepend(Queue::EMPTY);
        assert_eq!(ids(&q, &hs), [0]);
        q.prepend(detached);
        assert_eq!(ids(&q, &hs), [2, 3, 4, 0]);
        q.push_back(OwnedHeap { heap: hs[1] });
        assert_eq!(ids(&q, &hs), [2, 3, 4, 0, 1]);
        let mut order = Vec::new();
        while let Some(o) = q.pop_front() {
            order.push(hs.iter().position(|&a| a == o.heap).unwrap());
        }
        assert_eq!(order, [2, 3, 4, 0, 1]);
        assert!(q.tail.is_null());
        // Into an empty queue: the prepended queue's tail becomes the tail.
        let mut d = Queue::EMPTY;
        d.push_back(OwnedHeap { heap: hs[3] });
        q.prepend(d);
        q.push_back(OwnedHeap { heap: hs[4] });
        assert_eq!(ids(&q, &hs), [3, 4]);
        for h in hs {
            // SAFETY: allocated by `heaps` with this layout; nothing refers to it any more.
            unsafe {
                std::alloc::dealloc(h.as_ptr() as *mut u8, std::alloc::Layout::new::<Heap>())
            };
        }
    }
}
