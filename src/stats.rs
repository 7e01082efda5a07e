//! Event counters and page-level gauges (design.md §13).
//!
//! Events are bumped on slow paths only: per heap by its owner (a relaxed load+store, no
//! shared cache line), globally for threads without a heap. With the `stats` feature off every
//! event call compiles to nothing. Gauges (bytes in page runs) are kept whatever the features,
//! also on slow paths only (a run taken or given back), because `mallinfo` and
//! `hakozuna::stats()` report them. The summary printed at exit (`HAKOZUNA_STATS`) and the
//! figures built from these counters are `front::report`'s.
//!
//! May use: `config`.

use crate::config::STATS;
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

macro_rules! events {
    ($($name:ident / $field:ident = $label:literal,)*) => {
        #[derive(Clone, Copy)]
        #[repr(usize)]
        pub enum Ev { $($name,)* }
        /// Each event's label in the summary, in [`Ev`] order.
        pub const LABELS: &[&str] = &[$($label,)*];
        /// Each event's field name in [`Events`] (and key in the JSON), in [`Ev`] order.
        pub const NAMES: &[&str] = &[$(stringify!($field),)*];

        /// Event counts summed over every heap and the threads without one
        /// ([`hakozuna::stats`](crate::stats())). Every count is 0 in a build without the
        /// `stats` cargo feature (it is on in both lanes and in the crate's default features).
        /// Each field is named in the JSON (`"events"`) as here.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        #[non_exhaustive]
        pub struct Events {
            $(
                #[doc = concat!("Count of: ", $label, ".")]
                pub $field: u64,
            )*
        }

        impl Events {
            /// From the counts in [`Ev`] order.
            pub(crate) fn from_counts(c: &[u64; N]) -> Self {
                Events { $($field: c[Ev::$name as usize],)* }
            }

            /// Every count with its field name, in a fixed order.
            pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> {
                [$(self.$field,)*].into_iter().enumerate().map(|(i, v)| (NAMES[i], v))
            }
        }
    };
}

events! {
    RefillSpill / refill_spill = "small refills from spill",
    RefillStash / refill_stash = "small refills from owner stash",
    RefillXfer / refill_transfer_cache = "small refills from transfer cache",
    RefillCentral / refill_central = "small refills from central",
    RefillPool / refill_shared_pool = "small refills from the shared pool",
    RefillSteal / refill_steal = "small refills from another heap's stash",
    RefillNewPage / refill_new_page = "small refills from new page",
    MediumInbox / medium_refill_inbox = "medium refills from inbox",
    MediumCentral / medium_refill_central = "medium refills from central",
    MediumPool / medium_refill_pool = "medium refills from the shared pool",
    MediumSteal / medium_refill_steal = "medium refills from another heap's inbox",
    MediumCarve / medium_refill_new_runs = "medium refills from new runs",
    MediumLent / medium_runs_lent = "medium runs carved in a released heap's free pages",
    Yields / cpu_yields = "CPU yields to other threads (more threads own heaps than there are CPUs)",
    BinOverflow / bin_overflows = "thread-bin overflows to central",
    BinTrims / bin_trims = "idle thread bins trimmed at an epoch",
    BinGrows / bin_grows = "thread-bin limits grown (a round trip: refills, then an overflow)",
    BinGrowBytes / bin_grow_bytes = "bytes thread-bin limits grew by",
    BinRelinks / bin_relinks = "thread bins at rest relinked in address order",
    ByPage / by_page = "small classes whose round trips outgrew the bins, then held by page",
    RefillByPage / refill_by_page = "small refills from objects held by page",
    RemoteQueued / remote_queued = "remote frees queued (with foreign objects a bin sent home)",
    RemoteDirect / remote_direct = "remote frees sent directly",
    RingFlushes / remote_flushes = "ring/bank flushes",
    RingFlushed / remote_flushed_objects = "ring/bank objects flushed",
    StashPushes / stash_pushes = "stash pushes",
    StashPushObjs / stash_pushed_objects = "stash objects pushed",
    StashRefused / stash_refused = "stash pushes refused (cap)",
    StashPops / stash_pops = "stash pops",
    StashPopObjs / stash_popped_objects = "stash objects popped",
    XferPushes / transfer_cache_pushes = "transfer-cache pushes",
    PoolParks / shared_pool_parks = "chains parked in the shared pool",
    MediumParks / medium_pool_parks = "chains of medium runs a central list parked in the shared pool",
    ExitParks / exit_pool_parks = "chains a warm thread exit parked in the shared pool",
    IntakePushes / intake_pushes = "central intake pushes",
    InboxPushes / inbox_pushes = "inbox pushes",
    InboxDrains / inbox_drains = "inbox drains",
    Epochs / epochs = "epochs",
    PagesCarved / small_runs_carved = "small page runs carved",
    SmallRunsReturned / small_runs_returned = "small page runs returned to their segments",
    PoolSentHome / shared_pool_sent_home = "shared-pool objects sent home (class idle for an interval)",
    IdleHeapsDecayed / idle_heaps_decayed = "heaps of idle live threads given back by another thread's decay pass",
    ExitGiveBacks / exit_give_backs = "heaps given back at their thread's exit (a burst)",
    EagerPasses / eager_passes = "passes over the heaps given back at exit (run by exiting threads)",
    EagerHandoffs / eager_handoffs = "thread exits that left their pass to one running",
    RunsReturned / medium_runs_returned = "medium runs returned to segments",
    SegmentsTaken / segments_taken = "segments taken (fresh or purged)",
    SegmentsReused / segments_reused = "segments reused resident from the pool",
    SegmentsReturned / segments_returned = "segments given back to the pool",
    HeapsCreated / heaps_created = "heaps created",
    HeapsAdopted / heaps_adopted = "heaps adopted",
    LargeAllocs / large_allocs = "large allocations",
    LargeCacheHits / large_cache_hits = "large cache hits",
    LargeUnmaps / large_unmaps = "large blocks unmapped",
    LargeGathers / large_gathers = "large blocks assembled from cached pieces",
    BytesPurged / bytes_purged = "bytes purged",
    MediumAdopted / medium_adopted = "medium remote frees kept by the freeing thread",
    RunsSentHome / medium_runs_sent_home = "adopted medium runs sent back to their owner",
    SmallSentHome / small_sent_home = "foreign small objects a bin sent home (adopted, pooled or stolen)",
    BackgroundWakeups / background_wakeups = "background purge thread wake-ups (each runs decay if due)",
}

/// Number of events.
pub const N: usize = LABELS.len();

pub struct Counters {
    ev: [AtomicU64; N],
    /// Bytes of pages in this heap's runs (a gauge, always kept; see [`Counters::run_bytes`]).
    run_bytes: AtomicU64,
}

impl Counters {
    #[allow(clippy::declare_interior_mutable_const)]
    pub const fn new() -> Self {
        const Z: AtomicU64 = AtomicU64::new(0);
        Counters {
            ev: [Z; N],
            run_bytes: AtomicU64::new(0),
        }
    }

    /// Owner-only increment (no RMW).
    #[inline(always)]
    pub fn add(&self, e: Ev, n: u64) {
        if STATS {
            let c = &self.ev[e as usize];
            c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
        }
    }

    /// Increment from any thread.
    #[inline(always)]
    pub fn add_shared(&self, e: Ev, n: u64) {
        if STATS {
            self.ev[e as usize].fetch_add(n, Relaxed);
        }
    }

    /// Event `i`'s count (any thread; a relaxed read).
    pub fn get(&self, i: usize) -> u64 {
        self.ev[i].load(Relaxed)
    }

    /// Owner-only: `bytes` of pages went into a run of this heap (`taken`) or came back from
    /// one to its segment. Kept whatever the features (no RMW: only the heap's owner writes
    /// it, and runs never change heaps: adopted runs go home before they go back).
    #[inline]
    pub fn run_bytes_moved(&self, bytes: usize, taken: bool) {
        let d = if taken {
            bytes as u64
        } else {
            (bytes as u64).wrapping_neg()
        };
        let c = &self.run_bytes;
        c.store(c.load(Relaxed).wrapping_add(d), Relaxed);
    }

    /// Bytes of pages in this heap's runs: blocks in use and free blocks cached anywhere, and
    /// small runs reserved ahead of carving (untouched; `heap/refill.rs`) (any thread; a
    /// relaxed read).
    pub fn run_bytes(&self) -> u64 {
        self.run_bytes.load(Relaxed)
    }
}

/// Counters of threads without a heap (exited, or before activation).
pub static GLOBAL: Counters = Counters::new();
