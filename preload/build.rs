//! Build script of the preload libraries (`build = "../build.rs"` in preload/scale,
//! preload/fast and preload/secure).
//!
//! The feature list is defined once, in the engine's `Cargo.toml` `[features]`. A preload
//! package names only its lane preset (`[package.metadata.lane] preset`); this script expands
//! the preset through the engine's table, as cargo would, and passes the result to rustc as
//! `--cfg feature="…"`, plus `capi` (the C malloc API: every preload library exports it).
//! The preload packages declare no cargo features of their own, so building the whole
//! workspace cannot unify the lanes.
//!
//! A/B builds: if the package's `override-env` variable (`HAKOZUNA_SCALE_FEATURES`,
//! `HAKOZUNA_FAST_FEATURES`, `HAKOZUNA_SECURE_FEATURES`) is set, its comma-separated list replaces the preset (empty =
//! every box off); each name is expanded the same way. scripts/ab.sh uses this.

use std::env;
use std::fs;
use std::path::PathBuf;

#[path = "features.rs"]
mod features;

fn main() {
    // Bind our own references to malloc & co inside the library (no PLT hop, no interposition of
    // our internal calls), and keep the library resident.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-Bsymbolic-functions");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");

    if let Err(e) = lane_features() {
        // Cargo shows a failed build script's stderr.
        eprintln!("hakozuna preload build: {e}");
        std::process::exit(1);
    }
}

fn lane_features() -> Result<(), String> {
    let dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").map_err(|e| e.to_string())?);
    let own_path = dir.join("Cargo.toml");
    let engine_path = dir.join("../../Cargo.toml");
    println!("cargo:rerun-if-changed={}", own_path.display());
    println!("cargo:rerun-if-changed={}", engine_path.display());
    // Listing files turns off cargo's default "any file of the package" check: name ours.
    println!("cargo:rerun-if-changed=../build.rs");
    println!("cargo:rerun-if-changed=../features.rs");

    let read = |p: &PathBuf| fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
    let own = read(&own_path)?;
    let engine = read(&engine_path)?;

    let table = features::features(&engine)
        .map_err(|e| format!("{}: {e}", engine_path.display()))?
        .ok_or_else(|| format!("{} has no [features] table", engine_path.display()))?;
    let undefined = features::undefined_names(&table);
    if !undefined.is_empty() {
        return Err(format!(
            "{}:\n  {}",
            engine_path.display(),
            undefined.join("\n  ")
        ));
    }

    let lane = features::table(&own, "package.metadata.lane")
        .map_err(|e| format!("{}: {e}", own_path.display()))?
        .ok_or_else(|| {
            format!(
                "{} has no [package.metadata.lane] table",
                own_path.display()
            )
        })?;
    let field = |k: &str| match lane.iter().find(|(key, _)| key == k) {
        Some((_, features::Value::Str(s))) => Ok(s.clone()),
        _ => Err(format!(
            "{}: [package.metadata.lane] needs `{k} = \"…\"`",
            own_path.display()
        )),
    };
    let preset = field("preset")?;
    let override_env = field("override-env")?;

    println!("cargo:rerun-if-env-changed={override_env}");
    let requested = match env::var(&override_env) {
        Ok(list) => Some(list),
        Err(env::VarError::NotPresent) => None,
        Err(e) => return Err(format!("{override_env}: {e}")),
    };
    let on = match &requested {
        None => features::expand(
            &table,
            [preset.as_str()],
            &format!("`preset` in {}", own_path.display()),
        )?,
        Some(list) => features::expand(
            &table,
            features::split_list(list),
            &format!("{override_env}={list:?}"),
        )?,
    };
    if let Some(list) = &requested {
        let shown: Vec<&str> = on.iter().map(String::as_str).collect();
        println!(
            "cargo:warning={override_env}={list:?} replaces {preset}: building with {}",
            if shown.is_empty() {
                "no boxes".to_string()
            } else {
                shown.join(",")
            }
        );
    }

    // Every engine feature (and capi) is a known cfg value, on or not.
    let known: Vec<String> = table
        .keys()
        .map(String::as_str)
        .chain(["capi"])
        .map(|n| format!("\"{n}\""))
        .collect();
    println!(
        "cargo:rustc-check-cfg=cfg(feature, values({}))",
        known.join(", ")
    );
    println!("cargo:rustc-cfg=feature=\"capi\"");
    for f in &on {
        println!("cargo:rustc-cfg=feature=\"{f}\"");
    }
    Ok(())
}
