//! The run-time options (`HAKOZUNA_*` environment variables, design.md §12), read once at
//! start-up by [`init`] and then plain loads. A malformed value gets a one-line warning and the
//! default.

use crate::config::{ARENA_GB_DEFAULT, DECAY_MS_DEFAULT, STATS};
use crate::sys::diag;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

static ARENA_GB: AtomicU64 = AtomicU64::new(ARENA_GB_DEFAULT as u64);
static DECAY_MS: AtomicU64 = AtomicU64::new(DECAY_MS_DEFAULT);
static STATS_REPORT: AtomicBool = AtomicBool::new(false);

/// Reads every option from the environment. Called once, by start-up, before any option is
/// used.
pub fn init() {
    ARENA_GB.store(
        diag::env_u64(b"HAKOZUNA_ARENA_GB\0", ARENA_GB_DEFAULT as u64, 0, 1 << 16),
        Relaxed,
    );
    DECAY_MS.store(
        diag::env_u64(b"HAKOZUNA_DECAY_MS\0", DECAY_MS_DEFAULT, 0, 1 << 40),
        Relaxed,
    );
    let stats = diag::env_flag(b"HAKOZUNA_STATS\0");
    if stats && !STATS {
        diag::Line::new()
            .str("hakozuna: HAKOZUNA_STATS=1 but this build has no `stats` feature")
            .emit();
    }
    STATS_REPORT.store(stats && STATS, Relaxed);
}

/// `HAKOZUNA_ARENA_GB`: the arena reservation to try first, in GiB.
pub fn arena_gb() -> usize {
    ARENA_GB.load(Relaxed) as usize
}

/// `HAKOZUNA_DECAY_MS`: how long free memory stays cached before decay gives it back.
pub fn decay_ms() -> u64 {
    DECAY_MS.load(Relaxed)
}

/// `HAKOZUNA_STATS=1` in a build with the `stats` feature: print the summary at exit.
pub fn stats_report() -> bool {
    STATS_REPORT.load(Relaxed)
}
