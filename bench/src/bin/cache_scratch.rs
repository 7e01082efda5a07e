//! Standalone `cache-scratch` program (see `hakozuna_bench::benches::cache_scratch`).
fn main() {
    use hakozuna_bench::benches::cache_scratch as b;
    hakozuna_bench::common::run_main(b::USAGE, b::run)
}
