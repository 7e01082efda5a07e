//! Multi-threaded stress tests with this test binary itself running on `Hakozuna` as its
//! global allocator: the test harness, channels, thread spawning and every Vec below go
//! through the allocator. Every block carries a pattern derived from its address-independent
//! id and size, verified before it is freed (often on another thread).

use hakozuna::Hakozuna;
use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex};
use std::thread;

#[global_allocator]
static A: Hakozuna = Hakozuna;

struct Lcg(u32);
impl Lcg {
    fn next(&mut self) -> u32 {
        self.0 = self.0.wrapping_mul(1664525).wrapping_add(1013904223);
        self.0
    }
    /// A size across all tiers: mostly small, some medium, a few large.
    fn size(&mut self) -> usize {
        let r = self.next();
        match r % 100 {
            0..=79 => 1 + (r as usize >> 8) % 2048,
            80..=96 => 2049 + (r as usize >> 8) % 63_488,
            _ => 65_537 + (r as usize >> 8) % 600_000,
        }
    }
}

/// A heap block filled with a pattern derived from `id`.
struct Block {
    data: Vec<u8>,
    id: u64,
}

fn pattern(id: u64, i: usize) -> u8 {
    (id.wrapping_mul(0x9E37_79B9).wrapping_add(i as u64 * 31) >> 3) as u8
}

impl Block {
    fn new(id: u64, size: usize) -> Block {
        let mut data = vec![0u8; size];
        // Touch first, last and a stride of bytes: enough to catch overlap, cheap for large.
        for i in (0..size).step_by(61).chain([size - 1]) {
            data[i] = pattern(id, i);
        }
        Block { data, id }
    }
    fn check(&self) {
        let size = self.data.len();
        for i in (0..size).step_by(61).chain([size - 1]) {
            assert_eq!(
                self.data[i],
                pattern(self.id, i),
                "block {} size {} byte {}",
                self.id,
                size,
                i
            );
        }
    }
}

#[test]
fn producer_consumer_cross_thread_frees() {
    let producers = 4;
    let consumers = 4;
    let per = 20_000;
    let (tx, rx) = mpsc::sync_channel::<Block>(1024);
    let rx = Arc::new(Mutex::new(rx));
    let checked = Arc::new(AtomicUsize::new(0));
    let mut hs = Vec::new();
    for c in 0..consumers {
        let rx = rx.clone();
        let checked = checked.clone();
        hs.push(thread::spawn(move || {
            // Consumers also allocate, so their own heaps interleave with remote frees.
            let mut mine = Vec::new();
            let mut rng = Lcg(0x12345678 + 977 * (100 + c));
            loop {
                let b = match rx.lock().unwrap().recv() {
                    Ok(b) => b,
                    Err(_) => break,
                };
                b.check();
                checked.fetch_add(1, Ordering::Relaxed);
                drop(b);
                if rng.next().is_multiple_of(4) {
                    mine.push(Block::new(rng.next() as u64, rng.size() % 4096 + 1));
                    if mine.len() > 64 {
                        let b = mine.swap_remove(rng.next() as usize % mine.len());
                        b.check();
                    }
                }
            }
            mine.iter().for_each(Block::check);
        }));
    }
    for p in 0..producers {
        let tx = tx.clone();
        hs.push(thread::spawn(move || {
            let mut rng = Lcg(0x12345678 + 977 * p);
            for i in 0..per {
                tx.send(Block::new((p * per + i) as u64, rng.size()))
                    .unwrap();
            }
        }));
    }
    drop(tx);
    for h in hs {
        h.join().unwrap();
    }
    assert_eq!(
        checked.load(Ordering::Relaxed),
        producers as usize * per as usize
    );
}

/// Medium and arena-large blocks passed around a ring of threads (mt-remote's shape): each thread frees what
/// its predecessor sent (a remote medium free, kept by the freeing thread with
/// `medium-adopt`), allocates medium blocks of every class (reusing adopted runs), and some
/// threads exit midway, so adopted runs travel home while their owners' heaps are recycled.
/// Remote medium frees (`medium-adopt` keeps them in the freeing thread's bin).
#[test]
fn medium_ring_adopt_reuse_and_exit() {
    // Medium (to 64 KiB) and arena-large (to 256 KiB) classes.
    ring_of_threads(|rng| 2049 + rng.next() as usize % (262_144 - 2048));
}

/// Remote small frees in a ring of threads that allocate the same classes (`small-adopt`
/// keeps them in the freeing thread's bin, and sends them home when the bin overflows).
#[test]
fn small_ring_adopt_reuse_and_exit() {
    ring_of_threads(|rng| 1 + rng.next() as usize % 2048);
}

/// Four threads in a ring: each allocates blocks of `size`, frees half itself and sends half
/// to the next thread, which frees them; the first thread exits early, while blocks it
/// allocated are still in flight. Every block is verified before it is freed.
fn ring_of_threads(size: fn(&mut Lcg) -> usize) {
    let t = 4;
    for round in 0..3u32 {
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..t).map(|_| mpsc::channel::<Block>()).unzip();
        let mut rxs: Vec<Option<mpsc::Receiver<Block>>> = rxs.into_iter().map(Some).collect();
        let hs: Vec<_> = (0..t)
            .map(|i| {
                let rx = rxs[i].take().unwrap();
                let tx = txs[(i + 1) % t].clone();
                thread::spawn(move || {
                    let mut rng = Lcg(round * 100 + i as u32);
                    let mut slots: Vec<Option<Block>> = (0..64).map(|_| None).collect();
                    // The first thread leaves early, while blocks it allocated are in flight.
                    let iters = if i == 0 { 2_000 } else { 8_000 };
                    for k in 0..iters {
                        while let Ok(b) = rx.try_recv() {
                            b.check();
                        }
                        let s = rng.next() as usize % slots.len();
                        match slots[s].take() {
                            Some(b) if rng.next().is_multiple_of(2) => {
                                // The first thread may be gone: free it here instead.
                                if let Err(back) = tx.send(b) {
                                    back.0.check();
                                }
                            }
                            Some(b) => b.check(),
                            None => {
                                let id = (round as u64) << 40 | (i as u64) << 32 | k as u64;
                                slots[s] = Some(Block::new(id, size(&mut rng)));
                            }
                        }
                    }
                    slots.iter().flatten().for_each(Block::check);
                    // Whatever is still queued for us is checked when the receiver drops.
                    rx.try_iter().for_each(|b| b.check());
                })
            })
            .collect();
        drop(txs);
        for h in hs {
            h.join().unwrap();
        }
    }
}

#[test]
fn thread_churn_over_generations() {
    // Each generation frees what the previous (now exited) generation allocated, so heaps are
    // recycled while their objects are still being freed remotely.
    let mut carry: Vec<Block> = Vec::new();
    for gen in 0..30u32 {
        let slices: Vec<Vec<Block>> = {
            let mut v: Vec<Vec<Block>> = (0..8).map(|_| Vec::new()).collect();
            for (i, b) in carry.drain(..).enumerate() {
                v[i % 8].push(b);
            }
            v
        };
        let hs: Vec<_> = slices
            .into_iter()
            .enumerate()
            .map(|(t, inherited)| {
                thread::spawn(move || {
                    for b in &inherited {
                        b.check();
                    }
                    drop(inherited);
                    let mut rng = Lcg(gen * 1000 + t as u32);
                    let mut live: Vec<Block> = Vec::new();
                    for i in 0..3000u64 {
                        if live.len() < 200 || rng.next().is_multiple_of(2) {
                            live.push(Block::new(i ^ (t as u64) << 32, rng.size()));
                        } else {
                            let b = live.swap_remove(rng.next() as usize % live.len());
                            b.check();
                        }
                    }
                    live
                })
            })
            .collect();
        for h in hs {
            carry.extend(h.join().unwrap());
        }
    }
    carry.iter().for_each(Block::check);
}

#[test]
fn thousand_live_threads() {
    let n = 1000;
    let barrier = Arc::new(Barrier::new(n));
    let shelf: Arc<Vec<Mutex<Option<Block>>>> =
        Arc::new((0..n).map(|_| Mutex::new(None)).collect());
    let hs: Vec<_> = (0..n)
        .map(|i| {
            let barrier = barrier.clone();
            let shelf = shelf.clone();
            thread::Builder::new()
                .stack_size(128 << 10)
                .spawn(move || {
                    let mut rng = Lcg(i as u32);
                    let own: Vec<Block> = (0..20)
                        .map(|k| Block::new((i * 100 + k) as u64, rng.size() % 3000 + 1))
                        .collect();
                    *shelf[i].lock().unwrap() = Some(Block::new(i as u64, 100 + i));
                    // All 1000 threads are alive (and own a heap) here.
                    barrier.wait();
                    let theirs = shelf[(i + 1) % n].lock().unwrap().take().unwrap();
                    theirs.check();
                    assert_eq!(theirs.data.len(), 100 + (i + 1) % n);
                    drop(theirs);
                    own.iter().for_each(Block::check);
                })
                .unwrap()
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
}

#[test]
fn random_sizes_all_tiers_with_realloc() {
    let hs: Vec<_> = (0..4u32)
        .map(|t| {
            thread::spawn(move || {
                let mut rng = Lcg(0x12345678 + 977 * t);
                let mut slots: Vec<Option<Block>> = (0..400).map(|_| None).collect();
                for i in 0..60_000u64 {
                    let r = rng.next() as usize;
                    let s = r % slots.len();
                    match slots[s].take() {
                        Some(mut b) => {
                            b.check();
                            if r.is_multiple_of(3) {
                                // realloc through Vec growth/shrink keeps the checked prefix.
                                let new = rng.size();
                                if new > b.data.len() {
                                    b.data.reserve_exact(new - b.data.len());
                                } else {
                                    b.data.truncate(new);
                                    b.data.shrink_to_fit();
                                    let len = b.data.len();
                                    b.data = b.data[..len].to_vec();
                                    b = Block::new(b.id, len);
                                }
                                b.check();
                                slots[s] = Some(b);
                            }
                        }
                        None => slots[s] = Some(Block::new(i, rng.size())),
                    }
                }
                slots.iter().flatten().for_each(Block::check);
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
}

#[test]
fn aligned_layouts_and_zeroed() {
    let mut rng = Lcg(7);
    let mut live = Vec::new();
    for round in 0..20_000 {
        let align = 1usize << (rng.next() % 22);
        let size = match round % 3 {
            0 => 1 + rng.next() as usize % 256,
            1 => 1 + rng.next() as usize % 70_000,
            _ => 1 + rng.next() as usize % 300_000,
        };
        let layout = Layout::from_size_align(size, align).unwrap();
        // SAFETY: non-zero size; freed below with the same layout.
        unsafe {
            let p = if round % 5 == 0 {
                A.alloc_zeroed(layout)
            } else {
                A.alloc(layout)
            };
            assert!(!p.is_null());
            assert_eq!(p as usize % align, 0, "align {align} size {size}");
            if round % 5 == 0 {
                assert!(std::slice::from_raw_parts(p, size).iter().all(|&b| b == 0));
            }
            std::ptr::write_bytes(p, 0xAB, size);
            live.push((p, layout));
            if live.len() > 50 {
                let (q, l) = live.swap_remove(rng.next() as usize % live.len());
                assert_eq!(*q, 0xAB);
                assert_eq!(*q.add(l.size() - 1), 0xAB);
                A.dealloc(q, l);
            }
        }
    }
    for (q, l) in live {
        // SAFETY: allocated above with `l`.
        unsafe { A.dealloc(q, l) };
    }
}

#[test]
fn realloc_preserves_contents_across_tiers() {
    let sizes = [
        1usize,
        16,
        17,
        2048,
        2049,
        4096,
        65_536,
        65_537,
        1 << 20,
        8 << 20,
        100,
        3000,
        70_000,
        1,
    ];
    let mut v: Vec<u8> = Vec::new();
    for w in sizes.windows(2) {
        let (from, to) = (w[0], w[1]);
        v.clear();
        v.shrink_to_fit();
        v.extend((0..from).map(|i| (i % 251) as u8));
        // SAFETY: layout of a Vec<u8> with this capacity; realloc through the global allocator.
        unsafe {
            let layout = Layout::from_size_align(v.capacity(), 1).unwrap();
            let mut md = std::mem::ManuallyDrop::new(std::mem::take(&mut v));
            let p = A.realloc(md.as_mut_ptr(), layout, to);
            assert!(!p.is_null());
            let keep = from.min(to);
            for i in 0..keep {
                assert_eq!(*p.add(i), (i % 251) as u8, "{from} -> {to} at {i}");
            }
            std::ptr::write_bytes(p, 1, to);
            A.dealloc(p, Layout::from_size_align(to, 1).unwrap());
        }
    }
}

/// Large blocks of random sizes freed and allocated in random order, so the large cache splits
/// longer blocks and grows shorter ones: every live block keeps its contents, and a grown or
/// split block grows again through `realloc` intact.
#[test]
fn large_cache_split_and_grow_keep_contents() {
    let mut rng = Lcg(0xC0FFEE);
    let mut live: Vec<Option<Block>> = (0..24).map(|_| None).collect();
    for id in 0..600u64 {
        let k = rng.next() as usize % live.len();
        if let Some(b) = live[k].take() {
            b.check();
        }
        let size = (300 << 10) + (rng.next() as usize >> 4) % (12 << 20);
        let mut b = Block::new(id, size);
        if id % 7 == 0 {
            // Grow through realloc (mremap of a cached or split block), contents kept.
            b.data.reserve_exact(size / 2);
            b.check();
        }
        live[k] = Some(b);
    }
    for b in live.into_iter().flatten() {
        b.check();
    }
}

/// The same with four threads sharing the large cache (best-fit takes, splits and assemblies
/// race over the shards), half of each thread's blocks freed by the next thread: every block
/// keeps its contents until it is checked and freed.
#[test]
fn large_cache_shared_by_threads_keeps_contents() {
    let threads = 4u64;
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..threads).map(|_| mpsc::channel::<Block>()).unzip();
    let start = Arc::new(Barrier::new(threads as usize));
    let handles: Vec<_> = rxs
        .into_iter()
        .enumerate()
        .map(|(t, rx)| {
            let next = txs[(t + 1) % threads as usize].clone();
            let start = Arc::clone(&start);
            thread::spawn(move || {
                let mut rng = Lcg(0xBADC0DE ^ t as u32);
                let mut live: Vec<Option<Block>> = (0..8).map(|_| None).collect();
                start.wait();
                for i in 0..200u64 {
                    while let Ok(b) = rx.try_recv() {
                        b.check();
                    }
                    let k = rng.next() as usize % live.len();
                    if let Some(b) = live[k].take() {
                        if i % 2 == 0 {
                            let _ = next.send(b);
                        } else {
                            b.check();
                        }
                    }
                    let size = (300 << 10) + (rng.next() as usize >> 4) % (12 << 20);
                    let mut b = Block::new((t as u64) << 32 | i, size);
                    if i % 5 == 0 {
                        b.data.reserve_exact(size / 2);
                        b.check();
                    }
                    live[k] = Some(b);
                }
                drop(next);
                for b in live.into_iter().flatten() {
                    b.check();
                }
                rx
            })
        })
        .collect();
    drop(txs);
    let rxs: Vec<_> = handles
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .collect();
    for rx in rxs {
        while let Ok(b) = rx.try_recv() {
            b.check();
        }
    }
}
