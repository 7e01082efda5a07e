//! larson: a server simulation in the style of Larson & Krishnan's benchmark (as used by
//! mimalloc-bench), written for this project with a fixed amount of work instead of a fixed
//! time.
//!
//! `larson T GENERATIONS OPS SLOTS MIN MAX`
//!
//! The main thread allocates T×SLOTS blocks (untimed). Then T "chains" run in parallel. Each
//! chain is a sequence of GENERATIONS short-lived threads: a thread takes the chain's SLOTS
//! blocks, does OPS rounds of {pick a random victim, free it, malloc a new block of
//! `MIN + r % (MAX − MIN + 1)` bytes, touch it}, then spawns its successor, hands it the blocks
//! and exits. So every generation frees memory allocated by threads that are gone (the first by
//! the main thread), and threads are created and destroyed all the time, as in a server that
//! hands connections to fresh worker threads. Ops = mallocs + frees (2 per round); time covers
//! all chains from start to the last generation's end (thread creation included).

use crate::common::*;
use std::sync::mpsc;
use std::time::Instant;

pub const USAGE: &str = "usage: larson T GENERATIONS OPS SLOTS MIN MAX\n\
T chains of GENERATIONS threads each; every thread does OPS free+malloc rounds on SLOTS blocks.";

/// The blocks of one chain, moved from thread to thread (as addresses, so they are `Send`).
struct Chain {
    id: usize,
    slots: Vec<usize>,
    rng: Lcg,
    rounds: u64,
    sink: u8,
}

fn generation(mut c: Chain, gens_left: u64, ops: u64, sizes: SizeRange, done: mpsc::Sender<Chain>) {
    let n = c.slots.len() as u32;
    let mut sink = c.sink;
    for _ in 0..ops {
        let r = c.rng.next_u32();
        let victim = unsafe { c.slots.get_unchecked_mut((r % n) as usize) };
        sink ^= unsafe { free_touch(*victim as *mut u8) };
        let r2 = c.rng.next_u32();
        *victim = alloc_touch(sizes.pick(r2), r2 as u8) as usize;
    }
    c.rounds += ops;
    c.sink = sink;
    if gens_left > 1 {
        let name = format!("larson-{}", c.id);
        let spawned = std::thread::Builder::new()
            .name(name)
            .spawn(move || generation(c, gens_left - 1, ops, sizes, done));
        if let Err(e) = spawned {
            eprintln!("FATAL: spawning a larson thread failed: {e}");
            std::process::exit(3);
        }
    } else {
        let _ = done.send(c);
    }
}

pub fn run(args: &[String]) -> Result<Report, String> {
    if args.len() != 6 {
        return Err("expected 6 arguments".into());
    }
    let threads = arg_u32(args, 0, "T")? as usize;
    let gens = arg_count(args, 1, "GENERATIONS")?;
    let ops = arg_count(args, 2, "OPS")?;
    let nslots = arg_u32(args, 3, "SLOTS")? as usize;
    let sizes = SizeRange::new(arg_u32(args, 4, "MIN")?, arg_u32(args, 5, "MAX")?)?;
    if threads == 0 || gens == 0 || nslots == 0 {
        return Err("need T > 0, GENERATIONS > 0, SLOTS > 0".into());
    }

    // Warm-up: the main thread allocates every chain's blocks.
    let mut chains = Vec::with_capacity(threads);
    for id in 0..threads {
        let mut rng = Lcg::for_thread(id);
        let slots = (0..nslots)
            .map(|_| {
                let r = rng.next_u32();
                alloc_touch(sizes.pick(r), r as u8) as usize
            })
            .collect();
        chains.push(Chain {
            id,
            slots,
            rng,
            rounds: 0,
            sink: 0,
        });
    }

    let (tx, rx) = mpsc::channel();
    let t0 = Instant::now();
    for c in chains {
        let tx = tx.clone();
        std::thread::Builder::new()
            .name(format!("larson-{}", c.id))
            .spawn(move || generation(c, gens, ops, sizes, tx))
            .map_err(|e| format!("spawn: {e}"))?;
    }
    drop(tx);
    let finished: Vec<Chain> = rx.iter().take(threads).collect();
    let secs = t0.elapsed().as_secs_f64();
    if finished.len() != threads {
        return Err("a larson chain did not finish".into());
    }

    let mut rounds = 0u64;
    let mut sink = 0u8;
    for c in finished {
        rounds += c.rounds;
        sink ^= c.sink;
        for p in c.slots {
            sink ^= unsafe { free_touch(p as *mut u8) };
        }
    }
    std::hint::black_box(sink);

    let range = format!("{}-{}", sizes.min, sizes.min + sizes.span - 1);
    let rep = Report::new("larson", rounds * 2, secs)
        .kv("threads", threads)
        .kv("ncpus", ncpus())
        .kv("generations", gens)
        .kv("ops_per_thread", ops)
        .kv("slots", nslots)
        .kv("sizes", &range)
        .kv("threads_created", threads as u64 * gens)
        .kv("malloc_from", malloc_provider());
    rep.print(&format!(
        "larson: {threads} chains x {gens} generations x {ops} rounds, {nslots} blocks/chain, sizes {range}; {}",
        oversub_note(threads)
    ));
    Ok(rep)
}
