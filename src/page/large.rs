//! The large tier (design.md §9): requests above 256 KiB (and alignments above a page) get
//! their own page-aligned mapping. Live blocks are recorded in a sharded address table, so `free`
//! of a pointer outside the arena is recognised without reading memory around it (a foreign
//! pointer simply misses). Freed blocks wait in per-thread-hashed cache shards by exact length
//! (lengths are rounded to geometric classes, four per doubling) under a byte cap, and are
//! unmapped once older than the decay interval.

use crate::config::{LARGE_CACHE_BYTES, LARGE_CACHE_MAX_BLOCK};
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
/// snapshot while other threads allocate.
pub fn figures() -> Figures {
    Figures {
        live_bytes: LIVE_BYTES.load(Relaxed),
        live_blocks: LIVE_BLOCKS.load(Relaxed),
        peak_bytes: PEAK_BYTES.load(Relaxed),
        peak_blocks: PEAK_BLOCKS.load(Relaxed),
        cached_bytes: CACHED_BYTES.load(Relaxed),
        cached_blocks: CACHED_BLOCKS.load(Relaxed),
        table_bytes: TABLE_BYTES.load(Relaxed),
    }
}

fn live_moved(len: usize, added: bool) {
    if added {
        let b = LIVE_BYTES.fetch_add(len, Relaxed) + len;
        let n = LIVE_BLOCKS.fetch_add(1, Relaxed) + 1;
        PEAK_BYTES.fetch_max(b, Relaxed);
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
}

struct Cache {
    entries: [Cached; CACHE_ENTRIES],
    n: usize,
    bytes: usize,
}

static TABLE: [SpinLock<AddrTable>; TABLE_SHARDS] =
    [const { SpinLock::new(AddrTable::new()) }; TABLE_SHARDS];
static CACHE: [SpinLock<Cache>; CACHE_SHARDS] = [const {
    SpinLock::new(Cache {
        entries: [Cached {
            addr: 0,
            len: 0,
            stamp: 0,
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
    if let Some((p, got)) = cache_take(len, align.max(PAGE)) {
        GLOBAL.add_shared(Ev::LargeCacheHits, 1);
        if register(p, got) {
            return (p, false);
        }
        // SAFETY: `p` came out of the cache: an unused mapping of `got` bytes.
        unsafe { os::unmap(p, got) };
        return (core::ptr::null_mut(), false);
    }
    if align <= PAGE {
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

/// Resizes a live large block to hold `new_size`, moving it if needed
/// (`mremap`). `None` leaves the block intact.
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
            let _ = register(p, old_len);
            None
        }
    }
}

/// A cached block for a request of mapping length `len`: `(block, its length)`. A fit first
/// (a block of `len` up to half as large again, our shard first); else the head of a larger
/// block, whose tail stays cached; else a smaller block grown with `mremap`. Either way the
/// pages the block already has stay resident: a fresh mapping faults in every page it touches
/// (random 5–25 MiB blocks faulted 3.4 times as many pages as tcmalloc's before splitting and
/// growing, docs/ab.md).
///
/// An alignment above a page (`memalign`) is served the same way from the cached blocks that
/// start on a multiple of it, without `mremap` (which may move the block): the blocks such
/// requests free start aligned, so a program that allocates aligned blocks again and again
/// reuses its own instead of mapping and trimming a fresh one per call while its frees fill the
/// cache. Others' blocks suit it when their address happens to be aligned.
fn cache_take(len: usize, align: usize) -> Option<(*mut u8, usize)> {
    if len > LARGE_CACHE_MAX_BLOCK {
        return None;
    }
    // Our shard first, then the others: where one thread frees what another allocates (a
    // queue between threads), the freed blocks sit in the freeing thread's shard, and a miss
    // here costs a fresh mapping whose pages all fault again.
    let own = shard_index();
    let shards = || (0..CACHE_SHARDS).map(|k| &CACHE[(own + k) % CACHE_SHARDS]);
    let found = shards()
        .find_map(|shard| take_from(shard, len, align))
        .or_else(|| shards().find_map(|shard| split_from(shard, len, align)));
    if found.is_some() || align > PAGE {
        return found;
    }
    shards().find_map(|shard| grow_from(shard, len))
}

/// Takes entry `i` of a locked shard out of it.
fn remove_entry(c: &mut Cache, i: usize) -> Cached {
    let e = c.entries[i];
    let last = c.n - 1;
    c.entries[i] = c.entries[last];
    c.n = last;
    c.bytes -= e.len;
    cached_moved(e.len, false);
    e
}

/// The head of the smallest cached block longer than a fit (more than half as large again as
/// `len`) that starts on a multiple of `align`: the head is returned, the tail stays in the
/// shard as a block of its own.
fn split_from(shard: &SpinLock<Cache>, len: usize, align: usize) -> Option<(*mut u8, usize)> {
    let mut c = shard.lock();
    let i = (0..c.n)
        .filter(|&i| c.entries[i].len > len + len / 2 && c.entries[i].addr.is_multiple_of(align))
        .min_by_key(|&i| c.entries[i].len)?;
    let e = c.entries[i];
    // The tail keeps the entry's place and age; only the head leaves the cache.
    c.entries[i] = Cached {
        addr: e.addr + len,
        len: e.len - len,
        stamp: e.stamp,
    };
    c.bytes -= len;
    // Bytes only: the block count is unchanged (the tail stays an entry).
    CACHED_BYTES.fetch_sub(len, Relaxed);
    Some((e.addr as *mut u8, len))
}

/// The largest cached block shorter than `len` (at least half of it), grown to `len` with
/// `mremap`, which keeps its resident pages.
fn grow_from(shard: &SpinLock<Cache>, len: usize) -> Option<(*mut u8, usize)> {
    let e = {
        let mut c = shard.lock();
        let i = (0..c.n)
            .filter(|&i| c.entries[i].len < len && c.entries[i].len >= len / 2)
            .max_by_key(|&i| c.entries[i].len)?;
        remove_entry(&mut c, i)
    };
    // SAFETY: `[addr, addr+len)` left the cache above: an unused range of our mappings that
    // nothing else references.
    match unsafe { os::remap(e.addr as *mut u8, e.len, len) } {
        Some(q) => Some((q, len)),
        None => {
            // SAFETY: the block is still ours and unused; it goes back to the OS.
            unsafe { os::unmap(e.addr as *mut u8, e.len) };
            None
        }
    }
}

/// Best-fit take from one cache shard, among blocks starting on a multiple of `align`.
fn take_from(shard: &SpinLock<Cache>, len: usize, align: usize) -> Option<(*mut u8, usize)> {
    let mut c = shard.lock();
    // Best fit among blocks of this class or up to half as large again (the next class or
    // two): reuse beats a fresh mapping, whose pages all fault again.
    let limit = len + len / 2;
    let mut best: Option<usize> = None;
    for i in 0..c.n {
        let l = c.entries[i].len;
        if l >= len
            && l <= limit
            && c.entries[i].addr.is_multiple_of(align)
            && best.is_none_or(|b| l < c.entries[b].len)
        {
            best = Some(i);
            if l == len {
                break;
            }
        }
    }
    let e = remove_entry(&mut c, best?);
    Some((e.addr as *mut u8, e.len))
}

/// # Safety
/// `[p, p+len)` is a whole large mapping of ours, no longer recorded in the table and unused.
unsafe fn cache_put(p: *mut u8, len: usize) {
    if len > LARGE_CACHE_MAX_BLOCK || LARGE_CACHE_BYTES == 0 {
        GLOBAL.add_shared(Ev::LargeUnmaps, 1);
        // SAFETY: an unused mapping of ours (caller contract).
        unsafe { os::unmap(p, len) };
        return;
    }
    let mut evict = Evicted::new();
    {
        let mut c = cache_shard().lock();
        let now = os::now_ms();
        expire(&mut c, now, &mut evict);
        // Then the oldest while over the caps.
        while c.n > 0 && (c.n == CACHE_ENTRIES || c.bytes + len > LARGE_CACHE_BYTES) {
            let oldest = (0..c.n).min_by_key(|&i| c.entries[i].stamp).unwrap_or(0);
            evict.take(&mut c, oldest);
        }
        if len <= LARGE_CACHE_BYTES {
            let n = c.n;
            c.entries[n] = Cached {
                addr: p as usize,
                len,
                stamp: now,
            };
            c.n += 1;
            c.bytes += len;
            cached_moved(len, true);
        } else {
            evict.push(p as usize, len);
        }
    }
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

    fn push(&mut self, addr: usize, len: usize) {
        self.list[self.n] = (addr, len);
        self.n += 1;
    }

    fn take(&mut self, c: &mut Cache, i: usize) {
        let e = c.entries[i];
        self.push(e.addr, e.len);
        c.bytes -= e.len;
        cached_moved(e.len, false);
        c.n -= 1;
        let last = c.n;
        c.entries[i] = c.entries[last];
    }

    fn unmap(&self) {
        for &(a, l) in &self.list[..self.n] {
            GLOBAL.add_shared(Ev::LargeUnmaps, 1);
            // SAFETY: evicted blocks are unused mappings the cache owned.
            unsafe { os::unmap(a as *mut u8, l) };
        }
    }
}

/// Moves entries older than the decay interval into `evict`.
fn expire(c: &mut Cache, now: u64, evict: &mut Evicted) {
    let decay = crate::sys::options::decay_ms();
    let mut i = 0;
    while i < c.n {
        if now.saturating_sub(c.entries[i].stamp) > decay {
            evict.take(c, i);
        } else {
            i += 1;
        }
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
    for shard in &CACHE {
        let mut evict = Evicted::new();
        expire(&mut shard.lock(), now, &mut evict);
        evict.unmap();
    }
}

/// Unmaps every cached block (`malloc_trim`). Returns bytes released.
pub fn purge_cache() -> usize {
    let mut bytes = 0;
    for shard in &CACHE {
        let mut c = shard.lock();
        for i in 0..c.n {
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
