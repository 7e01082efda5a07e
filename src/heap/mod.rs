//! Heaps (design.md §6; hz3 calls them shards): an owner identity with its structures. A
//! thread claims a heap on first use and releases it at exit; the next claimant adopts whatever
//! other threads sent it meanwhile. Heaps live in metadata memory and are recycled, never destroyed, so a
//! `&'static Heap` stays valid forever.
//!
//! A heap has two parts. The shared part ([`HeapShared`]) is written by any thread through
//! atomics: the owner stash, transfer cache, central intake and medium inbox that remote frees
//! arrive in. The local part (spills, central lists, carve pointers, segment lists) is reached
//! only through an [`OwnedHeap`], the handle [`registry::claim`] gives the one thread that owns
//! the heap: every owner-only operation takes `&mut OwnedHeap`, so "owner only" is checked by
//! the compiler. The owner holds the heap's `busy` lock for each slow path, and a decay pass
//! may borrow the heap of an owner that has entered none for a decay interval (a thread that
//! went idle), holding the same lock: so the local part has one user at a time, checked in
//! debug builds at each access.
//!
//! The jobs, one module each: the registry and fork lock (`registry`), the id → heap table
//! (`table`), delivering chains to a heap from any thread (`send`), the small refill chain
//! (`refill`), central lists (`central`), medium runs (`medium`), page runs in owned segments
//! (`segments`), small runs back to their segments (`sweep`), epoch drains, decay and
//! retirement (`decay`), and the pool of small chains every heap shares (`pool`).
//!
//! May use: `ds`, `page`, `sys`, `config`, `stats`.

mod central;
mod decay;
mod medium;
mod pool;
mod refill;
pub mod registry;
mod segments;
pub mod send;
mod sweep;
mod table;

pub use registry::OwnedHeap;

use crate::ds::list::LocalList;
use crate::ds::mpsc::MpscStack;
use crate::ds::owner_stash::OwnerStash;
use crate::ds::transfer_cache::TransferCache;
use crate::page::size_class::{MEDIUM_BINS, NUM_BINS, SMALL_BINS};
use crate::stats::Counters;
use crate::sys::sync::Word;
use core::cell::UnsafeCell;
use core::sync::atomic::AtomicU32;

/// What other threads write into a heap: remote frees on their way to the owner.
#[repr(C)]
pub struct HeapShared {
    pub stash: [OwnerStash; SMALL_BINS],
    pub xfer: [TransferCache; SMALL_BINS],
    /// Remote frees that neither the stash nor the transfer cache took; drained into central.
    pub intake: [MpscStack; NUM_BINS],
    /// Medium remote frees.
    pub inbox: [MpscStack; MEDIUM_BINS],
    /// Held by whoever works on the local part: the owner for each slow path
    /// ([`OwnedHeap::enter`]), a decay pass for a heap it borrows (`registry`). Uncontended
    /// while the owner runs, so one CAS and one swap per slow path.
    pub busy: Word,
    /// Slow paths the owner entered (wrapping): a decay pass that finds it unchanged for an
    /// interval borrows the heap. Written by the owner only (relaxed), read by decay passes.
    pub activity: AtomicU32,
}

#[repr(C)]
struct SmallLocal {
    spill: LocalList,
    central: LocalList,
    bump: *mut u8,
    end: *mut u8,
    /// Runs of the class taken ahead of carving, side by side after the current one
    /// (`carve_small`): the first page of the next, and how many are left. Their pages are in
    /// use in the segment's bitmap but untagged, with no start bit and never touched.
    ahead: *mut u8,
    ahead_runs: u32,
    /// Runs the next reservation of the class takes side by side: doubles at each, back to 1
    /// when a sweep gives runs back, at a trim and at the owner's exit (`drop_ahead_runs`).
    group: u32,
    /// Fewest objects the central list held since the last decay pass: with a run's worth
    /// idle for a whole interval, the pass sweeps the bin (`sweep`). At most `central.count`:
    /// whatever takes objects out of the central list lowers it ([`SmallLocal::note_low`]).
    low: u32,
    /// Chains of the class taken from the shared pool since the owner claimed the heap: each
    /// take may keep twice as many objects as the last (`refill`'s slow start).
    pool_takes: u32,
    /// Whether the heap has carved a second run of the class: its first run is carved a page
    /// at a time (`carve_small`), later ones a refill batch at a time.
    grew: bool,
}

impl SmallLocal {
    /// Lowers the low-water mark to what the central list holds now; called after objects
    /// left it (a refill, a sweep, parking in the shared pool), so the next decay pass does
    /// not count objects that left as idle.
    fn note_low(&mut self) {
        self.low = self.low.min(self.central.count);
    }
}

/// The owner's part of a heap, reached only through an [`OwnedHeap`].
#[repr(C)]
struct HeapLocal {
    small: [SmallLocal; SMALL_BINS],
    medium: [LocalList; MEDIUM_BINS],
    /// Fewest runs each medium central held since the last decay pass: runs nobody needed for
    /// a whole interval, released at the next one. At most the list's count: whatever takes
    /// runs out of the list lowers it.
    medium_low: [u32; MEDIUM_BINS],
    /// Clock (ms) of the last decay pass.
    last_decay_ms: u64,
    /// Owned segments by kind ([`SMALL_SEGS`], [`RUN_SEGS`]) as doubly linked lists through
    /// `SegInner::next`/`prev` (index + 1; 0 = none).
    seg_head: [u32; 2],
    /// Per kind, the segment most likely to have room (index + 1).
    seg_hint: [u32; 2],
    /// `stash-steal`: the heap id the next probe starts at (round robin).
    steal_next: u32,
    /// Objects the central lists held after the last full sweep: a released heap whose
    /// lists have not changed since is not swept again.
    swept_total: u64,
    /// Segments taken from the arena (fresh or pooled) since the owner claimed the heap: at
    /// thread exit, more than [`config::EXIT_TRIM_SEGMENTS`] has the heap given back at once.
    ///
    /// [`config::EXIT_TRIM_SEGMENTS`]: crate::config::EXIT_TRIM_SEGMENTS
    segs_taken: u32,
    /// Set while a trim runs: segments emptied meanwhile wait for its purge and then go to
    /// the arena's pool purged, rather than resident (which would keep them an interval), and
    /// the medium central lists park none of the heap's own runs in the shared pool
    /// (`park_own_surplus`).
    trimming: bool,
}

impl HeapLocal {
    /// Lowers medium class `mi`'s low-water mark to what its central list holds now; called
    /// after runs left it, as [`SmallLocal::note_low`] is for small classes.
    fn note_medium_low(&mut self, mi: usize) {
        self.medium_low[mi] = self.medium_low[mi].min(self.medium[mi].count);
    }
}

#[repr(C, align(64))]
pub struct Heap {
    pub shared: HeapShared,
    local: UnsafeCell<HeapLocal>,
    /// The heap's place in the registry: its record, reached under the registry lock, and its
    /// link on the queue of released heaps (or on one `malloc_trim` detached from it).
    link: registry::Link,
    pub stats: Counters,
    pub id: u32,
}

/// Segment kinds. Small runs come back only when a sweep finds them whole, so they get
/// segments of their own: mixed in, one long-lived small run would pin a segment whose medium
/// runs all came back, which could otherwise return to the arena's pool.
const SMALL_SEGS: usize = 0;
/// Medium and large-class runs: given back run by run, and the segment once all are back.
const RUN_SEGS: usize = 1;
