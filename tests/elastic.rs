//! The elastic pool: growth (default size, halving to the floor, sized to a large request,
//! the ceiling, the sub-pool limit), shrink (idle time, threshold, never the first, leaks
//! on failed unshares), waiting maps (timeout, futures, throttling), routing of every call
//! to its region, and the backend's books balanced at the end.

use core::ptr::NonNull;
use core::task::{Context, Poll, Waker};
use std::cell::Cell;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use swiotlb::testing::{BackendCall, TestBackend};
use swiotlb::{
    Attrs, Config, Constraints, Direction, DmaAddr, DmaPool, ElasticConfig, ElasticError,
    ElasticPool, GrowError, LookupError, MapError, Pool, SubPoolKind,
};

const BASE: DmaAddr = 0x40_0000_0000;
const KIB: usize = 1024;

/// 2 KiB slots, 32-slot (64 KiB) segments, one area: figures are exact.
fn region_config() -> Config {
    Config::new().with_segment_slots(32).with_areas(1)
}

fn config() -> ElasticConfig {
    ElasticConfig::new()
        .with_pool(region_config())
        .with_initial(64 * KIB)
        .with_grow(128 * KIB, 64 * KIB)
        .with_max_bytes(1 << 20)
        .with_idle_time_ns(0)
}

fn pool_with(config: ElasticConfig) -> (ElasticPool, TestBackend) {
    let backend = TestBackend::new(BASE);
    let pool = ElasticPool::new(backend.clone(), config).expect("pool");
    (pool, backend)
}

/// A buffer the test owns, mapped and unmapped through raw pointers.
struct Buf(Vec<u8>);

impl Buf {
    fn new(len: usize, seed: u8) -> Self {
        Self((0..len).map(|i| seed.wrapping_add(i as u8)).collect())
    }

    fn ptr(&mut self) -> NonNull<[u8]> {
        NonNull::from(&mut self.0[..])
    }
}

fn map(pool: &ElasticPool, buf: &mut Buf) -> Result<DmaAddr, MapError> {
    // SAFETY: the buffer outlives its mapping (every test unmaps before dropping it) and
    // is untouched meanwhile.
    unsafe { pool.try_map(buf.ptr(), Direction::ToDevice, &Constraints::NONE) }
}

fn unmap(pool: &ElasticPool, dma: DmaAddr, buf: &mut Buf) {
    // SAFETY: `dma` is the live mapping of `buf`.
    unsafe { pool.unmap_into(dma, buf.ptr(), Direction::ToDevice, Attrs::NONE) }.expect("unmap");
}

/// The bytes at `dma`, read as the device would.
fn device_read(pool: &ElasticPool, dma: DmaAddr, len: usize) -> Vec<u8> {
    let at = pool.translate(dma, len).expect("in the pool");
    let mut out = vec![0; len];
    // SAFETY: `translate` checked the range lies in one region, which stays while mapped.
    unsafe { swiotlb::shared::copy_from_shared(out.as_mut_ptr(), at.as_ptr(), len) };
    out
}

#[test]
fn a_pool_that_runs_out_grows_and_gives_it_back() {
    let (pool, backend) = pool_with(config());
    assert_eq!(backend.shares(), 1);
    let mut bufs: Vec<Buf> = (0..6).map(|i| Buf::new(60 * KIB, i)).collect();
    let mut live = Vec::new();
    for b in &mut bufs {
        let dma = map(&pool, b).expect("map grows the pool");
        assert!(
            backend.is_shared(dma, b.0.len()),
            "{dma:#x} outside every shared range"
        );
        assert_eq!(device_read(&pool, dma, b.0.len()), b.0);
        live.push(dma);
    }
    let stats = pool.stats();
    // 64 KiB first, then 128 KiB regions: 6 x 60 KiB mappings (30 slots each) need 3 more.
    assert_eq!(stats.sub_pools, 4, "{stats:?}");
    assert_eq!(stats.growths, 3);
    assert_eq!(stats.used_slots, 6 * 30);
    assert_eq!(stats.held_bytes, 64 * KIB + 3 * 128 * KIB);
    assert_eq!(backend.live().len(), 4);
    let kinds: Vec<_> = pool.sub_pools().iter().map(|s| s.kind).collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == SubPoolKind::First).count(),
        1
    );

    for (dma, b) in live.into_iter().zip(&mut bufs) {
        assert!(pool.lookup(dma).is_some());
        unmap(&pool, dma, b);
    }
    assert_eq!(pool.stats().used_slots, 0);
    assert_eq!(pool.shrink(), 3);
    let stats = pool.stats();
    assert_eq!(
        (stats.sub_pools, stats.shrinks, stats.held_bytes),
        (1, 3, 64 * KIB)
    );
    assert_eq!(pool.shrink(), 0, "the first region is never given back");
    assert_eq!(stats.high_water, 6 * 30);
    drop(pool);
    backend.assert_balanced();
}

#[test]
fn growth_halves_on_refusal_down_to_the_floor_then_fails_cleanly() {
    let (pool, backend) = pool_with(config().with_grow(256 * KIB, 64 * KIB));
    let mut a = Buf::new(64 * KIB, 1);
    let first = map(&pool, &mut a).expect("fills the first region");
    // 256 KiB refused, then 128 KiB refused, then 64 KiB given.
    backend.refuse_over(Some(64 * KIB));
    let mut b = Buf::new(4 * KIB, 2);
    let second = map(&pool, &mut b).expect("grows by the floor");
    let sizes: Vec<_> = backend
        .calls()
        .iter()
        .filter_map(|c| match c {
            BackendCall::Share { size, result, .. } => Some((*size, result.is_ok())),
            _ => None,
        })
        .collect();
    assert_eq!(
        sizes,
        [
            (64 * KIB, true),
            (256 * KIB, false),
            (128 * KIB, false),
            (64 * KIB, true)
        ]
    );
    assert_eq!(pool.stats().backend_refusals, 2);

    // Now nothing at all: the map that needs growth gets Full, and changes nothing.
    backend.fail_next_shares(10);
    let mut c = Buf::new(63 * KIB, 3);
    let before = pool.stats();
    let e = map(&pool, &mut c).expect_err("no room, no growth");
    let MapError::Full {
        total_slots,
        used_slots,
        ..
    } = e
    else {
        panic!("{e:?}")
    };
    assert_eq!((total_slots, used_slots), (64, 32 + 2));
    let after = pool.stats();
    assert_eq!(after.used_slots, before.used_slots);
    assert_eq!(after.failed_maps, 1);
    assert_eq!(after.growth_failures, 1, "{after:?} {:?}", backend.calls());
    assert_eq!(
        after.backend_refusals,
        2 + 3,
        "256, 128, 64 KiB asked again"
    );

    unmap(&pool, first, &mut a);
    unmap(&pool, second, &mut b);
    backend.fail_next_shares(0);
    drop(pool);
    backend.assert_balanced();
}

#[test]
fn a_request_larger_than_the_default_gets_a_region_sized_to_it() {
    // Default growth 16 KiB; a 60 KiB mapping needs more: a transient region of 60 KiB.
    let (pool, backend) = pool_with(config().with_initial(16 * KIB).with_grow(16 * KIB, 8 * KIB));
    let mut big = Buf::new(60 * KIB, 9);
    let dma = map(&pool, &mut big).expect("transient growth");
    let stats = pool.stats();
    assert_eq!((stats.growths, stats.transient_growths), (1, 1));
    let subs = pool.sub_pools();
    let t = subs
        .iter()
        .find(|s| s.kind == SubPoolKind::Transient)
        .expect("transient");
    assert_eq!(t.bytes, 60 * KIB);
    assert!(t.dma_range.contains(&dma));
    unmap(&pool, dma, &mut big);
    assert_eq!(pool.shrink(), 1);
    drop(pool);
    backend.assert_balanced();
}

#[test]
fn the_ceiling_and_the_sub_pool_limit_stop_growth() {
    let (pool, backend) = pool_with(config().with_max_bytes(192 * KIB));
    let mut bufs: Vec<Buf> = (0..4).map(|i| Buf::new(60 * KIB, i)).collect();
    let mut live = Vec::new();
    for b in bufs.iter_mut().take(3) {
        live.push(map(&pool, b).expect("within the ceiling"));
    }
    let e = map(&pool, &mut bufs[3]).expect_err("ceiling");
    assert!(matches!(e, MapError::Full { .. }), "{e:?}");
    assert!(
        matches!(pool.grow(64 * KIB), Err(GrowError::Ceiling { held, max, .. }) if held == 192 * KIB && max == 192 * KIB)
    );
    for (dma, b) in live.into_iter().zip(&mut bufs) {
        unmap(&pool, dma, b);
    }
    drop(pool);

    let (pool, backend2) = pool_with(config().with_max_sub_pools(2));
    assert_eq!(pool.grow(64 * KIB), Ok(64 * KIB));
    assert_eq!(pool.grow(64 * KIB), Err(GrowError::SubPools(2)));
    drop(pool);
    backend.assert_balanced();
    backend2.assert_balanced();
}

#[test]
fn a_failed_unshare_leaks_the_region_and_never_reuses_it() {
    let (pool, backend) = pool_with(config());
    pool.grow(128 * KIB).expect("grow");
    let grown = pool
        .sub_pools()
        .iter()
        .find(|s| s.kind == SubPoolKind::Grown)
        .unwrap()
        .dma_range
        .clone();
    backend.fail_next_unshares(1);
    assert_eq!(pool.shrink(), 1);
    let stats = pool.stats();
    assert_eq!((stats.leaks, stats.leaked_bytes), (1, 128 * KIB));
    assert_eq!(backend.leaked(), [(grown.start, 128 * KIB)]);
    assert!(
        !pool.contains(grown.start),
        "a leaked region is not the pool's any more"
    );
    // New growth gets fresh memory, never the leaked range.
    pool.grow(128 * KIB).expect("grow again");
    assert!(pool
        .sub_pools()
        .iter()
        .all(|s| s.dma_range.start != grown.start));
    drop(pool);
    backend.assert_balanced();
}

thread_local! {
    static NOW: Cell<u64> = const { Cell::new(0) };
}

fn test_clock() -> u64 {
    NOW.with(Cell::get)
}

#[test]
fn regions_go_back_only_after_the_idle_time_and_above_the_threshold() {
    let (pool, backend) = pool_with(config().with_idle_time_ns(1000).with_clock(test_clock));
    pool.grow(128 * KIB).unwrap();
    NOW.with(|n| n.set(10));
    assert_eq!(pool.shrink(), 0, "first seen empty now");
    NOW.with(|n| n.set(500));
    // A map lands in the region and leaves: idleness starts again.
    let mut fill = Buf::new(64 * KIB, 1);
    let f = map(&pool, &mut fill).unwrap();
    let mut b = Buf::new(8 * KIB, 2);
    let dma = map(&pool, &mut b).unwrap();
    unmap(&pool, dma, &mut b);
    NOW.with(|n| n.set(1100));
    assert_eq!(pool.shrink(), 0, "touched since the last pass");
    NOW.with(|n| n.set(2000));
    assert_eq!(pool.shrink(), 0, "idle only 900 ns");
    NOW.with(|n| n.set(2200));
    assert_eq!(pool.shrink(), 1);
    unmap(&pool, f, &mut fill);
    drop(pool);

    // The threshold: keep at least 150 KiB free, so the 128 KiB region stays (the first
    // region's 64 KiB alone would be under it).
    let (pool, backend2) = pool_with(config().with_keep_free(150 * KIB));
    pool.grow(128 * KIB).unwrap();
    assert_eq!(pool.shrink(), 0);
    drop(pool);
    backend.assert_balanced();
    backend2.assert_balanced();
}

#[test]
fn every_call_finds_its_region() {
    let (pool, backend) = pool_with(config());
    let mut a = Buf::new(64 * KIB, 1);
    let in_first = map(&pool, &mut a).unwrap();
    let mut b = Buf::new(3000, 2);
    // SAFETY: `b` outlives the mapping and is only touched between calls.
    let dma =
        unsafe { pool.try_map(b.ptr(), Direction::Bidirectional, &Constraints::NONE) }.unwrap();
    assert!(!pool.sub_pools()[0].dma_range.contains(&dma) || pool.sub_pools().len() > 1);
    let m = pool.lookup(dma + 100).expect("lookup in a grown region");
    assert_eq!((m.dma, m.len), (dma, 3000));
    // The device answers; a partial sync brings it back.
    let at = pool.translate(dma + 1000, 10).unwrap();
    // SAFETY: inside the live mapping, written as the device would.
    unsafe { swiotlb::shared::fill_shared(at.as_ptr(), 0xee, 10) };
    // SAFETY: `b` is the mapping's original, untouched since map.
    unsafe { pool.sync_for_cpu(dma + 1000, 10, Direction::Bidirectional) }.unwrap();
    assert_eq!(&b.0[1000..1010], &[0xee; 10]);
    // SAFETY: as above.
    unsafe { pool.sync_for_device(dma, 3000, Direction::Bidirectional) }.unwrap();
    // Wrong calls get the pool's errors, whichever region.
    // SAFETY: refused before anything is touched.
    let e = unsafe { pool.unmap(dma, 2999, Direction::Bidirectional, Attrs::NONE) };
    assert_eq!(
        e,
        Err(LookupError::LengthMismatch {
            dma,
            mapped: 3000,
            given: 2999
        })
    );
    let nowhere = 0x10;
    // SAFETY: refused: in no region.
    let e = unsafe { pool.unmap(nowhere, 1, Direction::ToDevice, Attrs::NONE) };
    assert_eq!(e, Err(LookupError::NotMapped { dma: nowhere }));
    // SAFETY: refused.
    let e = unsafe { pool.sync_for_cpu(nowhere, 0, Direction::ToDevice) };
    assert_eq!(e, Err(LookupError::ZeroLength { dma: nowhere }));
    assert!(!pool.contains(nowhere) && pool.lookup(nowhere).is_none());
    // SAFETY: `b` is the mapping's original.
    unsafe { pool.unmap(dma, 3000, Direction::Bidirectional, Attrs::NONE) }.unwrap();
    assert!(pool.lookup(dma).is_none());
    unmap(&pool, in_first, &mut a);

    // Coherent allocations, in a grown region too.
    let rings: Vec<_> = (0..3)
        .map(|_| pool.try_alloc(48 * KIB, &Constraints::NONE).expect("alloc"))
        .collect();
    // 48 KiB rings are 64 KiB-aligned: one in the first region, two in a grown one.
    assert_eq!(pool.stats().sub_pools, 2);
    for r in rings {
        assert!(backend.is_shared(r.dma(), r.size()));
        pool.free(r).expect("free");
    }
    // Another pool's allocation is handed back.
    let other = Pool::allocate(64 * KIB, region_config()).unwrap();
    let foreign = other.alloc(4096, &Constraints::NONE).unwrap();
    let back = pool.free(foreign).expect_err("foreign");
    other.free(back.0).unwrap();
    assert_eq!(pool.stats().used_slots, 0);
    drop(pool);
    backend.assert_balanced();
}

#[test]
fn a_buffer_inside_any_region_is_refused() {
    let (pool, backend) = pool_with(config());
    let ring = pool.try_alloc(64 * KIB, &Constraints::NONE).unwrap();
    let grown = pool.try_alloc(4096, &Constraints::NONE).unwrap();
    assert!(pool.stats().sub_pools == 2);
    let inside = NonNull::slice_from_raw_parts(grown.cpu(), 16);
    // SAFETY: refused before anything is read.
    let e = unsafe { pool.try_map(inside, Direction::ToDevice, &Constraints::NONE) };
    assert!(matches!(e, Err(MapError::BufferInPool { .. })), "{e:?}");
    pool.free(ring).unwrap();
    pool.free(grown).unwrap();
    drop(pool);
    backend.assert_balanced();
}

#[test]
fn a_fixed_pool_is_today_s_pool_and_never_grows() {
    let pool = ElasticPool::fixed(Pool::allocate(64 * KIB, region_config()).unwrap());
    assert!(!pool.can_grow());
    let mut a = Buf::new(64 * KIB, 1);
    let dma = map(&pool, &mut a).unwrap();
    let mut b = Buf::new(1, 2);
    let e = map(&pool, &mut b).expect_err("full");
    assert!(
        matches!(
            e,
            MapError::Full {
                total_slots: 32,
                used_slots: 32,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(pool.grow(4096), Err(GrowError::Fixed));
    assert_eq!(pool.shrink(), 0);
    let stats = pool.stats();
    assert_eq!(
        (stats.failed_maps, stats.sub_pools, stats.held_bytes),
        (1, 1, 0)
    );
    unmap(&pool, dma, &mut a);
}

#[test]
fn configurations_that_contradict_themselves_are_refused() {
    let backend = TestBackend::new(BASE);
    let bad = [
        config().with_grow(64 * KIB, 128 * KIB),
        config().with_initial(0),
        config().with_initial(2 << 20),
        config().with_max_sub_pools(0),
    ];
    for c in bad {
        let e = ElasticPool::new(backend.clone(), c).expect_err("refused");
        assert!(
            matches!(e, ElasticError::Sizes { .. } | ElasticError::SubPools(0)),
            "{e:?}"
        );
    }
    let e = ElasticPool::new(backend.clone(), config().with_throttle(60, 70)).unwrap_err();
    assert_eq!(e, ElasticError::Throttle { high: 60, low: 70 });
    backend.fail_next_shares(1);
    let e = ElasticPool::new(backend.clone(), config()).unwrap_err();
    assert!(matches!(e, ElasticError::Backend(_)), "{e:?}");
    assert_eq!(backend.shares(), 0);
    backend.assert_balanced();
}

#[test]
fn maps_that_must_not_grow_fail_at_once_and_a_worker_grows() {
    let (pool, backend) = pool_with(config().with_grow_on_map(false));
    let mut a = Buf::new(64 * KIB, 1);
    let first = map(&pool, &mut a).unwrap();
    let mut b = Buf::new(4096, 2);
    assert!(matches!(map(&pool, &mut b), Err(MapError::Full { .. })));
    assert_eq!(backend.shares(), 1, "the map did not call the backend");
    assert_eq!(pool.grow(64 * KIB), Ok(64 * KIB));
    let second = map(&pool, &mut b).unwrap();
    unmap(&pool, second, &mut b);
    unmap(&pool, first, &mut a);
    drop(pool);
    backend.assert_balanced();
}

#[test]
fn a_waiting_map_times_out_then_succeeds_when_another_thread_unmaps() {
    let pool = Arc::new(ElasticPool::fixed(
        Pool::allocate(64 * KIB, region_config()).unwrap(),
    ));
    let mut a = Buf::new(64 * KIB, 1);
    let held = map(&pool, &mut a).unwrap();
    let mut b = Buf::new(4096, 2);
    // SAFETY: `b` outlives the call and any mapping it makes.
    let r = unsafe {
        pool.map_wait(
            b.ptr(),
            Direction::ToDevice,
            &Constraints::NONE,
            Attrs::NONE,
            Duration::from_millis(20),
        )
    };
    assert!(matches!(r, Err(MapError::Full { .. })), "{r:?}");
    assert_eq!((pool.stats().waits, pool.stats().wait_timeouts), (1, 1));

    let p = pool.clone();
    let unmapper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        // SAFETY: `held` is the live ToDevice mapping of `a`, which outlives the thread
        // (joined below); ToDevice copies nothing back.
        unsafe { p.unmap(held, 64 * KIB, Direction::ToDevice, Attrs::NONE) }.unwrap();
    });
    // SAFETY: as above.
    let (dma, waited) = unsafe {
        pool.map_wait(
            b.ptr(),
            Direction::ToDevice,
            &Constraints::NONE,
            Attrs::NONE,
            Duration::from_secs(10),
        )
    }
    .expect("woken by the unmap");
    assert!(waited);
    unmapper.join().unwrap();
    unmap(&pool, dma, &mut b);
    assert_eq!(pool.stats().used_slots, 0);
}

/// A waker that counts its wakes.
struct Count(AtomicUsize);

impl std::task::Wake for Count {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn a_map_future_is_woken_by_an_unmap_and_a_dropped_one_leaves_nothing() {
    let pool = ElasticPool::fixed(Pool::allocate(64 * KIB, region_config()).unwrap());
    let mut a = Buf::new(64 * KIB, 1);
    let held = map(&pool, &mut a).unwrap();
    let count = Arc::new(Count(AtomicUsize::new(0)));
    let waker = Waker::from(count.clone());
    let mut cx = Context::from_waker(&waker);
    let mut b = Buf::new(4096, 2);
    // SAFETY: `b` outlives the future and its mapping.
    let mut fut = pin!(unsafe {
        pool.map_async(
            b.ptr(),
            Direction::ToDevice,
            &Constraints::NONE,
            Attrs::NONE,
        )
    });
    assert!(fut.as_mut().poll(&mut cx).is_pending());
    assert_eq!(count.0.load(Ordering::SeqCst), 0);
    unmap(&pool, held, &mut a);
    assert_eq!(count.0.load(Ordering::SeqCst), 1, "the unmap woke it");
    let Poll::Ready(Ok(dma)) = fut.as_mut().poll(&mut cx) else {
        panic!("room after the unmap")
    };
    unmap(&pool, dma, &mut b);

    // Dropped while waiting: deregistered, nothing mapped.
    let held = map(&pool, &mut a).unwrap();
    {
        // SAFETY: as above.
        let mut fut = pin!(unsafe {
            pool.map_async(
                b.ptr(),
                Direction::ToDevice,
                &Constraints::NONE,
                Attrs::NONE,
            )
        });
        assert!(fut.as_mut().poll(&mut cx).is_pending());
    }
    unmap(&pool, held, &mut a);
    assert_eq!(count.0.load(Ordering::SeqCst), 1, "nobody left to wake");
    assert_eq!(pool.stats().used_slots, 0);

    // Polled again after it returned its mapping, a future maps nothing more.
    // SAFETY: as above.
    let mut fut = pin!(unsafe {
        pool.map_async(
            b.ptr(),
            Direction::ToDevice,
            &Constraints::NONE,
            Attrs::NONE,
        )
    });
    let Poll::Ready(Ok(dma)) = fut.as_mut().poll(&mut cx) else {
        panic!("room")
    };
    assert!(fut.as_mut().poll(&mut cx).is_pending());
    assert_eq!(pool.stats().used_slots, 2);
    unmap(&pool, dma, &mut b);
}

#[test]
fn throttling_holds_waiting_maps_between_the_watermarks() {
    // 32 slots; high 70% (23 slots), low 65% (21 slots).
    let pool = ElasticPool::fixed_with(
        Pool::allocate(64 * KIB, region_config()).unwrap(),
        ElasticConfig::new().with_throttle(70, 65),
    );
    let wait_map = |b: &mut Buf| {
        let mut waits = 0;
        // SAFETY: `b` outlives its mapping.
        let r = unsafe {
            pool.map_wait_with(
                b.ptr(),
                Direction::ToDevice,
                &Constraints::NONE,
                Attrs::NONE,
                |_| {
                    waits += 1;
                    waits < 3
                },
            )
        };
        (r, waits)
    };
    let mut bufs: Vec<Buf> = (0..12).map(|i| Buf::new(4096, i)).collect();
    let mut live = Vec::new();
    // 12 two-slot maps: the 12th reaches 24 slots (75%) and throttles.
    for b in bufs.iter_mut() {
        let (r, waits) = wait_map(b);
        assert_eq!(waits, 0);
        live.push(r.unwrap().0);
    }
    assert!(pool.stats().throttled);
    // A try map is never throttled.
    let mut t = Buf::new(4096, 99);
    let tried = map(&pool, &mut t).expect("try maps ignore throttling");
    // A waiting map waits, and when it gives up makes one ordinary try (room: it maps).
    let mut w = Buf::new(4096, 100);
    let (r, waits) = wait_map(&mut w);
    assert_eq!(waits, 3);
    let late = r.expect("one last try at the deadline").0;
    assert_eq!(pool.stats().throttled_waits, 1);
    unmap(&pool, late, &mut w);
    unmap(&pool, tried, &mut t);
    // Down to 22 slots (69%): still throttled; 20 slots (62%): lifted.
    unmap(&pool, live.pop().unwrap(), &mut bufs[11]);
    assert!(pool.stats().throttled);
    unmap(&pool, live.pop().unwrap(), &mut bufs[10]);
    assert!(!pool.stats().throttled);
    let (r, waits) = wait_map(&mut bufs[10]);
    assert_eq!(waits, 0);
    live.push(r.unwrap().0);
    for (i, dma) in live.into_iter().enumerate() {
        unmap(&pool, dma, &mut bufs[i]);
    }
}

/// Code written against the `DmaPool` trait works with either pool.
fn round_trip(pool: &impl DmaPool) {
    let mut b = Buf::new(5000, 7);
    // SAFETY: `b` outlives its mapping.
    let dma = unsafe {
        pool.map_attrs(
            b.ptr(),
            Direction::FromDevice,
            &Constraints::NONE,
            Attrs::ZERO_FILL,
        )
    }
    .unwrap();
    // SAFETY: the live mapping of `b`.
    unsafe { pool.unmap_into(dma, b.ptr(), Direction::FromDevice, Attrs::NONE) }.unwrap();
    assert_eq!(b.0, vec![0; 5000], "zero-filled, copied back");
    let c = pool.alloc(4096, &Constraints::NONE).unwrap();
    pool.free(c).unwrap();
}

#[test]
fn dma_pool_code_runs_on_an_elastic_pool() {
    let (pool, backend) = pool_with(config());
    round_trip(&pool);
    round_trip(&Pool::allocate(64 * KIB, region_config()).unwrap());
    drop(pool);
    backend.assert_balanced();
}

/// The high-water mark sees a peak that came and went with no figures taken in between
/// (it was only sampled when figures were taken, so the virtio_blk example reported a high
/// water of 0 after its whole run), and a reset starts it again, for the pool and for each
/// region.
#[test]
fn high_water_sees_a_peak_between_samples_and_resets() {
    for fixed in [false, true] {
        let (pool, backend) = if fixed {
            let region = Pool::allocate(64 * KIB, region_config()).expect("region");
            (ElasticPool::fixed(region), None)
        } else {
            let (pool, backend) = pool_with(config());
            (pool, Some(backend))
        };
        let mut bufs: Vec<Buf> = (0..5).map(|i| Buf::new(3000, i)).collect();
        let live: Vec<_> = bufs
            .iter_mut()
            .map(|b| map(&pool, b).expect("map"))
            .collect();
        for (dma, b) in live.into_iter().zip(&mut bufs) {
            unmap(&pool, dma, b);
        }
        // Five mappings of two slots each were live at once; no figures were taken.
        let stats = pool.stats();
        assert_eq!(
            (stats.used_slots, stats.high_water),
            (0, 10),
            "fixed: {fixed}"
        );

        let held = map(&pool, &mut bufs[0]).expect("map");
        assert_eq!(pool.reset_high_water(), 10);
        assert_eq!(
            pool.stats().high_water,
            2,
            "a reset starts from the use now"
        );
        assert!(pool.sub_pools().iter().all(|s| s.stats.high_water <= 2));
        unmap(&pool, held, &mut bufs[0]);
        drop(pool);
        if let Some(backend) = backend {
            backend.assert_balanced();
        }
    }
}
