//! burst-idle: does memory go back after a burst, once the program goes quiet? Written for
//! this project (docs/benchmarks.md, "Memory programs").
//!
//! `burst-idle [T [TOTAL_MIB [IDLE_SECS]]]` (defaults 4, 1024, 12)
//!
//! T threads each allocate TOTAL_MIB / T MiB of requested bytes in blocks of
//! [`burst_size`] (16 B – 256 KiB, mostly small by count) and write one byte in every page
//! of every block, so it is all resident. After a barrier every block is freed: a thread
//! frees its own even-numbered blocks and the odd-numbered blocks of thread `(i − 1) mod T`
//! (handed over through a shared array before the barrier), so half of all frees are
//! cross-thread. The threads exit. The main thread then sleeps IDLE_SECS (past the
//! allocator's decay interval), makes one small allocation (`malloc(64)`, touched, freed) so
//! the allocator has a call in which to purge, reads RSS (`/proc/self/statm`), calls
//! `malloc_trim(0)` (looked up with `dlsym`; the RESULT says whether it is the allocator's
//! own) and reads RSS again.
//!
//! Ops = mallocs + frees; `secs` = the burst, from spawning the first thread to joining the
//! last (thread start and exit included), on the main thread's clock.

use crate::common::*;
use crate::memstat::{self, alloc_touch_pages, Trim};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

pub const USAGE: &str = "usage: burst-idle [T [TOTAL_MIB [IDLE_SECS]]]   (defaults 4 1024 12)\n\
T threads allocate TOTAL_MIB MiB in all (16 B - 256 KiB, every page touched), free it all (half \
cross-thread) and exit;\nthen the process idles IDLE_SECS (may be fractional or 0), mallocs 64 \
bytes, reads RSS, calls malloc_trim(0) and reads RSS again.";

/// The size classes of [`burst_size`], in ‰ of blocks: 850 ‰ 16–256, 120 ‰ 257–2048,
/// 26 ‰ 2049–32768, 4 ‰ 32769–262144. By bytes that is about 9 %, 11 %, 35 % and 45 %
/// (mean request 1296 B), so every tier of an allocator holds a real share of the burst.
pub const CLASSES: [(u32, u32, u32); 4] = [
    (850, 16, 256),
    (970, 257, 2048),
    (996, 2049, 32768),
    (1000, 32769, 262144),
];

/// Request size for a draw `r`: the class from the high 16 bits (in ‰, as
/// [`percent_of`] does in %), the size inside it from `lo + r % (hi − lo + 1)`.
#[inline(always)]
pub fn burst_size(r: u32) -> usize {
    let pm = ((r >> 16) * 1000) >> 16;
    let mut k = 0;
    while pm >= CLASSES[k].0 {
        k += 1;
    }
    let (_, lo, hi) = CLASSES[k];
    (lo + r % (hi - lo + 1)) as usize
}

#[derive(Default)]
struct Counts {
    mallocs: u64,
    bytes: u64,
    local_frees: u64,
    remote_frees: u64,
    sink: u8,
}

pub fn run(args: &[String]) -> Result<Report, String> {
    if args.len() > 3 {
        return Err("expected at most 3 arguments".into());
    }
    let threads = if args.is_empty() {
        4
    } else {
        arg_u32(args, 0, "T")? as usize
    };
    let total_mib = if args.len() > 1 {
        arg_count(args, 1, "TOTAL_MIB")?
    } else {
        1024
    };
    let idle: f64 = match args.get(2) {
        None => 12.0,
        Some(s) => s
            .parse()
            .ok()
            .filter(|x: &f64| x.is_finite() && *x >= 0.0)
            .ok_or_else(|| format!("IDLE_SECS: not a number of seconds: {s:?}"))?,
    };
    if threads == 0 || total_mib == 0 {
        return Err("need T > 0 and TOTAL_MIB > 0".into());
    }
    let per_thread = (total_mib << 20) / threads as u64;
    let page = memstat::page_size();
    let rss_start = memstat::rss_kb().unwrap_or(0);

    // handoff[i]: the blocks thread i allocated and thread (i + 1) % T frees.
    let handoff: Arc<Vec<Mutex<Vec<usize>>>> =
        Arc::new((0..threads).map(|_| Mutex::new(Vec::new())).collect());
    // [all allocated, main has read RSS]: main takes part in both.
    let bars = Arc::new([Barrier::new(threads + 1), Barrier::new(threads + 1)]);

    let t0 = Instant::now();
    let mut handles = Vec::with_capacity(threads);
    for i in 0..threads {
        let handoff = Arc::clone(&handoff);
        let bars = Arc::clone(&bars);
        let h = std::thread::Builder::new()
            .name(format!("burst-{i}"))
            .spawn(move || {
                let mut c = Counts::default();
                let mut rng = Lcg::for_thread(i);
                let mut mine: Vec<usize> = Vec::new();
                let mut give: Vec<usize> = Vec::new();
                while c.bytes < per_thread {
                    let r = rng.next_u32();
                    let size = burst_size(r);
                    let p = alloc_touch_pages(size, r as u8, page) as usize;
                    if c.mallocs % 2 == 0 {
                        mine.push(p);
                    } else {
                        give.push(p);
                    }
                    c.mallocs += 1;
                    c.bytes += size as u64;
                }
                *handoff[i].lock().unwrap() = give;
                bars[0].wait();
                bars[1].wait();
                let theirs =
                    std::mem::take(&mut *handoff[(i + threads - 1) % threads].lock().unwrap());
                let mut sink = 0u8;
                for p in mine {
                    sink ^= unsafe { free_touch(p as *mut u8) };
                    c.local_frees += 1;
                }
                for p in theirs {
                    sink ^= unsafe { free_touch(p as *mut u8) };
                    c.remote_frees += 1;
                }
                c.sink = sink;
                c
            })
            .map_err(|e| format!("spawn thread {i}: {e}"))?;
        handles.push(h);
    }
    bars[0].wait();
    let rss_full = memstat::rss_kb().unwrap_or(0);
    bars[1].wait();
    let mut tot = Counts::default();
    for h in handles {
        let c = h
            .join()
            .map_err(|_| "a burst thread panicked".to_string())?;
        tot.mallocs += c.mallocs;
        tot.bytes += c.bytes;
        tot.local_frees += c.local_frees;
        tot.remote_frees += c.remote_frees;
        tot.sink ^= c.sink;
    }
    let secs = t0.elapsed().as_secs_f64();
    let rss_freed = memstat::rss_kb().unwrap_or(0);

    std::thread::sleep(Duration::from_secs_f64(idle));
    let p = alloc_touch(64, 1);
    tot.sink ^= unsafe { free_touch(p) };
    let rss_idle = memstat::rss_kb().unwrap_or(0);

    let malloc_from = malloc_provider();
    let trim = Trim::find();
    let trim_kind = trim.kind(&malloc_from);
    let trim_ret = trim.call();
    let rss_trim = trim_ret.map(|_| memstat::rss_kb().unwrap_or(0));
    let peak = memstat::vm_hwm_kb().unwrap_or(0);
    let (minflt, majflt) = memstat::faults();
    let wall = t0.elapsed().as_secs_f64();
    std::hint::black_box(tot.sink);

    let frees = tot.local_frees + tot.remote_frees;
    let rep = Report::new("burst-idle", tot.mallocs + frees, secs)
        .kv("threads", threads)
        .kv("ncpus", ncpus())
        .kv("total_mib", total_mib)
        .kv("idle_secs", idle)
        .kv("sizes", "16-262144")
        .kv("mallocs", tot.mallocs)
        .kv("frees", frees)
        .kv("remote_frees", tot.remote_frees)
        .kv(
            "requested_mib",
            format!("{:.1}", tot.bytes as f64 / (1 << 20) as f64),
        )
        .kv("rss_start_kb", rss_start)
        .kv("rss_full_kb", rss_full)
        .kv("rss_freed_kb", rss_freed)
        .kv("rss_idle_kb", rss_idle)
        .kv(
            "rss_trim_kb",
            rss_trim
                .map(|k| k.to_string())
                .unwrap_or_else(|| "na".into()),
        )
        .kv("peak_rss_kb", peak)
        .kv("minflt", minflt)
        .kv("majflt", majflt)
        .kv("trim", trim_kind)
        .kv(
            "trim_ret",
            trim_ret
                .map(|r| r.to_string())
                .unwrap_or_else(|| "na".into()),
        )
        .kv("trim_from", &trim.from)
        .kv("wall_secs", format!("{wall:.3}"))
        .kv("malloc_from", &malloc_from);
    let trim_note = match trim_kind {
        "own" => format!("malloc_trim(0) from {} returned {}", trim.from, trim_ret.unwrap_or(0)),
        "other" => format!(
            "malloc_trim(0) is {}'s, not the allocator's: it cannot release this allocator's memory",
            trim.from
        ),
        _ => "no malloc_trim in this process: RSS after trim not measured".into(),
    };
    rep.print(&format!(
        "burst-idle: {threads} threads allocated {:.0} MiB requested ({} blocks, 16 B - 256 KiB, \
         every page touched), freed all ({} cross-thread), exited; {}\n\
         RSS: start {}, all allocated {}, peak (VmHWM) {}, after the threads exited {}, \
         after {idle} s idle + malloc(64) {}, after malloc_trim(0) {}\n{trim_note}\n\
         minor faults {minflt}, burst {secs:.3} s, whole run {wall:.3} s",
        tot.bytes as f64 / (1 << 20) as f64,
        tot.mallocs,
        tot.remote_frees,
        oversub_note(threads),
        memstat::mib(rss_start),
        memstat::mib(rss_full),
        memstat::mib(peak),
        memstat::mib(rss_freed),
        memstat::mib(rss_idle),
        rss_trim.map(memstat::mib).unwrap_or_else(|| "-".into()),
    ));
    Ok(rep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_in_range_and_mostly_small() {
        let mut r = Lcg(SEED);
        let mut n = [0u32; 4];
        let mut bytes = 0u64;
        let draws = 1_000_000;
        for _ in 0..draws {
            let s = burst_size(r.next_u32());
            assert!((16..=262_144).contains(&s), "{s}");
            bytes += s as u64;
            let k = CLASSES.iter().position(|c| s as u32 <= c.2).unwrap();
            n[k] += 1;
        }
        assert!((845_000..855_000).contains(&n[0]), "{n:?}");
        assert!((115_000..125_000).contains(&n[1]), "{n:?}");
        assert!((24_000..28_000).contains(&n[2]), "{n:?}");
        assert!((3_000..5_000).contains(&n[3]), "{n:?}");
        let mean = bytes as f64 / draws as f64;
        assert!((1150.0..1450.0).contains(&mean), "mean {mean}");
    }
}
