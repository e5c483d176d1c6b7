//! loom models of the pool's concurrent paths (`RUSTFLAGS="--cfg loom"`; see `bin/loom.sh`).
