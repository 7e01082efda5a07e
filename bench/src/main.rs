//! `hakozuna-bench`: the allocator comparison runner (`compare`, `list`) and, with `bench`,
//! every benchmark program in one binary (the runner runs itself as the child so the programs
//! it measures are always built from the same source).

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(hakozuna_bench::runner::main_with(&args));
}
