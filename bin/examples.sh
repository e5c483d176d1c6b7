#!/usr/bin/env bash
# The examples' command lines: what a user can type gets a message, the limit and the
# right exit code, not a panic or a Rust error's Debug text. Each check runs the built
# example and looks at its exit code and output.
#
#   bin/examples.sh
#
# Time here: the example's release build (~40 s cold), then well under a second.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -q -p swiotlb-virtio --example virtio_blk
blk=target/release/examples/virtio_blk
failed=0

# check NAME EXPECTED_EXIT PATTERN ARGS...: runs the example, wants that exit code and a
# line of its output (stdout and stderr) matching PATTERN, and no panic.
check() {
    local name=$1 want=$2 pattern=$3
    shift 3
    local out code=0
    out=$("$blk" "$@" 2>&1) || code=$?
    if [[ $code -ne $want ]] || ! grep -qE -- "$pattern" <<<"$out" || grep -q "panicked" <<<"$out"; then
        printf 'FAILED: virtio_blk %s (%s): exit %s, wanted %s and /%s/; output:\n%s\n' \
            "$*" "$name" "$code" "$want" "$pattern" "$(head -c 2000 <<<"$out")"
        failed=1
    else
        printf 'ok: virtio_blk %s (%s)\n' "$*" "$name"
    fi
}

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

exit $failed
