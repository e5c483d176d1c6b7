#!/usr/bin/env bash
# The sanitizers on the tests that suit them:
#
#   ThreadSanitizer   the stress tests (release: tests/stress.rs, 6 threads x 250k operations
#                     on a near-full pool; tests/elastic_stress.rs, 8 threads on a pool
#                     growing and shrinking): a data race between the threads' maps, unmaps
#                     and copies, or in the pools' own metadata and region table, that the
#                     byte checks would only catch by luck.
#   AddressSanitizer  the regression, soundness, error and guard tests (tests/regressions.rs,
#                     soundness.rs, errors.rs, guard.rs): a copy that runs past an original
#                     buffer or a heap block of metadata, a use after free (the guards'
#                     drops, refused calls that must touch nothing).
#
# Both rebuild the standard library with the sanitizer (-Zbuild-std: TSan needs std's
# atomics and locks instrumented, or it reports false races; rustc refuses to mix
# sanitized and unsanitized crates), so they need the nightly toolchain with `rust-src`
# (installed here) and run on x86_64 Linux only. Each sanitizer has its own target
# directory (target/tsan, target/asan). No extra flags were needed for parking_lot on
# nightly 2026-05-19: with -Zbuild-std every crate gets the same -Zsanitizer, so no
# -Cunsafe-allow-abi-mismatch.
#
#   bin/sanitizers.sh               # both
#   bin/sanitizers.sh thread        # one: thread or address
#
# Checked to detect (scratch tests, not kept): two threads writing one bounce byte through
# `translate` gave "WARNING: ThreadSanitizer: data race" and exit 66; a map whose original
# was said to be 101 bytes of a 100-byte Vec gave "AddressSanitizer: heap-buffer-overflow
# ... READ of size 101" in `Pool::map`. ASan sees heap blocks, so it does not see a copy
# that stays inside the pool's one region but strays into a neighbouring slot; the stress
# test's byte checks do.
#
# Time here (2 shared cores, other builds running; noisy): ThreadSanitizer 2.5-4.3 min to
# build from cold (std and every dev-dependency, release) and 6-13 s to run;
# AddressSanitizer 2-3 min to build from cold (debug) and under 1 s to run (the four test
# files: 36 s warm here). About 5 min in
# all in a CI run. The stress test keeps its full 250k operations a thread under TSan.
set -euo pipefail
cd "$(dirname "$0")/.."

toolchain="${SANITIZER_TOOLCHAIN:-nightly}"
target=x86_64-unknown-linux-gnu
sanitizers=("$@")
[ ${#sanitizers[@]} -gt 0 ] || sanitizers=(thread address)

if [ "$(uname -sm)" != "Linux x86_64" ]; then
    echo "bin/sanitizers.sh: FAILED: needs x86_64 Linux (this is $(uname -sm))" >&2
    exit 1
fi
# Installed only if missing: an existing nightly is left as it is (no surprise update).
if ! rustup run "$toolchain" rustc --version >/dev/null 2>&1; then
    rustup toolchain install "$toolchain" --profile minimal --no-self-update
fi
rustup component add --toolchain "$toolchain" rust-src

failed=()
for sanitizer in "${sanitizers[@]}"; do
    case "$sanitizer" in
        thread) dir=target/tsan args=(--release --test stress --test elastic_stress) ;;
        address) dir=target/asan args=(--test regressions --test soundness --test errors --test guard) ;;
        *)
            echo "bin/sanitizers.sh: unknown sanitizer '$sanitizer' (thread or address)" >&2
            exit 2
            ;;
    esac
    echo "=== ${sanitizer} sanitizer: cargo test ${args[*]}"
    if ! RUSTFLAGS="-Zsanitizer=$sanitizer ${RUSTFLAGS:-}" CARGO_TARGET_DIR="$dir" \
        cargo "+$toolchain" test -Zbuild-std --target "$target" "${args[@]}"; then
        failed+=("$sanitizer")
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "=== sanitizers: FAILED: ${failed[*]}" >&2
    exit 1
fi
echo "=== sanitizers: ${sanitizers[*]}: clean"
