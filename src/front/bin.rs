//! A thread bin (design.md §5): the LIFO list of free objects of one class in a thread cache,
//! with the state the malloc and free fast paths read: its room before the limit, and which
//! page tags a free may push on it.

use crate::config;
use crate::page::page_tag;
use crate::page::size_class::NUM_BINS;
use core::ptr::null_mut;

/// A thread bin: a LIFO list of free objects of one class, its room, and the free fast path's
/// test of which page tags it takes. 32 bytes, 64 in the hardened lane (`page_tag::BIN_SHIFT`):
/// a page tag's bin field is the byte offset of its bin in the thread cache. All-zero is an
/// empty bin that takes no tag (the stand-in caches', and the guard's).
#[repr(C, align(32))]
pub struct Bin {
    pub head: *mut u8,
    /// `limit` minus the objects held: a push that takes it below zero overflows the bin. One
    /// decrement and a sign test on the free fast path, where a count would need a compare
    /// with the limit too. Below zero only inside that push (and after a refill larger than
    /// the limit, which the next push sheds as a count would have), and −1 in a bin at rest
    /// (`ThreadCache::at_rest`), which the next pop clears.
    room: i32,
    /// Objects the bin holds before a free sheds (design.md §4).
    limit: u32,
    /// The free fast path pushes an object whose page tag `t` passes `t ^ key < accept`:
    /// our heap's tags of this class (`key` = that tag, `accept` = 1), or, for a class this
    /// thread adopts (`small-adopt`), the class's tags of every heap (`key` = the bin field
    /// alone, `accept` = `u32::MAX`; a tag's owner part is never zero). `accept` is 0 while
    /// the cache owns no heap, so then no tag passes.
    key: u32,
    accept: u32,
    /// Hardened lane: the class's start-of-block test `(c, lim)` (`size_class::start_test`),
    /// read by `free` from the bin its pointer's tag names, in the line the push writes
    /// anyway; `(0, 0)` (every offset fails: the exact test out of line) in the guard, in
    /// stand-in and retired caches, and with `HAKOZUNA_ZERO_ON_FREE`. Empty in the other
    /// lanes.
    start: [u64; START_WORDS],
    /// Bins at rest (design.md §5): null while the bin is not tracked; else [`Bin::ARMED`] or
    /// the object that lay 64 deep in the list when the bin last came back to its high
    /// (`ThreadCache::at_rest`). Read and written by the slow paths only, in room the layout
    /// leaves spare.
    pub rest: *mut u8,
}

const START_WORDS: usize = if config::SECURE { 2 } else { 0 };

impl Bin {
    /// An empty bin that takes no tag.
    pub const CLOSED: Bin = Bin {
        head: null_mut(),
        room: 0,
        limit: 0,
        key: 0,
        accept: 0,
        start: [0; START_WORDS],
        rest: null_mut(),
    };

    /// `rest` of a bin tracked since it last grew, before it came back to its high.
    pub const ARMED: *mut u8 = core::ptr::without_provenance_mut(1);

    /// An empty bin with limit `limit` that takes no tag yet.
    pub fn empty(limit: u32) -> Bin {
        Bin {
            room: limit as i32,
            limit,
            ..Bin::CLOSED
        }
    }

    /// Takes the tags of class `bin` of the heap with `base` (`page_tag::owner_base`).
    pub fn take_own(&mut self, base: u32, bin: usize) {
        self.key = base | page_tag::field(bin);
        self.accept = 1;
    }

    /// `small-adopt`: takes the tags of class `bin` of every heap.
    pub fn take_any(&mut self, bin: usize) {
        self.key = page_tag::field(bin);
        self.accept = u32::MAX;
    }

    /// Hardened lane: sets the class's start-of-block test (see `start`).
    pub fn set_start(&mut self, (c, lim): (u64, u64)) {
        for (w, v) in self.start.iter_mut().zip([c, lim]) {
            *w = v;
        }
    }

    /// Hardened lane: the start-of-block test `(c, lim)` of bin `b`'s class.
    ///
    /// # Safety
    /// `b` points to a live bin (or a cache's guard), and this is the hardened lane.
    #[inline(always)]
    pub unsafe fn start_test(b: *const Bin) -> (u64, u64) {
        // SAFETY: `b` points to a live bin (caller contract) whose `start` has two words in
        // the hardened lane (caller contract); plain reads.
        unsafe {
            let s = (&raw const (*b).start).cast::<u64>();
            (*s, *s.add(1))
        }
    }

    /// Takes no tag (the cache is giving up its heap).
    pub fn take_none(&mut self) {
        self.accept = 0;
    }

    /// Objects in the bin.
    #[inline]
    pub fn count(&self) -> u32 {
        (self.limit as i32 - self.room) as u32
    }

    /// Sets the number of objects in the bin (its list is set by the caller).
    #[inline]
    pub fn set_count(&mut self, n: u32) {
        self.room = self.limit as i32 - n as i32;
    }

    /// The limit minus the objects held: below zero after a push past the limit.
    #[inline]
    pub fn room(&self) -> i32 {
        self.room
    }

    #[inline]
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Changes the limit, keeping the count (the room moves by the difference; a count above
    /// the new limit is shed by the next push, as before).
    #[inline]
    pub fn set_limit(&mut self, limit: u32) {
        self.room += limit as i32 - self.limit as i32;
        self.limit = limit;
    }

    /// Whether the free fast path pushes an object with page tag `tag` on bin `b`.
    ///
    /// # Safety
    /// `b` points to a live bin (or a cache's guard).
    #[inline(always)]
    pub unsafe fn takes(b: *const Bin, tag: u32) -> bool {
        // SAFETY: `b` points to a live bin (caller contract); plain reads.
        unsafe { tag ^ (*b).key < (*b).accept }
    }

    /// Pushes free object `p`; true when the bin has now passed its limit (the caller sheds).
    ///
    /// # Safety
    /// `b` points to a bin of the calling thread's own cache, not referenced elsewhere, and
    /// `p` is a free object of its class that nothing else references.
    #[inline(always)]
    pub unsafe fn push(b: *mut Bin, p: *mut u8) -> bool {
        // SAFETY: the bin is ours and `p` a free object of its class (caller contract), which
        // the bin now owns.
        unsafe {
            crate::ds::list::set_next(p, (*b).head);
            (*b).head = p;
            (*b).room -= 1;
            (*b).room < 0
        }
    }

    /// Pops the most recently freed object, or returns null when the bin is empty. Through a
    /// raw pointer, and writing only when the bin holds an object: the malloc fast path pops
    /// the bins of the stand-in caches too (`tls`), whose bins are always empty and which
    /// are read-only and shared by every thread without a cache.
    ///
    /// In the hardened lane the popped object's link must decode to null or an aligned arena
    /// address (`ds::list::next`), and the object leaves without its link and free mark.
    ///
    /// # Safety
    /// `b` points to bin `bin`, a well-formed list of free objects with an exact count,
    /// and no reference to it is live; a non-empty bin is the calling thread's.
    #[inline(always)]
    pub unsafe fn pop(b: *mut Bin, bin: usize) -> *mut u8 {
        debug_assert!(bin < NUM_BINS);
        // SAFETY: `b` points to a live bin (caller contract); a plain read.
        let p = unsafe { (*b).head };
        if !p.is_null() {
            // SAFETY: `p` is the non-null head of the bin, a free object it owns, and the bin
            // is the calling thread's (caller contract), so nothing else touches it.
            unsafe {
                let n = crate::ds::list::next(p);
                if config::SECURE {
                    crate::ds::list::clear_mark(p);
                }
                (*b).head = n;
                (*b).room += 1;
                crate::sys::os::prefetch(n);
            }
        }
        p
    }
}

const _: () = assert!(core::mem::size_of::<Bin>() == 1 << page_tag::BIN_SHIFT);
