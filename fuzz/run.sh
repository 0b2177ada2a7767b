#!/usr/bin/env bash
# Runs every fuzz target for SECONDS seconds each (default 10), from the
# committed seeds in fuzz/seeds/ and the corpus kept in target/fuzz-corpus/,
# and prints each target's executions and coverage. Fails on the first
# crash (libFuzzer leaves the input in fuzz/artifacts/). Needs nightly Rust
# and cargo-fuzz, both installed when missing.
set -euo pipefail
cd "$(dirname "$0")"
SECONDS_EACH=${1:-10}
CORPUS=${FUZZ_CORPUS:-../target/fuzz-corpus}
rustup run nightly rustc --version >/dev/null 2>&1 || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
cargo +nightly fuzz build
for target in $(cargo +nightly fuzz list); do
    mkdir -p "$CORPUS/$target"
    log=$(mktemp)
    if ! cargo +nightly fuzz run "$target" "$CORPUS/$target" "seeds/$target" -- \
        -max_total_time="$SECONDS_EACH" -print_final_stats=1 >"$log" 2>&1; then
        tail -40 "$log"
        echo "fuzz: $target FAILED"
        exit 1
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    coverage=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
    echo "fuzz: $target: $runs runs in ${SECONDS_EACH}s, $coverage"
    rm -f "$log"
done
