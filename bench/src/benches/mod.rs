//! The benchmark programs. Each has a `run(args)` that parses its positional arguments, runs,
//! prints a human summary and one `RESULT ...` line on stdout, and returns the report.

pub mod alloc_free_loop;
pub mod burst_idle;
pub mod cache_scratch;
pub mod cross_churn;
pub mod large_blocks;
pub mod larson;
pub mod leak_churn;
pub mod mt_remote;
pub mod random_mixed;
pub mod thread_churn;
pub mod tree_build;
pub mod xmalloc_test;

use crate::common::Report;

/// A benchmark program: name (as the binary is called), usage text, entry point.
pub struct Bench {
    pub name: &'static str,
    pub usage: &'static str,
    pub run: fn(&[String]) -> Result<Report, String>,
}

/// Every benchmark, by binary name.
pub const ALL: &[Bench] = &[
    Bench {
        name: "random-mixed",
        usage: random_mixed::USAGE,
        run: random_mixed::run,
    },
    Bench {
        name: "mt-remote",
        usage: mt_remote::USAGE,
        run: mt_remote::run,
    },
    Bench {
        name: "larson",
        usage: larson::USAGE,
        run: larson::run,
    },
    Bench {
        name: "xmalloc-test",
        usage: xmalloc_test::USAGE,
        run: xmalloc_test::run,
    },
    Bench {
        name: "cache-scratch",
        usage: cache_scratch::USAGE,
        run: cache_scratch::run,
    },
    Bench {
        name: "burst-idle",
        usage: burst_idle::USAGE,
        run: burst_idle::run,
    },
    Bench {
        name: "thread-churn",
        usage: thread_churn::USAGE,
        run: thread_churn::run,
    },
    Bench {
        name: "large-blocks",
        usage: large_blocks::USAGE,
        run: large_blocks::run,
    },
    Bench {
        name: "alloc-free-loop",
        usage: alloc_free_loop::USAGE,
        run: alloc_free_loop::run,
    },
    Bench {
        name: "tree-build",
        usage: tree_build::USAGE,
        run: tree_build::run,
    },
    Bench {
        name: "cross-churn",
        usage: cross_churn::USAGE,
        run: cross_churn::run,
    },
    Bench {
        name: "leak-churn",
        usage: leak_churn::USAGE,
        run: leak_churn::run,
    },
];

pub fn find(name: &str) -> Option<&'static Bench> {
    ALL.iter().find(|b| b.name == name)
}
