//! The virtio mix of issue 11 (40% 64-512 B, 40% 4 KiB, 15% 16-64 KiB, 5% 128-256 KiB; half
//! ToDevice, half FromDevice, copied back on unmap), 32 in flight per thread, at 1 and 2
//! threads sharing one 64 MiB pool: each step unmaps the oldest mapping and maps the next.
//!
//! - `swiotlb`: FromDevice bounce buffers zero-filled ([`Fill::Zero`]), as `swiotlb-virtio`'s
//!   `Hal` maps them by default;
//! - `swiotlb_copy_in`: copied in instead (Linux's rule, what [`swiotlb::Pool::map`] does);
//! - `pvmfw`: the pvmfw-style baseline (pvmfw's buddy allocator under a spin lock, nothing
//!   copied in for FromDevice, so the device sees what the block held before);
//! - `buddy`: the same allocator, copying in for every direction as Linux does.
//!
//! Issue 11's targets: `swiotlb` at least 1.0x `pvmfw` and 1.1x `buddy`, at 1 and 2 threads.
//! One iteration is one step on every thread; elements per second are steps, all threads
//! together (as in the `threads` group).

use crate::common::POOL;
use criterion::{BenchmarkId, Criterion, Throughput};
use std::collections::VecDeque;
use std::hint::black_box;
use std::ptr::NonNull;
use std::sync::Barrier;
use std::time::{Duration, Instant};
use swiotlb::{Attrs, Config, Constraints, Pool};
use swiotlb_bench::mix::{virtio_requests, MAX_SIZE};
use swiotlb_bench::{AnyPool, Bounce, Buffer, Direction, DmaAddr, Kind};

const DEPTH: usize = 32;
const THREADS: [usize; 2] = [1, 2];
/// Requests drawn per thread, then cycled (as `swiotlb-bench --workload mix`).
const REQUESTS: usize = 4099;

/// What is measured: a baseline of `swiotlb-bench`, or this crate's pool with a fill rule.
#[allow(clippy::large_enum_variant)] // Built once per run; never moved in the timing.
enum Subject {
    Baseline(AnyPool),
    Ours(Pool, Attrs),
}

impl Subject {
    /// # Safety
    ///
    /// As [`Bounce::map`].
    #[inline(always)]
    unsafe fn map(&self, buf: NonNull<[u8]>, dir: Direction) -> DmaAddr {
        // SAFETY: the caller's promise, which is each call's contract.
        unsafe {
            match self {
                Subject::Baseline(p) => p.map(buf, dir).expect("map"),
                Subject::Ours(p, attrs) => p
                    .map_attrs(buf, dir, &Constraints::NONE, *attrs)
                    .expect("map"),
            }
        }
    }

    /// # Safety
    ///
    /// As [`Bounce::unmap`].
    #[inline(always)]
    unsafe fn unmap(&self, dma: DmaAddr, buf: NonNull<[u8]>, dir: Direction) {
        // SAFETY: the caller's promise, which is each call's contract.
        unsafe {
            match self {
                Subject::Baseline(p) => p.unmap(dma, buf, dir, false).expect("unmap"),
                Subject::Ours(p, _) => p.unmap_into(dma, buf, dir, Attrs::NONE).expect("unmap"),
            }
        }
    }
}

pub fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("virtio_mix");
    let ours = |attrs| Subject::Ours(Pool::allocate(POOL, Config::new()).expect("pool"), attrs);
    let subjects = [
        ("swiotlb", ours(Attrs::ZERO_FILL)),
        ("swiotlb_copy_in", ours(Attrs::NONE)),
        (
            "pvmfw",
            Subject::Baseline(crate::common::build(Kind::Pvmfw, POOL)),
        ),
        (
            "buddy",
            Subject::Baseline(crate::common::build(Kind::Buddy, POOL)),
        ),
    ];
    for threads in THREADS {
        g.throughput(Throughput::Elements(threads as u64));
        for (name, subject) in &subjects {
            g.bench_function(BenchmarkId::new(*name, threads), |b| {
                b.iter_custom(|iters| run(subject, threads, iters))
            });
        }
    }
    g.finish();
}

/// Times `iters` steps on each of `threads` threads, from the barrier that releases them
/// to the one they all reach when done; the rings are filled before and emptied after.
fn run(subject: &Subject, threads: usize, iters: u64) -> Duration {
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        for t in 0..threads {
            let barrier = &barrier;
            s.spawn(move || {
                let mut bufs: Vec<Buffer> = (0..DEPTH)
                    .map(|_| Buffer::new(MAX_SIZE, 7).expect("original"))
                    .collect();
                let ptrs: Vec<NonNull<u8>> =
                    bufs.iter_mut().map(|b| b.slice(MAX_SIZE).cast()).collect();
                let requests = virtio_requests(1 + t as u64, REQUESTS);
                let mut next = 0usize;
                let mut ring = VecDeque::with_capacity(DEPTH);
                let mut map = |k: usize, ring: &mut VecDeque<_>| {
                    let (len, dir) = requests[next % REQUESTS];
                    next += 1;
                    let buf = NonNull::slice_from_raw_parts(ptrs[k], len);
                    // SAFETY: original `k` is this thread's, mapped once at a time (its last
                    // mapping was unmapped), and outlives every mapping of it.
                    let dma = unsafe { subject.map(black_box(buf), dir) };
                    ring.push_back((dma, buf, dir, k));
                };
                for k in 0..DEPTH {
                    map(k, &mut ring);
                }
                barrier.wait();
                for _ in 0..iters {
                    let (dma, buf, dir, k) = ring.pop_front().expect("a full ring");
                    // SAFETY: `dma` is the live mapping of `buf`.
                    unsafe { subject.unmap(black_box(dma), buf, dir) };
                    map(k, &mut ring);
                }
                barrier.wait();
                while let Some((dma, buf, dir, _)) = ring.pop_front() {
                    // SAFETY: as above.
                    unsafe { subject.unmap(dma, buf, dir) };
                }
                drop(bufs);
            });
        }
        barrier.wait();
        let start = Instant::now();
        barrier.wait();
        start.elapsed()
    })
}
