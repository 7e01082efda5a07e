//! Small runs side by side (design.md §7, "Runs side by side"): `tests/capi/side_by_side.c`, a
//! single-threaded program (reservations are made only while no other thread owns a heap, which
//! a test harness's threads would), run with the scale lane preloaded. It carves three small
//! classes in turn and checks that nearly every page crossing of a class goes to the next page
//! (on main before the change: 79 of 249).
//!
//! Requires `cargo build --release` first (`target/release/libhakozuna.so`), as
//! `tests/preload.rs` does.

mod harness;

use harness::{compile_c, preloaded, run, Lane};
use std::time::Duration;

#[test]
fn a_class_runs_on_across_its_runs() {
    let exe = compile_c(
        "tests/capi/side_by_side.c",
        "side_by_side/side_by_side",
        &[],
    );
    let r = run(preloaded(&exe, Lane::Scale), Duration::from_secs(60));
    r.expect_ok().expect_stdout_contains("class 1000:");
}
