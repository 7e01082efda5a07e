//! Page tag encoding (hz3's PTAG32): one `u32` per arena page,
//! `(owner + 1) << 16 | (bin + 1) << BIN_SHIFT`. Zero means "no object starts here". This is
//! the single routing record for `free`.
//!
//! The bin field is pre-shifted so that it is a byte offset: the offset of bin `bin` in a
//! thread cache, whose bins are `1 << BIN_SHIFT` bytes each and start one bin's width in (a
//! guard bin that no tag matches sits at offset 0, where a zero tag points). `free` finds the
//! bin from the tag with one zero-extending move and no bounds check (design.md §5).

use crate::page::size_class::NUM_BINS;

pub const OWNER_SHIFT: u32 = 16;
/// Highest heap id a tag can carry (ids are 16 bits, `owner + 1` must fit).
pub const MAX_OWNER: u32 = 0xFFFE;
/// log2 of a thread cache bin's size: the bin field holds `(bin + 1) << BIN_SHIFT`. 64 bytes
/// in the hardened lane, whose bins also hold their class's start-of-block test.
pub const BIN_SHIFT: u32 = if crate::config::SECURE { 6 } else { 5 };
const FIELD: u32 = (1 << OWNER_SHIFT) - 1;
const _: () = assert!(((NUM_BINS as u32) << BIN_SHIFT) <= FIELD && NUM_BINS < 256);

/// The bin field of bin `bin`'s tags (`slot` of every tag of `bin`).
#[inline(always)]
pub const fn field(bin: usize) -> u32 {
    (bin as u32 + 1) << BIN_SHIFT
}

#[inline]
pub const fn encode(owner: u32, bin: usize) -> u32 {
    ((owner + 1) << OWNER_SHIFT) | field(bin)
}

/// The value a thread keeps to recognise its own tags: `(owner + 1) << 16`, or 0 for none.
#[inline]
pub const fn owner_base(owner: u32) -> u32 {
    (owner + 1) << OWNER_SHIFT
}

/// `(owner, bin)` of a tag made by [`encode`] (not zero).
#[inline(always)]
pub const fn split(tag: u32) -> (u32, usize) {
    ((tag >> OWNER_SHIFT).wrapping_sub(1), bin_of(tag))
}

/// `Some((owner, bin))` for a non-zero tag.
#[inline]
pub const fn decode(tag: u32) -> Option<(u32, usize)> {
    if tag >> OWNER_SHIFT == 0 || tag & FIELD == 0 {
        None
    } else {
        Some(split(tag))
    }
}

/// The bin of any tag, ignoring its owner; a value `>= NUM_BINS` for a zero tag.
#[inline(always)]
pub const fn bin_of(tag: u32) -> usize {
    ((tag & FIELD) >> BIN_SHIFT).wrapping_sub(1) as usize
}

/// The tag's bin field as a byte offset: `(bin + 1) << BIN_SHIFT` for a tag of `bin`, 0 for a
/// zero tag. Every tag in the table is zero or made by [`encode`], so this is at most
/// `NUM_BINS << BIN_SHIFT`.
#[inline(always)]
pub const fn slot(tag: u32) -> usize {
    (tag & FIELD) as usize
}

/// Whether `tag` belongs to the owner with `base`, as its bin: the bin if so, otherwise a
/// value `>= NUM_BINS` (also for a zero tag and for `base == 0`).
#[inline(always)]
pub const fn mine(tag: u32, base: u32) -> usize {
    (tag.wrapping_sub(base) >> BIN_SHIFT).wrapping_sub(1) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_mine() {
        for owner in [0, 1, 7, 255, 1000, MAX_OWNER] {
            for bin in [0, 1, 127, 128, NUM_BINS - 1] {
                let t = encode(owner, bin);
                assert_eq!(decode(t), Some((owner, bin)));
                assert_eq!(mine(t, owner_base(owner)), bin);
                assert_eq!(bin_of(t), bin);
                assert_eq!(split(t), (owner, bin));
                assert_eq!(slot(t), field(bin) as usize);
                assert_eq!(t & !FIELD, owner_base(owner));
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
        assert_eq!(slot(0), 0);
        assert!(mine(0, 0) >= NUM_BINS);
        assert!(mine(0, owner_base(3)) >= NUM_BINS);
    }
}
