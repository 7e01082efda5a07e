//! hakozuna-bench: allocator benchmark programs that allocate through the C `malloc`/`free`
//! (so any allocator can be injected with `LD_PRELOAD`), and the runner that compares
//! allocators on named matrices of benchmark rows (docs/benchmarks.md).

pub mod benches;
pub mod common;
pub mod memstat;
pub mod runner;
