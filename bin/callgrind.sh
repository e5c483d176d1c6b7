#!/usr/bin/env bash
# Instructions per iteration of the hot-path scenarios of examples/hot_path.rs, counted by
# callgrind (stable on a shared, noisy machine where timings are not).
#
#   bin/callgrind.sh                     # every scenario
#   bin/callgrind.sh pair64 todevice4k   # some
#   N=20000 bin/callgrind.sh             # iterations of the shorter run (default 10000)
#
# Each scenario runs under callgrind with N and 2N iterations; the difference of the two
# totals over N is one iteration's instructions (start-up, the pool's construction and the
# first touches of its memory cancel out). Built with the bench profile (LTO, one codegen
# unit), as the criterion benchmarks are. Needs valgrind.
set -euo pipefail
cd "$(dirname "$0")/.."

N="${N:-10000}"
scenarios=("$@")
if [ ${#scenarios[@]} -eq 0 ]; then
    scenarios=(pair64 todevice4k todevice64k fromdevice4k bidi4k_qd16 mix mix_zero memcpy4k)
fi
cargo build --quiet --profile bench --example hot_path
bin=target/release/examples/hot_path
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
total() {
    valgrind --tool=callgrind --callgrind-out-file="$out/cg" "$bin" "$1" "$2" >/dev/null 2>"$out/log"
    sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$out/log"
}
for s in "${scenarios[@]}"; do
    a=$(total "$s" "$N")
    b=$(total "$s" $((2 * N)))
    echo "$s: $(( (b - a) / N )) instructions per iteration (callgrind, N=$N)"
done
