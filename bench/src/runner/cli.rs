//! Command-line parsing of the runner (hand-written to keep compile time small).

use std::path::PathBuf;

pub const USAGE: &str = "\
hakozuna-bench: compare allocators on benchmark matrices (docs/benchmarks.md)

USAGE:
  hakozuna-bench compare [OPTIONS]        run a matrix, write markdown/JSON/SVG
  hakozuna-bench compare --callgrind ROW  instructions per op of one row under callgrind
  hakozuna-bench list [--matrix NAME] [--scale F]   show matrices and rows
  hakozuna-bench bench PROGRAM ARGS...    run one benchmark program in this process
                                          (random-mixed, mt-remote, larson, xmalloc-test, cache-scratch,
                                          burst-idle, thread-churn, large-blocks, alloc-free-loop,
                                          tree-build, cross-churn, leak-churn)

COMPARE OPTIONS:
  --matrix NAME        quick (default), seed, memory, field, smoke
  --runs N             runs per (row, allocator); default 3 (5 for seed)
  --scale F            multiply iteration counts by F (default 1; callgrind default 0.2)
  --rows A,B,...       only these rows (exact names, see `list`)
  --ring N             mt-remote rows: the benchmark's ring capacity (default 65536); a
                       ring of more slots than ITERS cannot overflow (no fallbacks)
  --idle SECS          burst-idle rows: seconds to idle before reading RSS (default 12;
                       0 allowed)
  --syscalls           also run every (row, allocator) once under `strace -f -c -e
                       trace=madvise,munmap` (untimed) and report the call counts
  --allocs A,B,...     only these allocators (default: all known plus --alloc ones)
  --alloc NAME=PATH    add an allocator given as a .so path (repeatable)
  --baseline NAME      ratio baseline (default glibc)
  --install            apt-get install missing peer allocators (root only), and strace
                       when --syscalls needs it
  --root DIR           workspace root (default: found from this executable)
  --out DIR            output directory (default ROOT/bench-results/<matrix>)
  --timeout SECS       per child run (default 600 for seed and memory, else 120)
  --callgrind ROW      run ROW once per allocator under valgrind --tool=callgrind
  -h, --help           this text

Known allocators: glibc (no preload), hakozuna (ROOT/target/release/libhakozuna.so),
hakozuna-fast (ROOT/target/release/libhakozuna_fast.so), jemalloc (libjemalloc2),
tcmalloc (libtcmalloc_minimal.so.4, libgoogle-perftools4), mimalloc (libmimalloc2.0).
";

#[derive(Clone, Debug, PartialEq)]
pub struct CompareOpts {
    pub matrix: String,
    pub runs: Option<usize>,
    pub scale: Option<f64>,
    pub rows: Option<Vec<String>>,
    pub allocs: Option<Vec<String>>,
    pub extra_allocs: Vec<(String, PathBuf)>,
    pub baseline: String,
    pub install: bool,
    pub root: Option<PathBuf>,
    pub out: Option<PathBuf>,
    pub timeout: Option<f64>,
    pub callgrind: Option<String>,
    /// Overrides the mt-remote rows' ring capacity.
    pub ring: Option<u64>,
    /// Overrides the burst-idle rows' idle time (seconds).
    pub idle: Option<f64>,
    /// One extra, untimed run per cell under strace counting madvise/munmap.
    pub syscalls: bool,
}

impl Default for CompareOpts {
    fn default() -> Self {
        CompareOpts {
            matrix: "quick".into(),
            runs: None,
            scale: None,
            rows: None,
            allocs: None,
            extra_allocs: Vec::new(),
            baseline: "glibc".into(),
            install: false,
            root: None,
            out: None,
            timeout: None,
            callgrind: None,
            ring: None,
            idle: None,
            syscalls: false,
        }
    }
}

impl CompareOpts {
    pub fn runs(&self) -> usize {
        self.runs
            .unwrap_or(if self.matrix == "seed" { 5 } else { 3 })
    }

    pub fn timeout_secs(&self) -> f64 {
        self.timeout.unwrap_or(match self.matrix.as_str() {
            "seed" | "memory" => 600.0,
            _ => 120.0,
        })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    Compare(Box<CompareOpts>),
    List { matrix: Option<String>, scale: f64 },
    Bench { program: String, args: Vec<String> },
    Help,
}

fn list(v: &str) -> Vec<String> {
    v.split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Parse the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Command, String> {
    let Some(sub) = args.first() else {
        return Ok(Command::Help);
    };
    match sub.as_str() {
        "-h" | "--help" | "help" => return Ok(Command::Help),
        "bench" => {
            let program = args.get(1).ok_or("bench: which program?")?.clone();
            return Ok(Command::Bench {
                program,
                args: args[2..].to_vec(),
            });
        }
        "compare" | "list" => {}
        other => return Err(format!("unknown subcommand {other:?} (try --help)")),
    }

    let mut o = CompareOpts::default();
    let mut i = 1;
    while i < args.len() {
        let a = &args[i];
        if a == "-h" || a == "--help" {
            return Ok(Command::Help);
        }
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (a.clone(), None),
        };
        if flag == "--install" || flag == "--syscalls" {
            if inline.is_some() {
                return Err(format!("{flag} takes no value"));
            }
            if flag == "--install" {
                o.install = true;
            } else {
                o.syscalls = true;
            }
            i += 1;
            continue;
        }
        if !flag.starts_with("--") {
            return Err(format!("unexpected argument {a:?}"));
        }
        let val = match inline {
            Some(v) => v,
            None => {
                i += 1;
                args.get(i)
                    .cloned()
                    .ok_or_else(|| format!("{flag} needs a value"))?
            }
        };
        let num = |what: &str| -> Result<f64, String> {
            val.parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x > 0.0)
                .ok_or_else(|| format!("{what} must be a positive number, got {val:?}"))
        };
        match flag.as_str() {
            "--matrix" => o.matrix = val.clone(),
            "--runs" => {
                let n: usize = val
                    .parse()
                    .map_err(|_| format!("--runs: not a count: {val:?}"))?;
                if n == 0 {
                    return Err("--runs must be at least 1".into());
                }
                o.runs = Some(n);
            }
            "--scale" => o.scale = Some(num("--scale")?),
            "--timeout" => o.timeout = Some(num("--timeout")?),
            "--rows" => o.rows = Some(list(&val)),
            "--allocs" => o.allocs = Some(list(&val)),
            "--alloc" => {
                let (n, p) = val
                    .split_once('=')
                    .filter(|(n, p)| !n.is_empty() && !p.is_empty())
                    .ok_or_else(|| format!("--alloc wants NAME=PATH, got {val:?}"))?;
                if n == "glibc" {
                    return Err("--alloc: the name glibc is reserved (no preload)".into());
                }
                o.extra_allocs.push((n.to_string(), PathBuf::from(p)));
            }
            "--baseline" => o.baseline = val.clone(),
            "--root" => o.root = Some(PathBuf::from(&val)),
            "--out" => o.out = Some(PathBuf::from(&val)),
            "--callgrind" => o.callgrind = Some(val.clone()),
            "--ring" => {
                let n: u64 = val
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| format!("--ring: not a positive count: {val:?}"))?;
                o.ring = Some(n);
            }
            "--idle" => {
                let x: f64 = val
                    .parse()
                    .ok()
                    .filter(|x: &f64| x.is_finite() && *x >= 0.0)
                    .ok_or_else(|| format!("--idle: not a number of seconds >= 0: {val:?}"))?;
                o.idle = Some(x);
            }
            _ => return Err(format!("unknown option {flag:?} (try --help)")),
        }
        i += 1;
    }
    if sub == "list" {
        let explicit = args.iter().any(|a| a.starts_with("--matrix"));
        return Ok(Command::List {
            matrix: explicit.then_some(o.matrix),
            scale: o.scale.unwrap_or(1.0),
        });
    }
    Ok(Command::Compare(Box::new(o)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Command, String> {
        let v: Vec<String> = s.split_whitespace().map(String::from).collect();
        parse(&v)
    }

    #[test]
    fn defaults() {
        let Command::Compare(o) = p("compare").unwrap() else {
            panic!()
        };
        assert_eq!(*o, CompareOpts::default());
        assert_eq!(o.runs(), 3);
        let Command::Compare(o) = p("compare --matrix seed").unwrap() else {
            panic!()
        };
        assert_eq!(o.runs(), 5);
        assert_eq!(o.timeout_secs(), 600.0);
    }

    #[test]
    fn all_options() {
        let Command::Compare(o) = p(
            "compare --matrix=seed --runs 7 --scale 0.1 --rows rm-dist,mt-T1-R0-16-2048 \
             --allocs glibc,jemalloc --alloc my=libs/libmy.so --alloc x=/y.so --baseline jemalloc \
             --install --root /r --out /o --timeout 30 --callgrind rm-dist --ring 262144 \
             --idle 0.5 --syscalls",
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(o.matrix, "seed");
        assert_eq!(o.runs(), 7);
        assert_eq!(o.scale, Some(0.1));
        assert_eq!(
            o.rows,
            Some(vec!["rm-dist".to_string(), "mt-T1-R0-16-2048".to_string()])
        );
        assert_eq!(
            o.allocs,
            Some(vec!["glibc".to_string(), "jemalloc".to_string()])
        );
        assert_eq!(
            o.extra_allocs,
            vec![
                ("my".to_string(), PathBuf::from("libs/libmy.so")),
                ("x".to_string(), PathBuf::from("/y.so"))
            ]
        );
        assert_eq!(o.baseline, "jemalloc");
        assert!(o.install);
        assert_eq!(o.root, Some(PathBuf::from("/r")));
        assert_eq!(o.out, Some(PathBuf::from("/o")));
        assert_eq!(o.timeout_secs(), 30.0);
        assert_eq!(o.callgrind.as_deref(), Some("rm-dist"));
        assert_eq!(o.ring, Some(262144));
        assert_eq!(o.idle, Some(0.5));
        assert!(o.syscalls);
        let Command::Compare(o) = p("compare --matrix memory --idle 0").unwrap() else {
            panic!()
        };
        assert_eq!(o.idle, Some(0.0));
        assert!(!o.syscalls);
        assert_eq!(o.runs(), 3);
        assert_eq!(o.timeout_secs(), 600.0);
    }

    #[test]
    fn errors() {
        for bad in [
            "frobnicate",
            "compare --runs 0",
            "compare --runs x",
            "compare --scale -1",
            "compare --ring 0",
            "compare --alloc nopath",
            "compare --alloc glibc=/x.so",
            "compare --bogus 1",
            "compare --matrix",
            "compare stray",
            "compare --install=yes",
            "compare --syscalls=1",
            "compare --idle -1",
            "compare --idle x",
        ] {
            assert!(p(bad).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn other_subcommands() {
        assert_eq!(p("").unwrap(), Command::Help);
        assert_eq!(p("compare --help").unwrap(), Command::Help);
        assert_eq!(
            p("bench random-mixed 10 4 16 32").unwrap(),
            Command::Bench {
                program: "random-mixed".into(),
                args: vec!["10".into(), "4".into(), "16".into(), "32".into()]
            }
        );
        assert_eq!(
            p("list").unwrap(),
            Command::List {
                matrix: None,
                scale: 1.0
            }
        );
        assert_eq!(
            p("list --matrix seed --scale 0.5").unwrap(),
            Command::List {
                matrix: Some("seed".into()),
                scale: 0.5
            }
        );
    }
}
