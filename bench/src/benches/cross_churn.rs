//! cross-churn: threads replace blocks of random sizes (mostly 16 B–8 KiB, some up to 64 KiB)
//! and pass a fraction of the blocks they retire to another thread, which frees them. Written
//! for this project in the shape of rpmalloc's benchmark (issue 18).
//!
//! `cross-churn T ITERS WS CROSS_PCT BATCH`
//!
//! Each of T threads has WS slots. Each iteration draws a slot; a block in it is retired, with
//! probability CROSS_PCT % into an outbox for thread `(i+1) % T`, else freed at once; then a new
//! block of [`rp_size`] bytes goes in the slot. A full outbox (BATCH blocks) is appended to the
//! receiver's mailbox under its mutex; when the mailbox already holds [`MAILBOX_BATCHES`] batches
//! the sender frees the batch itself and counts a fallback. Every [`DRAIN_EVERY`] iterations a
//! thread empties its own mailbox and frees what it found. At the end each thread flushes its
//! outbox, waits for the others and drains its mailbox; the timing ends there (the workers' own
//! clocks). Ops = mallocs + frees; the slots left at the end are freed untimed.

use crate::common::*;
use std::sync::{Arc, Barrier, Mutex};
use std::time::Instant;

pub const USAGE: &str = "usage: cross-churn T ITERS WS CROSS_PCT BATCH\n\
T threads (>= 2) each do ITERS replacements in WS slots; CROSS_PCT % of the retired blocks go in\n\
batches of BATCH to the next thread, which frees them (e.g. cross-churn 2 4M 4096 25 64).";

/// Batches a mailbox holds at most; beyond that a sender frees its batch itself.
pub const MAILBOX_BATCHES: usize = 16;
/// Iterations between two drains of a thread's own mailbox.
pub const DRAIN_EVERY: u64 = 64;

/// Request size: 95 % log-uniform over the octaves 16 B–8 KiB (the octave from bits 8.. of the
/// draw, the size inside it from `r % width`), 5 % uniform in 8193–65536 (the choice from
/// [`percent_of`]).
#[inline(always)]
pub fn rp_size(r: u32) -> usize {
    if percent_of(r) < 95 {
        let hi = 16u32 << ((r >> 8) % 10);
        let lo = (hi / 2).max(16);
        (lo + r % (hi - lo + 1)) as usize
    } else {
        (8193 + r % (65536 - 8192)) as usize
    }
}

struct Mailbox {
    blocks: Mutex<Vec<usize>>,
}

#[derive(Default)]
struct Tally {
    mallocs: u64,
    frees: u64,
    sent: u64,
    fallbacks: u64,
    sink: u8,
}

impl Tally {
    fn free_all(&mut self, blocks: &[usize]) {
        for &p in blocks {
            // SAFETY: every pointer in a batch or mailbox is a live block freed exactly once.
            self.sink ^= unsafe { free_touch(p as *mut u8) };
        }
        self.frees += blocks.len() as u64;
    }

    /// Hand `out` to `to`, or free it here when `to` is full.
    fn send(&mut self, to: &Mailbox, out: &mut Vec<usize>, cap: usize) {
        let mut mb = to.blocks.lock().unwrap();
        if mb.len() + out.len() <= cap {
            mb.extend_from_slice(out);
            drop(mb);
            self.sent += out.len() as u64;
        } else {
            drop(mb);
            self.fallbacks += out.len() as u64;
            self.free_all(out);
        }
        out.clear();
    }

    /// Take everything in `mine` (into the preallocated `inbox`) and free it.
    fn drain(&mut self, mine: &Mailbox, inbox: &mut Vec<usize>) {
        {
            let mut mb = mine.blocks.lock().unwrap();
            inbox.extend_from_slice(&mb);
            mb.clear();
        }
        self.free_all(inbox);
        inbox.clear();
    }
}

pub fn run(args: &[String]) -> Result<Report, String> {
    if args.len() != 5 {
        return Err("expected 5 arguments".into());
    }
    let threads = arg_u32(args, 0, "T")? as usize;
    let iters = arg_count(args, 1, "ITERS")?;
    let ws = arg_u32(args, 2, "WS")? as usize;
    let cross = arg_u32(args, 3, "CROSS_PCT")?;
    let batch = arg_u32(args, 4, "BATCH")? as usize;
    if threads < 2 || ws == 0 || cross > 100 || batch == 0 {
        return Err("need T >= 2, WS > 0, CROSS_PCT <= 100 and BATCH > 0".into());
    }
    let cap = MAILBOX_BATCHES * batch;
    let boxes: Arc<Vec<Mailbox>> = Arc::new(
        (0..threads)
            .map(|_| Mailbox {
                blocks: Mutex::new(Vec::with_capacity(cap)),
            })
            .collect(),
    );
    let start = Arc::new(Barrier::new(threads + 1));
    let done = Arc::new(Barrier::new(threads));
    let mut handles = Vec::with_capacity(threads);
    for i in 0..threads {
        let (boxes, start, done) = (Arc::clone(&boxes), Arc::clone(&start), Arc::clone(&done));
        handles.push(
            std::thread::Builder::new()
                .name(format!("cross-{i}"))
                .spawn(move || {
                    let mut rng = Lcg::for_thread(i);
                    let mut slots: Vec<*mut u8> = vec![std::ptr::null_mut(); ws];
                    let mut out: Vec<usize> = Vec::with_capacity(batch);
                    let mut inbox: Vec<usize> = Vec::with_capacity(cap);
                    let (mine, next) = (&boxes[i], &boxes[(i + 1) % threads]);
                    let mut t = Tally::default();
                    start.wait();
                    let t0 = Instant::now();
                    for it in 0..iters {
                        let r = rng.next_u32();
                        let slot = &mut slots[r as usize % ws];
                        if !slot.is_null() {
                            if percent_of(r) < cross {
                                out.push(*slot as usize);
                                if out.len() == batch {
                                    t.send(next, &mut out, cap);
                                }
                            } else {
                                // SAFETY: the slot's block is live and leaves the slot here.
                                t.sink ^= unsafe { free_touch(*slot) };
                                t.frees += 1;
                            }
                        }
                        let r2 = rng.next_u32();
                        *slot = alloc_touch(rp_size(r2), r2 as u8);
                        t.mallocs += 1;
                        if it % DRAIN_EVERY == DRAIN_EVERY - 1 {
                            t.drain(mine, &mut inbox);
                        }
                    }
                    if !out.is_empty() {
                        t.send(next, &mut out, cap);
                    }
                    done.wait();
                    t.drain(mine, &mut inbox);
                    let span = Span {
                        start: t0,
                        end: Instant::now(),
                    };
                    for &p in slots.iter().filter(|p| !p.is_null()) {
                        // SAFETY: live blocks still in the slots, freed once (untimed).
                        t.sink ^= unsafe { free_touch(p) };
                    }
                    (t, span)
                })
                .map_err(|e| format!("spawn: {e}"))?,
        );
    }
    start.wait();
    let mut spans = Vec::with_capacity(threads);
    let mut all = Tally::default();
    for h in handles {
        let (t, span) = h
            .join()
            .map_err(|_| "a benchmark thread panicked".to_string())?;
        all.mallocs += t.mallocs;
        all.frees += t.frees;
        all.sent += t.sent;
        all.fallbacks += t.fallbacks;
        all.sink ^= t.sink;
        spans.push(span);
    }
    std::hint::black_box(all.sink);
    let secs = Span::covering(spans).ok_or("no thread ran")?.secs();
    let retired = all.sent + all.fallbacks;
    let rep = Report::new("cross-churn", all.mallocs + all.frees, secs)
        .kv("threads", threads)
        .kv("ncpus", ncpus())
        .kv("iters", iters)
        .kv("ws", ws)
        .kv("cross_pct", cross)
        .kv("batch", batch)
        .kv("sizes", "95%16-8192log/5%8193-65536")
        .kv("mallocs", all.mallocs)
        .kv("frees", all.frees)
        .kv("cross_frees", all.sent)
        .kv(
            "fallback_share",
            format!("{:.4}", all.fallbacks as f64 / retired.max(1) as f64),
        )
        .kv("malloc_from", malloc_provider());
    rep.print(&format!(
        "cross-churn: {threads} threads x {iters} replacements in {ws} slots, {cross}% retired to the next thread in batches of {batch} ({} sent, {} freed by the sender as the mailbox was full); {}",
        all.sent,
        all.fallbacks,
        oversub_note(threads)
    ));
    Ok(rep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_mostly_small_some_large() {
        let mut r = Lcg(SEED);
        let (mut small, mut large) = (0u32, 0u32);
        for _ in 0..100_000 {
            let s = rp_size(r.next_u32());
            assert!((16..=65536).contains(&s), "{s}");
            if s <= 8192 {
                small += 1
            } else {
                large += 1
            }
        }
        assert!((94_000..96_000).contains(&small), "{small}");
        assert!((4_000..6_000).contains(&large), "{large}");
    }
}
