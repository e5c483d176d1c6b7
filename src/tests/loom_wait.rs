//! Waiting maps racing the unmaps, growth and throttling changes that must wake them
//! (no lost wake-up).

use super::elastic::*;
use super::*;

/// The pool is full and cannot grow. A waiter blocks on `map_async`; another thread
/// unmaps. In every interleaving the waiter is woken and maps (a lost wake-up leaves it
/// blocked, which loom reports as a deadlock). (Checked to deadlock with the waiter's
/// second try after registering removed, and with the unmap's look at the waiter count
/// removed.)
#[test]
fn waiter_racing_an_unmap_is_always_woken() {
    run_model("waiter_racing_an_unmap_is_always_woken", || {
        let backend = LoomBackend::new();
        let pool = Arc::new(elastic(&backend, false));
        in_area(0);
        let fill = Buffer::new(1, REGION);
        let mf = emap(&pool, &fill, ToDevice).unwrap();

        let p = pool.clone();
        let waiter = thread::spawn(move || {
            in_area(0);
            let buf = Buffer::new(4, 2 * SLOT);
            // SAFETY: `buf` outlives the mapping (returned with it).
            let fut = unsafe {
                p.map_async(
                    buf.as_slice_ptr(),
                    ToDevice,
                    &Constraints::NONE,
                    Attrs::NONE,
                )
            };
            let dma = loom::future::block_on(fut).expect("woken with room");
            (dma, buf)
        });
        eunmap(&pool, mf, &fill, ToDevice);
        let (dma, buf) = waiter.join().unwrap();
        assert_eq!(ebounce(&pool, dma, 2 * SLOT), pattern(4, 2 * SLOT));
        eunmap(&pool, dma, &buf, ToDevice);
        assert_eq!(pool.stats().used_slots, 0);
        drop(pool);
        backend.assert_balanced();
    });
}

/// The pool is full and maps may not grow it. A waiter blocks on `map_async`; a worker
/// grows the pool. The waiter is woken by the growth in every interleaving.
#[test]
fn waiter_racing_growth_is_always_woken() {
    run_model("waiter_racing_growth_is_always_woken", || {
        let backend = LoomBackend::new();
        let pool = Arc::new(elastic(&backend, false));
        in_area(0);
        let fill = Buffer::new(1, REGION);
        let mf = emap(&pool, &fill, ToDevice).unwrap();

        let p = pool.clone();
        let waiter = thread::spawn(move || {
            in_area(0);
            let buf = Buffer::new(5, 2 * SLOT);
            // SAFETY: `buf` outlives the mapping (returned with it).
            let fut = unsafe {
                p.map_async(
                    buf.as_slice_ptr(),
                    ToDevice,
                    &Constraints::NONE,
                    Attrs::NONE,
                )
            };
            let dma = loom::future::block_on(fut).expect("woken with room");
            (dma, buf)
        });
        pool.grow(REGION).expect("grow");
        let (dma, buf) = waiter.join().unwrap();
        assert!(backend.is_live(dma));
        eunmap(&pool, dma, &buf, ToDevice);
        eunmap(&pool, mf, &fill, ToDevice);
        drop(pool);
        backend.assert_balanced();
    });
}

/// Throttling at 70% / 65% of a one-region pool (4 slots). A waiting map of 3 slots turns
/// it on; a waiter for 1 slot is held back; another thread unmaps the 3 slots, which must
/// lift the throttle and wake the waiter in every interleaving. Meanwhile the waiter may
/// also be the one that sees use fall: either way it maps, and the flag is never left up
/// with the pool below the low watermark.
#[test]
fn throttled_waiter_is_released_by_an_unmap() {
    run_model("throttled_waiter_is_released_by_an_unmap", || {
        let backend = LoomBackend::new();
        let config = ElasticConfig::new()
            .with_pool(tiny_config())
            .with_initial(REGION)
            .with_grow(REGION, REGION)
            .with_max_bytes(REGION)
            .with_grow_on_map(false)
            .with_throttle(70, 65);
        let pool = Arc::new(ElasticPool::new(backend.clone(), config).expect("pool"));
        in_area(0);
        let big = Buffer::new(6, 3 * SLOT);
        // SAFETY: `big` outlives the mapping.
        let fut = unsafe {
            pool.map_async(
                big.as_slice_ptr(),
                ToDevice,
                &Constraints::NONE,
                Attrs::NONE,
            )
        };
        let mb = loom::future::block_on(fut).expect("room");
        assert!(pool.stats().throttled, "75% is over the high watermark");

        let p = pool.clone();
        let waiter = thread::spawn(move || {
            in_area(0);
            let buf = Buffer::new(7, SLOT);
            // SAFETY: `buf` outlives the mapping (returned with it).
            let fut = unsafe {
                p.map_async(
                    buf.as_slice_ptr(),
                    ToDevice,
                    &Constraints::NONE,
                    Attrs::NONE,
                )
            };
            let dma = loom::future::block_on(fut).expect("released by the unmap");
            (dma, buf)
        });
        eunmap(&pool, mb, &big, ToDevice);
        let (dma, buf) = waiter.join().unwrap();
        assert!(!pool.stats().throttled, "25% is under the low watermark");
        eunmap(&pool, dma, &buf, ToDevice);
        drop(pool);
        backend.assert_balanced();
    });
}
