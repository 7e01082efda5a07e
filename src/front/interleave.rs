//! Time-slicing among allocating threads that outnumber the CPUs (`interleave` feature).
//!
//! Our threads never block in the allocator, so when more of them run than there are CPUs each
//! runs whole scheduler slices (3–4 ms on the machines measured). Threads that hand memory to
//! each other then interleave coarsely: a consumer waiting for its slice leaves thousands of
//! blocks in flight, and its producer carves, faults in and holds new memory for them meanwhile.
//! Allocators whose threads sleep on locks interleave finely by accident (tcmalloc's threads
//! switched about 300 times each in a run where ours switched about 20). So a thread that has
//! run a quantum of allocator-dense code ([`config::INTERLEAVE_QUANTUM`] cycles, counted at its
//! refills, malloc's slow path) gives its CPU to another runnable thread, while more threads
//! own heaps than the process may run on CPUs. Below that count it costs one counter read per
//! refill; with nothing else runnable the yield returns at once. Measured in docs/ab.md
//! ("Interleaving oversubscribed threads").

use crate::config;

/// A thread's count of allocator-dense running since its last yield, in time-stamp cycles.
/// All-zero is the start (the first call only records its time).
#[derive(Clone, Copy, Default)]
pub struct Interleave {
    /// Cycles run since the quantum started.
    run: u64,
    /// The counter at the last refill.
    last: u64,
}

impl Interleave {
    /// At a refill at counter value `now`: whether the thread has run a whole quantum,
    /// counting only the gaps between refills shorter than [`config::INTERLEAVE_GAP`]
    /// (a longer gap is time descheduled or spent outside the allocator, and starts the
    /// quantum again). True at most once per quantum.
    pub fn due(&mut self, now: u64) -> bool {
        let gap = now.wrapping_sub(self.last);
        self.last = now;
        if gap >= config::INTERLEAVE_GAP {
            self.run = 0;
            return false;
        }
        self.run += gap;
        if self.run < config::INTERLEAVE_QUANTUM {
            return false;
        }
        self.run = 0;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEP: u64 = config::INTERLEAVE_GAP / 4;

    /// Calls at `STEP` apart from `start` until `due`; returns how many it took.
    fn calls_until_due(i: &mut Interleave, start: u64) -> (u64, u64) {
        let mut t = start;
        for n in 1..10_000 {
            t += STEP;
            if i.due(t) {
                return (n, t);
            }
        }
        panic!("never due");
    }

    #[test]
    fn due_after_a_quantum_of_short_gaps() {
        let mut i = Interleave::default();
        // The first call sees a gap from 0: a fresh quantum.
        assert!(!i.due(1 << 40));
        let (n, t) = calls_until_due(&mut i, 1 << 40);
        assert_eq!(n, config::INTERLEAVE_QUANTUM.div_ceil(STEP));
        // The next quantum starts at the yield.
        let (m, _) = calls_until_due(&mut i, t);
        assert_eq!(m, n);
    }

    #[test]
    fn a_long_gap_starts_the_quantum_again() {
        let mut i = Interleave::default();
        let mut t = 1 << 40;
        assert!(!i.due(t));
        let full = config::INTERLEAVE_QUANTUM.div_ceil(STEP);
        for _ in 0..full - 1 {
            t += STEP;
            assert!(!i.due(t));
        }
        // Descheduled (or busy elsewhere): what ran before no longer counts.
        t += config::INTERLEAVE_GAP;
        assert!(!i.due(t));
        let (n, _) = calls_until_due(&mut i, t);
        assert_eq!(n, full);
    }

    #[test]
    fn a_counter_that_wraps_is_one_short_gap() {
        let mut i = Interleave::default();
        let t = u64::MAX - STEP / 2;
        assert!(!i.due(t));
        assert!(!i.due(t.wrapping_add(STEP)));
        assert_eq!(i.run, STEP);
    }
}
