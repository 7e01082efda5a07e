//! `hakozuna::stats()` from Rust, with this test binary on `Hakozuna` as its global
//! allocator: the figures move the right way as blocks of each tier are allocated and freed,
//! the JSON of `Stats::write_json` parses (with `serde_json`) into the same values, and
//! reading the statistics while other threads allocate neither blocks them nor breaks the
//! figures' identities.

use hakozuna::{Hakozuna, Stats};
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

#[global_allocator]
static A: Hakozuna = Hakozuna;

const MIB: u64 = 1 << 20;

/// The tests share one process and its figures: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn identities(s: &Stats) {
    assert_eq!(
        s.committed_bytes,
        s.in_use_bytes + s.free_bytes + s.metadata_bytes,
        "{s:?}"
    );
    assert_eq!(s.in_use_bytes, s.run_bytes + s.large_live_bytes, "{s:?}");
    assert!(s.resident_bytes <= s.committed_bytes, "{s:?}");
    assert!(s.large_peak_bytes >= s.large_live_bytes, "{s:?}");
}

#[test]
fn figures_follow_allocations() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if std::env::var_os("HAKOZUNA_DECAY_MS").is_none() {
        // The figures are process-wide, and this thread's slow paths run decay for the heaps
        // of exited threads (the other tests'), which gives their runs back between two reads:
        // under load the 32 MiB step below was then seen short. So the test runs alone in a
        // child of this binary whose decay interval is an hour.
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["figures_follow_allocations", "--exact", "--test-threads=1"])
            .env("HAKOZUNA_DECAY_MS", "3600000")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{text}");
        assert!(text.contains("1 passed"), "the child ran no test: {text}");
        return;
    }
    let s0 = hakozuna::stats();
    identities(&s0);
    assert!(s0.heaps >= 1, "the test harness has allocated: {s0:?}");
    assert_eq!(s0.lane, "scale");
    assert!(s0.events_counted);

    // Large blocks: 64 x 1 MiB.
    let big: Vec<Vec<u8>> = (0..64).map(|i| vec![i as u8; MIB as usize]).collect();
    let s1 = hakozuna::stats();
    identities(&s1);
    assert!(
        s1.large_live_bytes >= s0.large_live_bytes + 64 * MIB,
        "{s1:?}"
    );
    assert!(s1.large_live_blocks >= s0.large_live_blocks + 64, "{s1:?}");
    assert!(s1.events.large_allocs >= s0.events.large_allocs + 64);

    // Medium blocks: 2,048 x 16 KiB = 32 MiB of page runs.
    let medium: Vec<Box<[u8; 16384]>> = (0..2048).map(|_| Box::new([7u8; 16384])).collect();
    let s2 = hakozuna::stats();
    identities(&s2);
    assert!(s2.run_bytes >= s1.run_bytes + 32 * MIB, "{s2:?}");
    assert!(s2.in_use_bytes >= s0.in_use_bytes + 96 * MIB, "{s2:?}");

    drop(big);
    let s3 = hakozuna::stats();
    identities(&s3);
    assert!(
        s3.large_live_bytes + 64 * MIB <= s2.large_live_bytes,
        "{s3:?}"
    );
    assert!(s3.large_cached_bytes >= 32 * MIB, "{s3:?}");
    assert!(s3.free_bytes >= s2.free_bytes + 32 * MIB, "{s3:?}");
    drop(medium);
    let s4 = hakozuna::stats();
    identities(&s4);
    assert!(s4.run_bytes + 8 * MIB <= s3.run_bytes, "{s4:?}");
}

#[test]
fn json_parses_into_the_same_values() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = hakozuna::stats();
    let mut text = String::new();
    s.write_json(&mut text).unwrap();
    assert!(text.ends_with('\n') && !text[..text.len() - 1].contains('\n'));
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["version"], 1);
    assert_eq!(v["lane"], s.lane);
    assert_eq!(v["events_counted"], s.events_counted);
    for (k, want) in [
        ("heaps", s.heaps),
        ("committed_bytes", s.committed_bytes),
        ("in_use_bytes", s.in_use_bytes),
        ("free_bytes", s.free_bytes),
        ("resident_bytes", s.resident_bytes),
        ("arena_reserved_bytes", s.arena_reserved_bytes),
        ("arena_segment_bytes", s.arena_segment_bytes),
        ("run_bytes", s.run_bytes),
        ("free_page_bytes", s.free_page_bytes),
        ("pooled_resident_bytes", s.pooled_resident_bytes),
        ("pooled_purged_bytes", s.pooled_purged_bytes),
        ("shared_pool_medium_bytes", s.shared_pool_medium_bytes),
        ("large_live_bytes", s.large_live_bytes),
        ("large_live_blocks", s.large_live_blocks),
        ("large_peak_bytes", s.large_peak_bytes),
        ("large_peak_blocks", s.large_peak_blocks),
        ("large_cached_bytes", s.large_cached_bytes),
        ("large_cached_blocks", s.large_cached_blocks),
        ("metadata_bytes", s.metadata_bytes),
    ] {
        assert_eq!(v[k].as_u64(), Some(want), "{k} in {text}");
    }
    let events = v["events"].as_object().unwrap();
    let mut n = 0;
    for (k, want) in s.events.iter() {
        assert_eq!(events[k].as_u64(), Some(want), "events.{k} in {text}");
        n += 1;
    }
    assert_eq!(events.len(), n, "every event once: {text}");
    // 19 figures, with the version, lane, events_counted and events.
    assert_eq!(v.as_object().unwrap().len(), 19 + 4, "{text}");
}

#[test]
fn reading_while_others_allocate() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..3)
        .map(|t| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut keep: Vec<Vec<u8>> = Vec::new();
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let n = match i % 50 {
                        0 => 300_000 + t,
                        1..=9 => 4096 * (1 + i % 12),
                        _ => 16 + i % 2000,
                    };
                    keep.push(vec![1; n]);
                    if keep.len() > 500 {
                        keep.drain(..250);
                    }
                    i += 1;
                }
                i
            })
        })
        .collect();
    let mut reads = 0;
    let start = std::time::Instant::now();
    while reads < 2000 || start.elapsed().as_millis() < 200 {
        let s = hakozuna::stats();
        identities(&s);
        reads += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let done: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
    assert!(done > 0 && reads >= 2000);
}
