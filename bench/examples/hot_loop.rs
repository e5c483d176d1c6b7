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

const USAGE: &str = "usage: hot_loop [IMPL [BYTES [ITERATIONS [copy]]]]
  IMPL        swiotlb (default), ours, linux_style, linux_areas, buddy, pvmfw, mutex_bitmap
  BYTES       bytes per mapping, 1 to 262144 (default 64)
  ITERATIONS  map+unmap pairs, 1 to 10^10 (default 1000000)
  copy        copy back on unmap (default: skip-sync)";

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return std::process::ExitCode::SUCCESS;
    }
    match run(&args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hot_loop: {e}\n{USAGE}");
            std::process::ExitCode::from(2)
        }
    }
}

fn number(arg: Option<&String>, default: u64, max: u64, what: &str) -> Result<u64, String> {
    match arg {
        None => Ok(default),
        Some(s) => match s.parse::<u64>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(format!("{what} is 1 to {max}, not {s:?}")),
        },
    }
}

fn run(args: &[String]) -> Result<(), String> {
    if args.len() > 4 {
        return Err(format!("four arguments at most, not {}", args.len()));
    }
    let kind: Kind = args.first().map_or("swiotlb", |s| s.as_str()).parse()?;
    let len = number(args.get(1), 64, swiotlb_bench::MAX_MAPPING as u64, "BYTES")? as usize;
    let iters = number(args.get(2), 1_000_000, 10_000_000_000, "ITERATIONS")?;
    let skip = match args.get(3).map(|s| s.as_str()) {
        None => true,
        Some("copy") => false,
        Some(other) => {
            return Err(format!(
                "the fourth argument is `copy` or nothing, not {other:?}"
            ))
        }
    };
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
