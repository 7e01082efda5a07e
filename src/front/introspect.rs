//! glibc's introspection calls answered from our own figures (design.md §13, §14): `mallinfo2`,
//! `mallinfo`, `malloc_stats`, `malloc_info` and `mallopt`, plus hakozuna's own
//! `hakozuna_stats_json` and `hakozuna_stats_print`. Compiled only into the preload libraries
//! (feature `capi`). None of them allocates or takes an allocator lock; the one exception to
//! "never calls back into the allocator" is `malloc_info` on a stream without a descriptor,
//! explained there.

use crate::front::report::{self, Stats};
use crate::heap::registry;
use crate::sys::diag::Chunked;
use crate::sys::os;
use core::ffi::{c_char, c_int, c_void};
use core::fmt::{self, Write};

/// glibc's `struct mallinfo2` (`<malloc.h>`, glibc ≥ 2.33).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct Mallinfo2 {
    pub arena: usize,
    pub ordblks: usize,
    pub smblks: usize,
    pub hblks: usize,
    pub hblkhd: usize,
    pub usmblks: usize,
    pub fsmblks: usize,
    pub uordblks: usize,
    pub fordblks: usize,
    pub keepcost: usize,
}

/// glibc's `struct mallinfo`: the same fields as `int`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct Mallinfo {
    pub arena: c_int,
    pub ordblks: c_int,
    pub smblks: c_int,
    pub hblks: c_int,
    pub hblkhd: c_int,
    pub usmblks: c_int,
    pub fsmblks: c_int,
    pub uordblks: c_int,
    pub fordblks: c_int,
    pub keepcost: c_int,
}

/// The glibc fields from our figures (design.md §13 has the table). glibc's own invariants
/// hold: `arena = uordblks + fordblks`, and `uordblks + hblkhd` is what the program holds
/// (here: with free blocks cached in thread bins and heap lists, see [`Stats`]).
fn info(s: &Stats) -> Mallinfo2 {
    let z = |v: u64| v as usize;
    Mallinfo2 {
        // Everything but live large blocks: glibc's "non-mmapped space".
        arena: z(s.committed_bytes - s.large_live_bytes),
        // Free "chunks" we can count: pooled segments and cached large blocks.
        ordblks: z((s.pooled_resident_bytes + s.pooled_purged_bytes)
            / crate::page::arena::SEGMENT as u64
            + s.large_cached_blocks),
        smblks: 0,
        hblks: z(s.large_live_blocks),
        hblkhd: z(s.large_live_bytes),
        usmblks: 0,
        fsmblks: 0,
        // Pages in runs (blocks in use and free blocks cached) and metadata.
        uordblks: z(s.run_bytes + s.metadata_bytes),
        fordblks: z(s.free_bytes),
        // What `malloc_trim` gives back at least: resident pooled segments, cached large blocks.
        keepcost: z(s.pooled_resident_bytes + s.large_cached_bytes),
    }
}

#[no_mangle]
pub extern "C" fn mallinfo2() -> Mallinfo2 {
    info(&report::snapshot())
}

/// As `mallinfo2`, each field saturating at `INT_MAX` (glibc truncates instead).
#[no_mangle]
pub extern "C" fn mallinfo() -> Mallinfo {
    let m = info(&report::snapshot());
    let i = |v: usize| v.min(c_int::MAX as usize) as c_int;
    Mallinfo {
        arena: i(m.arena),
        ordblks: i(m.ordblks),
        smblks: i(m.smblks),
        hblks: i(m.hblks),
        hblkhd: i(m.hblkhd),
        usmblks: i(m.usmblks),
        fsmblks: i(m.fsmblks),
        uordblks: i(m.uordblks),
        fordblks: i(m.fordblks),
        keepcost: i(m.keepcost),
    }
}

/// glibc's summary shape on stderr (one "arena" for all heaps, then the totals with the large
/// tier as its "mmap" regions), then our own summary.
#[no_mangle]
pub extern "C" fn malloc_stats() {
    let s = report::snapshot();
    let m = info(&s);
    report::to_fd(2, |w| {
        writeln!(w, "Arena 0:")?;
        writeln!(w, "system bytes     = {:>10}", m.arena)?;
        writeln!(w, "in use bytes     = {:>10}", m.uordblks)?;
        writeln!(w, "Total (incl. mmap):")?;
        writeln!(w, "system bytes     = {:>10}", m.arena + m.hblkhd)?;
        writeln!(w, "in use bytes     = {:>10}", m.uordblks + m.hblkhd)?;
        writeln!(w, "max mmap regions = {:>10}", s.large_peak_blocks)?;
        writeln!(w, "max mmap bytes   = {:>10}", s.large_peak_bytes)?;
        s.write_text(w)
    });
}

/// The XML document, in glibc's shape: a `<heap>` per heap with the bytes of its runs (the
/// only per-heap figure we keep), then the totals.
fn write_info(w: &mut dyn Write, s: &Stats) -> fmt::Result {
    let m = info(s);
    w.write_str("<malloc version=\"1\">\n")?;
    w.write_str(
        "<!-- hakozuna: a heap's figures are the bytes of its page runs (blocks in use and \
         free blocks cached are not told apart); \"rest\" is free pages, pooled segments and \
         cached large blocks; \"mmap\" is live large blocks -->\n",
    )?;
    let mut id = 0u32;
    let mut res = Ok(());
    registry::for_each_heap(|c| {
        if res.is_ok() {
            let b = c.run_bytes();
            res = write!(
                w,
                "<heap nr=\"{id}\">\n<sizes>\n</sizes>\n\
                 <total type=\"fast\" count=\"0\" size=\"0\"/>\n\
                 <total type=\"rest\" count=\"0\" size=\"0\"/>\n\
                 <system type=\"current\" size=\"{b}\"/>\n\
                 <system type=\"max\" size=\"{b}\"/>\n\
                 <aspace type=\"total\" size=\"{b}\"/>\n\
                 <aspace type=\"mprotect\" size=\"{b}\"/>\n\
                 </heap>\n"
            );
        }
        id += 1;
    });
    res?;
    write!(
        w,
        "<total type=\"fast\" count=\"0\" size=\"0\"/>\n\
         <total type=\"rest\" count=\"{}\" size=\"{}\"/>\n\
         <total type=\"mmap\" count=\"{}\" size=\"{}\"/>\n\
         <system type=\"current\" size=\"{}\"/>\n\
         <system type=\"max\" size=\"{}\"/>\n\
         <aspace type=\"total\" size=\"{}\"/>\n\
         <aspace type=\"mprotect\" size=\"{}\"/>\n\
         </malloc>\n",
        m.ordblks,
        m.fordblks,
        m.hblks,
        m.hblkhd,
        m.arena,
        m.arena,
        s.arena_reserved_bytes,
        s.committed_bytes,
    )
}

/// `malloc_info(0, fp)`: 0 on success, -1 if writing failed; `EINVAL` (the value, as glibc
/// returns it) for other options or a null stream.
///
/// The text is made in a stack buffer and never goes through `fprintf`. What `fp` has
/// buffered is flushed first, then, if the stream has a descriptor, the text is written to it
/// with `write(2)`: no stdio call that could allocate. A stream without a descriptor
/// (`open_memstream`, `fmemopen`, `fopencookie`) can only be filled with `fwrite`, whose buffer
/// growth calls `realloc`, that is, us: that call is made between chunks of 1 KiB, when this
/// function holds no lock and no thread-cache state (the per-heap figures are read without
/// one), so it is an ordinary `realloc` by the calling thread, as if the program had made it.
///
/// # Safety
/// `fp` is null or a valid `FILE *`.
#[no_mangle]
pub unsafe extern "C" fn malloc_info(options: c_int, fp: *mut libc::FILE) -> c_int {
    if options != 0 || fp.is_null() {
        return libc::EINVAL;
    }
    let saved = os::errno();
    // SAFETY: `fp` is a valid stream (caller contract).
    let fd = unsafe {
        libc::fflush(fp);
        libc::fileno(fp)
    };
    let mut ok = true;
    let s = report::snapshot();
    let res = if fd >= 0 {
        let mut out = Chunked::new(|b: &[u8]| ok &= os::write_fd(fd, b));
        let r = write_info(&mut out, &s);
        out.finish();
        r
    } else {
        let mut out = Chunked::new(|b: &[u8]| {
            // SAFETY: `fp` is a valid stream (caller contract); `b` is valid for its length.
            ok &= unsafe { libc::fwrite(b.as_ptr() as *const c_void, 1, b.len(), fp) } == b.len();
        });
        let r = write_info(&mut out, &s);
        out.finish();
        r
    };
    if res.is_err() || !ok {
        return -1;
    }
    os::set_errno(saved);
    0
}

/// `mallopt`'s `M_MXFAST` (`<malloc.h>`) and glibc's bound for it, `80 * sizeof(size_t) / 4`.
const M_MXFAST: c_int = 1;
const MAX_FAST_SIZE: c_int = 80 * 8 / 4;

/// `mallopt`: changes nothing and returns what glibc 2.36 returns for the same call: 0 for
/// `M_MXFAST` outside 0–160, the only value glibc refuses, and 1 for everything else, unknown
/// parameters included. Every glibc parameter tunes a mechanism hakozuna does not have
/// (fastbins, the top chunk and its trimming, the mmap threshold and count, arenas, heap
/// checking, perturbing freed memory); design.md §14 has the table.
#[no_mangle]
pub extern "C" fn mallopt(param: c_int, value: c_int) -> c_int {
    match param {
        M_MXFAST => (0..=MAX_FAST_SIZE).contains(&value) as c_int,
        _ => 1,
    }
}

/// Writes the statistics as JSON into `buf` (at most `len - 1` bytes and a NUL, like
/// `snprintf`) and returns the length of the whole document, so a caller can size its buffer
/// with a first call of `len` 0.
///
/// # Safety
/// `buf` is valid for writes of `len` bytes (or `len` is 0).
#[no_mangle]
pub unsafe extern "C" fn hakozuna_stats_json(buf: *mut c_char, len: usize) -> usize {
    // SAFETY: caller contract.
    let mut w = unsafe { crate::sys::diag::SliceWriter::new(buf as *mut u8, len) };
    let _ = report::snapshot().write_json(&mut w);
    w.finish()
}

/// The text summary on stderr, whatever `HAKOZUNA_STATS` says.
#[no_mangle]
pub extern "C" fn hakozuna_stats_print() {
    report::print_text();
}
