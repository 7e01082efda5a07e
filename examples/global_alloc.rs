//! hakozuna as Rust's global allocator, and its statistics.
//!
//! ```sh
//! cargo run --release --example global_alloc
//! HAKOZUNA_STATS=json cargo run --release --example global_alloc   # plus the report at exit
//! ```

use std::collections::HashMap;

#[global_allocator]
static ALLOC: hakozuna::Hakozuna = hakozuna::Hakozuna;

fn main() {
    let before = hakozuna::stats();

    // Small blocks (strings, map nodes) from thread caches, a large one (the Vec) mapped.
    let mut words: HashMap<String, usize> = HashMap::new();
    for i in 0..50_000 {
        *words.entry(format!("word{}", i % 5_000)).or_default() += 1;
    }
    let big: Vec<u64> = (0..1_000_000).collect();

    // Threads allocate from their own heaps; the blocks they return are freed here, on the
    // main thread, and travel back to their owners' heaps.
    let handles: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                (0..10_000)
                    .map(|i| vec![t as u8; 1 + i % 512])
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let blocks: usize = handles.into_iter().map(|h| h.join().unwrap().len()).sum();

    let during = hakozuna::stats();
    drop(big);
    drop(words);
    let after = hakozuna::stats();

    println!("lane: {}, heaps: {}", after.lane, after.heaps);
    println!("threads allocated {blocks} blocks");
    println!(
        "in use: {} KiB before, {} KiB with the data, {} KiB after dropping it",
        before.in_use_bytes >> 10,
        during.in_use_bytes >> 10,
        after.in_use_bytes >> 10
    );
    println!(
        "committed: {} KiB, resident (upper estimate): {} KiB, large blocks live: {}",
        after.committed_bytes >> 10,
        after.resident_bytes >> 10,
        after.large_live_blocks
    );
    if after.events_counted {
        println!(
            "refills from new pages: {}, large allocations: {}",
            after.events.refill_new_page, after.events.large_allocs
        );
    }
    let mut json = String::new();
    after.write_json(&mut json).unwrap();
    print!("{json}");
}
