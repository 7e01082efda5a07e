//! Running one benchmark child: preload, timeout, output capture and `wait4` rusage.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Clone, Debug, PartialEq)]
pub enum Status {
    Exited(i32),
    Signaled(i32),
    TimedOut,
}

#[derive(Clone, Debug)]
pub struct Outcome {
    pub status: Status,
    pub stdout: String,
    pub stderr: String,
    /// Peak resident set of the child (`ru_maxrss`, KiB).
    pub maxrss_kb: u64,
    /// CPU time of the child, user + system (`ru_utime + ru_stime`), whole process.
    pub cpu_secs: f64,
    /// Minor page faults of the child (`ru_minflt`): pages the kernel had to map in, mostly
    /// fresh memory touched for the first time (or again after a purge).
    pub minflt: u64,
    /// Major page faults of the child (`ru_majflt`), which needed I/O.
    pub majflt: u64,
    pub wall_secs: f64,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.status == Status::Exited(0)
    }

    pub fn describe_failure(&self) -> String {
        let what = match self.status {
            Status::Exited(c) => format!("exit code {c}"),
            Status::Signaled(s) => format!("killed by signal {s}"),
            Status::TimedOut => format!("timed out after {:.0} s", self.wall_secs),
        };
        let tail: Vec<&str> = self.stderr.lines().rev().take(3).collect();
        if tail.is_empty() {
            what
        } else {
            let t: Vec<&str> = tail.into_iter().rev().collect();
            format!("{what}: {}", t.join(" | "))
        }
    }
}

fn reader(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Build the child command: `prefix... exe args...` with `LD_PRELOAD` set to `preload` (or
/// removed for glibc). A prefix (e.g. valgrind) gets the same environment, which is how
/// valgrind passes `LD_PRELOAD` on to its client.
pub fn command(prefix: &[String], exe: &Path, args: &[String], preload: Option<&Path>) -> Command {
    let mut cmd = if let Some((first, rest)) = prefix.split_first() {
        let mut c = Command::new(first);
        c.args(rest).arg(exe);
        c
    } else {
        Command::new(exe)
    };
    cmd.args(args);
    cmd.env_remove("LD_PRELOAD");
    if let Some(lib) = preload {
        cmd.env("LD_PRELOAD", lib);
    }
    cmd
}

fn tv_secs(t: libc::timeval) -> f64 {
    t.tv_sec as f64 + t.tv_usec as f64 * 1e-6
}

/// Run `cmd` to completion or until `timeout`, collecting output and the child's rusage.
pub fn run(mut cmd: Command, timeout: Duration) -> std::io::Result<Outcome> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Own process group, so a timeout kills whatever the child started too.
    cmd.process_group(0);
    let t0 = Instant::now();
    let mut child = cmd.spawn()?;
    let out = reader(child.stdout.take().expect("piped stdout"));
    let err = reader(child.stderr.take().expect("piped stderr"));
    let pid = child.id() as libc::pid_t;

    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain old data; wait4 fills it in.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let mut timed_out = false;
    let mut nap = Duration::from_millis(1);
    loop {
        // SAFETY: waiting on our own child with valid out-pointers.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut ru) };
        if r == pid {
            break;
        }
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if !timed_out && t0.elapsed() >= timeout {
            timed_out = true;
            // SAFETY: signalling our own child's process group; the child is not yet reaped.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
                libc::kill(pid, libc::SIGKILL);
            }
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(20));
    }
    let wall_secs = t0.elapsed().as_secs_f64();
    // The child is reaped; std must not wait for it again (dropping `child` does not).
    drop(child);
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();

    let st = if timed_out {
        Status::TimedOut
    } else if libc::WIFEXITED(status) {
        Status::Exited(libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        Status::Signaled(libc::WTERMSIG(status))
    } else {
        Status::Exited(-1)
    };
    Ok(Outcome {
        status: st,
        stdout,
        stderr,
        maxrss_kb: ru.ru_maxrss.max(0) as u64,
        cpu_secs: tv_secs(ru.ru_utime) + tv_secs(ru.ru_stime),
        minflt: ru.ru_minflt.max(0) as u64,
        majflt: ru.ru_majflt.max(0) as u64,
        wall_secs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_captures_and_times_out() {
        let o = run(
            command(
                &[],
                Path::new("/bin/sh"),
                &["-c".into(), "echo hi; echo err >&2; exit 3".into()],
                None,
            ),
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(o.status, Status::Exited(3));
        assert_eq!(o.stdout, "hi\n");
        assert!(o.describe_failure().contains("exit code 3: err"));
        assert!(o.maxrss_kb > 0);
        assert!(o.minflt > 0);

        let o = run(
            command(
                &[],
                Path::new("/bin/sh"),
                &["-c".into(), "sleep 5".into()],
                None,
            ),
            Duration::from_millis(100),
        )
        .unwrap();
        assert_eq!(o.status, Status::TimedOut);
    }

    #[test]
    fn preload_is_set_or_removed() {
        let c = command(
            &[],
            Path::new("/bin/true"),
            &[],
            Some(Path::new("/x/lib.so")),
        );
        let envs: Vec<_> = c.get_envs().collect();
        assert!(envs
            .iter()
            .any(|(k, v)| *k == "LD_PRELOAD" && v.map(|v| v == "/x/lib.so").unwrap_or(false)));
        let c = command(
            &["valgrind".into(), "-q".into()],
            Path::new("/bin/true"),
            &["a".into()],
            None,
        );
        assert_eq!(c.get_program(), "valgrind");
        let args: Vec<_> = c.get_args().collect();
        assert_eq!(args, ["-q", "/bin/true", "a"]);
        assert!(c.get_envs().any(|(k, v)| k == "LD_PRELOAD" && v.is_none()));
    }
}
