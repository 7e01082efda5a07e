//! A set of bin indices as a bitmap: which classes a thread refilled this epoch, which it
//! holds by page, which a sweep visits. An index of `N` or more is never a member and
//! inserting or removing it does nothing. Every access tests `bin < N` first, which with
//! `W` words of 64 bits also bounds the word index, so neither the set nor a caller that
//! indexes an array of `N` bins by a member carries a panic path (`tests/so_checks.rs`).

/// A set of the bins below `N`, in `W` words (`W` = `N` / 64 rounded up; `W` is a parameter
/// only because array lengths cannot yet be computed from `N`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct BinSet<const N: usize, const W: usize>([u64; W]);

impl<const N: usize, const W: usize> Default for BinSet<N, W> {
    fn default() -> Self {
        Self::EMPTY
    }
}

impl<const N: usize, const W: usize> BinSet<N, W> {
    pub const EMPTY: Self = {
        assert!(W == N.div_ceil(64));
        Self([0; W])
    };

    /// The set of every bin.
    pub fn all() -> Self {
        let mut s = Self::EMPTY;
        for bin in 0..N {
            s.insert(bin);
        }
        s
    }

    #[inline]
    pub fn insert(&mut self, bin: usize) {
        if bin < N {
            self.0[bin / 64] |= 1 << (bin % 64);
        }
    }

    #[inline]
    pub fn remove(&mut self, bin: usize) {
        if bin < N {
            self.0[bin / 64] &= !(1 << (bin % 64));
        }
    }

    #[inline]
    pub fn contains(&self, bin: usize) -> bool {
        bin < N && self.0[bin / 64] >> (bin % 64) & 1 != 0
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|&w| w == 0)
    }

    /// Whether `bin` is in this set or in `other`.
    #[inline]
    pub fn either_contains(&self, other: &Self, bin: usize) -> bool {
        bin < N && (self.0[bin / 64] | other.0[bin / 64]) >> (bin % 64) & 1 != 0
    }

    /// The members in rising order. (A walk of `0..N`, not of the set bits: the range is
    /// what lets the compiler see that a member indexes an array of `N` without a check.)
    #[inline]
    pub fn iter(self) -> impl Iterator<Item = usize> {
        (0..N).filter(move |&b| self.contains(b))
    }
}

#[cfg(test)]
mod tests {
    use super::BinSet;
    extern crate std;
    use std::vec::Vec;

    #[test]
    fn members_in_order_and_nothing_from_n_on() {
        let mut s = BinSet::<100, 2>::EMPTY;
        assert!(s.is_empty());
        for b in [0, 5, 63, 64, 99] {
            s.insert(b);
        }
        for b in [100, 127, 128, 1000] {
            s.insert(b);
            assert!(!s.contains(b));
        }
        assert_eq!(s.iter().collect::<Vec<_>>(), [0, 5, 63, 64, 99]);
        s.remove(63);
        s.remove(1000);
        assert!(!s.contains(63) && s.contains(64));
        let mut t = BinSet::<100, 2>::EMPTY;
        t.insert(63);
        assert!(s.either_contains(&t, 63) && s.either_contains(&t, 5));
        assert!(!s.either_contains(&t, 6) && !s.either_contains(&t, 100));
        assert_eq!(BinSet::<70, 2>::all().iter().count(), 70);
        assert_eq!(BinSet::<64, 1>::all().iter().last(), Some(63));
    }
}
