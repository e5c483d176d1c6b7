#!/usr/bin/env bash
# The publish checks: both library crates package and build as crates.io would see them.
#
# 1. `cargo publish --dry-run -p swiotlb -p swiotlb-virtio`: packages both, then verifies
#    each by building the packaged sources; cargo resolves swiotlb-virtio's dependency on
#    swiotlb to the just-packaged swiotlb through a temporary local registry (Cargo 1.90
#    and later), which is the only honest way to check the second crate before the first
#    is on crates.io (`cargo publish --dry-run -p swiotlb-virtio` alone fails with "no
#    matching package named `swiotlb`").
# 2. The packaged crates' tests and examples compile and their doctests (the READMEs
#    included) pass (benches are left out of the
#    package: they need the workspace's swiotlb-bench). Each .crate is unpacked outside the
#    workspace and built with `cargo test --no-run`, with default and with all features;
#    swiotlb-virtio's `swiotlb` is patched to the unpacked swiotlb. The tests that need a
#    feature are `required-features`, so a plain `cargo test` of a package skips them.
#
# Own target directory (target/publish-check). Time here (2 shared cores, registry cached):
# 3 min 16 s for both steps with the registry cached and target/publish-check warm from an
# earlier dry run; the doctests add about 30 s.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
export CARGO_TARGET_DIR="$root/target/publish-check"

echo "=== cargo publish --dry-run -p swiotlb -p swiotlb-virtio"
cargo publish --dry-run -p swiotlb -p swiotlb-virtio

# The dry run verifies but keeps no .crate files: package them (already verified above).
cargo package --no-verify -p swiotlb -p swiotlb-virtio
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for crate in swiotlb swiotlb-virtio; do
    tar -xzf "$CARGO_TARGET_DIR/package/$crate-0.1.0.crate" -C "$work"
done
patch=(--config "patch.crates-io.swiotlb.path=\"$work/swiotlb-0.1.0\"")

echo "=== the packaged swiotlb: tests and examples compile (default, then all features), doctests pass"
(cd "$work/swiotlb-0.1.0" && cargo test --no-run && cargo test --no-run --all-features &&
    cargo test --doc --all-features)
echo "=== the packaged swiotlb-virtio, against the packaged swiotlb"
(cd "$work/swiotlb-virtio-0.1.0" && cargo test "${patch[@]}" --no-run &&
    cargo test "${patch[@]}" --no-run --all-features && cargo test "${patch[@]}" --doc)
echo "=== publish checks passed"
