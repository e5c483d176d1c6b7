//! Stress of the elastic pool: 8 threads map, write as the device, sync, unmap, allocate
//! and free on a pool of small regions that keeps growing and shrinking under them (every
//! thread runs shrink passes too, with an idle time of 0), over a backend that refuses
//! shares and fails unshares at random; some maps wait for room.
//!
//! Every mapping's bytes are unique to it and checked before its unmap and at random in
//! between, and each is checked to lie in memory the backend shares at that moment: a
//! region given back under a live mapping, two mappings sharing bytes, a copy to the wrong
//! place, all show. At the end every slot is free, only the first region is left, and
//! every share of the backend was matched by an unshare.
//!
//! Not a timing test: a fixed number of operations (fewer in debug builds). Run it as
//! `cargo test --release --test elastic_stress` (a few seconds here).

mod common;

use common::{unique_bytes, Rng};
use core::ptr::NonNull;
use core::time::Duration;
use std::sync::atomic::{AtomicUsize, Ordering};
use swiotlb::shared::{copy_from_shared, copy_to_shared};
use swiotlb::testing::TestBackend;
use swiotlb::{
    Attrs, Coherent, Config, Constraints, Direction, DmaAddr, ElasticConfig, ElasticPool, MapError,
};

const THREADS: usize = 8;
const OPS: usize = if cfg!(debug_assertions) {
    3_000
} else {
    60_000
};
const MAX_LIVE: usize = 10;

fn read(pool: &ElasticPool, dma: DmaAddr, len: usize) -> Vec<u8> {
    let at = pool.translate(dma, len).expect("a live mapping's range");
    let mut out = vec![0u8; len];
    // SAFETY: the range is a live mapping this thread owns, in a region that stays shared
    // while the mapping lives.
    unsafe { copy_from_shared(out.as_mut_ptr(), at.as_ptr(), len) };
    out
}

fn write(pool: &ElasticPool, dma: DmaAddr, data: &[u8]) {
    let at = pool
        .translate(dma, data.len())
        .expect("a live mapping's range");
    // SAFETY: as in `read`, written as the device would.
    unsafe { copy_to_shared(at.as_ptr(), data.as_ptr(), data.len()) };
}

struct Live {
    dma: DmaAddr,
    dir: Direction,
    buf: Box<[u8]>,
    bounce: Vec<u8>,
}

fn check(pool: &ElasticPool, backend: &TestBackend, m: &Live) {
    assert!(
        backend.is_shared(m.dma, m.buf.len()),
        "mapping at {:#x} ({} bytes) outside every shared range",
        m.dma,
        m.buf.len()
    );
    assert!(
        read(pool, m.dma, m.buf.len()) == m.bounce,
        "bounce buffer at {:#x} changed under it",
        m.dma
    );
}

#[derive(Default)]
struct Tally {
    maps: usize,
    waited: usize,
    full: usize,
    shrunk: usize,
}

fn worker(pool: &ElasticPool, backend: &TestBackend, t: usize, full: &AtomicUsize) -> Tally {
    let mut rng = Rng(0x5eed + t as u64 * 7919);
    let mut live: Vec<Live> = Vec::new();
    let mut held: Vec<(Coherent, Vec<u8>)> = Vec::new();
    let mut tally = Tally::default();
    let mut next = (t as u64) << 40;
    for _ in 0..OPS {
        let room = live.len() + held.len() < MAX_LIVE;
        match rng.below(100) {
            0..=39 if room => {
                let len = 1 + if rng.below(4) == 0 {
                    rng.below(16 << 10)
                } else {
                    rng.below(3000)
                };
                let dir = [
                    Direction::ToDevice,
                    Direction::FromDevice,
                    Direction::Bidirectional,
                ][rng.below(3)];
                next += 1;
                let mut buf = unique_bytes(next, len).into_boxed_slice();
                let ptr = NonNull::from(&mut buf[..]);
                let wait = rng.below(8) == 0;
                // SAFETY: `buf` is a heap block kept (unmoved) in `live` until its unmap, and
                // touched by this thread only between its pool calls.
                let r = unsafe {
                    if wait {
                        pool.map_wait(
                            ptr,
                            dir,
                            &Constraints::NONE,
                            Attrs::NONE,
                            Duration::from_millis(2),
                        )
                    } else {
                        pool.try_map(ptr, dir, &Constraints::NONE)
                            .map(|d| (d, false))
                    }
                };
                match r {
                    Ok((dma, waited)) => {
                        tally.maps += 1;
                        tally.waited += usize::from(waited);
                        let m = Live {
                            dma,
                            dir,
                            bounce: buf.to_vec(),
                            buf,
                        };
                        check(pool, backend, &m);
                        live.push(m);
                    }
                    Err(MapError::Full { .. }) => {
                        tally.full += 1;
                        full.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => panic!("thread {t}: map of {len}: {e}"),
                }
            }
            40..=49 if room => {
                let size = 1 + rng.below(12 << 10);
                match pool.try_alloc(size, &Constraints::NONE) {
                    Ok(c) => {
                        assert!(backend.is_shared(c.dma(), size));
                        assert!(read(pool, c.dma(), size).iter().all(|&b| b == 0), "zeroed");
                        next += 1;
                        let data = unique_bytes(next, size);
                        write(pool, c.dma(), &data);
                        held.push((c, data));
                    }
                    Err(MapError::Full { .. }) => tally.full += 1,
                    Err(e) => panic!("thread {t}: alloc of {size}: {e}"),
                }
            }
            // The device answers and the CPU syncs.
            50..=59 if !live.is_empty() => {
                let k = rng.below(live.len());
                let m = &mut live[k];
                check(pool, backend, m);
                next += 1;
                let answer = unique_bytes(next, m.buf.len());
                write(pool, m.dma, &answer);
                m.bounce = answer.clone();
                let ptr = NonNull::from(&mut m.buf[..]);
                // SAFETY: the live mapping of `m.buf`, owned by this thread.
                unsafe { pool.sync_for_cpu_into(m.dma, ptr, m.dir) }.expect("sync");
                if m.dir.from_device() {
                    assert!(m.buf[..] == answer[..], "sync for the CPU");
                }
            }
            60..=84 if !live.is_empty() => {
                let mut m = live.swap_remove(rng.below(live.len()));
                check(pool, backend, &m);
                let ptr = NonNull::from(&mut m.buf[..]);
                // SAFETY: the live mapping of `m.buf`, owned by this thread.
                unsafe { pool.unmap_into(m.dma, ptr, m.dir, Attrs::NONE) }.expect("unmap");
                if m.dir.from_device() {
                    assert!(m.buf[..] == m.bounce[..], "copy back");
                }
            }
            85..=92 if !held.is_empty() => {
                let (c, data) = held.swap_remove(rng.below(held.len()));
                assert!(
                    read(pool, c.dma(), data.len()) == data,
                    "coherent bytes kept"
                );
                pool.free(c).expect("free");
            }
            _ => tally.shrunk += pool.shrink(),
        }
    }
    for mut m in live {
        check(pool, backend, &m);
        let ptr = NonNull::from(&mut m.buf[..]);
        // SAFETY: as above.
        unsafe { pool.unmap_into(m.dma, ptr, m.dir, Attrs::NONE) }.expect("unmap");
    }
    for (c, _) in held {
        pool.free(c).expect("free");
    }
    tally
}

#[test]
fn eight_threads_on_a_pool_that_grows_and_shrinks_under_them() {
    let backend = TestBackend::new(0x40_0000_0000);
    backend.random_failures(0xfeed, 10, 5);
    let config = ElasticConfig::new()
        .with_pool(Config::new().with_segment_slots(32).with_areas(2))
        .with_initial(64 << 10)
        .with_grow(64 << 10, 16 << 10)
        .with_max_bytes(256 << 10)
        .with_max_sub_pools(12)
        .with_idle_time_ns(0);
    let pool = ElasticPool::new(backend.clone(), config).expect("pool");
    let full = AtomicUsize::new(0);
    let tallies: Vec<Tally> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (pool, backend, full) = (&pool, &backend, &full);
                s.spawn(move || worker(pool, backend, t, full))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("worker"))
            .collect()
    });
    let stats = pool.stats();
    let (maps, waited, shrunk): (usize, usize, usize) = tallies.iter().fold((0, 0, 0), |a, t| {
        (a.0 + t.maps, a.1 + t.waited, a.2 + t.shrunk)
    });
    eprintln!(
        "{THREADS} threads x {OPS} ops: {maps} maps ({waited} waited), {} refused full, \
         {} growths, {shrunk} regions given back by the threads, {} backend refusals, {} leaks, \
         high water {} slots",
        full.load(Ordering::Relaxed),
        stats.growths,
        stats.backend_refusals,
        stats.leaks,
        stats.high_water
    );
    assert_eq!(stats.used_slots, 0);
    assert!(stats.growths > 0, "{stats:?}");
    // The full run (release) must have shrunk under traffic and been full; the short debug
    // run of `cargo test` may not have.
    if !cfg!(debug_assertions) {
        assert!(shrunk > 0, "no region was given back while the threads ran");
        assert!(
            full.load(Ordering::Relaxed) > 0 && waited > 0,
            "the pool was never full"
        );
    }
    pool.shrink();
    assert_eq!(pool.stats().sub_pools, 1);
    assert_eq!(pool.stats().shrinks, stats.growths);
    drop(pool);
    backend.assert_balanced();
}
