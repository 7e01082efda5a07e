//! Standalone `alloc-free-loop` program (see `hakozuna_bench::benches::alloc_free_loop`).
fn main() {
    use hakozuna_bench::benches::alloc_free_loop as b;
    hakozuna_bench::common::run_main(b::USAGE, b::run)
}
