//! Small runs reserved side by side take only pages that are not resident (design.md §7,
//! "Runs side by side"): `tests/capi/reserve_aged.c`, a single-threaded program (reservations
//! are made only while no other thread owns a heap, which a test harness's threads would), run
//! with the scale lane preloaded and `HAKOZUNA_DECAY_MS=0`. A class reserves runs right after
//! pages that decay has just aged (free, still resident), then `malloc_trim` gives the
//! reservation back and purges: those pages must be purged. Before the fix, the reservation
//! took aged pages (only dirty ones were refused), cleared their aged bit, and gave them back
//! neither dirty nor aged, so no purge ever saw them (on main: all three resident).
//!
//! Requires `cargo build --release` first (`target/release/libhakozuna.so`), as
//! `tests/preload.rs` does.

mod harness;

use harness::{compile_c, preloaded, run, Lane};
use std::time::Duration;

#[test]
fn reserved_pages_given_back_are_purged() {
    let exe = compile_c(
        "tests/capi/reserve_aged.c",
        "reserve_aged/reserve_aged",
        &["-Werror", "-ldl"],
    );
    let mut cmd = preloaded(&exe, Lane::Scale);
    cmd.env("HAKOZUNA_DECAY_MS", "0");
    let r = run(cmd, Duration::from_secs(60));
    r.expect_ok()
        .expect_stdout_contains("page 3 after B's last run: purged");
}
