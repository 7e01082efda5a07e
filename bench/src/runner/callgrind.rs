//! `compare --callgrind ROW`: instructions per operation under valgrind's callgrind.
//!
//! The benchmark runs as `valgrind --tool=callgrind --trace-children=no ... EXE bench ...` with
//! `LD_PRELOAD` set in valgrind's own environment: valgrind hands the variable on to the
//! client (adding its own preload objects in front), so the allocator is preloaded into the
//! program being measured and nothing else is traced. Ir/op = total Ir of the client / ops
//! from its RESULT line (startup and the untimed cleanup included, so use enough iterations).

use super::alloc::{malloc_is_from, Alloc};
use super::exec;
use super::machine::{machine, now_utc};
use super::matrix::Row;
use super::result::ResultLine;
use super::stats::ratio;
use serde_json::json;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// First event count (Ir) of the `totals:` (or `summary:`) line of a callgrind output file.
pub fn parse_total_ir(text: &str) -> Option<u64> {
    let find = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
    };
    find("totals:").or_else(|| find("summary:"))
}

pub struct CgResult {
    pub alloc: String,
    pub ir: Option<u64>,
    pub ops: Option<u64>,
    pub note: String,
    pub out_file: PathBuf,
}

impl CgResult {
    pub fn ir_per_op(&self) -> Option<f64> {
        match (self.ir, self.ops) {
            (Some(i), Some(o)) if o > 0 => Some(i as f64 / o as f64),
            _ => None,
        }
    }
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
pub fn run(
    exe: &Path,
    row: &Row,
    allocs: &[Alloc],
    baseline: &str,
    out_dir: &Path,
    timeout: f64,
    command_line: &str,
    missing: &[(String, String)],
) -> Result<String, String> {
    let ok = std::process::Command::new("valgrind")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        return Err("valgrind not found (apt-get install -y valgrind)".into());
    }
    std::fs::create_dir_all(out_dir).map_err(|e| format!("create {}: {e}", out_dir.display()))?;
    let mut child_args = vec!["bench".to_string(), row.bench.to_string()];
    child_args.extend(row.args.iter().cloned());

    let mut results = Vec::new();
    for (i, a) in allocs.iter().enumerate() {
        let out_file = out_dir.join(format!(
            "callgrind.{}.{}.out",
            sanitize(&row.name),
            sanitize(&a.name)
        ));
        let prefix = vec![
            "valgrind".to_string(),
            "--tool=callgrind".to_string(),
            "--trace-children=no".to_string(),
            format!("--callgrind-out-file={}", out_file.display()),
        ];
        eprintln!(
            "[callgrind {}/{}] {} / {} ...",
            i + 1,
            allocs.len(),
            row.name,
            a.name
        );
        let cmd = exec::command(&prefix, exe, &child_args, a.lib.as_deref());
        let o = exec::run(cmd, Duration::from_secs_f64(timeout))
            .map_err(|e| format!("valgrind: {e}"))?;
        let mut r = CgResult {
            alloc: a.name.clone(),
            ir: None,
            ops: None,
            note: String::new(),
            out_file: out_file.clone(),
        };
        if !o.ok() {
            r.note = o.describe_failure();
        } else {
            match ResultLine::find_in(&o.stdout) {
                Ok(res) => {
                    r.ops = Some(res.ops);
                    if let (Some(lib), Some(from)) = (&a.lib, res.get("malloc_from")) {
                        if !malloc_is_from(from, lib) {
                            r.note = format!("preload not in effect: malloc from {from}");
                        }
                    }
                }
                Err(e) => r.note = e,
            }
            match std::fs::read_to_string(&out_file)
                .ok()
                .as_deref()
                .and_then(parse_total_ir)
            {
                Some(ir) => r.ir = Some(ir),
                None => r.note = format!("no totals in {}", out_file.display()),
            }
        }
        match r.ir_per_op() {
            Some(x) => eprintln!(
                "    {:.1} Ir/op ({} Ir, {} ops)",
                x,
                r.ir.unwrap_or(0),
                r.ops.unwrap_or(0)
            ),
            None => eprintln!("    failed: {}", r.note),
        }
        results.push(r);
    }

    let base = results
        .iter()
        .find(|r| r.alloc == baseline)
        .and_then(|r| r.ir_per_op());
    let m = machine();
    let date = now_utc();
    let mut md = String::new();
    let _ = writeln!(md, "# hakozuna-bench callgrind: row `{}`\n", row.name);
    let _ = writeln!(md, "- Date: {date}");
    let _ = writeln!(
        md,
        "- Machine: {} CPUs (nproc), {}, {}",
        m.nproc, m.cpu_model, m.kernel
    );
    let _ = writeln!(md, "- Command: `{command_line}`");
    let _ = writeln!(md, "- Program: `{}` ({})", row.command(), row.desc);
    let _ = writeln!(
        md,
        "- Ir = instructions executed by the client under `valgrind --tool=callgrind --trace-children=no` (LD_PRELOAD passed through valgrind's environment); Ir/op = total Ir / ops (startup and cleanup included); lower is better"
    );
    if row.threads > 1 {
        let _ = writeln!(
            md,
            "- {} threads (valgrind runs them one at a time)",
            row.threads
        );
    }
    for (n, why) in missing {
        let _ = writeln!(md, "- Missing (not run): {n}: {why}");
    }
    let _ = writeln!(
        md,
        "\n| allocator | total Ir | ops | Ir/op | vs {baseline} | notes |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---|");
    for r in &results {
        let rel = r.ir_per_op().and_then(|x| base.and_then(|b| ratio(x, b)));
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} |",
            r.alloc,
            r.ir.map(|x| x.to_string()).unwrap_or_else(|| "-".into()),
            r.ops.map(|x| x.to_string()).unwrap_or_else(|| "-".into()),
            r.ir_per_op()
                .map(|x| format!("{x:.1}"))
                .unwrap_or_else(|| "-".into()),
            rel.map(|x| format!("{x:.2}x"))
                .unwrap_or_else(|| "-".into()),
            r.note.replace('|', "/")
        );
    }
    let js = json!({
        "tool": "hakozuna-bench compare --callgrind",
        "date": date,
        "machine": {"nproc": m.nproc, "cpu_model": m.cpu_model, "kernel": m.kernel},
        "command": command_line,
        "row": {"name": row.name, "command": row.command(), "threads": row.threads},
        "baseline": baseline,
        "results": results.iter().map(|r| json!({
            "allocator": r.alloc,
            "total_ir": r.ir,
            "ops": r.ops,
            "ir_per_op": r.ir_per_op(),
            "note": r.note,
            "callgrind_out": r.out_file.display().to_string(),
        })).collect::<Vec<_>>(),
        "missing": missing.iter().map(|(n, w)| json!({"name": n, "reason": w})).collect::<Vec<_>>(),
    });
    let name = sanitize(&row.name);
    let mdp = out_dir.join(format!("callgrind-{name}.md"));
    let jsp = out_dir.join(format!("callgrind-{name}.json"));
    std::fs::write(&mdp, &md).map_err(|e| format!("write {}: {e}", mdp.display()))?;
    std::fs::write(
        &jsp,
        serde_json::to_string_pretty(&js).unwrap_or_default() + "\n",
    )
    .map_err(|e| format!("write {}: {e}", jsp.display()))?;
    eprintln!("wrote {} and {}", mdp.display(), jsp.display());
    Ok(md)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals() {
        let text = "# callgrind format\nversion: 1\nevents: Ir\nsummary: 12345\nfl=x\n0 3\ntotals: 123456789\n";
        assert_eq!(parse_total_ir(text), Some(123_456_789));
        assert_eq!(parse_total_ir("events: Ir\nsummary: 42\n"), Some(42));
        assert_eq!(parse_total_ir("nothing"), None);
    }
}
