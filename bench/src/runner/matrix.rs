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
    ("memory", "RSS suite: burst then idle (1 GiB, 12 s), thread churn (300 generations), and peak RSS of the seed's memory-heavy mt-remote rows"),
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
            ]
        );
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
    fn unknown_matrix_is_an_error() {
        assert!(matrix("nope", 1.0).is_err());
    }
}
