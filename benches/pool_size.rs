//! 1-slot (64 B) ToDevice map+unmap in pools of 4 MiB, 64 MiB and 1 GiB, each kept half
//! full of the realistic mix (filled, then churned so the free space is scattered over the
//! whole pool). The cost of a map must not grow with the pool.

use crate::common::{build, map_unmap, size_label, source};
use criterion::{BenchmarkId, Criterion};
use swiotlb_bench::fill::Filler;
use swiotlb_bench::{Bounce, Direction, Kind};

const SIZES: [usize; 3] = [4 << 20, 64 << 20, 1 << 30];

pub fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("pool_size");
    for size in SIZES {
        for kind in Kind::ALL {
            let pool = build(kind, size);
            let mut held = Filler::new();
            held.prepare(&pool, 0.5, 50).expect("fill");
            let mut buf = source(64);
            g.bench_function(BenchmarkId::new(kind.name(), size_label(size)), |b| {
                b.iter(|| map_unmap(&pool, &mut buf, 64, Direction::ToDevice, false))
            });
            held.release(&pool).expect("release");
            assert_eq!(pool.used_bytes(), 0);
        }
    }
    g.finish();
}
