//! A cdylib with `#[global_allocator] Hakozuna`, as a Python extension module written in Rust
//! would have: every Rust allocation of this library goes through hakozuna's engine, linked
//! in, whose thread-cache pointer is initial-exec TLS of this library. Loaded by
//! tests/pyext/load.py with `ctypes.CDLL` (dlopen) and called from several Python threads.

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::thread;

#[global_allocator]
static A: hakozuna::Hakozuna = hakozuna::Hakozuna;

/// Allocates strings, vectors, boxes and a map on the calling thread and on `threads` threads
/// it spawns, passing boxes between threads over a channel (freed by another thread than their
/// allocator), and returns a checksum that depends only on `seed` and `rounds`: the same
/// value on every call with the same arguments, so the caller can check it. Returns u64::MAX
/// if a block's contents were found changed.
fn work(seed: u64, rounds: u64) -> u64 {
    let mut sum = 0u64;
    let mut map: BTreeMap<u64, String> = BTreeMap::new();
    let mut kept: Vec<Vec<u64>> = Vec::new();
    for r in 0..rounds {
        let k = seed.wrapping_mul(6364136223846793005).wrapping_add(r) % 512;
        let s = format!("{seed}-{r}-{}", "x".repeat((k % 300) as usize));
        sum = sum.wrapping_add(s.len() as u64);
        map.insert(k, s);
        let v: Vec<u64> = (0..(k % 700)).map(|i| i ^ seed).collect();
        if v.iter().enumerate().any(|(i, &x)| x != (i as u64) ^ seed) {
            return u64::MAX;
        }
        sum = sum.wrapping_add(v.len() as u64);
        kept.push(v);
        if kept.len() > 64 {
            kept.drain(..32);
        }
        if r % 7 == 0 {
            map.remove(&((k + 13) % 512));
        }
    }
    for (k, s) in &map {
        if !s.starts_with(&format!("{seed}-")) {
            return u64::MAX;
        }
        sum = sum.wrapping_add(k ^ s.len() as u64);
    }
    sum
}

/// Runs [`work`] here and on `threads` spawned threads, with boxes sent from each spawned
/// thread back to the caller, which frees them. Returns the sum of the checksums, or u64::MAX
/// on a mismatch.
#[no_mangle]
pub extern "C" fn hz_pyext_run(seed: u64, rounds: u64, threads: u32) -> u64 {
    let (tx, rx) = mpsc::channel::<Box<[u64; 16]>>();
    let handles: Vec<_> = (0..threads as u64)
        .map(|t| {
            let tx = tx.clone();
            thread::spawn(move || {
                let s = seed.wrapping_add(t + 1);
                for i in 0..200 {
                    tx.send(Box::new([s ^ i; 16])).unwrap();
                }
                work(s, rounds)
            })
        })
        .collect();
    drop(tx);
    let mut sum = work(seed, rounds);
    let mut boxes = 0u64;
    for b in rx {
        if b.iter().any(|&x| x != b[0]) {
            return u64::MAX;
        }
        boxes += 1;
    }
    if boxes != 200 * threads as u64 {
        return u64::MAX;
    }
    for h in handles {
        let s = h.join().unwrap();
        if s == u64::MAX {
            return u64::MAX;
        }
        sum = sum.wrapping_add(s);
    }
    sum
}
