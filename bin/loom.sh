#!/usr/bin/env bash
# Runs the loom models in src/tests/loom_*.rs: the interleavings of each model's threads that
# loom's DPOR tells apart, within LOOM_MAX_PREEMPTIONS (default 2), in release mode with
# debug assertions on, in a target directory of its own so normal builds stay valid.
#
#   bin/loom.sh                    # every model
#   bin/loom.sh loom_sync          # the models whose path contains a filter
#   LOOM_MAX_PREEMPTIONS=3 bin/loom.sh   # a deeper search (much slower)
#
# Time here (2 shared cores, other builds running; noisy): about 16 s for the 11 models of
# the region allocator (14 s of it `stats_stay_consistent_under_map_unmap`, ~160k
# interleavings) and 2 s for the 6 of the elastic pool (loom_grow, loom_shrink, loom_wait:
# 5096 interleavings in all), plus ~55 s to build from cold. (A run on a busier machine
# took 72 s, the stats model nearly all of it.)
set -euo pipefail
cd "$(dirname "$0")/.."

export RUSTFLAGS="--cfg loom -C debug-assertions ${RUSTFLAGS:-}"
export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-2}"
export CARGO_TARGET_DIR="${LOOM_TARGET_DIR:-target/loom}"

cargo test --release --lib -- --test-threads=1 --nocapture "$@"
