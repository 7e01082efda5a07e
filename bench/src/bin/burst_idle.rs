//! Standalone `burst-idle` program (see `hakozuna_bench::benches::burst_idle`).
fn main() {
    use hakozuna_bench::benches::burst_idle as b;
    hakozuna_bench::common::run_main(b::USAGE, b::run)
}
