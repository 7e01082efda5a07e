//! Standalone `tree-build` program (see `hakozuna_bench::benches::tree_build`).
fn main() {
    use hakozuna_bench::benches::tree_build as b;
    hakozuna_bench::common::run_main(b::USAGE, b::run)
}
