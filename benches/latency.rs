//! Map+unmap latency by size, with the copies and with skip-sync, one thread, empty pool.

use crate::common::{build, map_unmap, source, POOL};
use criterion::{BenchmarkId, Criterion, Throughput};
use swiotlb_bench::{Direction, Kind};

const SIZES: [usize; 5] = [64, 1024, 4096, 64 * 1024, 256 * 1024];

pub fn bench(c: &mut Criterion) {
    for (group, skip) in [("map_unmap_copy", false), ("map_unmap_skip_sync", true)] {
        let mut g = c.benchmark_group(group);
        for kind in Kind::ALL {
            let pool = build(kind, POOL);
            for size in SIZES {
                let mut buf = source(size);
                g.throughput(Throughput::Bytes(size as u64));
                g.bench_function(BenchmarkId::new(kind.name(), size), |b| {
                    b.iter(|| map_unmap(&pool, &mut buf, size, Direction::Bidirectional, skip))
                });
            }
        }
        g.finish();
    }
}
