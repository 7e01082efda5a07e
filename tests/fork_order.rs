//! Fork-handler ordering under both preloaded libraries (issue 16, item 1).
//!
//! `fork` runs `pthread_atfork` prepare handlers in reverse registration order and
//! parent/child handlers in registration order. The allocator's handlers take every
//! allocator lock in prepare and release them in parent/child, so they must be registered
//! before any handler that allocates: from the library's constructor, not on its first
//! `malloc`. Each program under `tests/fork/` (see the comment at its top) registers handlers
//! that allocate in every tier at a different moment, forks, and checks that the parent and
//! every child can allocate (also from new threads); each runs under plain glibc (which must
//! pass: the programs encode only what POSIX and glibc promise), then under each lane.
//!
//! - `before_malloc.c`: registered before the first malloc (hung before the fix);
//! - `after_malloc.c`: registered after it, and a second handler between forks;
//! - `other_thread.c`: a child-only handler registered before the first malloc (every child
//!   hung before the fix), then handlers registered from another thread while threads
//!   allocate and the main thread forks;
//! - `prepare_churn.c`: a prepare handler that allocates and frees heavily (also other
//!   threads' blocks) while threads allocate and the main thread forks (hung before the fix);
//! - `spawn.c`: vfork + exec and posix_spawn while threads allocate; each exec'd copy runs the
//!   before-the-first-malloc case in a fresh image (hung before the fix);
//! - `many_handlers.c`: the allocator's own registration makes glibc allocate while the
//!   allocator starts up (re-entry), then the before-the-first-malloc case.
//!
//! Requires `cargo build --release` first (see `preload.rs`; `HAKOZUNA_SO` and
//! `HAKOZUNA_FAST_SO` select other libraries, e.g. an older build to see these fail). A
//! program that does not finish within 20 s is killed with its children and fails.

mod harness;

use harness::{once, plain, preloaded, run, scratch, try_compile, Lane};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(20);

const PROGRAMS: [&str; 6] = [
    "before_malloc",
    "after_malloc",
    "other_thread",
    "prepare_churn",
    "spawn",
    "many_handlers",
];

/// Compiles every program once (with `cc`); returns the directory holding them.
fn built() -> &'static PathBuf {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    once(&DIR, || {
        let dir = scratch().join("fork");
        let lib_dir = format!("-L{}", dir.display());
        let rpath = format!("-Wl,-rpath,{}", dir.display());
        try_compile(
            "cc",
            "tests/fork/many_handlers_lib.c",
            "fork/libmany_handlers.so",
            &["-pthread", "-shared", "-fPIC"],
        )?;
        for name in PROGRAMS {
            let mut flags = vec!["-pthread"];
            if name == "many_handlers" {
                flags.extend([lib_dir.as_str(), "-lmany_handlers", &rpath]);
            }
            try_compile(
                "cc",
                &format!("tests/fork/{name}.c"),
                &format!("fork/{name}"),
                &flags,
            )?;
        }
        Ok(dir)
    })
}

/// Runs `name` under `lane` (None: plain glibc) and checks it exited 0 in time, saying so.
fn check(name: &str, lane: Option<Lane>) {
    let exe = built().join(name);
    let cmd = match lane {
        Some(l) => preloaded(&exe, l),
        None => plain(&exe),
    };
    let r = run(cmd, TIMEOUT);
    r.expect_ok()
        .expect_stdout_contains(&format!("{} OK", name.to_uppercase()));
}

macro_rules! fork_tests {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use super::*;

                #[test]
                fn glibc() {
                    check(stringify!($name), None);
                }

                #[test]
                fn scale() {
                    check(stringify!($name), Some(Lane::Scale));
                }

                #[test]
                fn fast() {
                    check(stringify!($name), Some(Lane::Fast));
                }
            }
        )*
        #[test]
        fn every_program_is_tested() {
            assert_eq!(PROGRAMS, [$(stringify!($name)),*]);
        }
    };
}

fork_tests!(
    before_malloc,
    after_malloc,
    other_thread,
    prepare_churn,
    spawn,
    many_handlers,
);
