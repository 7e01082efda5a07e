//! Results of a comparison and their rendering: markdown, JSON and an SVG bar chart.

use super::alloc::Alloc;
use super::machine::Machine;
use super::matrix::Row;
use super::result::ResultLine;
use super::stats::{median, ratio, summarize, Summary};
use super::syscalls::{Traced, TRACED};
use crate::benches::mt_remote::FALLBACK_LIMIT;
use crate::common::human_rate;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::path::Path;

/// One successful run.
#[derive(Clone, Debug)]
pub struct Sample {
    pub run: usize,
    pub result: ResultLine,
    /// Peak RSS of the child, KiB (`wait4` ru_maxrss).
    pub maxrss_kb: u64,
    /// User + system CPU time of the whole child process.
    pub cpu_secs: f64,
    /// Minor page faults of the child (`wait4` ru_minflt).
    pub minflt: u64,
    pub wall_secs: f64,
}

impl Sample {
    /// CPU nanoseconds per counted operation. The whole process is charged (set-up and exit
    /// too), but on an oversubscribed machine it is far steadier than ops/s, which also
    /// measures how the scheduler happened to interleave the threads.
    pub fn cpu_ns_per_op(&self) -> Option<f64> {
        (self.result.ops > 0).then(|| self.cpu_secs * 1e9 / self.result.ops as f64)
    }
}

/// All runs of one (row, allocator) pair.
#[derive(Clone, Debug, Default)]
pub struct Cell {
    pub samples: Vec<Sample>,
    pub failures: Vec<String>,
    /// Set when the benchmark reported a `malloc` that is not the preloaded library's.
    pub preload_problem: Option<String>,
    /// `--syscalls`: the extra run under strace (or why it gave no counts).
    pub syscalls: Option<Result<Traced, String>>,
}

impl Cell {
    /// Median over runs of a numeric RESULT field (runs without it are left out).
    pub fn median_field(&self, key: &str) -> Option<f64> {
        let xs: Vec<f64> = self
            .samples
            .iter()
            .filter_map(|s| s.result.get_f64(key))
            .collect();
        median(&xs)
    }

    /// Median over runs of a per-sample figure.
    pub fn median_of(&self, f: impl Fn(&Sample) -> f64) -> Option<f64> {
        let xs: Vec<f64> = self.samples.iter().map(f).collect();
        median(&xs)
    }
}

/// What the tables show for one cell.
#[derive(Clone, Debug, PartialEq)]
pub struct CellSummary {
    pub ops: Option<Summary>,
    pub ratio: Option<f64>,
    /// Largest peak RSS over the runs (KiB).
    pub peak_rss_kb: Option<u64>,
    /// Median over runs of the peak RSS (KiB).
    pub peak_rss_median_kb: Option<f64>,
    /// Median over runs of the child's minor page faults.
    pub minflt: Option<f64>,
    /// Median over runs of [`Sample::cpu_ns_per_op`].
    pub cpu_ns_per_op: Option<f64>,
    pub fallback_max: Option<f64>,
    pub remote_ratio: Option<f64>,
    /// mt-remote: median over runs of peak RSS minus the benchmark's own peak in-flight
    /// objects (`peak_in_flight_mib`), so the memory the allocator adds can be compared even
    /// though in-flight varies between runs and allocators.
    pub rss_over_flight_mib: Option<f64>,
    pub invalid: bool,
    pub notes: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct CompareReport {
    pub matrix: String,
    pub date: String,
    pub machine: Machine,
    pub command: String,
    pub runs: usize,
    pub scale: f64,
    pub baseline: String,
    pub allocs: Vec<Alloc>,
    /// Allocators asked for but not found: (name, reason).
    pub missing: Vec<(String, String)>,
    pub rows: Vec<Row>,
    /// `cells[row][alloc]`.
    pub cells: Vec<Vec<Cell>>,
}

/// "T=32 on 2 CPUs (16x oversubscribed)" or "1 thread".
pub fn threads_note(threads: usize, nproc: usize) -> String {
    if threads <= 1 {
        "1 thread".into()
    } else if threads > nproc {
        format!(
            "T={threads} on {nproc} CPUs ({:.0}x oversubscribed)",
            threads as f64 / nproc as f64
        )
    } else {
        format!("T={threads} on {nproc} CPUs")
    }
}

fn mib(kb: u64) -> String {
    format!("{:.1}", kb as f64 / 1024.0)
}

fn mib_f(kb: Option<f64>) -> String {
    kb.map(|k| format!("{:.1}", k / 1024.0))
        .unwrap_or_else(|| "-".into())
}

/// `67.1k`-style rendering of a count.
pub fn fmt_count(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if x >= 1e4 {
        format!("{:.1}k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

fn opt(x: Option<f64>, f: impl Fn(f64) -> String) -> String {
    x.map(f).unwrap_or_else(|| "-".into())
}

/// How a burst-idle run's `malloc_trim` relates to the allocator: `own`, `glibc's` (another
/// object's, which cannot trim the preloaded allocator) or `absent`.
fn trim_note(cell: &Cell) -> String {
    let Some(s) = cell.samples.first() else {
        return "-".into();
    };
    match s.result.get("trim") {
        Some("own") => "own".into(),
        Some("other") => {
            let from = s.result.get("trim_from").unwrap_or("?");
            let file = from.rsplit('/').next().unwrap_or(from);
            format!("{file}'s (not the allocator's)")
        }
        Some(other) => other.to_string(),
        None => "-".into(),
    }
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map(|r| format!("{r:.2}x")).unwrap_or_else(|| "-".into())
}

impl CompareReport {
    fn baseline_idx(&self) -> Option<usize> {
        self.allocs.iter().position(|a| a.name == self.baseline)
    }

    fn median_of(&self, r: usize, a: usize) -> Option<f64> {
        let xs: Vec<f64> = self.cells[r][a]
            .samples
            .iter()
            .map(|s| s.result.ops_per_sec)
            .collect();
        summarize(&xs).map(|s| s.median)
    }

    pub fn summary(&self, r: usize, a: usize) -> CellSummary {
        let cell = &self.cells[r][a];
        let xs: Vec<f64> = cell.samples.iter().map(|s| s.result.ops_per_sec).collect();
        let ops = summarize(&xs);
        let base = self.baseline_idx().and_then(|b| self.median_of(r, b));
        let ratio = match (ops, base) {
            (Some(s), Some(b)) => ratio(s.median, b),
            _ => None,
        };
        let peak_rss_kb = cell.samples.iter().map(|s| s.maxrss_kb).max();
        let peak_rss_median_kb = cell.median_of(|s| s.maxrss_kb as f64);
        let minflt = cell.median_of(|s| s.minflt as f64);
        let cpu: Vec<f64> = cell
            .samples
            .iter()
            .filter_map(Sample::cpu_ns_per_op)
            .collect();
        let cpu_ns_per_op = summarize(&cpu).map(|s| s.median);
        let fb: Vec<f64> = cell
            .samples
            .iter()
            .filter_map(|s| s.result.get_f64("fallback_rate"))
            .collect();
        let fallback_max = fb.iter().copied().reduce(f64::max);
        let rr: Vec<f64> = cell
            .samples
            .iter()
            .filter_map(|s| s.result.get_f64("remote_ratio"))
            .collect();
        let remote_ratio = summarize(&rr).map(|s| s.median);
        let over: Vec<f64> = cell
            .samples
            .iter()
            .filter_map(|s| {
                let f = s.result.get_f64("peak_in_flight_mib")?;
                Some(s.maxrss_kb as f64 / 1024.0 - f)
            })
            .collect();
        let rss_over_flight_mib = summarize(&over).map(|s| s.median);
        let invalid = fallback_max.map(|f| f >= FALLBACK_LIMIT).unwrap_or(false);
        let mut notes = Vec::new();
        if invalid {
            let bad = fb.iter().filter(|f| **f >= FALLBACK_LIMIT).count();
            notes.push(format!(
                "INVALID: fallback rate >= 0.1% in {bad}/{} runs (max {:.3}%)",
                fb.len(),
                fallback_max.unwrap_or(0.0) * 100.0
            ));
        }
        if !cell.failures.is_empty() {
            notes.push(format!(
                "{} of {} runs failed: {}",
                cell.failures.len(),
                cell.failures.len() + cell.samples.len(),
                cell.failures[0]
            ));
        }
        if let Some(p) = &cell.preload_problem {
            notes.push(p.clone());
        }
        if let Some(Err(e)) = &cell.syscalls {
            notes.push(format!("no syscall counts: {e}"));
        }
        CellSummary {
            ops,
            ratio,
            peak_rss_kb,
            peak_rss_median_kb,
            minflt,
            cpu_ns_per_op,
            fallback_max,
            remote_ratio,
            rss_over_flight_mib,
            invalid,
            notes,
        }
    }

    /// A rows × allocators table (row name and thread note, then one cell per allocator).
    fn grid(&self, s: &mut String, cell: impl Fn(&CellSummary) -> String) {
        self.grid_by(s, |r, a| cell(&self.summary(r, a)));
    }

    /// The table of [`Self::grid`], with `cell(row, allocator)` giving each cell's text.
    fn grid_by(&self, s: &mut String, cell: impl Fn(usize, usize) -> String) {
        let _ = write!(s, "| row | threads |");
        for a in &self.allocs {
            let _ = write!(s, " {} |", a.name);
        }
        let _ = write!(s, "\n|---|---|");
        for _ in &self.allocs {
            let _ = write!(s, "---:|");
        }
        s.push('\n');
        for (r, row) in self.rows.iter().enumerate() {
            let _ = write!(
                s,
                "| {} | {} |",
                row.name,
                threads_note(row.threads, self.machine.nproc)
            );
            for a in 0..self.allocs.len() {
                let _ = write!(s, " {} |", cell(r, a));
            }
            s.push('\n');
        }
    }

    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# hakozuna-bench compare: matrix `{}`\n", self.matrix);
        let _ = writeln!(s, "- Date: {}", self.date);
        let _ = writeln!(
            s,
            "- Machine: {} CPUs (nproc), {}, {}",
            self.machine.nproc, self.machine.cpu_model, self.machine.kernel
        );
        let _ = writeln!(s, "- Command: `{}`", self.command);
        let _ = writeln!(
            s,
            "- Runs: {} per (row, allocator), interleaved (run → row → allocator); iteration scale {}",
            self.runs, self.scale
        );
        let _ = writeln!(
            s,
            "- Figures: median ops/s (ops = mallocs + frees), min–max over runs, ratio = median / median of `{}`, peak RSS = ru_maxrss of the child (the memory grid and the memory-program tables show the median over runs, the details the max), minor faults = the child's ru_minflt (median), CPU ns/op = median of the child's user + system time per op (whole process), RSS − in flight = median over runs of the child's peak RSS minus mt-remote's `peak_in_flight_mib` (what the benchmark itself held in its rings at most; varies between runs)",
            self.baseline
        );
        let allocs: Vec<String> = self
            .allocs
            .iter()
            .map(|a| match &a.lib {
                None => format!("{} (no preload)", a.name),
                Some(p) => format!("{} = `{}`", a.name, p.display()),
            })
            .collect();
        let _ = writeln!(s, "- Allocators: {}", allocs.join(", "));
        for (n, why) in &self.missing {
            let _ = writeln!(s, "- Missing (not run): {n}: {why}");
        }
        let mt = self.rows.iter().any(|r| r.threads > self.machine.nproc);
        if mt {
            let _ = writeln!(
                s,
                "- **Multi-threaded rows with more threads than the {} CPUs are oversubscribed**; their figures measure the allocators under time-slicing, not parallel scaling.",
                self.machine.nproc
            );
        }

        let _ = writeln!(
            s,
            "\n## Summary: median ops/s (ratio to {})\n",
            self.baseline
        );
        self.grid(&mut s, |c| match c.ops {
            Some(o) => {
                let flag = if c.invalid { " ⚠" } else { "" };
                format!("{} ({}){flag}", human_rate(o.median), fmt_ratio(c.ratio))
            }
            None => "failed".into(),
        });
        if self.rows.iter().any(|r| r.is_mt_remote()) {
            let _ = writeln!(
                s,
                "\n⚠ = mt-remote result not valid: fallback rate ≥ 0.1% in at least one run (docs/benchmarks.md)."
            );
        }

        let _ = writeln!(
            s,
            "\n## Memory: peak RSS MiB / minor page faults (medians over runs)\n\n\
             Peak RSS is the child's `ru_maxrss`; minor faults its `ru_minflt`: pages the kernel \
             had to map in, memory touched for the first time or again after the allocator gave it \
             back. Lower is better; read them next to the throughput above.\n"
        );
        self.grid(&mut s, |c| match (c.peak_rss_median_kb, c.minflt) {
            (Some(k), Some(f)) => format!("{:.1} / {}", k / 1024.0, fmt_count(f)),
            _ => "-".into(),
        });

        let _ = writeln!(
            s,
            "\n## CPU time per operation (median ns, user + system of the whole process)\n\n\
             Steadier than ops/s on an oversubscribed machine, where throughput also depends on how \
             the scheduler interleaved the threads; lower is better.\n"
        );
        self.grid(&mut s, |c| match c.cpu_ns_per_op {
            Some(ns) => format!("{ns:.1}"),
            None => "-".into(),
        });
        self.memory_programs(&mut s);
        self.syscalls_grid(&mut s);

        let _ = writeln!(s, "\n## Details\n");
        let _ = writeln!(
            s,
            "| row | allocator | median ops/s | min–max ops/s | ratio | CPU ns/op | peak RSS MiB (max) | minor faults | RSS − in flight MiB | remote ratio | fallback (max) | notes |"
        );
        let _ = writeln!(
            s,
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
        );
        for (r, row) in self.rows.iter().enumerate() {
            for (a, al) in self.allocs.iter().enumerate() {
                let c = self.summary(r, a);
                let (med, mm) = match c.ops {
                    Some(o) => (
                        human_rate(o.median),
                        format!("{}–{}", human_rate(o.min), human_rate(o.max)),
                    ),
                    None => ("-".into(), "-".into()),
                };
                let rss = c.peak_rss_kb.map(mib).unwrap_or_else(|| "-".into());
                let flt = opt(c.minflt, fmt_count);
                let cpu = c
                    .cpu_ns_per_op
                    .map(|x| format!("{x:.1}"))
                    .unwrap_or_else(|| "-".into());
                let over = c
                    .rss_over_flight_mib
                    .map(|x| format!("{x:.0}"))
                    .unwrap_or_else(|| "-".into());
                let rr = c
                    .remote_ratio
                    .map(|x| format!("{:.1}%", x * 100.0))
                    .unwrap_or_else(|| "-".into());
                let fb = c
                    .fallback_max
                    .map(|x| format!("{:.3}%", x * 100.0))
                    .unwrap_or_else(|| "-".into());
                let notes = c.notes.join("; ").replace('|', "/");
                let _ = writeln!(
                    s,
                    "| {} | {} | {med} | {mm} | {} | {cpu} | {rss} | {flt} | {over} | {rr} | {fb} | {notes} |",
                    row.name,
                    al.name,
                    fmt_ratio(c.ratio)
                );
            }
        }

        let _ = writeln!(s, "\n## Rows\n");
        let _ = writeln!(s, "| row | program and arguments | threads | what |");
        let _ = writeln!(s, "|---|---|---|---|");
        for row in &self.rows {
            let _ = writeln!(
                s,
                "| {} | `{}` | {} | {} |",
                row.name,
                row.command(),
                threads_note(row.threads, self.machine.nproc),
                row.desc
            );
        }
        s
    }

    /// Per-allocator tables of the burst-idle and thread-churn rows (medians over runs).
    fn memory_programs(&self, s: &mut String) {
        if !self.rows.iter().any(|r| r.is_memory_program()) {
            return;
        }
        let _ = writeln!(
            s,
            "\n## Memory programs (medians over runs; RSS in MiB)\n\n\
             RSS figures come from the program's own `/proc/self/statm` readings (RESULT fields), \
             peak RSS and faults from the runner (`ru_maxrss`, `ru_minflt` of the child). \
             madvise/munmap: calls in one extra untimed run under `strace -f -c` (`--syscalls`), \
             `-` without it. docs/benchmarks.md explains every column."
        );
        for (r, row) in self.rows.iter().enumerate() {
            if !row.is_memory_program() {
                continue;
            }
            let _ = writeln!(
                s,
                "\n### {} — `{}` ({})\n",
                row.name,
                row.command(),
                threads_note(row.threads, self.machine.nproc)
            );
            let burst = row.bench == "burst-idle";
            if burst {
                let _ = writeln!(
                    s,
                    "| allocator | peak RSS | all allocated | threads exited | after idle + malloc(64) | after malloc_trim(0) | malloc_trim | minor faults | burst s | wall s | notes |"
                );
                let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---|");
            } else {
                let _ = writeln!(
                    s,
                    "| allocator | wall s | RSS every 10th gen: min | max | last | peak RSS | minor faults | faults / thread | madvise | munmap | madvise / thread | notes |"
                );
                let _ = writeln!(
                    s,
                    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
                );
            }
            for (a, al) in self.allocs.iter().enumerate() {
                let cell = &self.cells[r][a];
                let c = self.summary(r, a);
                let notes = c.notes.join("; ").replace('|', "/");
                let peak = mib_f(c.peak_rss_median_kb);
                let flt = opt(c.minflt, fmt_count);
                if burst {
                    let _ = writeln!(
                        s,
                        "| {} | {peak} | {} | {} | {} | {} | {} | {flt} | {} | {} | {notes} |",
                        al.name,
                        mib_f(cell.median_field("rss_full_kb")),
                        mib_f(cell.median_field("rss_freed_kb")),
                        mib_f(cell.median_field("rss_idle_kb")),
                        mib_f(cell.median_field("rss_trim_kb")),
                        trim_note(cell),
                        opt(cell.median_of(|x| x.result.secs), |x| format!("{x:.3}")),
                        opt(cell.median_of(|x| x.wall_secs), |x| format!("{x:.2}")),
                    );
                } else {
                    let created = cell.median_field("threads_created");
                    let per_thread = match (c.minflt, created) {
                        (Some(f), Some(t)) if t > 0.0 => format!("{:.0}", f / t),
                        _ => "-".into(),
                    };
                    let (madv, unmap, madv_t) = match &cell.syscalls {
                        Some(Ok(t)) => (
                            fmt_count(t.count("madvise") as f64),
                            fmt_count(t.count("munmap") as f64),
                            match t.threads_created {
                                Some(n) if n > 0 => {
                                    format!("{:.2}", t.count("madvise") as f64 / n as f64)
                                }
                                _ => "-".into(),
                            },
                        ),
                        _ => ("-".into(), "-".into(), "-".into()),
                    };
                    let _ = writeln!(
                        s,
                        "| {} | {} | {} | {} | {} | {peak} | {flt} | {per_thread} | {madv} | {unmap} | {madv_t} | {notes} |",
                        al.name,
                        opt(cell.median_of(|x| x.result.secs), |x| format!("{x:.3}")),
                        mib_f(cell.median_field("rss_min_kb")),
                        mib_f(cell.median_field("rss_max_kb")),
                        mib_f(cell.median_field("rss_last_kb")),
                    );
                }
            }
        }
    }

    /// `--syscalls`: madvise / munmap calls of every cell's traced run.
    fn syscalls_grid(&self, s: &mut String) {
        if !self.cells.iter().flatten().any(|c| c.syscalls.is_some()) {
            return;
        }
        let _ = writeln!(
            s,
            "\n## System calls: {} (one extra untimed run per cell under `strace -f -c`)\n",
            TRACED.join(" / ")
        );
        self.grid_cells(s, |cell| match &cell.syscalls {
            Some(Ok(t)) => TRACED
                .iter()
                .map(|n| fmt_count(t.count(n) as f64))
                .collect::<Vec<_>>()
                .join(" / "),
            Some(Err(_)) => "n/a".into(),
            None => "-".into(),
        });
    }

    /// Like [`Self::grid`], from the raw cells.
    fn grid_cells(&self, s: &mut String, cell: impl Fn(&Cell) -> String) {
        self.grid_by(s, |r, a| cell(&self.cells[r][a]));
    }

    pub fn json(&self) -> Value {
        let allocs: Vec<Value> = self
            .allocs
            .iter()
            .map(
                |a| json!({"name": a.name, "lib": a.lib.as_ref().map(|p| p.display().to_string())}),
            )
            .collect();
        let missing: Vec<Value> = self
            .missing
            .iter()
            .map(|(n, w)| json!({"name": n, "reason": w}))
            .collect();
        let mut results = Vec::new();
        for (r, row) in self.rows.iter().enumerate() {
            for (a, al) in self.allocs.iter().enumerate() {
                let c = self.summary(r, a);
                let cell = &self.cells[r][a];
                let samples: Vec<Value> = cell
                    .samples
                    .iter()
                    .map(|s| {
                        json!({
                            "run": s.run,
                            "ops": s.result.ops,
                            "secs": s.result.secs,
                            "ops_per_sec": s.result.ops_per_sec,
                            "maxrss_kb": s.maxrss_kb,
                            "cpu_secs": s.cpu_secs,
                            "minflt": s.minflt,
                            "wall_secs": s.wall_secs,
                            "fields": s.result.fields,
                        })
                    })
                    .collect();
                results.push(json!({
                    "row": row.name,
                    "allocator": al.name,
                    "median_ops_per_sec": c.ops.map(|o| o.median),
                    "median_cpu_ns_per_op": c.cpu_ns_per_op,
                    "min_ops_per_sec": c.ops.map(|o| o.min),
                    "max_ops_per_sec": c.ops.map(|o| o.max),
                    "runs_ok": c.ops.map(|o| o.n).unwrap_or(0),
                    "ratio_to_baseline": c.ratio,
                    "peak_rss_kb": c.peak_rss_kb,
                    "median_peak_rss_kb": c.peak_rss_median_kb,
                    "median_minflt": c.minflt,
                    "syscalls": match &cell.syscalls {
                        None => Value::Null,
                        Some(Ok(t)) => json!({
                            "counts": t.counts,
                            "threads_created": t.threads_created,
                            "strace_file": t.file.display().to_string(),
                        }),
                        Some(Err(e)) => json!({"error": e}),
                    },
                    "remote_ratio": c.remote_ratio,
                    "rss_over_flight_mib": c.rss_over_flight_mib,
                    "fallback_rate_max": c.fallback_max,
                    "invalid": c.invalid,
                    "failures": cell.failures,
                    "notes": c.notes,
                    "samples": samples,
                }));
            }
        }
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|r| {
                json!({
                    "name": r.name,
                    "program": r.bench,
                    "args": r.args,
                    "command": r.command(),
                    "threads": r.threads,
                    "oversubscribed": r.threads > self.machine.nproc,
                    "description": r.desc,
                })
            })
            .collect();
        json!({
            "tool": "hakozuna-bench compare",
            "matrix": self.matrix,
            "date": self.date,
            "machine": {
                "nproc": self.machine.nproc,
                "cpu_model": self.machine.cpu_model,
                "kernel": self.machine.kernel,
            },
            "command": self.command,
            "runs": self.runs,
            "scale": self.scale,
            "baseline": self.baseline,
            "fallback_limit": FALLBACK_LIMIT,
            "allocators": allocs,
            "missing": missing,
            "rows": rows,
            "results": results,
        })
    }

    /// Horizontal grouped bar chart of the ratio to the baseline, one group per row.
    pub fn write_svg(&self, path: &Path) -> Result<(), String> {
        use plotters::prelude::*;
        use plotters::style::text_anchor::{HPos, Pos, VPos};

        const PALETTE: [RGBColor; 10] = [
            RGBColor(120, 120, 120),
            RGBColor(31, 119, 180),
            RGBColor(23, 190, 207),
            RGBColor(255, 127, 14),
            RGBColor(44, 160, 44),
            RGBColor(214, 39, 40),
            RGBColor(148, 103, 189),
            RGBColor(140, 86, 75),
            RGBColor(227, 119, 194),
            RGBColor(188, 189, 34),
        ];
        let e = |x: &dyn std::fmt::Display| x.to_string();
        let nrows = self.rows.len().max(1);
        let na = self.allocs.len().max(1);
        let group_px = (na * 13 + 14) as u32;
        let height = 150 + nrows as u32 * group_px;
        let width = 1100u32;

        let mut ratios: Vec<Vec<Option<f64>>> = Vec::new();
        for r in 0..self.rows.len() {
            ratios.push(
                (0..self.allocs.len())
                    .map(|a| self.summary(r, a).ratio)
                    .collect(),
            );
        }
        let xmax = ratios
            .iter()
            .flatten()
            .flatten()
            .copied()
            .fold(1.0f64, f64::max)
            * 1.18;

        let root = SVGBackend::new(path, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|x| e(&x))?;
        let caption = format!(
            "hakozuna-bench {}: median ops/s relative to {} ({} runs, {} CPUs)",
            self.matrix, self.baseline, self.runs, self.machine.nproc
        );
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 18))
            .margin(12)
            .margin_right(30)
            .x_label_area_size(45)
            .y_label_area_size(300)
            .build_cartesian_2d(0f64..xmax, 0f64..nrows as f64)
            .map_err(|x| e(&x))?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .x_labels(12)
            .light_line_style(WHITE)
            .y_labels(1)
            .y_label_formatter(&|_| String::new())
            .x_label_formatter(&|x| format!("{x:.1}x"))
            .x_desc(format!(
                "median ops/s / median of {} (higher is better)",
                self.baseline
            ))
            .draw()
            .map_err(|x| e(&x))?;

        let slot = 0.84 / na as f64;
        for (a, al) in self.allocs.iter().enumerate() {
            let color = PALETTE[a % PALETTE.len()];
            let mut bars = Vec::new();
            for (r, rr) in ratios.iter().enumerate() {
                if let Some(v) = rr[a] {
                    let top = (nrows - r) as f64 - 0.08 - a as f64 * slot;
                    bars.push(Rectangle::new(
                        [(0.0, top - slot * 0.9), (v, top)],
                        color.filled(),
                    ));
                }
            }
            chart
                .draw_series(bars)
                .map_err(|x| e(&x))?
                .label(al.name.clone())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled())
                });
            let value_style = TextStyle::from(("sans-serif", 10).into_font())
                .pos(Pos::new(HPos::Left, VPos::Center));
            let mut labels = Vec::new();
            for (r, rr) in ratios.iter().enumerate() {
                let top = (nrows - r) as f64 - 0.08 - a as f64 * slot;
                let mid = top - slot * 0.45;
                let (x, text) = match rr[a] {
                    Some(v) => {
                        let c = self.summary(r, a);
                        let flag = if c.invalid {
                            " (invalid: fallback)"
                        } else {
                            ""
                        };
                        (v, format!("{v:.2}x{flag}"))
                    }
                    None => (0.0, "no result".to_string()),
                };
                labels.push(
                    EmptyElement::at((x, mid)) + Text::new(text, (4, 0), value_style.clone()),
                );
            }
            chart.draw_series(labels).map_err(|x| e(&x))?;
        }
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(1.0, 0.0), (1.0, nrows as f64)],
                BLACK.stroke_width(1),
            )))
            .map_err(|x| e(&x))?;
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 12))
            .draw()
            .map_err(|x| e(&x))?;

        let label_style = TextStyle::from(("sans-serif", 12).into_font())
            .pos(Pos::new(HPos::Right, VPos::Center));
        for (r, row) in self.rows.iter().enumerate() {
            let (px, py) = chart.backend_coord(&(0.0, (nrows - r) as f64 - 0.5));
            let mut text = row.name.clone();
            if row.threads > 1 {
                text.push_str(&format!(" (T={}", row.threads));
                if row.threads > self.machine.nproc {
                    text.push_str(&format!(
                        ", {}x oversub.",
                        row.threads / self.machine.nproc.max(1)
                    ));
                }
                text.push(')');
            }
            root.draw(&Text::new(text, (px - 8, py), label_style.clone()))
                .map_err(|x| e(&x))?;
        }
        let foot = format!(
            "{} | {} | {}",
            self.date, self.machine.cpu_model, self.machine.kernel
        );
        root.draw(&Text::new(
            foot,
            (10, height as i32 - 14),
            ("sans-serif", 10).into_font(),
        ))
        .map_err(|x| e(&x))?;
        root.present().map_err(|x| e(&x))?;
        Ok(())
    }

    /// Write `results.md`, `results.json` and `results.svg` into `dir`.
    pub fn write_all(&self, dir: &Path) -> Result<Vec<std::path::PathBuf>, String> {
        std::fs::create_dir_all(dir).map_err(|x| format!("create {}: {x}", dir.display()))?;
        let md = dir.join("results.md");
        let js = dir.join("results.json");
        let svg = dir.join("results.svg");
        std::fs::write(&md, self.markdown()).map_err(|x| format!("write {}: {x}", md.display()))?;
        let text = serde_json::to_string_pretty(&self.json()).map_err(|x| x.to_string())?;
        std::fs::write(&js, text + "\n").map_err(|x| format!("write {}: {x}", js.display()))?;
        self.write_svg(&svg)?;
        Ok(vec![md, js, svg])
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::path::PathBuf;

    fn sample(run: usize, ops_per_sec: f64, extra: &str) -> Sample {
        let line = format!("RESULT bench=x ops=100 secs=1 ops_per_sec={ops_per_sec} {extra}");
        Sample {
            run,
            result: ResultLine::parse(line.trim()).unwrap(),
            maxrss_kb: 2048 * run as u64,
            cpu_secs: 0.5 * run as f64,
            minflt: 10_000 * run as u64,
            wall_secs: 1.0,
        }
    }

    pub(crate) fn fixture() -> CompareReport {
        let rows = crate::runner::matrix::matrix("smoke", 1.0).unwrap()[..3].to_vec();
        let allocs = vec![
            Alloc {
                name: "glibc".into(),
                lib: None,
            },
            Alloc {
                name: "other".into(),
                lib: Some(PathBuf::from("/x/libother.so")),
            },
        ];
        let mut cells = Vec::new();
        for (r, row) in rows.iter().enumerate() {
            let extra = if row.is_mt_remote() {
                "fallback_rate=0.000500 remote_ratio=0.5"
            } else {
                ""
            };
            let base = 100.0 * (r + 1) as f64;
            let g = Cell {
                samples: vec![
                    sample(1, base, extra),
                    sample(2, base * 1.1, extra),
                    sample(3, base * 0.9, extra),
                ],
                ..Default::default()
            };
            let extra2 = if row.is_mt_remote() {
                "fallback_rate=0.002 remote_ratio=0.49"
            } else {
                ""
            };
            let mut o = Cell {
                samples: vec![sample(1, base * 2.0, extra2), sample(2, base * 3.0, extra2)],
                ..Default::default()
            };
            if r == 1 {
                o.failures.push("exit code 3: boom".into());
                o.preload_problem = Some("preload not in effect".into());
            }
            cells.push(vec![g, o]);
        }
        CompareReport {
            matrix: "smoke".into(),
            date: "2026-01-01T00:00:00Z".into(),
            machine: Machine {
                nproc: 2,
                cpu_model: "Test CPU".into(),
                kernel: "Linux 6.0".into(),
            },
            command: "hakozuna-bench compare --matrix smoke".into(),
            runs: 3,
            scale: 1.0,
            baseline: "glibc".into(),
            allocs,
            missing: vec![("jemalloc".into(), "not installed".into())],
            rows,
            cells,
        }
    }

    #[test]
    fn summaries() {
        let rep = fixture();
        let g = rep.summary(0, 0);
        assert_eq!(g.ops.unwrap().median, 100.0);
        assert_eq!(g.ops.unwrap().min, 90.0);
        assert!((g.ops.unwrap().max - 110.0).abs() < 1e-9);
        assert_eq!(g.ratio, Some(1.0));
        assert_eq!(g.peak_rss_kb, Some(6144));
        // Runs 1..=3 used 0.5, 1.0, 1.5 CPU seconds for 100 ops each.
        assert_eq!(g.cpu_ns_per_op, Some(1e7));
        let o = rep.summary(0, 1);
        assert_eq!(o.ops.unwrap().median, 250.0);
        assert_eq!(o.ratio, Some(2.5));
        assert!(!o.invalid);
        let mt = rep.rows.iter().position(|r| r.is_mt_remote()).unwrap();
        assert!(!rep.summary(mt, 0).invalid, "0.05% is valid");
        let bad = rep.summary(mt, 1);
        assert!(bad.invalid, "0.2% is not valid");
        assert!(bad.notes[0].starts_with("INVALID"));
        let f = rep.summary(1, 1);
        assert!(f.notes.iter().any(|n| n.contains("1 of 3 runs failed")));
        assert!(f.notes.iter().any(|n| n.contains("preload not in effect")));
    }

    #[test]
    fn markdown_is_well_formed() {
        let md = fixture().markdown();
        for needle in [
            "Date: 2026-01-01",
            "2 CPUs",
            "Test CPU",
            "Linux 6.0",
            "`hakozuna-bench compare --matrix smoke`",
            "jemalloc: not installed",
            "2.50x",
            "⚠",
            "CPU time per operation",
            "10000000.0",
            "## Memory: peak RSS MiB / minor page faults",
            // glibc's rm-16-2048 runs: peak 2, 4, 6 MiB and 10k, 20k, 30k faults.
            "| 4.0 / 20.0k |",
        ] {
            assert!(md.contains(needle), "markdown lacks {needle:?}:\n{md}");
        }
        // Every table line of a table has the same number of cells as its header.
        let mut cols = None;
        for line in md.lines() {
            if line.starts_with('|') {
                let n = line.matches('|').count();
                match cols {
                    None => cols = Some(n),
                    Some(c) => assert_eq!(c, n, "ragged table line {line:?}"),
                }
            } else {
                cols = None;
            }
        }
    }

    /// A report of the memory programs: burst-idle and thread-churn rows with their RESULT
    /// fields, one cell with syscall counts and one whose traced run failed.
    fn memory_fixture() -> CompareReport {
        let mut rep = fixture();
        rep.matrix = "memory".into();
        rep.rows = crate::runner::matrix::matrix("smoke", 1.0).unwrap()[6..8].to_vec();
        assert_eq!(rep.rows[0].bench, "burst-idle");
        assert_eq!(rep.rows[1].bench, "thread-churn");
        let burst = |run: usize, idle: u64, trim: &str| {
            sample(
                run,
                1000.0,
                &format!(
                    "rss_full_kb=300000 rss_freed_kb=200000 rss_idle_kb={idle} rss_trim_kb=4096 \
                     trim={trim} trim_from=/lib/x86_64-linux-gnu/libc.so.6"
                ),
            )
        };
        let churn = |run: usize, max: u64| {
            sample(
                run,
                1000.0,
                &format!("rss_min_kb=10240 rss_max_kb={max} rss_last_kb=20480 threads_created=40"),
            )
        };
        let traced = Traced {
            counts: [("madvise".to_string(), 80u64)].into_iter().collect(),
            threads_created: Some(40),
            file: "/o/strace/x.txt".into(),
        };
        rep.cells = vec![
            vec![
                Cell {
                    samples: vec![
                        burst(1, 102400, "own"),
                        burst(2, 8192, "own"),
                        burst(3, 10240, "own"),
                    ],
                    ..Default::default()
                },
                Cell {
                    samples: vec![burst(1, 51200, "other")],
                    syscalls: Some(Err("strace not found".into())),
                    ..Default::default()
                },
            ],
            vec![
                Cell {
                    samples: vec![churn(1, 30720), churn(2, 40960), churn(3, 35840)],
                    syscalls: Some(Ok(traced)),
                    ..Default::default()
                },
                Cell {
                    samples: vec![churn(1, 25600)],
                    ..Default::default()
                },
            ],
        ];
        rep
    }

    #[test]
    fn memory_report_shows_rss_phases_and_syscalls() {
        let rep = memory_fixture();
        let md = rep.markdown();
        for needle in [
            "## Memory programs",
            "### burst-idle-T2",
            "`burst-idle 2 8 0`",
            // glibc burst-idle: median of 100, 8 and 10 MiB after idle; trim to 4 MiB.
            "| glibc | 4.0 | 293.0 | 195.3 | 10.0 | 4.0 | own | 20.0k |",
            "| other | 2.0 | 293.0 | 195.3 | 50.0 | 4.0 | libc.so.6's (not the allocator's) |",
            "no syscall counts: strace not found",
            "### churn-T2",
            // glibc churn: RSS max median 35 MiB, 20k faults / 40 threads, 80 madvise = 2 per thread.
            "| glibc | 1.000 | 10.0 | 35.0 | 20.0 | 4.0 | 20.0k | 500 | 80 | 0 | 2.00 |",
            "| other | 1.000 | 10.0 | 25.0 | 20.0 | 2.0 | 10.0k | 250 | - | - | - |",
            "## System calls: madvise / munmap",
            "| 80 / 0 |",
            "n/a",
        ] {
            assert!(md.contains(needle), "markdown lacks {needle:?}:\n{md}");
        }
        let mut cols = None;
        for line in md.lines() {
            if line.starts_with('|') {
                let n = line.matches('|').count();
                match cols {
                    None => cols = Some(n),
                    Some(c) => assert_eq!(c, n, "ragged table line {line:?}"),
                }
            } else {
                cols = None;
            }
        }
        let v = rep.json();
        let results = v["results"].as_array().unwrap();
        assert_eq!(results[2]["syscalls"]["counts"]["madvise"], 80);
        assert_eq!(results[1]["syscalls"]["error"], "strace not found");
        assert_eq!(results[0]["median_minflt"], 20000.0);
        assert_eq!(results[0]["samples"][0]["minflt"], 10000);
        // Without --syscalls there is no syscall table at all.
        let mut plain = memory_fixture();
        for c in plain.cells.iter_mut().flatten() {
            c.syscalls = None;
        }
        assert!(!plain.markdown().contains("## System calls"));
        assert!(!fixture().markdown().contains("## Memory programs"));
    }

    #[test]
    fn json_round_trips() {
        let rep = fixture();
        let text = serde_json::to_string_pretty(&rep.json()).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["machine"]["nproc"], 2);
        assert_eq!(v["matrix"], "smoke");
        assert_eq!(v["command"], "hakozuna-bench compare --matrix smoke");
        let results = v["results"].as_array().unwrap();
        assert_eq!(results.len(), rep.rows.len() * rep.allocs.len());
        assert_eq!(results[1]["ratio_to_baseline"], 2.5);
        assert_eq!(results[1]["samples"].as_array().unwrap().len(), 2);
        assert!(results.iter().any(|r| r["invalid"] == true));
    }

    #[test]
    fn files_are_written_and_svg_is_well_formed() {
        let dir =
            std::env::temp_dir().join(format!("hakozuna-bench-report-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let files = fixture().write_all(&dir).unwrap();
        assert_eq!(files.len(), 3);
        let svg = std::fs::read_to_string(dir.join("results.svg")).unwrap();
        assert!(
            svg.trim_start().starts_with("<svg"),
            "{}",
            &svg[..svg.len().min(200)]
        );
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("<rect"));
        assert!(svg.contains("rm-16-2048"));
        assert!(svg.contains("other"));
        check_xml_balanced(&svg);
        let md = std::fs::read_to_string(dir.join("results.md")).unwrap();
        assert!(md.starts_with("# hakozuna-bench compare"));
        let js = std::fs::read_to_string(dir.join("results.json")).unwrap();
        serde_json::from_str::<Value>(&js).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Minimal well-formedness check: start/end tags nest properly.
    pub(crate) fn check_xml_balanced(s: &str) {
        let mut stack: Vec<String> = Vec::new();
        let mut rest = s;
        while let Some(i) = rest.find('<') {
            rest = &rest[i + 1..];
            let j = rest.find('>').expect("unterminated tag");
            let tag = &rest[..j];
            rest = &rest[j + 1..];
            if tag.starts_with('?') || tag.starts_with('!') || tag.ends_with('/') {
                continue;
            }
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(
                    stack.pop().as_deref(),
                    Some(name.trim()),
                    "mismatched </{name}>"
                );
            } else {
                let name = tag.split_whitespace().next().unwrap().to_string();
                stack.push(name);
            }
        }
        assert!(stack.is_empty(), "unclosed tags {stack:?}");
    }
}
