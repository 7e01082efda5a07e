//! The large tier (design.md §9): requests above 256 KiB (and alignments above a page) get
//! their own page-aligned mapping. Live blocks are recorded in a sharded address table, so `free`
//! of a pointer outside the arena is recognised without reading memory around it (a foreign
//! pointer simply misses). Freed blocks wait in per-thread-hashed cache shards by exact length
//! (lengths are rounded to geometric classes, four per doubling) under a byte cap, and are
//! unmapped once older than the decay interval, or once the process took as many bytes of fresh
//! arena segments as the block holds while it waited ([`process_grew`]).

use crate::config::{
    LARGE_CACHE_BYTES, LARGE_CACHE_MAX_BLOCK, LARGE_CACHE_PEAK_DEN, LARGE_CACHE_PEAK_NUM,
};
use crate::stats::{Ev, GLOBAL};
use crate::sys::os::{self, PAGE};
use crate::sys::sync::SpinLock;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

const TABLE_SHARDS: usize = 64;
const CACHE_SHARDS: usize = 8;
const _: () = assert!(CACHE_SHARDS.is_power_of_two());
const CACHE_ENTRIES: usize = 128;

/// Page-level accounting of the tier (design.md §13), kept on these slow paths whatever the
/// features: live blocks (recorded in the table), cached blocks, the peaks of live blocks, and
/// the address tables' own memory. Relaxed atomics, read without a lock.
static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);
static LIVE_BLOCKS: AtomicUsize = AtomicUsize::new(0);
static PEAK_BYTES: AtomicUsize = AtomicUsize::new(0);
static PEAK_BLOCKS: AtomicUsize = AtomicUsize::new(0);
static CACHED_BYTES: AtomicUsize = AtomicUsize::new(0);
static CACHED_BLOCKS: AtomicUsize = AtomicUsize::new(0);
static TABLE_BYTES: AtomicUsize = AtomicUsize::new(0);
/// Recent peak of live bytes, which the cache's byte bound follows.
static RECENT: PeakWindow = PeakWindow::new();

/// The peak of a gauge over the current window and the one before it. The large cache's
/// window is the decay interval, so its bound follows the live set up within one free and falls
/// back one to two intervals after the live set shrank (age expiry empties the cache by then).
pub struct PeakWindow {
    cur: AtomicUsize,
    prev: AtomicUsize,
}

impl PeakWindow {
    pub const fn new() -> Self {
        PeakWindow {
            cur: AtomicUsize::new(0),
            prev: AtomicUsize::new(0),
        }
    }

    /// The gauge now reads `v`.
    pub fn note(&self, v: usize) {
        self.cur.fetch_max(v, Relaxed);
    }

    /// A new window starts with the gauge at `v`. Racing `note`s may be lost to the swap; the
    /// bound is a policy figure, so a slightly low peak for one window is harmless.
    pub fn roll(&self, v: usize) {
        let cur = self.cur.swap(v, Relaxed);
        self.prev.store(cur, Relaxed);
    }

    /// The largest value seen in this window and the one before.
    pub fn peak(&self) -> usize {
        self.cur.load(Relaxed).max(self.prev.load(Relaxed))
    }
}

/// Byte bound of the whole large cache (all shards) for a recent peak of live large bytes:
/// the base, or the peak times `LARGE_CACHE_PEAK_NUM / LARGE_CACHE_PEAK_DEN` if more. A program
/// that frees and re-allocates its whole large live set then re-faults nothing, and one that
/// stopped using large blocks keeps at most the base (until age expiry empties it).
pub fn bound_for(base: usize, recent_peak: usize) -> usize {
    base.max(recent_peak / LARGE_CACHE_PEAK_DEN * LARGE_CACHE_PEAK_NUM)
}

fn cache_bound() -> usize {
    bound_for(LARGE_CACHE_BYTES, RECENT.peak())
}

/// The large tier's figures (bytes are mapping lengths).
#[derive(Clone, Copy, Default)]
pub struct Figures {
    pub live_bytes: usize,
    pub live_blocks: usize,
    pub peak_bytes: usize,
    pub peak_blocks: usize,
    pub cached_bytes: usize,
    pub cached_blocks: usize,
    /// Memory of the address tables.
    pub table_bytes: usize,
}

/// The tier's figures now: relaxed reads, each exact on its own but not a consistent
/// snapshot while other threads allocate. The peaks are read as at least the live figures: a
/// read between an allocation's add to the live count and its raise of the peak would otherwise
/// show a peak below the live count.
pub fn figures() -> Figures {
    let live_bytes = LIVE_BYTES.load(Relaxed);
    let live_blocks = LIVE_BLOCKS.load(Relaxed);
    Figures {
        live_bytes,
        live_blocks,
        peak_bytes: PEAK_BYTES.load(Relaxed).max(live_bytes),
        peak_blocks: PEAK_BLOCKS.load(Relaxed).max(live_blocks),
        cached_bytes: CACHED_BYTES.load(Relaxed),
        cached_blocks: CACHED_BLOCKS.load(Relaxed),
        table_bytes: TABLE_BYTES.load(Relaxed),
    }
}

/// Whether the cache holds any block (relaxed: a hint for when to run decay).
pub fn has_cached() -> bool {
    CACHED_BYTES.load(Relaxed) > 0
}

fn live_moved(len: usize, added: bool) {
    if added {
        let b = LIVE_BYTES.fetch_add(len, Relaxed) + len;
        let n = LIVE_BLOCKS.fetch_add(1, Relaxed) + 1;
        PEAK_BYTES.fetch_max(b, Relaxed);
        RECENT.note(b);
        PEAK_BLOCKS.fetch_max(n, Relaxed);
    } else {
        LIVE_BYTES.fetch_sub(len, Relaxed);
        LIVE_BLOCKS.fetch_sub(1, Relaxed);
    }
}

fn cached_moved(len: usize, added: bool) {
    if added {
        CACHED_BYTES.fetch_add(len, Relaxed);
        CACHED_BLOCKS.fetch_add(1, Relaxed);
    } else {
        CACHED_BYTES.fetch_sub(len, Relaxed);
        CACHED_BLOCKS.fetch_sub(1, Relaxed);
    }
}

/// Largest request any tier accepts; beyond it allocation fails with ENOMEM.
pub const MAX_REQUEST: usize = isize::MAX as usize - (1 << 30);

/// Mapping length for a request: whole pages, rounded up to one of four classes per power of
/// two while the block is small enough to cache.
pub fn class_len(size: usize) -> usize {
    let pages = size.div_ceil(PAGE).max(1);
    let len = pages * PAGE;
    if len > LARGE_CACHE_MAX_BLOCK || pages <= 4 {
        return len;
    }
    let shift = usize::BITS - 1 - (len - 1).leading_zeros();
    let step = 1usize << (shift - 2);
    len.div_ceil(step) * step
}

/// Open-addressed (linear probing, backward-shift deletion) map from block address to length,
/// in memory obtained from the OS. Address 0 marks an empty slot.
pub struct AddrTable {
    slots: *mut [usize; 2],
    cap: usize,
    len: usize,
}

// SAFETY: the table owns its slot memory; callers serialise access with a lock.
unsafe impl Send for AddrTable {}

impl AddrTable {
    pub const fn new() -> Self {
        AddrTable {
            slots: core::ptr::null_mut(),
            cap: 0,
            len: 0,
        }
    }

    fn hash(addr: usize, cap: usize) -> usize {
        ((addr >> 12).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 20) & (cap - 1)
    }

    /// Slot `i` by value. Every index is `hash & (cap - 1)`, a probe step masked the same way,
    /// or below `old.cap` while rehashing, so it is in range.
    fn slot(&self, i: usize) -> [usize; 2] {
        debug_assert!(i < self.cap);
        // SAFETY: `i < cap`, and the slot array holds `cap` initialised slots for the table's
        // lifetime.
        unsafe { *self.slots.add(i) }
    }

    fn set_slot(&mut self, i: usize, v: [usize; 2]) {
        debug_assert!(i < self.cap);
        // SAFETY: as in `slot`; `&mut self` makes this the only access.
        unsafe { *self.slots.add(i) = v }
    }

    /// Records a block; false when memory for growth is unavailable.
    pub fn insert(&mut self, addr: usize, len: usize) -> bool {
        if (self.len + 1) * 2 > self.cap && !self.grow() {
            return false;
        }
        let mut i = Self::hash(addr, self.cap);
        while self.slot(i)[0] != 0 {
            i = (i + 1) & (self.cap - 1);
        }
        self.set_slot(i, [addr, len]);
        self.len += 1;
        true
    }

    fn find(&self, addr: usize) -> Option<usize> {
        if self.cap == 0 {
            return None;
        }
        let mut i = Self::hash(addr, self.cap);
        loop {
            match self.slot(i)[0] {
                0 => return None,
                a if a == addr => return Some(i),
                _ => i = (i + 1) & (self.cap - 1),
            }
        }
    }

    pub fn get(&self, addr: usize) -> Option<usize> {
        self.find(addr).map(|i| self.slot(i)[1])
    }

    /// Removes a block, returning its length.
    pub fn remove(&mut self, addr: usize) -> Option<usize> {
        let mut i = self.find(addr)?;
        let len = self.slot(i)[1];
        // Backward-shift: pull later entries of the probe run into the hole.
        let mask = self.cap - 1;
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            let e = self.slot(j);
            if e[0] == 0 {
                break;
            }
            let home = Self::hash(e[0], self.cap);
            // Move e if its home is not cyclically within (i, j].
            let between = if i <= j {
                home > i && home <= j
            } else {
                home > i || home <= j
            };
            if !between {
                self.set_slot(i, e);
                i = j;
            }
        }
        self.set_slot(i, [0, 0]);
        self.len -= 1;
        Some(len)
    }

    fn grow(&mut self) -> bool {
        let new_cap = (self.cap * 2).max(256);
        let Some(mem) = os::map_rw(new_cap * 16) else {
            return false;
        };
        TABLE_BYTES.fetch_add(new_cap * 16, Relaxed);
        let old = AddrTable {
            slots: self.slots,
            cap: self.cap,
            len: self.len,
        };
        self.slots = mem as *mut [usize; 2];
        self.cap = new_cap;
        self.len = 0;
        for i in 0..old.cap {
            let e = old.slot(i);
            if e[0] != 0 {
                self.insert(e[0], e[1]);
            }
        }
        if old.cap > 0 {
            // SAFETY: the old slot array was mapped by a previous `grow` and is no longer used.
            unsafe { os::unmap(old.slots as *mut u8, old.cap * 16) };
            TABLE_BYTES.fetch_sub(old.cap * 16, Relaxed);
        }
        true
    }
}

#[derive(Clone, Copy)]
struct Cached {
    addr: usize,
    len: usize,
    stamp: u64,
    /// [`GROWN`] when the block was cached (a split tail keeps its block's).
    grown: usize,
}

struct Cache {
    entries: [Cached; CACHE_ENTRIES],
    /// Entries in use, `entries[..n]`: never above `CACHE_ENTRIES` (only `cache_put` adds
    /// one, when there is room).
    n: usize,
    bytes: usize,
}

impl Cache {
    /// `n`, with its bound stated for the compiler, so indexing below it leaves no panic path.
    #[inline(always)]
    fn len(&self) -> usize {
        // SAFETY: the field's invariant: only `cache_put` raises `n`, and only below
        // `CACHE_ENTRIES`.
        unsafe { core::hint::assert_unchecked(self.n <= CACHE_ENTRIES) };
        self.n
    }
}

static TABLE: [SpinLock<AddrTable>; TABLE_SHARDS] =
    [const { SpinLock::new(AddrTable::new()) }; TABLE_SHARDS];
static CACHE: [SpinLock<Cache>; CACHE_SHARDS] = [const {
    SpinLock::new(Cache {
        entries: [Cached {
            addr: 0,
            len: 0,
            stamp: 0,
            grown: 0,
        }; CACHE_ENTRIES],
        n: 0,
        bytes: 0,
    })
}; CACHE_SHARDS];
fn table(addr: usize) -> &'static SpinLock<AddrTable> {
    &TABLE[(addr >> 12) % TABLE_SHARDS]
}

fn cache_shard() -> &'static SpinLock<Cache> {
    &CACHE[shard_index()]
}

fn shard_index() -> usize {
    // Threads spread over shards by a hash of their thread pointer (distinct per thread, no
    // lookup needed). The low bits alone are useless: thread stacks, and so TLS blocks, sit at
    // identical offsets of equal-sized mappings.
    let h = (os::thread_pointer() >> 6).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    h >> (usize::BITS - CACHE_SHARDS.trailing_zeros())
}

/// A new large block of at least `size` bytes aligned to `align` (a power of two). Returns the
/// block and whether its memory is known to be zero. Null on failure (caller sets errno).
pub fn alloc(size: usize, align: usize) -> (*mut u8, bool) {
    if size > MAX_REQUEST || align > MAX_REQUEST / 2 {
        return (core::ptr::null_mut(), false);
    }
    GLOBAL.add_shared(Ev::LargeAllocs, 1);
    let len = class_len(size);
    if align <= PAGE {
        if let Some((p, got)) = cache_take(len) {
            GLOBAL.add_shared(Ev::LargeCacheHits, 1);
            if register(p, got) {
                return (p, false);
            }
            // SAFETY: `p` came out of the cache: an unused mapping of `got` bytes.
            unsafe { os::unmap(p, got) };
            return (core::ptr::null_mut(), false);
        }
        let Some(p) = os::map_rw(len) else {
            return (core::ptr::null_mut(), false);
        };
        if register(p, len) {
            return (p, true);
        }
        // SAFETY: fresh mapping, never handed out.
        unsafe { os::unmap(p, len) };
        return (core::ptr::null_mut(), false);
    }
    if let Some((p, got)) = take_aligned(len, align) {
        GLOBAL.add_shared(Ev::LargeCacheHits, 1);
        if register(p, got) {
            return (p, false);
        }
        // SAFETY: `p` came out of the cache: an unused mapping of `got` bytes.
        unsafe { os::unmap(p, got) };
        return (core::ptr::null_mut(), false);
    }
    let Some(raw) = os::map_rw(len + align) else {
        return (core::ptr::null_mut(), false);
    };
    let p = (raw as usize).next_multiple_of(align) as *mut u8;
    // SAFETY: head and tail slack are parts of our fresh mapping outside [p, p+len).
    unsafe {
        let head = p as usize - raw as usize;
        if head > 0 {
            os::unmap(raw, head);
        }
        let tail = len + align - head - len;
        if tail > 0 {
            os::unmap(p.add(len), tail);
        }
    }
    if register(p, len) {
        (p, true)
    } else {
        // SAFETY: as above, `[p, p+len)` is ours and unused.
        unsafe { os::unmap(p, len) };
        (core::ptr::null_mut(), false)
    }
}

fn register(p: *mut u8, len: usize) -> bool {
    let ok = table(p as usize).lock().insert(p as usize, len);
    if ok {
        live_moved(len, true);
    }
    ok
}

/// Usable size of a live large block, `None` if `p` is not one.
pub fn usable(p: *const u8) -> Option<usize> {
    table(p as usize).lock().get(p as usize)
}

/// Frees a large block. Returns false (and does nothing) if `p` is not a live large block.
///
/// # Safety
/// If `p` is a live large block, no one uses it after this call.
pub unsafe fn free(p: *mut u8) -> bool {
    let Some(len) = table(p as usize).lock().remove(p as usize) else {
        return false;
    };
    live_moved(len, false);
    // SAFETY: the table recorded `p` as a live block of mapping length `len`; removing it made
    // the mapping ours, and nobody uses it after this call (caller contract).
    unsafe { cache_put(p, len) };
    true
}

/// Resizes a live large block to hold `new_size`, moving it if needed (`mremap`; a block the
/// kernel will not resize, one assembled from pieces of several mappings, is copied into a new
/// block). `None` leaves the block intact.
///
/// # Safety
/// `p` is a live large block.
pub unsafe fn resize(p: *mut u8, new_size: usize) -> Option<*mut u8> {
    if new_size > MAX_REQUEST {
        return None;
    }
    let new_len = class_len(new_size);
    let t = table(p as usize);
    let old_len = t.lock().remove(p as usize)?;
    live_moved(old_len, false);
    // SAFETY: `p` is a live large block (caller contract), so `[p, p+old_len)` is the range the
    // table records for it: within one of our mappings (a whole one, or a part the cache split
    // off one) and used by nobody else.
    match unsafe { os::remap(p, old_len, new_len) } {
        Some(q) => {
            // If the table cannot grow (the OS refused 4 KiB), the block stays valid but
            // unrecorded: a later free of it is ignored (a leak under OOM, never corruption).
            let _ = register(q, new_len);
            Some(q)
        }
        None => {
            if !register(p, old_len) {
                return None;
            }
            let (q, _) = alloc(new_size, PAGE);
            if q.is_null() {
                return None;
            }
            // SAFETY: `p` holds `old_len` bytes and `q` at least `new_size`, two live blocks of
            // ours; `free(p)` then ends `p`'s life (the caller replaces it with `q`).
            unsafe {
                core::ptr::copy_nonoverlapping(p, q, old_len.min(new_size));
                free(p);
            }
            Some(q)
        }
    }
}

/// A cached block for a request of mapping length `len`: `(block, its length)`. The best fit
/// over every shard (a longer block gives its head, its tail stays cached); failing that, a
/// block assembled from cached pieces ([`gather`]). Either way the pages the cache holds stay
/// resident: a fresh mapping faults in every page it touches (random 5–25 MiB blocks faulted
/// 3.4 times as many pages as tcmalloc's before the cache split and grew blocks,
/// docs/results/large-blocks.md).
fn cache_take(len: usize) -> Option<(*mut u8, usize)> {
    if len > LARGE_CACHE_MAX_BLOCK {
        return None;
    }
    take_fit(len).or_else(|| gather(len))
}

/// Takes entry `i` of a locked shard out of it.
fn remove_entry(c: &mut Cache, i: usize) -> Cached {
    let last = c.len() - 1;
    let e = c.entries[i];
    c.entries[i] = c.entries[last];
    c.n = last;
    c.bytes -= e.len;
    cached_moved(e.len, false);
    e
}

/// Our shard first, then the others: where one thread frees what another allocates (a queue
/// between threads), the freed blocks sit in the freeing thread's shard.
fn shards() -> impl Iterator<Item = &'static SpinLock<Cache>> {
    let own = shard_index();
    (0..CACHE_SHARDS).map(move |k| &CACHE[(own + k) % CACHE_SHARDS])
}

/// The entry of a locked shard `pick` prefers, if any: `pick(best so far, candidate)` says
/// whether the candidate's length beats the best's.
fn choose(
    c: &Cache,
    ok: impl Fn(usize) -> bool,
    better: impl Fn(usize, usize) -> bool,
) -> Option<usize> {
    let mut best: Option<usize> = None;
    for i in 0..c.len() {
        let l = c.entries[i].len;
        if ok(l) && best.is_none_or(|b| better(l, c.entries[b].len)) {
            best = Some(i);
        }
    }
    best
}

/// Takes at most `want` bytes from the entry at `addr` in `shard` if it is still there and `ok`
/// still accepts its length (another thread may have taken it and cached another block at the
/// same address since the caller looked): the whole entry when it is no longer (or, with
/// `loose`, at most [`whole_ok`] longer), else its head (the tail keeps the entry's place and
/// age). Returns the block and its length.
fn take_at(
    shard: &SpinLock<Cache>,
    addr: usize,
    want: usize,
    loose: bool,
    ok: impl Fn(usize) -> bool,
) -> Option<(*mut u8, usize)> {
    let mut c = shard.lock();
    let i = (0..c.len()).find(|&i| c.entries[i].addr == addr && ok(c.entries[i].len))?;
    let e = c.entries[i];
    if e.len <= want || (loose && whole_ok(want, e.len)) {
        let e = remove_entry(&mut c, i);
        return Some((e.addr as *mut u8, e.len));
    }
    c.entries[i] = Cached {
        addr: e.addr + want,
        len: e.len - want,
        stamp: e.stamp,
        grown: e.grown,
    };
    c.bytes -= want;
    // Bytes only: the block count is unchanged (the tail stays an entry).
    CACHED_BYTES.fetch_sub(want, Relaxed);
    Some((e.addr as *mut u8, want))
}

/// A cached block of `have` bytes is handed out whole for a request of `want` when the excess
/// is under a quarter of the request (at most the next length class); a longer one is split.
fn whole_ok(want: usize, have: usize) -> bool {
    have - want < want / 4
}

/// Finds, over every shard, the entry `better` ranks first among those `ok` accepts, then takes
/// `want` bytes of it ([`take_at`]). A few retries when another thread took the entry in between.
fn take_best(
    want: usize,
    loose: bool,
    ok: impl Fn(usize) -> bool + Copy,
    better: impl Fn(usize, usize) -> bool + Copy,
) -> Option<(*mut u8, usize)> {
    for _ in 0..3 {
        let mut best: Option<(&SpinLock<Cache>, usize, usize)> = None;
        for shard in shards() {
            let c = shard.lock();
            if let Some(i) = choose(&c, ok, better) {
                let e = c.entries[i];
                if best.is_none_or(|(_, _, l)| better(e.len, l)) {
                    best = Some((shard, e.addr, e.len));
                }
            }
        }
        let (shard, addr, _) = best?;
        if let Some(hit) = take_at(shard, addr, want, loose, ok) {
            return Some(hit);
        }
    }
    None
}

/// Best fit: the shortest cached block of at least `len`, split if much longer.
fn take_fit(len: usize) -> Option<(*mut u8, usize)> {
    take_best(len, true, |l| l >= len, |a, b| a < b)
}

/// For an alignment above a page (`memalign`): the shortest cached block of at least `len`
/// that starts on a multiple of `align`, its head if much longer (never assembled: `gather`'s
/// `mremap` may move a block). The blocks such requests free start aligned, so a program that
/// allocates aligned blocks again and again reuses its own instead of mapping and trimming a
/// fresh one per call while its frees fill the cache; others' blocks suit it when their address
/// happens to be aligned.
fn take_aligned(len: usize, align: usize) -> Option<(*mut u8, usize)> {
    if len > LARGE_CACHE_MAX_BLOCK {
        return None;
    }
    // As `take_best`, with the address in the choice; `take_at` rechecks the entry by address.
    for _ in 0..3 {
        let mut best: Option<(&SpinLock<Cache>, usize, usize)> = None;
        for shard in shards() {
            let c = shard.lock();
            for e in &c.entries[..c.len()] {
                if e.len >= len
                    && e.addr.is_multiple_of(align)
                    && best.is_none_or(|(_, _, l)| e.len < l)
                {
                    best = Some((shard, e.addr, e.len));
                }
            }
        }
        let (shard, addr, _) = best?;
        if let Some(hit) = take_at(shard, addr, len, true, |l| l >= len) {
            return Some(hit);
        }
    }
    None
}

/// The longest cached block shorter than `len` and at least [`GATHER_MIN_PIECE`] long.
fn take_longest_below(len: usize) -> Option<(*mut u8, usize)> {
    take_best(
        len,
        false,
        |l| l < len && l >= GATHER_MIN_PIECE,
        |a, b| a > b,
    )
}

/// A piece for the rest of an assembly that still needs `need` bytes, never longer: the head of
/// the best fit if a block is long enough, else the longest shorter block.
fn take_piece(need: usize) -> Option<(*mut u8, usize)> {
    take_best(need, false, |l| l >= need, |a, b| a < b).or_else(|| take_longest_below(need))
}

/// Pieces one assembly moves at most.
const GATHER_PIECES: usize = 8;
/// The shortest cached block an assembly moves: each move is a system call and leaves one
/// more kernel mapping boundary (the process has about 65,000), so crumbs are left to decay.
const GATHER_MIN_PIECE: usize = 1 << 20;

/// A block of `len` bytes assembled from cached blocks shorter than it, for a request no cached
/// block fits: the longest is grown with `mremap` (in place or moved, its pages stay resident)
/// and further pieces are moved behind it with `mremap(MREMAP_FIXED)`, up to [`GATHER_PIECES`]
/// in all; whatever they do not cover is fresh memory. Moving a page costs a page-table entry,
/// not a fault and a zeroed page. `None` if the cache holds no piece.
fn gather(len: usize) -> Option<(*mut u8, usize)> {
    let (first, first_len) = take_longest_below(len)?;
    // SAFETY: `[first, first+first_len)` left the cache: an unused range of our mappings.
    let (q, mut filled) = match unsafe { os::remap(first, first_len, len) } {
        Some(q) => (q, first_len),
        None => {
            // A piece spanning two kernel mappings (an earlier assembly) cannot be resized;
            // it moves into a fresh mapping like the others.
            let Some(q) = os::map_rw(len) else {
                // SAFETY: still an unused range of ours.
                unsafe { cache_put(first, first_len) };
                return None;
            };
            (q, place(first, first_len, q))
        }
    };
    let mut pieces = 1;
    while filled < len && pieces < GATHER_PIECES {
        let Some((p, plen)) = take_piece(len - filled) else {
            break;
        };
        // SAFETY: `q + filled .. q + len` is the fresh, unused part of the block being built;
        // `take_piece` never returns more than `len - filled` bytes (and `filled < len`).
        let moved = place(p, plen, unsafe { q.add(filled) });
        if moved == 0 {
            break;
        }
        filled += moved;
        pieces += 1;
    }
    GLOBAL.add_shared(Ev::LargeGathers, 1);
    Some((q, len))
}

/// Moves a piece taken from the cache to `dst` (the unused tail of a block being assembled);
/// returns the bytes moved. A piece the kernel will not move (one spanning two mappings on an
/// older kernel) is unmapped, so it cannot be picked again.
fn place(p: *mut u8, len: usize, dst: *mut u8) -> usize {
    // SAFETY: `[p, p+len)` left the cache (unused, ours); `[dst, dst+len)` is unused fresh
    // memory of the block being assembled, disjoint from every cached range.
    if unsafe { os::remap_fixed(p, len, dst) } {
        return len;
    }
    GLOBAL.add_shared(Ev::LargeUnmaps, 1);
    // SAFETY: as above; nothing references the piece.
    unsafe { os::unmap(p, len) };
    0
}

/// # Safety
/// `[p, p+len)` is a range of our large mappings, no longer recorded in the table and unused.
unsafe fn cache_put(p: *mut u8, len: usize) {
    if len > LARGE_CACHE_MAX_BLOCK || LARGE_CACHE_BYTES == 0 {
        GLOBAL.add_shared(Ev::LargeUnmaps, 1);
        // SAFETY: an unused mapping of ours (caller contract).
        unsafe { os::unmap(p, len) };
        return;
    }
    let now = os::now_ms();
    // Every shard's old blocks expire, whichever thread frees (once per interval).
    decay(now);
    let bound = cache_bound();
    let over = |extra: usize| CACHED_BYTES.load(Relaxed) + extra > bound;
    let mut evict = Evicted::new();
    let mut own = cache_shard().lock();
    expire(&mut own, now, &mut evict);
    // The oldest go while over the bound: ours first, then other shards' (one lock at a time).
    while own.n > 0 && (own.n == CACHE_ENTRIES || over(len)) {
        evict.take_oldest(&mut own);
    }
    if own.n == 0 && over(len) {
        drop(own);
        evict.unmap();
        evict = Evicted::new();
        for shard in shards().skip(1) {
            let mut c = shard.lock();
            while c.n > 0 && over(len) {
                evict.take_oldest(&mut c);
            }
            drop(c);
            evict.unmap();
            evict = Evicted::new();
        }
        own = cache_shard().lock();
    }
    // The block just freed is always kept (when the bound allows it at all): the next request
    // of its length or less reuses its pages.
    if len <= bound && own.n < CACHE_ENTRIES {
        let n = own.n;
        own.entries[n] = Cached {
            addr: p as usize,
            len,
            stamp: now,
            grown: GROWN.load(Relaxed),
        };
        own.n += 1;
        own.bytes += len;
        cached_moved(len, true);
    } else {
        evict.push(p as usize, len);
    }
    drop(own);
    evict.unmap();
}

/// Blocks taken out of a cache shard under its lock, unmapped after it is released.
struct Evicted {
    list: [(usize, usize); CACHE_ENTRIES + 1],
    n: usize,
}

impl Evicted {
    fn new() -> Self {
        Evicted {
            list: [(0, 0); CACHE_ENTRIES + 1],
            n: 0,
        }
    }

    /// Adds a block. There is always room (one shard's entries and the block being freed);
    /// were there none, the block is unmapped at once rather than a panic path left here.
    fn push(&mut self, addr: usize, len: usize) {
        if let Some(s) = self.list.get_mut(self.n) {
            *s = (addr, len);
            self.n += 1;
        } else {
            GLOBAL.add_shared(Ev::LargeUnmaps, 1);
            // SAFETY: the block is an unused mapping the cache owned (callers: `take`) or the
            // caller frees (`cache_put`).
            unsafe { os::unmap(addr as *mut u8, len) };
        }
    }

    /// Takes the oldest entry of `c`, if any.
    fn take_oldest(&mut self, c: &mut Cache) {
        if let Some(oldest) = (0..c.len()).min_by_key(|&i| c.entries[i].stamp) {
            self.take(c, oldest);
        }
    }

    /// Takes entry `i` of `c` (callers found it below `c.len()`; checked so that the indexing
    /// leaves no panic path).
    fn take(&mut self, c: &mut Cache, i: usize) {
        let n = c.len();
        if i >= n {
            return;
        }
        let last = n - 1;
        let e = c.entries[i];
        self.push(e.addr, e.len);
        c.bytes -= e.len;
        cached_moved(e.len, false);
        c.n = last;
        c.entries[i] = c.entries[last];
    }

    fn unmap(&self) {
        for &(a, l) in self.list.iter().take(self.n) {
            GLOBAL.add_shared(Ev::LargeUnmaps, 1);
            // SAFETY: evicted blocks are unused mappings the cache owned.
            unsafe { os::unmap(a as *mut u8, l) };
        }
    }
}

/// Moves entries older than the decay interval into `evict`.
fn expire(c: &mut Cache, now: u64, evict: &mut Evicted) {
    evict_where(c, evict, older_than_decay(now));
}

/// Whether an entry is older than the decay interval at `now` (ms).
fn older_than_decay(now: u64) -> impl Fn(&Cached) -> bool {
    let decay = crate::sys::options::decay_ms();
    move |e| now.saturating_sub(e.stamp) > decay
}

/// Moves the entries of shard `c` for which `old` holds into `evict`.
fn evict_where(c: &mut Cache, evict: &mut Evicted, old: impl Fn(&Cached) -> bool) {
    let mut i = 0;
    while i < c.len() {
        if old(&c.entries[i]) {
            evict.take(c, i);
        } else {
            i += 1;
        }
    }
}

/// Unmaps, shard by shard (each lock released before its `munmap`s), the cached blocks for
/// which `old` holds.
fn evict_all(old: impl Fn(&Cached) -> bool) {
    for shard in &CACHE {
        let mut evict = Evicted::new();
        evict_where(&mut shard.lock(), &mut evict, &old);
        evict.unmap();
    }
}

/// Clock (ms) of the last [`decay`] pass.
static DECAY_MS: AtomicU64 = AtomicU64::new(0);

/// Unmaps the blocks of every shard older than the decay interval, at most once per interval
/// whatever the number of callers (heaps' decay passes; `cache_put` also expires its own
/// shard), so a shard whose threads stopped freeing large blocks still gives its old ones back.
pub fn decay(now: u64) {
    let last = DECAY_MS.load(Relaxed);
    // Relaxed: the stamp only elects one caller per interval; the shards are locked.
    if now.saturating_sub(last) < crate::sys::options::decay_ms()
        || DECAY_MS
            .compare_exchange(last, now, Relaxed, Relaxed)
            .is_err()
    {
        return;
    }
    RECENT.roll(LIVE_BYTES.load(Relaxed));
    evict_all(older_than_decay(now));
}

/// Bytes of fresh or purged arena segments the process has taken (and will fault in) since it
/// started, as the heaps report them to [`process_grew`]. Relaxed: a policy figure that orders
/// nothing else; its modification order alone makes it monotonic, and a stale read only moves
/// one block's shedding by a segment or so.
static GROWN: AtomicUsize = AtomicUsize::new(0);

/// The process took `bytes` of arena memory it will fault in (a fresh or purged segment).
/// Cached blocks that sat unused while the process grew by at least their own length since
/// they were cached are unmapped: keeping them would add their length to the process's peak,
/// while giving them back leaves it no larger than had they been reused (the growth faulted
/// as many pages anyway). A program that moves from large blocks to small and medium objects
/// (Python's JSON decoder frees an 8 MiB memo dict, then the program fills hundreds of MiB of
/// small objects) thus does not carry the idle block to its peak whatever the decay interval
/// and the machine's speed; one that reuses its large blocks takes them before that much
/// growth (docs/ab.md). Slow path: called once per segment taken, a few shard locks when the
/// cache holds blocks.
pub fn process_grew(bytes: usize) {
    let grown = GROWN.fetch_add(bytes, Relaxed) + bytes;
    if !has_cached() {
        return;
    }
    evict_all(|e| idle_through_growth(grown, e.grown, e.len));
}

/// Whether a block of `len` bytes cached when [`GROWN`] read `at` sat idle through at least its
/// own length of growth, [`GROWN`] now reading `now`. A mark above `now` is a block cached after
/// a racing growth this caller has not seen: not idle. (A 64-bit byte count does not wrap.)
fn idle_through_growth(now: usize, at: usize, len: usize) -> bool {
    now.saturating_sub(at) >= len
}

/// Unmaps every cached block (`malloc_trim`). Returns bytes released.
pub fn purge_cache() -> usize {
    let mut bytes = 0;
    for shard in &CACHE {
        let mut c = shard.lock();
        for i in 0..c.len() {
            let e = c.entries[i];
            // SAFETY: cached blocks are unused mappings owned by the cache.
            unsafe { os::unmap(e.addr as *mut u8, e.len) };
            cached_moved(e.len, false);
            bytes += e.len;
        }
        c.n = 0;
        c.bytes = 0;
    }
    bytes
}

pub fn lock_for_fork() {
    for t in &TABLE {
        t.raw_lock();
    }
    for c in &CACHE {
        c.raw_lock();
    }
}

/// # Safety
/// Pairs with [`lock_for_fork`] (parent) or runs in the single-threaded child.
pub unsafe fn unlock_after_fork() {
    // SAFETY: caller contract: we hold every shard lock from `lock_for_fork`, or are the only
    // thread left in the child.
    unsafe {
        for c in &CACHE {
            c.raw_unlock();
        }
        for t in &TABLE {
            t.raw_unlock();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::collections::HashMap;

    #[test]
    fn class_len_rounds_up_within_a_quarter() {
        for size in (65537..(40 << 20)).step_by(12345) {
            let l = class_len(size);
            assert!(l >= size && l.is_multiple_of(PAGE));
            if l <= LARGE_CACHE_MAX_BLOCK {
                assert!((l - size) * 4 <= size + 4 * PAGE, "size {size} len {l}");
            }
            assert_eq!(class_len(l), l, "classes are fixed points");
        }
    }

    /// Tests that use the shared cache run one at a time.
    static CACHE_TESTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn minor_faults() -> i64 {
        // SAFETY: getrusage writes the struct we pass and nothing else.
        unsafe {
            let mut ru: libc::rusage = core::mem::zeroed();
            libc::getrusage(libc::RUSAGE_THREAD, &mut ru);
            ru.ru_minflt
        }
    }

    fn touch(p: *mut u8, len: usize, v: u8) {
        for off in (0..len).step_by(PAGE) {
            // SAFETY: `p` is a live block of at least `len` bytes.
            unsafe { p.add(off).write(v) };
        }
    }

    #[test]
    fn bound_follows_recent_peak() {
        let base = 128 << 20;
        assert_eq!(bound_for(base, 0), base);
        assert_eq!(bound_for(base, base / 2), base);
        let big = 3usize << 30;
        assert_eq!(
            bound_for(base, big),
            big / LARGE_CACHE_PEAK_DEN * LARGE_CACHE_PEAK_NUM
        );
        assert!(bound_for(base, usize::MAX) >= base, "no overflow");
    }

    #[test]
    fn idle_growth_counts_from_the_put() {
        let mib = 1 << 20;
        assert!(!idle_through_growth(10 * mib, 8 * mib, 4 * mib));
        assert!(idle_through_growth(12 * mib, 8 * mib, 4 * mib));
        assert!(
            !idle_through_growth(8 * mib, 9 * mib, mib),
            "cached after a racing growth"
        );
    }

    /// A cached block goes once the process grew by its length (other tests may grow it too,
    /// so only the shedding is asserted, not the keeping before it).
    #[test]
    fn growth_sheds_an_idle_block() {
        let _g = CACHE_TESTS.lock().unwrap_or_else(|e| e.into_inner());
        purge_cache();
        let len = 4 << 20;
        let a = os::map_rw(len).expect("map");
        // SAFETY: a fresh mapping of ours, unused.
        unsafe { cache_put(a, len) };
        let cached = |a: *mut u8| {
            CACHE.iter().any(|c| {
                let c = c.lock();
                c.entries[..c.n].iter().any(|e| e.addr == a as usize)
            })
        };
        assert!(cached(a));
        process_grew(len);
        assert!(!cached(a), "idle through its own length of growth");
    }

    #[test]
    fn peak_window_decays_after_two_rolls() {
        let w = PeakWindow::new();
        w.note(100);
        w.note(700);
        w.note(300);
        assert_eq!(w.peak(), 700);
        // The live set shrank to 50: the old peak counts for this window and the next.
        w.roll(50);
        assert_eq!(w.peak(), 700);
        w.note(60);
        w.roll(40);
        assert_eq!(w.peak(), 60);
        w.roll(40);
        assert_eq!(w.peak(), 40);
        // Growth shows at once.
        w.note(900);
        assert_eq!(w.peak(), 900);
    }

    /// The issue-18 shape, scaled down: 8 live blocks of 1–6 MiB replaced at random, every page
    /// touched. Mapping each block fresh faults every page again (about 360,000 faults here);
    /// with reuse, splitting and assembly the run faults about the peak of live pages once
    /// (measured 1.18 times the peak; 1.7 times before blocks were assembled from pieces).
    #[test]
    fn reuse_loop_does_not_refault() {
        let _g = CACHE_TESTS.lock().unwrap_or_else(|e| e.into_inner());
        purge_cache();
        let mut live = [(core::ptr::null_mut::<u8>(), 0usize); 8];
        let mut s = 0x2545_F491_4F6C_DD1Du64;
        let mut peak = 0;
        let before = minor_faults();
        for i in 0..408 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let k = if i < 8 { i } else { (s % 8) as usize };
            if !live[k].0.is_null() {
                // SAFETY: a live block this test allocated.
                assert!(unsafe { free(live[k].0) });
            }
            let n = (1 << 20) + (s >> 8) as usize % (5 << 20);
            let (p, _) = alloc(n, 16);
            assert!(!p.is_null());
            touch(p, n, i as u8);
            live[k] = (p, n);
            peak = peak.max(live.iter().map(|b| b.1.div_ceil(PAGE)).sum::<usize>());
        }
        let faults = minor_faults() - before;
        for (p, _) in live {
            // SAFETY: as above.
            assert!(unsafe { free(p) });
        }
        purge_cache();
        assert!(
            faults < peak as i64 * 3 / 2,
            "{faults} minor faults, peak live {peak} pages"
        );
    }

    /// A piece of an assembly never exceeds what the block still needs (it is moved over the
    /// block's fresh tail: a longer one would replace whatever is mapped after the block), while
    /// a plain fit may hand out a block a little longer than asked.
    #[test]
    fn pieces_never_exceed_the_need() {
        let _g = CACHE_TESTS.lock().unwrap_or_else(|e| e.into_inner());
        purge_cache();
        let mib = 1 << 20;
        let len = 2 * mib + mib / 4;
        let a = os::map_rw(len).expect("map");
        // SAFETY: a fresh mapping of ours, unused.
        unsafe { cache_put(a, len) };
        let (p, got) = take_piece(2 * mib).expect("piece");
        assert_eq!((p, got), (a, 2 * mib));
        assert_eq!(figures().cached_bytes, mib / 4);
        // SAFETY: the piece left the cache; it goes back.
        unsafe { cache_put(p, got) };
        purge_cache();
        let b = os::map_rw(len).expect("map");
        // SAFETY: as above.
        unsafe { cache_put(b, len) };
        assert_eq!(
            take_fit(2 * mib),
            Some((b, len)),
            "a fit within a quarter is whole"
        );
        // SAFETY: the block left the cache and is ours.
        unsafe { os::unmap(b, len) };
    }

    /// A block assembled from two cached pieces (two kernel mappings) is usable throughout and
    /// can be grown by `resize` with its contents kept, though `mremap` cannot resize it.
    #[test]
    fn assembled_block_grows_with_contents() {
        let _g = CACHE_TESTS.lock().unwrap_or_else(|e| e.into_inner());
        purge_cache();
        let mib = 1 << 20;
        let (a, _) = alloc(4 * mib, 16);
        let (b, _) = alloc(4 * mib, 16);
        assert!(!a.is_null() && !b.is_null());
        touch(a, 4 * mib, 1);
        touch(b, 4 * mib, 2);
        // SAFETY: live blocks of this test.
        unsafe {
            assert!(free(a));
            assert!(free(b));
        }
        let gathers = GLOBAL.get(Ev::LargeGathers as usize);
        let (p, _) = alloc(8 * mib, 16);
        assert!(!p.is_null());
        assert_eq!(usable(p), Some(8 * mib));
        if crate::config::STATS {
            assert!(
                GLOBAL.get(Ev::LargeGathers as usize) > gathers,
                "no assembly"
            );
        }
        for off in (0..8 * mib).step_by(PAGE) {
            // SAFETY: `p` is a live block of 8 MiB.
            unsafe { p.add(off).write((off / PAGE) as u8) };
        }
        // SAFETY: `p` is live; resize returns its replacement.
        let q = unsafe { resize(p, 20 * mib) }.expect("resize");
        for off in (0..8 * mib).step_by(PAGE) {
            // SAFETY: `q` is a live block of 20 MiB.
            assert_eq!(unsafe { q.add(off).read() }, (off / PAGE) as u8);
        }
        touch(q, 20 * mib, 3);
        // SAFETY: live block of this test.
        assert!(unsafe { free(q) });
        purge_cache();
    }

    #[test]
    fn addr_table_matches_hashmap() {
        let mut t = AddrTable::new();
        let mut m = HashMap::new();
        let mut s = 0x12345678u32;
        for i in 0..50_000usize {
            s = s.wrapping_mul(1664525).wrapping_add(1013904223);
            let addr = ((s as usize % 4096) + 1) << 12;
            if s & 0x100 == 0 {
                if let std::collections::hash_map::Entry::Vacant(e) = m.entry(addr) {
                    e.insert(i);
                    assert!(t.insert(addr, i));
                }
            } else {
                assert_eq!(t.remove(addr), m.remove(&addr));
            }
            if i % 97 == 0 {
                for (&a, &l) in &m {
                    assert_eq!(t.get(a), Some(l));
                }
            }
        }
        assert_eq!(t.len, m.len());
    }
}
