//! cache-scratch: passive false sharing, in the style of Hoard's cache-scratch benchmark (as
//! used by mimalloc-bench), written for this project.
//!
//! `cache-scratch T ITERS OBJSIZE REPS`
//!
//! The main thread allocates T small objects of OBJSIZE bytes back to back (with most
//! allocators they share cache lines) and gives object `i` to thread `i`, which frees it first.
//! Then each thread ITERS times: malloc an OBJSIZE object, write every byte of it REPS times,
//! free it. An allocator that hands a thread memory on a cache line another thread is writing
//! (for instance the object it just freed, which came from the main thread next to the others)
//! makes the writes slow. Ops = mallocs + frees (so ops/s is proportional to 1/time); the
//! interesting figure is the time, dominated by the writes.

use crate::common::*;
use std::sync::{Arc, Barrier};
use std::time::Instant;

pub const USAGE: &str = "usage: cache-scratch T ITERS OBJSIZE REPS\n\
Each of T threads frees one object the main thread allocated, then ITERS times mallocs an\n\
OBJSIZE object, writes all its bytes REPS times and frees it.";

pub fn run(args: &[String]) -> Result<Report, String> {
    if args.len() != 4 {
        return Err("expected 4 arguments".into());
    }
    let threads = arg_u32(args, 0, "T")? as usize;
    let iters = arg_count(args, 1, "ITERS")?;
    let objsize = arg_u32(args, 2, "OBJSIZE")? as usize;
    let reps = arg_count(args, 3, "REPS")?;
    if threads == 0 || objsize == 0 {
        return Err("need T > 0 and OBJSIZE > 0".into());
    }

    let initial: Vec<usize> = (0..threads)
        .map(|i| alloc_touch(objsize, i as u8) as usize)
        .collect();
    let start = Arc::new(Barrier::new(threads + 1));
    let mut handles = Vec::with_capacity(threads);
    for (i, &first) in initial.iter().enumerate() {
        let start = Arc::clone(&start);
        handles.push(
            std::thread::Builder::new()
                .name(format!("scratch-{i}"))
                .spawn(move || {
                    start.wait();
                    let t0 = Instant::now();
                    let mut sink = unsafe { free_touch(first as *mut u8) };
                    for _ in 0..iters {
                        let p = alloc_touch(objsize, 0);
                        for _ in 0..reps {
                            for k in 0..objsize {
                                // SAFETY: k < objsize, inside the allocation.
                                unsafe {
                                    let q = p.add(k);
                                    q.write_volatile(q.read_volatile().wrapping_add(1));
                                }
                            }
                        }
                        sink ^= unsafe { free_touch(p) };
                    }
                    let span = Span {
                        start: t0,
                        end: Instant::now(),
                    };
                    (sink, span)
                })
                .map_err(|e| format!("spawn: {e}"))?,
        );
    }
    start.wait();
    let mut sink = 0u8;
    let mut spans = Vec::with_capacity(threads);
    for h in handles {
        let (s, span) = h
            .join()
            .map_err(|_| "a benchmark thread panicked".to_string())?;
        sink ^= s;
        spans.push(span);
    }
    let secs = Span::covering(spans).ok_or("no thread ran")?.secs();
    std::hint::black_box(sink);

    let ops = threads as u64 * (1 + 2 * iters);
    let rep = Report::new("cache-scratch", ops, secs)
        .kv("threads", threads)
        .kv("ncpus", ncpus())
        .kv("iters", iters)
        .kv("objsize", objsize)
        .kv("reps", reps)
        .kv(
            "byte_writes",
            threads as u64 * iters * reps * objsize as u64,
        )
        .kv("malloc_from", malloc_provider());
    rep.print(&format!(
        "cache-scratch: {threads} threads x {iters} objects of {objsize} B, each written {reps} times; {}",
        oversub_note(threads)
    ));
    Ok(rep)
}
