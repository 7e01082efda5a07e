//! `compare --syscalls`: count the memory-returning system calls an allocator makes.
//!
//! A program cannot see its allocator's system calls portably from inside, so the runner
//! runs each (row, allocator) once more under `strace -f -c -e trace=madvise,munmap` (with
//! `--seccomp-bpf` where strace supports it, so only those calls stop the tracee) and reads
//! the call counts of strace's summary. That run is extra: it is not timed and its RESULT is
//! used only to check the preload and to know how many threads the row created. The
//! allocator is preloaded into the traced program only (`strace -E LD_PRELOAD=...`), not
//! into strace itself.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The system calls counted.
pub const TRACED: [&str; 2] = ["madvise", "munmap"];

/// What the traced run of one (row, allocator) found.
#[derive(Clone, Debug, PartialEq)]
pub struct Traced {
    /// Calls per system call name (those of [`TRACED`] that happened).
    pub counts: BTreeMap<String, u64>,
    /// `threads_created` of the traced run's RESULT line (thread-churn, larson), if any.
    pub threads_created: Option<u64>,
    /// The strace summary file.
    pub file: PathBuf,
}

impl Traced {
    /// Calls of `name` (0 when strace listed none).
    pub fn count(&self, name: &str) -> u64 {
        self.counts.get(name).copied().unwrap_or(0)
    }
}

/// A working strace, and whether it takes `--seccomp-bpf`.
#[derive(Clone, Debug, PartialEq)]
pub struct Tracer {
    pub seccomp_bpf: bool,
}

fn probe(seccomp: bool) -> bool {
    let mut c = Command::new("strace");
    c.arg("-f");
    if seccomp {
        c.arg("--seccomp-bpf");
    }
    c.args([
        "-c",
        "-o",
        "/dev/null",
        "-e",
        "trace=madvise,munmap",
        "true",
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .status()
    .map(|s| s.success())
    .unwrap_or(false)
}

impl Tracer {
    /// Find a strace that can trace a child here (it may be missing, or ptrace may be
    /// forbidden, e.g. in a container without CAP_SYS_PTRACE).
    pub fn detect() -> Result<Tracer, String> {
        let present = Command::new("strace")
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !present {
            return Err(
                "strace not found (apt-get install -y strace, or --install as root)".into(),
            );
        }
        if probe(true) {
            return Ok(Tracer { seccomp_bpf: true });
        }
        if probe(false) {
            return Ok(Tracer { seccomp_bpf: false });
        }
        Err("strace is installed but cannot trace a child here (ptrace not permitted?)".into())
    }

    /// The command prefix that runs a program under strace, writing the summary to `out`
    /// and preloading `preload` into the traced program only.
    pub fn prefix(&self, out: &Path, preload: Option<&Path>) -> Vec<String> {
        let mut v = vec!["strace".to_string(), "-f".to_string()];
        if self.seccomp_bpf {
            v.push("--seccomp-bpf".into());
        }
        v.extend([
            "-c".to_string(),
            "-o".to_string(),
            out.display().to_string(),
            "-e".to_string(),
            format!("trace={}", TRACED.join(",")),
        ]);
        if let Some(lib) = preload {
            v.push("-E".into());
            v.push(format!("LD_PRELOAD={}", lib.display()));
        }
        v
    }
}

/// Call counts of each system call in a `strace -c` summary. The table's columns are
/// `% time, seconds, usecs/call, calls, [errors,] syscall`; a call that never happened has
/// no line (and counts 0 for the caller).
pub fn parse_summary(text: &str) -> Result<BTreeMap<String, u64>, String> {
    let mut header = false;
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let t: Vec<&str> = line.split_whitespace().collect();
        if t.first() == Some(&"%") && t.contains(&"calls") {
            header = true;
            continue;
        }
        if !header || t.len() < 5 || t[0].starts_with('-') {
            continue;
        }
        let name = *t.last().unwrap();
        if name == "total" {
            continue;
        }
        let calls: u64 = t[3]
            .parse()
            .map_err(|_| format!("strace summary: no call count in {line:?}"))?;
        out.insert(name.to_string(), calls);
    }
    if !header {
        return Err("no strace -c summary table in the output".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_strace_summaries() {
        let text = "\
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 93.44    0.005680           5       983         2 madvise
  6.56    0.000399           8        48           munmap
------ ----------- ----------- --------- --------- ----------------
100.00    0.006079           5      1031         2 total
";
        let m = parse_summary(text).unwrap();
        assert_eq!(m.get("madvise"), Some(&983));
        assert_eq!(m.get("munmap"), Some(&48));
        assert_eq!(m.len(), 2);
        // Nothing traced happened: a header and a zero total only.
        let empty = "% time     seconds  usecs/call     calls    errors syscall\n\
------ ----------- ----------- --------- --------- ----------------\n\
100.00    0.000000           0         0           total\n";
        assert!(parse_summary(empty).unwrap().is_empty());
        assert!(parse_summary("strace: exec failed").is_err());
    }

    #[test]
    fn prefix_preloads_the_tracee_only() {
        let t = Tracer { seccomp_bpf: true };
        let v = t.prefix(Path::new("/o/x.txt"), Some(Path::new("/l/lib.so")));
        assert_eq!(
            v,
            [
                "strace",
                "-f",
                "--seccomp-bpf",
                "-c",
                "-o",
                "/o/x.txt",
                "-e",
                "trace=madvise,munmap",
                "-E",
                "LD_PRELOAD=/l/lib.so"
            ]
        );
        let v = Tracer { seccomp_bpf: false }.prefix(Path::new("/o/y"), None);
        assert!(!v.iter().any(|a| a.contains("seccomp") || a == "-E"));
    }
}
