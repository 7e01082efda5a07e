//! random-mixed (single thread), docs/benchmarks.md.
//!
//! `random-mixed ITERS WS MIN MAX` or `random-mixed --dist ITERS WS`.
//! WS slots; each iteration draws `r`; slot = `r % WS`; occupied → free, else malloc of
//! `MIN + r % (MAX − MIN + 1)` bytes (or the `dist` mixture). Ops = mallocs + frees of the
//! timed loop; the final cleanup of the slots is neither timed nor counted.

use crate::common::*;
use std::time::Instant;

pub const USAGE: &str =
    "usage: random-mixed ITERS WS MIN MAX\n       random-mixed --dist ITERS WS\n\
ITERS accepts suffixes k/M/G (e.g. 20M). dist: 80% 16-256, 15% 257-2048, 5% 2049-32768.";

enum Sizes {
    Range(SizeRange),
    Dist,
}

/// The timed loop: returns (mallocs, frees, sink).
#[inline(always)]
fn churn(slots: &mut [*mut u8], iters: u64, size: impl Fn(u32) -> usize) -> (u64, u64, u8) {
    let ws = slots.len() as u32;
    let mut rng = Lcg(SEED);
    let (mut mallocs, mut frees) = (0u64, 0u64);
    let mut sink = 0u8;
    for _ in 0..iters {
        let r = rng.next_u32();
        // SAFETY: `r % ws` < slots.len().
        let slot = unsafe { slots.get_unchecked_mut((r % ws) as usize) };
        if !slot.is_null() {
            sink ^= unsafe { free_touch(*slot) };
            *slot = std::ptr::null_mut();
            frees += 1;
        } else {
            *slot = alloc_touch(size(r), r as u8);
            mallocs += 1;
        }
    }
    (mallocs, frees, sink)
}

pub fn run(args: &[String]) -> Result<Report, String> {
    let (dist, args) = match args.first().map(String::as_str) {
        Some("--dist") | Some("dist") => (true, &args[1..]),
        _ => (false, args),
    };
    let iters = arg_count(args, 0, "ITERS")?;
    let ws = arg_u32(args, 1, "WS")?;
    if ws == 0 {
        return Err("WS must be > 0".into());
    }
    let sizes = if dist {
        if args.len() != 2 {
            return Err("--dist takes exactly ITERS WS".into());
        }
        Sizes::Dist
    } else {
        if args.len() != 4 {
            return Err("expected ITERS WS MIN MAX".into());
        }
        Sizes::Range(SizeRange::new(
            arg_u32(args, 2, "MIN")?,
            arg_u32(args, 3, "MAX")?,
        )?)
    };

    let mut slots: Vec<*mut u8> = vec![std::ptr::null_mut(); ws as usize];
    let t0 = Instant::now();
    // One monomorphic loop per size mode, so the size draw inlines into the hot loop.
    let (mallocs, frees, mut sink) = match sizes {
        Sizes::Range(sr) => churn(&mut slots, iters, |r| sr.pick(r)),
        Sizes::Dist => churn(&mut slots, iters, dist_size),
    };
    let secs = t0.elapsed().as_secs_f64();

    for p in slots.iter_mut().filter(|p| !p.is_null()) {
        sink ^= unsafe { free_touch(*p) };
        *p = std::ptr::null_mut();
    }
    std::hint::black_box(sink);

    let (label, range) = match sizes {
        Sizes::Range(sr) => (
            "random-mixed",
            format!("{}-{}", sr.min, sr.min + sr.span - 1),
        ),
        Sizes::Dist => ("random-mixed", "dist".to_string()),
    };
    let rep = Report::new(label, mallocs + frees, secs)
        .kv("variant", if dist { "dist" } else { "uniform" })
        .kv("iters", iters)
        .kv("ws", ws)
        .kv("sizes", &range)
        .kv("mallocs", mallocs)
        .kv("frees", frees)
        .kv("threads", 1)
        .kv("malloc_from", malloc_provider());
    rep.print(&format!(
        "random-mixed: single thread, ITERS={iters} WS={ws} sizes={range}"
    ));
    Ok(rep)
}
