//! Loom model-checked tests of the lock-free hand-offs: `MpscStack`, `OwnerStash` (every pop
//! variant), `TransferCache` (with one consumer, and with several as the shared pool uses it),
//! and the remote ring's flush into an owner stash; and of the locks' three-state futex
//! protocol (`sys::sync`, on a loom word with an emulated futex), including a heap's `busy`
//! lock as its owner and a decay pass that borrows the heap use it; and of the baton that
//! hands exiting threads' eager passes to the thread running them (`sys::sync::baton_ask`).
//!
//! What loom does not show (its README lists the gaps): it does not explore every execution
//! the C11 model allows. It runs the threads as one interleaving, in which no access reads
//! from a write that comes after it and an RMW always reads the latest value, so it never
//! produces an execution with a cycle of program order and reads-from (load buffering) or,
//! through RMWs, modification order. A hand-off that needs Release/Acquire only to forbid
//! such a cycle passes here even with Relaxed orderings: the transfer cache's occupancy bit
//! against its slot is that shape (with its `fetch_or` and `fetch_and` both Relaxed, these
//! models still pass). Loom also treats `SeqCst` accesses as `AcqRel` (false alarms, not
//! missed bugs; none is used here). So a passing model supports an ordering argument but does
//! not prove it: each structure's module doc states the argument in the C11 model.
//!
//! Compiled only under `--cfg loom` (then `crate::sys::atomics` is loom's). Run with
//!
//! ```text
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
//!     cargo test --release -p hakozuna --lib loom_tests -- --test-threads=1
//! ```
//!
//! A few seconds of model checking (7 s in CI on 2 cores, 2026-12-02) plus the build.
//! Each model's preemption bound is set below; `LOOM_MAX_PREEMPTIONS` overrides it (and the
//! other `LOOM_*` variables work as usual, e.g. `LOOM_LOG=1` to print a failing interleaving).
//! `--nocapture` shows each model's interleaving count and outcome set.
//!
//! Besides "every object arrives exactly once", each object carries a shadow
//! `loom::cell::UnsafeCell` that its producer writes before handing the object over and its
//! consumer reads on receipt, so loom also reports a hand-off whose Release/Acquire pairing
//! does not order the producer's writes (the object's links and contents) before the
//! consumer's reads. The intrusive links themselves are plain memory loom cannot see.

extern crate std;

use crate::ds::list::{next, Chain, LocalList};
use crate::ds::mpsc::MpscStack;
use crate::ds::owner_stash::{OwnerStash, PopMode};
use crate::ds::transfer_cache::TransferCache;
use crate::remote::ring::RemoteRing;
use crate::remote::Sink;
use crate::sys::sync::{self, LockWord, UNLOCKED};
use core::sync::atomic::Ordering::{self, Relaxed};
use loom::cell::UnsafeCell;
use loom::sync::atomic::AtomicUsize;
use loom::sync::Arc;
use loom::thread;
use std::boxed::Box;
use std::collections::BTreeSet;
use std::sync::Mutex;
use std::vec::Vec;

/// Runs `f` under loom with `bound` preemptions unless `LOOM_MAX_PREEMPTIONS` is set, and
/// returns the set of outcomes `f` reported across all explored interleavings (each model
/// reports e.g. how many objects its owner received while the producers were still running;
/// the tests assert that every possible value, from "nothing yet" to "everything already",
/// was explored, which guards against loom silently exploring too little, as in
/// tokio-rs/loom#392). Lowering `LOOM_MAX_PREEMPTIONS` below a model's bound may trip that.
fn model<F: Fn() -> u32 + Sync + Send + 'static>(bound: usize, f: F) -> BTreeSet<u32> {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(bound);
    }
    let out = std::sync::Arc::new(Mutex::new((0usize, BTreeSet::new())));
    let o = out.clone();
    b.check(move || {
        let r = f();
        let mut g = o.lock().unwrap();
        g.0 += 1;
        g.1.insert(r);
    });
    let g = out.lock().unwrap();
    // Shown with `--nocapture`.
    std::eprintln!(
        "loom: {} interleavings (preemption bound {:?}), outcomes {:?}",
        g.0,
        b.preemption_bound,
        g.1
    );
    g.1.clone()
}

const MAGIC: u64 = 0x6861_6b6f_0000_0000;

/// `n` 16-byte free objects for one model iteration, with a shadow cell each.
struct Objs {
    buf: *mut [[u64; 2]],
    shadow: Vec<UnsafeCell<u64>>,
    gate: AtomicUsize,
}

// SAFETY: the buffer is only reached through object pointers whose ownership the structures
// under test pass between threads; the shadow cells are loom-checked.
unsafe impl Send for Objs {}
// SAFETY: as for `Send`.
unsafe impl Sync for Objs {}

impl Drop for Objs {
    fn drop(&mut self) {
        // SAFETY: `buf` came from `Box::into_raw` and every thread using it has been joined.
        drop(unsafe { Box::from_raw(self.buf) });
    }
}

impl Objs {
    fn new(n: usize) -> Arc<Objs> {
        let buf = Box::into_raw(std::vec![[0u64; 2]; n].into_boxed_slice());
        Arc::new(Objs {
            buf,
            shadow: (0..n).map(|_| UnsafeCell::new(0)).collect(),
            gate: AtomicUsize::new(0),
        })
    }

    fn len(&self) -> usize {
        self.shadow.len()
    }

    fn ptr(&self, i: usize) -> *mut u8 {
        assert!(i < self.len());
        // SAFETY: `i < len` (asserted above), so the offset stays inside the buffer.
        unsafe { (self.buf as *mut [u64; 2]).add(i) as *mut u8 }
    }

    /// The index of an object pointer; panics on anything outside the buffer.
    fn index(&self, p: *mut u8) -> usize {
        let base = self.buf as *mut [u64; 2] as usize;
        let a = p as usize;
        assert!(
            a >= base && a < base + 16 * self.len() && (a - base).is_multiple_of(16),
            "foreign pointer {p:?} in a list"
        );
        (a - base) / 16
    }

    /// First step of every thread of a model: an RMW on a shared dummy, so loom's DPOR treats
    /// thread starts as racing and explores producers running before the owner's first
    /// (load-only) probe. Without it loom 0.7 never runs a producer ahead of the owner's
    /// `is_empty` loads (tokio-rs/loom#392: a new thread whose first access is a load is
    /// skipped), and the "concurrent" pops would only ever see empty structures.
    fn start(&self) {
        self.gate.fetch_add(1, Relaxed);
    }

    /// The producer's last write to object `i` before handing it over.
    fn produce(&self, i: usize) {
        // SAFETY: loom's cell pointer is valid; loom itself checks the access for races.
        self.shadow[i].with_mut(|v| unsafe { *v = MAGIC | i as u64 });
    }

    /// Produces objects `idx` and links them, in order, into a chain.
    unsafe fn chain(&self, idx: &[usize]) -> Chain {
        for &i in idx {
            self.produce(i);
        }
        let last = self.ptr(*idx.last().unwrap());
        // SAFETY: objects `idx` are this producer's own, not yet handed over (caller contract).
        unsafe {
            for w in idx.windows(2) {
                crate::ds::list::set_next(self.ptr(w[0]), self.ptr(w[1]));
            }
            crate::ds::list::set_next(last, core::ptr::null_mut());
        }
        Chain {
            head: self.ptr(idx[0]),
            tail: last,
            n: idx.len() as u32,
        }
    }
}

/// The consumer's record of received objects.
struct Seen {
    objs: Arc<Objs>,
    count: Vec<u32>,
}

impl Seen {
    fn new(objs: &Arc<Objs>) -> Seen {
        Seen {
            objs: objs.clone(),
            count: std::vec![0; objs.len()],
        }
    }

    /// Receives a null-terminated list; returns its length.
    unsafe fn list(&mut self, mut p: *mut u8) -> u32 {
        let mut n = 0;
        while !p.is_null() {
            let i = self.objs.index(p);
            // Must happen-after the producer's `produce(i)`; loom checks it.
            // SAFETY: loom's cell pointer is valid; loom itself checks the access for races.
            let v = self.objs.shadow[i].with(|v| unsafe { *v });
            assert_eq!(
                v,
                MAGIC | i as u64,
                "object {i} received before it was produced"
            );
            self.count[i] += 1;
            assert_eq!(self.count[i], 1, "object {i} received twice");
            n += 1;
            assert!(n as usize <= self.objs.len(), "cycle in a list");
            // SAFETY: `p` is a non-null member of a list we received (caller contract).
            p = unsafe { next(p) };
        }
        n
    }

    /// Receives a chain, checking its length and tail.
    unsafe fn chain(&mut self, c: Chain) {
        if c.n == 0 {
            assert!(c.head.is_null());
            return;
        }
        let mut t = c.head;
        // SAFETY: `c` is a non-empty null-terminated chain we received (caller contract).
        unsafe {
            while !next(t).is_null() {
                t = next(t);
            }
        }
        assert_eq!(t, c.tail, "chain tail is not the last object");
        // SAFETY: as above.
        assert_eq!(unsafe { self.list(c.head) }, c.n, "chain length mismatch");
    }

    /// Receives an owner list, checking its count.
    unsafe fn local(&mut self, l: LocalList) {
        // SAFETY: `l` is a null-terminated list we received (caller contract).
        assert_eq!(unsafe { self.list(l.head) }, l.count, "list count mismatch");
    }

    /// How many objects were received so far.
    fn total(&self) -> u32 {
        self.count.iter().sum()
    }

    fn all_once(&self) {
        for (i, &c) in self.count.iter().enumerate() {
            assert_eq!(c, 1, "object {i} lost");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// MpscStack

/// Producer A prepends chains [0, 1] and [2], producer B [3], while the consumer takes
/// everything twice; after the joins the consumer drains the rest. Every object exactly once, with its producer's writes visible.
#[test]
fn mpsc_push_vs_take_all() {
    let out = model(3, || {
        let objs = Objs::new(4);
        let st = Arc::new(MpscStack::new());
        let producers: Vec<_> = [&[0usize, 1][..], &[2], &[3]]
            .chunks(2)
            .map(|chunks| {
                let chunks: Vec<Vec<usize>> = chunks.iter().map(|c| c.to_vec()).collect();
                let (objs, st) = (objs.clone(), st.clone());
                // SAFETY: the producer links only its own objects, each handed over once.
                thread::spawn(move || unsafe {
                    objs.start();
                    for c in &chunks {
                        st.push(objs.chain(c));
                    }
                })
            })
            .collect();
        objs.start();
        let mut seen = Seen::new(&objs);
        for _ in 0..2 {
            // SAFETY: the list came out of the structure under test and is now ours.
            unsafe { seen.list(st.take_all()) };
        }
        let early = seen.total();
        for p in producers {
            p.join().unwrap();
        }
        // SAFETY: the list came out of the structure under test and is now ours.
        unsafe { seen.list(st.take_all()) };
        assert!(st.is_empty());
        seen.all_once();
        early
    });
    assert_eq!(out, BTreeSet::from([0, 1, 2, 3, 4]));
}

/// `inbox-steal`: a producer prepends chains [0, 1] and [2]; a thief on another thread takes
/// the whole stack, keeps its first object and restores the rest (as
/// `OwnedHeap::steal_inbox` does: one CAS while the stack is still empty, else it takes what
/// the producer pushed meanwhile and links it in front); the owner takes everything once, then
/// drains after the joins. Every object exactly once, with its producer's writes visible.
/// Returns how many objects the thief kept.
///
/// Bound 4: `restore`'s branch where its CAS is refused and the owner then empties the stack
/// before the thief's take (so the thief finds nothing and CASes again) takes four
/// preemptions here; at 3 a `restore` that dropped its list on that branch passed.
#[test]
fn mpsc_thief_vs_take_all() {
    let out = model(4, || {
        let objs = Objs::new(3);
        let st = Arc::new(MpscStack::new());
        let producer = {
            let (objs, st) = (objs.clone(), st.clone());
            // SAFETY: the producer links only its own objects, each handed over once.
            thread::spawn(move || unsafe {
                objs.start();
                st.push(objs.chain(&[0, 1]));
                st.push(objs.chain(&[2]));
            })
        };
        let thief = {
            let (objs, st) = (objs.clone(), st.clone());
            thread::spawn(move || {
                objs.start();
                let mut seen = Seen::new(&objs);
                let all = st.take_all();
                // SAFETY: the list came out of the structure under test and is now ours; the
                // rest goes back with `restore`.
                unsafe {
                    let (got, rest) = Chain::take(all, 1);
                    if !rest.is_null() {
                        st.restore(rest);
                    }
                    seen.chain(got);
                }
                seen.count
            })
        };
        objs.start();
        let mut seen = Seen::new(&objs);
        // SAFETY: the list came out of the structure under test and is now ours.
        unsafe { seen.list(st.take_all()) };
        producer.join().unwrap();
        let kept = thief.join().unwrap();
        let mut got = 0;
        for (c, t) in seen.count.iter_mut().zip(&kept) {
            *c += t;
            got += t;
            assert!(*c <= 1, "an object reached both the owner and the thief");
        }
        // SAFETY: every other thread is joined; the list is now ours.
        unsafe { seen.list(st.take_all()) };
        assert!(st.is_empty());
        seen.all_once();
        got
    });
    // The thief found nothing or kept one object.
    assert_eq!(out, BTreeSet::from([0, 1]));
}

// ---------------------------------------------------------------------------------------------
// OwnerStash

const ORIGINAL: PopMode = PopMode {
    fastpop: false,
    spill: false,
    count: false,
};
const FASTPOP: PopMode = PopMode {
    fastpop: true,
    spill: false,
    count: false,
};
const FASTPOP_COUNT: PopMode = PopMode {
    fastpop: true,
    spill: false,
    count: true,
};
const SPILL: PopMode = PopMode {
    fastpop: false,
    spill: true,
    count: false,
};
const SPILL_COUNT: PopMode = PopMode {
    fastpop: true,
    spill: true,
    count: true,
};

/// Owner-side drain: pops `want` (or `whole`) at a time until both the spill and the stash
/// are empty.
unsafe fn drain(
    s: &OwnerStash,
    spill: &mut LocalList,
    want: u32,
    whole: u32,
    mode: PopMode,
    seen: &mut Seen,
) {
    loop {
        // SAFETY: this thread is the stash's only consumer and owns `spill` (caller contract).
        let p = unsafe { s.pop_batch(spill, want, whole, mode) };
        if p.list.count == 0 {
            break;
        }
        assert!(p.list.count <= if mode.count { want.max(whole) } else { want });
        assert!(!p.from_spill || mode.spill);
        // SAFETY: the popped list is null-terminated and now ours.
        unsafe { seen.local(p.list) };
    }
    assert!(s.is_empty() && spill.head.is_null());
}

/// The stash models: each producer pushes its chains (lists of object indices) in order while
/// the owner pops `pops` times with `want = 1`, `whole = 2` (so pops leave a remainder to push
/// back or spill, and counted pops take up to two whole), then drains with `drain_want` after
/// the joins. Returns the set of object counts the owner could see before the joins.
fn stash_model(
    mode: PopMode,
    bound: usize,
    producers: &'static [&'static [&'static [usize]]],
    pops: usize,
    drain_want: u32,
) -> BTreeSet<u32> {
    let total = producers
        .iter()
        .flat_map(|p| p.iter())
        .map(|c| c.len())
        .sum();
    model(bound, move || {
        let objs = Objs::new(total);
        let s = Arc::new(OwnerStash::new());
        let threads: Vec<_> = producers
            .iter()
            .map(|&chains| {
                let (objs, s) = (objs.clone(), s.clone());
                // SAFETY: the producer links only its own objects, each handed over once.
                thread::spawn(move || unsafe {
                    objs.start();
                    for &c in chains {
                        assert!(s.push_list(objs.chain(c), mode, 0).is_ok());
                    }
                })
            })
            .collect();
        objs.start();
        let mut seen = Seen::new(&objs);
        let mut spill = LocalList::EMPTY;
        for _ in 0..pops {
            // SAFETY: this thread is the only consumer and owns `spill`.
            let p = unsafe { s.pop_batch(&mut spill, 1, 2, mode) };
            assert!(p.list.count <= if mode.count { 2 } else { 1 });
            // SAFETY: the list came out of the structure under test and is now ours.
            unsafe { seen.local(p.list) };
        }
        let early = seen.total();
        for t in threads {
            t.join().unwrap();
        }
        // SAFETY: producers are joined; this thread is the only consumer and owns `spill`.
        unsafe { drain(&s, &mut spill, drain_want, 2, mode, &mut seen) };
        seen.all_once();
        early
    })
}

/// Producer A pushes a chain of 2, producer B a chain of 1; the owner pops twice concurrently,
/// then drains one at a time.
fn stash_pop_vs_push(mode: PopMode, bound: usize) {
    let out = stash_model(mode, bound, &[&[&[0, 1]], &[&[2]]], 2, 1);
    let expect = if mode.count { 0..=3 } else { 0..=2 };
    assert_eq!(out, expect.collect::<BTreeSet<u32>>(), "{mode:?}");
}

#[test]
fn stash_original() {
    stash_pop_vs_push(ORIGINAL, 4);
}

#[test]
fn stash_fastpop() {
    stash_pop_vs_push(FASTPOP, 4);
}

#[test]
fn stash_fastpop_count() {
    stash_pop_vs_push(FASTPOP_COUNT, 4);
}

#[test]
fn stash_spill() {
    stash_pop_vs_push(SPILL, 4);
}

#[test]
fn stash_spill_fastpop_count() {
    stash_pop_vs_push(SPILL_COUNT, 4);
}

/// Two producers each push two single-object chains while the owner pops once (the remainder
/// push-back then races more pushes), then drains with a larger `want`.
fn stash_many_pushes(mode: PopMode, bound: usize) {
    let out = stash_model(mode, bound, &[&[&[0], &[1]], &[&[2], &[3]]], 1, 2);
    let expect = if mode.count { 0..=2 } else { 0..=1 };
    assert_eq!(out, expect.collect::<BTreeSet<u32>>(), "{mode:?}");
}

#[test]
fn stash_many_pushes_all_modes() {
    for mode in [ORIGINAL, FASTPOP, FASTPOP_COUNT, SPILL] {
        stash_many_pushes(mode, 3);
    }
}

/// `stash-steal`: a producer pushes chains of 2 and 1 while the owner pops once (spill mode)
/// and a thief on another thread steals once; the owner then drains. The thief's swap races
/// the owner's swap and both push-backs: no object may be received twice or lost. Returns
/// how many objects the thief got.
#[test]
fn stash_steal_vs_owner_pop() {
    let mode = SPILL_COUNT;
    let out = model(3, move || {
        let objs = Objs::new(3);
        let s = Arc::new(OwnerStash::new());
        let producer = {
            let (objs, s) = (objs.clone(), s.clone());
            // SAFETY: the producer links only its own objects, each handed over once.
            thread::spawn(move || unsafe {
                objs.start();
                assert!(s.push_list(objs.chain(&[0, 1]), mode, 0).is_ok());
                assert!(s.push_list(objs.chain(&[2]), mode, 0).is_ok());
            })
        };
        let thief = {
            let (objs, s) = (objs.clone(), s.clone());
            thread::spawn(move || {
                objs.start();
                let mut seen = Seen::new(&objs);
                // SAFETY: any thread may steal; the list is now ours.
                let l = unsafe { s.steal(1, 2, mode) };
                assert!(l.count <= 2);
                // SAFETY: the list came out of the structure under test and is now ours.
                unsafe { seen.local(l) };
                seen.count
            })
        };
        objs.start();
        let mut seen = Seen::new(&objs);
        let mut spill = LocalList::EMPTY;
        // SAFETY: this thread is the owner (the only popping consumer) and owns `spill`.
        let p = unsafe { s.pop_batch(&mut spill, 1, 2, mode) };
        // SAFETY: the popped list is null-terminated and now ours.
        unsafe { seen.local(p.list) };
        producer.join().unwrap();
        let stolen = thief.join().unwrap();
        let mut got = 0;
        for (c, t) in seen.count.iter_mut().zip(&stolen) {
            *c += t;
            got += t;
            assert!(*c <= 1, "an object reached both the owner and the thief");
        }
        // SAFETY: every other thread is joined; this thread is the owner and owns `spill`.
        unsafe { drain(&s, &mut spill, 1, 2, mode, &mut seen) };
        seen.all_once();
        got
    });
    // The thief found nothing, a single chain, or everything (counted, at most `whole`).
    assert_eq!(out, BTreeSet::from([0, 1, 2]));
}

// ---------------------------------------------------------------------------------------------
// TransferCache

/// Takes every chain left in `t`, checking each with `seen`.
fn drain_xfer<const N: usize>(t: &TransferCache<N>, seen: &mut Seen) {
    loop {
        let l = t.pop();
        if l.head.is_null() {
            break;
        }
        // SAFETY: the list came out of the structure under test and is now ours.
        assert_eq!(unsafe { seen.list(l.head) }, l.count);
    }
}

/// A producer parks two chains (2 and 1 objects) in an empty cache while the owner pops twice
/// concurrently; the owner then drains. Checks the park/take hand-off (links and the length in
/// the head's second word are visible to the owner) and that nothing is lost or duplicated.
#[test]
fn transfer_cache_park_vs_concurrent_pop() {
    let out = model(4, || {
        let objs = Objs::new(3);
        let t = Arc::new(<TransferCache>::new());
        let producer = {
            let (objs, t) = (objs.clone(), t.clone());
            // SAFETY: the producer links only its own objects, each handed over once.
            thread::spawn(move || unsafe {
                objs.start();
                assert!(t.push(objs.chain(&[0, 1])).is_ok());
                assert!(t.push(objs.chain(&[2])).is_ok());
            })
        };
        objs.start();
        let mut seen = Seen::new(&objs);
        for _ in 0..2 {
            let l = t.pop();
            // SAFETY: the list came out of the structure under test and is now ours.
            assert_eq!(unsafe { seen.list(l.head) }, l.count);
        }
        let early = seen.total();
        producer.join().unwrap();
        drain_xfer(&t, &mut seen);
        seen.all_once();
        early
    });
    // 1 is not reachable: the chains take the lowest free slots in order, and a take reads the
    // occupancy word once and tries its bits lowest first, so it cannot see the second chain's
    // bit without the first's.
    assert_eq!(out, BTreeSet::from([0, 2, 3]));
}

/// All but one slot are pre-filled; a producer parks two chains while the owner pops once.
/// The second park is refused unless the pop freed a slot first; a refused chain must come back
/// intact. Everything is received exactly once (from a pop, or as the refused chain).
#[test]
fn transfer_cache_refusal_vs_pop() {
    use crate::config::TRANSFER_SLOTS;
    let out = model(4, || {
        let pre = TRANSFER_SLOTS - 1;
        // Pre-filled chains of 1, then chains X = [pre, pre+1] and Y = [pre+2, pre+3].
        let objs = Objs::new(pre + 4);
        let t = Arc::new(<TransferCache>::new());
        for i in 0..pre {
            // SAFETY: pre-filled chains of distinct objects, each handed over once.
            unsafe { assert!(t.push(objs.chain(&[i])).is_ok()) };
        }
        let producer = {
            let (objs, t) = (objs.clone(), t.clone());
            // SAFETY: the producer links only its own objects, each handed over once.
            thread::spawn(move || unsafe {
                objs.start();
                let x = objs.chain(&[pre, pre + 1]);
                assert!(t.push(x).is_ok(), "a free slot refused X");
                let y = objs.chain(&[pre + 2, pre + 3]);
                match t.push(y) {
                    Ok(()) => None,
                    Err(back) => {
                        assert!(back.head == y.head && back.tail == y.tail && back.n == y.n);
                        Some((back.head as usize, back.tail as usize, back.n))
                    }
                }
            })
        };
        objs.start();
        let mut seen = Seen::new(&objs);
        let l = t.pop();
        // SAFETY: the list came out of the structure under test and is now ours.
        let n = unsafe { seen.list(l.head) };
        assert_eq!(n, l.count);
        let refused = producer.join().unwrap();
        if let Some((h, tl, n)) = refused {
            // The refused chain is intact: its links, tail and length are unchanged.
            // SAFETY: the refused chain came back to the producer intact; it is now ours.
            unsafe {
                seen.chain(Chain {
                    head: h as *mut u8,
                    tail: tl as *mut u8,
                    n,
                })
            };
        }
        drain_xfer(&t, &mut seen);
        seen.all_once();
        refused.is_some() as u32
    });
    // Both a refused and an accepted second park were explored.
    assert_eq!(out, BTreeSet::from([0, 1]));
}

/// Two producers race for the last free slot: exactly one wins, the other gets its chain back.
#[test]
fn transfer_cache_last_slot_race() {
    use crate::config::TRANSFER_SLOTS;
    let out = model(4, || {
        let pre = TRANSFER_SLOTS - 1;
        let objs = Objs::new(pre + 2);
        let t = Arc::new(<TransferCache>::new());
        for i in 0..pre {
            // SAFETY: pre-filled chains of distinct objects, each handed over once.
            unsafe { assert!(t.push(objs.chain(&[i])).is_ok()) };
        }
        let racers: Vec<_> = [pre, pre + 1]
            .into_iter()
            .map(|i| {
                let (objs, t) = (objs.clone(), t.clone());
                // SAFETY: the producer links only its own objects, each handed over once.
                thread::spawn(move || unsafe {
                    objs.start();
                    let c = objs.chain(&[i]);
                    t.push(c).err().map(|b| {
                        assert!(b.head == c.head && b.tail == c.tail && b.n == 1);
                        b.head as usize
                    })
                })
            })
            .collect();
        let back: Vec<usize> = racers
            .into_iter()
            .filter_map(|r| r.join().unwrap())
            .collect();
        assert_eq!(back.len(), 1, "exactly one racer is refused");
        let mut seen = Seen::new(&objs);
        // SAFETY: the list came out of the structure under test and is now ours.
        unsafe { seen.list(back[0] as *mut u8) };
        drain_xfer(&t, &mut seen);
        seen.all_once();
        objs.index(back[0] as *mut u8) as u32 - pre as u32
    });
    // Either racer can lose.
    assert_eq!(out, BTreeSet::from([0, 1]));
}

/// The shared pool's use of the slots: several consumers. One chain is parked before the
/// model; a producer parks a second while two consumers pop once each. Each consumer checks
/// the hand-off of what it took (links, length, the producer's writes); together they must
/// never receive an object twice, and a final drain must find the rest. (This model also
/// fails if a take clears a slot's occupancy bit after its swap instead of before: a chain
/// parked in between is stranded.)
#[test]
fn transfer_cache_two_consumers() {
    let out = model(3, || {
        let objs = Objs::new(3);
        let t = Arc::new(<TransferCache>::new());
        // SAFETY: a pre-parked chain of distinct objects, handed over once.
        unsafe { assert!(t.push(objs.chain(&[0, 1])).is_ok()) };
        let producer = {
            let (objs, t) = (objs.clone(), t.clone());
            // SAFETY: the producer links only its own object, handed over once.
            thread::spawn(move || unsafe {
                objs.start();
                assert!(t.push(objs.chain(&[2])).is_ok());
            })
        };
        let consumers: Vec<_> = (0..2)
            .map(|_| {
                let (objs, t) = (objs.clone(), t.clone());
                thread::spawn(move || {
                    objs.start();
                    let mut seen = Seen::new(&objs);
                    let l = t.pop();
                    // SAFETY: the list came out of the structure under test and is now ours.
                    assert_eq!(unsafe { seen.list(l.head) }, l.count);
                    seen.count
                })
            })
            .collect();
        let got: Vec<Vec<u32>> = consumers.into_iter().map(|c| c.join().unwrap()).collect();
        producer.join().unwrap();
        let mut seen = Seen::new(&objs);
        for (i, c) in seen.count.iter_mut().enumerate() {
            *c = got[0][i] + got[1][i];
            assert!(*c <= 1, "object {i} taken by both consumers");
        }
        let early = seen.total();
        drain_xfer(&t, &mut seen);
        seen.all_once();
        early
    });
    // The pre-parked pair always reaches a consumer; the producer's object only sometimes.
    assert_eq!(out, BTreeSet::from([2, 3]));
}

// ---------------------------------------------------------------------------------------------
// RemoteRing flush → OwnerStash

struct StashSink<'a> {
    stash: &'a OwnerStash,
    mode: PopMode,
    sent: u32,
}

impl Sink for StashSink<'_> {
    fn send(&mut self, dst: u32, bin: usize, chain: Chain) {
        assert_eq!((dst, bin), (5, 3));
        self.sent += chain.n;
        // SAFETY: the ring hands over chains of objects it owned.
        unsafe { assert!(self.stash.push_list(chain, self.mode, 0).is_ok()) };
    }
}

/// A remote thread buffers four frees for one destination in its ring and flushes them in
/// three hand-offs (budget 1, 1, then the last two grouped into one chain) while the owner pops
/// `want = 1` twice concurrently (so a push-back or spill can race a later flush).
/// The ring's key for (heap 5, bin 3): the page tag of such an object.
const KEY53: u32 = crate::page::page_tag::encode(5, 3);

/// Buffers one free of (heap 5, bin 3) the way the free path does: join a live entry, or take
/// a new one. Four objects never fill a chain, so nothing is handed over here.
///
/// # Safety
/// `p` is a free object of (heap 5, bin 3), now owned by the ring; the ring is not full.
unsafe fn buffer(ring: &mut RemoteRing, p: *mut u8) {
    use crate::remote::Push;
    // SAFETY: as the caller guarantees.
    match unsafe { ring.push(KEY53, p) } {
        Push::Done => {}
        // SAFETY: as the caller guarantees.
        Push::NoEntry => assert!(matches!(unsafe { ring.push_new(KEY53, p) }, Push::Done)),
        Push::Send(_) => panic!("a chain of at most four objects is never full"),
    }
}

fn ring_flush_vs_pop(mode: PopMode, bound: usize) {
    let out = model(bound, move || {
        let objs = Objs::new(4);
        let s = Arc::new(OwnerStash::new());
        let remote = {
            let (objs, s) = (objs.clone(), s.clone());
            // SAFETY: the producer links only its own objects, each handed over once.
            thread::spawn(move || unsafe {
                objs.start();
                // SAFETY: all-zero is the documented empty ring.
                let mut ring: Box<RemoteRing> = Box::new(core::mem::zeroed());
                let mut sink = StashSink {
                    stash: &s,
                    mode,
                    sent: 0,
                };
                // Each push follows the previous flush, so even a coalescing ring holds one
                // object per hand-off until the last two, which go as one chain either way
                // (one coalesced entry, or two entries grouped by the flush).
                for i in 0..2 {
                    objs.produce(i);
                    buffer(&mut ring, objs.ptr(i));
                    assert_eq!(ring.flush(1, &mut sink), 1);
                }
                for i in 2..4 {
                    objs.produce(i);
                    buffer(&mut ring, objs.ptr(i));
                }
                assert_eq!(ring.flush(u32::MAX, &mut sink), 2);
                assert!(ring.is_empty());
                assert_eq!(sink.sent, 4);
            })
        };
        objs.start();
        let mut seen = Seen::new(&objs);
        let mut spill = LocalList::EMPTY;
        for _ in 0..2 {
            // SAFETY: this thread is the only consumer and owns `spill`.
            let p = unsafe { s.pop_batch(&mut spill, 1, 1, mode) };
            // SAFETY: the list came out of the structure under test and is now ours.
            unsafe { seen.local(p.list) };
        }
        let early = seen.total();
        remote.join().unwrap();
        // SAFETY: producers are joined; this thread is the only consumer and owns `spill`.
        unsafe { drain(&s, &mut spill, 1, 1, mode, &mut seen) };
        seen.all_once();
        early
    });
    assert_eq!(out, BTreeSet::from([0, 1, 2]), "{mode:?}");
}

#[test]
fn ring_flush_configured_mode() {
    ring_flush_vs_pop(PopMode::CONFIGURED, 4);
}

#[test]
fn ring_flush_other_modes() {
    ring_flush_vs_pop(ORIGINAL, 4);
    ring_flush_vs_pop(FASTPOP, 4);
    ring_flush_vs_pop(FASTPOP_COUNT, 4);
}

// ---------------------------------------------------------------------------------------------
// The lock's three-state futex protocol (`sys::sync`)

/// A loom lock word with an emulated futex. `wait` reads the word with an RMW (the latest value,
/// as the kernel's check does) and sleeps on a condition variable under one mutex; `wake_one`
/// notifies under the same mutex. So a check-then-sleep and a wake are atomic with respect to
/// each other, which is what FUTEX_WAIT guarantees (futex(2)); a lost wake shows as a loom
/// deadlock.
struct LoomWord<const SPINS: u32> {
    word: loom::sync::atomic::AtomicU32,
    futex: loom::sync::Mutex<()>,
    sleepers: loom::sync::Condvar,
    /// Times a waiter went to sleep (the model's outcome: both 0 and more must be explored).
    slept: AtomicUsize,
}

impl<const SPINS: u32> LoomWord<SPINS> {
    fn new() -> Self {
        LoomWord {
            word: loom::sync::atomic::AtomicU32::new(UNLOCKED),
            futex: loom::sync::Mutex::new(()),
            sleepers: loom::sync::Condvar::new(),
            slept: AtomicUsize::new(0),
        }
    }
}

impl<const SPINS: u32> LockWord for LoomWord<SPINS> {
    const SPINS: u32 = SPINS;
    fn compare_exchange(&self, c: u32, n: u32, s: Ordering, f: Ordering) -> Result<u32, u32> {
        self.word.compare_exchange(c, n, s, f)
    }
    fn swap(&self, v: u32, o: Ordering) -> u32 {
        self.word.swap(v, o)
    }
    fn load(&self, o: Ordering) -> u32 {
        self.word.load(o)
    }
    fn wait(&self, expected: u32) {
        let g = self.futex.lock().unwrap();
        if self
            .word
            .compare_exchange(expected, expected, Relaxed, Relaxed)
            .is_ok()
        {
            self.slept.fetch_add(1, Relaxed);
            drop(self.sleepers.wait(g).unwrap());
        }
    }
    fn wake_one(&self) {
        let _g = self.futex.lock().unwrap();
        self.sleepers.notify_one();
    }
    fn spin_hint() {
        loom::hint::spin_loop();
    }
}

/// `threads` threads each take the lock `rounds` times and increment a loom cell inside it:
/// loom reports any two critical sections not ordered by happens-before (a lost mutual
/// exclusion or a missing Acquire/Release), and a waiter left asleep as a deadlock. Returns
/// whether any waiter slept.
fn futex_lock_model<const SPINS: u32>(threads: usize, rounds: u32, bound: usize) {
    let out = model(bound, move || {
        let shared = Arc::new((LoomWord::<SPINS>::new(), UnsafeCell::new(0u32)));
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                let s = shared.clone();
                thread::spawn(move || {
                    for _ in 0..rounds {
                        sync::lock(&s.0);
                        // SAFETY: loom's cell pointer is valid; loom checks the access for races.
                        s.1.with_mut(|v| unsafe { *v += 1 });
                        // SAFETY: we hold the lock taken just above.
                        unsafe { sync::unlock(&s.0) };
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        // SAFETY: loom's cell pointer is valid; every other thread has been joined.
        assert_eq!(shared.1.with(|v| unsafe { *v }), threads as u32 * rounds);
        assert_eq!(shared.0.word.load(Relaxed), UNLOCKED);
        (shared.0.slept.load(Relaxed) > 0) as u32
    });
    // Both runs where every waiter got the lock while spinning and runs where one slept.
    assert_eq!(out, BTreeSet::from([0, 1]));
}

#[test]
fn futex_lock_two_threads() {
    futex_lock_model::<1>(2, 2, 3);
}

#[test]
fn futex_lock_three_threads() {
    futex_lock_model::<0>(3, 1, 3);
}

/// The heap `busy` lock's borrow (`heap::registry`): an owner that takes the lock for each of
/// its slow paths against a decay pass that only tries it and, when it gets it, works on the
/// same local data. Each side's accesses to the cell must be ordered (loom reports a race
/// otherwise), the owner must never be refused, and both outcomes occur: the pass borrowing
/// and the pass finding the owner busy.
#[test]
fn heap_borrow_vs_owner() {
    let out = model(3, || {
        let shared = Arc::new((LoomWord::<1>::new(), UnsafeCell::new(0u32)));
        let lender = {
            let s = shared.clone();
            thread::spawn(move || {
                if sync::try_lock(&s.0) {
                    // SAFETY: loom's cell pointer is valid; loom checks the access for races.
                    s.1.with_mut(|v| unsafe { *v += 10 });
                    // SAFETY: we hold the lock `try_lock` took.
                    unsafe { sync::unlock(&s.0) };
                    1
                } else {
                    0
                }
            })
        };
        for _ in 0..2 {
            sync::lock(&shared.0);
            // SAFETY: as above.
            shared.1.with_mut(|v| unsafe { *v += 1 });
            // SAFETY: we hold the lock taken just above.
            unsafe { sync::unlock(&shared.0) };
        }
        let lent = lender.join().unwrap();
        // SAFETY: loom's cell pointer is valid; the other thread has been joined.
        assert_eq!(shared.1.with(|v| unsafe { *v }), 2 + 10 * lent);
        assert_eq!(shared.0.word.load(Relaxed), UNLOCKED);
        lent
    });
    assert_eq!(out, BTreeSet::from([0, 1]));
}

/// The eager passes' baton (`sys::sync::baton_ask`, `baton_done`; `heap::registry::trim_eager`):
/// `threads` threads each publish a value (Relaxed, as a thread's frees and heap release are
/// ordered only by the baton) and ask for a pass; a thread that becomes the runner passes,
/// reading every value, until `baton_done` lets it stop. Once all have finished, some pass
/// must have read every thread's value: a request left to a runner that then stopped without
/// passing again, or a pass that could read a requester's value stale, fails here. Outcome:
/// requests left to a runner (from none to all but the first).
fn baton_model(threads: usize, bound: usize) {
    let out = model(bound, move || {
        let shared = Arc::new((
            LoomWord::<1>::new(),
            (0..threads)
                .map(|_| loom::sync::atomic::AtomicU32::new(0))
                .collect::<Vec<_>>(),
            (0..threads)
                .map(|_| loom::sync::atomic::AtomicU32::new(0))
                .collect::<Vec<_>>(),
        ));
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                let s = shared.clone();
                thread::spawn(move || {
                    s.1[t].store(1, Relaxed);
                    if !sync::baton_ask(&s.0) {
                        return 1;
                    }
                    loop {
                        for i in 0..s.1.len() {
                            if s.1[i].load(Relaxed) == 1 {
                                s.2[i].store(1, Relaxed);
                            }
                        }
                        if sync::baton_done(&s.0) {
                            return 0;
                        }
                    }
                })
            })
            .collect();
        let left: u32 = hs.into_iter().map(|h| h.join().unwrap()).sum();
        for i in 0..threads {
            assert_eq!(
                shared.2[i].load(Relaxed),
                1,
                "thread {i}'s request was lost"
            );
        }
        assert_eq!(shared.0.word.load(Relaxed), sync::BATON_IDLE);
        left
    });
    assert_eq!(out, (0..threads as u32).collect::<BTreeSet<u32>>());
}

#[test]
fn baton_two_threads() {
    baton_model(2, 3);
}

#[test]
fn baton_three_threads() {
    baton_model(3, 2);
}
