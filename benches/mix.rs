//! The realistic size mix with 32 mappings in flight, half ToDevice and half FromDevice
//! (with the copy back): each iteration unmaps the oldest mapping and maps the next size.

use crate::common::{build, source, POOL};
use criterion::{BenchmarkId, Criterion};
use std::collections::VecDeque;
use std::hint::black_box;
use swiotlb_bench::mix::{realistic_sizes, MAX_SIZE};
use swiotlb_bench::{Bounce, Buffer, Direction, Kind};

const DEPTH: usize = 32;

pub fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("realistic_mix");
    let sizes = realistic_sizes(32, 4096);
    for kind in Kind::ALL {
        let pool = build(kind, POOL);
        let mut bufs: Vec<Buffer> = (0..DEPTH).map(|_| source(MAX_SIZE)).collect();
        let ptrs: Vec<_> = bufs.iter_mut().map(|b| b.slice(MAX_SIZE)).collect();
        let dir = |n: usize| {
            if n % 2 == 0 {
                Direction::ToDevice
            } else {
                Direction::FromDevice
            }
        };
        // (dma, buffer index, length, direction) of the mappings in flight.
        let mut flight = VecDeque::with_capacity(DEPTH);
        let mut next = 0usize;
        let map = |slot: usize, n: usize, flight: &mut VecDeque<_>| {
            let len = sizes[n % sizes.len()];
            let buf = core::ptr::NonNull::slice_from_raw_parts(ptrs[slot].cast::<u8>(), len);
            // SAFETY: buffer `slot` is used by one mapping at a time (the ring hands it on
            // only after its previous mapping is unmapped) and lives until after the last
            // unmap below.
            let dma = unsafe { pool.map(black_box(buf), dir(n)) }.expect("map");
            flight.push_back((dma, slot, len, dir(n)));
        };
        for slot in 0..DEPTH {
            map(slot, next, &mut flight);
            next += 1;
        }
        let unmap = |(dma, slot, len, d): (u64, usize, usize, Direction)| {
            let buf = core::ptr::NonNull::slice_from_raw_parts(ptrs[slot].cast::<u8>(), len);
            // SAFETY: `dma` is the live mapping of `buf` in direction `d`.
            unsafe { pool.unmap(dma, buf, d, false) }.expect("unmap");
            slot
        };
        g.bench_function(BenchmarkId::new(kind.name(), "qd32"), |b| {
            b.iter(|| {
                let oldest = flight.pop_front().expect("a mapping in flight");
                let slot = unmap(oldest);
                map(slot, next, &mut flight);
                next += 1;
            })
        });
        while let Some(m) = flight.pop_front() {
            unmap(m);
        }
        drop(bufs);
        assert_eq!(pool.used_bytes(), 0);
    }
    g.finish();
}
