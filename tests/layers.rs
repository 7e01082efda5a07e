//! The layer rule of design.md §2, checked on the source: every `crate::…` path in a module
//! (in `use` lines and inline) must name its own layer or one below it, must be one its
//! layer's module doc allows (the "May use:" sentence of `mod.rs`, `config.rs`, `stats.rs`),
//! and no modules may import each other, directly or around a cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Layers, highest first. `config` and `stats` share the bottom.
const LAYERS: &[&[&str]] = &[
    &["front"],
    &["remote"],
    &["heap"],
    &["ds"],
    &["page"],
    &["sys"],
    &["config", "stats"],
];

/// Crate-root files outside the layers: the root itself and the test-only loom models.
const UNLAYERED: &[&str] = &["lib", "loom_tests"];

fn rank(layer: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&layer))
}

fn src_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `src/heap/refill.rs` → `["heap", "refill"]`; `src/heap/mod.rs` → `["heap"]`.
fn module_of(file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src_dir()).unwrap();
    let mut parts: Vec<String> = rel
        .iter()
        .map(|c| c.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" {
        parts.push(stem.to_string());
    }
    parts
}

/// The code of a file without comments (line comments, doc comments and block comments) and
/// string literals, so that paths named in prose do not count.
fn code_of(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            while i < b.len() && !b[i..].starts_with(b"*/") {
                i += 1;
            }
            i += 2;
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

/// Expands a use tree such as `a::{b, c::{d, e as f}, self}` into full paths.
fn expand(prefix: &[String], tree: &str, out: &mut Vec<Vec<String>>) {
    let tree = tree.trim();
    if let Some(open) = tree.find('{') {
        let base: Vec<String> = tree[..open]
            .split("::")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        let mut pre = prefix.to_vec();
        pre.extend(base);
        let inner = &tree[open + 1..tree.rfind('}').unwrap()];
        let mut depth = 0;
        let mut start = 0;
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(&pre, &inner[start..i], out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        expand(&pre, &inner[start..], out);
    } else {
        let item = tree.split(" as ").next().unwrap().trim();
        if item.is_empty() {
            return;
        }
        let mut p = prefix.to_vec();
        p.extend(
            item.split("::")
                .map(str::trim)
                .filter(|s| *s != "self")
                .map(String::from),
        );
        out.push(p);
    }
}

/// Where a `super::`-relative path starts: the module `levels` steps above `module` (each
/// `super` of `heap/refill.rs`, module `heap::refill`, goes up one level; of `heap/mod.rs`,
/// module `heap`, too).
fn ancestor(module: &[String], levels: usize) -> Vec<String> {
    module[..module.len().saturating_sub(levels)].to_vec()
}

/// Splits a leading `crate::` or run of `super::` off `path`: the base it starts from and the
/// rest, or `None` for other paths.
fn split_base(module: &[String], path: &str) -> Option<(Vec<String>, String)> {
    if let Some(rest) = path.strip_prefix("crate::") {
        return Some((Vec::new(), rest.to_string()));
    }
    let mut rest = path;
    let mut levels = 0;
    while let Some(r) = rest.strip_prefix("super::") {
        rest = r;
        levels += 1;
    }
    (levels > 0).then(|| (ancestor(module, levels), rest.to_string()))
}

/// Every path the code reaches through `crate::` or `super::`, resolved to a path from the
/// crate root.
fn paths_of(module: &[String], code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    // `use` items, whole (they may span lines and group with braces).
    let mut rest = code;
    while let Some(at) = rest.find("use ") {
        let before_ok = at == 0
            || !rest.as_bytes()[at - 1].is_ascii_alphanumeric() && rest.as_bytes()[at - 1] != b'_';
        let after = &rest[at + 4..];
        let end = after.find(';').unwrap_or(after.len());
        let tree = after[..end].trim();
        if before_ok {
            if let Some((base, t)) = split_base(module, tree) {
                expand(&base, &t, &mut out);
            }
        }
        rest = &after[end..];
    }
    // Inline paths outside `use` items (inside them too: found twice, counted once).
    let bytes = code.as_bytes();
    for start in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(off) = code[from..].find(start) {
            let at = from + off;
            let prev = at.checked_sub(1).map(|i| bytes[i]);
            let len = code[at..]
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(code.len() - at);
            // A path's start, not the `super::` after another segment.
            if !prev.is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':') {
                if let Some((mut base, t)) = split_base(module, &code[at..at + len]) {
                    base.extend(t.split("::").filter(|s| !s.is_empty()).map(String::from));
                    if !base.is_empty() {
                        out.push(base);
                    }
                }
            }
            from = at + len.max(1);
        }
    }
    out
}

/// The module a path names: its longest prefix that is a module of the crate.
fn target_module(path: &[String], modules: &BTreeSet<Vec<String>>) -> Option<Vec<String>> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|p| modules.contains(p))
}

/// The layers a folder's module doc allows: the backticked names of its "May use" sentence.
fn allowed_by_doc(text: &str) -> Option<BTreeSet<String>> {
    let doc: String = text
        .lines()
        .take_while(|l| l.starts_with("//!"))
        .map(|l| l.trim_start_matches("//!").trim())
        .collect::<Vec<_>>()
        .join(" ");
    let at = doc.find("May use")?;
    let sentence = &doc[at..];
    let sentence = &sentence[..sentence.find(". ").map_or(sentence.len(), |e| e + 1)];
    Some(
        sentence
            .split('`')
            .skip(1)
            .step_by(2)
            .map(String::from)
            .collect(),
    )
}

struct Crate {
    modules: BTreeSet<Vec<String>>,
    /// module → (file, code)
    files: BTreeMap<Vec<String>, (PathBuf, String)>,
    /// layer name → what its doc allows
    allowed: BTreeMap<String, BTreeSet<String>>,
}

fn read_crate() -> Crate {
    let mut files = Vec::new();
    rust_files(&src_dir(), &mut files);
    let mut c = Crate {
        modules: BTreeSet::new(),
        files: BTreeMap::new(),
        allowed: BTreeMap::new(),
    };
    for f in files {
        let text = fs::read_to_string(&f).unwrap();
        let m = module_of(&f);
        if m.len() == 1 {
            if let Some(a) = allowed_by_doc(&text) {
                c.allowed.insert(m[0].clone(), a);
            }
        }
        c.modules.insert(m.clone());
        c.files.insert(m, (f, text));
    }
    c
}

/// Module → the other modules it imports, for every layered module.
fn imports(c: &Crate) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let mut g = BTreeMap::new();
    for (m, (_, text)) in &c.files {
        if UNLAYERED.contains(&m[0].as_str()) {
            continue;
        }
        let code = code_of(text);
        let mut targets = BTreeSet::new();
        for p in paths_of(m, &code) {
            if let Some(t) = target_module(&p, &c.modules) {
                if &t != m {
                    targets.insert(t);
                }
            }
        }
        g.insert(m.clone(), targets);
    }
    g
}

#[test]
fn every_layer_is_ranked_and_documented() {
    let c = read_crate();
    for m in c.modules.iter() {
        let top = m[0].as_str();
        assert!(
            UNLAYERED.contains(&top) || rank(top).is_some(),
            "src/{top}: not in a layer of design.md §2 (add it to LAYERS and the design)"
        );
    }
    for layer in LAYERS.iter().flat_map(|l| l.iter()) {
        assert!(
            c.allowed.contains_key(*layer),
            "{layer}: its module doc has no \"May use:\" sentence"
        );
    }
}

#[test]
fn no_module_imports_from_a_higher_layer_or_beyond_its_doc() {
    let c = read_crate();
    let mut errors = Vec::new();
    for (m, targets) in imports(&c) {
        let from = m[0].as_str();
        let from_rank = rank(from).unwrap();
        let file = c.files[&m].0.strip_prefix(src_dir()).unwrap().display();
        for t in targets {
            let to = t[0].as_str();
            if to == from {
                continue;
            }
            let Some(to_rank) = rank(to) else {
                errors.push(format!(
                    "src/{file} imports crate::{} outside the layers",
                    t.join("::")
                ));
                continue;
            };
            if to_rank < from_rank {
                errors.push(format!(
                    "src/{file} ({from}) imports crate::{} from the higher layer {to}",
                    t.join("::")
                ));
            } else if !c.allowed[from].contains(to) {
                errors.push(format!(
                    "src/{file} ({from}) imports crate::{}, but {from}'s doc does not allow {to}",
                    t.join("::")
                ));
            }
        }
    }
    assert!(
        errors.is_empty(),
        "layer violations:\n{}",
        errors.join("\n")
    );
}

#[test]
fn no_import_cycles() {
    let c = read_crate();
    let g = imports(&c);
    // Depth-first search for a back edge; report the cycle it closes.
    fn visit(
        m: &Vec<String>,
        g: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        state: &mut BTreeMap<Vec<String>, u8>,
        stack: &mut Vec<Vec<String>>,
    ) -> Option<Vec<Vec<String>>> {
        state.insert(m.clone(), 1);
        stack.push(m.clone());
        for t in g.get(m).into_iter().flatten() {
            match state.get(t).copied().unwrap_or(0) {
                1 => {
                    let at = stack.iter().position(|s| s == t).unwrap();
                    let mut cycle = stack[at..].to_vec();
                    cycle.push(t.clone());
                    return Some(cycle);
                }
                0 if g.contains_key(t) => {
                    if let Some(cy) = visit(t, g, state, stack) {
                        return Some(cy);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(m.clone(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for m in g.keys() {
        if state.get(m).copied().unwrap_or(0) == 0 {
            if let Some(cycle) = visit(m, &g, &mut state, &mut Vec::new()) {
                let names: Vec<String> = cycle.iter().map(|m| m.join("::")).collect();
                panic!("import cycle: {}", names.join(" -> "));
            }
        }
    }
}

/// The checker itself: a use tree expands to the modules it names, and prose does not count.
#[test]
fn the_checker_reads_use_trees_and_skips_comments() {
    let set = |paths: &[&[&str]]| -> BTreeSet<Vec<String>> {
        paths
            .iter()
            .map(|p| p.iter().map(|s| s.to_string()).collect())
            .collect()
    };
    let modules = set(&[
        &["page"],
        &["page", "arena"],
        &["heap"],
        &["heap", "send"],
        &["ds"],
        &["config"],
    ]);
    let code = code_of(
        "// use crate::front::alloc;\n/// crate::remote::ring\nuse crate::page::{arena::{self, X}, Y as Z};\nuse super::send::send_one;\nuse super::super::ds;\nfn f() { crate::heap::send::send(\"crate::sys\"); super::super::config::X; }",
    );
    let me: Vec<String> = vec!["heap".into(), "medium".into()];
    let found: BTreeSet<Vec<String>> = paths_of(&me, &code)
        .iter()
        .filter_map(|p| target_module(p, &modules))
        .collect();
    let want = set(&[
        &["page", "arena"],
        &["page"],
        &["heap", "send"],
        &["ds"],
        &["config"],
    ]);
    assert_eq!(found, want);
    assert_eq!(
        allowed_by_doc("//! Pages.\n//!\n//! May use: `sys`, `config`. Not `heap`.\n"),
        Some(["sys", "config"].into_iter().map(String::from).collect())
    );
}
