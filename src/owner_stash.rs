//! The owner stash (S44): per (heap, small bin) MPSC stack receiving remote frees, popped in
//! batches by the owner on an allocation miss. The seeds' evolution is selectable:
//!
//! - original: take everything, keep `want`, walk the rest to its tail and push it back;
//! - FASTPOP (S44-3): push the rest back with one CAS when the head is still empty;
//! - COUNT: an approximate object count, needed only for the STASH_MAX_OBJS cap;
//! - spill (S48): never push back; leftovers go to an owner-only spill consumed first.

use crate::atomics::AtomicU32;
use crate::config;
use crate::list::{Chain, LocalList};
use crate::mpsc::MpscStack;
use core::sync::atomic::Ordering::*;

/// Which pop variant to run; the allocator passes the configured one, tests pass each.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PopMode {
    pub fastpop: bool,
    pub spill: bool,
    pub count: bool,
}

impl PopMode {
    pub const CONFIGURED: PopMode = PopMode {
        fastpop: config::STASH_FASTPOP,
        spill: config::STASH_SPILL,
        count: config::STASH_COUNT,
    };
}

#[repr(C)]
pub struct OwnerStash {
    stack: MpscStack,
    count: AtomicU32,
}

/// What a pop took and where it came from (for statistics).
pub struct Popped {
    pub chain: Chain,
    pub from_spill: bool,
}

impl OwnerStash {
    #[cfg(any(test, loom))]
    pub fn new() -> Self {
        OwnerStash {
            stack: MpscStack::new(),
            count: AtomicU32::new(0),
        }
    }

    /// `push_list(owner, bin, head, tail, n)`: prepends a chain (any thread). Returns the chain
    /// back if the cap refuses it.
    ///
    /// # Safety
    /// `c` is a well-formed non-empty chain of free objects of this stash's bin and heap.
    pub unsafe fn push_list(&self, c: Chain, mode: PopMode, cap: u32) -> Result<(), Chain> {
        if mode.count && cap > 0 && self.count.load(Relaxed) >= cap {
            return Err(c);
        }
        // SAFETY: `c` is a well-formed non-empty chain the caller owns (caller contract).
        unsafe { self.stack.push(c) };
        if mode.count {
            self.count.fetch_add(c.n, Relaxed);
        }
        Ok(())
    }

    /// `pop_batch(owner, bin, out, want)`: up to `want` objects (owner only). `spill` is the
    /// owner's heap-resident spill for this bin, used when `mode.spill`.
    ///
    /// # Safety
    /// Called only by the heap's single consuming thread; `spill` belongs to that thread.
    pub unsafe fn pop_batch(&self, spill: &mut LocalList, want: u32, mode: PopMode) -> Popped {
        if mode.spill && !spill.head.is_null() {
            return Popped {
                // SAFETY: the spill is the consumer's own well-formed list (caller contract).
                chain: unsafe { spill.take(want) },
                from_spill: true,
            };
        }
        let all = self.stack.take_all();
        if all.is_null() {
            return Popped {
                chain: Chain::EMPTY,
                from_spill: false,
            };
        }
        let seen = if mode.count {
            self.count.swap(0, Relaxed)
        } else {
            0
        };
        // SAFETY: `all` is a null-terminated list the swap made exclusively ours.
        let (chain, rest) = unsafe { Chain::take(all, want) };
        if !rest.is_null() {
            if mode.spill {
                spill.head = rest;
                spill.count = seen.saturating_sub(chain.n);
            } else {
                // SAFETY: `rest` is the non-empty null-terminated remainder of our list.
                let back = unsafe { Chain::measure(rest) };
                // SAFETY: `back` is a well-formed non-empty chain we own whose tail link is null,
                // as both pushes require; ownership passes back to the stack.
                unsafe {
                    let pushed_fast = mode.fastpop && self.stack.push_if_empty(back);
                    if !pushed_fast {
                        self.stack.push(back);
                    }
                }
                if mode.count {
                    self.count.fetch_add(back.n, Relaxed);
                }
            }
        }
        Popped {
            chain,
            from_spill: false,
        }
    }

    /// Everything in the stash (owner only): used when pops are switched off and at adoption.
    pub fn take_all(&self) -> *mut u8 {
        let p = self.stack.take_all();
        if !p.is_null() {
            self.count.store(0, Relaxed);
        }
        p
    }

    pub fn approx_count(&self) -> u32 {
        self.count.load(Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.stack.is_empty()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::list::tests::{collect, link, objects};
    extern crate std;
    use std::collections::HashSet;
    use std::vec::Vec;

    const MODES: [PopMode; 5] = [
        PopMode {
            fastpop: false,
            spill: false,
            count: false,
        },
        PopMode {
            fastpop: true,
            spill: false,
            count: false,
        },
        PopMode {
            fastpop: true,
            spill: false,
            count: true,
        },
        PopMode {
            fastpop: false,
            spill: true,
            count: false,
        },
        PopMode {
            fastpop: true,
            spill: true,
            count: true,
        },
    ];

    #[test]
    fn pop_batch_returns_everything_once_in_every_mode() {
        for mode in MODES {
            // SAFETY: every chain is built by `link` over distinct objects from `objects`, and
            // this thread is the only consumer.
            unsafe {
                let s = OwnerStash::new();
                let o = objects(100);
                for chunk in o.chunks(7) {
                    s.push_list(link(chunk), mode, 0).ok().unwrap();
                }
                let mut spill = LocalList {
                    head: core::ptr::null_mut(),
                    count: 0,
                };
                let mut seen = HashSet::new();
                loop {
                    let p = s.pop_batch(&mut spill, 32, mode);
                    if p.chain.n == 0 {
                        break;
                    }
                    assert!(p.chain.n <= 32);
                    let got = collect(p.chain.head);
                    assert_eq!(got.len() as u32, p.chain.n, "{mode:?}");
                    assert_eq!(*got.last().unwrap(), p.chain.tail);
                    for x in got {
                        assert!(seen.insert(x as usize), "duplicate in {mode:?}");
                    }
                }
                assert_eq!(seen.len(), 100, "{mode:?}");
                assert!(spill.head.is_null());
            }
        }
    }

    #[test]
    fn cap_refuses_when_counted() {
        // SAFETY: every chain is built by `link` over distinct objects from `objects`, and
        // this thread is the only consumer.
        unsafe {
            let mode = PopMode {
                fastpop: true,
                spill: false,
                count: true,
            };
            let s = OwnerStash::new();
            let o = objects(20);
            s.push_list(link(&o[..10]), mode, 10).ok().unwrap();
            assert_eq!(s.approx_count(), 10);
            assert!(s.push_list(link(&o[10..]), mode, 10).is_err());
            let mut spill = LocalList {
                head: core::ptr::null_mut(),
                count: 0,
            };
            let p = s.pop_batch(&mut spill, 4, mode);
            assert_eq!(p.chain.n, 4);
            assert_eq!(s.approx_count(), 6);
            let all: Vec<_> = collect(s.take_all());
            assert_eq!(all.len(), 6);
        }
    }

    #[test]
    fn concurrent_pushes_and_pops_lose_nothing() {
        for mode in MODES {
            let s = std::sync::Arc::new(OwnerStash::new());
            let per = 20_000usize;
            let producers = 3;
            let objs: Vec<Vec<usize>> = (0..producers)
                .map(|_| objects(per).into_iter().map(|p| p as usize).collect())
                .collect();
            let handles: Vec<_> = objs
                .clone()
                .into_iter()
                .map(|v| {
                    let s = s.clone();
                    // SAFETY: each producer links its own distinct objects from `objects`.
                    std::thread::spawn(move || unsafe {
                        for chunk in v.chunks(3) {
                            let ptrs: Vec<*mut u8> = chunk.iter().map(|&p| p as *mut u8).collect();
                            s.push_list(link(&ptrs), mode, 0).ok().unwrap();
                        }
                    })
                })
                .collect();
            let mut seen = HashSet::new();
            let mut spill = LocalList {
                head: core::ptr::null_mut(),
                count: 0,
            };
            let total = per * producers;
            while seen.len() < total {
                // SAFETY: this thread is the stash's only consumer and owns `spill`.
                let p = unsafe { s.pop_batch(&mut spill, 32, mode) };
                // SAFETY: the popped chain is null-terminated and now ours.
                for x in unsafe { collect(p.chain.head) } {
                    assert!(seen.insert(x as usize));
                }
            }
            for h in handles {
                h.join().unwrap();
            }
            assert!(s.is_empty() && spill.head.is_null());
        }
    }
}
