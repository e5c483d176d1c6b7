//! What keeping the device from seeing private or stale bytes costs: zeroing the bytes of a
//! run around a mapping's data that an earlier mapping left (against a reuse that leaves
//! none), zero-filling a `FromDevice` buffer instead of copying it in, and clearing a new
//! pool's region (against the calloc'd region of `Pool::allocate`).

use core::ptr::NonNull;
use criterion::{BenchmarkId, Criterion};
use std::hint::black_box;
use swiotlb::{Attrs, Config, Constraints, Direction, Fill, Pool};

/// One map and unmap (copy back skipped) of the first `len` bytes of `buf` with `attrs`.
#[inline(always)]
fn pair(pool: &Pool, buf: &mut [u8], len: usize, dir: Direction, attrs: Attrs) {
    let ptr = NonNull::from(&mut buf[..len]);
    // SAFETY: `buf` is borrowed mutably for the call and is not pool memory.
    let dma =
        unsafe { pool.map_attrs(black_box(ptr), dir, &Constraints::NONE, attrs) }.expect("map");
    // SAFETY: the live mapping of `ptr` made just above.
    unsafe { pool.unmap_into(black_box(dma), ptr, dir, Attrs::SKIP_CPU_SYNC) }.expect("unmap");
}

pub fn bench(c: &mut Criterion) {
    let config = Config::new().with_areas(1);
    let pool = Pool::allocate(4 << 20, config).expect("pool");
    let mut buf = vec![0x5au8; 64 << 10];

    // A 64-byte mapping into a slot whose last user wrote 64 bytes (nothing to zero) or
    // 2000 (1936 bytes to zero first), timed as a pair with the 2000-byte mapping before it.
    let mut g = c.benchmark_group("stale_bytes");
    g.bench_function("64_after_64", |b| {
        b.iter(|| {
            pair(&pool, &mut buf, 64, Direction::ToDevice, Attrs::NONE);
            pair(&pool, &mut buf, 64, Direction::ToDevice, Attrs::NONE);
        })
    });
    g.bench_function("64_after_2000", |b| {
        b.iter(|| {
            pair(&pool, &mut buf, 2000, Direction::ToDevice, Attrs::NONE);
            pair(&pool, &mut buf, 64, Direction::ToDevice, Attrs::NONE);
        })
    });
    g.bench_function("2000_after_2000", |b| {
        b.iter(|| {
            pair(&pool, &mut buf, 2000, Direction::ToDevice, Attrs::NONE);
            pair(&pool, &mut buf, 2000, Direction::ToDevice, Attrs::NONE);
        })
    });
    g.finish();

    // A FromDevice buffer copied in (Linux) or zero-filled.
    let mut g = c.benchmark_group("from_device_fill");
    for len in [64, 4096, 64 << 10] {
        for (name, fill) in [("original", Fill::Original), ("zero", Fill::Zero)] {
            g.bench_function(BenchmarkId::new(name, len), |b| {
                b.iter(|| {
                    pair(
                        &pool,
                        &mut buf,
                        len,
                        Direction::FromDevice,
                        Attrs::NONE.fill(fill),
                    )
                })
            });
        }
    }
    g.finish();

    // Building a 64 MiB pool: `Pool::new` clears the region; `Pool::allocate`'s comes zeroed
    // from calloc (fresh pages) and is not written.
    let mut g = c.benchmark_group("pool_construction");
    g.sample_size(10);
    let size = 64 << 20;
    let mut region = vec![0xa5u8; size];
    g.bench_function("new_clears_64MiB", |b| {
        b.iter(|| {
            let cpu = NonNull::new(region.as_mut_ptr()).expect("region");
            // SAFETY: `region` outlives the pool, which is dropped at once and is the only
            // user of the memory meanwhile.
            let pool = unsafe { Pool::new(cpu, 0x1_0000_0000, size, Config::new()) };
            black_box(pool.expect("pool"));
        })
    });
    g.bench_function("allocate_64MiB", |b| {
        b.iter(|| black_box(Pool::allocate(size, Config::new()).expect("pool")))
    });
    g.finish();
}
