//! What the elastic pool costs: its fixed form against `Pool` itself (the hot path of a
//! pool that never grows), a map+unmap that lands in the last of 16 regions against the
//! same on one region, and the latency of a map that grows the pool.
//!
//! Every figure of a group comes from the same run, so their ratios hold on a noisy
//! machine. `cargo bench --bench main -- elastic`.

use core::ptr::NonNull;
use criterion::{BenchmarkId, Criterion};
use std::hint::black_box;
use std::time::{Duration, Instant};
use swiotlb::{
    Attrs, Config, Constraints, Direction, DmaPool, ElasticConfig, ElasticPool, HeapBackend, Pool,
};

/// A map and unmap of `len` bytes of `buf`, Bidirectional: the 1-slot pair skips the copy
/// back (as the README's figure), the 4 KiB pair copies both ways.
#[inline(always)]
fn pair(pool: &impl DmaPool, buf: &mut [u8], len: usize) {
    let attrs = if len <= 64 {
        Attrs::SKIP_CPU_SYNC
    } else {
        Attrs::NONE
    };
    let ptr = NonNull::from(&mut buf[..len]);
    let dir = Direction::Bidirectional;
    // SAFETY: `buf` is borrowed mutably for the call and is not pool memory.
    let dma = unsafe { pool.map_attrs(black_box(ptr), dir, &Constraints::NONE, Attrs::NONE) }
        .expect("map");
    // SAFETY: the live mapping of `ptr` made just above.
    unsafe { pool.unmap_into(black_box(dma), ptr, dir, attrs) }.expect("unmap");
}

const SIZES: [(usize, &str); 2] = [(64, "1slot"), (4096, "4KiB")];

pub fn bench(c: &mut Criterion) {
    let mut buf = vec![0x5au8; 1 << 20];
    let config = Config::new();

    // The fixed pool's hot path: `Pool` as it was, and the same pool behind the elastic
    // pool's calls.
    let mut g = c.benchmark_group("elastic_fixed");
    let pool = Pool::allocate(64 << 20, config).expect("pool");
    let fixed = ElasticPool::fixed(Pool::allocate(64 << 20, config).expect("pool"));
    for (len, name) in SIZES {
        g.bench_function(BenchmarkId::new("pool", name), |b| {
            b.iter(|| pair(&pool, &mut buf, len))
        });
        g.bench_function(BenchmarkId::new("elastic_fixed", name), |b| {
            b.iter(|| pair(&fixed, &mut buf, len))
        });
    }
    g.finish();

    // 16 regions of 1 MiB, the first 15 full: every pair lands in the last one. Beside it
    // one region, and two with the first full (the grown pool's path with the fewest
    // regions: what 16 cost over 2 is the number of regions, what 2 cost over 1 the path).
    let mut g = c.benchmark_group("elastic_16");
    let filler = vec![0u8; 256 << 10];
    let one = ElasticPool::new(HeapBackend::new(), regions(1)).expect("pool");
    let two = filled(2, &filler);
    let sixteen = filled(16, &filler);
    for (len, name) in SIZES {
        g.bench_function(BenchmarkId::new("pool", name), |b| {
            b.iter(|| pair(&pool, &mut buf, len))
        });
        g.bench_function(BenchmarkId::new("elastic_1_region", name), |b| {
            b.iter(|| pair(&one, &mut buf, len))
        });
        g.bench_function(BenchmarkId::new("elastic_2nd_region", name), |b| {
            b.iter(|| pair(&two, &mut buf, len))
        });
        g.bench_function(BenchmarkId::new("elastic_16th_region", name), |b| {
            b.iter(|| pair(&sixteen, &mut buf, len))
        });
    }
    g.finish();

    // A map that finds the pool full and grows it by a region of 256 KiB, 1 MiB or 4 MiB
    // (shared by the heap backend, cleared by the new pool, published), timed alone; the
    // unmap and the shrink that give the region back are not timed.
    let mut g = c.benchmark_group("elastic_grow");
    g.sample_size(20);
    for size in [256 << 10, 1 << 20, 4 << 20] {
        let config = ElasticConfig::new()
            .with_pool(Config::new())
            .with_initial(256 << 10)
            .with_grow(size, size)
            .with_idle_time_ns(0);
        let pool = ElasticPool::new(HeapBackend::new(), config).expect("pool");
        // SAFETY: as for the filler above.
        let full = unsafe {
            pool.try_map(
                NonNull::from(&filler[..]),
                Direction::ToDevice,
                &Constraints::NONE,
            )
        }
        .expect("fill the first region");
        g.bench_function(BenchmarkId::new("map_that_grows", size >> 10), |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    let ptr = NonNull::from(&mut buf[..64]);
                    let start = Instant::now();
                    // SAFETY: `buf` is ours and not pool memory.
                    let dma = unsafe {
                        pool.try_map(black_box(ptr), Direction::ToDevice, &Constraints::NONE)
                    }
                    .expect("map with growth");
                    timed += start.elapsed();
                    // SAFETY: the live mapping just made.
                    unsafe { pool.unmap_into(dma, ptr, Direction::ToDevice, Attrs::NONE) }
                        .expect("unmap");
                    assert_eq!(pool.shrink(), 1);
                }
                timed
            })
        });
        // SAFETY: `full` maps `filler`, unmapped once.
        unsafe { pool.unmap(full, 256 << 10, Direction::ToDevice, Attrs::NONE) }.expect("unmap");
    }
    g.finish();
}

/// `n` regions of 1 MiB, all but the last filled with mappings of `filler` (never unmapped:
/// the pool is dropped with them).
fn filled(n: usize, filler: &[u8]) -> ElasticPool {
    let pool = ElasticPool::new(HeapBackend::new(), regions(n)).expect("pool");
    for _ in 1..n {
        pool.grow(1 << 20).expect("grow");
    }
    for _ in 0..(n - 1) * 4 {
        // SAFETY: `filler` outlives the pool (the caller drops the pool first) and is only
        // read; the mappings are never unmapped.
        unsafe {
            pool.try_map(
                NonNull::from(filler),
                Direction::ToDevice,
                &Constraints::NONE,
            )
        }
        .expect("fill");
    }
    assert_eq!(pool.stats().sub_pools, n);
    pool
}

/// 1 MiB regions, up to `n`.
fn regions(n: usize) -> ElasticConfig {
    ElasticConfig::new()
        .with_pool(Config::new())
        .with_initial(1 << 20)
        .with_grow(1 << 20, 1 << 20)
        .with_max_sub_pools(n)
        .with_max_bytes(n << 20)
}
