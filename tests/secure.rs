//! The hardened lane (`target/release/libhakozuna_secure.so`, docs/design.md "Hardened lane"):
//! each heap error of tests/secure/errors.c must end the program with SIGABRT after the
//! expected line on stderr, and the program's valid part must run clean under every lane and
//! under glibc. Requires `cargo build --release` first (never skips);
//! `HAKOZUNA_SECURE_SO=/path/lib.so` replaces the library.

mod harness;

use harness::{once, plain, preloaded, root, run, try_compile, Lane, Run};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(120);

fn errors_prog() -> &'static PathBuf {
    static P: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    once(&P, || {
        try_compile(
            "gcc",
            "tests/secure/errors.c",
            "secure/errors",
            &["-Wno-use-after-free", "-pthread"],
        )
    })
}

fn secure_so() -> PathBuf {
    let p = std::env::var_os("HAKOZUNA_SECURE_SO")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/release/libhakozuna_secure.so"));
    assert!(
        p.is_file(),
        "{} not found — run `cargo build --release` first (these tests never skip)",
        p.display()
    );
    p
}

fn secure(mode: &str) -> Command {
    let mut c = Command::new(errors_prog());
    c.arg(mode).env("LD_PRELOAD", secure_so());
    c
}

/// Runs error `mode` under the hardened lane: its valid part passes, then it dies of SIGABRT
/// with `line` on stderr (one line from us, nothing after it from the program).
fn expect_caught(mode: &str, line: &str) {
    let r = run(secure(mode), TIMEOUT);
    let fail = |why: &str, r: &Run| panic!("{mode}: {why}: {}", r.describe());
    if !r.stdout.contains("valid ok") {
        fail("the valid part did not finish", &r);
    }
    if r.stdout.contains("NOT CAUGHT") {
        fail("the error was not caught", &r);
    }
    if r.status.and_then(|s| s.signal()) != Some(libc::SIGABRT) {
        fail("not ended by SIGABRT", &r);
    }
    let ours: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("hakozuna: "))
        .collect();
    if ours.len() != 1 || !ours[0].contains(line) {
        fail(
            &format!("expected one line containing {line:?} on stderr"),
            &r,
        );
    }
}

const DOUBLE: &str = "free(): double free (the block is already free): 0x";
const NOT_OURS: &str = "free(): invalid pointer (not allocated by hakozuna, or already freed): 0x";
const NOT_START: &str = "free(): invalid pointer (not the start of a block): 0x";
const NO_BLOCK: &str = "free(): invalid pointer (no block allocated here): 0x";
const LINK: &str = "corrupted free list";

#[test]
fn valid_part_runs_clean_everywhere() {
    let check = |c: Command| {
        run(c, TIMEOUT)
            .expect_ok()
            .expect_stdout_contains("valid ok");
    };
    check(plain(errors_prog()));
    check(preloaded(errors_prog(), Lane::Scale));
    check(preloaded(errors_prog(), Lane::Fast));
    check(secure("valid"));
    let mut zeroing = secure("valid");
    zeroing.env("HAKOZUNA_ZERO_ON_FREE", "1");
    check(zeroing);
}

#[test]
fn double_free() {
    expect_caught("double_free", DOUBLE);
    expect_caught("double_free_later", DOUBLE);
    expect_caught("double_free_medium", DOUBLE);
    expect_caught("double_free_remote", DOUBLE);
    expect_caught("double_free_large", NOT_OURS);
}

#[test]
fn interior_pointer() {
    expect_caught("interior", NOT_START);
    expect_caught("misaligned", NOT_START);
    expect_caught("interior_multipage", NOT_START);
    expect_caught("interior_medium", NO_BLOCK);
    expect_caught("interior_large", NOT_OURS);
}

#[test]
fn foreign_pointer() {
    expect_caught("stack", NOT_OURS);
    expect_caught("global", NOT_OURS);
    expect_caught(
        "realloc_invalid",
        "realloc(): invalid pointer (not allocated by hakozuna, or already freed): 0x",
    );
}

/// A block of a live run that was never handed out: still in the thread's bin (its link
/// marked it free), or not yet reached by the carve (marked when the run was made).
#[test]
fn never_handed_out() {
    expect_caught("never_handed_out", DOUBLE);
    expect_caught("never_carved", DOUBLE);
}

#[test]
fn free_into_freed_run() {
    expect_caught("freed_run", NO_BLOCK);
}

#[test]
fn list_corruption_after_use_after_free_write() {
    expect_caught("uaf_write", LINK);
    expect_caught("uaf_forge", LINK);
}

#[test]
fn list_corruption_after_overflow() {
    expect_caught("overflow", LINK);
}

#[test]
fn zero_on_free_is_opt_in() {
    let r = run(secure("zero_check"), TIMEOUT);
    r.expect_ok().expect_stdout_contains("not zeroed");
    let mut c = secure("zero_check");
    c.env("HAKOZUNA_ZERO_ON_FREE", "1");
    let r = run(c, TIMEOUT);
    r.expect_ok();
    assert!(r.stdout.lines().any(|l| l == "zeroed"), "{}", r.describe());
}
