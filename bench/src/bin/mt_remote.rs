//! Standalone `mt-remote` program (see `hakozuna_bench::benches::mt_remote`).
fn main() {
    use hakozuna_bench::benches::mt_remote as b;
    hakozuna_bench::common::run_main(b::USAGE, b::run)
}
