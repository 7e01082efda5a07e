//! Standalone `xmalloc-test` program (see `hakozuna_bench::benches::xmalloc_test`).
fn main() {
    use hakozuna_bench::benches::xmalloc_test as b;
    hakozuna_bench::common::run_main(b::USAGE, b::run)
}
