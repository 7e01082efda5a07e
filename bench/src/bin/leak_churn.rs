//! Standalone `leak-churn` program (see `hakozuna_bench::benches::leak_churn`).
fn main() {
    use hakozuna_bench::benches::leak_churn as b;
    hakozuna_bench::common::run_main(b::USAGE, b::run)
}
