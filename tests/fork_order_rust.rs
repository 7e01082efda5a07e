//! Fork-handler ordering for a Rust program whose global allocator is hakozuna (issue 16,
//! item 1; the Rust form of `tests/fork/before_malloc.c`).
//!
//! This test binary's own constructor (a plain `.init_array` entry, as a C
//! `__attribute__((constructor))` or the `ctor` crate makes) registers a prepare handler and a
//! child handler that allocate through the global allocator, before Rust's runtime has made
//! its first allocation. The crate's constructor — an `.init_array` entry in the rlib — must
//! run first and register the allocator's handlers, so that its prepare runs after ours and
//! its child handler before ours. Before the fix (handlers registered on the first
//! allocation, in `lang_start`) our prepare's allocation waited forever for a lock the
//! allocator's prepare held: the first fork hung.
//!
//! The scenario runs in a child process (this binary re-run with `FORK_ORDER_CHILD` set, which
//! is what makes the constructor register) killed after 20 s.

mod harness;

use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

#[global_allocator]
static A: hakozuna::Hakozuna = hakozuna::Hakozuna;

const CHILD_ENV: &str = "FORK_ORDER_CHILD";
const ROUNDS: usize = 10;

static REGISTERED: AtomicUsize = AtomicUsize::new(0);
static PREPARED: AtomicUsize = AtomicUsize::new(0);
static CHILD_HANDLER_RAN: AtomicUsize = AtomicUsize::new(0);

#[used]
#[link_section = ".init_array"]
static EARLY: extern "C" fn() = early;

extern "C" fn early() {
    // SAFETY: a NUL-terminated name; the environment is not being modified during start-up.
    if unsafe { libc::getenv(c"FORK_ORDER_CHILD".as_ptr()) }.is_null() {
        return;
    }
    // SAFETY: the handlers are `extern "C"` functions callable at fork.
    if unsafe { libc::pthread_atfork(Some(prepare), None, Some(child_handler)) } == 0 {
        REGISTERED.store(1, SeqCst);
    }
}

/// Allocates in every tier (small, medium, large) through the global allocator; true if
/// every block held its contents.
fn churn(seed: usize) -> bool {
    let mut ok = true;
    for (i, n) in [8usize, 100, 3000, 20000, 70000, 300000, 1 << 20]
        .into_iter()
        .enumerate()
    {
        let v = black_box(vec![(seed + i) as u8; n + seed % 64]);
        let b = black_box(Box::new([i as u64; 4]));
        ok &= v[0] == (seed + i) as u8 && v[v.len() - 1] == (seed + i) as u8 && b[3] == i as u64;
    }
    ok
}

extern "C" fn prepare() {
    if churn(1) {
        PREPARED.fetch_add(1, SeqCst);
    }
}

extern "C" fn child_handler() {
    if churn(2) {
        CHILD_HANDLER_RAN.store(1, SeqCst);
    }
}

/// The forked child: allocates, also from a new thread; returns its exit code.
fn in_child(keep: &[Vec<u8>], round: usize) -> i32 {
    if CHILD_HANDLER_RAN.load(SeqCst) != 1 {
        return 6;
    }
    if keep.iter().any(|v| v.iter().any(|&x| x != v.len() as u8)) {
        return 7;
    }
    if !churn(100 + round) {
        return 2;
    }
    match std::thread::spawn(move || churn(200 + round)).join() {
        Ok(true) => 0,
        _ => 3,
    }
}

/// Waits up to `secs` for `pid`; its wait status, or None after killing it.
fn wait_child(pid: libc::pid_t, secs: u64) -> Option<i32> {
    let start = Instant::now();
    loop {
        let mut st = 0;
        // SAFETY: waitpid on our own child with a valid status pointer.
        let r = unsafe { libc::waitpid(pid, &mut st, libc::WNOHANG) };
        if r == pid {
            return Some(st);
        }
        assert!(r == 0, "waitpid: {}", std::io::Error::last_os_error());
        if start.elapsed() > Duration::from_secs(secs) {
            // SAFETY: kill and reap our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut st, 0);
            }
            return None;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The scenario, run only in the child process (`cargo test` lists it as ignored).
#[test]
#[ignore = "run by registered_before_first_allocation in a child process"]
fn fork_child() {
    assert!(
        std::env::var_os(CHILD_ENV).is_some(),
        "run by registered_before_first_allocation only"
    );
    assert_eq!(
        REGISTERED.load(SeqCst),
        1,
        "the test's constructor did not register"
    );
    let keep: Vec<Vec<u8>> = (1..=40).map(|i| vec![(i * 50) as u8; i * 50]).collect();
    for round in 0..ROUNDS {
        // SAFETY: the child only allocates, runs a thread and leaves with _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            let code = in_child(&keep, round);
            // SAFETY: leaves the child without running the parent's exit handlers.
            unsafe { libc::_exit(code) };
        }
        let st = wait_child(pid, 10).unwrap_or_else(|| panic!("fork {round}: child hung"));
        assert!(
            libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0,
            "fork {round}: child status {st:#x}"
        );
    }
    assert_eq!(PREPARED.load(SeqCst), ROUNDS, "prepare handler runs");
    println!("RUST FORK ORDER OK");
}

#[test]
fn registered_before_first_allocation() {
    let mut c = std::process::Command::new(std::env::current_exe().unwrap());
    c.args([
        "--ignored",
        "--exact",
        "fork_child",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD_ENV, "1");
    harness::run(c, Duration::from_secs(20))
        .expect_ok()
        .expect_stdout_contains("RUST FORK ORDER OK");
}
