//! Page tag encoding (hz3's PTAG32): one `u32` per arena page, `(owner + 1) << 16 | (bin + 1)`.
//! Zero means "no object starts here". This is the single routing record for `free`.

pub const OWNER_SHIFT: u32 = 16;
/// Highest heap id a tag can carry (ids are 16 bits, `owner + 1` must fit).
pub const MAX_OWNER: u32 = 0xFFFE;

#[inline]
pub const fn encode(owner: u32, bin: usize) -> u32 {
    ((owner + 1) << OWNER_SHIFT) | (bin as u32 + 1)
}

/// The value a thread keeps to recognise its own tags: `(owner + 1) << 16`, or 0 for none.
#[inline]
pub const fn owner_base(owner: u32) -> u32 {
    (owner + 1) << OWNER_SHIFT
}

/// `Some((owner, bin))` for a non-zero tag.
#[inline]
pub const fn decode(tag: u32) -> Option<(u32, usize)> {
    let o = tag >> OWNER_SHIFT;
    let b = tag & 0xFFFF;
    if o == 0 || b == 0 {
        None
    } else {
        Some((o - 1, (b - 1) as usize))
    }
}

/// The bin of any tag, ignoring its owner; a value `>= NUM_BINS` for a zero tag.
#[inline(always)]
pub const fn bin_of(tag: u32) -> usize {
    (tag & 0xFFFF).wrapping_sub(1) as usize
}

/// The owner half of a tag, as [`owner_base`] gives it: `mine(tag, owner_bits(tag))` is the
/// tag's bin.
#[inline(always)]
pub const fn owner_bits(tag: u32) -> u32 {
    tag & !0xFFFF
}

/// The free fast path's one compare: the bin if `tag` belongs to the owner with `base`,
/// otherwise a value `>= NUM_BINS` (also for a zero tag and for `base == 0`).
#[inline(always)]
pub const fn mine(tag: u32, base: u32) -> usize {
    tag.wrapping_sub(base).wrapping_sub(1) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::page::size_class::NUM_BINS;

    #[test]
    fn round_trip_and_mine() {
        for owner in [0, 1, 7, 255, 1000, MAX_OWNER] {
            for bin in [0, 1, 127, 128, NUM_BINS - 1] {
                let t = encode(owner, bin);
                assert_eq!(decode(t), Some((owner, bin)));
                assert_eq!(mine(t, owner_base(owner)), bin);
                assert_eq!(bin_of(t), bin);
                assert_eq!(owner_bits(t), owner_base(owner));
                if owner > 0 {
                    assert!(mine(t, owner_base(owner - 1)) >= NUM_BINS);
                }
                assert!(mine(t, owner_base(owner + 1)) >= NUM_BINS);
                // An uninitialised thread (base 0) never matches.
                assert!(mine(t, 0) >= NUM_BINS);
            }
        }
        // Every bin with owners spread over the whole id range: each tag decodes to itself,
        // is nonzero, and is matched by its owner alone.
        let mut owner = 0;
        while owner <= MAX_OWNER {
            assert_eq!(owner_base(owner) & 0xFFFF, 0, "no bin bits in a base");
            for bin in 0..NUM_BINS {
                let t = encode(owner, bin);
                assert_ne!(t, 0);
                assert_eq!(decode(t), Some((owner, bin)));
                assert_eq!(mine(t, owner_base(owner)), bin);
                assert_eq!(mine(t, owner_bits(t)), bin);
                let other = (owner + 1 + bin as u32) % (MAX_OWNER + 1);
                if other != owner {
                    assert!(mine(t, owner_base(other)) >= NUM_BINS);
                }
            }
            owner = if owner == MAX_OWNER {
                MAX_OWNER + 1
            } else {
                (owner + 251).min(MAX_OWNER)
            };
        }
        // A tag with an owner but no bin, or a bin but no owner, is not a block's.
        assert_eq!(decode(owner_base(5)), None);
        assert_eq!(decode(3), None);
        assert_eq!(decode(0), None);
        assert!(bin_of(0) >= NUM_BINS);
        assert!(mine(0, 0) >= NUM_BINS);
        assert!(mine(0, owner_base(3)) >= NUM_BINS);
    }
}
