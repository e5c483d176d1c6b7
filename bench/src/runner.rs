//! The timed multi-thread runner behind `swiotlb-bench`: our counterpart of Linux's
//! `dma_map_benchmark` (`kernel/dma/map_benchmark.c`).
//!
//! Each thread owns `batch` original buffers of `granule` bytes and, until the time is up,
//! maps all of them, then unmaps all of them, timing the two halves. The per-operation
//! latency of a batch is its half's time over the number of operations, so that the clock
//! (about 20 ns a read) costs little per operation; the standard deviation reported is that
//! of these batch means, which is smaller than the spread of single operations would be.
//! Linux's tool times each operation alone; `--batch 1` does the same here, clock included.
//! Throughput is map+unmap pairs completed by all threads over the wall-clock time.

use crate::{Bounce, Direction, Error, Kind};
use core::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

/// What to run.
#[derive(Clone, Copy, Debug)]
pub struct RunConfig {
    /// Which implementation.
    pub kind: Kind,
    /// Threads mapping and unmapping at once.
    pub threads: usize,
    /// How long to run.
    pub duration: Duration,
    /// Bytes per mapping.
    pub granule: usize,
    /// Direction of every mapping.
    pub dir: Direction,
    /// Skip the copy back on unmap.
    pub skip_sync: bool,
    /// Bytes in the pool.
    pub pool_size: usize,
    /// Mappings each thread holds at once (its batch); lowered if the pool is too small.
    pub batch: usize,
}

/// What a run measured.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "cli", derive(serde::Serialize))]
pub struct RunResult {
    /// Implementation name.
    pub implementation: &'static str,
    /// Threads.
    pub threads: usize,
    /// Bytes per mapping.
    pub granule: usize,
    /// Direction, as on the command line.
    pub direction: &'static str,
    /// Whether unmap skipped the copy back.
    pub skip_sync: bool,
    /// Bytes of pool memory.
    pub pool_size: usize,
    /// Mappings each thread held at once.
    pub batch: usize,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Map+unmap pairs completed by all threads.
    pub pairs: u64,
    /// Pairs per second, all threads together.
    pub pairs_per_second: f64,
    /// Mean map latency, ns.
    pub map_ns: f64,
    /// Standard deviation of the batch means of map latency, ns.
    pub map_ns_stddev: f64,
    /// Mean unmap latency, ns.
    pub unmap_ns: f64,
    /// Standard deviation of the batch means of unmap latency, ns.
    pub unmap_ns_stddev: f64,
    /// The pool's high-water mark, bytes (as the implementation counts: whole slots or
    /// blocks).
    pub high_water_bytes: usize,
    /// Maps refused because the pool was full.
    pub failed_maps: u64,
}

/// The command-line name of a direction.
pub const fn direction_name(dir: Direction) -> &'static str {
    match dir {
        Direction::ToDevice => "to-device",
        Direction::FromDevice => "from-device",
        Direction::Bidirectional => "bidirectional",
    }
}

/// Running sums of one latency.
#[derive(Clone, Copy, Debug, Default)]
struct Sums {
    /// Total ns over all operations.
    total_ns: f64,
    /// Operations.
    ops: u64,
    /// Sum and sum of squares of batch means, and the number of batches.
    sum: f64,
    sum_sq: f64,
    batches: u64,
}

impl Sums {
    fn add(&mut self, elapsed: Duration, ops: usize) {
        let ns = elapsed.as_nanos() as f64;
        let mean = ns / ops as f64;
        self.total_ns += ns;
        self.ops += ops as u64;
        self.sum += mean;
        self.sum_sq += mean * mean;
        self.batches += 1;
    }

    fn merge(&mut self, o: &Sums) {
        self.total_ns += o.total_ns;
        self.ops += o.ops;
        self.sum += o.sum;
        self.sum_sq += o.sum_sq;
        self.batches += o.batches;
    }

    fn mean(&self) -> f64 {
        if self.ops == 0 {
            0.0
        } else {
            self.total_ns / self.ops as f64
        }
    }

    fn stddev(&self) -> f64 {
        if self.batches < 2 {
            return 0.0;
        }
        let n = self.batches as f64;
        let mean = self.sum / n;
        ((self.sum_sq / n - mean * mean).max(0.0) * n / (n - 1.0)).sqrt()
    }
}

#[derive(Debug, Default)]
struct ThreadSums {
    map: Sums,
    unmap: Sums,
    failed: u64,
}

/// Runs `cfg`, calling `tick` with the fraction of the time elapsed about every 50 ms.
///
/// # Errors
///
/// A message if the pool cannot be built, cannot hold one mapping per thread, refuses the
/// granule, or refuses to unmap a live mapping.
pub fn run(cfg: &RunConfig, tick: &(dyn Fn(f64) + Sync)) -> Result<RunResult, String> {
    if cfg.threads == 0 || cfg.granule == 0 || cfg.batch == 0 {
        return Err("threads, granule and batch must be at least 1".into());
    }
    let pool = cfg.kind.build(cfg.pool_size)?;
    // Room for every thread's batch twice over, counting the rounding of the coarsest
    // implementation (a power of two of at least a slot).
    let rounded = cfg.granule.next_power_of_two().max(crate::SLOT_SIZE);
    let per_thread = pool.capacity() / 2 / cfg.threads;
    if per_thread < rounded {
        return Err(format!(
            "a {} pool cannot hold {} threads' {}-byte mappings",
            pool.capacity(),
            cfg.threads,
            cfg.granule
        ));
    }
    let batch = cfg.batch.min(per_thread / rounded);
    check_granule(&pool, cfg)?;

    let stop = AtomicBool::new(false);
    let barrier = Barrier::new(cfg.threads + 1);
    let (elapsed, sums) = std::thread::scope(|s| {
        let workers: Vec<_> = (0..cfg.threads)
            .map(|_| s.spawn(|| worker(&pool, cfg, batch, &barrier, &stop)))
            .collect();
        barrier.wait();
        let start = Instant::now();
        loop {
            let done = start.elapsed();
            if done >= cfg.duration {
                break;
            }
            tick(done.as_secs_f64() / cfg.duration.as_secs_f64());
            std::thread::sleep((cfg.duration - done).min(Duration::from_millis(50)));
        }
        stop.store(true, Ordering::Relaxed);
        let sums: Vec<_> = workers.into_iter().map(|w| w.join()).collect();
        (start.elapsed(), sums)
    });
    tick(1.0);
    let mut total = ThreadSums::default();
    for s in sums {
        let s = s.map_err(|_| "a benchmark thread panicked".to_string())??;
        total.map.merge(&s.map);
        total.unmap.merge(&s.unmap);
        total.failed += s.failed;
    }
    let seconds = elapsed.as_secs_f64();
    Ok(RunResult {
        implementation: cfg.kind.name(),
        threads: cfg.threads,
        granule: cfg.granule,
        direction: direction_name(cfg.dir),
        skip_sync: cfg.skip_sync,
        pool_size: pool.capacity(),
        batch,
        seconds,
        pairs: total.unmap.ops,
        pairs_per_second: total.unmap.ops as f64 / seconds,
        map_ns: total.map.mean(),
        map_ns_stddev: total.map.stddev(),
        unmap_ns: total.unmap.mean(),
        unmap_ns_stddev: total.unmap.stddev(),
        high_water_bytes: pool.high_water_bytes(),
        failed_maps: total.failed,
    })
}

/// One map and unmap of the granule, so that a refused size fails the run at once.
fn check_granule(pool: &impl Bounce, cfg: &RunConfig) -> Result<(), String> {
    let mut buf = vec![0u8; cfg.granule];
    let ptr = NonNull::from(&mut buf[..]);
    // SAFETY: `buf` lives to the end of this function and is not touched meanwhile.
    let dma = unsafe { pool.map(ptr, cfg.dir) }
        .map_err(|e| format!("{}: a {}-byte mapping: {e}", cfg.kind, cfg.granule))?;
    // SAFETY: `dma` is the live mapping of `buf` just made.
    unsafe { pool.unmap(dma, ptr, cfg.dir, cfg.skip_sync) }.map_err(|e| e.to_string())
}

fn worker(
    pool: &impl Bounce,
    cfg: &RunConfig,
    batch: usize,
    barrier: &Barrier,
    stop: &AtomicBool,
) -> Result<ThreadSums, String> {
    let mut bufs: Vec<Box<[u8]>> = (0..batch)
        .map(|i| vec![i as u8; cfg.granule].into_boxed_slice())
        .collect();
    let ptrs: Vec<NonNull<[u8]>> = bufs.iter_mut().map(|b| NonNull::from(&mut **b)).collect();
    let mut dmas = vec![0u64; batch];
    let mut sums = ThreadSums::default();
    barrier.wait();
    while !stop.load(Ordering::Relaxed) {
        let t0 = Instant::now();
        let mut mapped = 0;
        for &buf in &ptrs {
            // SAFETY: each buffer is this thread's own, alive until `bufs` drops after the
            // loop, and touched by nothing else while mapped.
            match unsafe { pool.map(buf, cfg.dir) } {
                Ok(dma) => {
                    dmas[mapped] = dma;
                    mapped += 1;
                }
                Err(Error::Full) => {
                    sums.failed += 1;
                    break;
                }
                Err(e) => return Err(e.to_string()),
            }
        }
        let t1 = Instant::now();
        for (&dma, &buf) in dmas[..mapped].iter().zip(&ptrs) {
            // SAFETY: `dma` is the live mapping of `buf` made above.
            unsafe { pool.unmap(dma, buf, cfg.dir, cfg.skip_sync) }
                .map_err(|e| format!("unmap of a live mapping refused: {e}"))?;
        }
        let t2 = Instant::now();
        if mapped > 0 {
            sums.map.add(t1 - t0, mapped);
            sums.unmap.add(t2 - t1, mapped);
        }
    }
    drop(bufs);
    Ok(sums)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_runs_on_two_threads_and_counts_its_work() {
        for kind in Kind::ALL {
            let cfg = RunConfig {
                kind,
                threads: 2,
                duration: Duration::from_millis(50),
                granule: 3000,
                dir: Direction::Bidirectional,
                skip_sync: false,
                pool_size: 4 << 20,
                batch: 8,
            };
            let r = run(&cfg, &|_| {}).unwrap();
            assert!(r.pairs > 0, "{kind}: no work done");
            assert!(r.map_ns > 0.0 && r.unmap_ns > 0.0, "{kind}: {r:?}");
            assert_eq!(r.failed_maps, 0, "{kind}");
            // At least one thread's batch was live at once.
            assert!(r.high_water_bytes >= 8 * 3000, "{kind}: {r:?}");
        }
    }

    #[test]
    fn a_pool_too_small_for_the_threads_is_refused() {
        let cfg = RunConfig {
            kind: Kind::Swiotlb,
            threads: 64,
            duration: Duration::from_millis(10),
            granule: 256 * 1024,
            dir: Direction::ToDevice,
            skip_sync: false,
            pool_size: 4 << 20,
            batch: 1,
        };
        assert!(run(&cfg, &|_| {}).is_err());
    }
}
