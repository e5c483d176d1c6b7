#!/usr/bin/env bash
# The examples' command lines (swiotlb-virtio's virtio_blk, swiotlb-bench's hot_loop): what
# a user can type gets a message, the limit and the right exit code, not a panic or a Rust
# error's Debug text. Each check runs the built example and looks at its exit code and
# output. (swiotlb-bench's own command line is tested by bench/tests/cli.rs.)
#
#   bin/examples.sh
#
# Time here: the example's release build (~40 s cold), then well under a second.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -q -p swiotlb-virtio --example virtio_blk
cargo build --release -q -p swiotlb-bench --example hot_loop
blk=target/release/examples/virtio_blk
failed=0

# run EXAMPLE NAME EXPECTED_EXIT PATTERN ARGS...: runs the example, wants that exit code
# and a line of its output (stdout and stderr) matching PATTERN, and no panic.
run() {
    local exe=$1 name=$2 want=$3 pattern=$4
    shift 4
    local out code=0
    out=$("$exe" "$@" 2>&1) || code=$?
    if [[ $code -ne $want ]] || ! grep -qE -- "$pattern" <<<"$out" || grep -q "panicked" <<<"$out"; then
        printf 'FAILED: %s %s (%s): exit %s, wanted %s and /%s/; output:\n%s\n' \
            "${exe##*/}" "$*" "$name" "$code" "$want" "$pattern" "$(head -c 2000 <<<"$out")"
        failed=1
    else
        printf 'ok: %s %s (%s)\n' "${exe##*/}" "$*" "$name"
    fi
}
check() { run "$blk" "$@"; }
hot() { run target/release/examples/hot_loop "$@"; }

check "zero MiB is refused with the range" 2 'MiB per phase is 1 to 1024, not "0"' 0
check "too many MiB" 2 '1 to 1024, not "4096"' 4096
check "not a number" 2 '1 to 1024, not "lots"' lots
check "two arguments" 2 'one argument at most' 1 2
check "--help prints the usage" 0 '^usage: virtio_blk \[MIB\]' --help
check "-h prints the usage" 0 '^usage: virtio_blk \[MIB\]' -h
check "the smallest run works and prints no NaN" 0 '^pool: high water' 1
if "$blk" 1 2>&1 | grep -q NaN; then
    echo "FAILED: virtio_blk 1 prints NaN"
    failed=1
fi

hot "zero bytes" 2 'BYTES is 1 to 262144, not "0"' swiotlb 0
hot "a size over a segment" 2 'BYTES is 1 to 262144' swiotlb 1M
hot "zero iterations" 2 'ITERATIONS is 1 to' swiotlb 64 0
hot "an unknown implementation" 2 'unknown implementation "nope"' nope
hot "a bad fourth argument" 2 '`copy` or nothing' swiotlb 64 10 x
hot "--help prints the usage" 0 '^usage: hot_loop' --help
hot "a short loop works" 0 'swiotlb: 64-byte map\+unmap' swiotlb 64 1000

exit $failed
