use core::ptr::NonNull;
use std::sync::{Arc, Barrier};
use std::time::Instant;
use swiotlb::{Attrs, Config, Constraints, Direction, Pool};
fn run(pool: Arc<Pool>, threads: usize, n: usize) -> f64 {
    run_with(threads, n, move |_| pool.clone())
}
fn run_with(threads: usize, n: usize, pool_for: impl Fn(usize) -> Arc<Pool>) -> f64 {
    let b = Arc::new(Barrier::new(threads + 1));
    let hs: Vec<_> = (0..threads)
        .map(|t| {
            let (pool, b) = (pool_for(t), b.clone());
            std::thread::spawn(move || {
                let mut buf = [1u8; 64];
                b.wait();
                for _ in 0..n {
                    unsafe {
                        let d = pool
                            .map(
                                NonNull::from(&mut buf[..]),
                                Direction::ToDevice,
                                &Constraints::NONE,
                            )
                            .unwrap();
                        pool.unmap(d, 64, Direction::ToDevice, Attrs::SKIP_CPU_SYNC)
                            .unwrap();
                    }
                }
                b.wait();
            })
        })
        .collect();
    b.wait();
    let t = Instant::now();
    b.wait();
    let e = t.elapsed();
    for h in hs {
        h.join().unwrap();
    }
    (threads * n) as f64 / e.as_secs_f64() / 1e6
}
fn main() {
    for round in 0..3 {
        let pool = Arc::new(Pool::allocate(64 << 20, Config::new().areas(2)).unwrap());
        let one = run(pool.clone(), 1, 3_000_000);
        let two = run(pool.clone(), 2, 3_000_000);
        let pools: Vec<_> = (0..2)
            .map(|_| Arc::new(Pool::allocate(64 << 20, Config::new().areas(1)).unwrap()))
            .collect();
        let private = run_with(2, 3_000_000, |t| pools[t].clone());
        println!("round {round}: 1 thread {one:.1} M/s, 2 threads {two:.1} M/s ({:.2}x); private pools {private:.1} M/s ({:.2}x)", two / one, private / one);
    }
}
