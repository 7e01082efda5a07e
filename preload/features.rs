//! The engine's feature list, read from its `Cargo.toml` — the one place it is defined.
//!
//! Shared by `preload/build.rs` (which turns a lane preset into `--cfg feature="…"` for the
//! preload libraries) and by `tests/features.rs` (which checks every name the preload crates
//! and `scripts/ab.sh` use against this list), so the build and its check read the manifest
//! the same way.
//!
//! The parser covers the TOML the manifests use for these tables: `key = "string"` and
//! `key = ["string", …]` (arrays may span lines, with comments and a trailing comma).
//! Anything else inside a table it is asked for is an error, never silently skipped.

use std::collections::{BTreeMap, BTreeSet};

/// A value of a parsed table entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Str(String),
    List(Vec<String>),
}

/// A `[features]` table: feature name → the names it enables.
pub type Features = BTreeMap<String, Vec<String>>;

/// The entries of table `[name]` (e.g. `features` or `package.metadata.lane`), in file
/// order. `Ok(None)` if the manifest has no such table.
pub fn table(manifest: &str, name: &str) -> Result<Option<Vec<(String, Value)>>, String> {
    let header = format!("[{name}]");
    let mut start = None;
    let mut offset = 0;
    for line in manifest.split_inclusive('\n') {
        let code = strip_comment(line).trim();
        if code == header {
            if start.is_some() {
                return Err(format!("table {header} appears twice"));
            }
            start = Some(offset + line.len());
        }
        offset += line.len();
    }
    let Some(start) = start else { return Ok(None) };
    let line0 = manifest[..start].matches('\n').count() + 1;
    let mut p = Parser {
        s: &manifest[start..],
        i: 0,
        line: line0,
    };
    let mut entries: Vec<(String, Value)> = Vec::new();
    loop {
        p.skip_ws_and_comments();
        match p.peek() {
            None | Some('[') => break, // end of the manifest, or the next table
            _ => {}
        }
        let line = p.line;
        let key = p.key()?;
        p.skip_inline_ws();
        p.expect('=')?;
        p.skip_inline_ws();
        let value = match p.peek() {
            Some('"') | Some('\'') => Value::Str(p.string()?),
            Some('[') => Value::List(p.list()?),
            _ => return Err(p.err("expected a string or an array of strings")),
        };
        p.skip_inline_ws();
        match p.peek() {
            None | Some('\n') | Some('\r') | Some('#') => {}
            _ => return Err(p.err("expected the end of the line after the value")),
        }
        if entries.iter().any(|(k, _)| *k == key) {
            return Err(format!("{header}: key `{key}` defined twice (line {line})"));
        }
        entries.push((key, value));
    }
    Ok(Some(entries))
}

/// The `[features]` table as a map (every value must be an array); `Ok(None)` if the
/// manifest has none.
pub fn features(manifest: &str) -> Result<Option<Features>, String> {
    let Some(entries) = table(manifest, "features")? else {
        return Ok(None);
    };
    let mut map = Features::new();
    for (k, v) in entries {
        match v {
            Value::List(l) => {
                map.insert(k, l);
            }
            Value::Str(_) => return Err(format!("[features]: `{k}` is not an array")),
        }
    }
    Ok(Some(map))
}

/// Every name a feature of `table` enables that is not itself a feature of `table`, as
/// "`feature` names `missing`" lines (empty if the table is closed). Cargo's `dep:x` and
/// `x/y` forms are reported too: the preload libraries have no such dependencies to forward.
pub fn undefined_names(table: &Features) -> Vec<String> {
    let mut out = Vec::new();
    for (feature, names) in table {
        for n in names {
            if !table.contains_key(n) {
                out.push(format!(
                    "feature `{feature}` names `{n}`, which is not a feature of the engine"
                ));
            }
        }
    }
    out
}

/// `names` and everything they enable, recursively (what cargo would turn on for
/// `--features names`). An unknown name is an error naming it and who named it (`origin` for
/// the names given).
pub fn expand<'a>(
    table: &Features,
    names: impl IntoIterator<Item = &'a str>,
    origin: &str,
) -> Result<BTreeSet<String>, String> {
    let mut on = BTreeSet::new();
    let mut todo: Vec<(String, String)> = names
        .into_iter()
        .map(|n| (n.to_string(), origin.to_string()))
        .collect();
    while let Some((name, from)) = todo.pop() {
        let Some(enables) = table.get(&name) else {
            return Err(format!(
                "`{name}` (named by {from}) is not a feature of the engine's Cargo.toml"
            ));
        };
        if on.insert(name.clone()) {
            for e in enables {
                todo.push((e.clone(), format!("feature `{name}`")));
            }
        }
    }
    Ok(on)
}

/// A comma-separated feature list (`HAKOZUNA_*_FEATURES`): names trimmed, empty items dropped.
pub fn split_list(s: &str) -> Vec<&str> {
    s.split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect()
}

fn strip_comment(line: &str) -> &str {
    // Good enough for header lines (no `#` inside table names).
    line.split('#').next().unwrap_or("")
}

struct Parser<'a> {
    s: &'a str,
    i: usize,
    line: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.s[self.i..].chars().next()
    }
    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.i += c.len_utf8();
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }
    fn err(&self, what: &str) -> String {
        let rest: String = self.s[self.i..].chars().take(30).collect();
        format!("line {}: {what}, found {rest:?}", self.line)
    }
    fn expect(&mut self, c: char) -> Result<(), String> {
        if self.peek() == Some(c) {
            self.bump();
            Ok(())
        } else {
            Err(self.err(&format!("expected `{c}`")))
        }
    }
    fn skip_inline_ws(&mut self) {
        while matches!(self.peek(), Some(' ') | Some('\t')) {
            self.bump();
        }
    }
    fn skip_ws_and_comments(&mut self) {
        loop {
            match self.peek() {
                Some(c) if c.is_whitespace() => {
                    self.bump();
                }
                Some('#') => {
                    while !matches!(self.peek(), None | Some('\n')) {
                        self.bump();
                    }
                }
                _ => return,
            }
        }
    }
    fn key(&mut self) -> Result<String, String> {
        if matches!(self.peek(), Some('"') | Some('\'')) {
            return self.string();
        }
        let from = self.i;
        while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            self.bump();
        }
        if self.i == from {
            return Err(self.err("expected a key"));
        }
        Ok(self.s[from..self.i].to_string())
    }
    fn string(&mut self) -> Result<String, String> {
        let quote = self.bump().expect("caller saw a quote");
        let mut out = String::new();
        loop {
            match self.bump() {
                None | Some('\n') => return Err(self.err("unterminated string")),
                Some(c) if c == quote => return Ok(out),
                Some('\\') if quote == '"' => match self.bump() {
                    Some('"') => out.push('"'),
                    Some('\\') => out.push('\\'),
                    _ => return Err(self.err("unsupported escape in a string")),
                },
                Some(c) => out.push(c),
            }
        }
    }
    fn list(&mut self) -> Result<Vec<String>, String> {
        self.expect('[')?;
        let mut out = Vec::new();
        loop {
            self.skip_ws_and_comments();
            match self.peek() {
                Some(']') => {
                    self.bump();
                    return Ok(out);
                }
                Some('"') | Some('\'') => out.push(self.string()?),
                _ => return Err(self.err("expected a string or `]` in the array")),
            }
            self.skip_ws_and_comments();
            match self.peek() {
                Some(',') => {
                    self.bump();
                }
                Some(']') => {}
                _ => return Err(self.err("expected `,` or `]` in the array")),
            }
        }
    }
}
