//! Standalone `larson` program (see `hakozuna_bench::benches::larson`).
fn main() {
    use hakozuna_bench::benches::larson as b;
    hakozuna_bench::common::run_main(b::USAGE, b::run)
}
