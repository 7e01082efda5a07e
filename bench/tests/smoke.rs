//! Smoke test: every benchmark program runs briefly under glibc and under the hakozuna scale
//! lane (`target/release/libhakozuna.so` via LD_PRELOAD), exits 0 and prints a well-formed
//! RESULT line (the memory programs also every RSS/fault field they document); and the runner
//! produces its three report files. No timing assertions, and none on RSS values.
//!
//! The preload library must exist: build it first with `cargo build --release` at the
//! workspace root. A missing library is a test failure, never a skip.

use hakozuna_bench::runner::result::ResultLine;
use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn hakozuna_so() -> PathBuf {
    let so = workspace_root().join("target/release/libhakozuna.so");
    assert!(
        so.is_file(),
        "{} does not exist: run `cargo build --release` at the workspace root first \
         (the smoke test runs every benchmark under LD_PRELOAD of the scale lane)",
        so.display()
    );
    so
}

/// (program binary, short arguments) for each benchmark program.
fn programs() -> Vec<(&'static str, &'static str, Vec<&'static str>)> {
    vec![
        (
            "random-mixed",
            env!("CARGO_BIN_EXE_random-mixed"),
            vec!["20000", "64", "16", "2048"],
        ),
        (
            "random-mixed",
            env!("CARGO_BIN_EXE_random-mixed"),
            vec!["--dist", "20000", "64"],
        ),
        (
            "mt-remote",
            env!("CARGO_BIN_EXE_mt-remote"),
            vec!["3", "5000", "64", "16", "2048", "50", "1024"],
        ),
        (
            "larson",
            env!("CARGO_BIN_EXE_larson"),
            vec!["2", "3", "1000", "100", "8", "1000"],
        ),
        (
            "xmalloc-test",
            env!("CARGO_BIN_EXE_xmalloc-test"),
            vec!["4", "20", "50", "16", "512"],
        ),
        (
            "cache-scratch",
            env!("CARGO_BIN_EXE_cache-scratch"),
            vec!["2", "10", "8", "100"],
        ),
        // The memory programs at toy size: 8 MiB burst, no idle; 12 generations of 64 KiB.
        (
            "burst-idle",
            env!("CARGO_BIN_EXE_burst-idle"),
            vec!["2", "8", "0"],
        ),
        (
            "thread-churn",
            env!("CARGO_BIN_EXE_thread-churn"),
            vec!["12", "3", "64"],
        ),
        // The field shapes (issue 18) at toy size.
        (
            "large-blocks",
            env!("CARGO_BIN_EXE_large-blocks"),
            vec!["4", "3", "64", "2048"],
        ),
        (
            "alloc-free-loop",
            env!("CARGO_BIN_EXE_alloc-free-loop"),
            vec!["20000", "100", "16", "512"],
        ),
        (
            "tree-build",
            env!("CARGO_BIN_EXE_tree-build"),
            vec!["2", "3", "8", "16", "64"],
        ),
        (
            "cross-churn",
            env!("CARGO_BIN_EXE_cross-churn"),
            vec!["3", "5000", "64", "50", "8"],
        ),
        (
            "leak-churn",
            env!("CARGO_BIN_EXE_leak-churn"),
            vec!["5", "1000", "16", "512", "10"],
        ),
    ]
}

/// Fields a memory program's RESULT line must carry, each a number (or, for the two
/// words, one of the documented values). No assertion on what the numbers are beyond
/// being present and positive where a process cannot do with zero.
fn check_memory_fields(what: &str, r: &ResultLine) {
    let num = |k: &str| -> f64 {
        r.get_f64(k)
            .unwrap_or_else(|| panic!("{what}: RESULT lacks numeric {k}: {:?}", r.fields))
    };
    assert!(num("peak_rss_kb") > 0.0, "{what}");
    assert!(num("minflt") > 0.0, "{what}");
    num("majflt");
    match r.bench.as_str() {
        "burst-idle" => {
            for k in ["rss_start_kb", "rss_full_kb", "rss_freed_kb", "rss_idle_kb"] {
                assert!(num(k) > 0.0, "{what}: {k}");
            }
            // Half the frees are cross-thread (one block fewer per thread that made an odd number).
            let local = num("frees") - num("remote_frees");
            let diff = local - num("remote_frees");
            assert!(
                (0.0..=num("threads")).contains(&diff),
                "{what}: {local} local vs {} remote frees",
                num("remote_frees")
            );
            let trim = r.get("trim").unwrap();
            assert!(
                ["own", "other", "absent"].contains(&trim),
                "{what}: trim={trim}"
            );
            if trim != "absent" {
                assert!(num("rss_trim_kb") > 0.0, "{what}");
            }
        }
        "thread-churn" => {
            for k in ["rss_min_kb", "rss_max_kb", "rss_last_kb"] {
                assert!(num(k) > 0.0, "{what}: {k}");
            }
            // 12 generations: samples after the 10th and the last.
            assert_eq!(num("rss_samples"), 2.0, "{what}");
            assert_eq!(
                r.get("rss_series_kb").unwrap().split(',').count(),
                2,
                "{what}"
            );
            assert_eq!(num("threads_created"), 36.0, "{what}");
        }
        _ => {}
    }
}

fn run_one(name: &str, exe: &str, args: &[&str], preload: Option<&Path>) -> ResultLine {
    let mut cmd = Command::new(exe);
    cmd.args(args).env_remove("LD_PRELOAD");
    if let Some(p) = preload {
        cmd.env("LD_PRELOAD", p);
    }
    let what = format!("{name} {} (LD_PRELOAD={:?})", args.join(" "), preload);
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{what}: exit status {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    let n = stdout.lines().filter(|l| l.starts_with("RESULT ")).count();
    assert_eq!(n, 1, "{what}: expected exactly one RESULT line\n{stdout}");
    let r = ResultLine::find_in(&stdout).unwrap_or_else(|e| panic!("{what}: {e}\n{stdout}"));
    assert_eq!(r.bench, name, "{what}");
    assert!(r.ops > 0, "{what}: no operations");
    assert!(
        r.get("malloc_from").is_some(),
        "{what}: RESULT lacks malloc_from"
    );
    if name == "burst-idle" || name == "thread-churn" {
        check_memory_fields(&what, &r);
    }
    if name == "mt-remote" {
        for k in [
            "remote_ratio",
            "fallback_rate",
            "remote_sends",
            "fallbacks",
            "valid",
        ] {
            assert!(r.get(k).is_some(), "{what}: RESULT lacks {k}");
        }
    }
    r
}

#[test]
fn programs_run_under_glibc() {
    for (name, exe, args) in programs() {
        let r = run_one(name, exe, &args, None);
        let from = r.get("malloc_from").unwrap();
        assert!(
            from.contains("libc.so"),
            "{name}: without preload malloc should be glibc's, got {from}"
        );
    }
}

#[test]
fn programs_run_under_hakozuna_preload() {
    let so = hakozuna_so();
    for (name, exe, args) in programs() {
        let r = run_one(name, exe, &args, Some(&so));
        let from = r.get("malloc_from").unwrap();
        assert!(
            from.contains("libhakozuna"),
            "{name}: LD_PRELOAD={} had no effect, malloc came from {from} \
             (does the library export malloc? rebuild with `cargo build --release`)",
            so.display()
        );
    }
}

#[test]
fn runner_smoke_matrix_writes_reports() {
    let so = hakozuna_so();
    let out = std::env::temp_dir().join(format!("hakozuna-bench-smoke-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let status = Command::new(env!("CARGO_BIN_EXE_hakozuna-bench"))
        .args([
            "compare",
            "--matrix",
            "smoke",
            "--runs",
            "1",
            "--allocs",
            "glibc,hakozuna",
            "--timeout",
            "120",
        ])
        .arg("--root")
        .arg(workspace_root())
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run hakozuna-bench");
    let stdout = String::from_utf8_lossy(&status.stdout);
    let stderr = String::from_utf8_lossy(&status.stderr);
    assert!(status.status.success(), "runner failed\n{stdout}\n{stderr}");
    assert!(stdout.contains("| rm-16-2048 |"), "{stdout}");
    assert!(
        !stdout.contains("failed"),
        "a smoke row failed:\n{stdout}\n{stderr}"
    );
    let js: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    let results = js["results"].as_array().unwrap();
    assert!(!results.is_empty());
    for r in results {
        assert_eq!(r["runs_ok"], 1, "{r}");
        assert!(r["peak_rss_kb"].as_u64().unwrap() > 0);
    }
    assert_eq!(js["allocators"][1]["lib"].as_str(), so.to_str());
    let svg = std::fs::read_to_string(out.join("results.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(md.contains("Date:"));
    // The smoke matrix has a burst-idle and a thread-churn row: their per-allocator tables.
    for needle in [
        "## Memory: peak RSS",
        "## Memory programs",
        "### burst-idle-T2",
        "### churn-T2",
    ] {
        assert!(md.contains(needle), "results.md lacks {needle:?}\n{md}");
    }
    let _ = std::fs::remove_dir_all(&out);
}
