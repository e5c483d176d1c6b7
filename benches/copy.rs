//! The copy path: a ToDevice map+unmap (one copy in, nothing back) against one plain
//! `copy_nonoverlapping` of the same bytes between two page-aligned buffers.

use crate::common::{build, map_unmap, source, POOL};
use criterion::{BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use swiotlb_bench::{Direction, Kind};

const SIZES: [usize; 3] = [4096, 64 * 1024, 256 * 1024];

pub fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("copy_vs_memcpy");
    for size in SIZES {
        g.throughput(Throughput::Bytes(size as u64));
        let mut src = source(size);
        let mut dst = source(size);
        let (from, to) = (src.slice(size), dst.slice(size));
        g.bench_function(BenchmarkId::new("memcpy", size), |b| {
            b.iter(|| {
                // SAFETY: two distinct live buffers of `size` bytes.
                unsafe {
                    core::ptr::copy_nonoverlapping(
                        black_box(from.cast::<u8>().as_ptr()),
                        black_box(to.cast::<u8>().as_ptr()),
                        size,
                    )
                }
            })
        });
        for kind in Kind::ALL {
            let pool = build(kind, POOL);
            g.bench_function(BenchmarkId::new(kind.name(), size), |b| {
                b.iter(|| map_unmap(&pool, &mut src, size, Direction::ToDevice, false))
            });
        }
    }
    g.finish();
}
