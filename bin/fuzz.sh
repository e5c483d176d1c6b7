#!/usr/bin/env bash
# Fuzz smoke (CI) and long fuzzing runs for the targets in fuzz/ (their logic:
# fuzz/src/lib.rs over swiotlb::testing).
#
#   bin/fuzz.sh                          # replay seeds, then 30 s per target (CI smoke)
#   FUZZ_SECONDS=600 bin/fuzz.sh ops     # one target for 10 minutes
#   FUZZ_SECONDS=0 bin/fuzz.sh config    # no time limit: until a finding or Ctrl-C
#   FUZZ_SANITIZER=address bin/fuzz.sh   # with AddressSanitizer (nightly features, via
#                                        # RUSTC_BOOTSTRAP=1 on a stable toolchain)
#
# Targets: ops, hostile_device, config, elastic (all four by default), run one after another.
# New corpus entries go to fuzz/corpus/<target>/ (only seed-* files are committed); a
# finding is saved under fuzz/artifacts/<target>/ and the script fails. To keep a finding
# as a regression input, copy it to fuzz/regressions/<target>/ (replayed by
# `cargo test --release` in fuzz/, which this script runs first).
#
# Time here (2 shared cores): ~1 min to build the four targets from cold, then
# FUZZ_SECONDS per target (120 s for the smoke). Needs cargo-fuzz 0.13 (`cargo install
# cargo-fuzz`) and a C++ compiler (libFuzzer is built from source).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${FUZZ_SECONDS:-30}"
sanitizer="${FUZZ_SANITIZER:-none}"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(ops hostile_device config elastic)
if [ "$sanitizer" != none ]; then
    export RUSTC_BOOTSTRAP=1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is not installed: cargo install cargo-fuzz --version '^0.13'" >&2
    exit 1
fi

echo "=== replaying seeds and saved regressions"
cargo test --release --quiet

for target in "${targets[@]}"; do
    echo "=== fuzzing $target for ${seconds}s (sanitizer: $sanitizer)"
    mkdir -p "corpus/$target"
    # -a: debug assertions on (the core's debug_assert!s beside unchecked indexing).
    set +e
    cargo fuzz run -s "$sanitizer" -a "$target" "corpus/$target" -- \
        -max_total_time="$seconds" -max_len=4096 -timeout=10 -print_final_stats=1 \
        2>&1 | tee "target/fuzz-$target.log" \
        | grep -E '^(#[0-9]+[[:space:]]+(INITED|DONE)|Done |stat::number_of_executed_units|stat::average_exec_per_sec|==[0-9]+==|SUMMARY|thread .* panicked|Test unit written|artifact_prefix)'
    status=${PIPESTATUS[0]}
    set -e
    if [ "$status" -ne 0 ]; then
        echo "=== $target: FAILED (exit $status); log: fuzz/target/fuzz-$target.log" >&2
        exit "$status"
    fi
done
echo "=== fuzz: ${#targets[@]} targets passed"
