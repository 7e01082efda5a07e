//! Standalone `random-mixed` program (see `hakozuna_bench::benches::random_mixed`).
fn main() {
    use hakozuna_bench::benches::random_mixed as b;
    hakozuna_bench::common::run_main(b::USAGE, b::run)
}
