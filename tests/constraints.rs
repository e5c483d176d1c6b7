//! Every constraint, on device addresses, with the free slots moved around between checks.

mod common;

use common::{device_read, pool, with_fillers, Orig};
use core::ptr::NonNull;
use swiotlb::{Config, Constraints, Direction, MapError, Pool};

/// Slots a mapping of `len` bytes at `dma` keeps, padding included, given its kept offset.
fn run(dma: u64, len: usize, offset: u64) -> (u64, u64) {
    let first = dma - offset;
    let last = (dma + len as u64 - 1) | 2047;
    (first, last)
}

#[test]
fn min_align_mask_keeps_the_original_bits() {
    let pool = pool(1024);
    with_fillers(&pool, 20, |pool, round| {
        for mask in [0x3f, 0x1ff, 0x7ff, 0xfff, 0x3fff] {
            for low in [
                0,
                1,
                0x40,
                0x7ff,
                0x800,
                0xabc,
                0xfff,
                0x1234 + round,
                0x3fff,
            ] {
                let c = Constraints::new().min_align_mask(mask);
                let len = 100 + round * 50;
                let mut o = Orig::new(len, low, round as u8);
                let dma = o.map(pool, Direction::ToDevice, &c);
                assert_eq!(dma & mask, o.addr() & mask, "mask {mask:#x} low {low:#x}");
                assert_eq!(device_read(pool, dma, len), o.bytes());
                o.unmap(pool, dma, Direction::ToDevice);
            }
        }
    });
}

#[test]
fn alloc_align_mask_aligns_the_first_allocated_slot() {
    let pool = pool(2048);
    with_fillers(&pool, 20, |pool, round| {
        for align in [0x7ff, 0xfff, 0x3fff, 0xffff] {
            for min in [0, 0xfff] {
                let c = Constraints::new()
                    .alloc_align_mask(align)
                    .min_align_mask(min);
                let mut o = Orig::new(3000, 0x5a0 + round, round as u8);
                let dma = o.map(pool, Direction::ToDevice, &c);
                let offset = o.addr() & min & (align | 0x7ff);
                assert_eq!(
                    (dma - offset) & align,
                    0,
                    "align {align:#x} min {min:#x}: {dma:#x}"
                );
                o.unmap(pool, dma, Direction::ToDevice);
            }
        }
    });
}

#[test]
fn mappings_under_a_page_are_not_page_aligned_by_default() {
    // The page rule applies to a page or more only: smaller mappings pack into odd slots.
    let pool = pool(64);
    let mut live = Vec::new();
    for i in 0..8 {
        let mut o = Orig::new(2048, 0, i);
        let dma = o.map(&pool, Direction::ToDevice, &Constraints::NONE);
        live.push((o, dma));
    }
    assert!(live.iter().any(|(_, dma)| dma % 4096 == 2048));
    for (mut o, dma) in live {
        o.unmap(&pool, dma, Direction::ToDevice);
    }
}

#[test]
fn seg_boundary_mask_is_never_crossed() {
    let pool = pool(1024);
    with_fillers(&pool, 30, |pool, round| {
        for mask in [0x1fff, 0x3fff, 0xffff] {
            let c = Constraints::new().seg_boundary_mask(mask);
            let len = 1000 + round * 211;
            let mut o = Orig::new(len, round, round as u8);
            let dma = o.map(pool, Direction::ToDevice, &c);
            let (first, last) = run(dma, len, 0);
            assert_eq!(
                first & !mask,
                last & !mask,
                "mask {mask:#x}: {first:#x}..{last:#x}"
            );
            o.unmap(pool, dma, Direction::ToDevice);
        }
    });
    // A mapping larger than the boundary window can never be placed.
    let mut o = Orig::new(8193, 0, 0);
    let r = o.try_map(
        &pool,
        Direction::ToDevice,
        &Constraints::new().seg_boundary_mask(0x1fff),
    );
    assert!(
        matches!(
            r,
            Err(MapError::Impossible {
                boundary: 0x2000,
                ..
            })
        ),
        "{r:?}"
    );
    // A boundary smaller than a slot leaves no placement either.
    let mut o = Orig::new(10, 0, 0);
    let r = o.try_map(
        &pool,
        Direction::ToDevice,
        &Constraints::new().seg_boundary_mask(0x3ff),
    );
    assert!(matches!(r, Err(MapError::Impossible { .. })), "{r:?}");
}

#[test]
fn no_mapping_crosses_a_segment() {
    let pool =
        Pool::allocate(64 * 2048, Config::new().with_areas(1).with_segment_slots(8)).unwrap();
    assert_eq!(pool.max_mapping_size(&Constraints::NONE), 16384);
    with_fillers(&pool, 20, |pool, round| {
        let len = 5000 + round * 400;
        let mut o = Orig::new(len, 0, round as u8);
        match o.try_map(pool, Direction::ToDevice, &Constraints::NONE) {
            Ok(dma) => {
                let (first, last) = run(dma, len, 0);
                assert_eq!(first / 16384, last / 16384, "{first:#x}..{last:#x}");
                o.unmap(pool, dma, Direction::ToDevice);
            }
            Err(MapError::Full { .. }) => {}
            Err(e) => panic!("{e}"),
        }
    });
}

#[test]
fn dma_limit_inside_the_pool_leaves_the_reachable_part_usable() {
    let pool = pool(64);
    let start = pool.dma_range().start;
    let limit = start + 16 * 2048 - 1; // the first 16 slots are reachable
    let c = Constraints::new().dma_limit(limit);
    let mut live = Vec::new();
    loop {
        let mut o = Orig::new(1000, 0, live.len() as u8);
        match o.try_map(&pool, Direction::ToDevice, &c) {
            Ok(dma) => {
                assert!(dma + 999 <= limit, "{dma:#x} above {limit:#x}");
                live.push((o, dma));
            }
            Err(MapError::Full { used_slots, .. }) => {
                assert_eq!(used_slots, 16);
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(live.len(), 16);
    // The device without a limit still finds the rest of the pool.
    let mut o = Orig::new(1000, 0, 0);
    let dma = o.map(&pool, Direction::ToDevice, &Constraints::NONE);
    o.unmap(&pool, dma, Direction::ToDevice);
    // The limit counts the last byte: a 2-slot mapping needs its end reachable.
    for (mut o, dma) in live.drain(..).skip(14) {
        o.unmap(&pool, dma, Direction::ToDevice);
    }
    let mut two = Orig::new(4096, 0, 0);
    let dma = two.map(&pool, Direction::ToDevice, &c);
    assert_eq!(dma + 4095, limit);
    two.unmap(&pool, dma, Direction::ToDevice);
}

#[test]
fn dma_limit_below_the_pool_is_unreachable() {
    let pool = pool(16);
    let start = pool.dma_range().start;
    for limit in [0, start - 1, start + 100] {
        let mut o = Orig::new(1000, 0, 0);
        let r = o.try_map(
            &pool,
            Direction::ToDevice,
            &Constraints::new().dma_limit(limit),
        );
        if limit >= start + 999 {
            r.unwrap();
            continue;
        }
        assert!(
            matches!(r, Err(MapError::Unreachable { limit: l, .. }) if l == limit),
            "limit {limit:#x}: {r:?}"
        );
        let r = pool.alloc(1000, &Constraints::new().dma_limit(limit));
        assert!(matches!(r, Err(MapError::Unreachable { .. })), "{r:?}");
    }
    assert_eq!(
        pool.stats().failed_maps,
        0,
        "unreachable is not a full pool"
    );
}

#[test]
fn alignment_holds_in_device_space_when_the_region_is_not_aligned() {
    // A region whose device address is 0x800 past a page and whose CPU address is page
    // aligned: page-aligned results must be page-aligned for the device.
    for dma_base in [0x4000_0800u64, 0x4000_0010, 0x4000_0fff, 0x4003_3000] {
        let layout = std::alloc::Layout::from_size_align(64 * 2048, 4096).unwrap();
        // SAFETY: non-zero size.
        let mem = NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) }).unwrap();
        // SAFETY: the region is ours for the pool's life (freed after it is dropped).
        let pool =
            unsafe { Pool::new(mem, dma_base, 64 * 2048, Config::new().with_areas(1)) }.unwrap();
        let first = pool.dma_range().start;
        assert_eq!(first % 2048, 0);
        assert!(first >= dma_base && first - dma_base < 2048);
        let expected_slots = (64 * 2048 - (first - dma_base) as usize) / 2048;
        assert_eq!(pool.stats().total_slots, expected_slots);
        with_fillers(&pool, 10, |pool, round| {
            let mut o = Orig::new(4096, 0x123, round as u8);
            let dma = o.map(pool, Direction::ToDevice, &Constraints::NONE);
            assert_eq!(dma % 4096, 0, "base {dma_base:#x}: {dma:#x}");
            assert_eq!(device_read(pool, dma, 4096), o.bytes());
            o.unmap(pool, dma, Direction::ToDevice);
            let c = pool.alloc(12288, &Constraints::NONE).unwrap();
            assert_eq!(c.dma() % 16384, 0);
            pool.free(c).unwrap();
        });
        drop(pool);
        // SAFETY: allocated above with this layout; the pool is gone.
        unsafe { std::alloc::dealloc(mem.as_ptr(), layout) };
    }
}

#[test]
fn max_mapping_size_follows_linux() {
    let pool = pool(256);
    assert_eq!(pool.max_mapping_size(&Constraints::NONE), 262144);
    assert_eq!(
        pool.max_mapping_size(&Constraints::new().min_align_mask(0xfff)),
        258048
    );
    assert_eq!(
        pool.max_mapping_size(&Constraints::new().min_align_mask(0x7ff)),
        260096
    );
    assert_eq!(
        pool.max_mapping_size(&Constraints::new().min_align_mask(0x3f)),
        260096
    );
    let small = Pool::allocate(
        1 << 20,
        Config::new().with_slot_size(4096).with_segment_slots(16),
    )
    .unwrap();
    assert_eq!(small.max_mapping_size(&Constraints::NONE), 65536);
    assert_eq!(
        small.max_mapping_size(&Constraints::new().min_align_mask(0xfff)),
        61440
    );
    // Exactly the maximum maps, whatever the kept offset; one more byte does not.
    for (c, low) in [
        (Constraints::NONE, 0),
        (Constraints::new().min_align_mask(0xfff), 0xfff),
    ] {
        let max = pool.max_mapping_size(&c);
        let mut o = Orig::new(max, low, 1);
        let dma = o.map(&pool, Direction::Bidirectional, &c);
        assert_eq!(device_read(&pool, dma, max), o.bytes());
        o.unmap(&pool, dma, Direction::Bidirectional);
        let mut o = Orig::new(max + 1, low, 1);
        let r = o.try_map(&pool, Direction::Bidirectional, &c);
        assert_eq!(r, Err(MapError::TooLarge { size: max + 1, max }));
    }
}
