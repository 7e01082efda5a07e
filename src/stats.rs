//! Event counters (design.md §13). Counters are bumped on slow paths only: per heap by its
//! owner (a relaxed load+store, no shared cache line), globally for threads without a heap.
//! With the `stats` feature off every call compiles to nothing. The summary printed at exit
//! (`HAKOZUNA_STATS=1`) is `front::report`'s.
//!
//! May use: `config`.

use crate::config::STATS;
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

macro_rules! events {
    ($($name:ident = $label:literal,)*) => {
        #[derive(Clone, Copy)]
        #[repr(usize)]
        pub enum Ev { $($name,)* }
        /// Each event's label in the summary, in [`Ev`] order.
        pub const LABELS: &[&str] = &[$($label,)*];
    };
}

events! {
    RefillSpill = "small refills from spill",
    RefillStash = "small refills from owner stash",
    RefillXfer = "small refills from transfer cache",
    RefillCentral = "small refills from central",
    RefillPool = "small refills from the shared pool",
    RefillSteal = "small refills from another heap's stash",
    RefillNewPage = "small refills from new page",
    MediumInbox = "medium refills from inbox",
    MediumCentral = "medium refills from central",
    MediumCarve = "medium refills from new runs",
    BinOverflow = "thread-bin overflows to central",
    BinTrims = "idle thread bins trimmed at an epoch",
    RemoteQueued = "remote frees queued (with foreign objects a bin sent home)",
    RemoteDirect = "remote frees sent directly",
    RingFlushes = "ring/bank flushes",
    RingFlushed = "ring/bank objects flushed",
    StashPushes = "stash pushes",
    StashPushObjs = "stash objects pushed",
    StashRefused = "stash pushes refused (cap)",
    StashPops = "stash pops",
    StashPopObjs = "stash objects popped",
    XferPushes = "transfer-cache pushes",
    PoolParks = "chains parked in the shared pool",
    IntakePushes = "central intake pushes",
    InboxPushes = "inbox pushes",
    InboxDrains = "inbox drains",
    Epochs = "epochs",
    PagesCarved = "small page runs carved",
    RunsReturned = "medium runs returned to segments",
    SegmentsTaken = "segments taken (fresh or purged)",
    SegmentsReused = "segments reused resident from the pool",
    SegmentsReturned = "segments given back to the pool",
    HeapsCreated = "heaps created",
    HeapsAdopted = "heaps adopted",
    LargeAllocs = "large allocations",
    LargeCacheHits = "large cache hits",
    LargeUnmaps = "large blocks unmapped",
    BytesPurged = "bytes purged",
    MediumAdopted = "medium remote frees kept by the freeing thread",
    RunsSentHome = "adopted medium runs sent back to their owner",
    SmallSentHome = "foreign small objects a bin sent home (adopted, pooled or stolen)",
}

/// Number of events.
pub const N: usize = LABELS.len();

pub struct Counters([AtomicU64; N]);

impl Counters {
    #[allow(clippy::declare_interior_mutable_const)]
    pub const fn new() -> Self {
        const Z: AtomicU64 = AtomicU64::new(0);
        Counters([Z; N])
    }

    /// Owner-only increment (no RMW).
    #[inline(always)]
    pub fn add(&self, e: Ev, n: u64) {
        if STATS {
            let c = &self.0[e as usize];
            c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
        }
    }

    /// Increment from any thread.
    #[inline(always)]
    pub fn add_shared(&self, e: Ev, n: u64) {
        if STATS {
            self.0[e as usize].fetch_add(n, Relaxed);
        }
    }

    /// Event `i`'s count (any thread; a relaxed read).
    pub fn get(&self, i: usize) -> u64 {
        self.0[i].load(Relaxed)
    }
}

/// Counters of threads without a heap (exited, or before activation).
pub static GLOBAL: Counters = Counters::new();
