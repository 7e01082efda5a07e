#!/usr/bin/env bash
# A/B of the scale lane's design boxes (docs/design.md §7, §12): builds one libhakozuna.so per variant
# (= the scale defaults with one box changed), then runs the benchmark runner over all of them
# side by side (interleaved, AB_RUNS runs per cell) and prints the runner's markdown.
# The numbers and verdicts live in docs/ab.md (paste the printed tables there).
#
#   scripts/ab.sh                  # build + run (9 runs per cell; 5 runs took ~4 min of
#                                  # benchmarking plus ~1 min of builds on 2 cores)
#   AB_RUNS=11 scripts/ab.sh       # more runs per cell
#   AB_SOURCE=head scripts/ab.sh   # build the committed HEAD instead of the working tree
#   AB_BUILD_ONLY=1 scripts/ab.sh  # only build target/ab/<variant>.so
#   AB_STATS=0 scripts/ab.sh       # skip the HAKOZUNA_STATS=1 diagnostic runs
#
# A variant is the scale-lane preload package built with HAKOZUNA_SCALE_FEATURES=<list>, which
# replaces its preset (preload/build.rs expands each name through the engine's [features] in
# Cargo.toml, as cargo would, and always adds capi).
#
# Every variant is built from ONE snapshot of the sources (target/ab/snapshot), taken at the
# start, so edits made to src/ while the script runs cannot leak into some variants only.
# Each variant has its own CARGO_TARGET_DIR (target/ab/<name>); the library is copied to
# target/ab/<name>.so. The main target/release build is not touched.
#
# Outputs: bench-results/ab/results.{md,json,svg}   T=32, T=8, T=2 mt-remote rows + 2 ST rows
#          bench-results/ab/stats/<variant>.txt     HAKOZUNA_STATS=1 output of one T=32 R=50 run
#          bench-results/ab/conditions.txt          source snapshot, features, load before/after
#
# Rows (ITERS = 250,000 per thread, WS 400, ring 65536 for every mt-remote row):
#   seed matrix at --scale 0.1 (2.5M x 0.1): mt-T32-R50-16-2048, mt-T32-R0-16-2048,
#     mt-T32-R50-16-32768, mt-T8-R50-16-2048, mt-T2-R50-16-2048; rm-16-2048, rm-16-32768
#     (2M iterations, the single-thread fixed-cost check)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
AB=$ROOT/target/ab
SNAP=$AB/snapshot
OUT=${AB_OUT:-$ROOT/bench-results/ab}
RUNS=${AB_RUNS:-9}
SOURCE=${AB_SOURCE:-worktree}

step() { printf '\n=== %s\n' "$*" >&2; }
mkdir -p "$AB" "$OUT"

# ---------------------------------------------------------------- source snapshot
step "snapshot of the sources ($SOURCE)"
rm -rf "$SNAP"
mkdir -p "$SNAP"
case "$SOURCE" in
  head)
    git archive HEAD | tar -x -C "$SNAP"
    SRC_ID="$(git rev-parse --short HEAD) (committed HEAD)"
    ;;
  worktree)
    # Tracked and untracked-but-not-ignored files as they are now (mtimes kept, so an
    # unchanged tree does not rebuild).
    git ls-files -z -co --exclude-standard | tar --null -T - --ignore-failed-read -cf - 2>/dev/null \
      | tar -x -C "$SNAP"
    dirty=$(git status --porcelain -- src preload Cargo.toml Cargo.lock | wc -l)
    if [ "$dirty" -gt 0 ]; then
      SRC_ID="$(git rev-parse --short HEAD) + working tree ($dirty changed paths under src/, preload/, Cargo.*)"
    else
      SRC_ID="$(git rev-parse --short HEAD) (working tree clean)"
    fi
    ;;
  *) echo "AB_SOURCE must be worktree or head" >&2; exit 2 ;;
esac
SRC_HASH=$(cd "$SNAP" && find src preload Cargo.toml Cargo.lock -type f | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-12)
echo "source: $SRC_ID, content hash $SRC_HASH" >&2

# ---------------------------------------------------------------- variants
# Only the variables set below choose a lane's features, never ones left in the environment.
unset HAKOZUNA_SCALE_FEATURES HAKOZUNA_FAST_FEATURES
# The scale defaults as the snapshot's Cargo.toml (the engine's [features], the only copy of the
# list) defines them; the array may span lines.
DEFAULTS=$(awk '/^\[/ { sec = $0 } sec == "[features]" && /^scale-defaults *=/ { on = 1 }
                on { sub(/#.*/, ""); printf "%s", $0; if (/\]/) exit }' "$SNAP/Cargo.toml" \
  | sed -n 's/^scale-defaults *= *\[\(.*\)\].*/\1/p' | tr -d '" \t' | sed 's/,$//')
[ -n "$DEFAULTS" ] || { echo "cannot read scale-defaults from the [features] of Cargo.toml" >&2; exit 1; }

# features BASE OPS...: BASE (comma list) with -x removed and +x added.
features() {
  local list=",$1,"; shift
  local op
  for op in "$@"; do
    case "$op" in
      -*) list=${list//,${op#-},/,} ;;
      +*) case "$list" in *",${op#+},"*) ;; *) list="$list${op#+}," ;; esac ;;
    esac
  done
  list=${list#,}; echo "${list%,}"
}

# name | box it tests | changes to the scale defaults
VARIANTS=(
  "default|-|"
  "no-stash|S44|-owner-stash -owner-stash-push -owner-stash-pop"
  "no-stash-no-xfer|S42|-owner-stash -owner-stash-push -owner-stash-pop -transfer-cache"
  "no-count|S44-3|-stash-count"
  "no-fastpop-count|S44-3|-stash-fastpop -stash-spill +stash-count"
  "fastpop|S44-3|-stash-spill -stash-count"
  "fastpop-count|S44-3|-stash-spill +stash-count"
  "no-spill|S48|-stash-spill"
  "no-xfer|S42|-transfer-cache"
  "stash-max|S42|+stash-max"
  "no-ring|S41|-remote-ring"
  "no-coalesce|ring-coalesce|-ring-coalesce"
  "no-adopt|medium-adopt|-medium-adopt -inbox-steal"
  "no-small-adopt|small-adopt|-small-adopt"
  "no-shared-pool|shared-pool|-shared-pool"
  "no-stash-steal|stash-steal|-stash-steal"
  "no-inbox-steal|inbox-steal|-inbox-steal"
  "no-interleave|interleave|-interleave"
)

CONDS=$OUT/conditions.txt
{
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "source: $SRC_ID, content hash $SRC_HASH"
  echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(uname -r)"
  echo "rustc: $(rustc --version)"
  echo "scale-defaults: $DEFAULTS"
  echo "load before build: $(uptime | sed 's/.*load average/load average/')"
  echo
  echo "variants (package hakozuna-preload, HAKOZUNA_SCALE_FEATURES=...; capi is always on):"
} >"$CONDS"

build() { # build NAME PACKAGE LIBFILE (features: the package's preset or HAKOZUNA_*_FEATURES)
  local name=$1 pkg=$2 lib=$3
  step "build $name"
  CARGO_TARGET_DIR="$AB/$name" cargo build --release --locked --manifest-path "$SNAP/Cargo.toml" \
    -p "$pkg" >&2
  cp "$AB/$name/release/$lib" "$AB/$name.so"
}

ALLOC_ARGS=()
NAMES=()
for v in "${VARIANTS[@]}"; do
  IFS='|' read -r name box ops <<<"$v"
  # shellcheck disable=SC2086
  feats=$(features "$DEFAULTS" $ops)
  HAKOZUNA_SCALE_FEATURES="$feats" build "$name" hakozuna-preload libhakozuna.so
  printf '  %-17s %-6s %s\n' "$name" "$box" "$feats" >>"$CONDS"
  ALLOC_ARGS+=(--alloc "$name=$AB/$name.so")
  NAMES+=("$name")
done
# The fast lane for reference, from the same snapshot (target/release/libhakozuna_fast.so may
# have been built from other sources).
build fast hakozuna-preload-fast libhakozuna_fast.so
printf '  %-17s %-6s %s\n' fast - "package hakozuna-preload-fast, its preset (fast-defaults, plus capi)" >>"$CONDS"
ALLOC_ARGS+=(--alloc "fast=$AB/fast.so")
NAMES+=(fast)

step "build the runner"
CARGO_TARGET_DIR="$AB/runner" cargo build --release --locked --manifest-path "$SNAP/Cargo.toml" \
  -p hakozuna-bench --bin hakozuna-bench >&2
RUNNER=$AB/runner/release/hakozuna-bench

if [ "${AB_BUILD_ONLY:-0}" = 1 ]; then
  cat "$CONDS" >&2
  exit 0
fi

# ---------------------------------------------------------------- run
ALLOCS=$(IFS=,; echo "${NAMES[*]}")
COMMON=(--runs "$RUNS" --allocs "$ALLOCS" "${ALLOC_ARGS[@]}" --baseline default --root "$ROOT")
echo "load before run: $(uptime | sed 's/.*load average/load average/')" >>"$CONDS"
T0=$(date +%s)

step "runner: seed rows at --scale 0.1 ($RUNS runs per cell, interleaved)"
"$RUNNER" compare --matrix seed --scale 0.1 \
  --rows mt-T32-R50-16-2048,mt-T32-R0-16-2048,mt-T32-R50-16-32768,mt-T8-R50-16-2048,mt-T2-R50-16-2048,rm-16-2048,rm-16-32768 \
  "${COMMON[@]}" --out "$OUT"

if [ "${AB_STATS:-1}" = 1 ]; then
  step "HAKOZUNA_STATS=1, one run of mt-remote 32 250000 400 16 2048 50 65536 per variant"
  mkdir -p "$OUT/stats"
  for name in "${NAMES[@]}"; do
    HAKOZUNA_STATS=1 LD_PRELOAD="$AB/$name.so" "$RUNNER" bench mt-remote 32 250000 400 16 2048 50 65536 \
      >"$OUT/stats/$name.txt" 2>&1 || echo "stats run of $name failed (exit $?)" >&2
  done
fi

{
  echo "load after run: $(uptime | sed 's/.*load average/load average/')"
  echo "run time: $(( $(date +%s) - T0 )) s"
} >>"$CONDS"
step "conditions"
cat "$CONDS"
