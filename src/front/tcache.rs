//! The thread cache (design.md §5): per-bin LIFO lists reached through initial-exec TLS, the
//! remote buffer (ring or bank by lane), and the slow paths that refill, overflow, flush and
//! retire them. The malloc/free fast paths themselves are in `alloc`.

use crate::config::{
    self, ADOPT_CENTRAL_MAX, EPOCH_PERIOD, MEDIUM_ALONE_BINS, RING_FULL_BUDGET, RING_MISS_BUDGET,
};
use crate::ds::bin_set::BinSet;
use crate::ds::list::{Chain, LocalList};
use crate::ds::order;
use crate::ds::page_set::PageSet;
use crate::front::bin::Bin;
use crate::front::interleave::Interleave;
use crate::heap::send::{send, send_one};
use crate::heap::{registry, Heap, OwnedHeap};
use crate::page::size_class::{self as sc, NUM_BINS, SMALL_BINS};
use crate::page::{arena, page_tag};
use crate::remote::{Push, RemoteBuf, Sink};
use crate::stats::{Counters, Ev, GLOBAL};
use crate::sys::{meta, os};
use core::ptr::null_mut;
use core::sync::atomic::{AtomicPtr, Ordering::Relaxed};

pub const UNINIT: u32 = 0;
pub const ACTIVE: u32 = 1;
pub const DEAD: u32 = 2;
pub const BUSY: u32 = 3;

/// All-zero is the valid "uninitialised" state (`tls::EMPTY`). A thread's own cache lives in
/// metadata memory and goes with its heap: `lifecycle` keeps one per heap id, so the next
/// thread to claim a released heap reuses the cache its last owner retired.
#[repr(C, align(64))]
pub struct ThreadCache {
    /// Where a zero page tag points (`page_tag::slot`): a bin that takes no tag and is never
    /// used otherwise.
    guard: Bin,
    pub bins: [Bin; NUM_BINS],
    /// `page_tag::owner_base` of the owned heap; 0 when none, so no tag matches.
    pub owner_base: u32,
    /// `small-adopt`: how many bins from [`ADOPT_MIN_BIN`] on the free fast path adopts
    /// (their `key` and `accept` take every heap's tags): [`ADOPTING`] (the rest of the small
    /// bins), or 0 when the cache is not ACTIVE (the all-zero start included) or an
    /// overflowing bin just sent adopted objects home (a pure freer of the class, such as a
    /// queue's consumer). Set again at the next refill. Changed only by `set_adopt`.
    adopt_range: u32,
    /// Refills since activation, counted up to [`config::ADOPT_WARMUP`].
    refills: u32,
    pub state: u32,
    /// The shared fallback cache (`front::fallback`, set after `start`): its heap is no
    /// thread's own and not counted as owned, so its medium bins keep their default limits
    /// (`refill`; `MEDIUM_ALONE_BINS` is for a thread whose heap is the only one owned).
    pub(super) fallback: bool,
    /// The owner's handle on this thread's heap: `Some` while ACTIVE, and while BUSY inside
    /// `retire` until the handle is taken.
    heap: Option<OwnedHeap>,
    slow_calls: u32,
    /// Allocator-dense running since this thread last yielded its CPU (`interleave`).
    interleave: Interleave,
    /// [`registry::small_runs_taken`] at this thread's last look at its share
    /// (`share_surplus`).
    runs_seen: u32,
    /// Where `share_surplus` starts on the bins next.
    share_cursor: u16,
    /// Bins this thread refilled in the current epoch and in the previous one: the classes it
    /// allocates from its heap. Adopted runs are kept only for these, and the others' bins are
    /// trimmed at each epoch.
    demand: Bins,
    demand_prev: Bins,
    /// Small bins whose round trip outgrew the growth budget while they grew (`at_rest`): they
    /// went back to their default limit and do not grow again until the class goes idle (an
    /// epoch finds it not refilled for two epochs). Growing them only to shed most of a grown
    /// bin each round walked every object it shed (`leak-churn`, docs/ab.md).
    outgrown: Bins,
    /// Objects each small bin received from refills since its last overflow in this epoch
    /// (saturating). An overflow after refills of at least two bin limits is a round trip (the
    /// thread allocates more than its bin holds, then frees it), and the bin's limit grows
    /// instead (`overflow`).
    refilled: [u16; SMALL_BINS],
    /// Bytes the bins' limits have grown by beyond their defaults, together; never more than
    /// [`config::BIN_GROW_BUDGET`] (`grow` admits a bin only with a class size of budget
    /// left, `extend` adds at most what is left, and `shrink_to_default` gives it back), which
    /// `extend`'s subtraction relies on.
    grown: usize,
    /// Scratch table for relinking a bin at rest in address order (`ds::order`), from metadata
    /// memory at the first use; null before. Goes with the cache.
    order: *mut order::Scratch,
    /// Rests of each small bin since it was last relinked (`at_rest`), up to its period:
    /// [`REST_PERIOD`] shifted left by its `rest_shift`.
    rests: [u8; SMALL_BINS],
    /// Per small bin, how many times in a row a relink found the list mostly in order (at
    /// most [`REST_BACKOFF_MAX`]): a bin swung by fewer objects than it holds keeps the
    /// order of its deep part, and relinking all of it each time would cost far more than
    /// the swing.
    rest_shift: [u8; SMALL_BINS],
    /// Classes whose round trips are larger than the bins (`by_page`): their bins keep their
    /// default limits and shed into `pages`, from which their refills take page by page.
    by_page: StepBins,
    /// Per class up to `SMALL_MAX`, the most objects of it seen free in the heap's central list
    /// at a refill or held in `pages` since the last epoch (saturating): at an epoch a class
    /// below [`BY_PAGE_MIN`] stops being held by page.
    by_page_peak: [u16; sc::STEP_BINS],
    /// Free objects of the `by_page` classes, filed by page; from metadata memory at the first
    /// use, null before. Goes with the cache.
    pages: *mut PageSet<{ sc::STEP_BINS }>,
    remote: RemoteBuf,
}

// A page tag's bin field is the offset of its bin in the cache; a zero tag's is the guard's.
const _: () = assert!(core::mem::offset_of!(ThreadCache, guard) == 0);
const _: () = assert!(
    core::mem::offset_of!(ThreadCache, bins) == page_tag::field(0) as usize
        && core::mem::size_of::<Bin>() == (page_tag::field(1) - page_tag::field(0)) as usize
);

/// Sends flushed chains to their owners, counting in the sender's heap.
struct ToOwners<'a>(&'a Counters);

impl Sink for ToOwners<'_> {
    fn send(&mut self, dst: u32, bin: usize, chain: Chain) {
        // SAFETY: the ring/bank only holds free objects tagged (dst, bin).
        unsafe { send(dst, bin, chain, self.0, false) }
    }
}

/// Whether remote frees of the bin page tag `tag` names wait in the ring/bank: the
/// 16-byte-step classes, and the medium ones when `medium-adopt` does not keep them; never
/// for a zero tag. The carved classes above 2 KiB are sent at once
/// (`size_class::sent_unbuffered`), and with neither buffer on every free is. With
/// `medium-adopt` one compare of the tag's bin field (a byte offset, `page_tag::slot`), with
/// no shift to a bin number.
#[inline(always)]
fn buffered(tag: u32) -> bool {
    (config::FAST_LANE || config::REMOTE_RING)
        && if config::MEDIUM_ADOPT {
            // `slot` is `(bin + 1) << BIN_SHIFT`, or 0 for a zero tag, which wraps.
            page_tag::slot(tag).wrapping_sub(page_tag::field(0) as usize)
                < sc::STEP_BINS << page_tag::BIN_SHIFT
        } else {
            let bin = page_tag::bin_of(tag);
            bin < NUM_BINS && !sc::sent_unbuffered(bin)
        }
}

impl ThreadCache {
    /// The bin that page tag `tag` names in cache `tc`: the bin of the tag's class, or the
    /// guard for a zero tag. One add, no bounds check (`page_tag::slot`).
    ///
    /// # Safety
    /// `tc` points to a live cache; `tag` was read from the page-tag table (zero or made by
    /// `page_tag::encode`).
    #[inline(always)]
    pub unsafe fn slot(tc: *mut ThreadCache, tag: u32) -> *mut Bin {
        // SAFETY: a tag from the table is zero or made by `encode`, so its slot is the offset
        // of the guard or of one of `bins` (the asserts above), inside the live cache.
        unsafe { tc.cast::<u8>().add(page_tag::slot(tag)).cast::<Bin>() }
    }

    /// The bin of cache `tc` that `size_class::bin16_of` names (16 × its number), at the
    /// offset its page tags name: `bins` start one bin in and a bin is 32 bytes (64 hardened),
    /// so the offset is `32 + 2 × bin16` (`64 + 4 × bin16`: an addressing mode's displacement
    /// and scale, no instruction).
    ///
    /// # Safety
    /// `tc` points to a live cache and `bin16 < 16 × NUM_BINS`.
    #[inline(always)]
    pub unsafe fn bin16(tc: *mut ThreadCache, bin16: usize) -> *mut Bin {
        // SAFETY: `bin16 / 16 < NUM_BINS` (caller contract), so the offset is that of
        // `bins[bin16 / 16]` (the asserts above), inside the live cache.
        unsafe {
            tc.cast::<u8>()
                .add((1 << page_tag::BIN_SHIFT) + (bin16 << (page_tag::BIN_SHIFT - 4)))
                .cast::<Bin>()
        }
    }

    /// The number of bin `b` of cache `tc` (from the slot's offset, which the free fast path
    /// holds in a register: the tag need not stay live for it).
    ///
    /// # Safety
    /// `b` is one of `tc`'s `bins`.
    #[inline(always)]
    pub unsafe fn index(tc: *mut ThreadCache, b: *mut Bin) -> usize {
        ((b as usize - tc as usize) >> page_tag::BIN_SHIFT) - 1
    }

    /// Whether page tag `tag` names a class of this cache's own heap (false for a zero tag and
    /// while the cache owns no heap).
    #[inline(always)]
    pub fn owns(&self, tag: u32) -> bool {
        page_tag::mine(tag, self.owner_base) < NUM_BINS
    }

    /// The owner's handle of a cache that holds one.
    ///
    /// # Safety
    /// `heap` is `Some`: the cache is ACTIVE, or retiring and the handle not yet taken.
    #[inline(always)]
    unsafe fn owned(&mut self) -> &mut OwnedHeap {
        // SAFETY: `heap` is `Some` (caller contract).
        unsafe { self.heap.as_mut().unwrap_unchecked() }
    }

    /// The heap of a cache that holds one, for its counters and shared part; `'static`, so it
    /// does not keep the cache borrowed.
    ///
    /// # Safety
    /// `heap` is `Some`: the cache is ACTIVE, or retiring and the handle not yet taken.
    #[inline(always)]
    unsafe fn heap(&self) -> &'static Heap {
        // SAFETY: `heap` is `Some` (caller contract).
        unsafe { self.heap.as_ref().unwrap_unchecked() }.heap()
    }

    /// Makes a fresh (all-zero) or retired cache ACTIVE with the heap `owned`, empty bins at
    /// their limits, no demand history and no adoption until its first refills
    /// (`lifecycle::activate` does the rest). A retired cache's remote buffer is empty
    /// (`retire` flushed it), which is all the buffer needs to be reused.
    pub(super) fn start(&mut self, owned: OwnedHeap) {
        debug_assert!(self.state == UNINIT || self.state == DEAD);
        debug_assert!(self.heap.is_none() && self.remote_is_empty());
        let base = page_tag::owner_base(owned.heap().id);
        self.guard = Bin::CLOSED;
        for (i, b) in self.bins.iter_mut().enumerate() {
            *b = Bin::empty(sc::bin_limit(i));
            b.take_own(base, i);
            if config::SECURE {
                b.set_start(super::hardened::start_test(i));
            }
        }
        self.owner_base = base;
        self.heap = Some(owned);
        self.slow_calls = 0;
        self.demand = Bins::EMPTY;
        self.demand_prev = Bins::EMPTY;
        self.outgrown = Bins::EMPTY;
        self.refilled = [0; SMALL_BINS];
        self.grown = 0;
        self.rests = [0; SMALL_BINS];
        self.rest_shift = [0; SMALL_BINS];
        self.by_page = StepBins::EMPTY;
        self.by_page_peak = [0; sc::STEP_BINS];
        self.adopt_range = 0;
        self.refills = 0;
        self.fallback = false;
        self.state = ACTIVE;
    }

    /// Refills an empty bin and returns one object, or null when memory is exhausted.
    ///
    /// # Safety
    /// ACTIVE, and `bin` is empty.
    pub unsafe fn refill(&mut self, bin: usize) -> *mut u8 {
        // Before the heap is entered: a thread that yields holds no lock meanwhile (a decay
        // pass or a trim may wait for this heap's `busy` lock).
        if config::INTERLEAVE
            && self.interleave.due(os::cycles())
            && registry::owned_heaps() > os::cpus()
        {
            os::yield_now();
            // SAFETY: ACTIVE (caller contract).
            unsafe { self.heap().stats.add(Ev::Yields, 1) };
        }
        // SAFETY: ACTIVE (caller contract): the cache holds its heap.
        unsafe { self.owned() }.enter();
        // SAFETY: ACTIVE (caller contract), and the heap entered just above.
        unsafe { self.tick() };
        self.demand.insert(bin);
        if self.refills < config::ADOPT_WARMUP {
            self.refills += 1;
        } else {
            self.set_adopt(ADOPTING);
        }
        // hz3 flushes at the slow-path entry so owners get their objects back even in
        // workloads that never carve.
        if !self.remote_is_empty() {
            // SAFETY: ACTIVE (caller contract).
            unsafe { self.flush_remote(RING_MISS_BUDGET) };
        }
        if !sc::is_small(bin) {
            // A freer's lowered limit (`shed`) ends with its first refill; in the only heap
            // owned a medium bin holds `MEDIUM_ALONE_BINS` limits (not the fallback cache's,
            // whose heap `others_own_heaps` does not count).
            let d = sc::bin_limit(bin);
            let alone = sc::bin_size(bin) <= sc::MEDIUM_MAX
                && !self.fallback
                && !registry::others_own_heaps();
            self.bins[bin].set_limit(if alone { MEDIUM_ALONE_BINS * d } else { d });
        } else {
            // A small limit that overflows without refills lowered (`overflow`) doubles back
            // towards its default with each refill: the thread allocates the class again.
            let (b, d) = (&mut self.bins[bin], sc::bin_limit(bin));
            if b.limit() < d {
                b.set_limit((2 * b.limit()).min(d));
            }
        }
        let limit = self.bins[bin].limit();
        if self.is_by_page(bin) {
            // SAFETY: `pages` is set while a class is held by page, and only this thread
            // uses it; what it holds is ours (`shed`).
            let got = unsafe { self.take_by_page(bin, limit) };
            if got.count > 0 {
                // SAFETY: ACTIVE (caller contract).
                unsafe { self.owned() }.leave();
                // SAFETY: `got` is a well-formed list of free objects of `bin` now ours, and
                // the bin is empty (caller contract).
                return unsafe { self.fill_from(bin, got) };
            }
        }
        // SAFETY: ACTIVE (caller contract).
        let want = unsafe { self.small_want(bin, limit) };
        // SAFETY: ACTIVE (caller contract).
        let h = unsafe { self.owned() };
        let got = if sc::is_small(bin) {
            let g = h.refill_small_shared(bin, want, limit);
            if g.count == 0 {
                h.carve_small(bin, want)
            } else {
                g
            }
        } else {
            // Medium: half a bin from the central list, a refill batch of new runs.
            h.refill_medium(
                bin,
                (limit / 2).max(sc::refill_batch(bin)),
                sc::refill_batch(bin),
            )
        };
        h.leave();
        if let Some(r) = self.refilled.get_mut(bin) {
            *r = r.saturating_add(got.count.min(u16::MAX as u32) as u16);
        }
        // SAFETY: `got` is a well-formed list of free objects of `bin` now ours, and the bin is
        // empty (caller contract).
        unsafe { self.fill_from(bin, got) }
    }

    /// # Safety
    /// `got` is a well-formed list of `got.count` free objects of `bin` that nothing else
    /// references, and bin `bin` is empty.
    unsafe fn fill_from(&mut self, bin: usize, got: LocalList) -> *mut u8 {
        let b = &mut self.bins[bin];
        b.head = got.head;
        b.set_count(got.count);
        // SAFETY: the bin was empty (caller contract) and now holds exactly the list `got`.
        unsafe { Bin::pop(b, bin) }
    }

    /// While other threads own heaps and some thread took a new small run since this thread
    /// last looked: when this thread's bins and its heap's central lists hold more small free
    /// bytes than its share of [`config::PRIVATE_BUDGET`], the central lists that fit one
    /// chain, then whole bins (starting one bin further at each look, so no class always goes
    /// first), go to the shared pool until half the share is left, where every heap's refill
    /// finds them before it carves.
    ///
    /// Why: per class limits bound a thread's stock by the classes it touches, not by the
    /// threads; at T=32 on 128 classes the bins and central lists held 44–62 MiB at the peak
    /// while other threads carved the same classes anew (docs/ab.md). gperftools bounds its
    /// thread caches the same way (32 MiB over all threads). Whole bins leave without a walk
    /// (halving them walked half of every bin, cold objects); the look waits for a new run so
    /// that a program whose memory does not grow (a producer and a consumer) pays one load.
    ///
    /// # Safety
    /// ACTIVE, and the heap entered.
    unsafe fn share_surplus(&mut self) {
        let runs = registry::small_runs_taken();
        if !config::SHARED_POOL || runs == self.runs_seen {
            return;
        }
        self.runs_seen = runs;
        let heaps = registry::owned_heaps();
        if heaps < 2 {
            return;
        }
        let share = (config::PRIVATE_BUDGET / heaps).max(config::PRIVATE_MIN);
        let in_bins: usize = self.bins[..SMALL_BINS]
            .iter()
            .zip(sc::SMALL_SIZES)
            .map(|(b, size)| b.count() as usize * size as usize)
            .sum();
        // SAFETY: ACTIVE (caller contract).
        let h = unsafe { self.owned() };
        let in_central = h.small_central_bytes();
        if in_bins + in_central <= share {
            return;
        }
        let left = in_bins + in_central - h.park_centrals();
        let mut over = left.saturating_sub(share / 2);
        let start = self.share_cursor as usize;
        self.share_cursor = ((start + 1) % SMALL_BINS) as u16;
        for i in 0..SMALL_BINS {
            if over == 0 {
                break;
            }
            let bin = (start + i) % SMALL_BINS;
            // A bin held by page files its objects by page, one at rest keeps a pointer into
            // its list, and a grown bin may hold more than a pool chain: all three keep theirs,
            // as does a bin of fewer than 8 objects.
            if self.is_by_page(bin) {
                continue;
            }
            let b = &mut self.bins[bin];
            let n = b.count();
            if n < 8 || !b.rest.is_null() || b.limit() > sc::bin_limit(bin) {
                continue;
            }
            let c = Chain {
                head: b.head,
                tail: core::ptr::null_mut(),
                n,
            };
            b.head = core::ptr::null_mut();
            b.set_count(0);
            // SAFETY: ACTIVE and entered (caller contract); `c` is the whole bin, detached
            // from it: free objects of small `bin` with an exact count, possibly more than a
            // bin limit (a limit lowered to the default keeps the count until the next push
            // sheds), which `park_surplus` leaves to `put_central` to cut; central accepts
            // them as a shed (ours, adopted, or taken from the pool or a stash).
            unsafe { self.owned().park_surplus(bin, c) };
            over = over.saturating_sub(n as usize * sc::bin_size(bin));
        }
    }

    /// Counts a slow-path call; every [`EPOCH_PERIOD`] calls, an epoch (design.md §10), and
    /// every [`config::PRIVATE_CHECK_PERIOD`] a look at the thread's share
    /// ([`share_surplus`](Self::share_surplus)).
    ///
    /// # Safety
    /// ACTIVE, and the heap entered.
    unsafe fn tick(&mut self) {
        self.slow_calls += 1;
        if self.slow_calls.is_multiple_of(config::PRIVATE_CHECK_PERIOD) {
            // SAFETY: ACTIVE, and the heap entered (caller contract).
            unsafe { self.share_surplus() };
        }
        if self.slow_calls >= EPOCH_PERIOD {
            self.slow_calls = 0;
            // SAFETY: ACTIVE (caller contract), for each call.
            unsafe {
                self.heap().stats.add(Ev::Epochs, 1);
                self.refilled = [0; SMALL_BINS];
                self.end_small_by_page();
                self.trim_idle_bins();
                self.flush_remote(u32::MAX);
                let h = self.owned();
                h.drain_queues();
                h.decay_if_due();
                registry::decay_released();
            }
        } else if self.slow_calls.is_multiple_of(IDLE_CHECK_PERIOD) || registry::decay_pending() {
            registry::decay_released();
        }
    }

    /// Epoch: a class held by page whose central list and held objects stayed below
    /// [`BY_PAGE_MIN`] since the last epoch goes back to the central list.
    ///
    /// # Safety
    /// ACTIVE.
    unsafe fn end_small_by_page(&mut self) {
        if self.by_page.is_empty() {
            return;
        }
        for bin in 0..sc::STEP_BINS {
            if self.is_by_page(bin) && u32::from(self.by_page_peak[bin]) < BY_PAGE_MIN {
                // SAFETY: ACTIVE (caller contract).
                unsafe { self.unhold_by_page(Some(bin)) };
            }
        }
        self.by_page_peak = [0; sc::STEP_BINS];
    }

    /// Epoch (design.md §10, "trim bins to targets"): a bin this thread has not refilled for two
    /// epochs keeps a quarter of its limit; the rest goes to the heap's central list (adopted
    /// medium runs go home), where decay can return it. Then the epochs of demand rotate.
    ///
    /// # Safety
    /// ACTIVE.
    unsafe fn trim_idle_bins(&mut self) {
        for bin in 0..NUM_BINS {
            if self.in_demand(bin) {
                continue;
            }
            self.outgrown.remove(bin);
            self.shrink_to_default(bin);
            let target = self.bins[bin].limit() / 4;
            if self.bins[bin].count() <= target {
                continue;
            }
            // SAFETY: ACTIVE (caller contract); the bin holds more than `target` objects.
            unsafe {
                self.shed(bin, target);
                self.heap().stats.add(Ev::BinTrims, 1);
            }
        }
        self.demand_prev = self.demand;
        self.demand = Bins::EMPTY;
    }

    /// A free pushed bin `bin` past its limit. If refills brought the bin at least two limits'
    /// worth since its last overflow in this epoch and its front holds only this heap's objects
    /// (the thread allocates more than the bin holds, then frees it: an allocate-then-free
    /// loop, a tree built and freed), the bin grows to hold the whole round trip
    /// ([`grow`](Self::grow)) and keeps everything, so the next round runs on the fast paths
    /// alone (a grown bin's overflows go to [`at_rest`](Self::at_rest)); an idle bin's limit
    /// goes back to the default at the next epoch. Otherwise the bin sheds
    /// ([`shed`](Self::shed)): a small class keeps its [`SMALL_OVERFLOW_KEEP`] most recent
    /// frees, a medium class its older half.
    ///
    /// # Safety
    /// ACTIVE; `bin < NUM_BINS`.
    #[cold]
    pub unsafe fn overflow(&mut self, bin: usize) {
        // SAFETY: caller contract. Stated to the compiler so the bins' indexing below has no
        // bounds-check panic path: a panic inside `free` must not unwind into C (the C ABI
        // libraries abort on panic, but the crate as a Rust global allocator may not).
        unsafe { core::hint::assert_unchecked(bin < NUM_BINS) };
        let by_page = self.is_by_page(bin);
        // SAFETY: ACTIVE (caller contract).
        if !by_page && !self.bins[bin].rest.is_null() && unsafe { self.at_rest(bin) } {
            return;
        }
        if by_page {
            // Its round trips are larger than the bins could grow to: the bin stays at its
            // default limit and sheds into `pages`, which hands the objects out page by page.
            self.refilled[bin] = 0;
            let d = sc::bin_limit(bin);
            if self.bins[bin].limit() != BY_PAGE_BINS * d {
                self.shrink_to_default(bin);
                // SAFETY: ACTIVE (caller contract).
                unsafe { self.extend(bin, (BY_PAGE_BINS - 1) * d) };
                if self.bins[bin].room() >= 0 {
                    return;
                }
            }
        } else if let Some(r) = self.refilled.get_mut(bin) {
            let r = u32::from(core::mem::take(r));
            let (limit, default) = (self.bins[bin].limit(), sc::bin_limit(bin));
            // SAFETY: ACTIVE (caller contract).
            if r >= 2 * limit
                && limit >= default
                && unsafe { self.front_is_own(bin, OWN_SAMPLE) }
                && unsafe { self.grow(bin) }
            {
                return;
            }
            // SAFETY: ACTIVE (caller contract).
            if r == 0
                && limit <= default
                && registry::others_own_heaps()
                && !unsafe { self.front_is_own(bin, OWN_SAMPLE) }
            {
                // Two overflows with no refill between, adopted objects among the last freed:
                // this thread frees more of the class than it allocates because other threads'
                // objects come to it (`small-adopt`), and what the bin keeps would wait for
                // mallocs that do not come while those threads carve. Halve the limit, down to
                // one refill batch; refills double it back. A thread freeing its own blocks
                // (the free phase of a round, leak-churn) keeps its limit: it will allocate them
                // again, and lowered limits there cost 28 % more instructions (docs/ab.md).
                self.bins[bin].set_limit((limit / 2).max(sc::refill_batch(bin)));
            }
        } else if self.bins[bin].limit() > sc::bin_limit(bin) && registry::others_own_heaps() {
            // A medium bin that took `MEDIUM_ALONE_BINS` limits while its heap was the only
            // one owned: other threads own heaps now, and it sheds to its default limit.
            self.bins[bin].set_limit(sc::bin_limit(bin));
        }
        // SAFETY: ACTIVE (caller contract); an overflowing bin holds more than half its limit.
        unsafe {
            self.owned().enter();
            let limit = self.bins[bin].limit();
            // A class held by page sheds only its most recent frees, still in L1 cache, and
            // keeps the rest (the bin filing them walks each shed object once). Another small
            // class keeps only its most recent frees, walked to find the cut, and sheds the
            // older rest without a walk (`shed_small`).
            let keep = if by_page {
                limit - BY_PAGE_SHED.min(limit / 2)
            } else if sc::is_small(bin) {
                SMALL_OVERFLOW_KEEP.min(limit / 2)
            } else {
                limit / 2
            };
            self.shed(bin, keep);
            self.owned().leave();
            self.heap().stats.add(Ev::BinOverflow, 1);
        }
    }

    /// Lets bin `bin` grow after a round trip: from now on its limit follows the most objects
    /// it holds, less one ([`at_rest`](Self::at_rest)), up to [`sc::bin_limit_max`] and as far
    /// as the thread's growth budget allows. False when it cannot grow.
    ///
    /// # Safety
    /// ACTIVE.
    unsafe fn grow(&mut self, bin: usize) -> bool {
        let b = &self.bins[bin];
        if self.is_outgrown(bin)
            || b.limit() >= sc::bin_limit_max(bin)
            || self.grown + sc::bin_size(bin) > config::BIN_GROW_BUDGET
        {
            return false;
        }
        self.bins[bin].rest = Bin::ARMED;
        self.rests[bin] = 0;
        self.rest_shift[bin] = 0;
        // SAFETY: ACTIVE (caller contract).
        unsafe { self.heap() }.stats.add(Ev::BinGrows, 1);
        true
    }

    /// Raises the limit of small bin `bin` by up to `by` objects, up to
    /// [`sc::bin_limit_max`] and as far as the thread's growth budget allows. False when it
    /// cannot grow at all. Keeps `grown <= BIN_GROW_BUDGET` (see `grown`): it adds at most the
    /// budget left, in whole objects.
    ///
    /// # Safety
    /// ACTIVE.
    unsafe fn extend(&mut self, bin: usize, by: u32) -> bool {
        debug_assert!(self.grown <= config::BIN_GROW_BUDGET);
        let size = sc::bin_size(bin);
        let room = (config::BIN_GROW_BUDGET - self.grown) / size;
        let b = &mut self.bins[bin];
        let to = (b.limit() + by).min(sc::bin_limit_max(bin));
        let add = (to.saturating_sub(b.limit()) as usize).min(room) as u32;
        if add == 0 {
            return false;
        }
        b.set_limit(b.limit() + add);
        self.grown += add as usize * size;
        debug_assert!(self.grown <= config::BIN_GROW_BUDGET);
        // SAFETY: ACTIVE (caller contract).
        unsafe { self.heap() }
            .stats
            .add(Ev::BinGrowBytes, (add as usize * size) as u64);
        true
    }

    /// An overflow of a bin tracked since it grew (`rest` set), whose limit follows the most
    /// objects it held, less one: so the push that brings it back to that high, when a round
    /// trip has returned every object it handed out, overflows. Then (room −1) every
    /// [`REST_PERIOD`]-th time the bin is relinked in address order (`ds::order`) and keeps
    /// its room of −1, which the next pop clears. A push past the high (room below −1) raises
    /// the limit by one. A bin whose object [`REST_DEPTH`] deep is the one found there at the
    /// last rest only swings near its top (fewer objects than that were popped since: a rest
    /// at each push would make every free a slow call), and one shorter than that cannot
    /// tell: either stops being tracked and keeps an eighth more room. False (the caller sheds
    /// as for any bin) when the budget allows no more room.
    ///
    /// # Safety
    /// ACTIVE; `rest` of `bin` is set (only `grow` sets it, for small bins).
    unsafe fn at_rest(&mut self, bin: usize) -> bool {
        // SAFETY: `rest` is set (caller contract) only by `grow`, which `overflow` calls only
        // for a bin it found in `refilled` (`SMALL_BINS` long). Stated so the indexing below
        // has no bounds-check panic path, as in `overflow`.
        unsafe { core::hint::assert_unchecked(bin < SMALL_BINS) };
        if self.bins[bin].room() < -1 {
            // SAFETY: ACTIVE (caller contract).
            if unsafe { self.extend(bin, 1) } {
                return true;
            }
            // Still growing, and no budget left: the round trip does not fit.
            self.outgrown.insert(bin);
            self.shrink_to_default(bin);
            return false;
        }
        let b = &self.bins[bin];
        let size = sc::bin_size(bin);
        let mut deep = b.head;
        // Neighbours in the list that are neighbours in memory.
        let mut adjacent = 0;
        for _ in 0..REST_DEPTH {
            if deep.is_null() {
                break;
            }
            // SAFETY: `deep` is an object of the bin, a well-formed list of free objects.
            let n = unsafe { crate::ds::list::next(deep) };
            adjacent += u32::from((n as usize).abs_diff(deep as usize) == size);
            deep = n;
        }
        if deep.is_null() || deep == b.rest {
            self.bins[bin].rest = null_mut();
            let by = self.bins[bin].count() / 8;
            // SAFETY: ACTIVE (caller contract).
            return unsafe { self.extend(bin, by) } && self.bins[bin].room() >= 0;
        }
        // Saturating: a bin in order is never relinked, and rests at every round trip.
        self.rests[bin] = self.rests[bin].saturating_add(1);
        if self.rests[bin] >= REST_PERIOD << self.rest_shift[bin] && adjacent < REST_ORDERED {
            self.rests[bin] = 0;
            // SAFETY: ACTIVE (caller contract).
            if unsafe { self.relink(bin) } {
                deep = self.bins[bin].head;
                for _ in 0..REST_DEPTH {
                    // SAFETY: the bin holds more than REST_DEPTH objects (`deep` was found
                    // that deep before it was relinked).
                    deep = unsafe { crate::ds::list::next(deep) };
                }
            }
        }
        self.bins[bin].rest = deep;
        true
    }

    /// Relinks bin `bin` in address order; false (the bin unchanged) when there is no scratch
    /// memory or the list spans too many pages.
    ///
    /// # Safety
    /// ACTIVE.
    unsafe fn relink(&mut self, bin: usize) -> bool {
        if self.order.is_null() {
            match meta::alloc(
                core::mem::size_of::<order::Scratch>(),
                core::mem::align_of::<order::Scratch>(),
            ) {
                Some(p) => self.order = p.cast(),
                None => return false,
            }
        }
        let size = sc::bin_size(bin);
        // SAFETY: `order` is this cache's zeroed (or left empty) scratch table, used only
        // here by its owner thread; the bin is a well-formed list of distinct free objects of
        // its class (16-byte aligned).
        let Some((head, ordered)) =
            (unsafe { order::sort(&mut *self.order, self.bins[bin].head, size) })
        else {
            // Too many pages (or no scratch memory): it will not fit next time either, so
            // wait as long as for a bin found in order.
            self.rest_shift[bin] = (self.rest_shift[bin] + 1).min(REST_BACKOFF_MAX);
            return false;
        };
        self.bins[bin].head = head;
        // Found mostly in order, the relink was little use: wait twice as long for the next.
        self.rest_shift[bin] = if ordered > 128 {
            (self.rest_shift[bin] + 1).min(REST_BACKOFF_MAX)
        } else {
            0
        };
        // SAFETY: ACTIVE (caller contract).
        unsafe { self.heap() }.stats.add(Ev::BinRelinks, 1);
        true
    }

    /// Whether the `n` most recently freed objects of bin `bin` are all this heap's: a round
    /// trip of the thread's own blocks ([`OWN_SAMPLE`] of them), not a bin swung by adopted
    /// remote frees (which `small-adopt` keeps in the bin, and which made mt-remote's bins
    /// grow).
    ///
    /// # Safety
    /// ACTIVE.
    unsafe fn front_is_own(&self, bin: usize, n: u32) -> bool {
        let mut p = self.bins[bin].head;
        for _ in 0..n {
            if p.is_null() {
                break;
            }
            if !self.owns(arena::offset(p).map_or(0, arena::tag_at)) {
                return false;
            }
            // SAFETY: `p` is an object of the bin, a well-formed list of free objects.
            p = unsafe { crate::ds::list::next(p) };
        }
        true
    }

    /// Gives bin `bin`'s growth back to the thread's budget (a medium bin's limit in the only
    /// heap owned, `MEDIUM_ALONE_BINS`, is not taken from it).
    fn shrink_to_default(&mut self, bin: usize) {
        let b = &mut self.bins[bin];
        let d = sc::bin_limit(bin);
        b.rest = null_mut();
        if !sc::is_small(bin) {
            b.set_limit(b.limit().min(d));
        } else if b.limit() > d {
            self.grown -= (b.limit() - d) as usize * sc::bin_size(bin);
            b.set_limit(d);
        }
    }

    /// Moves all but `keep` objects of bin `bin` to the heap's central list. Adopted objects of a
    /// class this thread has not refilled lately (a queue's consumer) go home instead: kept, they
    /// would only be hoarded here. So do adopted small objects once central holds
    /// [`ADOPT_CENTRAL_MAX`] bin limits of the class.
    ///
    /// # Safety
    /// ACTIVE, and the bin holds more than `keep` objects.
    unsafe fn shed(&mut self, bin: usize, keep: u32) {
        if self.is_by_page(bin) {
            // Filed by page in the same walk that finds the cut; adopted objects among them
            // are kept as central would keep them for a class in demand.
            let (head, n) = (self.bins[bin].head, self.bins[bin].count() - keep);
            // SAFETY: the bin is a well-formed list of more than `keep` free objects of `bin`
            // (caller contract), none held by page.
            let (rest, filed) = unsafe { self.put_by_page(bin, head, n) };
            let b = &mut self.bins[bin];
            b.head = rest;
            b.set_count(b.count() - filed);
            if filed == n {
                return;
            }
        }
        if sc::is_small(bin) {
            // SAFETY: caller contract.
            unsafe { self.shed_small(bin, keep) };
        } else {
            // SAFETY: caller contract.
            unsafe { self.shed_medium(bin, keep) };
        }
    }

    /// [`shed`](Self::shed) of a small class: the bin keeps its `keep` most recent frees (its
    /// front, walked to find the cut: still in cache when `keep` is small) and the older rest
    /// leaves without a walk (its tail is not needed: the shared pool and an empty central
    /// list take a list whole), unless adopted objects must be sorted out of it.
    ///
    /// # Safety
    /// ACTIVE, the class is small, and the bin holds more than `keep` objects.
    unsafe fn shed_small(&mut self, bin: usize, keep: u32) {
        let by_page = self.is_by_page(bin);
        let b = &mut self.bins[bin];
        let cap = ADOPT_CENTRAL_MAX * b.limit();
        let mut l = LocalList {
            head: b.head,
            count: b.count(),
        };
        let mut back = if by_page {
            // What `put_by_page` did not file (adopted objects) leaves from the front, where
            // it left them.
            // SAFETY: a thread bin is a well-formed list of `count` free objects.
            let c = unsafe { l.take(l.count - keep) };
            b.head = l.head;
            LocalList {
                head: c.head,
                count: c.n,
            }
        } else {
            // SAFETY: a thread bin is a well-formed list of `count` free objects.
            let front = unsafe { l.take(keep) };
            b.head = front.head;
            l
        };
        b.set_count(keep);
        if config::SMALL_ADOPT
            && !(self.in_demand(bin)
                // SAFETY: ACTIVE (caller contract).
                && unsafe { self.owned() }.small_central_len(bin) + back.count <= cap)
        {
            let n = back.count;
            // SAFETY: `back` is detached from the bin: a well-formed list of exactly
            // `back.count` free objects of small `bin`.
            let chain = unsafe { back.take_all() };
            // SAFETY: ACTIVE (caller contract); `chain` is a detached chain of free objects
            // of small `bin`.
            let own = unsafe { self.send_foreign_small(bin, chain) };
            if own.n < n {
                // This thread adopts faster than it allocates: adopted objects went home
                // after a second pass over each. Until its next refill it keeps no more of
                // this class in central, and the fast path stops adopting.
                self.forget_demand(bin);
                self.set_adopt(0);
            }
            // SAFETY: ACTIVE (caller contract); `own` holds this heap's free objects of `bin`.
            unsafe { self.owned().put_central(bin, own) };
            return;
        }
        // SAFETY: ACTIVE (caller contract); `back` is detached from the bin and holds free
        // objects of `bin` with an exact count: ours, or adopted objects of a class in demand,
        // or other heaps' objects a refill took from the shared pool or another heap's stash,
        // all of which central accepts (`put_central`).
        unsafe { self.owned().put_small_list(bin, back) };
    }

    /// [`shed`](Self::shed) of a medium class: the front (the most recently freed runs) leaves.
    ///
    /// # Safety
    /// ACTIVE, the class is medium, and the bin holds more than `keep` objects.
    unsafe fn shed_medium(&mut self, bin: usize, keep: u32) {
        let b = &mut self.bins[bin];
        let mut l = LocalList {
            head: b.head,
            count: b.count(),
        };
        // SAFETY: a thread bin is a well-formed list of `count` free objects.
        let mut front = unsafe { l.take(l.count - keep) };
        b.head = l.head;
        b.set_count(l.count);
        if config::MEDIUM_ADOPT && !self.in_demand(bin) {
            // SAFETY: ACTIVE (caller contract); `front` is a detached chain of free runs of
            // `bin`.
            let n = front.n;
            front = unsafe { self.owned().send_foreign_home(bin, front) };
            if front.n < n {
                // This thread frees other heaps' runs of a class it does not allocate (a
                // queue's consumer): it keeps only a few until its next refill of the class
                // restores the limit.
                self.bins[bin].set_limit(sc::freer_limit(bin));
            }
        }
        // SAFETY: ACTIVE (caller contract); `front` is detached from the bin and holds free
        // runs of `bin`: ours, or adopted runs of a class in demand.
        unsafe { self.owned().put_central(bin, front) };
    }

    /// How many objects a refill of small `bin` asks the heap for: a refill batch, or a bin
    /// limit for a class held by page. Holds the class by page from now on when the heap's
    /// central list has [`BY_PAGE_MIN`] of its objects and the class's bin grew or the growth
    /// budget is spent: a round trip larger than the bins left them there.
    ///
    /// # Safety
    /// ACTIVE.
    unsafe fn small_want(&mut self, bin: usize, limit: u32) -> u32 {
        if !sc::is_small(bin) {
            return 0;
        }
        if bin < sc::STEP_BINS {
            // SAFETY: ACTIVE (caller contract).
            let central = unsafe { self.owned() }.small_central_len(bin);
            let p = &mut self.by_page_peak[bin];
            *p = (*p).max(central.min(u32::from(u16::MAX)) as u16);
            // This thread's round trips outgrew the bins: its bin grew, or outgrew the budget
            // (`outgrown`), or all the growth budget is taken. (Not a thread that just claimed
            // a heap whose central list an earlier owner filled.)
            if central >= BY_PAGE_MIN
                && !self.is_by_page(bin)
                && (self.bins[bin].limit() > sc::bin_limit(bin)
                    || self.is_outgrown(bin)
                    || self.grown + sc::bin_size(bin) > config::BIN_GROW_BUDGET)
            {
                self.by_page.insert(bin);
                // SAFETY: ACTIVE (caller contract).
                unsafe { self.heap() }.stats.add(Ev::ByPage, 1);
            }
        }
        if self.is_by_page(bin) {
            limit
        } else {
            sc::refill_batch(bin)
        }
    }

    /// Whether small bin `bin` outgrew the growth budget (`outgrown`).
    #[inline]
    fn is_outgrown(&self, bin: usize) -> bool {
        self.outgrown.contains(bin)
    }

    /// Whether small class `bin` is held by page (`by_page`).
    #[inline]
    fn is_by_page(&self, bin: usize) -> bool {
        self.by_page.contains(bin)
    }

    /// Files the first `n` objects of the list at `head`, free objects of `bin`, in `pages`
    /// (taking it at the first use); returns the rest of the list and how many it filed.
    ///
    /// # Safety
    /// `head` starts a well-formed list of at least `n` free objects of `bin` that this
    /// thread owns, none of them held in `pages`.
    unsafe fn put_by_page(&mut self, bin: usize, head: *mut u8, n: u32) -> (*mut u8, u32) {
        if self.pages.is_null() {
            match meta::alloc(
                core::mem::size_of::<PageSet<{ sc::STEP_BINS }>>(),
                core::mem::align_of::<PageSet<{ sc::STEP_BINS }>>(),
            ) {
                Some(p) => {
                    self.pages = p.cast();
                    // SAFETY: fresh zeroed metadata memory of the set's size and alignment,
                    // which all-zero makes a valid set before `init`.
                    unsafe { (*self.pages).init(sc::bin_size) };
                }
                None => return (head, 0),
            }
        }
        // SAFETY: `pages` is this cache's set, used only by its thread.
        let pages = unsafe { &mut *self.pages };
        // SAFETY: as the caller contract.
        let r = unsafe { pages.put(bin, head, n) };
        let p = &mut self.by_page_peak[bin];
        *p = (*p).max(pages.held(bin).min(u32::from(u16::MAX)) as u16);
        r
    }

    /// Takes up to `want` objects of `bin` held by page.
    ///
    /// # Safety
    /// `bin` is held by page or `pages` holds none of it.
    unsafe fn take_by_page(&mut self, bin: usize, want: u32) -> LocalList {
        if self.pages.is_null() {
            return LocalList::EMPTY;
        }
        // SAFETY: `pages` is this cache's set, used only by its thread, holding free objects
        // this cache filed.
        let got = unsafe { (*self.pages).take(bin, want) };
        if got.count > 0 {
            // SAFETY: the cache holds its heap (every caller's contract).
            unsafe { self.heap() }.stats.add(Ev::RefillByPage, 1);
        }
        got
    }

    /// Gives the objects held by page of class `only` (all classes with `None`) to the heap's
    /// central list, and ends holding them by page.
    ///
    /// # Safety
    /// ACTIVE or BUSY with the heap still held.
    unsafe fn unhold_by_page(&mut self, only: Option<usize>) {
        for bin in 0..sc::STEP_BINS {
            if only.is_some_and(|b| b != bin) || !self.is_by_page(bin) {
                continue;
            }
            self.by_page.remove(bin);
            // Its bin goes back to the default limit (and its growth to the budget).
            self.shrink_to_default(bin);
            // SAFETY: held by page until just now.
            let l = unsafe { self.take_by_page(bin, u32::MAX) };
            if l.count > 0 {
                let mut l = l;
                // SAFETY: a well-formed list of free objects of `bin` just taken, ours; the
                // heap is held (caller contract).
                unsafe { self.owned().put_central(bin, l.take_all()) };
            }
        }
    }

    #[inline(always)]
    fn remote_is_empty(&self) -> bool {
        self.remote.is_empty()
    }

    /// `small-adopt`: sets which bins the free fast path lets adopt a free of another heap's
    /// object (it stays in this thread's bin): [`ADOPTING`] for every small class of at least a
    /// cache line, 0 for none. A smaller object shares its line with neighbours that may be
    /// live on the owner's thread, and reusing it here would make both threads write that line
    /// (passive false sharing; cache-scratch halved). A thread that sends adopted objects home
    /// from an overflowing bin (a queue's consumer) stops adopting until its next refill. The
    /// test is in the bins' `key` and `accept`, so the fast path has no branch of its own for it
    /// (a branch mispredicted at every other free in programs whose bins mix own and adopted
    /// objects: larson, 10x the mispredictions, +50 % user time).
    fn set_adopt(&mut self, range: u32) {
        if range == self.adopt_range {
            return;
        }
        self.adopt_range = range;
        let base = self.owner_base;
        for bin in ADOPT_MIN_BIN as usize..SMALL_BINS {
            let b = &mut self.bins[bin];
            if range == 0 {
                b.take_own(base, bin);
            } else {
                b.take_any(bin);
            }
        }
    }

    /// Pushes a freed object onto its bin, shedding the bin when it passes its limit.
    ///
    /// # Safety
    /// ACTIVE; `bin < NUM_BINS`; `p` is a free object of `bin` that nothing else references:
    /// this heap's, or another heap's that the bin may adopt (`adopts_small`, `medium-adopt`).
    #[inline(always)]
    pub unsafe fn push_free(&mut self, p: *mut u8, bin: usize) {
        debug_assert!(self.state == ACTIVE);
        // SAFETY: `bin < NUM_BINS` (caller contract).
        let b = unsafe { self.bins.get_unchecked_mut(bin) };
        // SAFETY: our own bin, borrowed only here; `p` is a free object of `bin` (caller
        // contract).
        if unsafe { Bin::push(b, p) } {
            // SAFETY: ACTIVE (caller contract).
            unsafe { self.overflow(bin) };
        }
    }

    /// A free of another heap's object: buffered in the remote ring/bank (the common case,
    /// kept to a few compares before the buffer's push: the consumer of a producer/consumer
    /// pair does nothing else), or, on the out-of-line path, adopted into our bin (a medium
    /// run with `medium-adopt`; a small object was already offered to `small-adopt` by
    /// `free`, and a cache that just activated does not adopt yet) or sent.
    ///
    /// # Safety
    /// ACTIVE; `p` is an arena block being freed, `tag` its page tag, not our heap's (a zero
    /// tag is reported and the block left alone).
    #[inline(always)]
    pub unsafe fn free_remote(&mut self, p: *mut u8, tag: u32) {
        // A buffered class implies a nonzero tag (a zero tag's bin is `>= NUM_BINS`).
        if buffered(tag) {
            // SAFETY: as for this function (caller contract); the class is buffered.
            return unsafe { self.send_remote(p, tag) };
        }
        // SAFETY: as for this function (caller contract).
        unsafe { self.free_remote_rare(p, tag) }
    }

    /// [`free_remote`](Self::free_remote) of a class the buffer does not take: a medium run
    /// (kept with `medium-adopt`) or a carved class above 2 KiB (sent at once).
    ///
    /// # Safety
    /// As for `free_remote`.
    #[cold]
    #[inline(never)]
    unsafe fn free_remote_rare(&mut self, p: *mut u8, tag: u32) {
        let Some((dst, bin)) = page_tag::decode(tag) else {
            return super::hardened::bad_tag(p);
        };
        if config::MEDIUM_ADOPT && !sc::is_small(bin) {
            // The object is reused here, where memory is being allocated now, instead of
            // waiting in the stash or inbox of an owner that may not run for a while. It keeps
            // its owner's tag, and goes home when it leaves the bin (`shed`; for a medium run
            // also `Heap::free_runs`).
            // SAFETY: ACTIVE (caller contract).
            unsafe { self.heap() }.stats.add(Ev::MediumAdopted, 1);
            // SAFETY: ACTIVE, and `p` is a free object of `bin` (caller contract).
            return unsafe { self.push_free(p, bin) };
        }
        // SAFETY: as for this function (caller contract); `tag` decodes to (dst, bin).
        unsafe { self.send_direct(p, dst, bin) }
    }

    /// Buffers a free object of another heap in the remote ring/bank, or sends it straight to
    /// its owner when the bank does not cover its heap. The common path touches only the
    /// buffer: the heap (for its counters) is read on the paths that send.
    ///
    /// # Safety
    /// ACTIVE; `p` is a free object whose page tag is `tag`, not our heap's; `buffered(tag)`
    /// holds (so the tag is nonzero and, in the bank, its bin has a list).
    #[inline(always)]
    unsafe fn send_remote(&mut self, p: *mut u8, tag: u32) {
        if RemoteBuf::covers_tag(tag) {
            // SAFETY: `p` is a free object tagged `tag` (caller contract), a heap the buffer
            // covers; ownership passes to the buffer unless it answers `NoEntry`.
            match unsafe { self.remote.push(tag, p) } {
                Push::Done => {}
                // SAFETY: ACTIVE (caller contract); the buffer handed back a chain of free
                // objects tagged `tag`, now ours to send.
                Push::Send(c) => unsafe { self.send_chain(tag, c.head, c.tail, c.n) },
                // SAFETY: as for this function (caller contract); `p` is still ours.
                Push::NoEntry => unsafe { Self::buffer_new(p, tag, self) },
            }
            return;
        }
        // SAFETY: as for this function (caller contract).
        unsafe { Self::send_uncovered(p, tag, self) }
    }

    /// A buffered free for a heap the bank does not cover (fast lane, heap ids from
    /// `BANK_HEAPS`): to its owner now. Out of line, with the cache last, so that the common
    /// push keeps its arguments in the registers `free` passes them in.
    ///
    /// # Safety
    /// As for `send_remote` (`tc` is the cache).
    #[inline(never)]
    unsafe fn send_uncovered(p: *mut u8, tag: u32, tc: &mut ThreadCache) {
        // SAFETY: `tag` is nonzero (caller contract).
        let (dst, bin) = unsafe { page_tag::decode(tag).unwrap_unchecked() };
        // SAFETY: as for this function (caller contract).
        unsafe { tc.send_direct(p, dst, bin) }
    }

    /// A free the ring has no live entry for: a new entry, after flushing the oldest ones if
    /// the ring is full. Out of line so the common push saves no registers; the cache comes
    /// last, so that `free`'s remote branch keeps `p`, `tag` and the cache in the registers
    /// they arrive in (no moves before the push).
    ///
    /// # Safety
    /// As for `send_remote` (`tc` is the cache), and `covers_tag(tag)`.
    #[inline(never)]
    unsafe fn buffer_new(p: *mut u8, tag: u32, tc: &mut ThreadCache) {
        if tc.remote.is_full() {
            // SAFETY: ACTIVE (caller contract).
            unsafe { tc.flush_remote(RING_FULL_BUDGET) };
        }
        // SAFETY: `p` is a free object tagged `tag`, now the buffer's; the flush made room.
        if let Push::Send(c) = unsafe { tc.remote.push_new(tag, p) } {
            // SAFETY: ACTIVE; a chain of free objects tagged `tag`, ours to send.
            unsafe { tc.send_chain(tag, c.head, c.tail, c.n) };
        }
    }

    /// A chain the remote buffer returned full: to its owner now. Out of line so the common
    /// push saves no registers for it; the chain comes in registers.
    ///
    /// # Safety
    /// ACTIVE; `head`..`tail` is a null-terminated chain of `n` free objects tagged `tag`
    /// (nonzero) that we own.
    #[cold]
    #[inline(never)]
    unsafe fn send_chain(&mut self, tag: u32, head: *mut u8, tail: *mut u8, n: u32) {
        // SAFETY: `tag` is nonzero (caller contract).
        let (dst, bin) = unsafe { page_tag::decode(tag).unwrap_unchecked() };
        // SAFETY: ACTIVE (caller contract).
        let stats = &unsafe { self.heap() }.stats;
        stats.add(Ev::RemoteQueued, n as u64);
        // SAFETY: a chain of free objects tagged (dst, bin) (caller contract).
        unsafe { send(dst, bin, Chain { head, tail, n }, stats, false) }
    }

    /// A free to a heap the bank does not cover, or of a class the buffer does not take:
    /// straight to its owner.
    ///
    /// # Safety
    /// ACTIVE; `p` is a free object tagged (dst, bin).
    #[cold]
    #[inline(never)]
    unsafe fn send_direct(&mut self, p: *mut u8, dst: u32, bin: usize) {
        // SAFETY: ACTIVE (caller contract).
        let h = unsafe { self.heap() };
        h.stats.add(Ev::RemoteDirect, 1);
        // SAFETY: `p` is a free object tagged (dst, bin) (caller contract).
        unsafe { send_one(p, dst, bin, &h.stats, false) };
    }

    /// `small-adopt`: the objects of `c` that belong to other heaps leave as any remote free
    /// does (through the remote ring/bank, or straight for the carved classes above 2 KiB) and
    /// reach their owners' stashes; the rest, this heap's own, come back as a chain (in reverse
    /// order).
    ///
    /// # Safety
    /// ACTIVE; `c` is a detached chain of free objects of small `bin`.
    unsafe fn send_foreign_small(&mut self, bin: usize, c: Chain) -> Chain {
        let mut home = 0u64;
        let keep = |p: *mut u8| {
            let tag = arena::offset(p).map_or(0, arena::tag_at);
            if self.owns(tag) {
                return true;
            }
            if tag != 0 {
                debug_assert_eq!(page_tag::bin_of(tag), bin);
                home += 1;
                // SAFETY: ACTIVE (caller contract); `p` is a free object of small `bin` tagged
                // `tag`, of another heap, handed to us by `retain`. A small class is either
                // buffered or sent at once (`free_remote_rare`, which adopts only medium runs).
                unsafe { self.free_remote(p, tag) };
            } else {
                // A free object in a bin always lies on a live page; were it not, leaking it
                // is the only safe thing left to do.
                debug_assert!(false, "bin object without a live page");
            }
            false
        };
        // SAFETY: `c` is a detached chain of free objects we own (caller contract).
        let own = unsafe { c.retain(keep) };
        // SAFETY: ACTIVE (caller contract).
        unsafe { self.heap() }.stats.add(Ev::SmallSentHome, home);
        own
    }

    /// # Safety
    /// `heap` is `Some` (ACTIVE, or retiring before the handle is taken).
    #[cold]
    #[inline(never)]
    unsafe fn flush_remote(&mut self, budget: u32) {
        // SAFETY: `heap` is `Some` (caller contract).
        let h = unsafe { self.heap() };
        // SAFETY: the buffer holds only free objects tagged with their (dst, bin), handed to it
        // by `free_remote`, which the buffer owns.
        let n = unsafe { self.remote.flush(budget, &mut ToOwners(&h.stats)) };
        h.stats.add(Ev::RingFlushes, 1);
        h.stats.add(Ev::RingFlushed, n as u64);
        h.stats.add(Ev::RemoteQueued, n as u64);
    }

    /// The cache's part of thread exit: flush the remote buffer, return every bin to the
    /// heap, retire the heap and hand back its handle (`lifecycle` releases it, with this
    /// cache, after pointing the thread at `tls::DEAD`: later frees on this thread take the
    /// shared path, later mallocs are served by the fallback cache), with whether the heap was
    /// given back at exit (`OwnedHeap::retire`). `None` when the cache was not ACTIVE.
    pub(super) fn retire(&mut self) -> Option<(OwnedHeap, bool)> {
        if self.state != ACTIVE {
            return None;
        }
        self.state = BUSY;
        self.set_adopt(0);
        while !self.remote_is_empty() {
            // SAFETY: `heap` is still `Some` (taken only below), as `flush_remote` needs.
            unsafe { self.flush_remote(u32::MAX) };
        }
        self.owner_base = 0;
        for b in &mut self.bins {
            b.take_none();
        }
        self.heap.as_ref()?;
        // SAFETY: BUSY with the heap still held; the objects go to its central lists.
        unsafe {
            self.owned().enter();
            self.unhold_by_page(None);
            self.owned().leave();
        }
        let mut h = self.heap.take()?;
        h.enter();
        for bin in 0..NUM_BINS {
            let b = &mut self.bins[bin];
            let l = LocalList {
                head: b.head,
                count: b.count(),
            };
            *b = Bin::CLOSED;
            // SAFETY: a thread bin is a well-formed list with an exact count, holding free
            // objects of `bin` (ours, or adopted ones, which `take_back` accepts), and it is
            // detached above.
            unsafe { h.take_back(bin, l) };
        }
        let given_back = h.retire();
        h.leave();
        self.state = DEAD;
        Some((h, given_back))
    }

    /// The id of the heap an ACTIVE cache holds.
    ///
    /// # Safety
    /// ACTIVE.
    pub unsafe fn heap_id(&self) -> u32 {
        // SAFETY: ACTIVE (caller contract).
        unsafe { self.heap() }.id
    }

    /// `malloc_trim`, before the shared pool's chains go home: cut this thread's medium bins
    /// back to their default limits (the only heap's hold [`MEDIUM_ALONE_BINS`] of them). What
    /// central parks in the pool of what they shed (adopted runs past a bin limit) then goes
    /// home with the pool's other chains, where the heaps' trims return it.
    pub fn cut_medium_bins(&mut self) {
        if self.heap.is_none() || self.state != ACTIVE {
            return;
        }
        // SAFETY: ACTIVE with the heap held (checked above); its owner is this thread. `shed`
        // needs an ACTIVE cache and a bin of more than `d` objects (tested).
        unsafe {
            self.owned().enter();
            for bin in SMALL_BINS..NUM_BINS {
                let d = sc::bin_limit(bin);
                if self.bins[bin].limit() > d {
                    self.bins[bin].set_limit(d);
                    if self.bins[bin].count() > d {
                        self.shed(bin, d);
                    }
                }
            }
            self.owned().leave();
        }
    }

    /// `malloc_trim`: send this thread's buffered remote frees to their owners (whose trim or
    /// decay can then sweep their runs) and give this thread's heap's free pages back to the
    /// OS.
    pub fn trim(&mut self) -> usize {
        if self.heap.is_none() {
            return 0;
        }
        while !self.remote_is_empty() {
            // SAFETY: `heap` is `Some` (checked above), as `flush_remote` needs.
            unsafe { self.flush_remote(u32::MAX) };
        }
        // SAFETY: the heap is held (checked above); its owner is this thread.
        unsafe {
            self.owned().enter();
            self.unhold_by_page(None);
            self.owned().leave();
        }
        match &mut self.heap {
            Some(h) => {
                h.enter();
                let n = h.trim(true, 1);
                h.leave();
                n
            }
            None => 0,
        }
    }
}

/// A set of bins (`demand`, `outgrown`).
type Bins = BinSet<NUM_BINS, { NUM_BINS.div_ceil(64) }>;
/// Objects at the front of an overflowing bin that must all be the heap's own for it to grow
/// (`ThreadCache::front_is_own`).
const OWN_SAMPLE: u32 = 8;
/// How deep a bin at rest is read to tell a round trip from a swing near its top
/// (`ThreadCache::at_rest`).
const REST_DEPTH: u32 = 64;
/// Objects of a class up to `SMALL_MAX` found in the heap's central list at a refill from which
/// the class is held by page: a round trip larger than the bins (they grow by at most
/// `config::BIN_GROW_BUDGET` in all) left them there.
const BY_PAGE_MIN: u32 = 8192;
/// A class held by page keeps this many default bin limits in its bin.
const BY_PAGE_BINS: u32 = 4;
/// Objects an overflowing bin of a small class not held by page keeps (at most half its limit).
const SMALL_OVERFLOW_KEEP: u32 = 32;
/// Objects a bin of a class held by page sheds at an overflow.
const BY_PAGE_SHED: u32 = 128;
/// A set of the 16-byte-step bins (`by_page`).
type StepBins = BinSet<{ sc::STEP_BINS }, { sc::STEP_BINS.div_ceil(64) }>;

/// A bin at rest is relinked in address order every this many of its rests.
const REST_PERIOD: u8 = 4;
/// Relinks that found a bin mostly in order double its period, up to this many times (every
/// 64th rest).
const REST_BACKOFF_MAX: u8 = 4;
/// A bin at rest whose first [`REST_DEPTH`] objects have at least this many neighbours in
/// memory next to each other in the list is in order already (an allocate-then-free loop
/// hands its blocks back in the order it got them) and is not relinked.
const REST_ORDERED: u32 = 48;
/// Between epochs, every this many slow-path calls check whether a decay pass is due (one
/// clock read): a pass also gives back the heaps of idle live threads, which no flag
/// announces (`registry::decay_pending` covers released heaps and pooled segments).
const IDLE_CHECK_PERIOD: u32 = 8;

/// The bin of the smallest class `small-adopt` takes: a cache line (`config::ADOPT_MIN_SIZE`).
const ADOPT_MIN_BIN: u32 = (config::ADOPT_MIN_SIZE / 16 - 1) as u32;
const _: () = assert!(sc::bin_size(ADOPT_MIN_BIN as usize) == config::ADOPT_MIN_SIZE);
/// `adopt_range` of an adopting cache: every small bin from `ADOPT_MIN_BIN` on.
const ADOPTING: u32 = if config::SMALL_ADOPT {
    SMALL_BINS as u32 - ADOPT_MIN_BIN
} else {
    0
};

impl ThreadCache {
    /// Whether this thread refilled `bin` in the current or the previous epoch.
    #[inline]
    fn in_demand(&self, bin: usize) -> bool {
        self.demand.either_contains(&self.demand_prev, bin)
    }

    /// Treats `bin` as not refilled lately, until its next refill.
    fn forget_demand(&mut self, bin: usize) {
        self.demand.remove(bin);
        self.demand_prev.remove(bin);
    }
}

/// The thread cache of each heap id, allocated from metadata memory the first time the id is
/// claimed. Only the heap's owner reads or writes its entry and the cache, and a new owner
/// comes after the previous one's release through the registry lock, so Relaxed suffices.
static CACHES: [AtomicPtr<ThreadCache>; registry::SLOTS] =
    [const { AtomicPtr::new(null_mut()) }; registry::SLOTS];

/// The cache that goes with heap `id`, whose owner we are; `None` if metadata memory is
/// exhausted.
pub(super) fn cache_of(id: u32) -> Option<*mut ThreadCache> {
    let slot = &CACHES[registry::slot(id)];
    let c = slot.load(Relaxed);
    if !c.is_null() {
        return Some(c);
    }
    // Zeroed memory: an UNINIT cache. Metadata memory never goes through `malloc`.
    let c = meta::alloc(
        core::mem::size_of::<ThreadCache>(),
        core::mem::align_of::<ThreadCache>(),
    )? as *mut ThreadCache;
    slot.store(c, Relaxed);
    Some(c)
}

/// The cache of heap `id` if it has one (null otherwise).
pub(super) fn cache_at(id: u32) -> *mut ThreadCache {
    CACHES[registry::slot(id)].load(Relaxed)
}

/// The shared path for a thread without an active cache (exited, or no heap available):
/// one push straight to the owner.
///
/// # Safety
/// `p` is a free object tagged (dst, bin).
pub unsafe fn free_shared(p: *mut u8, dst: u32, bin: usize) {
    GLOBAL.add_shared(Ev::RemoteDirect, 1);
    // SAFETY: `p` is a free object tagged (dst, bin) (caller contract).
    unsafe { send_one(p, dst, bin, &GLOBAL, true) };
}
