#!/usr/bin/env bash
# The project's test command (README "Test"; CI runs exactly this).
# Builds the preload libraries (scale, fast and hardened lanes), runs every test of the
# workspace against them (tests/secure.rs: the hardened lane's error programs), then the
# engine's tests under the other lanes and the switch combinations CI must keep working, and
# the loom models.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n=== %s\n' "$*"; }

# The preload libraries are tested with their lane presets: an A/B override left in the
# environment (preload/build.rs) must not replace them.
unset HAKOZUNA_SCALE_FEATURES HAKOZUNA_FAST_FEATURES HAKOZUNA_SECURE_FEATURES

step "build (the three .so files, benchmark runner)"
cargo build --release

step "clippy on every target of the workspace, warnings as errors"
if cargo clippy --version >/dev/null 2>&1; then
    cargo clippy --release --all-targets --workspace -- -D warnings
else
    echo "clippy is not installed with this toolchain: lint step skipped"
fi

step "workspace tests: unit, stress on Hakozuna, .so checks, C API conformance, fork, real programs, bench smoke"
cargo test --release --workspace

# The engine's unit and stress tests under each lane and with boxes switched off. Each
# combination is a feature set of the `hakozuna` package; a separate target dir keeps the
# default build above untouched.
combo() {
    step "engine tests with features: $1"
    CARGO_TARGET_DIR=target/combos cargo test --release -p hakozuna --no-default-features --features "$1" --lib --test stress --test stash_steal --test shared_pool --test medium_pool
}
combo "fast-defaults"
combo "secure-defaults"                                                                            # hardened lane: the stress suite through its checks
combo "remote-ring,owner-stash,owner-stash-push,owner-stash-pop,stash-fastpop,transfer-cache,stash-steal,stats"   # spill and count off (steals walk)
combo "remote-ring,transfer-cache,stats"                                                           # stash off
combo "remote-ring,ring-coalesce,owner-stash,owner-stash-push,owner-stash-pop,stash-max,stash-spill,transfer-cache,shared-pool,stash-steal,checked" # capped stash feeds the transfer cache
combo "remote-ring,ring-coalesce,owner-stash,owner-stash-push,owner-stash-pop,stash-fastpop,stash-count,stash-spill,transfer-cache,medium-adopt,checked" # small-adopt and shared-pool off
combo "remote-ring,ring-coalesce,owner-stash,owner-stash-push,owner-stash-pop,stash-fastpop,stash-count,stash-spill,transfer-cache,medium-adopt,shared-pool,checked" # shared-pool without small-adopt (and stash-steal off)
combo "remote-ring,ring-coalesce,owner-stash,owner-stash-push,owner-stash-pop,stash-fastpop,stash-count,stash-spill,transfer-cache,stash-steal,checked" # stash-steal without small-adopt or shared-pool
combo ""                                                                                           # every box off

# Debug build: the engine's debug assertions (an adopted run never reaches its non-owner's
# segment bitmap, pooled segments are empty and untagged, free_run only of the heap's own runs)
# and overflow checks on the whole stress suite, the reuse tests and the bin-growth tests.
step "stress and reuse tests with debug assertions"
cargo test -p hakozuna --lib --test stress --test shared_pool --test stash_steal --test bin_growth

step "loom models of the lock-free structures"
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test --release -p hakozuna --lib loom_tests -- --test-threads=1

step "all tests passed"
