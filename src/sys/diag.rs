//! Allocation-free text output for warnings and the statistics summary: a fixed stack buffer
//! with decimal formatting, flushed to stderr with one `write`.

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
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s[..n]);
        self.len += n;
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
        self.bytes(&tmp[i..])
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Appends a newline and writes the line to stderr.
    pub fn emit(&mut self) {
        self.str("\n");
        crate::sys::os::write_stderr(self.as_bytes());
        self.len = 0;
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
                .bytes(&name[..name.len() - 1])
                .str("='")
                .bytes(&raw[..raw.len().min(64)])
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

/// Reads a boolean flag (`1`/`0`); anything else warns and counts as off.
pub fn env_flag(name: &[u8]) -> bool {
    env_u64(name, 0, 0, 1) == 1
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
    fn formats() {
        let mut l = Line::new();
        l.str("a=").num(0).str(" b=").num(1234567890123);
        assert_eq!(l.as_bytes(), b"a=0 b=1234567890123");
    }
}
