//! The page bitmap of one segment: a set bit is a page in use. First-fit search for a run of
//! free pages. Plain data; the owning heap is its only user.

pub const BITS: usize = 1 << (crate::config::SEGMENT_SHIFT - crate::config::PAGE_SHIFT);
const WORDS: usize = BITS / 64;

#[derive(Clone, Copy)]
#[repr(C)]
pub struct PageBitmap {
    words: [u64; WORDS],
}

impl PageBitmap {
    pub const fn new() -> Self {
        PageBitmap { words: [0; WORDS] }
    }

    /// Whether page `i` is set (no page past the segment is: `get` leaves no panic path).
    pub fn get(&self, i: usize) -> bool {
        self.words
            .get(i / 64)
            .is_some_and(|w| w >> (i % 64) & 1 == 1)
    }

    /// Sets pages `start..start + n` (within the segment; a range past its end is cut there,
    /// so no index check is left to panic).
    pub fn set_range(&mut self, start: usize, n: usize) {
        debug_assert!(start + n <= BITS);
        for i in start..(start + n).min(BITS) {
            self.words[i / 64] |= 1 << (i % 64);
        }
    }

    /// Clears pages `start..start + n`, as [`set_range`](Self::set_range) sets them.
    pub fn clear_range(&mut self, start: usize, n: usize) {
        debug_assert!(start + n <= BITS);
        for i in start..(start + n).min(BITS) {
            self.words[i / 64] &= !(1 << (i % 64));
        }
    }

    /// Every page set (a reused segment whose pages may all be resident).
    pub const fn full() -> Self {
        PageBitmap {
            words: [u64::MAX; WORDS],
        }
    }

    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|&w| w == 0)
    }

    /// Lowest index of `n` consecutive free pages, if any (`1 <= n <= BITS`; none for more).
    pub fn find_run(&self, n: usize) -> Option<usize> {
        if n > BITS {
            return None;
        }
        // Within `1..=BITS`, so `i < BITS` in the loop (no index check left to panic).
        let n = n.max(1);
        let mut i = 0;
        while i <= BITS - n {
            // Skip used pages a word at a time.
            let w = self.words[i / 64] >> (i % 64);
            if w & 1 == 1 {
                i += (w.trailing_ones() as usize).max(1);
                continue;
            }
            // Measure the free run starting at i.
            let mut len = 0;
            let mut j = i;
            while j < BITS && len < n {
                let w = self.words[j / 64] >> (j % 64);
                let free = if w == 0 {
                    64 - j % 64
                } else {
                    w.trailing_zeros() as usize
                };
                len += free;
                j += free;
                if w != 0 {
                    break;
                }
            }
            if len >= n {
                return Some(i);
            }
            i = j;
        }
        None
    }

    /// The first clear index at or above `i`, or `BITS`.
    fn next_clear(&self, mut i: usize) -> usize {
        while i < BITS {
            let w = !self.words[i / 64] >> (i % 64);
            if w != 0 {
                return (i + w.trailing_zeros() as usize).min(BITS);
            }
            i = (i / 64 + 1) * 64;
        }
        BITS
    }

    /// The first set index at or above `i`, or `BITS`.
    fn next_set(&self, mut i: usize) -> usize {
        while i < BITS {
            let w = self.words[i / 64] >> (i % 64);
            if w != 0 {
                return (i + w.trailing_zeros() as usize).min(BITS);
            }
            i = (i / 64 + 1) * 64;
        }
        BITS
    }

    /// The shortest run of free pages that holds `n` (`1 <= n <= BITS`), the lowest on ties,
    /// as `(start, length of the free run)`.
    pub fn best_fit(&self, n: usize) -> Option<(usize, usize)> {
        let mut best: Option<(usize, usize)> = None;
        let mut i = self.next_clear(0);
        while i < BITS {
            let end = self.next_set(i);
            let len = end - i;
            if len >= n && best.is_none_or(|(_, b)| len < b) {
                best = Some((i, len));
                if len == n {
                    break;
                }
            }
            i = self.next_clear(end);
        }
        best
    }

    /// Highest set index at or below `i`, if any (`i < BITS`): the first page of the small
    /// run that holds page `i`, in a map of run starts.
    pub fn prev_set(&self, i: usize) -> Option<usize> {
        let mut w = i / 64;
        // Bits above `i` in its word are masked off (a shift by 64 is avoided for bit 63).
        let mut bits = self.words[w] & (u64::MAX >> (63 - i % 64));
        loop {
            if bits != 0 {
                return Some(w * 64 + 63 - bits.leading_zeros() as usize);
            }
            if w == 0 {
                return None;
            }
            w -= 1;
            bits = self.words[w];
        }
    }

    /// Set indices in increasing order.
    pub fn ones(&self) -> impl Iterator<Item = usize> + '_ {
        self.words.iter().enumerate().flat_map(|(w, &word)| {
            let mut bits = word;
            core::iter::from_fn(move || {
                if bits == 0 {
                    return None;
                }
                let b = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let i = w * 64 + b;
                // SAFETY: `w < WORDS` and `b < 64` (a set bit of a non-zero word). Stated so
                // that callers indexing per-page arrays by it leave no panic path.
                unsafe { core::hint::assert_unchecked(i < BITS) };
                Some(i)
            })
        })
    }

    /// Word-wise combination of two bitmaps.
    pub fn combine(&self, other: &PageBitmap, f: impl Fn(u64, u64) -> u64) -> PageBitmap {
        let mut out = PageBitmap::new();
        for i in 0..WORDS {
            out.words[i] = f(self.words[i], other.words[i]);
        }
        out
    }

    /// Runs of set bits as `(start, len)`, in address order.
    #[cfg(test)]
    pub fn set_runs(&self) -> FreeRuns {
        // The runs of set bits of `self` are the runs of clear bits of its complement.
        FreeRuns {
            map: self.combine(self, |a, _| !a),
            i: 0,
        }
    }

    /// Runs of clear bits (free pages) as `(start, len)`, in address order.
    pub fn free_runs(&self) -> FreeRuns {
        FreeRuns { map: *self, i: 0 }
    }
}

/// Iterator over runs of clear bits of a snapshot of a bitmap.
pub struct FreeRuns {
    map: PageBitmap,
    i: usize,
}

impl Iterator for FreeRuns {
    type Item = (usize, usize);
    fn next(&mut self) -> Option<(usize, usize)> {
        while self.i < BITS && self.map.get(self.i) {
            self.i += 1;
        }
        if self.i >= BITS {
            return None;
        }
        let start = self.i;
        while self.i < BITS && !self.map.get(self.i) {
            self.i += 1;
        }
        // SAFETY: the loops above stop at `BITS`. Stated so that callers indexing pages of
        // the run leave no panic path.
        unsafe { core::hint::assert_unchecked(start < self.i && self.i <= BITS) };
        Some((start, self.i - start))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;

    fn naive(m: &PageBitmap, n: usize) -> Option<usize> {
        (0..=BITS - n).find(|&s| (s..s + n).all(|i| !m.get(i)))
    }

    #[test]
    fn find_run_matches_naive() {
        let mut seed = 0x12345678u32;
        for round in 0..2000 {
            let mut m = PageBitmap::new();
            let density = round % 7;
            for i in 0..BITS {
                seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
                if (seed >> 16) % 8 < density {
                    m.set_range(i, 1);
                }
            }
            for n in [1, 2, 3, 7, 8, 16, 63, 64, 65, 130, 256] {
                assert_eq!(m.find_run(n), naive(&m, n), "round {round} n {n}");
            }
        }
    }

    /// A run longer than a segment fits in none: `find_run` answers as `best_fit` does (a
    /// clamp of `n` to `BITS` once made it offer a whole empty segment for it).
    #[test]
    fn no_run_longer_than_a_segment() {
        let m = PageBitmap::new();
        assert_eq!(m.find_run(BITS), Some(0));
        assert_eq!(m.find_run(BITS + 1), None);
        assert_eq!(m.best_fit(BITS + 1), None);
    }

    #[test]
    fn best_fit_matches_naive() {
        let mut seed = 0x2545_f491u32;
        for round in 0..500 {
            let (m, model) = random(&mut seed, round % 9);
            let gaps = model_runs(&model, false);
            for n in [1, 2, 3, 7, 8, 16, 63, 64, 65, 130, 256] {
                let want = gaps
                    .iter()
                    .filter(|&&(_, l)| l >= n)
                    .min_by_key(|&&(s, l)| (l, s))
                    .copied();
                assert_eq!(m.best_fit(n), want, "round {round} n {n}");
            }
        }
    }

    /// A random bitmap and the same bits as a plain array (the model).
    fn random(seed: &mut u32, density: u32) -> (PageBitmap, [bool; BITS]) {
        let mut m = PageBitmap::new();
        let mut model = [false; BITS];
        // Runs of random length, so long runs across word boundaries occur.
        let mut i = 0;
        while i < BITS {
            *seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
            let len = ((*seed >> 8) % 90) as usize + 1;
            let n = len.min(BITS - i);
            if (*seed >> 20) % 8 < density {
                m.set_range(i, n);
                model[i..i + n].fill(true);
            }
            i += n;
        }
        (m, model)
    }

    /// Runs of `want` bits in the model, as `(start, len)`.
    fn model_runs(model: &[bool; BITS], want: bool) -> std::vec::Vec<(usize, usize)> {
        let mut v = std::vec::Vec::new();
        let mut i = 0;
        while i < BITS {
            if model[i] != want {
                i += 1;
                continue;
            }
            let s = i;
            while i < BITS && model[i] == want {
                i += 1;
            }
            v.push((s, i - s));
        }
        v
    }

    #[test]
    fn ranges_runs_and_combine_match_a_model() {
        let mut seed = 0x9e37_79b9u32;
        for round in 0..500 {
            let (mut m, mut model) = random(&mut seed, round % 9);
            for (i, &want) in model.iter().enumerate() {
                assert_eq!(m.get(i), want, "round {round} bit {i}");
            }
            assert_eq!(m.is_empty(), model.iter().all(|&b| !b));
            assert_eq!(
                m.set_runs().collect::<std::vec::Vec<_>>(),
                model_runs(&model, true)
            );
            assert_eq!(
                m.free_runs().collect::<std::vec::Vec<_>>(),
                model_runs(&model, false)
            );
            // Runs of set and clear bits tile the bitmap.
            let total: usize = m.set_runs().chain(m.free_runs()).map(|(_, n)| n).sum();
            assert_eq!(total, BITS);
            // Clearing a random range clears exactly it.
            seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
            let start = (seed >> 8) as usize % BITS;
            let n = ((seed >> 16) as usize % (BITS - start)).max(1);
            m.clear_range(start, n);
            model[start..start + n].fill(false);
            for (i, &want) in model.iter().enumerate() {
                assert_eq!(m.get(i), want, "round {round} after clear, bit {i}");
            }
            // Combinations are word-wise and exact.
            let (o, omodel) = random(&mut seed, 4);
            let and = m.combine(&o, |a, b| a & b);
            let or = m.combine(&o, |a, b| a | b);
            let andnot = m.combine(&o, |a, b| a & !b);
            for (i, (&a, &b)) in model.iter().zip(&omodel).enumerate() {
                assert_eq!(and.get(i), a && b);
                assert_eq!(or.get(i), a || b);
                assert_eq!(andnot.get(i), a && !b);
            }
        }
    }

    #[test]
    fn full_and_edges() {
        let f = PageBitmap::full();
        assert!((0..BITS).all(|i| f.get(i)));
        assert!(!f.is_empty());
        assert_eq!(f.set_runs().collect::<std::vec::Vec<_>>(), [(0, BITS)]);
        assert_eq!(f.find_run(1), None);
        // A free run at the very end, and one that spans a word boundary.
        let mut m = PageBitmap::full();
        m.clear_range(BITS - 3, 3);
        assert_eq!(m.find_run(3), Some(BITS - 3));
        assert_eq!(m.find_run(4), None);
        m.clear_range(60, 8);
        assert_eq!(m.find_run(8), Some(60));
        assert_eq!(m.find_run(2), Some(60));
        assert_eq!(
            m.free_runs().collect::<std::vec::Vec<_>>(),
            [(60, 8), (BITS - 3, 3)]
        );
        // Setting a range twice, or clearing a clear one, changes nothing.
        m.set_range(60, 8);
        m.set_range(60, 8);
        m.clear_range(BITS - 3, 3);
        assert_eq!(m.free_runs().collect::<std::vec::Vec<_>>(), [(BITS - 3, 3)]);
        // Zero-length ranges are no-ops.
        m.set_range(BITS - 3, 0);
        m.clear_range(0, 0);
        assert_eq!(m.free_runs().collect::<std::vec::Vec<_>>(), [(BITS - 3, 3)]);
    }

    #[test]
    fn set_clear_runs() {
        let mut m = PageBitmap::new();
        assert!(m.is_empty());
        assert_eq!(m.find_run(256), Some(0));
        m.set_range(60, 10);
        assert_eq!(m.find_run(60), Some(0));
        assert_eq!(m.find_run(61), Some(70));
        assert_eq!(
            m.free_runs().collect::<std::vec::Vec<_>>(),
            [(0, 60), (70, 186)]
        );
        m.clear_range(60, 10);
        assert!(m.is_empty());
        m.set_range(0, 256);
        assert_eq!(m.find_run(1), None);
        assert_eq!(m.free_runs().count(), 0);
    }

    #[test]
    fn prev_set_and_ones_match_naive() {
        let mut seed = 0x9e3779b9u32;
        for round in 0..500 {
            let mut m = PageBitmap::new();
            for i in 0..BITS {
                seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
                if (seed >> 16) % 16 < round % 5 {
                    m.set_range(i, 1);
                }
            }
            for i in 0..BITS {
                assert_eq!(
                    m.prev_set(i),
                    (0..=i).rev().find(|&j| m.get(j)),
                    "round {round} i {i}"
                );
            }
            let ones: std::vec::Vec<usize> = m.ones().collect();
            let naive: std::vec::Vec<usize> = (0..BITS).filter(|&i| m.get(i)).collect();
            assert_eq!(ones, naive, "round {round}");
        }
    }
}
