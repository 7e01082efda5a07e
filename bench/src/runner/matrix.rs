//! Named matrices of benchmark rows.

/// One benchmark row: a program and its arguments.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// Short unique name, e.g. `mt-T32-R50-16-2048`.
    pub name: String,
    /// Benchmark program (binary name).
    pub bench: &'static str,
    pub args: Vec<String>,
    /// Threads the row runs (1 for single-threaded rows).
    pub threads: usize,
    /// What the row measures, in words.
    pub desc: String,
}

impl Row {
    /// The standalone command line, e.g. `random-mixed 20000000 400 16 2048`.
    pub fn command(&self) -> String {
        let mut s = self.bench.to_string();
        for a in &self.args {
            s.push(' ');
            s.push_str(a);
        }
        s
    }

    pub fn is_mt_remote(&self) -> bool {
        self.bench == "mt-remote"
    }

    /// A row of one of the memory programs, which report RSS phases in their RESULT line.
    pub fn is_memory_program(&self) -> bool {
        self.bench == "burst-idle" || self.bench == "thread-churn"
    }
}

pub const MATRICES: &[(&str, &str)] = &[
    ("quick", "a subset with reduced iteration counts: about one minute for ~6 allocators x 3 runs"),
    ("seed", "the docs/benchmarks.md seed rows at full size (ST 20M iterations, MT 2.5M per thread) plus larson/xmalloc/cache-scratch"),
    ("memory", "RSS suite: burst then idle (1 GiB, 12 s), thread churn (300 generations), and peak RSS of the seed's memory-heavy mt-remote rows, as the seed ends them and with finished threads draining"),
    ("field", "the field's standard shapes (issue 18): large blocks, allocate-then-free loops, trees, producer/consumer, cross-thread churn, leak-and-churn; about 1 s each for hakozuna"),
    ("smoke", "tiny rows for tests: one of each program"),
];

/// Iteration count scaled by `scale`, never below 1.
fn it(n: u64, scale: f64) -> String {
    (((n as f64) * scale).round() as u64).max(1).to_string()
}

fn rm(name: &str, iters: u64, min: u32, max: u32, scale: f64) -> Row {
    Row {
        name: name.to_string(),
        bench: "random-mixed",
        args: vec![
            it(iters, scale),
            "400".into(),
            min.to_string(),
            max.to_string(),
        ],
        threads: 1,
        desc: format!("random-mixed single thread, WS 400, sizes {min}-{max}"),
    }
}

fn rm_dist(iters: u64, scale: f64) -> Row {
    Row {
        name: "rm-dist".into(),
        bench: "random-mixed",
        args: vec!["--dist".into(), it(iters, scale), "400".into()],
        threads: 1,
        desc: "random-mixed single thread, WS 400, sizes 80% 16-256 / 15% 257-2048 / 5% 2049-32768"
            .into(),
    }
}

/// The seeds' mt-remote ring capacity, and where `mt-remote` takes it (its 7th argument).
const SEED_RING: u64 = 65536;
const RING_ARG: usize = 6;

fn mt(t: usize, r: u32, min: u32, max: u32, iters: u64, scale: f64) -> Row {
    Row {
        name: format!("mt-T{t}-R{r}-{min}-{max}"),
        bench: "mt-remote",
        args: vec![
            t.to_string(),
            it(iters, scale),
            "400".into(),
            min.to_string(),
            max.to_string(),
            r.to_string(),
            SEED_RING.to_string(),
        ],
        threads: t,
        desc: format!(
            "mt-remote T={t}, {r}% remote frees, sizes {min}-{max}, WS 400, ring {SEED_RING}"
        ),
    }
}

/// An mt-remote row whose threads, past their loop, drain their rings until their producers
/// are done too (`END` = `drain`): the peak in flight is then the main phase's, not what the
/// last threads push into the rings of finished ones.
fn mt_drain(t: usize, r: u32, min: u32, max: u32, iters: u64, scale: f64) -> Row {
    let mut row = mt(t, r, min, max, iters, scale);
    row.name.push_str("-drain");
    row.args.push("drain".into());
    row.desc.push_str(", finished threads drain");
    row
}

/// The rows with every mt-remote ring set to `ring` slots. A ring longer than the row's
/// iterations per thread cannot fill, so its results have no fallbacks on any machine.
pub fn with_ring(rows: Vec<Row>, ring: u64) -> Vec<Row> {
    rows.into_iter()
        .map(|mut r| {
            if r.is_mt_remote() {
                r.args[RING_ARG] = ring.to_string();
                r.desc = r
                    .desc
                    .replace(&format!("ring {SEED_RING}"), &format!("ring {ring}"));
            }
            r
        })
        .collect()
}

/// Where `burst-idle` takes its idle time (its 3rd argument).
const IDLE_ARG: usize = 2;

/// `burst-idle T TOTAL_MIB IDLE_SECS`. The allocated total is a size, not an iteration
/// count, so `--scale` leaves it alone.
fn burst_idle(t: usize, total_mib: u64, idle: f64) -> Row {
    Row {
        name: format!("burst-idle-T{t}"),
        bench: "burst-idle",
        args: vec![t.to_string(), total_mib.to_string(), idle.to_string()],
        threads: t,
        desc: format!(
            "burst-idle: {t} threads allocate {total_mib} MiB (16 B-256 KiB, pages touched), free it all (half cross-thread), exit; RSS after {idle} s idle + malloc(64), then after malloc_trim(0)"
        ),
    }
}

/// The rows with every burst-idle row's idle time set to `secs`.
pub fn with_idle(rows: Vec<Row>, secs: f64) -> Vec<Row> {
    rows.into_iter()
        .map(|mut r| {
            if r.bench == "burst-idle" {
                let old = r.args[IDLE_ARG].clone();
                r.args[IDLE_ARG] = secs.to_string();
                r.desc = r.desc.replace(
                    &format!("after {old} s idle"),
                    &format!("after {secs} s idle"),
                );
            }
            r
        })
        .collect()
}

/// `thread-churn G T KIB`; `--scale` scales the generations.
fn churn(gens: u64, t: usize, kib: u64, scale: f64) -> Row {
    let g = it(gens, scale);
    Row {
        name: format!("churn-T{t}"),
        bench: "thread-churn",
        args: vec![g.clone(), t.to_string(), kib.to_string()],
        threads: t,
        desc: format!(
            "thread-churn: {g} generations of {t} threads, {kib} KiB each (sizes 16-32768), 1/4 handed to the next generation; RSS every 10th generation"
        ),
    }
}

fn larson(t: usize, gens: u64, ops: u64, slots: u32, scale: f64) -> Row {
    Row {
        name: format!("larson-T{t}"),
        bench: "larson",
        args: vec![t.to_string(), gens.to_string(), it(ops, scale), slots.to_string(), "8".into(), "1000".into()],
        threads: t,
        desc: format!("larson server simulation: {t} chains x {gens} thread generations, {slots} blocks, sizes 8-1000"),
    }
}

fn xmalloc(t: usize, batches: u64, scale: f64) -> Row {
    Row {
        name: format!("xmalloc-T{t}"),
        bench: "xmalloc-test",
        args: vec![
            t.to_string(),
            it(batches, scale),
            "100".into(),
            "16".into(),
            "512".into(),
        ],
        threads: t,
        desc: format!(
            "xmalloc-test: {} producers -> {} consumers, batches of 100, sizes 16-512",
            t / 2,
            t - t / 2
        ),
    }
}

fn scratch(t: usize, iters: u64, reps: u64, scale: f64) -> Row {
    Row {
        name: format!("scratch-T{t}"),
        bench: "cache-scratch",
        args: vec![t.to_string(), it(iters, scale), "8".into(), reps.to_string()],
        threads: t,
        desc: format!("cache-scratch (passive false sharing): {t} threads, 8-byte objects written {reps} times"),
    }
}

/// `large-blocks ITERS LIVE MIN_KIB MAX_KIB`: LIVE blocks of 5–25 MiB replaced ITERS times.
fn large(iters: u64, live: u32, scale: f64) -> Row {
    Row {
        name: format!("large-{live}x5-25M"),
        bench: "large-blocks",
        args: vec![it(iters, scale), live.to_string(), "5120".into(), "25600".into()],
        threads: 1,
        desc: format!("large-blocks: one thread, {live} live blocks of 5-25 MiB replaced at random, a byte written in every page"),
    }
}

/// `alloc-free-loop TOTAL N 16 512`: rounds of N mallocs then N frees, sizes 16, 32, … 512.
fn loop_n(total: u64, n: u32, scale: f64) -> Row {
    Row {
        name: format!("loop-N{n}"),
        bench: "alloc-free-loop",
        args: vec![it(total, scale), n.to_string(), "16".into(), "512".into()],
        threads: 1,
        desc: format!("alloc-free-loop: one thread, {n} mallocs of one size then {n} frees, repeated, sizes 16-512 in powers of two"),
    }
}

/// `tree-build T ITERS 14 16 64`: trees of 16383 nodes of 16–64 bytes, built and freed.
fn tree(t: usize, iters: u64, scale: f64) -> Row {
    Row {
        name: format!("tree-T{t}"),
        bench: "tree-build",
        args: vec![t.to_string(), it(iters, scale), "14".into(), "16".into(), "64".into()],
        threads: t,
        desc: format!("tree-build: {t} threads each build and free binary trees of 16383 nodes of 16-64 bytes"),
    }
}

/// `tree-build 1 ITERS DEPTH 16 64`: one thread, trees of 2^DEPTH − 1 nodes (depth 16: about
/// 3 MiB, depth 18: about 12 MiB), beyond what the thread bins hold by default, so the blocks
/// cycle through the bins' growth or the heap's lists (docs/ab.md "Bins at rest").
fn tree_deep(depth: u32, iters: u64, scale: f64) -> Row {
    let nodes = (1u64 << depth) - 1;
    Row {
        name: format!("tree-T1-d{depth}"),
        bench: "tree-build",
        args: vec![
            "1".into(),
            it(iters, scale),
            depth.to_string(),
            "16".into(),
            "64".into(),
        ],
        threads: 1,
        desc: format!(
            "tree-build: 1 thread builds and frees binary trees of {nodes} nodes of 16-64 bytes"
        ),
    }
}

/// Producer/consumer: the xmalloc-test program with T/2 producers, named by its producers.
fn pc(t: usize, batches: u64, scale: f64) -> Row {
    Row {
        name: format!("pc-P{}", t / 2),
        ..xmalloc(t, batches, scale)
    }
}

/// `cross-churn T ITERS 4096 25 64`: rpmalloc-style churn, a quarter of the retired blocks freed
/// by the next thread.
fn cross(t: usize, iters: u64, scale: f64) -> Row {
    Row {
        name: format!("cross-T{t}"),
        bench: "cross-churn",
        args: vec![t.to_string(), it(iters, scale), "4096".into(), "25".into(), "64".into()],
        threads: t,
        desc: format!("cross-churn: {t} threads replace blocks in 4096 slots each (95% 16 B-8 KiB, 5% to 64 KiB), 25% of the retired ones freed by the next thread, batches of 64"),
    }
}

/// `leak-churn ROUNDS 100000 16 512 4`: the kept share grows to 4 % in the last round.
fn leak(rounds: u64, scale: f64) -> Row {
    Row {
        name: "leak-churn".into(),
        bench: "leak-churn",
        args: vec![it(rounds, scale), "100000".into(), "16".into(), "512".into(), "4".into()],
        threads: 1,
        desc: "leak-churn: one thread, rounds of 100000 blocks of 16-512 bytes, keeping a share that grows to 4% and freeing the rest".into(),
    }
}

/// The rows of a named matrix with iteration counts multiplied by `scale`.
pub fn matrix(name: &str, scale: f64) -> Result<Vec<Row>, String> {
    let s = scale;
    let rows = match name {
        "seed" => {
            let mut v = vec![
                rm("rm-16-2048", 20_000_000, 16, 2048, s),
                rm("rm-4096-32768", 20_000_000, 4096, 32768, s),
                rm("rm-16-32768", 20_000_000, 16, 32768, s),
                rm_dist(20_000_000, s),
                mt(32, 50, 16, 2048, 2_500_000, s),
                mt(32, 0, 16, 2048, 2_500_000, s),
                mt(32, 50, 16, 32768, 2_500_000, s),
                // The remote-free A/B record also compares two threads (one per CPU).
                mt(2, 50, 16, 2048, 2_500_000, s),
            ];
            for t in [1usize, 8, 32] {
                for r in [0u32, 50, 90] {
                    let row = mt(t, r, 16, 2048, 2_500_000, s);
                    if !v.iter().any(|x| x.name == row.name) {
                        v.push(row);
                    }
                }
            }
            v.push(larson(8, 20, 100_000, 5000, s));
            v.push(xmalloc(8, 20_000, s));
            v.push(scratch(2, 1000, 50_000, s));
            v.push(scratch(8, 1000, 25_000, s));
            v
        }
        "quick" => vec![
            rm("rm-16-2048", 5_000_000, 16, 2048, s),
            rm("rm-16-32768", 5_000_000, 16, 32768, s),
            rm_dist(5_000_000, s),
            mt(2, 50, 16, 2048, 800_000, s),
            mt(8, 50, 16, 2048, 200_000, s),
            mt(32, 50, 16, 2048, 50_000, s),
            larson(8, 10, 40_000, 1000, s),
            xmalloc(4, 4_000, s),
            scratch(2, 400, 20_000, s),
        ],
        "memory" => vec![
            burst_idle(4, 1024, 12.0),
            churn(300, 4, 4096, s),
            mt(32, 50, 16, 2048, 2_500_000, s),
            mt(32, 50, 16, 32768, 2_500_000, s),
            mt(8, 90, 16, 32768, 2_500_000, s),
            mt_drain(32, 50, 16, 2048, 2_500_000, s),
            mt_drain(32, 50, 16, 32768, 2_500_000, s),
            mt_drain(8, 90, 16, 32768, 2_500_000, s),
        ],
        "field" => vec![
            large(1_000, 32, s),
            loop_n(200_000_000, 100, s),
            loop_n(150_000_000, 1000, s),
            tree(1, 5_000, s),
            tree(2, 1_000, s),
            pc(2, 300_000, s),
            pc(4, 150_000, s),
            cross(2, 20_000_000, s),
            cross(4, 8_000_000, s),
            leak(200, s),
            tree_deep(16, 200, s),
            tree_deep(18, 50, s),
        ],
        "smoke" => vec![
            rm("rm-16-2048", 20_000, 16, 2048, s),
            rm_dist(20_000, s),
            mt(2, 50, 16, 2048, 10_000, s),
            larson(2, 2, 2_000, 100, s),
            xmalloc(2, 50, s),
            scratch(2, 10, 100, s),
            burst_idle(2, 8, 0.0),
            churn(20, 2, 256, s),
            large(3, 2, s),
            loop_n(2_000, 10, s),
            tree(2, 2, s),
            cross(2, 2_000, s),
            leak(3, s),
        ],
        _ => {
            let names: Vec<&str> = MATRICES.iter().map(|m| m.0).collect();
            return Err(format!(
                "unknown matrix {name:?} (known: {})",
                names.join(", ")
            ));
        }
    };
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_has_the_design_rows() {
        let rows = matrix("seed", 1.0).unwrap();
        let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        for n in [
            "rm-16-2048",
            "rm-4096-32768",
            "rm-16-32768",
            "rm-dist",
            "mt-T32-R50-16-2048",
            "mt-T32-R0-16-2048",
            "mt-T32-R50-16-32768",
            "mt-T2-R50-16-2048",
            "mt-T1-R0-16-2048",
            "mt-T8-R90-16-2048",
            "mt-T32-R90-16-2048",
            "larson-T8",
            "xmalloc-T8",
            "scratch-T2",
        ] {
            assert!(names.contains(&n), "{n} missing");
        }
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len(), "row names must be unique");
        let r = rows
            .iter()
            .find(|r| r.name == "mt-T32-R50-16-2048")
            .unwrap();
        assert_eq!(r.command(), "mt-remote 32 2500000 400 16 2048 50 65536");
        assert_eq!(rows[0].command(), "random-mixed 20000000 400 16 2048");
    }

    #[test]
    fn ring_override_touches_mt_remote_rows_only() {
        let rows = with_ring(matrix("seed", 0.1).unwrap(), 262144);
        let mt = rows
            .iter()
            .find(|r| r.name == "mt-T32-R90-16-2048")
            .unwrap();
        assert_eq!(mt.command(), "mt-remote 32 250000 400 16 2048 90 262144");
        assert!(mt.desc.ends_with("ring 262144"));
        let rm = rows.iter().find(|r| r.name == "rm-16-2048").unwrap();
        assert_eq!(rm, &matrix("seed", 0.1).unwrap()[0]);
    }

    #[test]
    fn scale_shrinks_iterations_only() {
        let rows = matrix("seed", 0.01).unwrap();
        assert_eq!(rows[0].command(), "random-mixed 200000 400 16 2048");
        let r = rows.iter().find(|r| r.name == "mt-T32-R0-16-2048").unwrap();
        assert_eq!(r.args, ["32", "25000", "400", "16", "2048", "0", "65536"]);
        let tiny = matrix("quick", 1e-12).unwrap();
        assert_eq!(tiny[0].args[0], "1");
    }

    #[test]
    fn memory_matrix_rows_and_overrides() {
        let rows = matrix("memory", 1.0).unwrap();
        let cmds: Vec<String> = rows.iter().map(Row::command).collect();
        assert_eq!(
            cmds,
            [
                "burst-idle 4 1024 12",
                "thread-churn 300 4 4096",
                "mt-remote 32 2500000 400 16 2048 50 65536",
                "mt-remote 32 2500000 400 16 32768 50 65536",
                "mt-remote 8 2500000 400 16 32768 90 65536",
                "mt-remote 32 2500000 400 16 2048 50 65536 drain",
                "mt-remote 32 2500000 400 16 32768 50 65536 drain",
                "mt-remote 8 2500000 400 16 32768 90 65536 drain",
            ]
        );
        assert_eq!(rows[5].name, "mt-T32-R50-16-2048-drain");
        assert!(rows[0].is_memory_program() && rows[1].is_memory_program());
        assert!(!rows[2].is_memory_program());
        let short = with_idle(matrix("memory", 0.1).unwrap(), 1.5);
        assert_eq!(short[0].command(), "burst-idle 4 1024 1.5");
        assert!(
            short[0].desc.contains("after 1.5 s idle"),
            "{}",
            short[0].desc
        );
        assert_eq!(short[1].command(), "thread-churn 30 4 4096");
        assert_eq!(short[2].args[1], "250000");
    }

    #[test]
    fn field_has_every_shape_and_scales() {
        let rows = matrix("field", 1.0).unwrap();
        let cmds: Vec<String> = rows.iter().map(Row::command).collect();
        assert_eq!(
            cmds,
            [
                "large-blocks 1000 32 5120 25600",
                "alloc-free-loop 200000000 100 16 512",
                "alloc-free-loop 150000000 1000 16 512",
                "tree-build 1 5000 14 16 64",
                "tree-build 2 1000 14 16 64",
                "xmalloc-test 2 300000 100 16 512",
                "xmalloc-test 4 150000 100 16 512",
                "cross-churn 2 20000000 4096 25 64",
                "cross-churn 4 8000000 4096 25 64",
                "leak-churn 200 100000 16 512 4",
                "tree-build 1 200 16 16 64",
                "tree-build 1 50 18 16 64",
            ]
        );
        let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "large-32x5-25M",
                "loop-N100",
                "loop-N1000",
                "tree-T1",
                "tree-T2",
                "pc-P1",
                "pc-P2",
                "cross-T2",
                "cross-T4",
                "leak-churn",
                "tree-T1-d16",
                "tree-T1-d18",
            ]
        );
        let threads: Vec<usize> = rows.iter().map(|r| r.threads).collect();
        assert_eq!(threads, [1, 1, 1, 1, 2, 2, 4, 2, 4, 1, 1, 1]);
        // Scale changes iteration counts only: not live blocks, sizes, N, depth or threads.
        let small = matrix("field", 0.01).unwrap();
        assert_eq!(small[0].command(), "large-blocks 10 32 5120 25600");
        assert_eq!(small[1].command(), "alloc-free-loop 2000000 100 16 512");
        assert_eq!(small[4].command(), "tree-build 2 10 14 16 64");
        assert_eq!(small[5].command(), "xmalloc-test 2 3000 100 16 512");
        assert_eq!(small[8].command(), "cross-churn 4 80000 4096 25 64");
        assert_eq!(small[9].command(), "leak-churn 2 100000 16 512 4");
        assert!(MATRICES.iter().any(|m| m.0 == "field"));
    }

    #[test]
    fn unknown_matrix_is_an_error() {
        assert!(matrix("nope", 1.0).is_err());
    }
}
