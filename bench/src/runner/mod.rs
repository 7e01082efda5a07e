//! The comparison runner behind `hakozuna-bench compare`.

pub mod alloc;
pub mod callgrind;
pub mod cli;
pub mod exec;
pub mod machine;
pub mod matrix;
pub mod report;
pub mod result;
pub mod stats;
pub mod syscalls;

use alloc::{malloc_is_from, Alloc};
use cli::{Command, CompareOpts};
use report::{Cell, CompareReport, Sample};
use result::ResultLine;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Entry point of the `hakozuna-bench` binary; returns the exit code.
pub fn main_with(args: &[String]) -> i32 {
    match cli::parse(args) {
        Ok(Command::Help) => {
            print!("{}", cli::USAGE);
            0
        }
        Ok(Command::Bench { program, args }) => match crate::benches::find(&program) {
            Some(b) => crate::common::run_args(b.usage, b.run, &args),
            None => {
                eprintln!("unknown benchmark program {program:?}");
                2
            }
        },
        Ok(Command::List { matrix, scale }) => list(matrix.as_deref(), scale),
        Ok(Command::Compare(o)) => match compare(&o) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("error: {e}");
                1
            }
        },
        Err(e) => {
            eprintln!("error: {e}\n\n{}", cli::USAGE);
            2
        }
    }
}

fn list(only: Option<&str>, scale: f64) -> i32 {
    for (name, what) in matrix::MATRICES {
        if only.is_some_and(|o| o != *name) {
            continue;
        }
        println!("matrix {name}: {what}");
        for r in matrix::matrix(name, scale).unwrap_or_default() {
            println!("  {:<22} {}", r.name, r.command());
        }
    }
    0
}

/// The workspace root: `--root`, else the nearest ancestor of this executable with a
/// `Cargo.toml` declaring `[workspace]`, else the parent of this package's manifest dir.
pub fn find_root(explicit: Option<&Path>) -> PathBuf {
    if let Some(r) = explicit {
        return r.to_path_buf();
    }
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1) {
            let toml = dir.join("Cargo.toml");
            if std::fs::read_to_string(&toml)
                .map(|t| t.contains("[workspace]"))
                .unwrap_or(false)
            {
                return dir.to_path_buf();
            }
        }
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

fn select_rows(
    rows: Vec<matrix::Row>,
    only: Option<&[String]>,
) -> Result<Vec<matrix::Row>, String> {
    let Some(only) = only else { return Ok(rows) };
    let mut out = Vec::new();
    for n in only {
        let r = rows.iter().find(|r| &r.name == n).ok_or_else(|| {
            let known: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
            format!(
                "unknown row {n:?} in this matrix (rows: {})",
                known.join(", ")
            )
        })?;
        out.push(r.clone());
    }
    Ok(out)
}

/// Allocators asked for but not found: (name, reason).
pub type Missing = Vec<(String, String)>;

/// Resolve allocators (installing peers if asked); returns (available, missing).
fn resolve_allocs(o: &CompareOpts, root: &Path) -> Result<(Vec<Alloc>, Missing), String> {
    let cands = alloc::select(
        alloc::candidates(root, &o.extra_allocs),
        o.allocs.as_deref(),
    )?;
    if o.install {
        for msg in alloc::install_missing(&cands) {
            eprintln!("warning: {msg}");
        }
    }
    let mut avail = Vec::new();
    let mut missing = Vec::new();
    for c in &cands {
        match c.resolve() {
            Some(a) => avail.push(a),
            None => {
                let why = c.missing_reason();
                eprintln!("missing allocator {}: {why}", c.name);
                missing.push((c.name.clone(), why));
            }
        }
    }
    if avail.is_empty() {
        return Err("no allocator available to run".into());
    }
    Ok((avail, missing))
}

/// `--syscalls`: a working strace, installing it first when asked to; None (with a warning)
/// when there is none, so the comparison runs without syscall counts.
fn find_tracer(install: bool) -> Option<syscalls::Tracer> {
    let mut found = syscalls::Tracer::detect();
    if found.is_err() && install {
        for msg in alloc::apt_install(&["strace"]) {
            eprintln!("warning: {msg}");
        }
        found = syscalls::Tracer::detect();
    }
    match found {
        Ok(t) => Some(t),
        Err(e) => {
            eprintln!("warning: --syscalls: {e}; reporting no syscall counts");
            None
        }
    }
}

/// One extra run of every (row, allocator) under strace, after the timed runs.
fn trace_all(
    tracer: &syscalls::Tracer,
    exe: &Path,
    rows: &[matrix::Row],
    allocs: &[Alloc],
    cells: &mut [Vec<Cell>],
    out_dir: &Path,
    timeout: Duration,
) -> Result<(), String> {
    let dir = out_dir.join("strace");
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let total = rows.len() * allocs.len();
    let mut done = 0;
    for (r, row) in rows.iter().enumerate() {
        for (a, al) in allocs.iter().enumerate() {
            done += 1;
            let file = dir.join(format!("{}.{}.txt", row.name, al.name));
            let _ = std::fs::remove_file(&file);
            let mut args = vec!["bench".to_string(), row.bench.to_string()];
            args.extend(row.args.iter().cloned());
            let prefix = tracer.prefix(&file, al.lib.as_deref());
            // The preload is in strace's -E, not in strace's own environment.
            let cmd = exec::command(&prefix, exe, &args, None);
            let got: Result<syscalls::Traced, String> = match exec::run(cmd, timeout * 2) {
                Err(e) => Err(format!("spawn strace: {e}")),
                Ok(out) if !out.ok() => Err(format!("traced run: {}", out.describe_failure())),
                Ok(out) => ResultLine::find_in(&out.stdout).and_then(|res| {
                    if let (Some(lib), Some(from)) = (&al.lib, res.get("malloc_from")) {
                        if !malloc_is_from(from, lib) {
                            return Err(format!(
                                "preload not in effect under strace: malloc came from {from}"
                            ));
                        }
                    }
                    let text = std::fs::read_to_string(&file)
                        .map_err(|e| format!("read {}: {e}", file.display()))?;
                    Ok(syscalls::Traced {
                        counts: syscalls::parse_summary(&text)?,
                        threads_created: res.get_f64("threads_created").map(|x| x as u64),
                        file: file.clone(),
                    })
                }),
            };
            let status = match &got {
                Ok(t) => syscalls::TRACED
                    .iter()
                    .map(|n| format!("{n} {}", t.count(n)))
                    .collect::<Vec<_>>()
                    .join(", "),
                Err(e) => format!("FAILED ({e})"),
            };
            eprintln!(
                "[strace {done:>3}/{total}] {:<22} {:<14} {status}",
                row.name, al.name
            );
            cells[r][a].syscalls = Some(got);
        }
    }
    Ok(())
}

fn compare(o: &CompareOpts) -> Result<(), String> {
    let root = find_root(o.root.as_deref());
    let callgrind = o.callgrind.is_some();
    let scale = o.scale.unwrap_or(if callgrind { 0.2 } else { 1.0 });
    let mut rows = matrix::matrix(&o.matrix, scale)?;
    if let Some(ring) = o.ring {
        rows = matrix::with_ring(rows, ring);
    }
    if let Some(idle) = o.idle {
        rows = matrix::with_idle(rows, idle);
    }
    let out_dir = o
        .out
        .clone()
        .unwrap_or_else(|| root.join("bench-results").join(&o.matrix));
    let exe = std::env::current_exe().map_err(|e| format!("cannot find my own executable: {e}"))?;
    let (allocs, missing) = resolve_allocs(o, &root)?;
    let command_line = machine::command_line();
    let baseline = if allocs.iter().any(|a| a.name == o.baseline) {
        o.baseline.clone()
    } else {
        let b = allocs[0].name.clone();
        eprintln!(
            "warning: baseline {:?} is not available; using {b}",
            o.baseline
        );
        b
    };

    if let Some(row_name) = &o.callgrind {
        let rows = select_rows(rows, Some(std::slice::from_ref(row_name)))?;
        let timeout = o.timeout.unwrap_or(3600.0);
        let md = callgrind::run(
            &exe,
            &rows[0],
            &allocs,
            &baseline,
            &out_dir,
            timeout,
            &command_line,
            &missing,
        )?;
        println!("{md}");
        return Ok(());
    }

    let rows = select_rows(rows, o.rows.as_deref())?;
    let tracer = if o.syscalls {
        find_tracer(o.install)
    } else {
        None
    };
    let runs = o.runs();
    let timeout = Duration::from_secs_f64(o.timeout_secs());
    let nproc = crate::common::ncpus();
    eprintln!(
        "hakozuna-bench: matrix {} ({} rows) x {} allocators x {} runs, interleaved; {} CPUs; output {}",
        o.matrix,
        rows.len(),
        allocs.len(),
        runs,
        nproc,
        out_dir.display()
    );
    let date = machine::now_utc();
    let mut cells: Vec<Vec<Cell>> = vec![vec![Cell::default(); allocs.len()]; rows.len()];
    let total = runs * rows.len() * allocs.len();
    let mut done = 0usize;
    let t_start = Instant::now();
    for run in 1..=runs {
        for (r, row) in rows.iter().enumerate() {
            for (a, al) in allocs.iter().enumerate() {
                done += 1;
                let mut args = vec!["bench".to_string(), row.bench.to_string()];
                args.extend(row.args.iter().cloned());
                let cmd = exec::command(&[], &exe, &args, al.lib.as_deref());
                let cell = &mut cells[r][a];
                let status = match exec::run(cmd, timeout) {
                    Err(e) => {
                        cell.failures.push(format!("spawn failed: {e}"));
                        format!("spawn failed: {e}")
                    }
                    Ok(out) if !out.ok() => {
                        let d = out.describe_failure();
                        cell.failures.push(d.clone());
                        format!("FAILED ({d})")
                    }
                    Ok(out) => match ResultLine::find_in(&out.stdout) {
                        Err(e) => {
                            cell.failures.push(e.clone());
                            format!("FAILED ({e})")
                        }
                        Ok(res) => {
                            if let (Some(lib), Some(from)) = (&al.lib, res.get("malloc_from")) {
                                if !malloc_is_from(from, lib) && cell.preload_problem.is_none() {
                                    let msg =
                                        format!("preload not in effect: malloc came from {from}");
                                    eprintln!("warning: {} / {}: {msg}", row.name, al.name);
                                    cell.preload_problem = Some(msg);
                                }
                            }
                            let mut s = format!(
                                "{} ops/s, peak RSS {:.1} MiB, {} minor faults",
                                crate::common::human_rate(res.ops_per_sec),
                                out.maxrss_kb as f64 / 1024.0,
                                report::fmt_count(out.minflt as f64)
                            );
                            if let Some(k) = res.get_f64("rss_idle_kb") {
                                s.push_str(&format!(", RSS after idle {:.1} MiB", k / 1024.0));
                            }
                            if let Some(k) = res.get_f64("rss_trim_kb") {
                                s.push_str(&format!(", after trim {:.1} MiB", k / 1024.0));
                            }
                            if let Some(f) = res.get_f64("fallback_rate") {
                                s.push_str(&format!(", fallback {:.3}%", f * 100.0));
                                if f >= crate::benches::mt_remote::FALLBACK_LIMIT {
                                    s.push_str(" (INVALID)");
                                }
                            }
                            cell.samples.push(Sample {
                                run,
                                result: res,
                                maxrss_kb: out.maxrss_kb,
                                cpu_secs: out.cpu_secs,
                                minflt: out.minflt,
                                wall_secs: out.wall_secs,
                            });
                            s
                        }
                    },
                };
                let el = t_start.elapsed().as_secs_f64();
                let eta = el / done as f64 * (total - done) as f64;
                eprintln!(
                    "[run {run}/{runs} {done:>4}/{total}] {:<22} {:<14} {status}  (elapsed {el:.0}s, ~{eta:.0}s left)",
                    row.name, al.name
                );
            }
        }
    }

    if let Some(tracer) = &tracer {
        trace_all(tracer, &exe, &rows, &allocs, &mut cells, &out_dir, timeout)?;
    }

    let rep = CompareReport {
        matrix: o.matrix.clone(),
        date,
        machine: machine::machine(),
        command: command_line,
        runs,
        scale,
        baseline,
        allocs,
        missing,
        rows,
        cells,
    };
    let files = rep.write_all(&out_dir)?;
    println!("{}", rep.markdown());
    for f in files {
        eprintln!("wrote {}", f.display());
    }
    Ok(())
}
