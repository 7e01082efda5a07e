//! The sparse remote ring (S41): a thread-local ring of 16-byte `(dst, bin, ptr)` entries that
//! buffers frees of other heaps' objects. Push is O(1); flushing hands the oldest entries to
//! their owners, grouping entries with the same `(dst, bin)` into one chain so frees to one
//! destination cost one CAS per group. Plain data: only its thread touches it.
//!
//! With `ring-coalesce`, an entry holds a chain: a push whose `(dst, bin)` already has a live
//! entry links the object onto that entry's chain instead of taking a slot, and a chain that
//! reaches [`RING_CHAIN_MAX`] goes to its owner at once (one CAS for the batch). A small
//! table remembers which slot last took each key; it is only a hint, checked against the
//! slot's key. A flush clears the keys of the slots it empties, so every slot outside the live
//! range has key 0, which no `(dst, bin)` encodes to: a matching key is always a live entry.

use crate::config::{RING_CHAIN_MAX, RING_COALESCE, RING_LEN};
use crate::ds::list::{set_next, Chain};
use crate::page::page_tag;
use crate::remote::{Push, Sink};
use core::mem::MaybeUninit;
use core::ptr::null_mut;

const MASK: u32 = RING_LEN as u32 - 1;
const _: () = assert!(RING_LEN.is_power_of_two() && RING_LEN <= 1 << 16);
const _: () = assert!(RING_CHAIN_MAX >= 1);

/// One buffered chain of frees to `(dst, bin)` (encoded in `key`): `ptr` is its head and `n`
/// its length; the tail is kept beside the entry in `RemoteRing::tails` (written with the
/// first object, so a join needs no test of the length). A live entry is never empty: a full
/// chain is handed over when the next object of its key starts a new one. Key 0 marks a slot
/// outside the live range.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct Entry {
    /// The objects' page tag: never 0 (which marks a slot outside the live range) nor
    /// `u32::MAX` (a free slot in `flush_group`), and the free path has it in a register.
    key: u32,
    n: u32,
    ptr: *mut u8,
}
const _: () = assert!(core::mem::size_of::<Entry>() == 16);

/// Slots of the key → entry hint table (`ring-coalesce`); one per ring entry.
const HINTS: usize = if RING_COALESCE { RING_LEN } else { 0 };

/// All-zero is a valid empty ring.
#[repr(C)]
pub struct RemoteRing {
    entries: [Entry; RING_LEN],
    /// Slot of the entry that last took a key hashing here. Stale or colliding values are
    /// harmless: a push joins the slot only if the slot's key is its own.
    hint: [u16; HINTS],
    /// Each entry's tail. Kept here rather than in the chain's head object (its second
    /// word, as before): a join then writes only the freed object's link, and reads nothing
    /// of the previous head, whose line a neighbour's owner may have taken meanwhile (the
    /// hardened lane's free mark is in that word, too). docs/ab.md "Producer/consumer".
    tails: [*mut u8; RING_LEN],
    head: u32,
    tail: u32,
}

#[inline(always)]
fn hash(key: u32, bits: u32) -> usize {
    (key.wrapping_mul(0x9E37_79B9) >> (32 - bits)) as usize
}

impl RemoteRing {
    /// The `remote_hint`: an empty ring makes every flush free.
    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.head == self.tail
    }

    pub fn len(&self) -> u32 {
        self.tail.wrapping_sub(self.head)
    }

    #[inline(always)]
    pub fn is_full(&self) -> bool {
        self.len() == RING_LEN as u32
    }

    /// Buffers a free of the object with page tag `tag` when a live entry of the same
    /// `(dst, bin)` takes it (`ring-coalesce`): the common case, which touches no ring slot
    /// but that entry. An entry's chain that already holds [`RING_CHAIN_MAX`] objects is
    /// returned instead, for the caller to hand to its owner (one CAS for the batch), and the
    /// object starts the entry's next chain: so an entry is never empty, and a join needs no
    /// test for it. [`Push::NoEntry`] leaves the object with the caller, who makes room if the
    /// ring is full and calls [`push_new`](Self::push_new). The key is the page tag, which the
    /// free path holds.
    ///
    /// # Safety
    /// `ptr` is a free object of the heap and bin `tag` encodes, now owned by the ring
    /// unless [`Push::NoEntry`] is returned.
    #[inline(always)]
    #[must_use]
    pub unsafe fn push(&mut self, tag: u32, ptr: *mut u8) -> Push {
        if !RING_COALESCE {
            return Push::NoEntry;
        }
        let k = tag;
        let h = hash(k, HINTS.trailing_zeros());
        let i = self.hint[h] as usize & MASK as usize;
        let e = self.entries[i];
        if e.key != k {
            return Push::NoEntry;
        }
        debug_assert!(e.n > 0);
        if e.n >= RING_CHAIN_MAX {
            let tail = self.tails[i];
            // SAFETY: `ptr` is now owned by the ring (caller contract).
            unsafe { set_next(ptr, null_mut()) };
            self.tails[i] = ptr;
            self.entries[i].ptr = ptr;
            self.entries[i].n = 1;
            return Push::Send(Chain {
                head: e.ptr,
                tail,
                n: e.n,
            });
        }
        // SAFETY: `ptr` is now owned by the ring (caller contract); it becomes the head of the
        // entry's live chain, whose tail stays.
        unsafe { set_next(ptr, e.ptr) };
        self.entries[i].ptr = ptr;
        self.entries[i].n += 1;
        Push::Done
    }

    /// Buffers a free in a new entry: after [`push`](Self::push) found no live entry for
    /// `tag`, and the caller flushed if the ring was full. Always [`Push::Done`] (the bank's
    /// signature).
    ///
    /// # Safety
    /// `ptr` is a free object of the heap and bin `tag` encodes, now owned by the ring; the
    /// ring is not full.
    #[inline]
    #[must_use]
    pub unsafe fn push_new(&mut self, tag: u32, ptr: *mut u8) -> Push {
        debug_assert!(!self.is_full());
        debug_assert!(page_tag::decode(tag).is_some());
        if RING_COALESCE {
            self.hint[hash(tag, HINTS.trailing_zeros())] = (self.tail & MASK) as u16;
        }
        let i = (self.tail & MASK) as usize;
        // SAFETY: `ptr` is now owned by the ring (caller contract).
        unsafe { set_next(ptr, null_mut()) };
        self.tails[i] = ptr;
        self.entries[i] = Entry {
            key: tag,
            n: 1,
            ptr,
        };
        self.tail = self.tail.wrapping_add(1);
        Push::Done
    }

    /// Every nonzero tag fits in a ring entry.
    #[inline(always)]
    pub fn covers_tag(_tag: u32) -> bool {
        true
    }

    /// Dispatches up to `budget` oldest entries and returns the objects handed over. Entries
    /// are taken in groups of [`GROUP`]; within a group all entries with the same `(dst, bin)`
    /// become one chain, so a destination that recurs in the group costs one CAS instead of
    /// one per entry.
    ///
    /// # Safety
    /// Every buffered chain holds free objects of its `(dst, bin)`, owned by this ring.
    pub unsafe fn flush(&mut self, budget: u32, sink: &mut impl Sink) -> u32 {
        let mut left = budget.min(self.len());
        let mut sent = 0;
        while left > 0 {
            let g = left.min(GROUP as u32);
            // SAFETY: `g <= GROUP`, and `g <= len()` entries remain, each a chain of free
            // objects the ring owns, tagged with its (dst, bin) (caller contract).
            sent += unsafe { self.flush_group(g, sink) };
            left -= g;
        }
        sent
    }

    /// One group: an open-addressed table of chains keyed by `(dst, bin)`, with twice as many
    /// slots as entries so it never fills. Only the keys are initialised: a chain slot is
    /// written when its key is claimed (zeroing all of them was a 3 KiB `memset` per flush,
    /// a third of xmalloc-test's instructions).
    ///
    /// # Safety
    /// `g <= GROUP` (else entries past the table's record of used slots would be dropped), and
    /// at least `g` entries are buffered, each a chain of free objects of its `(dst, bin)`
    /// that the ring owns.
    unsafe fn flush_group(&mut self, g: u32, sink: &mut impl Sink) -> u32 {
        let mut keys = [u32::MAX; SLOTS];
        let mut chains = [const { MaybeUninit::<Chain>::uninit() }; SLOTS];
        let mut used = [0u8; GROUP];
        let mut nused = 0;
        let mut sent = 0;
        for _ in 0..g {
            let slot = (self.head & MASK) as usize;
            let e = self.entries[slot];
            self.entries[slot].key = 0;
            self.head = self.head.wrapping_add(1);
            debug_assert!(e.n > 0, "a live entry holds a chain");
            sent += e.n;
            let tail = self.tails[slot];
            let k = e.key;
            let mut i = hash(k, SLOTS.trailing_zeros());
            while keys[i] != k && keys[i] != u32::MAX {
                i = (i + 1) & (SLOTS - 1);
            }
            if keys[i] == u32::MAX {
                keys[i] = k;
                // Room for every entry of the group (`g <= GROUP`); `get_mut` leaves no panic
                // path.
                if let Some(u) = used.get_mut(nused) {
                    *u = i as u8;
                    nused += 1;
                }
                chains[i].write(Chain {
                    head: e.ptr,
                    tail,
                    n: e.n,
                });
            } else {
                // SAFETY: slot `i`'s key was claimed earlier in this group, which wrote its
                // chain; `tail` ends a chain the ring owns (caller contract).
                unsafe {
                    let c = chains[i].assume_init_mut();
                    set_next(tail, c.head);
                    c.head = e.ptr;
                    c.n += e.n;
                }
            }
        }
        for &i in used.iter().take(nused) {
            // A slot index (masked when stored): the mask only shows the compiler the bound.
            let i = i as usize & (SLOTS - 1);
            let k = keys[i];
            // SAFETY: every slot in `used` had its key claimed, which wrote its chain.
            let c = unsafe { chains[i].assume_init_read() };
            let (dst, bin) = page_tag::split(k);
            sink.send(dst, bin, c);
        }
        sent
    }
}

/// Entries grouped per table (bounded stack use: 512 B of keys, 3 KiB of chain slots).
const GROUP: usize = 64;
const SLOTS: usize = 2 * GROUP;
const _: () = assert!(SLOTS <= 256 && SLOTS.is_power_of_two());

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ds::list::tests::{collect, objects};
    extern crate std;
    use std::boxed::Box;
    use std::vec::Vec;

    /// Records every chain handed over, checking its length and tail.
    struct Rec(Vec<(u32, usize, Vec<*mut u8>)>);
    impl Sink for Rec {
        fn send(&mut self, dst: u32, bin: usize, c: Chain) {
            // SAFETY: the ring hands over null-terminated chains of test objects.
            let v = unsafe { collect(c.head) };
            assert_eq!(v.len() as u32, c.n);
            assert_eq!(*v.last().unwrap(), c.tail);
            self.0.push((dst, bin, v));
        }
    }

    impl Rec {
        fn objects(&self) -> Vec<*mut u8> {
            let mut v: Vec<*mut u8> = self.0.iter().flat_map(|x| x.2.iter().copied()).collect();
            v.sort();
            v
        }
    }

    fn ring() -> Box<RemoteRing> {
        // SAFETY: all-zero is the documented empty state.
        unsafe { Box::new(core::mem::zeroed()) }
    }

    fn push(r: &mut RemoteRing, dst: u32, bin: usize, p: *mut u8, rec: &mut Rec) {
        let k = page_tag::encode(dst, bin);
        // SAFETY: tests hand each object from `objects` to the ring once, with its key.
        let done = match unsafe { r.push(k, p) } {
            Push::NoEntry => {
                assert!(!r.is_full());
                // SAFETY: as above; `push` left `p` with us and the ring has room.
                unsafe { r.push_new(k, p) }
            }
            d => d,
        };
        match done {
            Push::Send(c) => rec.send(dst, bin, c),
            Push::Done => {}
            Push::NoEntry => unreachable!(),
        }
    }

    fn sorted(v: &[*mut u8]) -> Vec<*mut u8> {
        let mut v = v.to_vec();
        v.sort();
        v
    }

    #[test]
    fn fifo_budget_and_grouping() {
        let mut r = ring();
        let mut rec = Rec(Vec::new());
        assert!(r.is_empty());
        let o = objects(RING_LEN);
        // Distinct keys: nothing coalesces, every push takes a slot.
        for (i, &p) in o.iter().enumerate() {
            push(&mut r, i as u32, i % 2, p, &mut rec);
        }
        assert!(r.is_full());
        assert!(rec.0.is_empty());
        // SAFETY: every buffered pointer is a distinct object from `objects`.
        assert_eq!(unsafe { r.flush(32, &mut rec) }, 32);
        assert_eq!(r.len(), RING_LEN as u32 - 32);
        // Oldest first, and every object exactly once, to its own key.
        assert_eq!(rec.objects(), sorted(&o[..32]));
        for (dst, bin, v) in &rec.0 {
            let i = o.iter().position(|q| *q == v[0]).unwrap();
            assert_eq!((i as u32, i % 2), (*dst, *bin));
        }
        // SAFETY: as above.
        assert_eq!(unsafe { r.flush(u32::MAX, &mut rec) }, RING_LEN as u32 - 32);
        assert!(r.is_empty());
        assert_eq!(rec.objects(), sorted(&o));
        // SAFETY: the ring is empty.
        assert_eq!(unsafe { r.flush(8, &mut rec) }, 0);
    }

    #[test]
    fn consecutive_same_destination_is_one_chain() {
        let mut r = ring();
        let mut rec = Rec(Vec::new());
        let o = objects(10);
        for &p in &o {
            push(&mut r, 3, 7, p, &mut rec);
        }
        // SAFETY: every buffered pointer is a distinct object from `objects`.
        unsafe { r.flush(100, &mut rec) };
        assert_eq!(rec.0.len(), 1);
        assert_eq!(rec.0[0].2.len(), 10);
        assert!(r.is_empty());
    }

    #[test]
    fn interleaved_destinations_group_per_flush_group() {
        let mut r = ring();
        let mut rec = Rec(Vec::new());
        let o = objects(GROUP);
        for (i, &p) in o.iter().enumerate() {
            push(&mut r, (i % 4) as u32, 9, p, &mut rec);
        }
        // SAFETY: every buffered pointer is a distinct object from `objects`.
        unsafe { r.flush(GROUP as u32, &mut rec) };
        assert!(r.is_empty());
        assert_eq!(rec.0.len(), 4, "one chain per (dst, bin)");
        for (dst, bin, v) in &rec.0 {
            assert_eq!(*bin, 9);
            assert_eq!(v.len(), GROUP / 4);
            for p in v {
                assert_eq!(o.iter().position(|q| q == p).unwrap() % 4, *dst as usize);
            }
        }
    }

    #[test]
    fn coalesced_entries_take_one_slot_and_hand_over_full_chains() {
        if !RING_COALESCE {
            return;
        }
        let mut r = ring();
        let mut rec = Rec(Vec::new());
        let max = RING_CHAIN_MAX as usize;
        let o = objects(3 * max + 5);
        for &p in &o {
            push(&mut r, 2, 5, p, &mut rec);
        }
        // Three full chains went over, each when the next object came; the rest waits in
        // the one entry.
        assert_eq!(r.len(), 1);
        assert_eq!(rec.0.len(), 3);
        assert!(rec
            .0
            .iter()
            .all(|(d, b, v)| (*d, *b, v.len()) == (2, 5, max)));
        // SAFETY: every buffered pointer is a distinct object from `objects`.
        assert_eq!(unsafe { r.flush(1, &mut rec) }, 5, "objects, not entries");
        assert!(r.is_empty());
        assert_eq!(rec.0.len(), 4);
        assert_eq!(rec.0[3].2.len(), 5);
        assert_eq!(rec.objects(), sorted(&o));
    }

    #[test]
    fn coalescing_never_joins_a_flushed_entry() {
        if !RING_COALESCE {
            return;
        }
        let mut r = ring();
        let mut rec = Rec(Vec::new());
        let o = objects(6);
        push(&mut r, 1, 1, o[0], &mut rec);
        push(&mut r, 1, 2, o[1], &mut rec);
        push(&mut r, 1, 1, o[2], &mut rec);
        assert_eq!(r.len(), 2);
        // SAFETY: every buffered pointer is a distinct object from `objects`.
        unsafe { r.flush(1, &mut rec) };
        assert_eq!(rec.0.len(), 1);
        assert_eq!(sorted(&rec.0[0].2), sorted(&[o[0], o[2]]));
        // Key (1, 1)'s hint points at the flushed slot, whose key the flush cleared: a new
        // entry is taken.
        push(&mut r, 1, 1, o[3], &mut rec);
        push(&mut r, 1, 2, o[4], &mut rec);
        push(&mut r, 1, 1, o[5], &mut rec);
        assert_eq!(r.len(), 2);
        // SAFETY: as above.
        unsafe { r.flush(u32::MAX, &mut rec) };
        assert_eq!(rec.objects(), sorted(&o));
        let chains: Vec<_> = rec.0.iter().map(|x| (x.0, x.1, sorted(&x.2))).collect();
        assert!(chains.contains(&(1, 2, sorted(&[o[1], o[4]]))));
        assert!(chains.contains(&(1, 1, sorted(&[o[3], o[5]]))));
    }

    #[test]
    fn wraps_around() {
        let mut r = ring();
        let mut rec = Rec(Vec::new());
        let o = objects(3 * RING_LEN);
        for (i, &p) in o.iter().enumerate() {
            if r.is_full() {
                // SAFETY: every buffered pointer is a distinct object from `objects`.
                unsafe { r.flush(5, &mut rec) };
            }
            push(&mut r, (i % 7) as u32, i % 50, p, &mut rec);
        }
        // SAFETY: as above.
        unsafe { r.flush(u32::MAX, &mut rec) };
        assert_eq!(rec.objects(), sorted(&o));
        for (dst, bin, v) in &rec.0 {
            for p in v {
                let i = o.iter().position(|q| q == p).unwrap();
                assert_eq!(((i % 7) as u32, i % 50), (*dst, *bin));
            }
        }
    }
}
