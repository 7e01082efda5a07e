//! thread-churn: many generations of short-lived threads, as a program that hands work to
//! fresh threads (or a thread pool that shrinks and grows) does. Written for this project
//! (docs/benchmarks.md, "Memory programs").
//!
//! `thread-churn [G [T [KIB]]]` (defaults 300, 4, 4096)
//!
//! G generations, one after the other, of T threads each. Thread `i` of generation `g`
//! (seeded `0x12345678 + 977·(g·T + i)`) first frees the blocks thread `i` of generation
//! `g − 1` handed it, then allocates KIB KiB of requested bytes in sizes of the `dist`
//! mixture (80 % 16–256, 15 % 257–2048, 5 % 2049–32768; [`dist_size`]), writing one byte in
//! every page, frees three blocks of every four (by allocation index, `index % 4 != 0`) and
//! hands the remaining quarter to its successor, then exits. The main thread spawns a
//! generation, joins it, and after every tenth generation (and the last) reads RSS from
//! `/proc/self/statm`.
//!
//! Ops = mallocs + frees; `secs` = first spawn to last join on the main thread's clock
//! (thread creation and exit included). The last generation's hand-over is freed after the
//! clock stops and not counted.

use crate::common::*;
use crate::memstat::{self, alloc_touch_pages};
use std::time::Instant;

pub const USAGE: &str = "usage: thread-churn [G [T [KIB]]]   (defaults 300 4 4096)\n\
G generations of T short-lived threads; each allocates KIB KiB (sizes 16-32768, mostly small), \
frees 3/4 and hands 1/4 to the next generation, which frees it.";

/// RSS is sampled after every this many generations (and after the last).
pub const SAMPLE_EVERY: u64 = 10;

#[derive(Default)]
struct Counts {
    mallocs: u64,
    frees: u64,
    handed: u64,
    sink: u8,
}

fn worker(seed: usize, inherit: Vec<usize>, bytes: u64, page: usize) -> (Counts, Vec<usize>) {
    let mut c = Counts::default();
    let mut sink = 0u8;
    for p in inherit {
        sink ^= unsafe { free_touch(p as *mut u8) };
        c.frees += 1;
    }
    let mut rng = Lcg::for_thread(seed);
    let mut blocks: Vec<usize> = Vec::new();
    let mut got = 0u64;
    while got < bytes {
        let r = rng.next_u32();
        let size = dist_size(r);
        blocks.push(alloc_touch_pages(size, r as u8, page) as usize);
        got += size as u64;
    }
    c.mallocs = blocks.len() as u64;
    let mut keep = Vec::with_capacity(blocks.len() / 4 + 1);
    for (k, p) in blocks.into_iter().enumerate() {
        if k % 4 == 0 {
            keep.push(p);
        } else {
            sink ^= unsafe { free_touch(p as *mut u8) };
            c.frees += 1;
        }
    }
    c.handed = keep.len() as u64;
    c.sink = sink;
    (c, keep)
}

pub fn run(args: &[String]) -> Result<Report, String> {
    if args.len() > 3 {
        return Err("expected at most 3 arguments".into());
    }
    let gens = if args.is_empty() {
        300
    } else {
        arg_count(args, 0, "G")?
    };
    let threads = if args.len() > 1 {
        arg_u32(args, 1, "T")? as usize
    } else {
        4
    };
    let kib = if args.len() > 2 {
        arg_count(args, 2, "KIB")?
    } else {
        4096
    };
    if gens == 0 || threads == 0 || kib == 0 {
        return Err("need G > 0, T > 0 and KIB > 0".into());
    }
    let bytes = kib << 10;
    let page = memstat::page_size();

    let mut tot = Counts::default();
    let mut handed: Vec<Vec<usize>> = vec![Vec::new(); threads];
    let mut series: Vec<u64> = Vec::new();
    let t0 = Instant::now();
    for g in 0..gens {
        let mut hs = Vec::with_capacity(threads);
        for (i, inherit) in handed.drain(..).enumerate() {
            let seed = g as usize * threads + i;
            let h = std::thread::Builder::new()
                .name(format!("churn-{i}"))
                .spawn(move || worker(seed, inherit, bytes, page))
                .map_err(|e| format!("spawn generation {g} thread {i}: {e}"))?;
            hs.push(h);
        }
        for h in hs {
            let (c, keep) = h
                .join()
                .map_err(|_| "a churn thread panicked".to_string())?;
            tot.mallocs += c.mallocs;
            tot.frees += c.frees;
            tot.handed += c.handed;
            tot.sink ^= c.sink;
            handed.push(keep);
        }
        if (g + 1) % SAMPLE_EVERY == 0 || g + 1 == gens {
            series.push(memstat::rss_kb().unwrap_or(0));
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    for p in handed.into_iter().flatten() {
        tot.sink ^= unsafe { free_touch(p as *mut u8) };
    }
    std::hint::black_box(tot.sink);
    let peak = memstat::vm_hwm_kb().unwrap_or(0);
    let (minflt, majflt) = memstat::faults();
    let min = series.iter().copied().min().unwrap_or(0);
    let max = series.iter().copied().max().unwrap_or(0);
    let last = series.last().copied().unwrap_or(0);
    let series_txt: Vec<String> = series.iter().map(u64::to_string).collect();
    let created = gens * threads as u64;

    let rep = Report::new("thread-churn", tot.mallocs + tot.frees, secs)
        .kv("generations", gens)
        .kv("threads", threads)
        .kv("ncpus", ncpus())
        .kv("kib_per_thread", kib)
        .kv("sizes", "dist")
        .kv("mallocs", tot.mallocs)
        .kv("frees", tot.frees)
        .kv("handed", tot.handed)
        .kv("threads_created", created)
        .kv("rss_min_kb", min)
        .kv("rss_max_kb", max)
        .kv("rss_last_kb", last)
        .kv("rss_samples", series.len())
        .kv("rss_series_kb", series_txt.join(","))
        .kv("peak_rss_kb", peak)
        .kv("minflt", minflt)
        .kv("majflt", majflt)
        .kv(
            "minflt_per_thread",
            format!("{:.1}", minflt as f64 / created as f64),
        )
        .kv("malloc_from", malloc_provider());
    rep.print(&format!(
        "thread-churn: {gens} generations x {threads} threads, {kib} KiB each (sizes 16-32768, \
         every page touched), 1/4 handed to the next generation; {}\n\
         RSS after every {SAMPLE_EVERY}th generation: min {}, max {}, last {} ({} samples); \
         peak (VmHWM) {}\nminor faults {minflt} ({:.1} per thread), {created} threads in {secs:.3} s",
        oversub_note(threads),
        memstat::mib(min),
        memstat::mib(max),
        memstat::mib(last),
        series.len(),
        memstat::mib(peak),
        minflt as f64 / created as f64,
    ));
    Ok(rep)
}
