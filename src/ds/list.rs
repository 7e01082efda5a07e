//! Intrusive singly linked lists of free objects: the first word of a free object holds the
//! next pointer. Every free object is at least 16 bytes, so the second word is free too and a
//! list head may carry its length there (transfer-cache slots do, outside the hardened lane).
//!
//! Every read and write of a link goes through [`next`] and [`set_next`]. In the hardened lane
//! (`config::SECURE`) they encode it with the process's secret key and the link's own address
//! (`sys::secret`), and a decoded link that is not null, 16-byte aligned and inside the arena
//! aborts: a use-after-free write or an overflow into a free object is caught at the next
//! walk instead of handing out a forged pointer. [`set_next`] also marks the object free (a
//! secret word in its second word), so every object in a list carries the mark and a second
//! free of it is seen ([`is_free`]). In the other lanes all of this compiles away.

use crate::config::SECURE;
use crate::sys::{diag, secret};
use core::ptr::null_mut;
use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// The stored form of link `n` in the object at `slot` (hardened lane): keyed, and tied to its
/// address. The rotation moves a partial overwrite of the stored word's low bytes into the
/// link's high bits, out of the arena. Rotation by a constant: a key-dependent count would
/// cost a register move per link. (No added second key: a link copied from another object
/// decodes to `n' ^ slot' ^ slot` with or without it, an arena address that passes the
/// window test either way, and it cost an instruction on each hit path.)
#[inline(always)]
fn encode(slot: *mut u8, n: *mut u8) -> usize {
    ((n as usize) ^ (slot as usize) ^ secret::key()).rotate_left(17)
}

/// The link stored as `w` in the object at `slot`, as its offset from the window's start
/// (`link ^ secret::lo()`, so null is `lo`): the form the window test takes, in as many
/// instructions as the link itself.
#[inline(always)]
fn decode_x(slot: *mut u8, w: usize) -> usize {
    w.rotate_right(17) ^ (slot as usize) ^ secret::key_lo()
}

/// The link stored as `w` in the object at `slot`; aborts unless it is null, or 16-byte
/// aligned and inside the arena.
#[inline(always)]
fn decode(slot: *mut u8, w: usize) -> *mut u8 {
    let x = decode_x(slot, w);
    if !secret::in_window(x) {
        // Null (`x == lo`) fails the window test too: a bin's last object, once per refill.
        core::hint::cold_path();
        if x != secret::lo() {
            diag::fatal("corrupted free list (a freed block was written)", slot);
        }
    }
    (x ^ secret::lo()) as *mut u8
}

/// Next pointer of a free object.
///
/// # Safety
/// `p` is a free object owned by the caller's list.
#[inline(always)]
pub unsafe fn next(p: *mut u8) -> *mut u8 {
    // SAFETY: `p` is a free object owned by the caller's list (caller contract): at least 16
    // bytes, suitably aligned, and its first word is the link.
    let w = unsafe { *(p as *mut usize) };
    if SECURE {
        return decode(p, w);
    }
    w as *mut u8
}

/// Sets the link of free object `p`; in the hardened lane also marks it free.
///
/// # Safety
/// `p` is a free object owned by the caller.
#[inline(always)]
pub unsafe fn set_next(p: *mut u8, n: *mut u8) {
    // SAFETY: `p` is a free object owned by the caller (caller contract): at least 16 bytes,
    // suitably aligned, and nobody else reads or writes its words.
    unsafe {
        if SECURE {
            *(p as *mut usize) = encode(p, n);
            *(p as *mut usize).add(1) = secret::mark();
        } else {
            *(p as *mut usize) = n as usize;
        }
    }
}

/// Hardened lane: whether `p` carries the free mark (`secret::mark`, the same word for every
/// object: one compare with a register, where a mark tied to the address cost a load and an
/// `xor` more on each `free`): a second free of a block, since every object in a list was
/// marked by [`set_next`] (or when its run was made: [`mark_run`]), [`clear_mark`] removes
/// the mark when the block is handed out, and a live block's owner cannot write it without
/// knowing it (which needs a read of freed memory; then it only gets that block's `free`
/// refused). (No list keeps anything else in a free object's second word in this lane: the
/// transfer cache keeps a chain's length in its slot, the remote ring a chain's tail in a
/// table.)
///
/// # Safety
/// `p` is a 16-byte aligned block of at least 16 bytes in mapped memory.
#[inline(always)]
pub unsafe fn is_free(p: *mut u8) -> bool {
    // Atomic: on a double free another thread may own the object and be writing it; this
    // reads a word (any value will do), and the verdict only needs the mark to be there.
    // SAFETY: `p` has two readable words, 8-byte aligned (caller contract), accessed here
    // for the duration of the load only.
    let w = unsafe { AtomicUsize::from_ptr((p as *mut usize).add(1)) };
    w.load(Relaxed) == secret::mark()
}

/// Hardened lane: marks every object of a fresh run free, so a `free` of one the carve has
/// not reached yet is seen as a double free.
///
/// # Safety
/// `[run, run + n * size)` is a fresh run of the caller's, `size` a multiple of 16.
pub unsafe fn mark_run(run: *mut u8, n: usize, size: usize) {
    for i in 0..n {
        // SAFETY: object `i` lies in the run (caller contract) and is the caller's.
        unsafe {
            *(run.add(i * size) as *mut usize).add(1) = secret::mark();
        }
    }
}

/// Hardened lane: clears the mark and the encoded link of a block being handed out, so the
/// program never sees either.
///
/// # Safety
/// `p` is a free object the caller is handing out.
#[inline(always)]
pub unsafe fn clear_mark(p: *mut u8) {
    // SAFETY: `p` has two words and is the caller's (caller contract).
    unsafe {
        *(p as *mut usize) = 0;
        *(p as *mut usize).add(1) = 0;
    }
}

/// A detached list with its length; `tail` is valid when `n > 0`.
#[derive(Clone, Copy)]
pub struct Chain {
    pub head: *mut u8,
    pub tail: *mut u8,
    pub n: u32,
}

impl Chain {
    pub const EMPTY: Chain = Chain {
        head: null_mut(),
        tail: null_mut(),
        n: 0,
    };

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Splits off up to `want` objects from the front of the list starting at `head`
    /// (null-terminated). Returns the front chain and the rest.
    ///
    /// # Safety
    /// `head` starts a well-formed null-terminated free list owned by the caller.
    pub unsafe fn take(head: *mut u8, want: u32) -> (Chain, *mut u8) {
        if head.is_null() || want == 0 {
            return (Chain::EMPTY, head);
        }
        let mut tail = head;
        let mut n = 1;
        while n < want {
            // SAFETY: `tail` is a non-null member of the well-formed list the caller owns.
            let nx = unsafe { next(tail) };
            if nx.is_null() {
                break;
            }
            tail = nx;
            n += 1;
        }
        // SAFETY: `tail` is a non-null member of the caller's list; cutting after it leaves
        // two well-formed null-terminated lists, both still the caller's.
        let rest = unsafe {
            let rest = next(tail);
            set_next(tail, null_mut());
            rest
        };
        (Chain { head, tail, n }, rest)
    }

    /// Walks the chain once: the objects `keep` returns true for come back as a chain (in
    /// reverse order); the others are `keep`'s from the moment it is called on them (it may
    /// relink or hand them on: each link is read before).
    ///
    /// # Safety
    /// `self` is a well-formed chain of `n` objects the caller owns and nothing else
    /// references.
    pub unsafe fn retain(self, mut keep: impl FnMut(*mut u8) -> bool) -> Chain {
        let mut kept = LocalList::EMPTY;
        let mut tail = null_mut();
        let mut p = self.head;
        for _ in 0..self.n {
            // SAFETY: `p` is one of the chain's `n` objects (caller contract), not yet handed
            // to `keep`, so its link is intact.
            let nx = unsafe { next(p) };
            if keep(p) {
                if kept.count == 0 {
                    tail = p;
                }
                // SAFETY: `p` is the caller's alone and detached from the walk (its link was
                // read above).
                unsafe { kept.push(p) };
            }
            p = nx;
        }
        Chain {
            head: kept.head,
            tail,
            n: kept.count,
        }
    }

    /// Measures a whole null-terminated list.
    ///
    /// # Safety
    /// As for [`take`](Self::take).
    pub unsafe fn measure(head: *mut u8) -> Chain {
        // SAFETY: same contract as `take` (caller contract).
        unsafe { Chain::take(head, u32::MAX).0 }
    }
}

/// An owner-only list with a count (thread bins, central lists, spills).
#[repr(C)]
pub struct LocalList {
    pub head: *mut u8,
    pub count: u32,
}

impl LocalList {
    pub const EMPTY: LocalList = LocalList {
        head: null_mut(),
        count: 0,
    };

    /// # Safety
    /// `c` is a well-formed chain no other list references.
    pub unsafe fn push_chain(&mut self, c: Chain) {
        if c.n == 0 {
            return;
        }
        // SAFETY: `c.n > 0`, so `c.tail` is a free object of `c`, which no other list
        // references (caller contract).
        unsafe { set_next(c.tail, self.head) };
        self.head = c.head;
        self.count += c.n;
    }

    /// # Safety
    /// `p` is a free object no other list references.
    pub unsafe fn push(&mut self, p: *mut u8) {
        // SAFETY: `p` is a free object no other list references (caller contract).
        unsafe { set_next(p, self.head) };
        self.head = p;
        self.count += 1;
    }

    /// # Safety
    /// The list is well formed.
    #[cfg(test)]
    pub unsafe fn pop(&mut self) -> *mut u8 {
        let p = self.head;
        if !p.is_null() {
            // SAFETY: `p` is the non-null head of this well-formed list (caller contract).
            self.head = unsafe { next(p) };
            self.count -= 1;
        }
        p
    }

    /// Detaches up to `want` objects from the front.
    ///
    /// # Safety
    /// The list is well formed.
    pub unsafe fn take(&mut self, want: u32) -> Chain {
        // SAFETY: the list is well formed (caller contract) and owned by `self`.
        let (c, rest) = unsafe { Chain::take(self.head, want) };
        self.head = rest;
        // Saturating: a spill's count is only an estimate (see owner_stash).
        self.count = self.count.saturating_sub(c.n);
        c
    }

    /// Moves every object of `other` (exact count) into this list (exact count), walking only
    /// the shorter of the two to find a tail to link through.
    ///
    /// # Safety
    /// Both lists are well formed, their counts exact, and they share no object.
    pub unsafe fn append(&mut self, other: &mut LocalList) {
        if self.count < other.count {
            core::mem::swap(self, other);
        }
        // SAFETY: `other` is now the shorter list, well formed with an exact count (caller
        // contract).
        let c = unsafe { other.take_all() };
        // SAFETY: `c` was detached from `other` and shares no object with `self` (caller
        // contract).
        unsafe { self.push_chain(c) };
    }

    /// Detaches the whole list if it holds at most `whole` objects — without walking it, which
    /// matters when its objects are cold — else the first `want` (walking those).
    ///
    /// # Safety
    /// The list is well formed and `count` is exact.
    pub unsafe fn take_whole_or(&mut self, whole: u32, want: u32) -> LocalList {
        if self.count <= whole {
            return core::mem::replace(self, LocalList::EMPTY);
        }
        // SAFETY: the list is well formed (caller contract).
        let c = unsafe { self.take(want) };
        LocalList {
            head: c.head,
            count: c.n,
        }
    }

    /// Detaches everything.
    ///
    /// # Safety
    /// The list is well formed and `count` is exact.
    pub unsafe fn take_all(&mut self) -> Chain {
        // SAFETY: the list is well formed (caller contract).
        let c = unsafe { self.take(u32::MAX) };
        self.count = 0;
        c
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    extern crate std;
    use std::vec::Vec;

    /// Makes `n` 16-byte "objects" in a leaked buffer, linked in order.
    pub fn objects(n: usize) -> Vec<*mut u8> {
        let buf: &'static mut [[u64; 2]] = std::vec![[0u64; 2]; n].leak();
        buf.iter_mut().map(|o| o.as_mut_ptr() as *mut u8).collect()
    }

    /// Links `objs` in order into a chain.
    ///
    /// # Safety
    /// `objs` is non-empty and holds distinct unused objects from [`objects`].
    pub unsafe fn link(objs: &[*mut u8]) -> Chain {
        // SAFETY: `objs` are distinct unused 16-byte objects from `objects`.
        unsafe {
            for w in objs.windows(2) {
                set_next(w[0], w[1]);
            }
            set_next(objs[objs.len() - 1], null_mut());
        }
        Chain {
            head: objs[0],
            tail: objs[objs.len() - 1],
            n: objs.len() as u32,
        }
    }

    /// The objects of the null-terminated list starting at `p`, in order.
    ///
    /// # Safety
    /// `p` is null or the head of a well-formed null-terminated list.
    pub unsafe fn collect(mut p: *mut u8) -> Vec<*mut u8> {
        let mut v = Vec::new();
        while !p.is_null() {
            v.push(p);
            // SAFETY: `p` is a non-null member of a list built by `link`.
            p = unsafe { next(p) };
        }
        v
    }

    #[test]
    fn retain_splits_in_one_walk() {
        // SAFETY: the chain is built by `link` over objects from `objects`; `retain` hands the
        // objects it does not keep to the closure, which only records them.
        unsafe {
            let o = objects(9);
            let mut given = Vec::new();
            let kept = link(&o).retain(|p| {
                let i = o.iter().position(|&q| q == p).unwrap();
                if i % 3 == 0 {
                    return true;
                }
                given.push(p);
                false
            });
            assert_eq!(kept.n, 3);
            assert_eq!(collect(kept.head), [o[6], o[3], o[0]]);
            assert_eq!(kept.tail, o[0]);
            assert_eq!(given, [o[1], o[2], o[4], o[5], o[7], o[8]]);
            let none = link(&o).retain(|_| false);
            assert!(none.is_empty() && none.head.is_null());
            let all = link(&o).retain(|_| true);
            assert_eq!(all.n, 9);
            assert_eq!(collect(all.head).len(), 9);
        }
    }

    #[test]
    fn take_and_local_list() {
        // SAFETY: every list is built by `link` over objects from `objects`.
        unsafe {
            let o = objects(10);
            let c = link(&o);
            let (front, rest) = Chain::take(c.head, 4);
            assert_eq!(front.n, 4);
            assert_eq!(collect(front.head), &o[..4]);
            assert_eq!(front.tail, o[3]);
            assert_eq!(collect(rest), &o[4..]);
            let (all, none) = Chain::take(rest, 100);
            assert_eq!(all.n, 6);
            assert!(none.is_null());
            assert_eq!(Chain::take(null_mut(), 3).0.n, 0);

            let mut l = LocalList {
                head: null_mut(),
                count: 0,
            };
            l.push_chain(front);
            l.push_chain(all);
            assert_eq!(l.count, 10);
            assert_eq!(l.pop(), o[4]);
            let t = l.take(3);
            assert_eq!(t.n, 3);
            assert_eq!(l.count, 6);
            let mut big = LocalList {
                head: null_mut(),
                count: 0,
            };
            big.push_chain(link(&objects(5)));
            let mut small = LocalList {
                head: null_mut(),
                count: 0,
            };
            small.push_chain(l.take(2));
            small.append(&mut big);
            assert_eq!((small.count, big.count), (7, 0));
            assert!(big.head.is_null());
            assert_eq!(collect(small.head).len(), 7);
            l.append(&mut small);
            assert_eq!(collect(l.head).len() as u32, l.count);
            assert_eq!(l.count, 11);
            l.take(5);
            let big = l.take_whole_or(3, 2);
            assert_eq!((big.count, l.count), (2, 4));
            assert_eq!(collect(big.head).len(), 2);
            let mut l2 = LocalList {
                head: null_mut(),
                count: 0,
            };
            l2.push_chain(l.take(2));
            let whole = l2.take_whole_or(3, 1);
            assert_eq!((whole.count, l2.count), (2, 0));
            assert!(l2.head.is_null());
            let rest = l.take_all();
            assert_eq!(rest.n, 2);
            assert!(l.head.is_null());
            assert!(l.pop().is_null());
        }
    }
}
