//! The findings of the soundness review, one named test each (the loom model of racing
//! releases is `loom_unmap::racing_double_unmap_with_scrub_zeroes_no_new_owner`, the Miri
//! ones are in `tests/miri.rs`, the handle's in `errors.rs`).

mod common;

use common::{device_read, device_write, pool, Orig};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};
use swiotlb::{Attrs, Config, Constraints, Direction, Fill, LookupError, MapError, Pool, RawMutex};

/// Finding 7: `alloc` of a size within a slot of `usize::MAX` overflowed in `slots_for`: a
/// panic in debug, and in release a wrong `Impossible` with nonsense figures, or an index
/// out of bounds in the bitmap when the pool's device address is 0. Any size over a
/// segment is `TooLarge`, wherever the pool is.
#[test]
fn alloc_of_a_size_near_usize_max_is_too_large_even_at_device_address_zero() {
    let mut region = vec![0u8; 64 * 2048 + 2048];
    let start = region.as_mut_ptr();
    let cpu = NonNull::new(start.wrapping_add(start.addr().wrapping_neg() % 2048)).unwrap();
    for dma_base in [0u64, 0x8000_0000] {
        // SAFETY: 64 slots of `region`, which outlives the pool and is used by nothing else.
        let pool = unsafe { Pool::new(cpu, dma_base, 64 * 2048, Config::new().with_areas(1)) }
            .expect("pool");
        let segment = 128 * 2048;
        for size in (0..=4096).map(|k| usize::MAX - k).chain([segment + 1]) {
            assert_eq!(
                pool.alloc(size, &Constraints::NONE),
                Err(MapError::TooLarge { size, max: segment }),
                "{size:#x} at device address {dma_base:#x}"
            );
        }
        assert_eq!(pool.stats().used_slots, 0);
        assert_eq!(pool.stats().failed_maps, 0);
        let ok = pool
            .alloc(4096, &Constraints::NONE)
            .expect("a real allocation");
        assert_eq!(ok.dma() % 4096, 0);
        pool.free(ok).unwrap();
    }
}

/// Finding 8: front padding, the head slot before the data and the tail of the last slot
/// kept an earlier mapping's bytes, where the new mapping's device could read them.
#[test]
fn bytes_around_a_mapping_never_hold_an_earlier_mappings_data() {
    let pool = pool(16);
    let start = pool.dma_range().start;
    // Fill all 16 slots with "private" data through mappings, and let the device write
    // its part too.
    let mut big = Orig::new(16 * 2048, 0, 0x11);
    let dma = big.map(&pool, Direction::Bidirectional, &Constraints::NONE);
    assert_eq!(dma, start);
    device_write(&pool, start + 100, &[0x77; 5000]);
    big.unmap(&pool, dma, Direction::Bidirectional);
    // NVMe-style: kept offset 0xe00 under a page alignment = one padding slot, then 0x600
    // into the head slot; 3000 bytes end 0x600 + 3000 - 2048 = 2488 into the next slot.
    let nvme = Constraints::new()
        .min_align_mask(0xfff)
        .alloc_align_mask(0xfff);
    for (len, low, c) in [
        (3000, 0xe00, nvme),
        (100, 0, Constraints::NONE),
        (1, 0x7ff, Constraints::new().min_align_mask(0x7ff)),
        (2049, 0, Constraints::NONE),
    ] {
        let mut o = Orig::new(len, low, 0x22);
        let dma = o.map(&pool, Direction::ToDevice, &c);
        let offset = (low as u64 & c.min_align_mask) as usize;
        let run = dma - offset as u64;
        let slots = (offset + len).div_ceil(2048);
        let bytes = device_read(&pool, run, slots * 2048);
        assert_eq!(&bytes[offset..offset + len], o.bytes(), "the data itself");
        let around = bytes[..offset].iter().chain(&bytes[offset + len..]);
        assert!(
            around.clone().all(|b| *b == 0),
            "{len} bytes at offset {offset:#x}: {} earlier bytes around the data",
            around.filter(|b| **b != 0).count()
        );
        o.unmap(&pool, dma, Direction::ToDevice);
    }
}

/// Finding 8: `Pool::new` never cleared its region, so whatever it held before (another
/// user's data) could reach a device through a mapping's padding or tail.
#[test]
fn pool_new_clears_what_the_region_held() {
    let mut region = vec![0xa5u8; 32 * 2048];
    let cpu = NonNull::new(region.as_mut_ptr()).unwrap();
    let dma_base = 0x4000_0000;
    // SAFETY: `region` outlives the pool and is touched only through it from here on.
    let pool = unsafe { Pool::new(cpu, dma_base, region.len(), Config::new()) }.unwrap();
    let slots = pool.stats().total_slots;
    assert_eq!(
        device_read(&pool, pool.dma_range().start, slots * 2048),
        vec![0; slots * 2048]
    );
    drop(pool);
    drop(region);
}

/// Finding 9: `map` copied a `FromDevice` original into shared memory, showing the host
/// whatever private bytes a receive buffer held. With `Fill::Zero` nothing of it reaches
/// the pool; a partial device write then leaves zeros past it on unmap (the trade-off).
#[test]
fn zero_fill_shows_the_device_nothing_of_the_original() {
    let pool = pool(16);
    for attrs in [Attrs::ZERO_FILL, Attrs::NONE.fill(Fill::Zero)] {
        let mut o = Orig::new(5000, 0x123, 0x5e);
        let secret = o.bytes().to_vec();
        // SAFETY: `o` is alive and untouched until the unmap below.
        let dma =
            unsafe { pool.map_attrs(o.ptr(), Direction::FromDevice, &Constraints::NONE, attrs) }
                .unwrap();
        assert_eq!(
            device_read(&pool, dma, 5000),
            vec![0; 5000],
            "nothing copied in"
        );
        device_write(&pool, dma, &[0x42; 100]);
        o.unmap(&pool, dma, Direction::FromDevice);
        assert_eq!(&o.bytes()[..100], &[0x42; 100]);
        assert!(
            o.bytes()[100..].iter().all(|b| *b == 0),
            "zeros past the device's write"
        );
        assert_ne!(o.bytes(), &secret[..]);
    }
    // The fill rule is only for buffers the device writes: the others are copied in.
    for dir in [Direction::ToDevice, Direction::Bidirectional] {
        let mut o = Orig::new(3000, 0, 0x5f);
        // SAFETY: as above.
        let dma =
            unsafe { pool.map_attrs(o.ptr(), dir, &Constraints::NONE, Attrs::ZERO_FILL) }.unwrap();
        assert_eq!(device_read(&pool, dma, 3000), o.bytes());
        o.unmap(&pool, dma, dir);
    }
    assert_eq!(pool.stats().used_slots, 0);
}

/// Finding 4: a copy back must go to the buffer the caller holds now, and only if it is the
/// mapping's own (the Hal silently ignored a mismatched one).
#[test]
fn unmap_into_and_the_syncs_check_the_buffer_they_are_given() {
    let pool = pool(16);
    let mut o = Orig::new(3000, 0x40, 3);
    let mut other = Orig::new(3000, 0x40, 4);
    let dma = o.map(&pool, Direction::Bidirectional, &Constraints::NONE);
    device_write(&pool, dma, &[0x99; 3000]);
    let wrong = |given: *const u8, expected: *const u8, at: u64| LookupError::WrongBuffer {
        dma: at,
        expected: expected.addr(),
        given: given.addr(),
    };
    // SAFETY: `o` and `other` are alive and untouched during the call; a refused call
    // copies nothing.
    let r = unsafe { pool.unmap_into(dma, other.ptr(), Direction::Bidirectional, Attrs::NONE) };
    assert_eq!(r, Err(wrong(other.as_ptr(), o.as_ptr(), dma)));
    // A sync at offset 1000 wants the original's byte 1000.
    let part = NonNull::slice_from_raw_parts(o.ptr().cast::<u8>(), 10);
    // SAFETY: `o` and `other` are alive and untouched during the call; a refused call
    // copies nothing.
    let r = unsafe { pool.sync_for_cpu_into(dma + 1000, part, Direction::Bidirectional) };
    assert_eq!(
        r,
        Err(wrong(o.as_ptr(), o.as_ptr().wrapping_add(1000), dma + 1000))
    );
    assert_eq!(
        o.bytes()[0],
        common::pattern(3, 0),
        "refused: nothing copied"
    );
    let at = NonNull::new(o.ptr().cast::<u8>().as_ptr().wrapping_add(1000)).unwrap();
    let part = NonNull::slice_from_raw_parts(at, 10);
    // SAFETY: `o` and `other` are alive and untouched during the call; a refused call
    // copies nothing.
    unsafe { pool.sync_for_cpu_into(dma + 1000, part, Direction::Bidirectional) }.unwrap();
    assert_eq!(&o.bytes()[1000..1010], &[0x99; 10]);
    assert_eq!(o.bytes()[999], common::pattern(3, 999));
    o.bytes_mut()[1005] = 7;
    let part = NonNull::slice_from_raw_parts(
        NonNull::new(o.ptr().cast::<u8>().as_ptr().wrapping_add(1005)).unwrap(),
        1,
    );
    // SAFETY: `o` and `other` are alive and untouched during the call; a refused call
    // copies nothing.
    unsafe { pool.sync_for_device_from(dma + 1005, part, Direction::Bidirectional) }.unwrap();
    assert_eq!(device_read(&pool, dma + 1004, 3), [0x99, 7, 0x99]);
    // Too long for the mapping from there: refused before any check of the buffer.
    let long = NonNull::slice_from_raw_parts(at, 2001);
    // SAFETY: `o` and `other` are alive and untouched during the call; a refused call
    // copies nothing.
    let r = unsafe { pool.sync_for_cpu_into(dma + 1000, long, Direction::Bidirectional) };
    assert!(matches!(r, Err(LookupError::OutOfRange { .. })), "{r:?}");
    // SAFETY: `o` and `other` are alive and untouched during the call; a refused call
    // copies nothing.
    let r = unsafe { pool.unmap_into(dma, o.ptr(), Direction::Bidirectional, Attrs::NONE) };
    assert_eq!(r, Ok(()));
    let mut expected = vec![0x99; 3000];
    expected[1005] = 7;
    assert!(o.bytes() == expected, "copied back into the buffer given");
    assert_eq!(pool.stats().used_slots, 0);
}

/// A raw lock that counts its acquisitions: stands for a user's own lock (one that masks
/// interrupts, say).
struct CountingLock {
    locked: core::sync::atomic::AtomicBool,
}

static ACQUIRED: AtomicUsize = AtomicUsize::new(0);

// SAFETY: a test-and-set spin lock: `lock`/`try_lock` return holding the flag (Acquire),
// `unlock` releases it (Release); one holder at a time.
unsafe impl RawMutex for CountingLock {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = Self {
        locked: core::sync::atomic::AtomicBool::new(false),
    };
    type GuardMarker = lock_api::GuardSend;

    fn lock(&self) {
        while !self.try_lock() {
            core::hint::spin_loop();
        }
    }

    fn try_lock(&self) -> bool {
        let won = self
            .locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok();
        if won {
            ACQUIRED.fetch_add(1, Ordering::Relaxed);
        }
        won
    }

    unsafe fn unlock(&self) {
        self.locked.store(false, Ordering::Release);
    }
}

/// Finding 10: the no_std spin lock is not interrupt-safe and could not be replaced; a pool
/// now takes the caller's `lock_api::RawMutex`, and every area lock is that lock.
#[test]
fn a_pool_locks_with_the_raw_mutex_it_is_given() {
    let mut region = vec![0u8; 64 * 2048];
    let cpu = NonNull::new(region.as_mut_ptr()).unwrap();
    // SAFETY: `region` outlives the pool and is touched only through it.
    let pool: Pool<CountingLock> =
        unsafe { Pool::with_raw_mutex(cpu, 0x1000_0000, region.len(), Config::new()) }.unwrap();
    let before = ACQUIRED.load(Ordering::Relaxed);
    let mut o = Orig::new(100, 0, 1);
    // SAFETY: `o` is alive and untouched until the unmap.
    let dma = unsafe { pool.map(o.ptr(), Direction::ToDevice, &Constraints::NONE) }.unwrap();
    // SAFETY: as above.
    unsafe { pool.unmap_into(dma, o.ptr(), Direction::ToDevice, Attrs::NONE) }.unwrap();
    // One acquisition to reserve, one to release.
    assert_eq!(ACQUIRED.load(Ordering::Relaxed) - before, 2);
    drop(pool);
    drop(region);
}
