//! Checks on the built preload libraries (run `cargo build --release` first): initial-exec
//! TLS only (no `__tls_get_addr` anywhere), the scale lane's per-thread TLS within 8 KiB, and
//! the exported C API.

use std::path::{Path, PathBuf};
use std::process::Command;

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

/// Size of the PT_TLS segment (MemSiz) from `readelf -lW`.
fn tls_size(so: &Path) -> usize {
    let text = run("readelf", &["-lW", so.to_str().unwrap()]);
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("TLS"))
        .expect("no PT_TLS segment");
    let memsz = line.split_whitespace().nth(5).unwrap();
    usize::from_str_radix(memsz.trim_start_matches("0x"), 16).unwrap()
}

#[test]
fn no_tls_get_addr_in_either_library() {
    for name in ["libhakozuna.so", "libhakozuna_fast.so"] {
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

#[test]
fn scale_lane_tls_is_at_most_8_kib() {
    let n = tls_size(&lib("libhakozuna.so"));
    assert!(n > 0 && n <= 8192, "scale-lane PT_TLS is {n} bytes");
}

#[test]
fn exports_the_whole_c_api() {
    for name in ["libhakozuna.so", "libhakozuna_fast.so"] {
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
