//! mt-remote, docs/benchmarks.md.
//!
//! `mt-remote T ITERS WS MIN MAX REMOTE_PCT RING [END]`
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
//! own slots is neither timed nor counted. `finish_spread_ms` is the time between the first
//! and the last thread leaving its loop; `loop_cpu_ms_min`/`_max` the least and most CPU
//! time a thread had used by then (equal work, so a wide finish spread with close CPU times
//! is the scheduler's, not the allocator's). Ops = mallocs + frees, a remote free
//! counted once, by the thread that frees it. ITERS is per thread.
//!
//! END says what a thread does between leaving its loop and the barrier: `stop` (the default,
//! the seed's shape) waits at once, so its producer fills its ring until the producer ends
//! too; `drain` keeps draining its ring until its producer has left its loop, as the hz3
//! Windows bench's matched mode does, so what the peak holds in flight is the main phase's.

use crate::common::*;
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Instant;

pub const USAGE: &str = "usage: mt-remote T ITERS WS MIN MAX REMOTE_PCT RING [stop|drain]\n\
ITERS is per thread and accepts k/M/G suffixes. Valid only when the fallback rate < 0.1%.\n\
drain: a thread that has left its loop drains its ring until its producer has left its own.";

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
/// thread publishes its net count every [`InFlight::EVERY`] iterations, and at once when it
/// has freed [`InFlight::BATCH`] received objects, so the peak is sampled, not exact: it can
/// miss the sends of up to `EVERY` iterations per thread, or count up to `BATCH` received
/// objects per thread as still in flight. Reported in objects
/// and in MiB of requested bytes (objects × mean size).
#[derive(Default)]
struct InFlight {
    now: Padded<AtomicI64>,
    peak: Padded<AtomicI64>,
}

impl InFlight {
    const EVERY: u64 = 256;
    /// Receives past which a thread publishes at once: one drain can free thousands of
    /// objects, and held back until the next `EVERY` they made the sum overstate the peak.
    const BATCH: i64 = 256;

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

#[derive(Default, Clone, Copy, Debug)]
struct Counts {
    mallocs: u64,
    local_frees: u64,
    recv_frees: u64,
    sends: u64,
    fallbacks: u64,
    sink: u8,
    span: Option<Span>,
    /// When this thread left its loop (before the barrier that ends the loops).
    loop_end: Option<Instant>,
    /// CPU seconds this thread had used when it left its loop.
    loop_cpu: f64,
}

pub fn run(args: &[String]) -> Result<Report, String> {
    if args.len() != 7 && args.len() != 8 {
        return Err("expected 7 or 8 arguments".into());
    }
    let drain_to_end = match args.get(7).map(String::as_str) {
        None | Some("stop") => false,
        Some("drain") => true,
        Some(other) => return Err(format!("END must be stop or drain, not {other}")),
    };
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
    // Set (Release) by thread `i` after its last push into ring `(i+1) % T`.
    let loop_done: Arc<Vec<Padded<AtomicBool>>> = Arc::new(
        (0..threads)
            .map(|_| Padded(AtomicBool::new(false)))
            .collect(),
    );

    let mut handles = Vec::with_capacity(threads);
    for i in 0..threads {
        let rings = Arc::clone(&rings);
        let flight = Arc::clone(&flight);
        let bars = Arc::clone(&bars);
        let loop_done = Arc::clone(&loop_done);
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
                bars[0].wait();
                let start = Instant::now();
                for it in 0..iters {
                    let got = mine.drain(|p| sink ^= unsafe { free_touch(p) });
                    c.recv_frees += got;
                    pending -= got as i64;
                    if it % InFlight::EVERY == 0 || pending <= -InFlight::BATCH {
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
                c.loop_end = Some(Instant::now());
                c.loop_cpu = thread_cpu_secs();
                loop_done[i].0.store(true, Ordering::Release);
                if drain_to_end {
                    let producer = &loop_done[(i + threads - 1) % threads].0;
                    // Acquire pairs with the producer's Release: once it reads true, the
                    // drain below sees every push the producer made.
                    while !producer.load(Ordering::Acquire) {
                        let got = mine.drain(|p| sink ^= unsafe { free_touch(p) });
                        c.recv_frees += got;
                        pending -= got as i64;
                        flight.publish(&mut pending);
                        if got == 0 {
                            std::thread::yield_now();
                        }
                    }
                }
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
    bars[2].wait();

    let mut tot = Counts::default();
    let mut spans = Vec::with_capacity(threads);
    let mut loop_ends = Vec::with_capacity(threads);
    let (mut cpu_min, mut cpu_max) = (f64::INFINITY, 0.0f64);
    for h in handles {
        let c = h
            .join()
            .map_err(|_| "a benchmark thread panicked".to_string())?;
        tot.mallocs += c.mallocs;
        tot.local_frees += c.local_frees;
        tot.recv_frees += c.recv_frees;
        tot.sends += c.sends;
        tot.fallbacks += c.fallbacks;
        tot.sink ^= c.sink;
        spans.extend(c.span);
        loop_ends.extend(c.loop_end);
        cpu_min = cpu_min.min(c.loop_cpu);
        cpu_max = cpu_max.max(c.loop_cpu);
    }
    let secs = Span::covering(spans).ok_or("no thread ran")?.secs();
    // How far apart the threads left their loops: a finished thread stops draining its ring
    // while its producer may still fill it, so the peak in flight grows with this spread.
    let finish_spread = match (loop_ends.iter().min(), loop_ends.iter().max()) {
        (Some(a), Some(b)) => b.saturating_duration_since(*a).as_secs_f64(),
        _ => 0.0,
    };
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
        .kv("end", if drain_to_end { "drain" } else { "stop" })
        .kv("mallocs", tot.mallocs)
        .kv("frees", frees)
        .kv("remote_sends", tot.sends)
        .kv("received_frees", tot.recv_frees)
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
        .kv("finish_spread_ms", format!("{:.1}", finish_spread * 1e3))
        .kv("loop_cpu_ms_min", format!("{:.1}", cpu_min * 1e3))
        .kv("loop_cpu_ms_max", format!("{:.1}", cpu_max * 1e3))
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

    fn field<'a>(rep: &'a Report, k: &str) -> &'a str {
        rep.extra
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no field {k}"))
    }

    #[test]
    fn end_argument() {
        let args = |end: Option<&str>| -> Vec<String> {
            let mut v: Vec<String> = ["3", "3000", "32", "16", "256", "50", "4096"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            v.extend(end.map(str::to_string));
            v
        };
        for (end, name) in [
            (None, "stop"),
            (Some("stop"), "stop"),
            (Some("drain"), "drain"),
        ] {
            let rep = run(&args(end)).expect("runs");
            assert_eq!(field(&rep, "end"), name);
            // Every pointer sent was freed by its receiver (the final drain included).
            let sends: u64 = field(&rep, "remote_sends").parse().unwrap();
            let received: u64 = field(&rep, "received_frees").parse().unwrap();
            assert!(
                sends > 0 && received == sends,
                "{end:?}: {sends} sends, {received} received"
            );
        }
        assert!(run(&args(Some("wait"))).is_err());
    }

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
