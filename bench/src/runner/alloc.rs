//! Allocator discovery: glibc (no preload), the two hakozuna lanes, and peers from Debian.

use std::path::{Path, PathBuf};
use std::process::Command;

/// An allocator to compare: a name and the library to preload (None = glibc, no preload).
#[derive(Clone, Debug, PartialEq)]
pub struct Alloc {
    pub name: String,
    pub lib: Option<PathBuf>,
}

/// Where a known allocator comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    System,
    /// Built by `cargo build --release` in the workspace.
    Workspace,
    /// A Debian package.
    Package(&'static str),
    /// Given with `--alloc NAME=PATH`.
    Explicit,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    pub name: String,
    /// Possible paths, first existing wins (empty for glibc).
    pub paths: Vec<PathBuf>,
    pub source: Source,
}

impl Candidate {
    pub fn resolve(&self) -> Option<Alloc> {
        if self.source == Source::System {
            return Some(Alloc {
                name: self.name.clone(),
                lib: None,
            });
        }
        self.paths.iter().find(|p| p.is_file()).map(|p| Alloc {
            name: self.name.clone(),
            lib: Some(p.clone()),
        })
    }

    /// Why it is missing, and what to do.
    pub fn missing_reason(&self) -> String {
        let where_ = self
            .paths
            .first()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        match &self.source {
            Source::Workspace => {
                format!("{where_} not found: run `cargo build --release` at the workspace root")
            }
            Source::Package(pkg) => format!(
                "{where_} not found: `apt-get install -y {pkg}` (or pass --install as root)"
            ),
            Source::Explicit => format!("{where_} not found"),
            Source::System => String::new(),
        }
    }
}

/// Multiarch library directories to look in (Debian layout first).
fn lib_dirs() -> Vec<PathBuf> {
    let triple = match std::env::consts::ARCH {
        "x86_64" => "x86_64-linux-gnu",
        "aarch64" => "aarch64-linux-gnu",
        "x86" => "i386-linux-gnu",
        other => other,
    };
    vec![
        PathBuf::from(format!("/usr/lib/{triple}")),
        PathBuf::from(format!("/lib/{triple}")),
        PathBuf::from("/usr/lib"),
        PathBuf::from("/usr/local/lib"),
    ]
}

fn in_lib_dirs(file: &str) -> Vec<PathBuf> {
    lib_dirs().into_iter().map(|d| d.join(file)).collect()
}

/// Every known allocator plus the explicit ones, in report order.
pub fn candidates(root: &Path, explicit: &[(String, PathBuf)]) -> Vec<Candidate> {
    let rel = root.join("target").join("release");
    let mut v = vec![
        Candidate {
            name: "glibc".into(),
            paths: vec![],
            source: Source::System,
        },
        Candidate {
            name: "hakozuna".into(),
            paths: vec![rel.join("libhakozuna.so")],
            source: Source::Workspace,
        },
        Candidate {
            name: "hakozuna-fast".into(),
            paths: vec![rel.join("libhakozuna_fast.so")],
            source: Source::Workspace,
        },
        Candidate {
            name: "jemalloc".into(),
            paths: in_lib_dirs("libjemalloc.so.2"),
            source: Source::Package("libjemalloc2"),
        },
        Candidate {
            name: "tcmalloc".into(),
            paths: in_lib_dirs("libtcmalloc_minimal.so.4"),
            source: Source::Package("libgoogle-perftools4"),
        },
        Candidate {
            name: "mimalloc".into(),
            paths: in_lib_dirs("libmimalloc.so.2"),
            source: Source::Package("libmimalloc2.0"),
        },
    ];
    for (name, path) in explicit {
        v.retain(|c| &c.name != name);
        let path = if path.is_relative() {
            std::env::current_dir()
                .map(|d| d.join(path))
                .unwrap_or_else(|_| path.clone())
        } else {
            path.clone()
        };
        v.push(Candidate {
            name: name.clone(),
            paths: vec![path],
            source: Source::Explicit,
        });
    }
    v
}

/// Keep the candidates named in `only` (in that order); error on unknown names.
pub fn select(cands: Vec<Candidate>, only: Option<&[String]>) -> Result<Vec<Candidate>, String> {
    let Some(only) = only else { return Ok(cands) };
    let mut out = Vec::new();
    for n in only {
        let c = cands.iter().find(|c| &c.name == n).ok_or_else(|| {
            let known: Vec<&str> = cands.iter().map(|c| c.name.as_str()).collect();
            format!(
                "unknown allocator {n:?} (known: {}; add others with --alloc NAME=PATH)",
                known.join(", ")
            )
        })?;
        if !out.contains(c) {
            out.push(c.clone());
        }
    }
    Ok(out)
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn apt_get(args: &[&str]) -> bool {
    eprintln!("+ apt-get {}", args.join(" "));
    Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(std::process::Stdio::from(std::io::stderr()))
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// `apt-get install -y` the packages of missing peers (root only; `apt-get update` and retry
/// when the first attempt fails). Returns a message for each package that could not be
/// installed.
pub fn install_missing(cands: &[Candidate]) -> Vec<String> {
    let mut pkgs: Vec<&str> = cands
        .iter()
        .filter(|c| c.resolve().is_none())
        .filter_map(|c| match c.source {
            Source::Package(p) => Some(p),
            _ => None,
        })
        .collect();
    pkgs.dedup();
    apt_install(&pkgs)
}

/// `apt-get install -y` `pkgs` (root only; `apt-get update` and retry when the first attempt
/// fails). Returns a message when they could not be installed.
pub fn apt_install(pkgs: &[&str]) -> Vec<String> {
    if pkgs.is_empty() {
        return vec![];
    }
    if !is_root() {
        return vec![format!(
            "--install needs root; not installing {} (run: sudo apt-get install -y {})",
            pkgs.join(" "),
            pkgs.join(" ")
        )];
    }
    let mut args = vec!["install", "-y", "--no-install-recommends"];
    args.extend(pkgs);
    if apt_get(&args) {
        return vec![];
    }
    eprintln!("apt-get install failed; running apt-get update and retrying");
    if !apt_get(&["update"]) || !apt_get(&args) {
        return vec![format!("apt-get could not install {}", pkgs.join(" "))];
    }
    vec![]
}

/// Does the process' `malloc` (as reported by a benchmark's `malloc_from=`) come from `lib`?
pub fn malloc_is_from(reported: &str, lib: &Path) -> bool {
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let rep = Path::new(reported);
    if canon(rep) == canon(lib) {
        return true;
    }
    rep.file_name().is_some() && rep.file_name() == lib.file_name()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_candidates_and_selection() {
        let c = candidates(
            Path::new("/ws"),
            &[("mine".into(), PathBuf::from("/opt/libmine.so"))],
        );
        let names: Vec<&str> = c.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "glibc",
                "hakozuna",
                "hakozuna-fast",
                "jemalloc",
                "tcmalloc",
                "mimalloc",
                "mine"
            ]
        );
        assert_eq!(
            c[1].paths[0],
            PathBuf::from("/ws/target/release/libhakozuna.so")
        );
        assert_eq!(
            c[2].paths[0],
            PathBuf::from("/ws/target/release/libhakozuna_fast.so")
        );
        assert_eq!(
            c[0].resolve(),
            Some(Alloc {
                name: "glibc".into(),
                lib: None
            })
        );
        assert!(c[1].resolve().is_none());
        assert!(c[1].missing_reason().contains("cargo build --release"));
        assert!(c[6].resolve().is_none());

        let s = select(c.clone(), Some(&["mine".to_string(), "glibc".to_string()])).unwrap();
        assert_eq!(
            s.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["mine", "glibc"]
        );
        assert!(select(c, Some(&["nope".to_string()])).is_err());
    }

    #[test]
    fn explicit_overrides_known() {
        let c = candidates(
            Path::new("/ws"),
            &[("jemalloc".into(), PathBuf::from("/x/libjemalloc.so"))],
        );
        let j: Vec<_> = c.iter().filter(|c| c.name == "jemalloc").collect();
        assert_eq!(j.len(), 1);
        assert_eq!(j[0].source, Source::Explicit);
    }

    #[test]
    fn malloc_provider_matching() {
        assert!(malloc_is_from(
            "/usr/lib/x/libjemalloc.so.2",
            Path::new("/other/libjemalloc.so.2")
        ));
        assert!(!malloc_is_from(
            "/lib/x86_64-linux-gnu/libc.so.6",
            Path::new("/ws/libhakozuna.so")
        ));
    }
}
