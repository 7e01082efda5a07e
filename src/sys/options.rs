//! The run-time options (`HAKOZUNA_*` environment variables, design.md §12), read once at
//! start-up by [`init`] and then plain loads. A malformed value gets a one-line warning and the
//! default.

use crate::config::{ARENA_GB_DEFAULT, DECAY_MS_DEFAULT, SECURE, STATS};
use crate::sys::{diag, os};
use core::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};

static ARENA_GB: AtomicU64 = AtomicU64::new(ARENA_GB_DEFAULT as u64);
static DECAY_MS: AtomicU64 = AtomicU64::new(DECAY_MS_DEFAULT);
static STATS_REPORT: AtomicU8 = AtomicU8::new(REPORT_NONE);
static ZERO_ON_FREE: AtomicU8 = AtomicU8::new(0);
static BACKGROUND: AtomicU8 = AtomicU8::new(0);
/// Default and largest `HAKOZUNA_MAX_HEAPS`: every id a page tag can carry but one, which is
/// kept for the shared fallback heap (`page_tag::MAX_OWNER` + 1 ids in all).
pub const MAX_HEAPS_DEFAULT: u64 = 65_534;
static MAX_HEAPS_OPT: AtomicU64 = AtomicU64::new(MAX_HEAPS_DEFAULT);

/// `HAKOZUNA_STATS` unset or `0`: no report at exit.
pub const REPORT_NONE: u8 = 0;
/// `HAKOZUNA_STATS=1`: the text summary at exit.
pub const REPORT_TEXT: u8 = 1;
/// `HAKOZUNA_STATS=json`: the JSON document at exit.
pub const REPORT_JSON: u8 = 2;

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
    MAX_HEAPS_OPT.store(
        diag::env_u64(
            b"HAKOZUNA_MAX_HEAPS\0",
            MAX_HEAPS_DEFAULT,
            1,
            MAX_HEAPS_DEFAULT,
        ),
        Relaxed,
    );
    let report = match os::getenv(b"HAKOZUNA_STATS\0") {
        None | Some(b"0") | Some(b"") => REPORT_NONE,
        Some(b"1") => REPORT_TEXT,
        Some(b"json") => REPORT_JSON,
        Some(raw) => {
            diag::Line::new()
                .str("hakozuna: ignoring malformed HAKOZUNA_STATS='")
                .bytes(&raw[..raw.len().min(64)])
                .str("' (expected 0, 1 or json), using 0")
                .emit();
            REPORT_NONE
        }
    };
    if report != REPORT_NONE && !STATS {
        diag::Line::new()
            .str("hakozuna: HAKOZUNA_STATS is set but this build has no `stats` feature: ")
            .str("the report at exit has the memory figures and no event counts")
            .emit();
    }
    STATS_REPORT.store(report, Relaxed);
    if SECURE {
        let zero = diag::env_u64(b"HAKOZUNA_ZERO_ON_FREE\0", 0, 0, 1);
        ZERO_ON_FREE.store(zero as u8, Relaxed);
    }
    let background = diag::env_u64(b"HAKOZUNA_BACKGROUND\0", 0, 0, 1) as u8;
    BACKGROUND.store(background, Relaxed);
}

/// `HAKOZUNA_ARENA_GB`: the arena reservation to try first, in GiB.
pub fn arena_gb() -> usize {
    ARENA_GB.load(Relaxed) as usize
}

/// `HAKOZUNA_MAX_HEAPS`: how many heaps threads may own at once; threads beyond it share the
/// fallback heap (`front::fallback`).
pub fn max_heaps() -> u32 {
    MAX_HEAPS_OPT.load(Relaxed) as u32
}

/// `HAKOZUNA_DECAY_MS`: how long free memory stays cached before decay gives it back.
pub fn decay_ms() -> u64 {
    DECAY_MS.load(Relaxed)
}

/// `HAKOZUNA_STATS`: which report to print at exit ([`REPORT_NONE`], [`REPORT_TEXT`] or
/// [`REPORT_JSON`]).
pub fn stats_report() -> u8 {
    STATS_REPORT.load(Relaxed)
}

/// `HAKOZUNA_ZERO_ON_FREE=1` (hardened lane only): freed arena blocks are zeroed.
pub fn zero_on_free() -> bool {
    ZERO_ON_FREE.load(Relaxed) != 0
}

/// `HAKOZUNA_BACKGROUND=1`: run decay on a background thread too (`front::background`).
pub fn background() -> bool {
    BACKGROUND.load(Relaxed) == 1
}
