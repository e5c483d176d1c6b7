//! A bare loop of map+unmap for profilers (`perf record`, `valgrind --tool=callgrind`),
//! which count it without criterion's machinery around it:
//!
//! ```text
//! cargo build --release -p swiotlb-bench --example hot_loop
//! valgrind --tool=callgrind target/release/examples/hot_loop swiotlb 64 1000000
//! ```
//!
//! Arguments: implementation (default `swiotlb`), bytes per mapping (64), iterations
//! (1000000), and `copy` to copy back on unmap (default: skip-sync). Bidirectional
//! mappings in a 4 MiB pool, one thread.
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

use std::hint::black_box;
use swiotlb_bench::{Bounce, Buffer, Direction, Kind};

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let kind: Kind = args.first().map_or("swiotlb", |s| s.as_str()).parse()?;
    let len: usize = args
        .get(1)
        .map_or(Ok(64), |s| s.parse())
        .map_err(|e| format!("{e}"))?;
    let iters: u64 = args
        .get(2)
        .map_or(Ok(1_000_000), |s| s.parse())
        .map_err(|e| format!("{e}"))?;
    let skip = args.get(3).map(|s| s.as_str()) != Some("copy");
    let pool = kind.build(4 << 20)?;
    let mut buf = Buffer::new(len, 1)?;
    let ptr = buf.slice(len);
    let start = std::time::Instant::now();
    for _ in 0..iters {
        // SAFETY: `buf` lives to the end of `main` and is touched by nothing else.
        let dma = unsafe { pool.map(black_box(ptr), Direction::Bidirectional) }
            .map_err(|e| e.to_string())?;
        // SAFETY: the live mapping of `ptr` made just above.
        unsafe { pool.unmap(black_box(dma), ptr, Direction::Bidirectional, skip) }
            .map_err(|e| e.to_string())?;
    }
    let ns = start.elapsed().as_nanos() as f64 / iters as f64;
    println!("{kind}: {len}-byte map+unmap, {ns:.1} ns each over {iters} iterations");
    Ok(())
}
