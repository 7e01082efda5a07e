//! What the memory programs (`burst-idle`, `thread-churn`) read about their own process:
//! resident set (`/proc/self/statm`), its high-water mark (`VmHWM` in `/proc/self/status`),
//! page faults (`getrusage`), plus touching every page of a block and finding `malloc_trim`.
//!
//! Nothing here allocates through `malloc` on a hot path; the `/proc` readers allocate a small
//! buffer, which is why the programs call them only between phases.

use std::ffi::CStr;

/// The page size (`sysconf(_SC_PAGESIZE)`), 4096 when it cannot be read.
pub fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as usize
    } else {
        4096
    }
}

/// Resident set size now, KiB: the second field of `/proc/self/statm` (pages) × page size.
pub fn rss_kb() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/statm").ok()?;
    parse_statm_rss_pages(&s).map(|pages| pages * page_size() as u64 / 1024)
}

/// The resident field (second number, in pages) of a `/proc/PID/statm` line.
pub fn parse_statm_rss_pages(statm: &str) -> Option<u64> {
    statm.split_whitespace().nth(1)?.parse().ok()
}

/// Peak resident set size of this process, KiB (`VmHWM:` of `/proc/self/status`).
pub fn vm_hwm_kb() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_status_kb(&s, "VmHWM:")
}

/// A `Key:   123 kB` value of a `/proc/PID/status` text.
pub fn parse_status_kb(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// Minor and major page faults of this process so far (`getrusage(RUSAGE_SELF)`).
pub fn faults() -> (u64, u64) {
    // SAFETY: rusage is plain old data; getrusage fills it in.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut ru) != 0 {
            return (0, 0);
        }
        (ru.ru_minflt.max(0) as u64, ru.ru_majflt.max(0) as u64)
    }
}

/// `malloc(size)`, then write one byte in every page of the block (and its last byte), so the
/// whole block is resident, as memory a program really uses is. Aborts when `malloc` fails.
#[inline]
pub fn alloc_touch_pages(size: usize, tag: u8, page: usize) -> *mut u8 {
    let p = crate::common::alloc_touch(size, tag);
    let mut off = page;
    while off < size {
        // SAFETY: off < size, inside the block just allocated.
        unsafe { p.add(off).write_volatile(tag) };
        off += page;
    }
    p
}

/// A KiB figure as MiB text for the human summaries.
pub fn mib(kb: u64) -> String {
    format!("{:.1} MiB", kb as f64 / 1024.0)
}

/// The process' `malloc_trim`, found with `dlsym(RTLD_DEFAULT, "malloc_trim")` so that a
/// preloaded allocator's own comes first, and which shared object it lives in.
pub struct Trim {
    f: Option<unsafe extern "C" fn(libc::size_t) -> libc::c_int>,
    /// The object that defines the symbol found (`dladdr`), `-` when there is none.
    pub from: String,
}

impl Trim {
    pub fn find() -> Trim {
        // SAFETY: dlsym/dladdr only read the loader's tables; the name is NUL-terminated. The
        // symbol, when found, is glibc's (or an allocator's drop-in) `int malloc_trim(size_t)`.
        unsafe {
            let sym = libc::dlsym(libc::RTLD_DEFAULT, c"malloc_trim".as_ptr());
            if sym.is_null() {
                return Trim {
                    f: None,
                    from: "-".into(),
                };
            }
            let mut info: libc::Dl_info = std::mem::zeroed();
            let from = if libc::dladdr(sym, &mut info) != 0 && !info.dli_fname.is_null() {
                CStr::from_ptr(info.dli_fname)
                    .to_string_lossy()
                    .replace(char::is_whitespace, "_")
            } else {
                "unknown".into()
            };
            Trim {
                f: Some(std::mem::transmute::<
                    *mut libc::c_void,
                    unsafe extern "C" fn(libc::size_t) -> libc::c_int,
                >(sym)),
                from,
            }
        }
    }

    /// How the trim relates to the allocator in use (`malloc_from`): `own` when the
    /// `malloc_trim` found is in the same object as `malloc`, `other` when it is someone
    /// else's (typically glibc's, which cannot release a preloaded allocator's memory),
    /// `absent` when there is none.
    pub fn kind(&self, malloc_from: &str) -> &'static str {
        match self.f {
            None => "absent",
            Some(_) if same_object(&self.from, malloc_from) => "own",
            Some(_) => "other",
        }
    }

    /// Call `malloc_trim(0)`; None when there is no such function.
    pub fn call(&self) -> Option<i32> {
        // SAFETY: the symbol is a `malloc_trim(size_t) -> int` (see `find`).
        self.f.map(|f| unsafe { f(0) })
    }
}

fn same_object(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    let canon = |p: &str| std::fs::canonicalize(p).ok();
    matches!((canon(a), canon(b)), (Some(x), Some(y)) if x == y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_texts() {
        assert_eq!(parse_statm_rss_pages("12345 678 90 1 0 2 0\n"), Some(678));
        assert_eq!(parse_statm_rss_pages("1"), None);
        let st = "Name:\tx\nVmPeak:\t  10 kB\nVmHWM:\t    2048 kB\nVmRSS:\t 100 kB\n";
        assert_eq!(parse_status_kb(st, "VmHWM:"), Some(2048));
        assert_eq!(parse_status_kb(st, "VmSwap:"), None);
    }

    #[test]
    fn reads_this_process() {
        let rss = rss_kb().unwrap();
        let hwm = vm_hwm_kb().unwrap();
        assert!(rss > 0 && hwm >= rss / 2, "rss {rss} hwm {hwm}");
        let (minflt, _) = faults();
        assert!(minflt > 0);
        let t = Trim::find();
        // The test binary is linked against glibc, whose malloc_trim it finds.
        assert_eq!(
            t.kind(&crate::common::malloc_provider()),
            "own",
            "{}",
            t.from
        );
    }

    #[test]
    fn touching_pages_makes_them_resident() {
        let page = page_size();
        let size = 64 << 20;
        let before = rss_kb().unwrap();
        let p = alloc_touch_pages(size, 7, page);
        let after = rss_kb().unwrap();
        // SAFETY: p came from alloc_touch_pages.
        unsafe { crate::common::free_touch(p) };
        assert!(after >= before + 48 * 1024, "{before} -> {after} KiB");
    }
}
