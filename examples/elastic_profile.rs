//! A bare loop of map+unmap through `Pool` and the elastic pool, for instruction counts
//! (stable where timings on a shared machine are not):
//!
//! ```text
//! cargo build --release --example elastic_profile
//! valgrind --tool=callgrind --collect-atstart=no --toggle-collect=elastic_profile::run \
//!     target/release/examples/elastic_profile fixed 64 100000
//! ```
//!
//! Arguments: which pool (`pool`: `Pool` itself; `fixed`: `ElasticPool::fixed` over it;
//! `one`: an elastic pool of one 1 MiB region; `two` and `sixteen`: 2 or 16 regions of
//! 1 MiB, all but the last full, so every pair lands in the last), bytes per mapping (64; a 64-byte pair skips
//! the copy back, a larger one copies both ways), iterations (100000). Bidirectional, one
//! thread. Prints the time per pair too (noisy under valgrind, of course).
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

use core::ptr::NonNull;
use std::hint::black_box;
use swiotlb::{
    Attrs, Config, Constraints, Direction, DmaPool, ElasticConfig, ElasticPool, HeapBackend, Pool,
};

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let which = args.first().map_or("fixed", |s| s.as_str()).to_string();
    let len: usize = args
        .get(1)
        .map_or(Ok(64), |s| s.parse())
        .map_err(|e| format!("bytes: {e}"))?;
    let iters: u64 = args
        .get(2)
        .map_or(Ok(100_000), |s| s.parse())
        .map_err(|e| format!("iterations: {e}"))?;
    let mut buf = vec![0x5au8; len];
    let filler = vec![0u8; 256 << 10];
    let regions = |n: usize| {
        ElasticConfig::new()
            .with_initial(1 << 20)
            .with_grow(1 << 20, 1 << 20)
            .with_max_sub_pools(n)
            .with_max_bytes(n << 20)
    };
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let ns = match which.as_str() {
        "pool" => run(
            &Pool::allocate(4 << 20, Config::new()).map_err(|e| err(&e))?,
            &mut buf,
            iters,
        ),
        "fixed" => run(
            &ElasticPool::fixed(Pool::allocate(4 << 20, Config::new()).map_err(|e| err(&e))?),
            &mut buf,
            iters,
        ),
        "one" => run(
            &ElasticPool::new(HeapBackend::new(), regions(1)).map_err(|e| err(&e))?,
            &mut buf,
            iters,
        ),
        "two" | "sixteen" => {
            let n = if which == "two" { 2 } else { 16 };
            let pool = ElasticPool::new(HeapBackend::new(), regions(n)).map_err(|e| err(&e))?;
            for _ in 1..n {
                pool.grow(1 << 20).map_err(|e| err(&e))?;
            }
            for _ in 0..(n - 1) * 4 {
                // SAFETY: `filler` outlives the pool and is only read; never unmapped.
                unsafe {
                    pool.try_map(
                        NonNull::from(&filler[..]),
                        Direction::ToDevice,
                        &Constraints::NONE,
                    )
                }
                .map_err(|e| err(&e))?;
            }
            run(&pool, &mut buf, iters)
        }
        other => {
            return Err(format!(
                "unknown pool {other}: pool, fixed, one, two or sixteen"
            ))
        }
    };
    println!("{which}: {len}-byte map+unmap, {ns:.1} ns each over {iters} iterations");
    Ok(())
}

/// The timed loop (the function callgrind's `--toggle-collect` names).
#[inline(never)]
fn run(pool: &impl DmaPool, buf: &mut [u8], iters: u64) -> f64 {
    let attrs = if buf.len() <= 64 {
        Attrs::SKIP_CPU_SYNC
    } else {
        Attrs::NONE
    };
    let ptr = NonNull::from(&mut buf[..]);
    let dir = Direction::Bidirectional;
    let start = std::time::Instant::now();
    for _ in 0..iters {
        // SAFETY: `buf` outlives the loop and is touched by nothing else.
        let dma = unsafe { pool.map_attrs(black_box(ptr), dir, &Constraints::NONE, Attrs::NONE) }
            .expect("map");
        // SAFETY: the live mapping of `ptr` made just above.
        unsafe { pool.unmap_into(black_box(dma), ptr, dir, attrs) }.expect("unmap");
    }
    start.elapsed().as_nanos() as f64 / iters as f64
}
