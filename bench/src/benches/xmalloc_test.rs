//! xmalloc-test: producer/consumer cross-thread frees, in the style of the xmalloc-test
//! benchmark (as used by mimalloc-bench), written for this project with a fixed amount of work.
//!
//! `xmalloc-test T BATCHES BATCH MIN MAX`
//!
//! T threads: `T/2` producers (at least one) and the rest consumers (at least one). A producer
//! fills a batch with BATCH blocks of `MIN + r % (MAX − MIN + 1)` bytes and queues it; any
//! consumer takes full batches and frees every block, so nearly every free is of memory another
//! thread allocated. Each producer makes BATCHES batches. Batch buffers come from a fixed pool
//! (4 per thread) allocated before timing, which also bounds the memory in flight; the queues
//! are guarded by one mutex (the same for every allocator). Ops = mallocs + frees.

use crate::common::*;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

pub const USAGE: &str = "usage: xmalloc-test T BATCHES BATCH MIN MAX\n\
T/2 producer threads (>=1) each queue BATCHES batches of BATCH blocks; the other threads free them.";

struct Queues {
    full: VecDeque<Vec<usize>>,
    empty: VecDeque<Vec<usize>>,
    producers_done: usize,
}

struct Shared {
    q: Mutex<Queues>,
    have_full: Condvar,
    have_empty: Condvar,
}

pub fn run(args: &[String]) -> Result<Report, String> {
    if args.len() != 5 {
        return Err("expected 5 arguments".into());
    }
    let threads = arg_u32(args, 0, "T")? as usize;
    let batches = arg_count(args, 1, "BATCHES")?;
    let batch = arg_u32(args, 2, "BATCH")? as usize;
    let sizes = SizeRange::new(arg_u32(args, 3, "MIN")?, arg_u32(args, 4, "MAX")?)?;
    if threads < 2 || batch == 0 {
        return Err("need T >= 2 and BATCH > 0".into());
    }
    let producers = (threads / 2).max(1);
    let consumers = threads - producers;
    let pool = 4 * threads;

    let shared = Arc::new(Shared {
        q: Mutex::new(Queues {
            full: VecDeque::with_capacity(pool),
            empty: (0..pool).map(|_| Vec::with_capacity(batch)).collect(),
            producers_done: 0,
        }),
        have_full: Condvar::new(),
        have_empty: Condvar::new(),
    });
    let start = Arc::new(std::sync::Barrier::new(threads + 1));

    let mut handles = Vec::new();
    for i in 0..producers {
        let sh = Arc::clone(&shared);
        let start = Arc::clone(&start);
        handles.push(
            std::thread::Builder::new()
                .name(format!("xmalloc-p{i}"))
                .spawn(move || {
                    let mut rng = Lcg::for_thread(i);
                    start.wait();
                    let t0 = Instant::now();
                    let cpu0 = thread_cpu_secs();
                    let mut waits = 0u64;
                    for _ in 0..batches {
                        let mut buf = {
                            let mut q = sh.q.lock().unwrap();
                            loop {
                                if let Some(b) = q.empty.pop_front() {
                                    break b;
                                }
                                waits += 1;
                                q = sh.have_empty.wait(q).unwrap();
                            }
                        };
                        for _ in 0..batch {
                            let r = rng.next_u32();
                            buf.push(alloc_touch(sizes.pick(r), r as u8) as usize);
                        }
                        sh.q.lock().unwrap().full.push_back(buf);
                        sh.have_full.notify_one();
                    }
                    sh.q.lock().unwrap().producers_done += 1;
                    sh.have_full.notify_all();
                    let span = Span {
                        start: t0,
                        end: Instant::now(),
                    };
                    let cpu = thread_cpu_secs() - cpu0;
                    (batches * batch as u64, 0u64, 0u8, span, cpu, waits)
                })
                .map_err(|e| format!("spawn: {e}"))?,
        );
    }
    for i in 0..consumers {
        let sh = Arc::clone(&shared);
        let start = Arc::clone(&start);
        handles.push(
            std::thread::Builder::new()
                .name(format!("xmalloc-c{i}"))
                .spawn(move || {
                    let mut frees = 0u64;
                    let mut sink = 0u8;
                    start.wait();
                    let t0 = Instant::now();
                    let cpu0 = thread_cpu_secs();
                    let mut waits = 0u64;
                    loop {
                        let mut buf = {
                            let mut q = sh.q.lock().unwrap();
                            loop {
                                if let Some(b) = q.full.pop_front() {
                                    break Some(b);
                                }
                                if q.producers_done == producers {
                                    break None;
                                }
                                waits += 1;
                                q = sh.have_full.wait(q).unwrap();
                            }
                        };
                        let Some(b) = buf.as_mut() else { break };
                        for &p in b.iter() {
                            sink ^= unsafe { free_touch(p as *mut u8) };
                        }
                        frees += b.len() as u64;
                        b.clear();
                        sh.q.lock().unwrap().empty.push_back(buf.take().unwrap());
                        sh.have_empty.notify_one();
                    }
                    let span = Span {
                        start: t0,
                        end: Instant::now(),
                    };
                    let cpu = thread_cpu_secs() - cpu0;
                    (0u64, frees, sink, span, cpu, waits)
                })
                .map_err(|e| format!("spawn: {e}"))?,
        );
    }
    start.wait();
    let mut spans = Vec::with_capacity(threads);
    let mut mallocs = 0u64;
    let mut frees = 0u64;
    let mut sink = 0u8;
    let (mut p_cpu, mut c_cpu, mut p_waits, mut c_waits) = (0.0, 0.0, 0u64, 0u64);
    for h in handles {
        let (m, f, s, span, cpu, waits) = h
            .join()
            .map_err(|_| "a benchmark thread panicked".to_string())?;
        mallocs += m;
        frees += f;
        sink ^= s;
        spans.push(span);
        if m > 0 {
            p_cpu += cpu;
            p_waits += waits;
        } else {
            c_cpu += cpu;
            c_waits += waits;
        }
    }
    let secs = Span::covering(spans).ok_or("no thread ran")?.secs();
    std::hint::black_box(sink);
    if mallocs != frees {
        return Err(format!(
            "internal error: {mallocs} mallocs but {frees} frees"
        ));
    }

    let range = format!("{}-{}", sizes.min, sizes.min + sizes.span - 1);
    let rep = Report::new("xmalloc-test", mallocs + frees, secs)
        .kv("threads", threads)
        .kv("ncpus", ncpus())
        .kv("producers", producers)
        .kv("consumers", consumers)
        .kv("batches", batches)
        .kv("batch", batch)
        .kv("sizes", &range)
        .kv("producer_cpu_s", format!("{p_cpu:.3}"))
        .kv("consumer_cpu_s", format!("{c_cpu:.3}"))
        .kv("producer_waits", p_waits)
        .kv("consumer_waits", c_waits)
        .kv("malloc_from", malloc_provider());
    rep.print(&format!(
        "xmalloc-test: {producers} producers x {batches} batches x {batch} blocks -> {consumers} consumers, sizes {range}; {}",
        oversub_note(threads)
    ));
    Ok(rep)
}
