//! large-blocks: one thread replaces blocks of several MiB at random, touching every page, so
//! the cost of mapping (and re-faulting) large blocks shows. Written for this project in the
//! shape of the field's large-allocation tests (issue 18).
//!
//! `large-blocks ITERS LIVE MIN_KIB MAX_KIB`
//!
//! LIVE slots are filled first (timed). Each iteration draws a slot, frees its block and
//! allocates a new one of `MIN_KIB + r % (MAX_KIB − MIN_KIB + 1)` KiB (a second draw), then
//! writes one byte in every 4 KiB page of it. Ops = mallocs + frees; the final frees are neither
//! timed nor counted. Page faults and peak RSS come from the runner (the child's rusage).

use crate::common::*;
use std::time::Instant;

pub const USAGE: &str = "usage: large-blocks ITERS LIVE MIN_KIB MAX_KIB\n\
LIVE blocks of MIN_KIB..MAX_KIB KiB; each iteration frees one at random and allocates a new one,\n\
writing a byte in every page (e.g. large-blocks 400 32 5120 25600).";

const PAGE: usize = 4096;

/// `malloc(size)` and one write per page, so every page of the block is resident.
fn alloc_pages(size: usize, tag: u8) -> *mut u8 {
    let p = alloc_touch(size, tag);
    let mut off = PAGE;
    while off < size {
        // SAFETY: off < size, inside the block just allocated.
        unsafe { p.add(off).write_volatile(tag) };
        off += PAGE;
    }
    p
}

pub fn run(args: &[String]) -> Result<Report, String> {
    if args.len() != 4 {
        return Err("expected 4 arguments".into());
    }
    let iters = arg_count(args, 0, "ITERS")?;
    let live = arg_u32(args, 1, "LIVE")? as usize;
    let kib = SizeRange::new(arg_u32(args, 2, "MIN_KIB")?, arg_u32(args, 3, "MAX_KIB")?)?;
    if live == 0 {
        return Err("LIVE must be > 0".into());
    }
    let mut rng = Lcg(SEED);
    let mut slots: Vec<*mut u8> = Vec::with_capacity(live);
    let mut bytes = 0u64;
    let mut sink = 0u8;
    let t0 = Instant::now();
    for _ in 0..live {
        let r = rng.next_u32();
        let size = kib.pick(r) * 1024;
        bytes += size as u64;
        slots.push(alloc_pages(size, r as u8));
    }
    for _ in 0..iters {
        let slot = (rng.next_u32() as usize) % live;
        let r = rng.next_u32();
        let size = kib.pick(r) * 1024;
        sink ^= unsafe { free_touch(slots[slot]) };
        bytes += size as u64;
        slots[slot] = alloc_pages(size, r as u8);
    }
    let secs = t0.elapsed().as_secs_f64();
    for &p in &slots {
        sink ^= unsafe { free_touch(p) };
    }
    std::hint::black_box(sink);

    let mallocs = live as u64 + iters;
    let range = format!("{}-{}KiB", kib.min, kib.min + kib.span - 1);
    let rep = Report::new("large-blocks", mallocs + iters, secs)
        .kv("iters", iters)
        .kv("live", live)
        .kv("sizes", &range)
        .kv("mib_allocated", bytes >> 20)
        .kv("threads", 1)
        .kv("malloc_from", malloc_provider());
    rep.print(&format!(
        "large-blocks: single thread, {live} live blocks of {range}, {iters} replacements, every page written"
    ));
    Ok(rep)
}
