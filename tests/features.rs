//! One feature list: the engine's `Cargo.toml` `[features]` is the only definition of the lane
//! presets and boxes. These tests fail, naming the feature, when
//! - a feature of the engine (a preset included) enables a name the engine does not define,
//! - a preload package (preload/*/Cargo.toml) names a preset the engine lacks, or defines a
//!   feature list of its own,
//! - scripts/ab.sh switches a box the engine does not define (removing an unknown name would
//!   silently build the default under a variant's name).
//!
//! They read the manifests with the same parser as preload/build.rs.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

#[path = "../preload/features.rs"]
mod features;

use features::{Features, Value};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(p: &Path) -> String {
    fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The engine's feature table, and what is wrong with it.
fn check_engine(manifest: &str) -> Result<(Features, Vec<String>), String> {
    let table = features::features(manifest)?.ok_or("the engine's Cargo.toml has no [features]")?;
    let problems = features::undefined_names(&table);
    Ok((table, problems))
}

/// What is wrong with one preload package's manifest (`name` labels the messages).
fn check_preload(engine: &Features, name: &str, manifest: &str) -> Vec<String> {
    let mut out = Vec::new();
    match features::features(manifest) {
        Ok(None) => {}
        Ok(Some(own)) => {
            let named: BTreeSet<&String> = own
                .iter()
                .flat_map(|(f, l)| std::iter::once(f).chain(l))
                .collect();
            for n in named {
                if !engine.contains_key(n) {
                    out.push(format!(
                        "{name}: names feature `{n}`, which the engine lacks"
                    ));
                }
            }
            out.push(format!(
                "{name}: has its own [features] ({}); the list lives only in the engine's \
                 Cargo.toml (name a preset in [package.metadata.lane])",
                own.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        Err(e) => out.push(format!("{name}: [features]: {e}")),
    }
    let lane = match features::table(manifest, "package.metadata.lane") {
        Ok(Some(lane)) => lane,
        Ok(None) => {
            out.push(format!("{name}: no [package.metadata.lane] table"));
            return out;
        }
        Err(e) => {
            out.push(format!("{name}: [package.metadata.lane]: {e}"));
            return out;
        }
    };
    for key in ["preset", "override-env"] {
        if !lane
            .iter()
            .any(|(k, v)| k == key && matches!(v, Value::Str(_)))
        {
            out.push(format!(
                "{name}: [package.metadata.lane] lacks `{key} = \"…\"`"
            ));
        }
    }
    for (k, v) in &lane {
        match (k.as_str(), v) {
            ("preset", Value::Str(p)) => {
                if let Err(e) =
                    features::expand(engine, [p.as_str()], &format!("`preset` in {name}"))
                {
                    out.push(e);
                }
            }
            ("override-env", Value::Str(_)) => {}
            _ => out.push(format!(
                "{name}: [package.metadata.lane]: unknown entry `{k}`"
            )),
        }
    }
    out
}

/// The `"name|box|ops"` lines of ab.sh's VARIANTS, and what is wrong with their ops.
fn check_ab(engine: &Features, script: &str) -> (usize, Vec<String>) {
    let mut out = Vec::new();
    let mut variants = 0;
    let mut inside = false;
    for (i, line) in script.lines().enumerate() {
        let t = line.trim();
        if t.starts_with("VARIANTS=(") {
            inside = true;
            continue;
        }
        if !inside {
            continue;
        }
        if t == ")" {
            break;
        }
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = t.trim_matches('"').split('|').collect();
        if !(t.starts_with('"') && t.ends_with('"') && fields.len() == 3) {
            out.push(format!(
                "scripts/ab.sh:{}: not a \"name|box|ops\" variant: {t}",
                i + 1
            ));
            continue;
        }
        variants += 1;
        for op in fields[2].split_whitespace() {
            let Some(f) = op.strip_prefix('+').or_else(|| op.strip_prefix('-')) else {
                out.push(format!(
                    "scripts/ab.sh:{}: variant `{}`: `{op}` is not +feature or -feature",
                    i + 1,
                    fields[0]
                ));
                continue;
            };
            if !engine.contains_key(f) {
                out.push(format!(
                    "scripts/ab.sh:{}: variant `{}` switches `{f}`, which is not a feature of the engine",
                    i + 1,
                    fields[0]
                ));
            }
        }
    }
    (variants, out)
}

fn engine() -> Features {
    let (table, problems) = check_engine(&read(&root().join("Cargo.toml"))).unwrap();
    assert!(
        problems.is_empty(),
        "Cargo.toml [features]:\n  {}",
        problems.join("\n  ")
    );
    table
}

#[test]
fn every_engine_feature_names_only_engine_features() {
    let table = engine();
    for preset in [
        "default",
        "scale-defaults",
        "fast-defaults",
        "secure-defaults",
    ] {
        assert!(
            table.contains_key(preset),
            "the engine's Cargo.toml lacks `{preset}`"
        );
    }
}

#[test]
fn preload_packages_name_only_engine_features() {
    let table = engine();
    let mut seen = Vec::new();
    let mut problems = Vec::new();
    let dir = root().join("preload");
    for entry in fs::read_dir(&dir).unwrap() {
        let manifest = entry.unwrap().path().join("Cargo.toml");
        if !manifest.exists() {
            continue;
        }
        let name = manifest.strip_prefix(root()).unwrap().display().to_string();
        problems.extend(check_preload(&table, &name, &read(&manifest)));
        seen.push(name);
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            "preload/fast/Cargo.toml",
            "preload/scale/Cargo.toml",
            "preload/secure/Cargo.toml"
        ]
    );
    assert!(problems.is_empty(), "\n  {}", problems.join("\n  "));
}

#[test]
fn ab_script_switches_only_engine_features() {
    let table = engine();
    let (variants, problems) = check_ab(&table, &read(&root().join("scripts/ab.sh")));
    assert!(problems.is_empty(), "\n  {}", problems.join("\n  "));
    assert!(
        variants >= 10,
        "found only {variants} variants in scripts/ab.sh's VARIANTS"
    );
}

// The checks above on broken inputs: each must fail and name the culprit.

const ENGINE: &str = r#"
[package]
name = "x"

[features]
default = ["scale-defaults"]
# a comment
scale-defaults = [
    "remote-ring", # inline comment
    "stash-max",
]
fast-defaults = ["fast"]
fast = []
remote-ring = []
stash-count = []
stash-max = ["stash-count"]

[lints.rust]
unexpected_cfgs = { level = "warn" }
"#;

const PRELOAD: &str = r#"
[package]
name = "p"
build = "../build.rs"

[package.metadata.lane]
preset = "scale-defaults"
override-env = "HAKOZUNA_SCALE_FEATURES"

[lib]
path = "../../src/lib.rs"
"#;

#[test]
fn the_parser_reads_the_table_and_expands_presets() {
    let (table, problems) = check_engine(ENGINE).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(table.len(), 7);
    let on = features::expand(&table, ["scale-defaults"], "t").unwrap();
    assert_eq!(
        on.into_iter().collect::<Vec<_>>(),
        ["remote-ring", "scale-defaults", "stash-count", "stash-max"]
    );
    assert!(features::expand(&table, features::split_list(" remote-ring, ,fast "), "t").is_ok());
    assert!(features::expand(&table, features::split_list(""), "t")
        .unwrap()
        .is_empty());
    assert!(check_preload(&table, "p", PRELOAD).is_empty());
}

#[test]
fn a_preset_naming_an_undefined_feature_is_reported() {
    let broken = ENGINE.replace("\"remote-ring\", # inline", "\"remote-rign\", # inline");
    let (_, problems) = check_engine(&broken).unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("`scale-defaults` names `remote-rign`"),
        "{problems:?}"
    );
}

#[test]
fn a_preload_preset_the_engine_lacks_is_reported() {
    let (table, _) = check_engine(ENGINE).unwrap();
    let p = check_preload(
        &table,
        "p",
        &PRELOAD.replace("scale-defaults", "scale-default"),
    );
    assert!(p.len() == 1 && p[0].contains("`scale-default`"), "{p:?}");
}

#[test]
fn a_preload_feature_list_is_reported_naming_what_the_engine_lacks() {
    let (table, _) = check_engine(ENGINE).unwrap();
    let copy =
        format!("{PRELOAD}\n[features]\ndefault = [\"capi\", \"scale-defaults\"]\ncapi = []\n");
    let p = check_preload(&table, "p", &copy);
    assert!(
        p.iter()
            .any(|m| m.contains("names feature `capi`, which the engine lacks")),
        "{p:?}"
    );
    assert!(
        p.iter().any(|m| m.contains("has its own [features]")),
        "{p:?}"
    );
}

#[test]
fn an_ab_variant_switching_an_undefined_feature_is_reported() {
    let (table, _) = check_engine(ENGINE).unwrap();
    let script = "X=1\nVARIANTS=(\n  \"default|-|\"\n  \"no-ring|S41|-remote-ring +stash-max\"\n  \"typo|S41|-remote-rings\"\n)\n";
    let (n, p) = check_ab(&table, script);
    assert_eq!(n, 3);
    assert!(
        p.len() == 1 && p[0].contains("`remote-rings`") && p[0].contains("ab.sh:5"),
        "{p:?}"
    );
}

#[test]
fn malformed_tables_are_errors_not_skipped() {
    for bad in [
        "[features]\na = [\"b\"\n",        // unterminated array
        "[features]\na = { x = 1 }\n",     // inline table
        "[features]\na = []\na = []\n",    // duplicate key
        "[features]\na.b = []\n",          // dotted key
        "[features]\na = [\"b\" \"c\"]\n", // missing comma
    ] {
        assert!(features::features(bad).is_err(), "accepted {bad:?}");
    }
}
