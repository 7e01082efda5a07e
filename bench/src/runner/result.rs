//! Parsing of the `RESULT key=value ...` line every benchmark program prints.

use std::collections::BTreeMap;

/// One parsed RESULT line. `bench`, `ops`, `secs` and `ops_per_sec` are always present and
/// well-formed; every other key is kept as text.
#[derive(Clone, Debug, PartialEq)]
pub struct ResultLine {
    pub bench: String,
    pub ops: u64,
    pub secs: f64,
    pub ops_per_sec: f64,
    pub fields: BTreeMap<String, String>,
}

impl ResultLine {
    /// Parse one line; it must start with `RESULT ` and consist of `key=value` tokens.
    pub fn parse(line: &str) -> Result<ResultLine, String> {
        let rest = line
            .trim_end()
            .strip_prefix("RESULT ")
            .ok_or_else(|| format!("not a RESULT line: {line:?}"))?;
        let mut fields = BTreeMap::new();
        for tok in rest.split_whitespace() {
            let (k, v) = tok
                .split_once('=')
                .ok_or_else(|| format!("RESULT token without '=': {tok:?}"))?;
            if k.is_empty() || v.is_empty() {
                return Err(format!("empty key or value in RESULT token {tok:?}"));
            }
            if fields.insert(k.to_string(), v.to_string()).is_some() {
                return Err(format!("duplicate RESULT key {k:?}"));
            }
        }
        let get = |k: &str| {
            fields
                .get(k)
                .ok_or_else(|| format!("RESULT line lacks {k}="))
        };
        let bench = get("bench")?.clone();
        let ops: u64 = get("ops")?
            .parse()
            .map_err(|_| "RESULT ops= is not an integer".to_string())?;
        let secs: f64 = get("secs")?
            .parse()
            .map_err(|_| "RESULT secs= is not a number".to_string())?;
        let ops_per_sec: f64 = get("ops_per_sec")?
            .parse()
            .map_err(|_| "RESULT ops_per_sec= is not a number".to_string())?;
        if !secs.is_finite() || secs < 0.0 || !ops_per_sec.is_finite() || ops_per_sec < 0.0 {
            return Err("RESULT secs/ops_per_sec out of range".into());
        }
        Ok(ResultLine {
            bench,
            ops,
            secs,
            ops_per_sec,
            fields,
        })
    }

    /// The last RESULT line in a program's output.
    pub fn find_in(stdout: &str) -> Result<ResultLine, String> {
        let line = stdout
            .lines()
            .rev()
            .find(|l| l.starts_with("RESULT "))
            .ok_or_else(|| "no RESULT line in the output".to_string())?;
        ResultLine::parse(line)
    }

    pub fn get(&self, k: &str) -> Option<&str> {
        self.fields.get(k).map(String::as_str)
    }

    pub fn get_f64(&self, k: &str) -> Option<f64> {
        self.get(k).and_then(|v| v.parse().ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_line() {
        let l = "RESULT bench=mt-remote ops=100 secs=0.5 ops_per_sec=200.0 threads=4 fallback_rate=0.000100 malloc_from=/x/libc.so.6";
        let r = ResultLine::parse(l).unwrap();
        assert_eq!(r.bench, "mt-remote");
        assert_eq!(r.ops, 100);
        assert_eq!(r.secs, 0.5);
        assert_eq!(r.ops_per_sec, 200.0);
        assert_eq!(r.get("threads"), Some("4"));
        assert_eq!(r.get_f64("fallback_rate"), Some(0.0001));
        assert_eq!(r.get("malloc_from"), Some("/x/libc.so.6"));
    }

    #[test]
    fn finds_the_last_result_line() {
        let out = "human text\nRESULT bench=a ops=1 secs=1 ops_per_sec=1\nmore\nRESULT bench=b ops=2 secs=1 ops_per_sec=2\ntrailer\n";
        assert_eq!(ResultLine::find_in(out).unwrap().bench, "b");
        assert!(ResultLine::find_in("nothing here").is_err());
    }

    #[test]
    fn rejects_malformed_lines() {
        for bad in [
            "RESULTS bench=a ops=1 secs=1 ops_per_sec=1",
            "RESULT bench=a ops=1 secs=1",
            "RESULT bench=a ops=x secs=1 ops_per_sec=1",
            "RESULT bench=a ops=1 secs=nan ops_per_sec=1",
            "RESULT bench=a ops=1 secs=1 ops_per_sec=1 junk",
            "RESULT bench=a ops=1 secs=1 ops_per_sec=1 k=",
            "RESULT bench=a bench=b ops=1 secs=1 ops_per_sec=1",
        ] {
            assert!(ResultLine::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn round_trips_what_the_programs_print() {
        let rep = crate::common::Report::new("random-mixed", 1234, 0.25).kv("sizes", "16-2048");
        let r = ResultLine::parse(&rep.result_line()).unwrap();
        assert_eq!(r.ops, 1234);
        assert_eq!(r.ops_per_sec, 4936.0);
        assert_eq!(r.get("sizes"), Some("16-2048"));
    }
}
