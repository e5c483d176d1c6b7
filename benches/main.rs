//! Criterion benchmarks: this crate's pool beside every baseline of the `swiotlb-bench`
//! crate (Linux-style with and without areas, buddy, mutex+bitmap), one group per question.
//!
//! ```text
//! cargo bench                      # every group (about 10 minutes)
//! cargo bench -- threads           # one group
//! cargo run --release -p swiotlb-bench -- report   # the tables of BENCHMARKS.md
//! ```
//!
//! Every pool is built, and filled where a group says so, before its timing starts.
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

use criterion::{criterion_group, criterion_main, Criterion};
use std::time::Duration;

mod common;
mod copy;
mod elastic;
mod full;
mod hygiene;
mod latency;
mod mix;
mod pool_size;
mod ring;
mod shared_copy;
mod threads;
mod virtio_mix;

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(40)
}

criterion_group! {
    name = benches;
    config = config();
    targets = latency::bench, copy::bench, threads::bench, full::bench, pool_size::bench, mix::bench, shared_copy::bench, hygiene::bench, ring::bench, virtio_mix::bench, elastic::bench
}
criterion_main!(benches);
