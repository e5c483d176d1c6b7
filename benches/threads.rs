//! Aggregate throughput of 1-slot (64 B) ToDevice map+unmap at 1, 2, 4 and 8 threads.
//!
//! One iteration is one map+unmap on every thread; the time is from a barrier that
//! releases all threads to the moment the last one is done, so thread start-up is not
//! timed. Criterion's elements per second are therefore pairs per second, all threads
//! together.
//!
//! `private_pools` is the ceiling the machine allows: every thread maps into a pool of its
//! own (ours), so the threads share nothing at all. Scaling below it is the pools' doing;
//! scaling up to it is all a shared pool can hope for on the machine.

use crate::common::{build, map_unmap, source, POOL};
use criterion::{BenchmarkId, Criterion, Throughput};
use std::sync::Barrier;
use std::time::{Duration, Instant};
use swiotlb_bench::{AnyPool, Direction, Kind};

const THREADS: [usize; 4] = [1, 2, 4, 8];
const SIZE: usize = 64;

pub fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("threads");
    for kind in Kind::ALL {
        let pool = build(kind, POOL);
        for threads in THREADS {
            g.throughput(Throughput::Elements(threads as u64));
            g.bench_function(BenchmarkId::new(kind.name(), threads), |b| {
                b.iter_custom(|iters| run(threads, iters, |_| &pool))
            });
        }
    }
    let private: Vec<AnyPool> = (0..THREADS[THREADS.len() - 1])
        .map(|_| build(Kind::Swiotlb, POOL / 8))
        .collect();
    for threads in THREADS {
        g.throughput(Throughput::Elements(threads as u64));
        g.bench_function(BenchmarkId::new("private_pools", threads), |b| {
            b.iter_custom(|iters| run(threads, iters, |t| &private[t]))
        });
    }
    g.finish();
}

/// Times `iters` map+unmap pairs on each of `threads` threads, thread `t` using `pool(t)`,
/// from the barrier that releases them to the one they all reach when done.
fn run<'a>(threads: usize, iters: u64, pool: impl Fn(usize) -> &'a AnyPool + Sync) -> Duration {
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        for t in 0..threads {
            let (barrier, pool) = (&barrier, &pool);
            s.spawn(move || {
                let pool = pool(t);
                let mut buf = source(SIZE);
                barrier.wait();
                for _ in 0..iters {
                    map_unmap(pool, &mut buf, SIZE, Direction::ToDevice, false);
                }
                barrier.wait();
            });
        }
        barrier.wait();
        let start = Instant::now();
        barrier.wait();
        start.elapsed()
    })
}
