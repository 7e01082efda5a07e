//! Results of a comparison and their rendering: markdown, JSON and an SVG bar chart.

use super::alloc::Alloc;
use super::machine::Machine;
use super::matrix::Row;
use super::result::ResultLine;
use super::stats::{ratio, summarize, Summary};
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
}

/// What the tables show for one cell.
#[derive(Clone, Debug, PartialEq)]
pub struct CellSummary {
    pub ops: Option<Summary>,
    pub ratio: Option<f64>,
    pub peak_rss_kb: Option<u64>,
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
        CellSummary {
            ops,
            ratio,
            peak_rss_kb,
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
                let _ = write!(s, " {} |", cell(&self.summary(r, a)));
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
            "- Figures: median ops/s (ops = mallocs + frees), min–max over runs, ratio = median / median of `{}`, peak RSS = max ru_maxrss of the child, CPU ns/op = median of the child's user + system time per op (whole process), RSS − in flight = median over runs of the child's peak RSS minus mt-remote's `peak_in_flight_mib` (what the benchmark itself held in its rings at most; varies between runs)",
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
            "\n## CPU time per operation (median ns, user + system of the whole process)\n\n\
             Steadier than ops/s on an oversubscribed machine, where throughput also depends on how \
             the scheduler interleaved the threads; lower is better.\n"
        );
        self.grid(&mut s, |c| match c.cpu_ns_per_op {
            Some(ns) => format!("{ns:.1}"),
            None => "-".into(),
        });

        let _ = writeln!(s, "\n## Details\n");
        let _ = writeln!(
            s,
            "| row | allocator | median ops/s | min–max ops/s | ratio | CPU ns/op | peak RSS MiB | RSS − in flight MiB | remote ratio | fallback (max) | notes |"
        );
        let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
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
                    "| {} | {} | {med} | {mm} | {} | {cpu} | {rss} | {over} | {rr} | {fb} | {notes} |",
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
