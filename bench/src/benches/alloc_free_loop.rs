//! alloc-free-loop: one thread allocates N blocks of one size, then frees them all, and repeats;
//! the sizes are swept in powers of two. Written for this project in the shape of glibc's
//! `bench-malloc-simple` (issue 18).
//!
//! `alloc-free-loop TOTAL N MIN MAX`
//!
//! For each size `MIN, 2·MIN, 4·MIN, … ≤ MAX`, rounds of {N mallocs of that size, then N frees in
//! allocation order} until that size has had `TOTAL / (number of sizes)` mallocs (rounded up to
//! whole rounds). Ops = mallocs + frees; every block is freed inside the timing.

use crate::common::*;
use std::time::Instant;

pub const USAGE: &str = "usage: alloc-free-loop TOTAL N MIN MAX\n\
for each size MIN, 2*MIN, ... <= MAX: rounds of N mallocs then N frees, TOTAL mallocs in all\n\
(e.g. alloc-free-loop 20M 100 16 512).";

/// The swept sizes: MIN doubled while it stays ≤ MAX.
pub fn sizes(min: u32, max: u32) -> Vec<usize> {
    let mut v = Vec::new();
    let mut s = min as usize;
    while s <= max as usize {
        v.push(s);
        s *= 2;
    }
    v
}

pub fn run(args: &[String]) -> Result<Report, String> {
    if args.len() != 4 {
        return Err("expected 4 arguments".into());
    }
    let total = arg_count(args, 0, "TOTAL")?;
    let n = arg_u32(args, 1, "N")? as usize;
    let min = arg_u32(args, 2, "MIN")?;
    let max = arg_u32(args, 3, "MAX")?;
    SizeRange::new(min, max)?;
    if n == 0 {
        return Err("N must be > 0".into());
    }
    let sweep = sizes(min, max);
    let per_size = total / sweep.len() as u64;
    let rounds = per_size.div_ceil(n as u64).max(1);
    let mut blocks: Vec<*mut u8> = vec![std::ptr::null_mut(); n];
    let mut sink = 0u8;
    let t0 = Instant::now();
    for &size in &sweep {
        for round in 0..rounds {
            let tag = round as u8;
            for b in blocks.iter_mut() {
                *b = alloc_touch(size, tag);
            }
            for &b in blocks.iter() {
                // SAFETY: allocated just above and freed once.
                sink ^= unsafe { free_touch(b) };
            }
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    std::hint::black_box(sink);

    let mallocs = rounds * n as u64 * sweep.len() as u64;
    let list: Vec<String> = sweep.iter().map(|s| s.to_string()).collect();
    let rep = Report::new("alloc-free-loop", 2 * mallocs, secs)
        .kv("n", n)
        .kv("sizes", list.join(","))
        .kv("rounds_per_size", rounds)
        .kv("threads", 1)
        .kv("malloc_from", malloc_provider());
    rep.print(&format!(
        "alloc-free-loop: single thread, {rounds} rounds of {n} mallocs then {n} frees per size, sizes {}",
        list.join(",")
    ));
    Ok(rep)
}
