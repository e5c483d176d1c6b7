//! The copies of `swiotlb::shared` (defined while a device writes the memory) beside the
//! `copy_nonoverlapping` and `write_bytes` they replace: page-aligned buffers, and once with
//! the shared side 3 bytes past a page boundary. `copy_nonoverlapping` goes into the shared
//! buffer like `copy_to_shared`, `copy_nonoverlapping_from` out of it like `copy_from_shared`.

use crate::common::source;
use criterion::{BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::ptr;
use swiotlb::shared::{copy_from_shared, copy_to_shared, fill_shared};

/// (bytes, offset of the shared side from a page boundary).
const CASES: [(usize, usize); 4] = [(64, 0), (4096, 0), (64 * 1024, 0), (4096, 3)];

pub fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("shared_copy");
    for (size, offset) in CASES {
        let label = match offset {
            0 => size.to_string(),
            _ => format!("{size}+{offset}"),
        };
        g.throughput(Throughput::Bytes(size as u64));
        let mut private = source(size);
        let mut shared = source(size + offset);
        let p = private.slice(size).cast::<u8>().as_ptr();
        // SAFETY: `offset + size` bytes were allocated.
        let s = unsafe {
            shared
                .slice(size + offset)
                .cast::<u8>()
                .as_ptr()
                .add(offset)
        };
        // Every `unsafe` below: two distinct live buffers with `size` bytes from `p` and `s`,
        // touched by nothing else.
        let id = |name| BenchmarkId::new(name, &label);
        g.bench_function(id("copy_nonoverlapping"), |b| {
            // SAFETY: as above.
            b.iter(|| unsafe { ptr::copy_nonoverlapping(black_box(p), black_box(s), size) })
        });
        g.bench_function(id("copy_to_shared"), |b| {
            // SAFETY: as above.
            b.iter(|| unsafe { copy_to_shared(black_box(s), black_box(p), size) })
        });
        g.bench_function(id("copy_nonoverlapping_from"), |b| {
            // SAFETY: as above.
            b.iter(|| unsafe { ptr::copy_nonoverlapping(black_box(s), black_box(p), size) })
        });
        g.bench_function(id("copy_from_shared"), |b| {
            // SAFETY: as above.
            b.iter(|| unsafe { copy_from_shared(black_box(p), black_box(s), size) })
        });
        g.bench_function(id("write_bytes"), |b| {
            // SAFETY: as above.
            b.iter(|| unsafe { ptr::write_bytes(black_box(s), black_box(0xa5), size) })
        });
        g.bench_function(id("fill_shared"), |b| {
            // SAFETY: as above.
            b.iter(|| unsafe { fill_shared(black_box(s), black_box(0xa5), size) })
        });
    }
    g.finish();
}
