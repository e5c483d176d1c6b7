//! The timed multi-thread runner behind `swiotlb-bench`: our counterpart of Linux's
//! `dma_map_benchmark` (`kernel/dma/map_benchmark.c`).
//!
//! Two workloads, each thread with buffers of its own:
//!
//! - [`Workload::Fixed`]: each thread maps `batch` buffers of `granule` bytes, then unmaps
//!   them all, until the time is up.
//! - [`Workload::Mix`]: the virtio mix ([`crate::mix::virtio_request`]) with `batch`
//!   mappings in flight per thread: each step unmaps the oldest and maps the next request.
//!
//! What is measured:
//!
//! - **pairs/s**: map+unmap pairs completed by all threads over the wall-clock time, and
//!   **pair ns**, the mean time of one pair on one thread. Batches are timed as a whole,
//!   so the clock (about 20 ns a read) costs little per operation.
//! - **p50 / p99** of single maps and unmaps: in every batch one map and one unmap (a
//!   different position each batch) are timed alone, and the clock's own cost (the median
//!   of back-to-back reads, measured once per process: [`clock_ns`]) is taken off each. A
//!   percentile is within about 3% of the value it names ([`Histogram`]).
//!
//! Beside the pools, [`Subject::Memcpy`] is the copy floor of the same workload: each
//! mapping gets a private buffer of its own, and map and unmap only copy, by the least any
//! bounce buffer must: in for `ToDevice` and `Bidirectional`, back for `FromDevice` and
//! `Bidirectional` (unless skip-sync). No allocation, no lock, no metadata.

use crate::histogram::Histogram;
use crate::mix::{virtio_requests, MAX_SIZE};
use crate::{AnyPool, Bounce, Buffer, Direction, DmaAddr, Error, Kind, MAX_MAPPING, SLOT_SIZE};
use core::fmt;
use core::ptr::NonNull;
use core::str::FromStr;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Barrier, OnceLock};
use std::time::{Duration, Instant};

/// What each thread does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// Map `batch` buffers of `granule` bytes in `dir`, then unmap them all.
    Fixed {
        /// Bytes per mapping.
        granule: usize,
        /// Direction of every mapping.
        dir: Direction,
    },
    /// The virtio mix with `batch` mappings in flight: unmap the oldest, map the next.
    Mix,
}

impl Workload {
    /// The name used on the command line and in the JSON.
    pub const fn name(self) -> &'static str {
        match self {
            Workload::Fixed { .. } => "fixed",
            Workload::Mix => "mix",
        }
    }

    /// The largest mapping the workload makes.
    pub const fn largest(self) -> usize {
        match self {
            Workload::Fixed { granule, .. } => granule,
            Workload::Mix => MAX_SIZE,
        }
    }
}

/// What is run: one of the pools, or the copies alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Subject {
    /// A bounce pool.
    Pool(Kind),
    /// The copy floor: the copies of the workload between buffers, nothing else.
    Memcpy,
}

impl Subject {
    /// The name used in tables, the JSON and on the command line.
    pub const fn name(self) -> &'static str {
        match self {
            Subject::Pool(k) => k.name(),
            Subject::Memcpy => "memcpy",
        }
    }

    /// The copy floor first, then every pool, ours first.
    pub fn all() -> Vec<Subject> {
        core::iter::once(Subject::Memcpy)
            .chain(Kind::ALL.into_iter().map(Subject::Pool))
            .collect()
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Subject {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "memcpy" {
            return Ok(Subject::Memcpy);
        }
        s.parse::<Kind>()
            .map(Subject::Pool)
            .map_err(|e| format!("{e}, memcpy"))
    }
}

/// What to run.
#[derive(Clone, Copy, Debug)]
pub struct RunConfig {
    /// Which implementation.
    pub subject: Subject,
    /// Threads mapping and unmapping at once.
    pub threads: usize,
    /// How long to run.
    pub duration: Duration,
    /// What each thread does.
    pub workload: Workload,
    /// Skip the copy back on unmap.
    pub skip_sync: bool,
    /// Bytes in the pool.
    pub pool_size: usize,
    /// Mappings each thread holds at once; lowered for a fixed workload if the pool is too
    /// small.
    pub batch: usize,
}

/// What a run measured.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "cli", derive(serde::Serialize))]
pub struct RunResult {
    /// Implementation name (`memcpy` for the copy floor).
    pub implementation: &'static str,
    /// Threads.
    pub threads: usize,
    /// `fixed` or `mix`.
    pub workload: &'static str,
    /// Bytes per mapping (`None` for the mix).
    pub granule: Option<usize>,
    /// Direction, as on the command line (`mixed` for the mix).
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
    /// Mean time of one map+unmap pair on one thread, ns.
    pub pair_ns: f64,
    /// Median of single maps, ns (the clock's cost taken off).
    pub map_p50_ns: f64,
    /// 99th percentile of single maps, ns.
    pub map_p99_ns: f64,
    /// Median of single unmaps, ns.
    pub unmap_p50_ns: f64,
    /// 99th percentile of single unmaps, ns.
    pub unmap_p99_ns: f64,
    /// Single maps (and as many unmaps) timed for the percentiles.
    pub samples: u64,
    /// The clock's cost taken off every single-operation time, ns.
    pub clock_ns: f64,
    /// The pool's high-water mark, bytes (as the implementation counts: whole slots or
    /// blocks); `None` for the copy floor.
    pub high_water_bytes: Option<usize>,
    /// Maps refused because the pool was full.
    pub failed_maps: u64,
    /// How many times as many pairs per second swiotlb did in the same comparison (filled
    /// in by whoever ran both; `None` otherwise).
    pub swiotlb_speedup: Option<f64>,
}

/// The command-line name of a direction.
pub const fn direction_name(dir: Direction) -> &'static str {
    match dir {
        Direction::ToDevice => "to-device",
        Direction::FromDevice => "from-device",
        Direction::Bidirectional => "bidirectional",
    }
}

/// The clock's own cost and resolution in ns: the median and the smallest non-zero of
/// back-to-back `Instant::now` differences, measured once per process.
fn clock() -> (f64, f64) {
    static CLOCK: OnceLock<(f64, f64)> = OnceLock::new();
    *CLOCK.get_or_init(|| {
        let mut d: Vec<u128> = (0..2001)
            .map(|_| {
                let a = Instant::now();
                let b = Instant::now();
                (b - a).as_nanos()
            })
            .collect();
        d.sort_unstable();
        let resolution = d.iter().copied().find(|&x| x > 0).unwrap_or(1);
        (d[d.len() / 2] as f64, resolution as f64)
    })
}

/// The clock's own cost, ns: the median of back-to-back `Instant::now` differences,
/// measured once per process. Single-operation times have it taken off.
pub fn clock_ns() -> f64 {
    clock().0
}

/// The clock's resolution, ns: the smallest non-zero difference of two back-to-back reads
/// (single-operation times are multiples of it, less [`clock_ns`]).
pub fn clock_resolution_ns() -> f64 {
    clock().1
}

/// The least pool size `cfg` can run with, and why: every pool kind's own minimum, and room
/// for two of the workload's largest mappings per thread (as the coarsest implementation
/// rounds them: a power of two of at least a slot).
pub fn min_pool_size(cfg: &RunConfig) -> (usize, String) {
    let rounded = cfg.workload.largest().next_power_of_two().max(SLOT_SIZE);
    let per_threads = rounded.saturating_mul(2).saturating_mul(cfg.threads.max(1));
    let kind_min = match cfg.subject {
        Subject::Pool(k) => k.min_pool_size(),
        Subject::Memcpy => 0,
    };
    if kind_min > per_threads {
        (
            kind_min,
            format!(
                "{} pools are whole segments of {}",
                cfg.subject,
                crate::size_text(kind_min)
            ),
        )
    } else {
        (
            per_threads,
            format!(
                "{} thread{}, each with room for two mappings of {}",
                cfg.threads,
                if cfg.threads == 1 { "" } else { "s" },
                crate::size_text(rounded)
            ),
        )
    }
}

/// Running figures of one thread.
#[derive(Debug, Default)]
struct ThreadSums {
    /// Time in timed batches, ns, and the pairs they completed.
    batch_ns: u128,
    pairs: u64,
    map: Histogram,
    unmap: Histogram,
    failed: u64,
}

/// Runs `cfg`, calling `tick` with the fraction of the time elapsed about every 50 ms.
///
/// # Errors
///
/// A message if a figure is out of range, the pool cannot be built, cannot hold one mapping
/// per thread, refuses a mapping of the workload, or refuses to unmap a live mapping.
pub fn run(cfg: &RunConfig, tick: &(dyn Fn(f64) + Sync)) -> Result<RunResult, String> {
    if cfg.threads == 0 || cfg.batch == 0 {
        return Err("threads and batch must be at least 1".into());
    }
    if let Workload::Fixed { granule, .. } = cfg.workload {
        if granule == 0 || granule > MAX_MAPPING {
            return Err(format!(
                "a mapping is 1 to {MAX_MAPPING} bytes, not {granule}"
            ));
        }
    }
    let (min, why) = min_pool_size(cfg);
    if cfg.pool_size < min {
        return Err(format!(
            "a {}-byte pool is too small: at least {min} bytes ({why})",
            cfg.pool_size
        ));
    }
    let clock = clock_ns();
    let (pool, capacity) = match cfg.subject {
        Subject::Pool(kind) => {
            let pool = kind.build(cfg.pool_size)?;
            let capacity = pool.capacity();
            (Some(pool), capacity)
        }
        Subject::Memcpy => (None, cfg.pool_size),
    };
    let rounded = cfg.workload.largest().next_power_of_two().max(SLOT_SIZE);
    let batch = match cfg.workload {
        Workload::Fixed { .. } => cfg.batch.min(capacity / 2 / cfg.threads / rounded).max(1),
        Workload::Mix => cfg.batch,
    };
    if let (Some(pool), Workload::Fixed { granule, dir }) = (&pool, cfg.workload) {
        check_granule(pool, granule, dir, cfg.skip_sync)?;
    }

    let stop = AtomicBool::new(false);
    let barrier = Barrier::new(cfg.threads + 1);
    let (elapsed, sums) = std::thread::scope(|s| {
        let workers: Vec<_> = (0..cfg.threads)
            .map(|t| {
                let (pool, barrier, stop) = (pool.as_ref(), &barrier, &stop);
                s.spawn(move || {
                    let seed = t as u64 + 1;
                    match pool {
                        Some(p) => worker(PoolOps(p), cfg, batch, seed, clock, barrier, stop),
                        None => {
                            let ops = CopyOps::new(batch, cfg.workload.largest());
                            match ops {
                                Ok(ops) => worker(ops, cfg, batch, seed, clock, barrier, stop),
                                Err(e) => {
                                    barrier.wait();
                                    Err(e)
                                }
                            }
                        }
                    }
                })
            })
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
        let elapsed = start.elapsed();
        let sums: Vec<_> = workers.into_iter().map(|w| w.join()).collect();
        (elapsed, sums)
    });
    tick(1.0);
    let mut total = ThreadSums::default();
    for s in sums {
        let s = s.map_err(|_| "a benchmark thread panicked".to_string())??;
        total.batch_ns += s.batch_ns;
        total.pairs += s.pairs;
        total.map.merge(&s.map);
        total.unmap.merge(&s.unmap);
        total.failed += s.failed;
    }
    let seconds = elapsed.as_secs_f64();
    let pct = |h: &Histogram, q| h.percentile(q).unwrap_or(0.0);
    let (granule, direction) = match cfg.workload {
        Workload::Fixed { granule, dir } => (Some(granule), direction_name(dir)),
        Workload::Mix => (None, "mixed"),
    };
    Ok(RunResult {
        implementation: cfg.subject.name(),
        threads: cfg.threads,
        workload: cfg.workload.name(),
        granule,
        direction,
        skip_sync: cfg.skip_sync,
        pool_size: capacity,
        batch,
        seconds,
        pairs: total.pairs,
        pairs_per_second: total.pairs as f64 / seconds,
        pair_ns: if total.pairs == 0 {
            0.0
        } else {
            total.batch_ns as f64 / total.pairs as f64
        },
        map_p50_ns: pct(&total.map, 0.5),
        map_p99_ns: pct(&total.map, 0.99),
        unmap_p50_ns: pct(&total.unmap, 0.5),
        unmap_p99_ns: pct(&total.unmap, 0.99),
        samples: total.map.count(),
        clock_ns: clock,
        high_water_bytes: pool.as_ref().map(|p| p.high_water_bytes()),
        failed_maps: total.failed,
        swiotlb_speedup: None,
    })
}

/// One map and unmap of the granule, so that a refused size fails the run at once.
fn check_granule(pool: &AnyPool, granule: usize, dir: Direction, skip: bool) -> Result<(), String> {
    let mut buf = vec![0u8; granule];
    let ptr = NonNull::from(&mut buf[..]);
    // SAFETY: `buf` lives to the end of this function and is not touched meanwhile.
    let dma = unsafe { pool.map(ptr, dir) }
        .map_err(|e| format!("a {granule}-byte {} mapping: {e}", direction_name(dir)))?;
    // SAFETY: `dma` is the live mapping of `buf` just made.
    unsafe { pool.unmap(dma, ptr, dir, skip) }
        .map_err(|e| format!("unmap of a {granule}-byte mapping: {e}"))
}

/// Map and unmap as one thread sees them: `slot` names the thread's buffer (one per
/// mapping in flight), so the copy floor can give each its own bounce buffer.
trait Ops {
    /// # Safety
    ///
    /// As [`Bounce::map`]; `slot` is not in use by another live mapping.
    unsafe fn map(
        &mut self,
        slot: usize,
        buf: NonNull<[u8]>,
        dir: Direction,
    ) -> Result<DmaAddr, Error>;

    /// # Safety
    ///
    /// As [`Bounce::unmap`]; `dma` was mapped through `slot`.
    unsafe fn unmap(
        &mut self,
        slot: usize,
        dma: DmaAddr,
        buf: NonNull<[u8]>,
        dir: Direction,
        skip: bool,
    ) -> Result<(), Error>;
}

/// A pool's own calls.
struct PoolOps<'a>(&'a AnyPool);

impl Ops for PoolOps<'_> {
    #[inline(always)]
    unsafe fn map(
        &mut self,
        _slot: usize,
        buf: NonNull<[u8]>,
        dir: Direction,
    ) -> Result<DmaAddr, Error> {
        // SAFETY: the caller keeps `Bounce::map`'s contract.
        unsafe { self.0.map(buf, dir) }
    }

    #[inline(always)]
    unsafe fn unmap(
        &mut self,
        _slot: usize,
        dma: DmaAddr,
        buf: NonNull<[u8]>,
        dir: Direction,
        skip: bool,
    ) -> Result<(), Error> {
        // SAFETY: the caller keeps `Bounce::unmap`'s contract.
        unsafe { self.0.unmap(dma, buf, dir, skip) }
    }
}

/// The copy floor: bounce buffers from an arena of the thread's own, and only the copies.
///
/// Where a bounce buffer lies decides whether the copy finds it in cache, so the floor
/// places them as well as a pool could at no cost: a block of the size's power of two
/// (at least 64 B; aligned to itself up to a page, so buffers of a page or more are
/// page-aligned, as the pools align them), the most recently freed one of that size first,
/// as a buddy allocator reuses blocks. No lock, no search, no metadata but a stack of free
/// blocks per size. (One buffer per slot at a fixed place put every small copy at the start
/// of a 256 KiB block, in the same few cache sets, and a ring over the arena kept every
/// buffer cold: both made this "floor" slower than the pools.)
struct CopyOps {
    arena: Buffer,
    /// The arena's first byte never handed out.
    bump: usize,
    /// Free blocks by size class (log2 of the block size).
    free: Vec<Vec<usize>>,
    /// Each slot's (class, offset) while mapped.
    at: Vec<(usize, usize)>,
}

impl CopyOps {
    fn new(slots: usize, largest: usize) -> Result<Self, String> {
        // Each class can hold at most `slots` blocks at once, and the classes' sizes are
        // powers of two up to the largest's: less than `slots` blocks of twice the largest,
        // plus alignment.
        let size = slots
            .checked_mul(Self::block(largest))
            .and_then(|n| n.checked_mul(4))
            .ok_or("the copy floor's arena overflows")?;
        Ok(Self {
            arena: Buffer::new(size, 0)?,
            bump: 0,
            free: vec![Vec::new(); usize::BITS as usize],
            at: vec![(0, 0); slots],
        })
    }

    fn block(len: usize) -> usize {
        len.max(64).next_power_of_two()
    }

    /// A block for `len` bytes: its class and offset.
    fn place(&mut self, len: usize) -> Result<(usize, usize), Error> {
        let size = Self::block(len);
        let class = size.trailing_zeros() as usize;
        if let Some(off) = self.free[class].pop() {
            return Ok((class, off));
        }
        let off = self.bump.next_multiple_of(size.min(crate::PAGE_SIZE));
        if off + size > self.arena.len() {
            return Err(Error::Full);
        }
        self.bump = off + size;
        Ok((class, off))
    }
}

impl Ops for CopyOps {
    #[inline(always)]
    unsafe fn map(
        &mut self,
        slot: usize,
        buf: NonNull<[u8]>,
        dir: Direction,
    ) -> Result<DmaAddr, Error> {
        let (class, off) = self.place(buf.len())?;
        self.at[slot] = (class, off);
        let dst = self.arena.slice(off + buf.len()).cast::<u8>();
        // SAFETY: `off + len` is inside the arena (`place` checked its block is).
        let dst = unsafe { dst.add(off) };
        if dir != Direction::FromDevice {
            // SAFETY: `buf` is readable (caller's promise); the block at `off` is this
            // mapping's alone (it returns to a free list only when unmapped) and is not
            // `buf`'s.
            unsafe { crate::copy(buf.cast::<u8>().as_ptr(), dst.as_ptr(), buf.len()) };
        }
        Ok(dst.as_ptr() as DmaAddr)
    }

    #[inline(always)]
    unsafe fn unmap(
        &mut self,
        slot: usize,
        _dma: DmaAddr,
        buf: NonNull<[u8]>,
        dir: Direction,
        skip: bool,
    ) -> Result<(), Error> {
        let (class, off) = self.at[slot];
        if dir != Direction::ToDevice && !skip {
            let src = self.arena.slice(off + buf.len()).cast::<u8>();
            // SAFETY: this slot's bounce buffer, `buf.len()` bytes at `off` in the arena,
            // mapped and not `buf`'s; `buf` is writable (caller's promise).
            unsafe { crate::copy(src.add(off).as_ptr(), buf.cast::<u8>().as_ptr(), buf.len()) };
        }
        self.free[class].push(off);
        Ok(())
    }
}

/// Times `f`, taking the clock's cost off.
#[inline(always)]
fn timed<T>(clock: f64, h: &mut Histogram, f: impl FnOnce() -> T) -> T {
    let a = Instant::now();
    let out = f();
    let ns = a.elapsed().as_nanos() as f64 - clock;
    h.record(ns.max(0.0) as u64);
    out
}

fn worker(
    mut ops: impl Ops,
    cfg: &RunConfig,
    batch: usize,
    seed: u64,
    clock: f64,
    barrier: &Barrier,
    stop: &AtomicBool,
) -> Result<ThreadSums, String> {
    let len = cfg.workload.largest();
    // Page-aligned originals, as in the criterion benches: a copy's speed depends on how
    // source and destination are aligned to each other, and the heap's placement of a
    // `Vec` differs from one run to the next (glibc mmaps large ones only at first).
    let mut bufs: Vec<Buffer> = (0..batch)
        .map(|i| Buffer::new(len, i as u8))
        .collect::<Result<_, _>>()
        .inspect_err(|_| {
            barrier.wait();
        })?;
    let ptrs: Vec<NonNull<[u8]>> = bufs.iter_mut().map(|b| b.slice(len)).collect();
    let out = match cfg.workload {
        Workload::Fixed { granule, dir } => {
            fixed(&mut ops, cfg, &ptrs, granule, dir, clock, barrier, stop)
        }
        Workload::Mix => mix(&mut ops, cfg, &ptrs, seed, clock, barrier, stop),
    };
    drop(bufs);
    out
}

#[allow(clippy::too_many_arguments)]
fn fixed(
    ops: &mut impl Ops,
    cfg: &RunConfig,
    ptrs: &[NonNull<[u8]>],
    granule: usize,
    dir: Direction,
    clock: f64,
    barrier: &Barrier,
    stop: &AtomicBool,
) -> Result<ThreadSums, String> {
    let batch = ptrs.len();
    let bufs: Vec<NonNull<[u8]>> = ptrs
        .iter()
        .map(|p| NonNull::slice_from_raw_parts(p.cast::<u8>(), granule))
        .collect();
    let mut dmas = vec![0u64; batch];
    let mut sums = ThreadSums::default();
    let mut round = 0usize;
    barrier.wait();
    while !stop.load(Ordering::Relaxed) {
        let sampled = round % batch;
        round += 1;
        let t0 = Instant::now();
        let mut mapped = 0;
        for (i, &buf) in bufs.iter().enumerate() {
            // SAFETY: each buffer is this thread's own, alive until the worker returns, and
            // touched by nothing else while mapped; slot `i` holds no other mapping.
            let mut map = || unsafe { ops.map(i, buf, dir) };
            let r = if i == sampled {
                timed(clock, &mut sums.map, map)
            } else {
                map()
            };
            match r {
                Ok(dma) => {
                    dmas[i] = dma;
                    mapped += 1;
                }
                Err(Error::Full) => {
                    sums.failed += 1;
                    break;
                }
                Err(e) => return Err(format!("a {granule}-byte mapping: {e}")),
            }
        }
        for (i, (&dma, &buf)) in dmas[..mapped].iter().zip(&bufs).enumerate() {
            // SAFETY: `dma` is the live mapping of `buf` made above through slot `i`.
            let mut unmap = || unsafe { ops.unmap(i, dma, buf, dir, cfg.skip_sync) };
            let r = if i == sampled {
                timed(clock, &mut sums.unmap, unmap)
            } else {
                unmap()
            };
            r.map_err(|e| format!("unmap of a live mapping refused: {e}"))?;
        }
        sums.batch_ns += t0.elapsed().as_nanos();
        sums.pairs += mapped as u64;
    }
    Ok(sums)
}

/// Requests drawn per thread, then cycled: enough that the cycle does not line up with the
/// ring.
const MIX_REQUESTS: usize = 4099;

fn mix(
    ops: &mut impl Ops,
    cfg: &RunConfig,
    ptrs: &[NonNull<[u8]>],
    seed: u64,
    clock: f64,
    barrier: &Barrier,
    stop: &AtomicBool,
) -> Result<ThreadSums, String> {
    let depth = ptrs.len();
    let requests = virtio_requests(seed, MIX_REQUESTS);
    let mut next = 0usize;
    // (slot, dma, len, dir) of the mappings in flight, oldest first; and the free slots.
    let mut ring: VecDeque<(usize, DmaAddr, usize, Direction)> = VecDeque::with_capacity(depth);
    let mut free: Vec<usize> = (0..depth).rev().collect();
    let mut sums = ThreadSums::default();
    let buf = |slot: usize, len: usize| NonNull::slice_from_raw_parts(ptrs[slot].cast::<u8>(), len);

    // One step: unmap the oldest if the ring is full, map the next request.
    macro_rules! step {
        ($sample:expr) => {{
            if ring.len() == depth {
                let (slot, dma, len, dir) = ring.pop_front().expect("a full ring");
                let (orig, skip) = (buf(slot, len), cfg.skip_sync);
                // SAFETY: `dma` is the live mapping of this slot's first `len` bytes.
                let mut unmap = || unsafe { ops.unmap(slot, dma, orig, dir, skip) };
                let r = if $sample {
                    timed(clock, &mut sums.unmap, unmap)
                } else {
                    unmap()
                };
                r.map_err(|e| format!("unmap of a live mapping refused: {e}"))?;
                free.push(slot);
            }
            let (len, dir) = requests[next % MIX_REQUESTS];
            next += 1;
            let slot = free.pop().expect("a free slot when the ring is not full");
            // SAFETY: each slot's buffer is this thread's own, alive until the worker
            // returns, and used by one mapping at a time (a slot is free until then).
            let mut map = || unsafe { ops.map(slot, buf(slot, len), dir) };
            let r = if $sample {
                timed(clock, &mut sums.map, map)
            } else {
                map()
            };
            match r {
                Ok(dma) => ring.push_back((slot, dma, len, dir)),
                Err(Error::Full) => {
                    sums.failed += 1;
                    free.push(slot);
                    // Make room: the next step unmaps the oldest whatever the ring holds.
                    if let Some((slot, dma, len, dir)) = ring.pop_front() {
                        // SAFETY: as above, a live mapping of this slot.
                        unsafe { ops.unmap(slot, dma, buf(slot, len), dir, cfg.skip_sync) }
                            .map_err(|e| format!("unmap of a live mapping refused: {e}"))?;
                        free.push(slot);
                    }
                }
                Err(e) => return Err(format!("a {len}-byte mapping: {e}")),
            }
        }};
    }

    // Fill the ring before the clock starts.
    while ring.len() < depth && next < depth * 4 {
        step!(false);
    }
    let mut round = 0usize;
    barrier.wait();
    while !stop.load(Ordering::Relaxed) {
        let sampled = round % depth;
        round += 1;
        let t0 = Instant::now();
        for i in 0..depth {
            step!(i == sampled);
        }
        sums.batch_ns += t0.elapsed().as_nanos();
        sums.pairs += depth as u64;
    }
    while let Some((slot, dma, len, dir)) = ring.pop_front() {
        // SAFETY: a live mapping of this slot, unmapped once.
        unsafe { ops.unmap(slot, dma, buf(slot, len), dir, true) }
            .map_err(|e| format!("unmap of a live mapping refused: {e}"))?;
    }
    Ok(sums)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(subject: Subject, workload: Workload) -> RunConfig {
        RunConfig {
            subject,
            threads: 2,
            duration: Duration::from_millis(50),
            workload,
            skip_sync: false,
            // Eight times both threads' 8 mappings in flight at their largest (256 KiB).
            pool_size: 32 << 20,
            batch: 8,
        }
    }

    #[test]
    fn every_subject_runs_both_workloads_on_two_threads_and_counts_its_work() {
        let fixed = Workload::Fixed {
            granule: 3000,
            dir: Direction::Bidirectional,
        };
        for subject in Subject::all() {
            for workload in [fixed, Workload::Mix] {
                let r = run(&cfg(subject, workload), &|_| {}).unwrap();
                assert!(r.pairs > 0, "{subject}: no work done");
                assert!(r.pair_ns > 0.0, "{subject}: {r:?}");
                assert!(r.samples > 0 && r.map_p99_ns >= r.map_p50_ns, "{r:?}");
                assert!(r.unmap_p99_ns >= r.unmap_p50_ns, "{r:?}");
                assert_eq!(r.failed_maps, 0, "{subject}");
                match (subject, workload) {
                    (Subject::Memcpy, _) => assert_eq!(r.high_water_bytes, None),
                    // At least one thread's batch was live at once.
                    (_, Workload::Fixed { .. }) => {
                        assert!(r.high_water_bytes >= Some(8 * 3000), "{subject}: {r:?}")
                    }
                    (_, Workload::Mix) => assert!(r.high_water_bytes > Some(0)),
                }
            }
        }
    }

    #[test]
    fn a_pool_too_small_for_the_threads_is_refused_with_the_limit() {
        let mut c = cfg(
            Subject::Pool(Kind::Swiotlb),
            Workload::Fixed {
                granule: 256 * 1024,
                dir: Direction::ToDevice,
            },
        );
        c.threads = 64;
        c.pool_size = 4 << 20;
        let e = run(&c, &|_| {}).unwrap_err();
        assert!(e.contains("at least 33554432 bytes"), "{e}");
        let (min, why) = min_pool_size(&cfg(Subject::Pool(Kind::LinuxStyle), Workload::Mix));
        assert_eq!(min, 2 * 2 * 256 * 1024, "{why}");
    }

    #[test]
    fn the_copy_floor_copies_by_the_direction() {
        let mut ops = CopyOps::new(1, 64).unwrap();
        assert_eq!(ops.arena.len(), 4 * 64);
        for (dir, copied_in, copied_back) in [
            (Direction::ToDevice, true, false),
            (Direction::FromDevice, false, true),
            (Direction::Bidirectional, true, true),
        ] {
            let mut orig = [7u8; 64];
            let buf = NonNull::from(&mut orig[..]);
            // SAFETY: `orig` outlives the mapping; slot 0 is free.
            let dma = unsafe { ops.map(0, buf, dir) }.unwrap();
            let bounce = dma as *mut u8;
            // SAFETY: the slot's bounce buffer, 64 bytes, ours alone (the same block each
            // time: the one just freed).
            let seen = unsafe { *bounce };
            assert_eq!(seen == 7, copied_in, "{dir:?}");
            // SAFETY: as above; the "device" writes the bounce buffer.
            unsafe { core::ptr::write_bytes(bounce, 9, 64) };
            // SAFETY: the live mapping of `buf` through slot 0.
            unsafe { ops.unmap(0, dma, buf, dir, false) }.unwrap();
            assert_eq!(orig[0] == 9, copied_back, "{dir:?}");
        }
    }
}
