//! Compile-time configuration: the only module that reads cargo features.
//!
//! Every box of the design is a `const bool` here so the rest of the code branches on
//! constants (dead code is removed by the compiler) and an A/B comparison is one flag
//! (design.md §12).
//!
//! May use: nothing (the bottom layer).

/// Fast lane: dense remote bank in TLS, sized for [`BANK_HEAPS`] destination heaps.
pub const FAST_LANE: bool = cfg!(feature = "fast");
/// Scale lane: sparse remote ring (S41). Ignored in the fast lane (the bank replaces it).
pub const REMOTE_RING: bool = cfg!(feature = "remote-ring") && !FAST_LANE;
/// Ring entries hold chains: a remote free joins a buffered entry with the same (dst, bin),
/// so the flush hands over batches instead of single objects (scale lane; docs/ab.md).
pub const RING_COALESCE: bool = cfg!(feature = "ring-coalesce");
/// Owner stash (S44) receives remote small frees.
pub const STASH_PUSH: bool = cfg!(feature = "owner-stash") && cfg!(feature = "owner-stash-push");
/// The owner pops its stash in batches (`pop_batch`); off = the stash is drained whole into
/// the central list on a miss, so pushes are never stranded.
pub const STASH_POP: bool = cfg!(feature = "owner-stash") && cfg!(feature = "owner-stash-pop");
/// S44-3 FASTPOP: push the remainder back with a single CAS when the head is still empty.
pub const STASH_FASTPOP: bool = cfg!(feature = "stash-fastpop");
/// The stash head carries its exact object count (ptr | count << 48): a pop that finds at most
/// a bin's limit installs the list whole, without walking it; also what the cap reads.
pub const STASH_COUNT: bool = cfg!(feature = "stash-count");
/// S48: leftovers of a pop stay in a heap-resident spill consumed first.
pub const STASH_SPILL: bool = cfg!(feature = "stash-spill");
/// A remote free of a medium run goes into the freeing thread's own bin (the run keeps its
/// owner's tag) instead of travelling back to the owner; runs leave a heap's central for their
/// segments only through their owner (design.md §7 deviation, see docs/ab.md).
pub const MEDIUM_ADOPT: bool = cfg!(feature = "medium-adopt");
/// A free of another heap's small object (of at least [`ADOPT_MIN_SIZE`] bytes) goes into the
/// freeing thread's own bin, once that thread has made [`ADOPT_WARMUP`] refills; the object
/// keeps its owner's tag (medium-adopt for small objects). An overflowing bin sheds to central
/// (which parks it in the shared pool while other threads own heaps) whole while the class is
/// in demand and central holds at most [`ADOPT_CENTRAL_MAX`] bin limits; otherwise its adopted objects travel the remote ring/bank to their owners and the
/// thread stops adopting until its next refill (docs/ab.md).
pub const SMALL_ADOPT: bool = cfg!(feature = "small-adopt");
/// `small-adopt`: the smallest class adopted, a cache line (smaller objects share lines).
pub const ADOPT_MIN_SIZE: usize = 64;
/// `small-adopt`: refills a thread makes before it adopts. A queue's consumer refills only
/// for its start-up allocations and so never adopts what it frees; a thread that allocates
/// passes this in its first few hundred allocations.
pub const ADOPT_WARMUP: u32 = 64;
/// `small-adopt`: bin limits of a small class its central list may hold before adopted
/// objects shed from the bin go home instead of joining it.
pub const ADOPT_CENTRAL_MAX: u32 = 4;
/// Free small objects beyond [`SHARED_KEEP`] bin limits in a heap's central list (all of them
/// while other threads own heaps) go to a pool every heap refills from before carving a new
/// page (`heap::pool`; an extension beyond hz3, design.md §7).
pub const SHARED_POOL: bool = cfg!(feature = "shared-pool");
/// With `medium-adopt` and `shared-pool`: a medium central list past one bin limit of its
/// class parks other heaps' runs in the shared pool (or sends them home when its slots are
/// full) instead of keeping them, and a medium refill takes from the pool before it carves.
pub const MEDIUM_POOL: bool = MEDIUM_ADOPT && SHARED_POOL;
/// `shared-pool`: bin limits of a small class a heap's central list keeps for its owner while
/// no other thread owns a heap. While others do, it keeps none: every chain goes to the pool
/// (central keeps it only when the class's slots are full), since per-heap central lists at
/// 32 threads held 130 MiB of free objects that only their descheduled owners could reuse
/// (docs/ab.md, "Central lists that keep nothing").
pub const SHARED_KEEP: u32 = 1;
/// `shared-pool`: bytes of free small objects that only their thread reaches (its bins and
/// its heap's central lists), all threads together, while more than one thread owns a heap.
/// A thread's share is this divided by the heaps threads own, at least [`PRIVATE_MIN`]; past
/// it the thread moves its surplus to the shared pool (`ThreadCache::share_surplus`). Per
/// class limits alone let 32 threads keep 44–62 MiB that the others carved anew (design.md §5).
pub const PRIVATE_BUDGET: usize = 16 << 20;
/// See [`PRIVATE_BUDGET`].
pub const PRIVATE_MIN: usize = 256 << 10;
/// Slow-path calls between two checks of a thread's share of [`PRIVATE_BUDGET`].
pub const PRIVATE_CHECK_PERIOD: u32 = 16;
/// `shared-pool`: chains parked per small class, each at most one bin limit: at most 4 MiB per
/// class up to 2 KiB (bins of 64 KiB), and 16 MiB per carved class above (2,560 to 14,336
/// bytes, whose bins hold 256 KiB).
pub const SHARED_POOL_SLOTS: usize = 64;
/// Bytes of medium and arena-large runs the shared pool holds at most, all classes together, or
/// a [`MEDIUM_POOL_SHARE`]th of the bytes in heaps' segments if more; a chain past it goes home
/// (design.md §10, "Bounds"). Without it the slots alone allowed about 334 MiB.
pub const MEDIUM_POOL_BYTES: usize = 64 << 20;
/// See [`MEDIUM_POOL_BYTES`].
pub const MEDIUM_POOL_SHARE: usize = 4;
/// A refill that finds every source of its own heap empty (spill, stash, transfer cache,
/// central, shared pool) takes objects from other heaps' owner stashes before it carves a new
/// page, for classes of at least [`ADOPT_MIN_SIZE`] (an extension beyond hz3,
/// design.md §7).
pub const STASH_STEAL: bool = cfg!(feature = "stash-steal");
/// A medium refill that finds its own inbox and central list empty takes runs from other
/// heaps' medium inboxes of the class before it carves new runs (design.md §7).
pub const INBOX_STEAL: bool = cfg!(feature = "inbox-steal");
/// `stash-steal`, `inbox-steal`: other heaps' stashes or inboxes one refill probes (round
/// robin over all heaps).
pub const STEAL_PROBES: u32 = 4;
/// S42 transfer cache.
pub const TRANSFER_CACHE: bool = cfg!(feature = "transfer-cache");
/// While more threads own heaps than the process may run on CPUs, a thread yields its CPU after
/// each [`INTERLEAVE_QUANTUM`] of allocator-dense running (`front::interleave`).
pub const INTERLEAVE: bool = cfg!(feature = "interleave");
/// `interleave`: time-stamp-counter cycles of allocator-dense running between two yields
/// (about 0.4 ms at 2.6 GHz). 2^18 cost xmalloc-T4 a third of its speed (docs/ab.md).
pub const INTERLEAVE_QUANTUM: u64 = 1 << 20;
/// `interleave`: a gap between two refills this long (about 50 µs at 2.6 GHz) means the
/// thread was descheduled or ran code of its own: its quantum starts again.
pub const INTERLEAVE_GAP: u64 = 1 << 17;
/// Event-only statistics.
pub const STATS: bool = cfg!(feature = "stats");
/// Report wild/double frees of in-arena pointers.
pub const CHECKED: bool = cfg!(feature = "checked");
/// Hardened lane (docs/design.md "Hardened lane"): invalid and double frees abort with a line
/// on stderr, free-list links are encoded and checked, metadata has guard pages.
pub const SECURE: bool = cfg!(feature = "secure");

/// S44 STASH_MAX_OBJS: beyond this many objects a push goes to the transfer cache
/// (0 = no cap). Only meaningful with `stash-count`.
pub const STASH_MAX_OBJS: u32 = if STASH_CAPPED { 256 } else { 0 };
/// Whether the stash has a cap (and so may refuse a push).
pub const STASH_CAPPED: bool = cfg!(feature = "stash-max");
/// S44 drain limit: objects one `pop_batch` takes by walking (= the small refill batch); a
/// counted pop takes a stash of at most the bin's limit whole instead.
pub const STASH_DRAIN_LIMIT: u32 = SMALL_REFILL_BATCH;
/// Whole-list slots per (heap, small bin) in the transfer cache.
pub const TRANSFER_SLOTS: usize = 4;

/// Small refill batch (objects moved into a thread bin per miss) *(hz3: 32)*.
pub const SMALL_REFILL_BATCH: u32 = 32;
/// Sparse ring length in 16-byte entries; power of two *(hz3 S41: 256 = 4 KiB)*.
pub const RING_LEN: usize = 256;
/// Entries flushed when the ring is full *(hz3: 32)*.
pub const RING_FULL_BUDGET: u32 = 32;
/// A coalesced ring chain goes to its owner when it reaches this many objects (as the fast
/// lane's bank lists do at [`BANK_LIST_FLUSH`]).
pub const RING_CHAIN_MAX: u32 = 32;
/// Entries flushed on an alloc miss *(hz3: 128)*.
pub const RING_MISS_BUDGET: u32 = 128;
/// Destination heaps covered by the fast lane's dense bank *(hz3: 8)*.
pub const BANK_HEAPS: usize = 8;
/// A bank list is handed to its owner once it holds this many objects.
pub const BANK_LIST_FLUSH: u32 = 32;

/// Bytes a thread's small bins may grow by, together, beyond their default limits
/// (`front::tcache::overflow`): a thread that allocates a batch and frees it keeps the batch
/// in its bins, up to this much more; an idle bin gives its share back at the next epoch.
pub const BIN_GROW_BUDGET: usize = 4 << 20;

/// Slow-path calls between epochs (full ring flush) *(hz3: 1024)*.
pub const EPOCH_PERIOD: u32 = 1024;

/// Default arena reservation (GiB) *(hz3: 64)*; `HAKOZUNA_ARENA_GB` overrides.
pub const ARENA_GB_DEFAULT: usize = 64;
/// Segment size: the unit a heap takes from the arena *(hz3 scale: 1 MiB)*.
pub const SEGMENT_SHIFT: u32 = 20;
/// Fresh segments made readable and writable per `mprotect` of the arena.
pub const COMMIT_SEGMENTS: usize = 64;
/// Page size the tag table and page runs are counted in.
pub const PAGE_SHIFT: u32 = 12;

/// Bytes of free runs a heap keeps per medium bin in its central list; the surplus goes back
/// to the segments, and runs idle for a decay interval go back too. Remote frees arrive in
/// bursts (a descheduled owner's whole backlog at once), and a central that could not hold a
/// burst sent adopted runs back to owners that were not running: mt-remote T=32 16–32768
/// used 3.4 GB at 1 MiB, 1.5 GB at 16 MiB (docs/ab.md). With [`MEDIUM_POOL`], while other
/// heaps take the class from the pool, runs past one bin limit are parked there first
/// (`heap::medium`, `park_own_surplus`).
pub const MEDIUM_CENTRAL_BYTES: usize = 16 << 20;
/// Bytes of adopted runs a medium or arena-large thread bin holds while its thread frees the
/// class without allocating it (a queue's consumer): the runs go home in small batches
/// instead of a bin limit's worth per class and thread.
pub const MEDIUM_FREER_BYTES: usize = 32 << 10;
/// Medium bin limits (classes up to 64 KiB), in default limits, while the thread's heap is the
/// only one owned (set at each refill of the class): one thread's free runs of a class then
/// wait in its bin instead of crossing to the heap's central list, whose refills walked runs
/// shed long before (random-mixed 16–32768, docs/ab.md "Medium bins of the only heap"). 1
/// keeps the default limits.
pub const MEDIUM_ALONE_BINS: u32 = 4;
/// A heap about to take a new segment first gives its medium central runs back to their
/// segments when they hold more than this (`OwnedHeap::reclaim_runs`; at 1 MiB
/// random-mixed 16–32768 re-carved and fragmented: 6.0 → 9.2 MiB peak).
pub const MEDIUM_RECLAIM_MIN: usize = 2 << 20;
/// Bytes of medium runs a heap keeps, all classes together, when its thread exits (the next
/// owner's warm start; per class, 32 exited threads kept 770 MiB, issue 19).
pub const MEDIUM_RETIRE_BYTES: usize = 1 << 20;
/// Small classes above this size have their central lists parked in the shared pool at a warm
/// thread exit (`heap::central`, `park_for_exit`): sparse classes, where each heap otherwise
/// keeps the most any of its owners needed. The 16–256-byte classes are dense (a heap's list
/// is close to what a thread needs, and longer than a chain, so it would be walked): parking
/// them too lowered no peak (docs/ab.md).
pub const EXIT_PARK_MIN_SIZE: usize = 256;
/// Page runs at least this long are placed by best fit among the heap's segments, shorter
/// ones first fit (`heap/segments.rs`).
pub const BEST_FIT_PAGES: usize = 16;
/// Most pages a small class reserves at once for carving: a class that keeps taking runs
/// takes 1, 2, 4 … of its runs side by side (up to this many pages, 64 KiB), and carves them in
/// address order, so what it hands out runs on across page boundaries instead of jumping to
/// wherever the next first-fit page lies between other classes' pages (`heap/refill.rs`,
/// docs/ab.md "Python dict/JSON: small runs side by side"). 1 reserves single runs.
pub const SMALL_GROUP_PAGES: usize = 16;
/// Released heaps one pass of released-heap decay may decay (bounded work per slow path).
pub const RELEASED_DECAY_MAX: u32 = 8;
/// Released heaps a medium run probes for resident free pages when its own heap has none
/// (`registry::lend_run`, `OwnedHeap::carve_run`), from the longest released: bounded so that
/// a process with many released heaps and no free pages pays a few failed probes per run that
/// touches new pages.
pub const LEND_PROBES: usize = 8;
/// Segments a heap may take from the arena during one owner's tenure and still be handed
/// back warm at thread exit; a heap that took more (a thread that went through a burst) is
/// given back at exit as `malloc_trim` gives back a heap, and stays "eager" while later exits
/// find more to give back (`heap::registry::trim_eager`). 32 MiB: a thread-churn thread of 4 MiB takes
/// none to a few (issue 19, docs/ab.md).
pub const EXIT_TRIM_SEGMENTS: u32 = 32;
/// A burst heap's trim at thread exit and in the eager passes purges only free stretches of at
/// least this many pages in segments that still hold runs (a segment left empty is purged
/// whole); shorter ones wait for decay (docs/ab.md).
pub const EXIT_PURGE_MIN_PAGES: usize = 16;
/// Eager heaps the registry keeps track of at once; each thread exit re-trims them (bounded
/// work per exit), the oldest giving its place to a newer one.
pub const EAGER_MAX: usize = 8;
/// Resident (given back, not yet purged) segments the arena's pool holds at most, or a
/// [`POOL_RESIDENT_SHARE`]th of the segments heaps hold if more: past it the oldest are purged
/// at once ([`POOL_PURGE_PER_GIVE_BACK`] at a time) instead of at the pool's next decay pass
/// (design.md §10, "Bounds").
pub const POOL_RESIDENT_SEGMENTS: usize = 64;
/// See [`POOL_RESIDENT_SEGMENTS`].
pub const POOL_RESIDENT_SHARE: usize = 4;
/// Resident segments one give-back past the cap purges at most (oldest first): the give-back
/// runs inside a `free`, which purged a quarter of the cap at once before (16 MiB or more, a
/// latency spike); what is left goes at the next give-backs or the pool's decay.
pub const POOL_PURGE_PER_GIVE_BACK: usize = 8;
/// Resident segments the arena's pool keeps warm when a burst is given back at thread exit;
/// the rest are purged at once rather than an interval later.
pub const EXIT_POOL_WARM_SEGMENTS: usize = 2;

/// Bytes the large cache (all shards together) may always hold; it may hold more while large
/// blocks are in use: see the next two.
pub const LARGE_CACHE_BYTES: usize = 128 << 20;
/// The large cache may hold up to `NUM / DEN` of the peak of live large bytes over the last one
/// to two decay intervals (docs/results/large-blocks.md).
pub const LARGE_CACHE_PEAK_NUM: usize = 1;
pub const LARGE_CACHE_PEAK_DEN: usize = 1;
/// Blocks above this size are never cached.
pub const LARGE_CACHE_MAX_BLOCK: usize = 32 << 20;
/// Default decay (ms): a cached large block older than this is unmapped, and arena pages and
/// medium runs unused this long are given back; `HAKOZUNA_DECAY_MS`.
pub const DECAY_MS_DEFAULT: u64 = 1000;
