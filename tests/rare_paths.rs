//! The rare paths of docs/design.md §11 ("Rare paths"), each driven by a mode of
//! `tests/capi/rare_paths.c` under both preload libraries (`cargo build --release` first):
//! a thread's first allocation in glibc's last TLS-destructor round, a failing
//! `pthread_key_create` (the `rare_paths_shim.c` preload), more threads than
//! `HAKOZUNA_MAX_HEAPS`, a low `RLIMIT_AS` with small and configured arena sizes, aligned
//! allocations above a page in a loop, and the threads of a fork child on the stacks of the
//! parent's other threads (which must not adopt their heaps). The program checks the
//! allocator's figures itself and prints `ok <mode>`.

mod harness;

use harness::{once, plain, preloaded, run, try_compile, Lane};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

struct Progs {
    prog: PathBuf,
    shim: PathBuf,
}

fn progs() -> &'static Progs {
    static P: OnceLock<Result<Progs, String>> = OnceLock::new();
    once(&P, || {
        Ok(Progs {
            prog: try_compile(
                "gcc",
                "tests/capi/rare_paths.c",
                "rare_paths/rare_paths",
                &["-pthread", "-ldl"],
            )?,
            shim: try_compile(
                "gcc",
                "tests/capi/rare_paths_shim.c",
                "rare_paths/rare_paths_shim.so",
                &["-shared", "-fPIC", "-ldl"],
            )?,
        })
    })
}

const TIMEOUT: Duration = Duration::from_secs(180);

fn check(lane: Lane, mode: &str, env: &[(&str, &str)]) {
    let mut c = preloaded(&progs().prog, lane);
    c.arg(mode).envs(env.iter().copied());
    let r = run(c, TIMEOUT);
    r.expect_ok().expect_stdout_contains(&format!("ok {mode}"));
    eprint!("{}", r.stdout);
}

/// Runs `mode` with the address space limited to `kib` KiB (`ulimit -v` before the exec, so
/// the limit holds when the library reserves its arena).
fn check_limited(lane: Lane, mode: &str, kib: u64, env: &[(&str, &str)]) {
    let mut c = plain("sh");
    c.arg("-c")
        .arg(format!("ulimit -v {kib} && exec \"$0\" {mode}"))
        .arg(&progs().prog)
        .env("LD_PRELOAD", lane.so())
        .envs(env.iter().copied());
    let r = run(c, TIMEOUT);
    r.expect_ok().expect_stdout_contains(&format!("ok {mode}"));
    eprint!("{}", r.stdout);
}

fn no_key(lane: Lane, which: &str) {
    let mut c = preloaded(&progs().prog, lane);
    let pre = format!("{} {}", lane.so().display(), progs().shim.display());
    c.arg("no_key")
        .env("LD_PRELOAD", pre)
        .env("RARE_PATHS_FAIL_KEYS", which);
    let r = run(c, TIMEOUT);
    r.expect_ok().expect_stdout_contains("ok no_key");
    eprint!("{}", r.stdout);
}

macro_rules! both_lanes {
    ($($name:ident => $body:expr;)*) => {
        mod scale {
            use super::*;
            const LANE: Lane = Lane::Scale;
            $(#[test] fn $name() { let f: fn(Lane) = $body; f(LANE) })*
        }
        mod fast {
            use super::*;
            const LANE: Lane = Lane::Fast;
            $(#[test] fn $name() { let f: fn(Lane) = $body; f(LANE) })*
        }
    };
}

both_lanes! {
    exit_round => |l| check(l, "exit_round", &[]);
    no_key_ever => |l| no_key(l, "all");
    no_key_at_start_up => |l| no_key(l, "first");
    heap_limit => |l| check(l, "heap_limit", &[("HAKOZUNA_MAX_HEAPS", "2")]);
    heap_limit_one => |l| check(l, "heap_limit", &[("HAKOZUNA_MAX_HEAPS", "1")]);
    // 512 MiB of address space: no 1 GiB arena fits, 256 MiB does.
    arena_limit_default_size => |l| check_limited(l, "arena_limit", 512 << 10, &[]);
    arena_limit_small_size => |l| check_limited(l, "arena_limit", 512 << 10, &[("HAKOZUNA_ARENA_GB", "1")]);
    arena_limit_odd_size => |l| check_limited(l, "arena_limit", 512 << 10, &[("HAKOZUNA_ARENA_GB", "3")]);
    // A long decay interval: no cached block expires however slowly the loop runs.
    aligned => |l| check(l, "aligned", &[("HAKOZUNA_DECAY_MS", "600000")]);
    fork_child => |l| check(l, "fork_child", &[]);
}
