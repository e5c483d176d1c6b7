//! Rough probe of the 1-slot map+unmap path (not a benchmark: see swiotlb-bench).
//! `hotpath_probe [ops]`: with an argument, runs that many ops once (for callgrind).
use core::ptr::NonNull;
use std::time::Instant;
use swiotlb::{Attrs, Config, Constraints, Direction, Pool};

fn run(pool: &Pool, buf: &mut [u8], n: usize) {
    for _ in 0..n {
        // SAFETY: `buf` outlives the mapping, which ends in the same iteration.
        unsafe {
            let d = pool
                .map(
                    NonNull::from(&mut *buf),
                    Direction::ToDevice,
                    &Constraints::NONE,
                )
                .unwrap();
            pool.unmap(d, buf.len(), Direction::ToDevice, Attrs::SKIP_CPU_SYNC)
                .unwrap();
        }
    }
}

fn main() {
    let pool = Pool::allocate(64 << 20, Config::new()).unwrap();
    let mut buf = vec![1u8; 64];
    if let Some(n) = std::env::args().nth(1) {
        run(&pool, &mut buf, n.parse().unwrap());
        return;
    }
    let mut meds = vec![];
    for _ in 0..31 {
        let n = 200_000;
        let t = Instant::now();
        run(&pool, &mut buf, n);
        meds.push(t.elapsed().as_nanos() as f64 / n as f64);
    }
    meds.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "map+unmap 64B skip-sync: median {:.1} ns (min {:.1})",
        meds[15], meds[0]
    );
}
