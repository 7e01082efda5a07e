//! Checks on the built preload libraries (run `cargo build --release` first): initial-exec
//! TLS only (no `__tls_get_addr` anywhere), at most 64 bytes of it per thread in every lane
//! (the thread-cache pointer, so that `dlopen` finds room in glibc's spare static TLS), the
//! library kept loaded after `dlclose`, the exported C API, and (with `nm -D`) every C++
//! operator, glibc introspection call and statistics function, with nothing from libstdc++
//! linked in.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The preload libraries: scale, fast and hardened lanes.
const LIBS: [&str; 3] = [
    "libhakozuna.so",
    "libhakozuna_fast.so",
    "libhakozuna_secure.so",
];

fn lib(name: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target/release")
        .join(name);
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --release` first",
        p.display()
    );
    p
}

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Sizes of the PT_TLS segment (FileSiz: the initialisation image, MemSiz: the per-thread
/// block) from `readelf -lW`.
fn tls_size(so: &Path) -> (usize, usize) {
    let text = run("readelf", &["-lW", so.to_str().unwrap()]);
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("TLS"))
        .expect("no PT_TLS segment");
    let w: Vec<&str> = line.split_whitespace().collect();
    let hex = |s: &str| usize::from_str_radix(s.trim_start_matches("0x"), 16).unwrap();
    (hex(w[4]), hex(w[5]))
}

#[test]
fn no_tls_get_addr_in_any_library() {
    for name in LIBS {
        let so = lib(name);
        let dis = run("objdump", &["-d", "-r", "-R", so.to_str().unwrap()]);
        assert!(
            dis.len() > 10_000,
            "suspiciously small disassembly of {name}"
        );
        assert!(
            !dis.contains("__tls_get_addr"),
            "{name} calls __tls_get_addr"
        );
        let dynsyms = run("readelf", &["--dyn-syms", "-W", so.to_str().unwrap()]);
        assert!(
            !dynsyms.contains("__tls_get_addr"),
            "{name} imports __tls_get_addr"
        );
        // Initial-exec TLS marks the object STATIC_TLS.
        let dynamic = run("readelf", &["-dW", so.to_str().unwrap()]);
        assert!(
            dynamic.contains("STATIC_TLS"),
            "{name} lacks the STATIC_TLS flag"
        );
    }
}

/// glibc leaves 512 bytes of static TLS (`glibc.rtld.optional_static_tls`) for the
/// initial-exec TLS of libraries loaded with `dlopen`, shared by all of them; ours is the
/// thread-cache pointer (design.md §5), initialised to the address of the empty cache.
#[test]
fn tls_is_at_most_64_bytes_in_every_lane() {
    for name in LIBS {
        let (file, mem) = tls_size(&lib(name));
        assert!(
            mem > 0 && mem <= 64,
            "{name}: PT_TLS is {mem} bytes per thread"
        );
        // The pointer's initial value (a relocated address) is in the image, not zero-filled.
        assert!(
            file >= 8,
            "{name}: PT_TLS has {file} bytes of initialisation image"
        );
    }
}

/// `dlclose` must not unmap the library: threads that used it run its thread-exit
/// destructor later, and blocks it handed out may still be freed through it.
#[test]
fn every_library_is_nodelete() {
    for name in LIBS {
        let dynamic = run("readelf", &["-dW", lib(name).to_str().unwrap()]);
        assert!(
            dynamic
                .lines()
                .any(|l| l.contains("FLAGS_1") && l.contains("NODELETE")),
            "{name} lacks DF_1_NODELETE"
        );
    }
}

#[test]
fn exports_the_whole_c_api() {
    for name in LIBS {
        let syms = run(
            "readelf",
            &["--dyn-syms", "-W", lib(name).to_str().unwrap()],
        );
        for f in [
            "malloc",
            "free",
            "calloc",
            "realloc",
            "reallocarray",
            "posix_memalign",
            "aligned_alloc",
            "memalign",
            "valloc",
            "pvalloc",
            "malloc_usable_size",
            "malloc_trim",
            "free_sized",
            "free_aligned_sized",
        ] {
            let found = syms.lines().any(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                w.len() >= 8 && w[7] == f && w[3] == "FUNC" && w[6] != "UND"
            });
            assert!(found, "{name} does not export {f}");
        }
    }
}

/// The 20 operator forms of C++17 that libstdc++ exports (`nm -D libstdc++.so.6 | c++filt`):
/// plain, nothrow, sized, align_val_t and their combinations.
const CXX_OPERATORS: &[&str] = &[
    "_Znwm",
    "_Znam",
    "_ZdlPv",
    "_ZdaPv",
    "_ZdlPvm",
    "_ZdaPvm",
    "_ZnwmRKSt9nothrow_t",
    "_ZnamRKSt9nothrow_t",
    "_ZdlPvRKSt9nothrow_t",
    "_ZdaPvRKSt9nothrow_t",
    "_ZnwmSt11align_val_t",
    "_ZnamSt11align_val_t",
    "_ZnwmSt11align_val_tRKSt9nothrow_t",
    "_ZnamSt11align_val_tRKSt9nothrow_t",
    "_ZdlPvSt11align_val_t",
    "_ZdaPvSt11align_val_t",
    "_ZdlPvmSt11align_val_t",
    "_ZdaPvmSt11align_val_t",
    "_ZdlPvSt11align_val_tRKSt9nothrow_t",
    "_ZdaPvSt11align_val_tRKSt9nothrow_t",
];

const INTROSPECTION: &[&str] = &[
    "mallinfo",
    "mallinfo2",
    "malloc_stats",
    "malloc_info",
    "mallopt",
    "hakozuna_stats_json",
    "hakozuna_stats_print",
];

/// `nm -D` lines of the library's dynamic symbols: (type letter, name without version).
fn dynamic_symbols(so: &Path) -> Vec<(String, String)> {
    run("nm", &["-D", so.to_str().unwrap()])
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let (t, name) = match w.as_slice() {
                [_, t, name] => (*t, *name),
                [t, name] => (*t, *name),
                _ => return None,
            };
            Some((t.to_string(), name.split('@').next().unwrap().to_string()))
        })
        .collect()
}

#[test]
fn nm_lists_every_cxx_operator_and_introspection_call() {
    for name in LIBS {
        let syms = dynamic_symbols(&lib(name));
        for f in CXX_OPERATORS.iter().chain(INTROSPECTION) {
            assert!(
                syms.iter().any(|(t, n)| n == f && t == "T"),
                "{name}: nm -D shows no defined text symbol {f}"
            );
        }
    }
}

/// The operators' failure path reaches the C++ runtime through `dlsym` only: the libraries
/// need no C++ library, and import no C++ symbol.
#[test]
fn no_cxx_runtime_is_linked() {
    for name in LIBS {
        let so = lib(name);
        let dynamic = run("readelf", &["-dW", so.to_str().unwrap()]);
        for l in dynamic.lines().filter(|l| l.contains("(NEEDED)")) {
            assert!(
                !l.contains("stdc++") && !l.contains("c++"),
                "{name} needs a C++ library: {l}"
            );
        }
        for (t, n) in dynamic_symbols(&so) {
            assert!(
                !(t == "U" && n.starts_with("_Z")),
                "{name} imports the C++ symbol {n}"
            );
        }
    }
}

/// The list above is libstdc++'s own: every operator form it exports, we export.
#[test]
fn the_operator_list_matches_libstdcxx() {
    let libstdcxx = Path::new("/usr/lib/x86_64-linux-gnu/libstdc++.so.6");
    assert!(
        libstdcxx.exists(),
        "{} is missing (install g++)",
        libstdcxx.display()
    );
    let mut theirs: Vec<String> = dynamic_symbols(libstdcxx)
        .into_iter()
        .filter(|(t, n)| {
            t == "T"
                && ["_Znw", "_Zna", "_Zdl", "_Zda"]
                    .iter()
                    .any(|p| n.starts_with(p))
        })
        .map(|(_, n)| n)
        .collect();
    theirs.sort();
    theirs.dedup();
    let mut ours: Vec<String> = CXX_OPERATORS.iter().map(|s| s.to_string()).collect();
    ours.sort();
    assert_eq!(theirs, ours);
}

/// The page set (`ds/page_set.rs`) is reached from `free` (a bin's overflow sheds into it) and
/// `malloc` (refills take from it): no bounds check there may leave a panic path, which would
/// abort inside a C call (or unwind out of a Rust global allocator). Found by the source line
/// `objdump -dl` gives the instructions before each call of a panic function.
#[test]
fn the_page_set_has_no_panic_path() {
    for name in LIBS {
        let so = lib(name);
        let dis = run(
            "objdump",
            &["-dl", "--no-show-raw-insn", so.to_str().unwrap()],
        );
        let mut line = "";
        let mut found = Vec::new();
        for l in dis.lines() {
            if l.starts_with('/') && l.contains(".rs:") {
                line = l;
            } else if l.contains("call") && l.contains("panic") && line.contains("ds/page_set.rs") {
                found.push(line.rsplit("src/").next().unwrap_or(line).to_string());
            }
        }
        assert!(
            found.is_empty(),
            "{name}: panic calls after page set lines {found:?}"
        );
    }
}

/// Calls from the library's own functions into functions of Rust's `core` that can panic:
/// `(caller, callee)`, one per call site. A `core` function can panic when
/// `core::panicking::panic_fmt` is reachable from it through `core` functions (found from the
/// calls `objdump -d` shows, so `panic_bounds_check`, `slice_index_fail`, `unwrap_failed`, the
/// sort's order check and any newcomer alike).
fn panic_sites(so: &Path) -> Vec<(String, String)> {
    use std::collections::{HashMap, HashSet};
    let dis = run(
        "objdump",
        &["-d", "--no-show-raw-insn", "-C", so.to_str().unwrap()],
    );
    let mut calls: Vec<(String, String)> = Vec::new();
    let mut func = String::new();
    for l in dis.lines() {
        if let Some(name) = l.strip_suffix(">:") {
            if let Some((_, name)) = name.split_once(" <") {
                func = name.to_string();
            }
            continue;
        }
        let Some((_, rest)) = l.split_once('\t') else {
            continue;
        };
        if !(rest.starts_with("call") || rest.starts_with("jmp")) {
            continue;
        }
        let Some((_, target)) = rest.split_once('<') else {
            continue;
        };
        let target = target.trim_end_matches('>');
        let target = target.split_once('+').map_or(target, |(t, _)| t);
        if target != func {
            calls.push((func.clone(), target.to_string()));
        }
    }
    let mut callers: HashMap<&str, Vec<&str>> = HashMap::new();
    for (f, t) in &calls {
        callers.entry(t.as_str()).or_default().push(f.as_str());
    }
    let mut panics: HashSet<&str> = HashSet::from(["core::panicking::panic_fmt"]);
    let mut todo = vec!["core::panicking::panic_fmt"];
    while let Some(f) = todo.pop() {
        for &c in callers.get(f).map_or(&[][..], |v| v.as_slice()) {
            if c.starts_with("core::") && panics.insert(c) {
                todo.push(c);
            }
        }
    }
    assert!(
        panics.len() > 1,
        "no panic function found in {}: has objdump's output changed?",
        so.display()
    );
    calls
        .iter()
        .filter(|(f, t)| !f.starts_with("core::") && panics.contains(t.as_str()))
        .cloned()
        .collect()
}

/// No panic path is left in the libraries' own code (a panic inside `malloc` or `free` would
/// abort the program: `panic = "abort"`), but the unstable sort of integers: the segment purge
/// and the by-page shed sort with `sort_unstable`, whose only panic is for an `Ord` that is
/// not a total order (an integer's is). 92 call sites in the scale lane before they were
/// removed (docs/ab.md, "Panic paths"); this keeps the count from growing again.
#[test]
fn no_panic_path_but_the_sort() {
    const SORT: &str = "core::slice::sort::unstable::ipnsort";
    const SORT_SITES: usize = 3;
    for name in LIBS {
        let sites = panic_sites(&lib(name));
        let (sorts, others): (Vec<_>, Vec<_>) = sites.into_iter().partition(|(_, t)| t == SORT);
        assert!(
            others.is_empty(),
            "{name}: calls of functions that may panic: {others:#?}"
        );
        assert!(
            sorts.len() <= SORT_SITES,
            "{name}: {} calls of the unstable sort (at most {SORT_SITES}; a new one sorts \
             integers? raise the bound): {sorts:#?}",
            sorts.len()
        );
    }
}
