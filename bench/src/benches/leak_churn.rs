//! leak-churn: one thread allocates rounds of blocks, keeps a fraction that grows round by
//! round and frees the rest, so the live set grows while most memory churns and the kept
//! blocks are scattered among freed ones. Written for this project in the shape of the field's
//! leak tests (mleak; issue 18).
//!
//! `leak-churn ROUNDS N MIN MAX KEEP_PCT`
//!
//! Round `k` (1..=ROUNDS) allocates N blocks of `MIN + r % (MAX − MIN + 1)` bytes; a block is
//! kept when the high 16 bits of its draw fall below `KEEP_PCT % · k / ROUNDS` (so the last
//! round keeps KEEP_PCT %, and about half that is kept overall), and the others are freed in
//! allocation order at the end of the round. Ops = mallocs + frees of the rounds; the kept
//! blocks are freed after the clock stops and are not counted.

use crate::common::*;
use std::time::Instant;

pub const USAGE: &str = "usage: leak-churn ROUNDS N MIN MAX KEEP_PCT\n\
ROUNDS rounds of N mallocs of MIN..MAX bytes; round k keeps KEEP_PCT*k/ROUNDS % of them and\n\
frees the rest (e.g. leak-churn 100 100000 16 512 4).";

/// The keep threshold of round `k` in units of 1/65536 (compared with a draw's high 16 bits).
pub fn keep_threshold(keep_pct: u32, k: u64, rounds: u64) -> u64 {
    keep_pct as u64 * 65536 * k / (100 * rounds)
}

pub fn run(args: &[String]) -> Result<Report, String> {
    if args.len() != 5 {
        return Err("expected 5 arguments".into());
    }
    let rounds = arg_count(args, 0, "ROUNDS")?;
    let n = arg_u32(args, 1, "N")? as usize;
    let sizes = SizeRange::new(arg_u32(args, 2, "MIN")?, arg_u32(args, 3, "MAX")?)?;
    let keep_pct = arg_u32(args, 4, "KEEP_PCT")?;
    if rounds == 0 || n == 0 || keep_pct > 100 {
        return Err("need ROUNDS > 0, N > 0 and KEEP_PCT <= 100".into());
    }
    // Room for what is expected to be kept (half the last round's share overall), so the list
    // rarely grows (which would allocate) inside the timing.
    let expect = (rounds as usize * n) / 200 * keep_pct as usize + n;
    let mut kept: Vec<*mut u8> = Vec::with_capacity(expect);
    let mut round: Vec<(*mut u8, bool)> = Vec::with_capacity(n);
    let mut rng = Lcg(SEED);
    let mut sink = 0u8;
    let mut frees = 0u64;
    let t0 = Instant::now();
    for k in 1..=rounds {
        let thr = keep_threshold(keep_pct, k, rounds);
        for _ in 0..n {
            let r = rng.next_u32();
            let p = alloc_touch(sizes.pick(r), r as u8);
            let keep = ((r >> 16) as u64) < thr;
            if keep {
                kept.push(p);
            }
            round.push((p, keep));
        }
        for &(p, keep) in &round {
            if !keep {
                // SAFETY: allocated this round, not kept, freed once.
                sink ^= unsafe { free_touch(p) };
                frees += 1;
            }
        }
        round.clear();
    }
    let secs = t0.elapsed().as_secs_f64();
    let live = kept.len();
    for &p in &kept {
        // SAFETY: the kept blocks, each freed once (untimed).
        sink ^= unsafe { free_touch(p) };
    }
    std::hint::black_box(sink);

    let mallocs = rounds * n as u64;
    let range = format!("{}-{}", sizes.min, sizes.min + sizes.span - 1);
    let rep = Report::new("leak-churn", mallocs + frees, secs)
        .kv("rounds", rounds)
        .kv("n", n)
        .kv("sizes", &range)
        .kv("keep_pct", keep_pct)
        .kv("kept", live)
        .kv(
            "kept_mib",
            format!("{:.1}", live as f64 * sizes.mean() / 1048576.0),
        )
        .kv("threads", 1)
        .kv("malloc_from", malloc_provider());
    rep.print(&format!(
        "leak-churn: single thread, {rounds} rounds of {n} blocks of {range} bytes, keeping up to {keep_pct}% per round ({live} kept at the end)"
    ));
    Ok(rep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_share_grows_to_keep_pct() {
        assert_eq!(keep_threshold(4, 0, 100), 0);
        assert_eq!(keep_threshold(4, 100, 100), 65536 * 4 / 100);
        assert_eq!(keep_threshold(100, 10, 10), 65536);
        assert!(keep_threshold(4, 50, 100) < keep_threshold(4, 51, 100));
    }
}
