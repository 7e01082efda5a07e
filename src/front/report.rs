//! The statistics summary printed at process exit when `HAKOZUNA_STATS=1` (design.md §13): every
//! heap's counters and the global ones, summed, one line per event, written without allocating.

use crate::heap::registry;
use crate::page::arena;
use crate::stats::{GLOBAL, LABELS, N};
use crate::sys::{diag::Line, options};

/// Prints the summary if the option is on.
pub fn print() {
    if !options::stats_report() {
        return;
    }
    let mut sum = [0u64; N];
    for (i, s) in sum.iter_mut().enumerate() {
        *s = GLOBAL.get(i);
    }
    registry::for_each_heap(|c| {
        for (i, s) in sum.iter_mut().enumerate() {
            *s += c.get(i);
        }
    });
    let mut l = Line::new();
    l.str("hakozuna stats: ")
        .num(registry::heap_count() as u64)
        .str(" heaps, ");
    l.num(arena::committed_bytes() as u64 >> 20)
        .str(" MiB of arena segments")
        .emit();
    for (i, label) in LABELS.iter().enumerate() {
        l.str("hakozuna stats: ")
            .str(label)
            .str(": ")
            .num(sum[i])
            .emit();
    }
}
