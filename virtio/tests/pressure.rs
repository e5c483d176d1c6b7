//! A pool too small for the load: shares wait for room under the policy's bound, then panic
//! with the pool's figures; nothing is corrupted and nothing leaks.

mod common;

use common::{assert_idle, pattern, region};
use core::ptr::NonNull;
use core::time::Duration;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;
use swiotlb::{Constraints, Wakeup};
use swiotlb_virtio::testing::{BlockDevice, Mode, RngDevice, TransportBuilder, SECTOR_SIZE};
use swiotlb_virtio::{bind_pool, map_sg, FullPolicy, HalOptions, PoolBinding, SgBuf, SwiotlbHal};
use virtio_drivers::device::blk::{BlkReq, BlkResp, RespStatus, VirtIOBlk};
use virtio_drivers::device::rng::VirtIORng;
use virtio_drivers::{BufferDirection, Hal};

fn patient() -> HalOptions {
    HalOptions::new().when_full(FullPolicy::wait(Duration::from_secs(10)))
}

/// Device A holds a 64 KiB write in flight; device B's write cannot fit beside it, waits,
/// and goes through as soon as A's completes on another thread.
#[test]
fn share_waits_for_room_another_thread_frees() {
    bind_pool!(P);
    // 64 slots: two drivers' rings take 8, one 64 KiB write 34, leaving 22: a second write
    // of 34 slots must wait.
    let region = region(128 << 10);
    let pool = region.pool();
    P::register(pool, patient()).unwrap();

    let (ta, dev_a) = TransportBuilder::new(BlockDevice::new(256), region)
        .mode(Mode::Manual)
        .build();
    let mut blk_a = VirtIOBlk::<SwiotlbHal<P>, _>::new(ta).unwrap();
    let (tb, dev_b) = TransportBuilder::new(BlockDevice::new(256), region).build();
    let mut blk_b = VirtIOBlk::<SwiotlbHal<P>, _>::new(tb).unwrap();
    assert_eq!(pool.stats().used_slots, 8);

    let data_a = pattern(64 << 10, 1);
    let data_b = pattern(64 << 10, 2);
    let (mut req, mut resp) = (BlkReq::default(), BlkResp::default());
    // SAFETY: req, data_a and resp are untouched until the completion below.
    let token = unsafe { blk_a.write_blocks_nb(0, &mut req, &data_a, &mut resp) }.unwrap();
    assert_eq!(pool.stats().used_slots, 8 + 34);

    std::thread::scope(|s| {
        let b = s.spawn(|| {
            blk_b.write_blocks(0, &data_b).unwrap();
        });
        // Wait until B has found the pool full at least once.
        let start = Instant::now();
        while pool.stats().failed_maps == 0 {
            assert!(start.elapsed() < Duration::from_secs(10), "B never tried");
            std::thread::yield_now();
        }
        assert!(!b.is_finished());
        dev_a.process().unwrap();
        // SAFETY: the buffers given to write_blocks_nb.
        unsafe { blk_a.complete_write_blocks(token, &req, &data_a, &mut resp) }.unwrap();
        assert_eq!(resp.status(), RespStatus::OK);
        b.join().unwrap();
    });
    assert!(P::counters().share_waits >= 1);
    for (dev, data) in [(&dev_a, &data_a), (&dev_b, &data_b)] {
        let disk = dev.with_model(|d: &mut BlockDevice| d.disk()[..data.len()].to_vec());
        assert!(disk.as_ref() == Some(data), "a device's disk is wrong");
    }
    drop((blk_a, blk_b));
    assert_idle(pool);
}

/// No one frees room: after the policy's bound, `share` panics with the pool's figures, and
/// the pool is as it was.
#[test]
fn share_panics_with_the_pool_figures_after_a_bounded_wait() {
    bind_pool!(P);
    let region = region(64 << 10);
    let pool = region.pool();
    let bound = Duration::from_millis(30);
    P::register(pool, HalOptions::new().when_full(FullPolicy::wait(bound))).unwrap();
    // Take the whole pool.
    let mut hog = vec![0u8; 64 << 10];
    let sg = map_sg(pool, [SgBuf::In(&mut hog)], &Constraints::NONE).unwrap();
    let mut buf = [7u8; 512];
    let start = Instant::now();
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `buf` is valid and untouched for the call (which never returns a mapping).
        unsafe {
            SwiotlbHal::<P>::share(NonNull::from(&mut buf[..]), BufferDirection::DeviceToDriver)
        }
    }));
    let waited = start.elapsed();
    let message = *outcome
        .expect_err("share of a full pool must panic")
        .downcast::<String>()
        .unwrap();
    assert!(
        message.contains("pool still full after waiting"),
        "{message}"
    );
    assert!(
        message.contains("swiotlb buffer is full (sz: 512 bytes"),
        "{message}"
    );
    assert!(
        message.contains("total 32 (slots), used 32 (slots)"),
        "{message}"
    );
    // A lower bound only: the waits were made.
    assert!(waited >= bound, "gave up after {waited:?}");
    assert_eq!(pool.stats().used_slots, 32);
    assert_eq!(buf, [7u8; 512]);
    // Room again: the same share goes through.
    assert_eq!(sg.unmap(0).unwrap().copied_back, 0);
    // SAFETY: `buf` stays valid and untouched until the unshare.
    let dma = unsafe {
        SwiotlbHal::<P>::share(NonNull::from(&mut buf[..]), BufferDirection::DeviceToDriver)
    };
    // SAFETY: as returned by share, same buffer and direction.
    unsafe {
        SwiotlbHal::<P>::unshare(
            dma,
            NonNull::from(&mut buf[..]),
            BufferDirection::DeviceToDriver,
        )
    };
    assert_idle(pool);
}

static PAUSES: AtomicU32 = AtomicU32::new(0);

#[test]
fn panic_policy_gives_up_without_waiting() {
    bind_pool!(P);
    fn counting_park(_: &Wakeup, _: Duration) -> Duration {
        PAUSES.fetch_add(1, Ordering::Relaxed);
        Duration::ZERO
    }
    let region = region(8 << 10);
    let pool = region.pool();
    P::register(
        pool,
        HalOptions::new().when_full(FullPolicy::PANIC.park_with(counting_park)),
    )
    .unwrap();
    let mut hog = vec![0u8; 8 << 10];
    let sg = map_sg(pool, [SgBuf::In(&mut hog)], &Constraints::NONE).unwrap();
    let buf = [1u8; 64];
    let outcome = catch_unwind(|| {
        // SAFETY: `buf` is valid for the call.
        unsafe { SwiotlbHal::<P>::share(NonNull::from(&buf[..]), BufferDirection::DriverToDevice) }
    });
    let payload = outcome.expect_err("a share into a full pool panics");
    let message = payload
        .downcast_ref::<String>()
        .expect("a formatted panic message");
    assert!(
        message.contains("pool still full after waiting 0ns") && message.contains("failed maps"),
        "{message}"
    );
    assert_eq!(PAUSES.load(Ordering::Relaxed), 0);
    sg.unmap(0).unwrap();
    assert_idle(pool);
}

/// Two entropy devices on two threads, on a pool that cannot hold both threads' largest
/// requests at once. Each request is a single buffer, so a waiting share holds nothing and
/// the other thread always completes: waits end, every byte is the device's, no slot is
/// lost.
#[test]
fn two_devices_on_a_small_pool_wait_and_corrupt_nothing() {
    bind_pool!(P);
    // 96 slots: 8 for the two drivers' rings, 88 for requests of up to 64 slots each.
    let region = region(192 << 10);
    let pool = region.pool();
    P::register(pool, patient()).unwrap();
    // Both drivers first, so that their rings sit together at the bottom of the pool. Rings
    // allocated while requests are mapped would land above them and could split the pool
    // so that a 64-slot request never fits again (seen: 88 slots free, no 64-slot run).
    let devices: Vec<_> = (0..2u64)
        .map(|t| {
            let (transport, device) = TransportBuilder::new(RngDevice::new(t + 1), region).build();
            let rng = VirtIORng::<SwiotlbHal<P>, _>::new(transport).unwrap();
            (t, rng, device)
        })
        .collect();
    assert_eq!(pool.stats().used_slots, 8);
    std::thread::scope(|s| {
        for (t, mut rng, device) in devices {
            s.spawn(move || {
                let mut got = Vec::new();
                for i in 0..200usize {
                    let len = 4096 * (1 + (i * 7 + t as usize * 3) % 32);
                    let mut buf = vec![0u8; len];
                    assert_eq!(rng.request_entropy(&mut buf).unwrap(), len);
                    got.extend_from_slice(&buf);
                }
                assert!(
                    got == RngDevice::stream(t + 1, got.len()),
                    "thread {t}: bytes differ from the device's stream"
                );
                assert!(device.failure().is_none());
                drop(rng);
            });
        }
    });
    let stats = pool.stats();
    assert!(stats.high_water <= stats.total_slots);
    let c = P::counters();
    assert_eq!(c.shares, c.unshares);
    eprintln!(
        "two rng devices: high water {} of {} slots, {} shares waited, {} failed maps",
        stats.high_water, stats.total_slots, c.share_waits, stats.failed_maps
    );
    assert_idle(pool);
}

/// Two block devices on two threads, on a pool sized for both threads' largest requests:
/// concurrent shares through one binding keep every byte right.
#[test]
fn two_block_devices_in_parallel_corrupt_nothing() {
    bind_pool!(P);
    // 8 slots of rings + 2 x 67 (128 KiB data, header, status, indirect table) < 160.
    let region = region(320 << 10);
    let pool = region.pool();
    P::register(pool, patient()).unwrap();
    std::thread::scope(|s| {
        for t in 0..2u32 {
            s.spawn(move || {
                let (transport, device) = TransportBuilder::new(BlockDevice::new(1024), region)
                    .indirect(t == 1)
                    .build();
                let mut blk = VirtIOBlk::<SwiotlbHal<P>, _>::new(transport).unwrap();
                for i in 0..60u32 {
                    let sectors = 1 + (i as usize * 37 + t as usize * 11) % 256;
                    let sector = (i as usize * 53) % (1024 - sectors);
                    let data = pattern(sectors * SECTOR_SIZE, t * 1000 + i);
                    blk.write_blocks(sector, &data).unwrap();
                    let mut back = vec![0u8; data.len()];
                    blk.read_blocks(sector, &mut back).unwrap();
                    assert!(back == data, "thread {t} request {i}: data corrupted");
                }
                assert!(device.failure().is_none());
            });
        }
    });
    let c = P::counters();
    assert_eq!(c.shares, c.unshares);
    assert_idle(pool);
}
