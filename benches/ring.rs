//! 4 KiB Bidirectional mappings, 16 in flight: each iteration unmaps the oldest (copying it
//! back) and maps the next (copying it in), beside `copies`, the same two copies of the same
//! bytes between plain buffers (the floor), and the pvmfw-style and buddy baselines.
//!
//! Issue 11's target: swiotlb at most 1.15x `copies`.

use crate::common::{build, source, POOL};
use criterion::{BenchmarkId, Criterion, Throughput};
use std::collections::VecDeque;
use std::hint::black_box;
use swiotlb_bench::{Bounce, Buffer, Direction, Kind};

const DEPTH: usize = 16;
const SIZE: usize = 4096;

pub fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("bidi_4k_qd16");
    g.throughput(Throughput::Bytes(2 * SIZE as u64));
    let mut originals: Vec<Buffer> = (0..DEPTH).map(|_| source(SIZE)).collect();
    let ptrs: Vec<_> = originals.iter_mut().map(|b| b.slice(SIZE)).collect();

    // The floor: the same ring over plain buffers, one copy in and one copy back a step.
    let mut bounce: Vec<Buffer> = (0..DEPTH).map(|_| source(SIZE)).collect();
    let shadows: Vec<_> = bounce.iter_mut().map(|b| b.slice(SIZE)).collect();
    let mut k = 0usize;
    g.bench_function(BenchmarkId::new("copies", SIZE), |b| {
        b.iter(|| {
            let back = k % DEPTH;
            let next = (k + 1) % DEPTH;
            k += 1;
            // SAFETY: distinct live buffers of SIZE bytes each.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    black_box(shadows[back].cast::<u8>().as_ptr()),
                    black_box(ptrs[back].cast::<u8>().as_ptr()),
                    SIZE,
                );
                core::ptr::copy_nonoverlapping(
                    black_box(ptrs[next].cast::<u8>().as_ptr()),
                    black_box(shadows[next].cast::<u8>().as_ptr()),
                    SIZE,
                );
            }
        })
    });

    for kind in [Kind::Swiotlb, Kind::Pvmfw, Kind::Buddy] {
        let pool = build(kind, POOL);
        let dir = Direction::Bidirectional;
        let mut flight = VecDeque::with_capacity(DEPTH);
        for (i, &p) in ptrs.iter().enumerate() {
            // SAFETY: each original is mapped once at a time and outlives its mappings.
            flight.push_back((unsafe { pool.map(p, dir) }.expect("map"), i));
        }
        g.bench_function(BenchmarkId::new(kind.name(), SIZE), |b| {
            b.iter(|| {
                let (dma, i) = flight.pop_front().expect("in flight");
                // SAFETY: `dma` is the live mapping of original `i`.
                unsafe { pool.unmap(black_box(dma), ptrs[i], dir, false) }.expect("unmap");
                // SAFETY: original `i` is no longer mapped.
                let dma = unsafe { pool.map(black_box(ptrs[i]), dir) }.expect("map");
                flight.push_back((dma, i));
            })
        });
        while let Some((dma, i)) = flight.pop_front() {
            // SAFETY: as above.
            unsafe { pool.unmap(dma, ptrs[i], dir, true) }.expect("unmap");
        }
        assert_eq!(pool.used_bytes(), 0);
    }
    g.finish();
    drop(originals);
    drop(bounce);
}
