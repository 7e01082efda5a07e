//! The malloc and free hit paths pinned by instruction counts (issue 18): each library runs
//! tests/capi/hit_loop.c (a million malloc(32)/free pairs served by the thread bin) under
//! `valgrind --tool=callgrind`, and the instructions executed in `malloc` and in `free` of our
//! library, per call, must not exceed the ceilings below. A change that lengthens a hit path by
//! one instruction (or adds a call, which is at least two) fails here; a change that shortens
//! one should lower its ceiling.
//!
//! The remote-free path is pinned the same way (tests/capi/remote_loop.c: one thread frees a
//! million 32-byte blocks another thread allocated): the instructions of `free` and of
//! `free_other` behind its remote branch (the remote buffer's push), per free.
//!
//! The hardened lane (`libhakozuna_secure.so`) has ceilings of its own: its checks are
//! pinned the same way, so what they cost is a number that changes only on purpose
//! (docs/results/secure.md).
//!
//! Needs `valgrind` (CI installs it) and the libraries from `cargo build --release`.

mod harness;

use harness::{compile_c, plain, run, Lane};
use std::path::Path;
use std::time::Duration;

/// Instructions of `malloc`'s hit path (size → bin, pop the bin), `ret` included.
const MALLOC_HIT_MAX: f64 = 14.0;
/// Instructions of `free`'s own-heap path (range check, tag load, the tag's bin's test, push,
/// room countdown), `ret` included.
const FREE_HIT_MAX: f64 = 20.0;

/// The hardened lane's `malloc` hit path: the same, plus decoding the new head's link with
/// its window test and clearing the block's link and free mark.
const SECURE_MALLOC_HIT_MAX: f64 = 23.0;
/// The hardened lane's `free` own-heap path: the same, plus the start-of-block test (one
/// multiply, with the test's constants from the bin), the free-mark test, the encoded link and
/// the mark.
const SECURE_FREE_HIT_MAX: f64 = 34.0;

/// Instructions of a remote free of a buffered class, per free, in the scale lane: `free`'s
/// range check, tag load and failed bin test (16, `ret` included), then `free_other`'s
/// state test, buffered-class test, ring hint lookup and push (25: the chain's tail is in the
/// ring, not the head object); the chain handed over every 32nd free adds a fraction (its send
/// is out of line, not counted).
const REMOTE_FREE_MAX_SCALE: f64 = 42.1;
/// The same in the fast lane (24 in `free_other`), whose bank finds its list from the tag
/// alone (`remote::bank`), with no hint to check.
const REMOTE_FREE_MAX_FAST: f64 = 41.2;

const CALLS: u64 = 1_000_000;

/// Self cost (instructions) of every function named `name` in object `obj`, and the calls made
/// to it, from a callgrind output file written with `--compress-strings=no`.
fn self_cost_and_calls(out: &str, obj: &str, name: &str) -> (u64, u64) {
    let (mut ob, mut cob) = (String::new(), String::new());
    let mut in_fn = false;
    let mut cfn_match = false;
    let mut skip_next = false;
    let (mut cost, mut calls) = (0u64, 0u64);
    for line in out.lines() {
        if let Some(v) = line.strip_prefix("ob=") {
            ob = v.to_string();
            cob = ob.clone();
        } else if let Some(v) = line.strip_prefix("fn=") {
            in_fn = v == name && ob.ends_with(obj);
        } else if let Some(v) = line.strip_prefix("cob=") {
            cob = v.to_string();
        } else if let Some(v) = line.strip_prefix("cfn=") {
            cfn_match = v == name && cob.ends_with(obj);
        } else if let Some(v) = line.strip_prefix("calls=") {
            skip_next = true;
            if cfn_match {
                calls += v.split_whitespace().next().unwrap().parse::<u64>().unwrap();
            }
        } else if line.starts_with(|c: char| c.is_ascii_digit() || c == '+' || c == '-') {
            if skip_next {
                // The inclusive cost of the call just named: the callee's, not ours. A `cob=`
                // names the object of that one call only.
                skip_next = false;
                cob = ob.clone();
                continue;
            }
            if in_fn {
                cost += line
                    .split_whitespace()
                    .last()
                    .unwrap()
                    .parse::<u64>()
                    .unwrap();
            }
        }
    }
    (cost, calls)
}

fn hit_paths(lane: Lane) {
    hit_paths_of(
        &format!("{lane:?}"),
        &lane.so(),
        MALLOC_HIT_MAX,
        FREE_HIT_MAX,
    );
}

/// Builds tests/capi/`prog`.c (with `cflags`) and runs it for [`CALLS`] calls under callgrind
/// with `so` preloaded; returns the profile's text. One binary and profile per `lane`: the
/// lanes' tests run in parallel.
fn callgrind_of(prog: &str, cflags: &[&str], lane: &str, so: &Path) -> String {
    let exe = compile_c(
        &format!("tests/capi/{prog}.c"),
        &format!("fast_path/{prog}.{lane}"),
        cflags,
    );
    let out = exe.with_file_name(format!("callgrind-{prog}.{lane}.out"));
    let mut v = plain("valgrind");
    v.args([
        "--tool=callgrind",
        "--dump-line=no",
        "--compress-strings=no",
        "--compress-pos=no",
    ])
    .arg(format!("--callgrind-out-file={}", out.display()))
    .arg(&exe)
    .arg(CALLS.to_string())
    .env("LD_PRELOAD", so);
    run(v, Duration::from_secs(300)).expect_ok();
    std::fs::read_to_string(&out).unwrap()
}

fn hit_paths_of(lane: &str, so: &Path, malloc_max: f64, free_max: f64) {
    let text = callgrind_of("hit_loop", &[], lane, so);
    let name = so.file_name().unwrap().to_str().unwrap();
    for (f, max) in [("malloc", malloc_max), ("free", free_max)] {
        let (cost, calls) = self_cost_and_calls(&text, name, f);
        assert!(
            calls >= CALLS,
            "{lane}: callgrind saw {calls} calls to {f} in {name}, expected at least {CALLS}"
        );
        let per_call = cost as f64 / calls as f64;
        println!("{lane} {f}: {cost} instructions / {calls} calls = {per_call:.3}");
        // The warm-up's few misses are shorter in `malloc` itself (the rest is in
        // `malloc_slow`), so the average can only fall below the hit path's length.
        assert!(
            per_call <= max + 0.01,
            "{lane}: {f} executes {per_call:.3} instructions per call, above its ceiling of \
             {max} (its hit path grew)"
        );
    }
}

/// Runs tests/capi/remote_loop.c on `lane` under callgrind and checks `free` + `free_other`
/// per free against `max`.
fn remote_free_path(lane: Lane, krate: &str, max: f64) {
    let so = lane.so();
    let text = callgrind_of("remote_loop", &["-pthread"], &format!("{lane:?}"), &so);
    let name = so.file_name().unwrap().to_str().unwrap();
    let (free_cost, frees) = self_cost_and_calls(&text, name, "free");
    let other = format!("{krate}::front::alloc::free_other");
    let (other_cost, others) = self_cost_and_calls(&text, name, &other);
    assert!(
        frees >= CALLS && others >= CALLS,
        "{lane:?}: callgrind saw {frees} calls to free and {others} to {other} in {name}, \
         expected at least {CALLS} of each"
    );
    let per_free = (free_cost + other_cost) as f64 / others as f64;
    println!(
        "{lane:?} remote free: ({free_cost} + {other_cost}) instructions / {others} remote \
         frees = {per_free:.3}"
    );
    // `free`'s few own-heap calls (the blocks array, the consumer's warm-up) are shorter than
    // a remote one, so they can only lower the average.
    assert!(
        per_free <= max + 0.01,
        "{lane:?}: a remote free executes {per_free:.3} instructions in free + free_other, \
         above its ceiling of {max} (the remote-free path grew)"
    );
}

#[test]
fn remote_free_scale() {
    remote_free_path(Lane::Scale, "hakozuna", REMOTE_FREE_MAX_SCALE);
}

#[test]
fn remote_free_fast() {
    remote_free_path(Lane::Fast, "hakozuna_fast", REMOTE_FREE_MAX_FAST);
}

#[test]
fn hit_paths_scale() {
    hit_paths(Lane::Scale);
}

#[test]
fn hit_paths_fast() {
    hit_paths(Lane::Fast);
}

#[test]
fn hit_paths_secure() {
    let so = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/libhakozuna_secure.so");
    assert!(
        so.is_file(),
        "{} is missing: run `cargo build --release` first",
        so.display()
    );
    hit_paths_of("Secure", &so, SECURE_MALLOC_HIT_MAX, SECURE_FREE_HIT_MAX);
}
