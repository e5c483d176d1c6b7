//! The copies of `swiotlb::shared` (defined while a device writes the memory) beside the
//! `copy_nonoverlapping` and `write_bytes` they replace: page-aligned buffers, and once with
//! the shared side 3 bytes past a page boundary. `copy_nonoverlapping` goes into the shared
//! buffer like `copy_to_shared`, `copy_nonoverlapping_from` out of it like `copy_from_shared`.
//!
//! `cargo bench --bench main -- shared_copy`, five runs on the build machine (AMD EPYC, Zen
//! 3 with AVX2, two vCPUs shared with other builds; glibc 2.36), x86_64 AVX path: medians of
//! the five runs' medians, and the median (lowest-highest) of the per-run ratios.
//!
//! | bytes  | operation        | baseline            | baseline | shared  | ratio            |
//! |--------|------------------|---------------------|----------|---------|------------------|
//! | 64     | copy_to_shared   | copy_nonoverlapping | 3.2 ns   | 3.8 ns  | 1.11 (1.10-1.47) |
//! | 64     | copy_from_shared | ..._from            | 3.1 ns   | 3.8 ns  | 1.27 (1.15-1.40) |
//! | 64     | fill_shared      | write_bytes         | 2.7 ns   | 4.4 ns  | 1.57 (1.46-2.10) |
//! | 4096   | copy_to_shared   | copy_nonoverlapping | 55.4 ns  | 53.3 ns | 0.95 (0.76-1.02) |
//! | 4096   | copy_from_shared | ..._from            | 61.1 ns  | 43.2 ns | 0.70 (0.59-1.00) |
//! | 4096   | fill_shared      | write_bytes         | 74.4 ns  | 42.9 ns | 0.63 (0.54-0.65) |
//! | 65536  | copy_to_shared   | copy_nonoverlapping | 1.41 µs  | 1.49 µs | 1.03 (0.93-1.18) |
//! | 65536  | copy_from_shared | ..._from            | 1.43 µs  | 1.48 µs | 1.03 (1.00-1.10) |
//! | 65536  | fill_shared      | write_bytes         | 810 ns   | 799 ns  | 0.82 (0.61-1.19) |
//! | 4096+3 | copy_to_shared   | copy_nonoverlapping | 1.43 µs  | 65.1 ns | 0.04 (0.04-0.07) |
//! | 4096+3 | copy_from_shared | ..._from            | 75.3 ns  | 46.7 ns | 0.60 (0.54-0.92) |
//! | 4096+3 | fill_shared      | write_bytes         | 80.7 ns  | 56.8 ns | 0.71 (0.54-0.78) |
//!
//! The 1.43 µs is glibc's `rep movsb` with the destination 3 bytes above the source modulo
//! 4 KiB, the slow case `swiotlb::shared` avoids.

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
