//! Standalone `cross-churn` program (see `hakozuna_bench::benches::cross_churn`).
fn main() {
    use hakozuna_bench::benches::cross_churn as b;
    hakozuna_bench::common::run_main(b::USAGE, b::run)
}
