//! Standalone `large-blocks` program (see `hakozuna_bench::benches::large_blocks`).
fn main() {
    use hakozuna_bench::benches::large_blocks as b;
    hakozuna_bench::common::run_main(b::USAGE, b::run)
}
