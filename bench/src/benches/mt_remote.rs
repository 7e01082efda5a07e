//! mt-remote, docs/benchmarks.md.
//!
//! `mt-remote T ITERS WS MIN MAX REMOTE_PCT RING`
//!
//! T threads (thread `i` seeded `0x12345678 + 977·i`), each with WS private slots and a
//! single-producer/single-consumer bounded ring (capacity RING) to thread `(i+1) % T`.
//! Each iteration: drain my receive ring, freeing every pointer; draw `r`; slot = `r % WS`;
//! occupied → with probability REMOTE_PCT % push the pointer into the next thread's ring
//! (full → free locally and count a fallback), else free locally; empty → malloc
//! `MIN + r % (MAX − MIN + 1)` bytes. The remote decision uses the high half of the same draw
//! (`common::percent_of`), so the slot/size sequence does not depend on REMOTE_PCT.
//!
//! Timing runs from the first thread leaving the start barrier until the last thread has
//! finished its loop *and* drained its ring (after a barrier, so no producer is still
//! pushing), read from the workers' own clocks ([`Span`]); the final free of each thread's
//! own slots is neither timed nor counted. Ops = mallocs + frees, a remote free
//! counted once, by the thread that frees it. ITERS is per thread.

use crate::common::*;
use std::cell::Cell;
use std::sync::atomic::{AtomicI64, AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Instant;

pub const USAGE: &str = "usage: mt-remote T ITERS WS MIN MAX REMOTE_PCT RING\n\
ITERS is per thread and accepts k/M/G suffixes. Valid only when the fallback rate < 0.1%.";

/// Fallback rate at or above which a result is not valid (docs/benchmarks.md: 0.1 %).
pub const FALLBACK_LIMIT: f64 = 0.001;

#[repr(align(128))]
#[derive(Default)]
struct Padded<T>(T);

/// Bounded single-producer/single-consumer ring of pointers.
pub struct Ring {
    buf: Box<[AtomicPtr<u8>]>,
    mask: usize,
    cap: usize,
    /// Next index the consumer reads (written by the consumer only).
    head: Padded<AtomicUsize>,
    /// Next index the producer writes (written by the producer only).
    tail: Padded<AtomicUsize>,
}

impl Ring {
    pub fn new(cap: usize) -> Ring {
        assert!(cap > 0);
        let buf: Box<[AtomicPtr<u8>]> = (0..cap)
            .map(|_| AtomicPtr::new(std::ptr::null_mut()))
            .collect();
        Ring {
            buf,
            mask: if cap.is_power_of_two() { cap - 1 } else { 0 },
            cap,
            head: Padded(AtomicUsize::new(0)),
            tail: Padded(AtomicUsize::new(0)),
        }
    }

    #[inline(always)]
    fn idx(&self, i: usize) -> usize {
        if self.mask != 0 || self.cap == 1 {
            i & self.mask
        } else {
            i % self.cap
        }
    }

    /// Producer side. `cached_head` is the producer's private copy of `head`.
    #[inline(always)]
    pub fn push(&self, p: *mut u8, cached_head: &Cell<usize>) -> bool {
        let t = self.tail.0.load(Ordering::Relaxed);
        if t.wrapping_sub(cached_head.get()) >= self.cap {
            cached_head.set(self.head.0.load(Ordering::Acquire));
            if t.wrapping_sub(cached_head.get()) >= self.cap {
                return false;
            }
        }
        self.buf[self.idx(t)].store(p, Ordering::Relaxed);
        self.tail.0.store(t.wrapping_add(1), Ordering::Release);
        true
    }

    /// Consumer side: hand every queued pointer to `f`; returns how many.
    #[inline(always)]
    pub fn drain(&self, mut f: impl FnMut(*mut u8)) -> u64 {
        let h = self.head.0.load(Ordering::Relaxed);
        let t = self.tail.0.load(Ordering::Acquire);
        if h == t {
            return 0;
        }
        let mut i = h;
        while i != t {
            f(self.buf[self.idx(i)].load(Ordering::Relaxed));
            i = i.wrapping_add(1);
        }
        self.head.0.store(t, Ordering::Release);
        t.wrapping_sub(h) as u64
    }
}

/// Objects sent and not yet freed by their receiver, summed over all rings: the memory the
/// benchmark itself holds beyond its working sets, which on an oversubscribed machine depends
/// on how long receivers stay descheduled (and so differs between allocators and runs). Each
/// thread publishes its net count every [`InFlight::EVERY`] iterations, so the peak is
/// sampled, not exact: it can miss the sends of up to `EVERY` iterations per thread. Reported in objects
/// and in MiB of requested bytes (objects × mean size).
#[derive(Default)]
struct InFlight {
    now: Padded<AtomicI64>,
    peak: Padded<AtomicI64>,
}

impl InFlight {
    const EVERY: u64 = 256;

    fn publish(&self, pending: &mut i64) {
        if *pending != 0 {
            let v = self.now.0.fetch_add(*pending, Ordering::Relaxed) + *pending;
            self.peak.0.fetch_max(v, Ordering::Relaxed);
            *pending = 0;
        }
    }

    fn peak(&self) -> i64 {
        self.peak.0.load(Ordering::Relaxed)
    }
}

static PAUSE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static PARKED: AtomicUsize = AtomicUsize::new(0);
static DONE: AtomicUsize = AtomicUsize::new(0);

fn statm_rss(fd: i32) -> u64 {
    let mut buf = [0u8; 128];
    let n = unsafe { libc::pread(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n <= 0 {
        return 0;
    }
    let mut it = buf[..n as usize].split(|&b| b == b' ');
    it.next();
    let mut v = 0u64;
    for &c in it.next().unwrap_or(b"0") {
        v = v * 10 + (c - b'0') as u64;
    }
    v * 4096
}

/// A scratch slice of `n` words mapped directly (not through the allocator measured), unmapped
/// after each probe so it does not count in the next RSS reading.
struct Scratch {
    p: *mut usize,
    n: usize,
}
impl Scratch {
    fn new(n: usize) -> Scratch {
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                n * 8,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert!(p != libc::MAP_FAILED);
        Scratch { p: p.cast(), n }
    }
    fn s(&mut self) -> &mut [usize] {
        unsafe { std::slice::from_raw_parts_mut(self.p, self.n) }
    }
}
impl Drop for Scratch {
    fn drop(&mut self) {
        unsafe { libc::munmap(self.p.cast(), self.n * 8) };
    }
}

/// Resident pages among sorted distinct page numbers: one `mincore` per stretch of adjacent pages.
fn resident_pages(pages: &[usize]) -> u64 {
    let mut res = 0u64;
    let mut v = [0u8; 4096];
    let mut i = 0;
    while i < pages.len() {
        let mut j = i + 1;
        while j < pages.len() && pages[j] == pages[j - 1] + 1 && j - i < v.len() {
            j += 1;
        }
        let n = j - i;
        if unsafe {
            libc::mincore(
                (pages[i] << 12) as *mut libc::c_void,
                n << 12,
                v.as_mut_ptr(),
            )
        } == 0
        {
            res += v[..n].iter().filter(|&&b| b & 1 != 0).count() as u64;
        }
        i = j;
    }
    res
}

/// TEMPORARY probe loop (see `run`): returns the PROBE line of the probe at the highest RSS.
fn probe_loop(
    threads: usize,
    ws: usize,
    mean: f64,
    flight: &InFlight,
    stop: &std::sync::atomic::AtomicBool,
    rings: &[Ring],
    slot_ptrs: &[AtomicUsize],
) -> String {
    type ProbeFn = unsafe extern "C" fn(*const usize, usize, *mut u64);
    let sym = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"hakozuna_probe_pages".as_ptr()) };
    let f: Option<ProbeFn> =
        (!sym.is_null()).then(|| unsafe { std::mem::transmute::<*mut libc::c_void, ProbeFn>(sym) });
    let fd = unsafe { libc::open(c"/proc/self/statm".as_ptr(), libc::O_RDONLY) };
    let all = std::env::var_os("MTR_PROBE_ALL").is_some();
    let step: u64 = std::env::var("MTR_PROBE_STEP")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(25);
    let mut last = 0u64;
    let mut best = String::from("PROBE none");
    let mut best_rss = 0u64;
    let mut probes = 0;
    let mut max_seen = 0u64;
    let mut pause_us = 0u128;
    let t_start = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let rss = statm_rss(fd);
        max_seen = max_seen.max(rss);
        if rss > 256 << 20 && rss > last + last / step {
            let t0 = Instant::now();
            PAUSE.store(true, Ordering::SeqCst);
            while PARKED.load(Ordering::Acquire) + DONE.load(Ordering::Acquire) < threads {
                std::hint::spin_loop();
            }
            let done = DONE.load(Ordering::Acquire);
            let mut o = [0u64; 128];
            let mut got = None;
            if done < threads {
                let rss = statm_rss(fd);
                let now = flight.now.0.load(Ordering::Relaxed);
                let mut live_buf = Scratch::new(threads * (ws + rings[0].cap) + 16);
                let live = live_buf.s();
                let mut nl = 0;
                for sp in slot_ptrs {
                    let s = sp.load(Ordering::Acquire) as *const *mut u8;
                    for k in 0..ws {
                        let p = unsafe { *s.add(k) };
                        if !p.is_null() {
                            live[nl] = p as usize;
                            nl += 1;
                        }
                    }
                }
                let mut inring = 0u64;
                for r in rings {
                    let h = r.head.0.load(Ordering::Acquire);
                    let t = r.tail.0.load(Ordering::Acquire);
                    let mut k = h;
                    while k != t {
                        live[nl] = r.buf[r.idx(k)].load(Ordering::Relaxed) as usize;
                        nl += 1;
                        inring += 1;
                        k = k.wrapping_add(1);
                    }
                }
                let live = &live[..nl];
                let mut pg_buf = Scratch::new(nl * 9 + 16);
                let pg = pg_buf.s();
                let mut np = 0;
                let mut minp = 0u64;
                for &p in live {
                    let u = unsafe { libc::malloc_usable_size(p as *mut libc::c_void) }.max(1);
                    let (a, b) = (p >> 12, (p + u - 1) >> 12);
                    minp += if b > a { 2 } else { 1 };
                    for x in a..=b {
                        pg[np] = x;
                        np += 1;
                    }
                }
                let pg = &mut pg[..np];
                pg.sort_unstable();
                let mut w = 0;
                for r in 0..pg.len() {
                    if w == 0 || pg[r] != pg[w - 1] {
                        pg[w] = pg[r];
                        w += 1;
                    }
                }
                let span_res = resident_pages(&pg[..w]);
                if let Some(f) = f {
                    unsafe { f(live.as_ptr(), live.len(), o.as_mut_ptr()) };
                }
                got = Some((rss, now, inring, w as u64, span_res, minp));
            }
            PAUSE.store(false, Ordering::SeqCst);
            pause_us += t0.elapsed().as_micros();
            if let Some((rss, now, inring, span, span_res, minp)) = got {
                probes += 1;
                last = rss;
                if rss > best_rss || all {
                    let m = |pages: u64| pages as f64 * 4096.0 / (1 << 20) as f64;
                    let names = [
                        "free_clean",
                        "free_dirty",
                        "free_aged",
                        "pool_res",
                        "pool_cold",
                        "med_live",
                        "med_bins",
                        "small_live",
                        "small_free",
                        "reserved",
                        "small_pinned",
                        "med_central",
                        "med_inbox",
                        "med_pool",
                    ];
                    let mut line = format!(
                        "PROBE t={} rss={:.1} inring_mib={:.1} inflight_now={:.1} done={} LIVE_SPAN={:.1} LIVE_RES={:.1} LIVE_MIN2={:.1} HELD={:.1}",
                        t_start.elapsed().as_millis(),
                        rss as f64 / 1048576.0,
                        inring as f64 * mean / 1048576.0,
                        now as f64 * mean / 1048576.0,
                        done,
                        m(span), m(span_res), m(minp), rss as f64 / 1048576.0 - m(span_res),
                    );
                    if f.is_some() {
                        let mut res_total = 0;
                        for (k, n) in names.iter().enumerate() {
                            line.push_str(&format!(
                                " {}={:.1}/{:.1}",
                                n,
                                m(o[2 * k + 1]),
                                m(o[2 * k])
                            ));
                            res_total += o[2 * k + 1];
                        }
                        line.push_str(&format!(
                            " arena_res={:.1} outside_arena={:.1} heapfree=",
                            m(res_total),
                            (rss as f64 - res_total as f64 * 4096.0) / 1048576.0
                        ));
                        for h in 0..threads.min(64) + 2 {
                            line.push_str(&format!("{:.0},", m(o[32 + h])));
                        }
                    }
                    if all {
                        eprintln!("{line}");
                    }
                    if rss > best_rss {
                        best_rss = rss;
                        best = line;
                    }
                }
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    format!(
        "{best} probes={probes} pause_ms={} statm_max={:.1}",
        pause_us / 1000,
        max_seen as f64 / 1048576.0
    )
}

#[derive(Default, Clone, Copy, Debug)]
struct Counts {
    mallocs: u64,
    local_frees: u64,
    recv_frees: u64,
    sends: u64,
    fallbacks: u64,
    sink: u8,
    span: Option<Span>,
    fin_ms: f64,
    cpu_ms: f64,
    nvcsw: u64,
    nivcsw: u64,
}

pub fn run(args: &[String]) -> Result<Report, String> {
    if args.len() != 7 {
        return Err("expected 7 arguments".into());
    }
    let threads = arg_u32(args, 0, "T")? as usize;
    let iters = arg_count(args, 1, "ITERS")?;
    let ws = arg_u32(args, 2, "WS")?;
    let sizes = SizeRange::new(arg_u32(args, 3, "MIN")?, arg_u32(args, 4, "MAX")?)?;
    let pct = arg_u32(args, 5, "REMOTE_PCT")?;
    let ring_cap = arg_count(args, 6, "RING")? as usize;
    if threads == 0 || ws == 0 || ring_cap == 0 || pct > 100 {
        return Err("need T > 0, WS > 0, RING > 0, REMOTE_PCT <= 100".into());
    }

    let rings: Arc<Vec<Ring>> = Arc::new((0..threads).map(|_| Ring::new(ring_cap)).collect());
    // Barriers: start, all loops done, all rings drained. Main takes part to time the run.
    let bars: Arc<[Barrier; 3]> = Arc::new([
        Barrier::new(threads + 1),
        Barrier::new(threads + 1),
        Barrier::new(threads + 1),
    ]);

    let flight = Arc::new(InFlight::default());

    // TEMPORARY probe (branch peak16k, reverted): MTR_PROBE=1 stops the threads at each RSS
    // high 4 % above the last probed one and classifies hakozuna's arena pages.
    let probe_on = std::env::var_os("MTR_PROBE").is_some();
    let slot_ptrs: Arc<Vec<AtomicUsize>> =
        Arc::new((0..threads).map(|_| AtomicUsize::new(0)).collect());
    let probe_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let prober = probe_on.then(|| {
        let flight = Arc::clone(&flight);
        let stop = Arc::clone(&probe_stop);
        let rings = Arc::clone(&rings);
        let slot_ptrs = Arc::clone(&slot_ptrs);
        let mean = sizes.mean();
        std::thread::spawn(move || {
            probe_loop(
                threads,
                ws as usize,
                mean,
                &flight,
                &stop,
                &rings,
                &slot_ptrs,
            )
        })
    });

    let mut handles = Vec::with_capacity(threads);
    for i in 0..threads {
        let rings = Arc::clone(&rings);
        let flight = Arc::clone(&flight);
        let bars = Arc::clone(&bars);
        let slot_ptrs = Arc::clone(&slot_ptrs);
        let h = std::thread::Builder::new()
            .name(format!("mt-remote-{i}"))
            .spawn(move || {
                let mut c = Counts::default();
                let mut slots: Vec<*mut u8> = vec![std::ptr::null_mut(); ws as usize];
                let mut rng = Lcg::for_thread(i);
                let mine = &rings[i];
                let next = &rings[(i + 1) % threads];
                let cached_head = Cell::new(0usize);
                let mut sink = 0u8;
                let mut pending = 0i64;
                slot_ptrs[i].store(slots.as_ptr() as usize, Ordering::Release);
                bars[0].wait();
                let start = Instant::now();
                for it in 0..iters {
                    if probe_on && PAUSE.load(Ordering::Relaxed) {
                        flight.publish(&mut pending);
                        PARKED.fetch_add(1, Ordering::AcqRel);
                        while PAUSE.load(Ordering::Acquire) {
                            std::thread::sleep(std::time::Duration::from_micros(100));
                        }
                        PARKED.fetch_sub(1, Ordering::AcqRel);
                    }
                    let got = mine.drain(|p| sink ^= unsafe { free_touch(p) });
                    c.recv_frees += got;
                    pending -= got as i64;
                    if it % InFlight::EVERY == 0 {
                        flight.publish(&mut pending);
                    }
                    let r = rng.next_u32();
                    let slot = unsafe { slots.get_unchecked_mut((r % ws) as usize) };
                    if !slot.is_null() {
                        let p = *slot;
                        *slot = std::ptr::null_mut();
                        if pct != 0 && percent_of(r) < pct {
                            if next.push(p, &cached_head) {
                                c.sends += 1;
                                pending += 1;
                                continue;
                            }
                            c.fallbacks += 1;
                        }
                        sink ^= unsafe { free_touch(p) };
                        c.local_frees += 1;
                    } else {
                        *slot = alloc_touch(sizes.pick(r), r as u8);
                        c.mallocs += 1;
                    }
                }
                DONE.fetch_add(1, Ordering::AcqRel);
                c.fin_ms = start.elapsed().as_secs_f64() * 1e3;
                let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
                unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
                c.cpu_ms = (ru.ru_utime.tv_sec as f64 + ru.ru_stime.tv_sec as f64) * 1e3
                    + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) as f64 / 1e3;
                c.nvcsw = ru.ru_nvcsw as u64;
                c.nivcsw = ru.ru_nivcsw as u64;
                bars[1].wait();
                c.recv_frees += mine.drain(|p| sink ^= unsafe { free_touch(p) });
                c.span = Some(Span {
                    start,
                    end: Instant::now(),
                });
                bars[2].wait();
                for p in slots.iter_mut().filter(|p| !p.is_null()) {
                    sink ^= unsafe { free_touch(*p) };
                    *p = std::ptr::null_mut();
                }
                c.sink = sink;
                c
            })
            .map_err(|e| format!("spawn thread {i}: {e}"))?;
        handles.push(h);
    }
    bars[0].wait();
    bars[1].wait();
    probe_stop.store(true, Ordering::Relaxed);
    if let Some(p) = prober {
        println!("{}", p.join().unwrap());
    }
    bars[2].wait();

    let mut tot = Counts::default();
    let mut spans = Vec::with_capacity(threads);
    let mut fin = String::from("FINISH");
    for h in handles {
        let c = h
            .join()
            .map_err(|_| "a benchmark thread panicked".to_string())?;
        fin.push_str(&format!(
            " {:.0}/{:.0}/{}/{}",
            c.fin_ms, c.cpu_ms, c.nvcsw, c.nivcsw
        ));
        tot.mallocs += c.mallocs;
        tot.local_frees += c.local_frees;
        tot.recv_frees += c.recv_frees;
        tot.sends += c.sends;
        tot.fallbacks += c.fallbacks;
        tot.sink ^= c.sink;
        spans.extend(c.span);
    }
    println!("{fin}");
    let secs = Span::covering(spans).ok_or("no thread ran")?.secs();
    std::hint::black_box(tot.sink);
    debug_assert_eq!(tot.sends, tot.recv_frees);

    let frees = tot.local_frees + tot.recv_frees;
    let remote_ratio = if frees > 0 {
        tot.sends as f64 / frees as f64
    } else {
        0.0
    };
    let attempts = tot.sends + tot.fallbacks;
    let fallback_rate = if attempts > 0 {
        tot.fallbacks as f64 / attempts as f64
    } else {
        0.0
    };
    let valid = fallback_rate < FALLBACK_LIMIT;
    let range = format!("{}-{}", sizes.min, sizes.min + sizes.span - 1);

    let rep = Report::new("mt-remote", tot.mallocs + frees, secs)
        .kv("threads", threads)
        .kv("ncpus", ncpus())
        .kv("iters", iters)
        .kv("ws", ws)
        .kv("sizes", &range)
        .kv("remote_pct", pct)
        .kv("ring", ring_cap)
        .kv("mallocs", tot.mallocs)
        .kv("frees", frees)
        .kv("remote_sends", tot.sends)
        .kv("fallbacks", tot.fallbacks)
        .kv("remote_ratio", format!("{remote_ratio:.6}"))
        .kv("fallback_rate", format!("{fallback_rate:.6}"))
        .kv("peak_in_flight", flight.peak())
        .kv(
            "peak_in_flight_mib",
            format!(
                "{:.1}",
                flight.peak() as f64 * sizes.mean() / (1 << 20) as f64
            ),
        )
        .kv("valid", u8::from(valid))
        .kv("malloc_from", malloc_provider());
    let mut human = format!(
        "mt-remote: T={threads} ITERS={iters}/thread WS={ws} sizes={range} R={pct}% RING={ring_cap}; {}\n\
         remote ratio {:.2}% (sends/frees), fallback rate {:.4}% ({} of {} remote attempts)",
        oversub_note(threads),
        remote_ratio * 100.0,
        fallback_rate * 100.0,
        tot.fallbacks,
        attempts
    );
    if !valid {
        human.push_str(&format!(
            "\nWARNING: fallback rate {:.4}% >= {:.1}%: this result is NOT valid (docs/benchmarks.md); \
             use a larger RING or fewer threads",
            fallback_rate * 100.0,
            FALLBACK_LIMIT * 100.0
        ));
        eprintln!(
            "WARNING: mt-remote fallback rate {:.4}% >= 0.1%: result not valid",
            fallback_rate * 100.0
        );
    }
    rep.print(&human);
    Ok(rep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_fills_and_drains() {
        for cap in [1usize, 3, 4] {
            let r = Ring::new(cap);
            let ch = Cell::new(0);
            let mut v = vec![0u8; 8];
            let base = v.as_mut_ptr();
            for k in 0..cap {
                assert!(r.push(unsafe { base.add(k) }, &ch));
            }
            assert!(!r.push(base, &ch), "cap {cap} must be full");
            let mut got = Vec::new();
            assert_eq!(
                r.drain(|p| got.push(p as usize - base as usize)),
                cap as u64
            );
            assert_eq!(got, (0..cap).collect::<Vec<_>>());
            assert!(r.push(base, &ch));
            assert_eq!(r.drain(|_| {}), 1);
        }
    }
}
