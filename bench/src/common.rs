//! Pieces shared by every benchmark program: the fixed RNG, allocation through the C
//! `malloc`/`free`, cheap byte touching, argument parsing and the RESULT line.
//!
//! Everything here is deliberately tiny and identical for every allocator, so that the cost
//! the benchmarks add around `malloc`/`free` is the same whichever library is preloaded.

use std::ffi::CStr;
use std::fmt::Write as _;

/// The 32-bit LCG fixed by docs/benchmarks.md: `s = s·1664525 + 1013904223`.
#[derive(Clone, Copy, Debug)]
pub struct Lcg(pub u32);

/// Seed of thread 0 (docs/benchmarks.md); thread `i` uses `SEED + 977·i`.
pub const SEED: u32 = 0x1234_5678;

impl Lcg {
    /// The RNG for thread `i` (`0x12345678 + 977·i`).
    #[inline]
    pub fn for_thread(i: usize) -> Lcg {
        Lcg(SEED.wrapping_add(977u32.wrapping_mul(i as u32)))
    }

    /// Advance and return the new state.
    #[inline(always)]
    pub fn next_u32(&mut self) -> u32 {
        self.0 = self.0.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        self.0
    }
}

/// A number in `0..100` taken from the high 16 bits of a draw. The low bits of the draw already
/// choose the slot and the size (`r % WS`, `r % span`), and the low bits of an LCG are the weak
/// ones, so percentage decisions use the high half of the same draw. This keeps the slot and
/// size sequence identical whatever the percentage is.
#[inline(always)]
pub fn percent_of(r: u32) -> u32 {
    ((r >> 16) * 100) >> 16
}

/// Size for the `dist` variant of random-mixed: 80 % uniform in 16–256, 15 % in 257–2048,
/// 5 % in 2049–32768. The class comes from [`percent_of`]; the size inside the class from
/// `lo + r % (hi − lo + 1)`, as in the plain variant.
#[inline(always)]
pub fn dist_size(r: u32) -> usize {
    let p = percent_of(r);
    let (lo, hi) = if p < 80 {
        (16u32, 256u32)
    } else if p < 95 {
        (257, 2048)
    } else {
        (2049, 32768)
    };
    (lo + r % (hi - lo + 1)) as usize
}

/// Size range of a plain benchmark: `min + r % (max − min + 1)`.
#[derive(Clone, Copy, Debug)]
pub struct SizeRange {
    pub min: u32,
    pub span: u32,
}

impl SizeRange {
    pub fn new(min: u32, max: u32) -> Result<SizeRange, String> {
        if min == 0 || max < min {
            return Err(format!(
                "bad size range {min}..{max} (need 1 <= MIN <= MAX)"
            ));
        }
        Ok(SizeRange {
            min,
            span: max - min + 1,
        })
    }

    /// Mean request size of `pick` over uniform `r`.
    pub fn mean(&self) -> f64 {
        self.min as f64 + (self.span - 1) as f64 / 2.0
    }

    #[inline(always)]
    pub fn pick(&self, r: u32) -> usize {
        (self.min + r % self.span) as usize
    }
}

/// `malloc(size)` through the C ABI, then write the first and the last byte so the memory is
/// really touched (cheaply). Aborts the process with a message when `malloc` fails: a benchmark
/// result with failed allocations would be meaningless.
#[inline(always)]
pub fn alloc_touch(size: usize, tag: u8) -> *mut u8 {
    // SAFETY: plain C malloc; the pointer is checked before it is written.
    unsafe {
        let p = libc::malloc(size) as *mut u8;
        if p.is_null() {
            alloc_failed(size);
        }
        p.write_volatile(tag);
        p.add(size - 1).write_volatile(tag);
        p
    }
}

/// `free(p)` through the C ABI, after reading the first byte (as a program would before
/// discarding an object; it also makes a cross-thread free touch the object's cache line).
///
/// # Safety
/// `p` must come from [`alloc_touch`] and not have been freed yet.
#[inline(always)]
pub unsafe fn free_touch(p: *mut u8) -> u8 {
    unsafe {
        let v = p.read_volatile();
        libc::free(p as *mut libc::c_void);
        v
    }
}

#[cold]
#[inline(never)]
fn alloc_failed(size: usize) -> ! {
    eprintln!("FATAL: malloc({size}) returned NULL");
    std::process::exit(3);
}

/// Which shared object the process' `malloc` resolves to (via `dladdr`). Under a working
/// `LD_PRELOAD` this is the preloaded library; otherwise glibc's `libc.so.6`.
pub fn malloc_provider() -> String {
    let f: unsafe extern "C" fn(libc::size_t) -> *mut libc::c_void = libc::malloc;
    // SAFETY: dladdr only inspects the loader's tables; `info` is plain old data.
    unsafe {
        let mut info: libc::Dl_info = std::mem::zeroed();
        if libc::dladdr(f as *const libc::c_void, &mut info) != 0 && !info.dli_fname.is_null() {
            let name = CStr::from_ptr(info.dli_fname)
                .to_string_lossy()
                .into_owned();
            // A RESULT value must be one token.
            return name.replace(char::is_whitespace, "_");
        }
    }
    "unknown".to_string()
}

/// Parse a count such as `20000000`, `20M`, `2.5M`, `500k`, `1G` or `1_000_000`.
pub fn parse_count(s: &str) -> Result<u64, String> {
    let t: String = s.trim().chars().filter(|&c| c != '_').collect();
    let (num, mul) = match t.chars().last() {
        Some('k') | Some('K') => (&t[..t.len() - 1], 1e3),
        Some('m') | Some('M') => (&t[..t.len() - 1], 1e6),
        Some('g') | Some('G') => (&t[..t.len() - 1], 1e9),
        _ => (&t[..], 1.0),
    };
    if let Ok(v) = num.parse::<u64>() {
        if mul == 1.0 {
            return Ok(v);
        }
    }
    let v: f64 = num.parse().map_err(|_| format!("not a count: {s:?}"))?;
    if v.is_nan() || v < 0.0 || !v.is_finite() {
        return Err(format!("not a count: {s:?}"));
    }
    Ok((v * mul).round() as u64)
}

/// Positional argument `i` parsed as a count, with its name for error messages.
pub fn arg_count(args: &[String], i: usize, name: &str) -> Result<u64, String> {
    let s = args
        .get(i)
        .ok_or_else(|| format!("missing argument {name}"))?;
    parse_count(s).map_err(|e| format!("{name}: {e}"))
}

/// Positional argument as u32 (sizes, percentages, thread counts).
pub fn arg_u32(args: &[String], i: usize, name: &str) -> Result<u32, String> {
    let v = arg_count(args, i, name)?;
    u32::try_from(v).map_err(|_| format!("{name}: {v} is too large"))
}

/// CPU seconds (user + system) the calling thread has used so far (`xmalloc-test`'s split of
/// producer and consumer time, `mt-remote`'s per-thread CPU at the end of its loop).
pub fn thread_cpu_secs() -> f64 {
    // SAFETY: getrusage writes only into the zeroed struct passed by pointer.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_THREAD is Linux's per-thread query.
    if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// The timed span of a multi-threaded run, from the workers' own clocks: the earliest moment a
/// worker left the start barrier to the latest moment one finished. The main thread's clock
/// is not used: on an oversubscribed machine it can be descheduled just after the barrier
/// (measured runs of 2 ms for 15 ms of work) or before it reads the end time.
#[derive(Clone, Copy, Debug)]
pub struct Span {
    pub start: std::time::Instant,
    pub end: std::time::Instant,
}

impl Span {
    /// Smallest span covering all of `spans`; None when there are none.
    pub fn covering(spans: impl IntoIterator<Item = Span>) -> Option<Span> {
        spans.into_iter().reduce(|a, b| Span {
            start: a.start.min(b.start),
            end: a.end.max(b.end),
        })
    }

    pub fn secs(&self) -> f64 {
        self.end.saturating_duration_since(self.start).as_secs_f64()
    }
}

/// One benchmark result: printed as a single machine-parseable line
/// `RESULT bench=NAME ops=N secs=S ops_per_sec=X key=value ...`.
#[derive(Clone, Debug)]
pub struct Report {
    pub bench: String,
    pub ops: u64,
    pub secs: f64,
    pub extra: Vec<(String, String)>,
}

impl Report {
    pub fn new(bench: &str, ops: u64, secs: f64) -> Report {
        Report {
            bench: bench.to_string(),
            ops,
            secs,
            extra: Vec::new(),
        }
    }

    pub fn kv(mut self, k: &str, v: impl ToString) -> Report {
        let v = v.to_string().replace(char::is_whitespace, "_");
        self.extra.push((k.to_string(), v));
        self
    }

    pub fn ops_per_sec(&self) -> f64 {
        if self.secs > 0.0 {
            self.ops as f64 / self.secs
        } else {
            0.0
        }
    }

    /// The machine-parseable line (no trailing newline).
    pub fn result_line(&self) -> String {
        let mut s = format!(
            "RESULT bench={} ops={} secs={:.6} ops_per_sec={:.1}",
            self.bench,
            self.ops,
            self.secs,
            self.ops_per_sec()
        );
        for (k, v) in &self.extra {
            let _ = write!(s, " {k}={v}");
        }
        s
    }

    /// Print the human summary and then the RESULT line, both on stdout.
    pub fn print(&self, human: &str) {
        println!("{human}");
        println!(
            "{}: {} ops in {:.3} s = {} ops/s",
            self.bench,
            self.ops,
            self.secs,
            human_rate(self.ops_per_sec())
        );
        println!("{}", self.result_line());
    }
}

/// `123.4M`-style rendering of a rate.
pub fn human_rate(x: f64) -> String {
    let a = x.abs();
    if a >= 1e9 {
        format!("{:.2}G", x / 1e9)
    } else if a >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if a >= 1e3 {
        format!("{:.2}K", x / 1e3)
    } else {
        format!("{x:.1}")
    }
}

/// Available CPUs as the kernel reports them for this process.
pub fn ncpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// The note every multi-threaded result carries: thread count against CPUs.
pub fn oversub_note(threads: usize) -> String {
    let n = ncpus();
    if threads > n {
        format!(
            "{threads} threads on {n} CPUs (oversubscribed {:.1}x)",
            threads as f64 / n as f64
        )
    } else {
        format!("{threads} threads on {n} CPUs")
    }
}

/// Shared entry point of the benchmark binaries: run, print usage on argument errors.
pub fn run_main(usage: &str, f: fn(&[String]) -> Result<Report, String>) -> ! {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(run_args(usage, f, &args))
}

/// Run a benchmark function on parsed arguments; returns the exit code.
pub fn run_args(usage: &str, f: fn(&[String]) -> Result<Report, String>, args: &[String]) -> i32 {
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{usage}");
        return 0;
    }
    match f(args) {
        Ok(_) => 0,
        Err(e) => {
            eprintln!("error: {e}\n{usage}");
            2
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lcg_matches_the_spec() {
        let mut r = Lcg(SEED);
        let a = r.next_u32();
        assert_eq!(
            a,
            0x1234_5678u32
                .wrapping_mul(1_664_525)
                .wrapping_add(1_013_904_223)
        );
        assert_eq!(Lcg::for_thread(3).0, 0x1234_5678 + 3 * 977);
    }

    #[test]
    fn counts_parse() {
        assert_eq!(parse_count("20M").unwrap(), 20_000_000);
        assert_eq!(parse_count("2.5M").unwrap(), 2_500_000);
        assert_eq!(parse_count("500k").unwrap(), 500_000);
        assert_eq!(parse_count("1_000").unwrap(), 1000);
        assert_eq!(parse_count("7").unwrap(), 7);
        assert!(parse_count("x").is_err());
        assert!(parse_count("-1").is_err());
    }

    #[test]
    fn dist_sizes_in_range_and_proportions() {
        let mut r = Lcg(SEED);
        let (mut a, mut b, mut c) = (0u32, 0u32, 0u32);
        for _ in 0..100_000 {
            let s = dist_size(r.next_u32());
            assert!((16..=32768).contains(&s));
            if s <= 256 {
                a += 1
            } else if s <= 2048 {
                b += 1
            } else {
                c += 1
            }
        }
        assert!((78_000..82_000).contains(&a), "{a}");
        assert!((13_500..16_500).contains(&b), "{b}");
        assert!((4_000..6_000).contains(&c), "{c}");
    }

    #[test]
    fn percent_is_uniformish() {
        let mut r = Lcg(SEED);
        let mut below = 0;
        for _ in 0..100_000 {
            let p = percent_of(r.next_u32());
            assert!(p < 100);
            if p < 50 {
                below += 1;
            }
        }
        assert!((48_000..52_000).contains(&below), "{below}");
    }

    #[test]
    fn result_line_is_one_line_of_tokens() {
        let r = Report::new("x", 10, 2.0).kv("note", "a b");
        let l = r.result_line();
        assert!(l.starts_with("RESULT bench=x ops=10 secs=2.000000 ops_per_sec=5.0"));
        assert!(l.ends_with("note=a_b"));
    }
}
