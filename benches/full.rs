//! 1-slot (64 B) ToDevice map+unmap in a 64 MiB pool kept 90% full: filled with the
//! realistic mix, then churned (random unmaps and maps around 90%) so the free space is
//! scattered, before the timing starts.

use crate::common::{build, map_unmap, source, POOL};
use criterion::{BenchmarkId, Criterion};
use swiotlb_bench::fill::Filler;
use swiotlb_bench::{Bounce, Direction, Kind};

pub fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("pool_90pct_full");
    for kind in Kind::ALL {
        let pool = build(kind, POOL);
        let mut held = Filler::new();
        let reached = held.prepare(&pool, 0.9, 90).expect("fill");
        assert!(reached >= 0.85, "{kind}: only {reached:.2} full");
        let mut buf = source(64);
        g.bench_function(BenchmarkId::new(kind.name(), "90%"), |b| {
            b.iter(|| map_unmap(&pool, &mut buf, 64, Direction::ToDevice, false))
        });
        held.release(&pool).expect("release");
        assert_eq!(pool.used_bytes(), 0);
    }
    g.finish();
}
