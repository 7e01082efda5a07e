//! Allocation-free text output for warnings and the statistics reports: a fixed stack buffer
//! with decimal formatting, flushed to stderr with one `write`; a `core::fmt::Write` sink that
//! hands fixed-size chunks to a callback; and one that fills a caller's buffer the way
//! `snprintf` does.

use core::fmt;

/// Copies what fits of `s` into `buf` after its first `*len` bytes, advances `*len`, and
/// returns the bytes copied. By iterators, so that no index or length check leaves a panic
/// path in the C entry points that print (`malloc_stats`, `malloc_info`, the reports).
fn append(buf: &mut [u8], len: &mut usize, s: &[u8]) -> usize {
    let mut n = 0;
    for (d, &c) in buf.iter_mut().skip(*len).zip(s) {
        *d = c;
        n += 1;
    }
    *len += n;
    n
}

pub struct Line {
    buf: [u8; 512],
    len: usize,
}

impl Line {
    pub const fn new() -> Self {
        Line {
            buf: [0; 512],
            len: 0,
        }
    }

    pub fn str(&mut self, s: &str) -> &mut Self {
        self.bytes(s.as_bytes())
    }

    pub fn bytes(&mut self, s: &[u8]) -> &mut Self {
        append(&mut self.buf, &mut self.len, s);
        self
    }

    pub fn num(&mut self, mut v: u64) -> &mut Self {
        let mut tmp = [0u8; 20];
        let mut i = tmp.len();
        loop {
            i -= 1;
            tmp[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.bytes(tmp.get(i..).unwrap_or(&[]))
    }

    /// `v` as `0x…` in hexadecimal.
    pub fn hex(&mut self, v: u64) -> &mut Self {
        let mut tmp = [0u8; 18];
        let mut i = tmp.len();
        let mut v = v;
        loop {
            i -= 1;
            tmp[i] = b"0123456789abcdef"[(v & 15) as usize];
            v >>= 4;
            if v == 0 {
                break;
            }
        }
        i -= 2;
        tmp[i] = b'0';
        tmp[i + 1] = b'x';
        self.bytes(tmp.get(i..).unwrap_or(&[]))
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }

    /// Appends a newline and writes the line to stderr.
    pub fn emit(&mut self) {
        self.str("\n");
        crate::sys::os::write_stderr(self.as_bytes());
        self.len = 0;
    }
}

/// The hardened lane's verdict on a heap error: `hakozuna: <what>: <p>` on stderr in one
/// `write`, then `abort()` (what glibc does for the errors it detects). Out of line: callers
/// are on hot paths and this never returns.
#[cold]
#[inline(never)]
pub fn fatal(what: &str, p: *const u8) -> ! {
    Line::new()
        .str("hakozuna: ")
        .str(what)
        .str(": ")
        .hex(p as u64)
        .emit();
    crate::sys::os::abort()
}

/// A `core::fmt::Write` through a 1 KiB stack buffer: each time it fills, and at
/// [`Chunked::finish`], its bytes go to `out`. Formatting through it never allocates.
pub struct Chunked<F: FnMut(&[u8])> {
    buf: [u8; 1024],
    len: usize,
    out: F,
}

impl<F: FnMut(&[u8])> Chunked<F> {
    pub fn new(out: F) -> Self {
        Chunked {
            buf: [0; 1024],
            len: 0,
            out,
        }
    }

    /// Hands what is buffered to `out`.
    pub fn finish(&mut self) {
        if self.len > 0 {
            (self.out)(self.buf.get(..self.len).unwrap_or(&[]));
            self.len = 0;
        }
    }
}

impl<F: FnMut(&[u8])> fmt::Write for Chunked<F> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut b = s.as_bytes();
        while !b.is_empty() {
            if self.len == self.buf.len() {
                self.finish();
            }
            let n = append(&mut self.buf, &mut self.len, b);
            b = b.get(n..).unwrap_or(&[]);
        }
        Ok(())
    }
}

/// A `core::fmt::Write` into a caller's buffer with `snprintf`'s contract: it keeps at most
/// `len - 1` bytes and a terminating NUL (nothing at all when `len` is 0) and counts every
/// byte written, so [`SliceWriter::needed`] is the length the whole text needs.
#[cfg_attr(not(feature = "capi"), allow(dead_code))]
pub struct SliceWriter {
    buf: *mut u8,
    len: usize,
    needed: usize,
}

#[cfg_attr(not(feature = "capi"), allow(dead_code))]
impl SliceWriter {
    /// # Safety
    /// `buf` is valid for writes of `len` bytes (or `len` is 0), for the writer's life.
    pub unsafe fn new(buf: *mut u8, len: usize) -> Self {
        SliceWriter {
            buf,
            len,
            needed: 0,
        }
    }

    /// Writes the terminating NUL and returns the length of the whole text (without it).
    pub fn finish(self) -> usize {
        if self.len > 0 {
            let at = self.needed.min(self.len - 1);
            // SAFETY: `at < len`, inside the buffer (constructor contract).
            unsafe { *self.buf.add(at) = 0 };
        }
        self.needed
    }
}

impl fmt::Write for SliceWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.len.saturating_sub(1).saturating_sub(self.needed);
        let n = s.len().min(room);
        if n > 0 {
            // SAFETY: `needed + n <= len - 1`: inside the buffer (constructor contract), and
            // the source is a distinct `&str`.
            unsafe { core::ptr::copy_nonoverlapping(s.as_ptr(), self.buf.add(self.needed), n) };
        }
        self.needed += s.len();
        Ok(())
    }
}

/// Parses a decimal `u64`; `None` for empty, non-digit or overflowing input.
pub fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add((c - b'0') as u64)?;
    }
    Some(v)
}

/// Reads a numeric environment variable in `[min, max]`; a malformed value gets a one-line
/// warning and the default. `name` ends in NUL.
pub fn env_u64(name: &[u8], default: u64, min: u64, max: u64) -> u64 {
    let Some(raw) = crate::sys::os::getenv(name) else {
        return default;
    };
    match parse_u64(raw) {
        Some(v) if v >= min && v <= max => v,
        _ => {
            Line::new()
                .str("hakozuna: ignoring malformed ")
                .bytes(name.strip_suffix(b"\0").unwrap_or(name))
                .str("='")
                .bytes(raw.get(..64).unwrap_or(raw))
                .str("' (expected ")
                .num(min)
                .str("..")
                .num(max)
                .str("), using ")
                .num(default)
                .emit();
            default
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        assert_eq!(parse_u64(b"0"), Some(0));
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64(b"18446744073709551616"), None);
        assert_eq!(parse_u64(b""), None);
        assert_eq!(parse_u64(b"12a"), None);
        assert_eq!(parse_u64(b"-1"), None);
    }

    #[test]
    fn slice_writer_truncates_like_snprintf() {
        use core::fmt::Write;
        let mut buf = [0xffu8; 8];
        // SAFETY: `buf` is valid for its length for the writer's life.
        let mut w = unsafe { SliceWriter::new(buf.as_mut_ptr(), buf.len()) };
        let word = "abcdef";
        write!(w, "{}-{word}", 12345).unwrap();
        assert_eq!(w.finish(), 12);
        assert_eq!(&buf, b"12345-a\0");
        // SAFETY: a zero length never writes.
        let mut w = unsafe { SliceWriter::new(core::ptr::null_mut(), 0) };
        write!(w, "xyz").unwrap();
        assert_eq!(w.finish(), 3);
        let mut buf = [0xffu8; 8];
        // SAFETY: as above.
        let mut w = unsafe { SliceWriter::new(buf.as_mut_ptr(), buf.len()) };
        w.write_str("ab").unwrap();
        assert_eq!(w.finish(), 2);
        assert_eq!(&buf[..3], b"ab\0");
    }

    #[test]
    fn chunked_hands_every_byte_over_in_order() {
        use core::fmt::Write;
        extern crate std;
        let mut got = std::vec::Vec::new();
        {
            let mut w = Chunked::new(|b: &[u8]| got.extend_from_slice(b));
            for i in 0..1000 {
                write!(w, "{i},").unwrap();
            }
            w.finish();
        }
        let want: std::string::String = (0..1000).map(|i| std::format!("{i},")).collect();
        assert_eq!(got, want.as_bytes());
    }

    #[test]
    fn formats() {
        let mut l = Line::new();
        l.str("a=").num(0).str(" b=").num(1234567890123);
        assert_eq!(l.as_bytes(), b"a=0 b=1234567890123");
    }
}
