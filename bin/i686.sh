#!/usr/bin/env bash
# The core's tests on a 32-bit target, i686-unknown-linux-gnu: usize is 32 bits there while
# device addresses (u64) are not, so the conversions between them are exercised for real.
# Unit, integration and doc tests of `swiotlb` (optimised, with debug assertions and overflow checks).
#
#   bin/i686.sh                  # installs the target (and the 32-bit C toolchain), runs the tests
#   bin/i686.sh --test errors    # extra arguments go to cargo test
#
# Needs: the rustup target (installed here) and a C toolchain that links 32-bit programs,
# which rustc's linker driver `cc -m32` uses (crti.o, libgcc, 32-bit libc). On Debian/Ubuntu
# that is the `gcc-multilib` package; as root this script installs it with apt-get, otherwise
# it stops and says so. Only the core: swiotlb-virtio's test utilities use vm-memory, which
# builds on 64-bit targets only.
#
# Time here (2 shared cores): ~7 s for `apt-get install gcc-multilib`, ~70 s to build the
# tests from cold (swiotlb-bench and criterion are dev-dependencies), ~5 s to run them.
set -euo pipefail
cd "$(dirname "$0")/.."

target=i686-unknown-linux-gnu

rustup target add "$target"

# Can the C toolchain link a 32-bit program? (That is all rustc asks of it.)
links_32bit() {
    local dir
    dir="$(mktemp -d)"
    printf 'int main(void) { return 0; }\n' >"$dir/probe.c"
    cc -m32 "$dir/probe.c" -o "$dir/probe" 2>"$dir/err"
    local status=$?
    [ $status -eq 0 ] || cat "$dir/err" >&2
    rm -rf "$dir"
    return $status
}

if ! links_32bit; then
    echo "bin/i686.sh: 'cc -m32' cannot link a 32-bit program (error above);" \
        "installing the 32-bit C toolchain: apt-get install gcc-multilib" >&2
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
        echo "bin/i686.sh: FAILED: not root or no apt-get; install Debian's 'gcc-multilib'" \
            "(or your distribution's 32-bit gcc and libc development files) and rerun" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    # A fresh machine may have no package lists yet: update, then retry once.
    apt-get install -y --no-install-recommends gcc-multilib \
        || { apt-get update && apt-get install -y --no-install-recommends gcc-multilib; }
    if ! links_32bit; then
        echo "bin/i686.sh: FAILED: gcc-multilib is installed but 'cc -m32' still cannot link" >&2
        exit 1
    fi
fi

# Optimised, with debug assertions and overflow checks kept: the shadow-model property test
# took 74 s unoptimised on i686 here, 3.5 s like this, and checks the same things.
export CARGO_PROFILE_RELEASE_DEBUG_ASSERTIONS=true
export CARGO_PROFILE_RELEASE_OVERFLOW_CHECKS=true
cargo test --release -p swiotlb --target "$target" "$@"
