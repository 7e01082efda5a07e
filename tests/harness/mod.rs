//! Shared by the integration tests that run programs under the preloaded libraries
//! (`preload.rs`, `fork_order.rs`): where the libraries and scratch files are, building C test
//! programs, and running a command with a deadline; and the calling thread's page faults, for tests that count them
//! in-process (`carve_page.rs`, `resident_first.rs`).
//!
//! `HAKOZUNA_SO=/path/lib.so` replaces the scale-lane library (and the fast-lane one too
//! unless `HAKOZUNA_FAST_SO` is set); `HAKOZUNA_FAST_SO=/path/lib.so` replaces the fast-lane
//! library.

#![allow(dead_code)]

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// locations

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[derive(Clone, Copy, Debug)]
pub enum Lane {
    Scale,
    Fast,
}

impl Lane {
    pub fn so(self) -> PathBuf {
        let env_path = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let (path, overridden) = match self {
            Lane::Scale => match env_path("HAKOZUNA_SO") {
                Some(p) => (p, true),
                None => (root().join("target/release/libhakozuna.so"), false),
            },
            Lane::Fast => match env_path("HAKOZUNA_FAST_SO").or_else(|| env_path("HAKOZUNA_SO")) {
                Some(p) => (p, true),
                None => (root().join("target/release/libhakozuna_fast.so"), false),
            },
        };
        if !path.is_file() {
            if overridden {
                panic!(
                    "{self:?} lane: override library {} does not exist",
                    path.display()
                );
            }
            panic!(
                "{self:?} lane: {} not found — run `cargo build --release` first \
                 (these tests never skip)",
                path.display()
            );
        }
        path.canonicalize().unwrap_or(path)
    }
}

/// Per-process scratch directory under the system temp dir; stale ones from earlier runs
/// (whose process is gone) are removed.
pub fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let tmp = std::env::temp_dir();
        const PREFIX: &str = "hakozuna-preload-";
        if let Ok(rd) = std::fs::read_dir(&tmp) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(rest) = name.strip_prefix(PREFIX) {
                    let pid = rest.split('-').next().unwrap_or("");
                    if !pid.is_empty() && !Path::new("/proc").join(pid).exists() {
                        let _ = std::fs::remove_dir_all(e.path());
                    }
                }
            }
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = tmp.join(format!("{PREFIX}{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        dir
    })
}

/// A fresh, empty directory for one test.
pub fn test_dir(name: &str) -> PathBuf {
    let d = scratch().join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create test dir");
    d
}

// ---------------------------------------------------------------------------------------------
// running commands with a deadline

pub struct Run {
    pub what: String,
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
    pub elapsed: Duration,
}

impl Run {
    pub fn ok(&self) -> bool {
        !self.timed_out && self.status.map(|s| s.success()).unwrap_or(false)
    }

    pub fn describe(&self) -> String {
        fn tail(s: &str, n: usize) -> &str {
            if s.len() <= n {
                return s;
            }
            let mut i = s.len() - n;
            while !s.is_char_boundary(i) {
                i += 1;
            }
            &s[i..]
        }
        format!(
            "{}\n  status: {}\n  elapsed: {:.1}s\n--- stdout (tail) ---\n{}\n--- stderr (tail) ---\n{}",
            self.what,
            if self.timed_out {
                "TIMED OUT (killed)".to_string()
            } else {
                format!("{:?}", self.status)
            },
            self.elapsed.as_secs_f64(),
            tail(&self.stdout, 6000),
            tail(&self.stderr, 6000)
        )
    }

    /// Panics unless the command exited 0 within its deadline.
    pub fn expect_ok(&self) -> &Self {
        if !self.ok() {
            panic!("command failed: {}", self.describe());
        }
        self
    }

    pub fn expect_stdout_contains(&self, needle: &str) -> &Self {
        if !self.stdout.contains(needle) {
            panic!("expected {needle:?} in stdout: {}", self.describe());
        }
        self
    }
}

/// Runs `cmd` (stdin closed, output captured) in its own process group; on timeout the whole
/// group is killed. Under a preload, a loader message saying the library was ignored is an
/// error (the program would otherwise silently run on glibc).
pub fn run(mut cmd: Command, timeout: Duration) -> Run {
    let what = format!("{cmd:?}");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // Interrupts at their default in the child, whatever the launcher left: a test run
    // started in the background without job control ignores SIGINT and SIGQUIT, and CPython
    // started so never raises KeyboardInterrupt (test_threading's interrupt_main tests).
    // SAFETY: between fork and exec the closure only calls signal(2), which is
    // async-signal-safe, and allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            libc::signal(libc::SIGQUIT, libc::SIG_DFL);
            Ok(())
        });
    }
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {what}: {e}"));
    let pid = child.id() as i32;
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) => {}
            Err(_) => break None,
        }
        if start.elapsed() > timeout {
            timed_out = true;
            // SAFETY: plain kill(2) on the process group we created for this child.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
            break child.wait().ok();
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    // Descendants that outlive the child (and keep the pipes open) are killed too.
    // SAFETY: as above; the group id is our child's pid, which we have not reaped yet only
    // if it timed out; a stale group simply yields ESRCH.
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
    }
    let stdout = String::from_utf8_lossy(&t_out.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&t_err.join().unwrap_or_default()).into_owned();
    let r = Run {
        what,
        status,
        stdout,
        stderr,
        timed_out,
        elapsed: start.elapsed(),
    };
    if r.stderr.contains("from LD_PRELOAD cannot be preloaded") {
        panic!(
            "the dynamic loader ignored the preload library: {}",
            r.describe()
        );
    }
    eprintln!("[{:.1}s] {}", r.elapsed.as_secs_f64(), r.what);
    r
}

/// A command that runs on plain glibc (no inherited preload).
pub fn plain(prog: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new(prog);
    c.env_remove("LD_PRELOAD").env_remove("HZ_EXPECT_PRELOAD");
    c
}

/// Builds a test program from C or C++ source: every test builds its programs this one way,
/// so the rules live in one place. The compiler runs on plain glibc (never under a library
/// being tested), at `-O1 -Wall`, with a deadline, writing `out` (a path under [`scratch`];
/// its folder is made). `src` is relative to the checkout; `flags` follow the source, so
/// libraries (`-ldl`) link after it. A failed build is an `Err` with the compiler's output.
pub fn try_compile(
    compiler: &str,
    src: &str,
    out: &str,
    flags: &[&str],
) -> Result<PathBuf, String> {
    let exe = scratch().join(out);
    if let Some(dir) = exe.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    let mut c = plain(compiler);
    c.args(["-O1", "-Wall", "-o"])
        .arg(&exe)
        .arg(root().join(src))
        .args(flags);
    let r = run(c, Duration::from_secs(240));
    if !r.ok() {
        return Err(format!("compiling {src}: {}", r.describe()));
    }
    Ok(exe)
}

/// What several tests of a binary share (programs built from C, an interpreter found, a check
/// passed), made once: every caller gets the first attempt's result, and when it failed every
/// caller fails with its message (a panic inside `get_or_init` would leave the cell empty and
/// try again for each test).
pub fn once<T>(
    cell: &'static OnceLock<Result<T, String>>,
    make: impl FnOnce() -> Result<T, String>,
) -> &'static T {
    match cell.get_or_init(make) {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    }
}

/// [`try_compile`] with `gcc`; panics with gcc's output when the build fails.
pub fn compile_c(src: &str, out: &str, flags: &[&str]) -> PathBuf {
    try_compile("gcc", src, out, flags).unwrap_or_else(|e| panic!("{e}"))
}

/// A command that runs with the lane's library preloaded.
pub fn preloaded(prog: impl AsRef<std::ffi::OsStr>, lane: Lane) -> Command {
    let mut c = Command::new(prog);
    c.env("LD_PRELOAD", lane.so());
    c
}

/// Minor page faults of the calling thread so far.
pub fn thread_faults() -> i64 {
    // SAFETY: `ru` is a valid out-parameter; RUSAGE_THREAD reads the calling thread's usage.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::getrusage(libc::RUSAGE_THREAD, &mut ru), 0);
        ru.ru_minflt
    }
}
