//! The pool's hot paths as bare loops, for instruction counts (`valgrind --tool=callgrind`)
//! and profiles without criterion's machinery around them. `bin/callgrind.sh` runs each
//! scenario twice (N and 2N iterations) and prints the instructions of one iteration, the
//! difference divided by N, so that start-up and the pool's construction cancel out.
//!
//! ```text
//! cargo build --profile bench --example hot_path
//! target/release/examples/hot_path pair64 1000000     # (bench profile: target/release)
//! bin/callgrind.sh                                    # every scenario, instructions each
//! ```
//!
//! Scenarios (one thread, a 64 MiB pool with the default configuration, no constraints; the
//! calls the benchmarks' `swiotlb` rows make: `map`, then `unmap_into` with the buffer):
//!
//! | name              | one iteration                                                    |
//! |-------------------|------------------------------------------------------------------|
//! | `pair64`          | 64-byte Bidirectional map and unmap with `skip_cpu_sync`           |
//! | `todevice4k`      | 4 KiB ToDevice map and unmap (one copy in)                         |
//! | `todevice64k`     | 64 KiB ToDevice map and unmap                                      |
//! | `fromdevice4k`    | 4 KiB FromDevice map with `Fill::Zero` and unmap (one copy back)   |
//! | `bidi4k_qd16`     | 4 KiB Bidirectional, 16 in flight: unmap the oldest, map the next  |
//! | `mix`             | the virtio mix of `swiotlb-bench` (64 B-256 KiB, half ToDevice, half FromDevice copied in), 32 in flight: unmap the oldest (copying FromDevice back), map the next |
//! | `mix_zero`        | the same with FromDevice buffers zero-filled (`Fill::Zero`)        |
//! | `mix_pvmfw`       | `mix` on `swiotlb-bench`'s pvmfw-style baseline (no copy in for FromDevice) |
//! | `mix_buddy`       | `mix` on its `buddy` baseline (pvmfw's allocator, Linux's copies)  |
//! | `full90`          | 64-byte ToDevice pair in a 64 MiB pool kept 90% full of the boot mix (as the `pool_90pct_full` group) |
//! | `half4m`, `half1g`| the same in a 4 MiB / 1 GiB pool kept half full (as the `pool_size` group) |
//! | `memcpy4k`        | one `copy_nonoverlapping` of 4 KiB (the floor of `todevice4k`)     |
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

use core::ptr::NonNull;
use std::collections::VecDeque;
use std::hint::black_box;
use swiotlb::{Attrs, Config, Constraints, Direction, Pool};

/// One map and unmap of `buf` in `dir`, as the benchmarks' `swiotlb` rows do it.
#[inline(always)]
fn pair(pool: &Pool, buf: NonNull<[u8]>, dir: Direction, map: Attrs, unmap: Attrs) {
    // SAFETY: `buf` is a live buffer of the caller's, outside the pool, used by nothing
    // else until the unmap below.
    let dma = unsafe { pool.map_attrs(black_box(buf), dir, &Constraints::NONE, map) }.expect("map");
    // SAFETY: the live mapping of `buf` made just above.
    unsafe { pool.unmap_into(black_box(dma), buf, dir, unmap) }.expect("unmap");
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let scenario = args.first().map_or("pair64", String::as_str);
    let iters: usize = args
        .get(1)
        .map_or(Ok(1_000_000), |s| s.parse())
        .map_err(|e| format!("iterations: {e}"))?;
    let pool = Pool::allocate(64 << 20, Config::new()).map_err(|e| e.to_string())?;
    let mut src = vec![0x5au8; 64 << 10];
    let mut dst = vec![0xa5u8; 64 << 10];
    let buf = |len: usize, src: &mut Vec<u8>| NonNull::from(&mut src[..len]);
    let start = std::time::Instant::now();
    match scenario {
        "pair64" => {
            let b = buf(64, &mut src);
            for _ in 0..iters {
                pair(
                    &pool,
                    b,
                    Direction::Bidirectional,
                    Attrs::NONE,
                    Attrs::SKIP_CPU_SYNC,
                );
            }
        }
        "todevice4k" | "todevice64k" => {
            let len = if scenario == "todevice4k" {
                4096
            } else {
                64 << 10
            };
            let b = buf(len, &mut src);
            for _ in 0..iters {
                pair(&pool, b, Direction::ToDevice, Attrs::NONE, Attrs::NONE);
            }
        }
        "fromdevice4k" => {
            let b = buf(4096, &mut src);
            for _ in 0..iters {
                pair(
                    &pool,
                    b,
                    Direction::FromDevice,
                    Attrs::ZERO_FILL,
                    Attrs::NONE,
                );
            }
        }
        "bidi4k_qd16" => {
            const DEPTH: usize = 16;
            let mut bufs: Vec<Vec<u8>> = (0..DEPTH).map(|_| vec![7u8; 4096]).collect();
            let ptrs: Vec<NonNull<[u8]>> =
                bufs.iter_mut().map(|b| NonNull::from(&mut b[..])).collect();
            let dir = Direction::Bidirectional;
            let mut flight = VecDeque::with_capacity(DEPTH);
            let map = |k: usize| {
                // SAFETY: buffer `k` is mapped once at a time (it is unmapped before it is
                // mapped again) and outlives every mapping.
                unsafe { pool.map(black_box(ptrs[k]), dir, &Constraints::NONE) }.expect("map")
            };
            for k in 0..DEPTH {
                flight.push_back((map(k), k));
            }
            for _ in 0..iters {
                let (dma, k) = flight.pop_front().expect("in flight");
                // SAFETY: `dma` is the live mapping of buffer `k`.
                unsafe { pool.unmap_into(black_box(dma), ptrs[k], dir, Attrs::NONE) }
                    .expect("unmap");
                flight.push_back((map(k), k));
            }
            for (dma, k) in flight {
                // SAFETY: as above.
                unsafe { pool.unmap_into(dma, ptrs[k], dir, Attrs::NONE) }.expect("unmap");
            }
            drop(bufs);
        }
        "mix" | "mix_zero" => {
            const DEPTH: usize = 32;
            let fill = if scenario == "mix" {
                Attrs::NONE
            } else {
                Attrs::ZERO_FILL
            };
            let requests = swiotlb_bench::mix::virtio_requests(1, 4099);
            let mut bufs: Vec<Vec<u8>> = (0..DEPTH).map(|_| vec![7u8; 256 << 10]).collect();
            let ptrs: Vec<NonNull<u8>> =
                bufs.iter_mut().map(|b| NonNull::from(&mut b[0])).collect();
            let mut flight = VecDeque::with_capacity(DEPTH);
            let mut next = 0;
            let mut map = |k: usize, flight: &mut VecDeque<_>| {
                let (len, dir) = requests[next % requests.len()];
                next += 1;
                let b = NonNull::slice_from_raw_parts(ptrs[k], len);
                // SAFETY: buffer `k` is mapped once at a time (it is unmapped before it is
                // mapped again) and outlives every mapping.
                let dma = unsafe { pool.map_attrs(black_box(b), dir, &Constraints::NONE, fill) }
                    .expect("map");
                flight.push_back((dma, b, dir, k));
            };
            for k in 0..DEPTH {
                map(k, &mut flight);
            }
            for _ in 0..iters {
                let (dma, b, dir, k) = flight.pop_front().expect("in flight");
                // SAFETY: `dma` is the live mapping of `b`.
                unsafe { pool.unmap_into(black_box(dma), b, dir, Attrs::NONE) }.expect("unmap");
                map(k, &mut flight);
            }
            for (dma, b, dir, _) in flight {
                // SAFETY: as above.
                unsafe { pool.unmap_into(dma, b, dir, Attrs::NONE) }.expect("unmap");
            }
            drop(bufs);
        }
        "mix_pvmfw" | "mix_buddy" => {
            use swiotlb_bench::{Bounce, Buffer, Kind};
            const DEPTH: usize = 32;
            let kind = if scenario == "mix_pvmfw" {
                Kind::Pvmfw
            } else {
                Kind::Buddy
            };
            let base = kind.build(64 << 20)?;
            let requests = swiotlb_bench::mix::virtio_requests(1, 4099);
            let mut bufs: Vec<Buffer> = (0..DEPTH)
                .map(|_| Buffer::new(256 << 10, 7))
                .collect::<Result<_, _>>()?;
            let ptrs: Vec<NonNull<u8>> = bufs
                .iter_mut()
                .map(|b| b.slice(256 << 10).cast::<u8>())
                .collect();
            let mut flight = VecDeque::with_capacity(DEPTH);
            let mut next = 0;
            let mut map = |k: usize, flight: &mut VecDeque<_>| {
                let (len, dir) = requests[next % requests.len()];
                next += 1;
                let b = NonNull::slice_from_raw_parts(ptrs[k], len);
                // SAFETY: as in `mix`.
                let dma = unsafe { base.map(black_box(b), dir) }.expect("map");
                flight.push_back((dma, b, dir, k));
            };
            for k in 0..DEPTH {
                map(k, &mut flight);
            }
            for _ in 0..iters {
                let (dma, b, dir, k) = flight.pop_front().expect("in flight");
                // SAFETY: `dma` is the live mapping of `b`.
                unsafe { base.unmap(black_box(dma), b, dir, false) }.expect("unmap");
                map(k, &mut flight);
            }
            for (dma, b, dir, _) in flight {
                // SAFETY: as above.
                unsafe { base.unmap(dma, b, dir, false) }.expect("unmap");
            }
            drop(bufs);
        }
        "full90" | "half4m" | "half1g" => {
            use swiotlb_bench::{fill::Filler, ours::Ours, Bounce};
            let (size, fraction) = match scenario {
                "full90" => (64 << 20, 0.9),
                "half4m" => (4 << 20, 0.5),
                _ => (1 << 30, 0.5),
            };
            let ours = Ours::new(size)?;
            let mut held = Filler::new();
            held.prepare(&ours, fraction, (fraction * 100.0) as u64)
                .map_err(|e| e.to_string())?;
            let b = buf(64, &mut src);
            for _ in 0..iters {
                // SAFETY: as in `pair`.
                let dma = unsafe { ours.map(black_box(b), Direction::ToDevice) }.expect("map");
                // SAFETY: the live mapping of `b` made just above.
                unsafe { ours.unmap(black_box(dma), b, Direction::ToDevice, false) }
                    .expect("unmap");
            }
            held.release(&ours).map_err(|e| e.to_string())?;
        }
        "memcpy4k" => {
            for _ in 0..iters {
                // SAFETY: two distinct live buffers of 64 KiB.
                unsafe {
                    core::ptr::copy_nonoverlapping(
                        black_box(src.as_ptr()),
                        black_box(dst.as_mut_ptr()),
                        4096,
                    )
                };
            }
        }
        other => return Err(format!("unknown scenario {other:?}")),
    }
    let ns = start.elapsed().as_nanos() as f64 / iters as f64;
    black_box(&dst);
    assert_eq!(pool.stats().used_slots, 0);
    println!("{scenario}: {ns:.1} ns per iteration over {iters}");
    Ok(())
}
