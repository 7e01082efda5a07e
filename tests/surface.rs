//! The surface a malloc replacement is expected to have beyond the C malloc family (issue 17),
//! tested from outside under `LD_PRELOAD` and through the launcher:
//!
//! - `tests/cxx/operators.cpp`: every C++17 `operator new`/`delete` form, over-aligned types,
//!   a `new_handler` that frees a reserve, `std::bad_alloc` and the `nothrow` nulls, under
//!   plain libstdc++ and each lane (with every operator resolved into the library), and
//!   through `scripts/hakozuna run`;
//! - real C++ programs under each lane, output compared with glibc's: `g++` compiling that
//!   file (the object must be byte-identical), `apt-cache` reading its package cache;
//! - `tests/capi/introspect.c`: `mallinfo2`, `mallinfo`, `malloc_stats`, `malloc_info`,
//!   `mallopt` (their results must also hold under plain glibc where they are glibc's), and the
//!   JSON of `hakozuna_stats_json` at each phase, parsed here with `serde_json`: the figures
//!   must move the right way after allocating, freeing and trimming 200 MiB;
//! - `HAKOZUNA_STATS=json` at exit, parsed the same way;
//! - the launcher: `true`, `false` and other exit codes, the `LD_PRELOAD` it gives a program
//!   (appended to an existing one), `--fast`, `--stats`, its errors, and `scripts/install.sh`
//!   into a scratch prefix followed by the installed launcher.
//!
//! Needs `cargo build --release` first, `gcc` and `g++`; never skips.

mod harness;

use harness::{once, plain, preloaded, root, run, test_dir, try_compile, Lane, Run};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

const MIB: u64 = 1 << 20;
const T: Duration = Duration::from_secs(180);

fn operators() -> &'static PathBuf {
    static P: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    once(&P, || {
        try_compile(
            "g++",
            "tests/cxx/operators.cpp",
            "surface/operators",
            &["-pthread", "-std=c++17", "-ldl"],
        )
    })
}

fn introspect() -> &'static PathBuf {
    static P: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    once(&P, || {
        try_compile(
            "gcc",
            "tests/capi/introspect.c",
            "surface/introspect",
            &["-pthread", "-ldl"],
        )
    })
}

fn launcher() -> PathBuf {
    root().join("scripts/hakozuna")
}

/// The launcher with a clean environment: no inherited preload or library directory, so it
/// finds the libraries in the checkout's target/release.
fn launch(args: &[&str]) -> Command {
    let mut c = plain(launcher());
    c.env_remove("HAKOZUNA_LIB_DIR")
        .env_remove("HAKOZUNA_STATS")
        .args(args);
    c
}

/// The libraries the launcher must pick: the checkout's own build.
fn built(lane: Lane) -> PathBuf {
    let name = match lane {
        Lane::Scale => "libhakozuna.so",
        Lane::Fast => "libhakozuna_fast.so",
    };
    let p = root().join("target/release").join(name);
    assert!(
        p.is_file(),
        "{} is missing: run `cargo build --release` first",
        p.display()
    );
    p.canonicalize().unwrap()
}

fn lanes() -> [(Lane, &'static str); 2] {
    [(Lane::Scale, ""), (Lane::Fast, "--fast")]
}

// ---------------------------------------------------------------------------------------------
// C++ operators

#[test]
fn cxx_operators_libstdcxx() {
    run(plain(operators()), T)
        .expect_ok()
        .expect_stdout_contains("CXX OK");
}

fn cxx_lane(lane: Lane) {
    let mut c = preloaded(operators(), lane);
    c.env("HZ_EXPECT_PRELOAD", "1");
    run(c, T).expect_ok().expect_stdout_contains("CXX OK");
}

#[test]
fn cxx_operators_scale() {
    cxx_lane(Lane::Scale);
}

#[test]
fn cxx_operators_fast() {
    cxx_lane(Lane::Fast);
}

#[test]
fn cxx_operators_through_the_launcher() {
    for (_, flag) in lanes() {
        let exe = operators();
        let mut args = vec!["run"];
        if !flag.is_empty() {
            args.push(flag);
        }
        args.extend(["--", exe.to_str().unwrap()]);
        let mut c = launch(&args);
        c.env("HZ_EXPECT_PRELOAD", "1");
        run(c, T).expect_ok().expect_stdout_contains("CXX OK");
    }
}

/// g++ compiling a template-heavy C++ file (ours) under each lane makes the same object as
/// under glibc. (cc1plus carries its own libstdc++, so this exercises `malloc`; apt-cache
/// below uses the shared libstdc++ and so our operators.)
#[test]
fn gxx_compiles_the_same_object_under_each_lane() {
    let dir = test_dir("gxx");
    let compile = |mut c: Command, out: &Path| {
        c.args(["-std=c++17", "-O2", "-g0", "-c", "-o"])
            .arg(out)
            .arg(root().join("tests/cxx/operators.cpp"));
        run(c, T).expect_ok();
        std::fs::read(out).unwrap()
    };
    let want = compile(plain("g++"), &dir.join("glibc.o"));
    for (lane, _) in lanes() {
        let got = compile(preloaded("g++", lane), &dir.join(format!("{lane:?}.o")));
        assert!(got == want, "{lane:?}: g++ made a different object");
    }
}

/// apt-cache (C++, shared libstdc++: every `new` reaches our operators) prints the same as
/// under glibc.
#[test]
fn apt_cache_prints_the_same_under_each_lane() {
    for args in [&["showpkg", "libc6"][..], &["stats"][..]] {
        let mut c = plain("apt-cache");
        c.args(args);
        let want = run(c, T);
        want.expect_ok();
        assert!(want.stdout.len() > 100, "{}", want.describe());
        for (lane, _) in lanes() {
            let mut c = preloaded("apt-cache", lane);
            c.env("HZ_EXPECT_PRELOAD", "1").args(args);
            let got = run(c, T);
            got.expect_ok();
            assert!(
                got.stdout == want.stdout,
                "apt-cache {args:?} differs under {lane:?}: {}",
                got.describe()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// glibc introspection and the JSON statistics

#[test]
fn introspection_glibc() {
    run(plain(introspect()), T)
        .expect_ok()
        .expect_stdout_contains("INTROSPECT OK");
}

fn u(v: &Value, k: &str) -> u64 {
    v.get(k)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no integer {k:?} in {v}"))
}

/// The checks every statistics document must pass, whatever the moment.
fn check_document(v: &Value, lane: Lane) {
    assert_eq!(u(v, "version"), 1, "{v}");
    let want = match lane {
        Lane::Scale => "scale",
        Lane::Fast => "fast",
    };
    assert_eq!(v["lane"], want, "{v}");
    assert_eq!(v["events_counted"], true, "{v}");
    assert_eq!(
        u(v, "committed_bytes"),
        u(v, "in_use_bytes") + u(v, "free_bytes") + u(v, "metadata_bytes"),
        "{v}"
    );
    assert_eq!(
        u(v, "in_use_bytes"),
        u(v, "run_bytes") + u(v, "large_live_bytes"),
        "{v}"
    );
    assert!(u(v, "resident_bytes") <= u(v, "committed_bytes"), "{v}");
    assert!(u(v, "heaps") >= 1, "{v}");
    assert!(u(v, "arena_reserved_bytes") >= 1 << 30, "{v}");
    let events = v["events"].as_object().expect("events object");
    assert!(events.len() >= 40, "{v}");
    for k in ["refill_new_page", "large_allocs", "bytes_purged", "epochs"] {
        assert!(
            events.get(k).and_then(Value::as_u64).is_some(),
            "{k} in {v}"
        );
    }
}

fn introspection_lane(lane: Lane) {
    let mut c = preloaded(introspect(), lane);
    c.env("HZ_EXPECT_PRELOAD", "1");
    let r = run(c, T);
    r.expect_ok().expect_stdout_contains("INTROSPECT OK");
    let docs: Vec<(String, Value)> = r
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("JSON "))
        .map(|l| {
            let (phase, json) = l.split_once(' ').unwrap();
            let v: Value =
                serde_json::from_str(json).unwrap_or_else(|e| panic!("{phase}: {e}: {json}"));
            (phase.to_string(), v)
        })
        .collect();
    let phases: Vec<&str> = docs.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        phases,
        ["start", "large", "medium", "freed", "trimmed"],
        "{}",
        r.describe()
    );
    for (_, v) in &docs {
        check_document(v, lane);
    }
    let [start, large, medium, freed, trimmed] = [0, 1, 2, 3, 4].map(|i| &docs[i].1);
    // 100 x 1 MiB: the large tier.
    assert!(u(large, "large_live_bytes") >= u(start, "large_live_bytes") + 100 * MIB);
    assert!(u(large, "large_live_blocks") >= u(start, "large_live_blocks") + 100);
    assert!(u(&large["events"], "large_allocs") >= 100);
    // 100 MiB of 32 KiB blocks: page runs of the arena.
    assert!(u(medium, "run_bytes") >= u(large, "run_bytes") + 100 * MIB);
    assert!(u(medium, "arena_segment_bytes") >= u(large, "arena_segment_bytes") + 100 * MIB);
    assert!(u(medium, "in_use_bytes") >= u(start, "in_use_bytes") + 200 * MIB);
    // Freed: the large blocks wait in the cache, most medium runs went back as free pages
    // (a medium central list keeps up to 16 MiB per class).
    assert_eq!(u(freed, "large_live_bytes"), u(start, "large_live_bytes"));
    assert!(u(freed, "large_cached_bytes") >= 100 * MIB);
    assert!(u(freed, "in_use_bytes") + 150 * MIB <= u(medium, "in_use_bytes"));
    assert!(u(freed, "free_bytes") >= u(medium, "free_bytes") + 150 * MIB);
    // Trimmed: the cache is unmapped and the pooled segments purged.
    assert_eq!(u(trimmed, "large_cached_bytes"), 0);
    assert!(u(trimmed, "committed_bytes") + 100 * MIB <= u(freed, "committed_bytes"));
    assert!(u(trimmed, "resident_bytes") + 150 * MIB <= u(freed, "resident_bytes"));
    assert!(u(trimmed, "pooled_purged_bytes") >= 50 * MIB);
    assert_eq!(u(trimmed, "pooled_resident_bytes"), 0);
    assert!(u(trimmed, "large_peak_blocks") >= 100);
    // malloc_stats: glibc's shape, then our summary.
    for line in [
        "Arena 0:",
        "in use bytes     =",
        "max mmap regions =",
        "hakozuna stats: committed bytes: ",
        "hakozuna stats: large allocations: ",
    ] {
        assert!(r.stderr.contains(line), "no {line:?} in {}", r.describe());
    }
}

#[test]
fn introspection_scale() {
    introspection_lane(Lane::Scale);
}

#[test]
fn introspection_fast() {
    introspection_lane(Lane::Fast);
}

/// The last line of stderr that is a statistics document.
fn exit_json(r: &Run) -> Value {
    let line = r
        .stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("{\"version\":"))
        .unwrap_or_else(|| panic!("no JSON document on stderr: {}", r.describe()));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

#[test]
fn stats_json_at_exit() {
    for (lane, _) in lanes() {
        let mut c = preloaded(introspect(), lane);
        c.env("HZ_EXPECT_PRELOAD", "1")
            .env("HAKOZUNA_STATS", "json");
        let r = run(c, T);
        r.expect_ok();
        let v = exit_json(&r);
        check_document(&v, lane);
        assert!(u(&v, "large_peak_blocks") >= 100, "{v}");
        assert!(u(&v["events"], "large_allocs") >= 100, "{v}");
    }
}

#[test]
fn stats_option_values() {
    // `1` prints the text summary, a malformed value warns and prints nothing.
    let mut c = preloaded(introspect(), Lane::Scale);
    c.env("HZ_EXPECT_PRELOAD", "1").env("HAKOZUNA_STATS", "1");
    let r = run(c, T);
    r.expect_ok();
    let tail = &r.stderr[r.stderr.find("--- end of malloc_stats").unwrap()..];
    assert!(
        tail.contains("hakozuna stats: committed bytes: "),
        "{}",
        r.describe()
    );
    let mut c = preloaded(introspect(), Lane::Scale);
    c.env("HZ_EXPECT_PRELOAD", "1").env("HAKOZUNA_STATS", "yes");
    let r = run(c, T);
    r.expect_ok();
    assert!(
        r.stderr
            .contains("hakozuna: ignoring malformed HAKOZUNA_STATS='yes' (expected 0, 1 or json)"),
        "{}",
        r.describe()
    );
    let tail = &r.stderr[r.stderr.find("--- end of malloc_stats").unwrap()..];
    assert!(!tail.contains("hakozuna stats:"), "{}", r.describe());
}

// ---------------------------------------------------------------------------------------------
// the launcher and the install script

#[test]
fn launcher_exit_codes() {
    for (_, flag) in lanes() {
        let with = |prog: &[&str]| {
            let mut args = vec!["run"];
            if !flag.is_empty() {
                args.push(flag);
            }
            args.push("--");
            args.extend(prog);
            run(launch(&args), T)
        };
        let r = with(&["true"]);
        assert_eq!(r.status.and_then(|s| s.code()), Some(0), "{}", r.describe());
        let r = with(&["false"]);
        assert_eq!(r.status.and_then(|s| s.code()), Some(1), "{}", r.describe());
        let r = with(&["sh", "-c", "exit 42"]);
        assert_eq!(
            r.status.and_then(|s| s.code()),
            Some(42),
            "{}",
            r.describe()
        );
    }
}

#[test]
fn launcher_sets_ld_preload() {
    for (lane, flag) in lanes() {
        let so = built(lane);
        let mut args = vec!["run"];
        if !flag.is_empty() {
            args.push(flag);
        }
        // Without a `--`: the first word that is not an option is the program.
        args.extend(["printenv", "LD_PRELOAD"]);
        let r = run(launch(&args), T);
        r.expect_ok();
        assert_eq!(
            r.stdout.trim_end(),
            so.to_str().unwrap(),
            "{}",
            r.describe()
        );

        // Appended to an existing preload, which keeps its place first.
        let other = "/lib/x86_64-linux-gnu/libm.so.6";
        let mut c = launch(&args);
        c.env("LD_PRELOAD", other);
        let r = run(c, T);
        r.expect_ok();
        assert_eq!(
            r.stdout.trim_end(),
            format!("{other}:{}", so.display()),
            "{}",
            r.describe()
        );

        // The library really is loaded and serving the program.
        let mut args = vec!["run"];
        if !flag.is_empty() {
            args.push(flag);
        }
        args.extend(["--", "cat", "/proc/self/maps"]);
        let r = run(launch(&args), T);
        r.expect_ok();
        assert!(r.stdout.contains(so.to_str().unwrap()), "{}", r.describe());

        // `lib` prints the path `run` uses.
        let mut args = vec!["lib"];
        if !flag.is_empty() {
            args.push(flag);
        }
        let r = run(launch(&args), T);
        r.expect_ok();
        assert_eq!(r.stdout.trim_end(), so.to_str().unwrap());
    }
}

#[test]
fn launcher_stats_options() {
    let r = run(
        launch(&["run", "--stats", "--", "printenv", "HAKOZUNA_STATS"]),
        T,
    );
    r.expect_ok();
    assert_eq!(r.stdout.trim_end(), "1");
    let mut c = launch(&[
        "run",
        "--fast",
        "--stats=json",
        "--",
        introspect().to_str().unwrap(),
    ]);
    c.env("HZ_EXPECT_PRELOAD", "1");
    let r = run(c, T);
    r.expect_ok().expect_stdout_contains("INTROSPECT OK");
    check_document(&exit_json(&r), Lane::Fast);
}

#[test]
fn launcher_errors() {
    let code = |r: &Run| r.status.and_then(|s| s.code());
    let r = run(launch(&["run"]), T);
    assert_eq!(code(&r), Some(2), "{}", r.describe());
    assert!(r.stderr.contains("no program given"), "{}", r.describe());
    let r = run(launch(&["run", "--bogus", "true"]), T);
    assert_eq!(code(&r), Some(2), "{}", r.describe());
    let r = run(launch(&["frobnicate"]), T);
    assert_eq!(code(&r), Some(2), "{}", r.describe());
    let r = run(launch(&["run", "--", "/nonexistent/program"]), T);
    assert_eq!(code(&r), Some(127), "{}", r.describe());
    let r = run(launch(&["--help"]), T);
    r.expect_ok().expect_stdout_contains("hakozuna run");
    // A copy of the script with no library anywhere it looks.
    if !Path::new("/usr/local/lib/libhakozuna.so").exists() {
        let dir = test_dir("launcher-alone");
        let copy = dir.join("hakozuna");
        std::fs::copy(launcher(), &copy).unwrap();
        let mut c = plain(&copy);
        c.env_remove("HAKOZUNA_LIB_DIR").args(["run", "true"]);
        let r = run(c, T);
        assert_eq!(code(&r), Some(127), "{}", r.describe());
        assert!(
            r.stderr.contains("libhakozuna.so not found"),
            "{}",
            r.describe()
        );
    }
}

#[test]
fn install_then_run_the_installed_launcher() {
    let prefix = test_dir("install").join("prefix");
    let mut c = plain(root().join("scripts/install.sh"));
    c.env("PREFIX", &prefix).env_remove("DESTDIR");
    run(c, T).expect_ok();
    for f in [
        "lib/libhakozuna.so",
        "lib/libhakozuna_fast.so",
        "bin/hakozuna",
        "include/hakozuna.h",
    ] {
        assert!(prefix.join(f).is_file(), "{f} not installed");
    }
    let installed = prefix.join("bin/hakozuna");
    for (lane, flag) in lanes() {
        let name = match lane {
            Lane::Scale => "libhakozuna.so",
            Lane::Fast => "libhakozuna_fast.so",
        };
        let want = prefix.join("lib").join(name).canonicalize().unwrap();
        let mut args = vec!["run"];
        if !flag.is_empty() {
            args.push(flag);
        }
        let mut c = plain(&installed);
        c.env_remove("HAKOZUNA_LIB_DIR")
            .args(&args)
            .args(["--", "printenv", "LD_PRELOAD"]);
        let r = run(c, T);
        r.expect_ok();
        assert_eq!(
            r.stdout.trim_end(),
            want.to_str().unwrap(),
            "{}",
            r.describe()
        );
        let mut c = plain(&installed);
        c.env_remove("HAKOZUNA_LIB_DIR")
            .env("HZ_EXPECT_PRELOAD", "1")
            .args(&args)
            .arg("--")
            .arg(operators());
        run(c, T).expect_ok().expect_stdout_contains("CXX OK");
    }
    // The header compiles, in C and C++.
    for (compiler, lang) in [("gcc", "c"), ("g++", "c++")] {
        let mut c = plain(compiler);
        c.args(["-fsyntax-only", "-x", lang])
            .arg(prefix.join("include/hakozuna.h"));
        run(c, T).expect_ok();
    }
}
