//! tree-build: each thread builds binary trees of small nodes and frees them, over and over.
//! Written for this project in the shape of the field's tree allocation tests (alloc-test,
//! binary-trees; issue 18).
//!
//! `tree-build T ITERS DEPTH MIN MAX`
//!
//! Each of T threads, ITERS times: build a complete binary tree of depth DEPTH (`2^DEPTH − 1`
//! nodes, pre-order; a node is `MIN + r % (MAX − MIN + 1)` bytes and holds its two child
//! pointers), then walk it in post-order, freeing every node after its children. All frees are
//! local. Ops = mallocs + frees; timing from the first thread's start to the last one's end.

use crate::common::*;
use std::sync::{Arc, Barrier};
use std::time::Instant;

pub const USAGE: &str = "usage: tree-build T ITERS DEPTH MIN MAX\n\
T threads each build and free ITERS trees of 2^DEPTH-1 nodes of MIN..MAX bytes (MIN >= 16)\n\
(e.g. tree-build 1 200 14 16 64).";

/// A node's child pointers live in its first 16 bytes.
type Node = [*mut u8; 2];

fn build(depth: u32, rng: &mut Lcg, sizes: SizeRange) -> *mut u8 {
    if depth == 0 {
        return std::ptr::null_mut();
    }
    let r = rng.next_u32();
    let p = alloc_touch(sizes.pick(r), r as u8);
    let left = build(depth - 1, rng, sizes);
    let right = build(depth - 1, rng, sizes);
    // SAFETY: p is a fresh block of at least 16 bytes, aligned for pointers by malloc.
    unsafe { (p as *mut Node).write([left, right]) };
    p
}

/// Free the subtree at `p` (children first); returns the number of nodes freed.
fn free_tree(p: *mut u8, sink: &mut u8) -> u64 {
    if p.is_null() {
        return 0;
    }
    // SAFETY: p is a live node written by `build`.
    let [left, right] = unsafe { (p as *const Node).read() };
    let n = free_tree(left, sink) + free_tree(right, sink);
    // SAFETY: p is live and freed once, after its children.
    *sink ^= unsafe { free_touch(p) };
    n + 1
}

pub fn run(args: &[String]) -> Result<Report, String> {
    if args.len() != 5 {
        return Err("expected 5 arguments".into());
    }
    let threads = arg_u32(args, 0, "T")? as usize;
    let iters = arg_count(args, 1, "ITERS")?;
    let depth = arg_u32(args, 2, "DEPTH")?;
    let sizes = SizeRange::new(arg_u32(args, 3, "MIN")?, arg_u32(args, 4, "MAX")?)?;
    if threads == 0 || !(1..=30).contains(&depth) || sizes.min < 16 {
        return Err("need T >= 1, 1 <= DEPTH <= 30 and MIN >= 16".into());
    }
    let start = Arc::new(Barrier::new(threads + 1));
    let mut handles = Vec::with_capacity(threads);
    for i in 0..threads {
        let start = Arc::clone(&start);
        handles.push(
            std::thread::Builder::new()
                .name(format!("tree-{i}"))
                .spawn(move || {
                    let mut rng = Lcg::for_thread(i);
                    let mut sink = 0u8;
                    let mut freed = 0u64;
                    start.wait();
                    let t0 = Instant::now();
                    for _ in 0..iters {
                        let root = build(depth, &mut rng, sizes);
                        freed += free_tree(root, &mut sink);
                    }
                    let span = Span {
                        start: t0,
                        end: Instant::now(),
                    };
                    (freed, sink, span)
                })
                .map_err(|e| format!("spawn: {e}"))?,
        );
    }
    start.wait();
    let mut spans = Vec::with_capacity(threads);
    let mut frees = 0u64;
    let mut sink = 0u8;
    for h in handles {
        let (f, s, span) = h
            .join()
            .map_err(|_| "a benchmark thread panicked".to_string())?;
        frees += f;
        sink ^= s;
        spans.push(span);
    }
    std::hint::black_box(sink);
    let secs = Span::covering(spans).ok_or("no thread ran")?.secs();
    let range = format!("{}-{}", sizes.min, sizes.min + sizes.span - 1);
    let rep = Report::new("tree-build", 2 * frees, secs)
        .kv("threads", threads)
        .kv("ncpus", ncpus())
        .kv("iters", iters)
        .kv("depth", depth)
        .kv("nodes", (1u64 << depth) - 1)
        .kv("sizes", &range)
        .kv("malloc_from", malloc_provider());
    rep.print(&format!(
        "tree-build: {threads} threads x {iters} trees of depth {depth}, nodes {range} bytes; {}",
        oversub_note(threads)
    ));
    Ok(rep)
}
