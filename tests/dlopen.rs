//! Loading the allocator after start-up (issue 16, item 2): with `dlopen`, not `LD_PRELOAD`.
//! Before the thread cache moved out of TLS both failed with "cannot allocate memory in static
//! TLS block": 7 KiB (scale) and 32 KiB (fast) of initial-exec TLS against glibc's 512 bytes of
//! spare static TLS for libraries loaded later.
//!
//! - `dlopen_{scale,fast}`: tests/dlopen/dlopen_threads.c, run on plain glibc (no preload),
//!   `dlopen`s the library and allocates through its `dlsym`'d malloc/calloc/realloc/free
//!   from threads that existed before the load, the main thread and threads created after,
//!   with cross-thread frees, thread exits, and another key's destructor that allocates after
//!   the library's ran; then `dlclose` and more threads.
//! - `python_cdylib_{scale,fast}`: tests/pyext, a cdylib with `#[global_allocator] Hakozuna`
//!   (the way a Python extension module in Rust uses it), built here with
//!   `cargo build --release` into target/pyext/<lane> and loaded by `python3` with
//!   `ctypes.CDLL` (tests/pyext/load.py), which calls it from six Python threads at once, each
//!   call spawning Rust threads.
//!
//! Requires `cargo build --release` first for the .so files (`HAKOZUNA_SO` and
//! `HAKOZUNA_FAST_SO` select other libraries, e.g. an older build to see these fail), gcc and
//! python3.

mod harness;

use harness::{compile_c, plain, root, run, Lane};
use std::time::Duration;

fn dlopen_threads(lane: Lane) {
    let exe = compile_c(
        "tests/dlopen/dlopen_threads.c",
        &format!("dlopen/dlopen_threads.{lane:?}"),
        &["-pthread", "-ldl"],
    );

    // Plain: the library is not preloaded, the program loads it.
    let mut p = plain(&exe);
    p.arg(lane.so());
    run(p, Duration::from_secs(60))
        .expect_ok()
        .expect_stdout_contains("dlopen ok");
}

#[test]
fn dlopen_scale() {
    dlopen_threads(Lane::Scale);
}

#[test]
fn dlopen_fast() {
    dlopen_threads(Lane::Fast);
}

fn python_cdylib(feature: &str) {
    let target = root().join("target/pyext").join(feature);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let mut b = plain(cargo);
    b.args([
        "build",
        "--release",
        "--locked",
        "--no-default-features",
        "--features",
    ])
    .arg(feature)
    .arg("--manifest-path")
    .arg(root().join("tests/pyext/Cargo.toml"))
    .arg("--target-dir")
    .arg(&target)
    .env_remove("CARGO_TARGET_DIR")
    .env_remove("CARGO_BUILD_TARGET_DIR")
    .env_remove("RUSTFLAGS")
    .env_remove("CARGO_ENCODED_RUSTFLAGS");
    run(b, Duration::from_secs(600)).expect_ok();
    let so = target.join("release/libhakozuna_pyext.so");
    assert!(so.is_file(), "{} was not built", so.display());

    let mut py = plain("python3");
    py.arg(root().join("tests/pyext/load.py")).arg(&so);
    run(py, Duration::from_secs(120))
        .expect_ok()
        .expect_stdout_contains("pyext ok");
}

#[test]
fn python_cdylib_scale() {
    python_cdylib("scale");
}

#[test]
fn python_cdylib_fast() {
    python_cdylib("fast");
}
