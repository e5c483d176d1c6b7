//! Coherent allocations, statistics, areas and their fallback, and the pool's geometry.

mod common;

use common::{device_read, device_write, pool, with_fillers, Orig};
use std::sync::{Arc, Barrier};
use swiotlb::{Config, Constraints, Direction, MapError, Mapping, MappingKind, Pool};

#[test]
fn coherent_memory_is_zeroed_even_over_an_earlier_users_bytes() {
    let pool = pool(64);
    for size in [1, 100, 2048, 4096, 5000, 65536] {
        let c = pool.alloc(size, &Constraints::NONE).unwrap();
        let slots = size.div_ceil(2048);
        assert_eq!(
            device_read(&pool, c.dma(), slots * 2048),
            vec![0; slots * 2048]
        );
        // Dirty it (and the rest of its last slot) for the next round.
        device_write(&pool, c.dma(), &vec![0xab; slots * 2048]);
        pool.free(c).unwrap();
    }
    let mut o = Orig::new(20000, 0, 1);
    let dma = o.map(&pool, Direction::ToDevice, &Constraints::NONE);
    o.unmap(&pool, dma, Direction::ToDevice);
    let c = pool.alloc(20000, &Constraints::NONE).unwrap();
    assert_eq!(device_read(&pool, c.dma(), 20480), vec![0; 20480]);
    pool.free(c).unwrap();
}

#[test]
fn coherent_allocations_are_aligned_to_their_page_order() {
    let pool = pool(1024);
    with_fillers(&pool, 20, |pool, round| {
        for (size, align) in [
            (1, 4096),
            (4096, 4096),
            (4097, 8192),
            (8192, 8192),
            (12288, 16384),
            (40000, 65536),
            (200_000, 262144),
        ] {
            let c = pool.alloc(size, &Constraints::NONE).unwrap();
            assert_eq!(
                c.dma() % align,
                0,
                "round {round}: {size} at {:#x}",
                c.dma()
            );
            // With an allocated pool the CPU address is the device address.
            assert_eq!(c.cpu().as_ptr().addr() as u64, c.dma());
            assert_eq!(c.size(), size);
            pool.free(c).unwrap();
        }
    });
}

#[test]
fn coherent_allocations_never_share_a_slot() {
    let pool = pool(256);
    let mut live = Vec::new();
    for i in 0..40 {
        let size = 1 + i * 300;
        let c = pool.alloc(size, &Constraints::NONE).unwrap();
        device_write(&pool, c.dma(), &vec![i as u8; size]);
        live.push(c);
    }
    let mut runs: Vec<(u64, u64)> = live
        .iter()
        .map(|c| (c.dma(), c.dma() + c.size().div_ceil(2048) as u64 * 2048))
        .collect();
    runs.sort();
    for w in runs.windows(2) {
        assert!(w[0].1 <= w[1].0, "{w:x?}");
    }
    for (i, c) in live.into_iter().enumerate() {
        assert_eq!(
            device_read(&pool, c.dma(), c.size()),
            vec![i as u8; c.size()]
        );
        pool.free(c).unwrap();
    }
    assert_eq!(pool.stats().used_slots, 0);
}

/// Regression (found by `swiotlb-virtio`'s two-block-devices test): placed first fit, a
/// long-lived coherent allocation (a virtqueue ring) lands right after whatever streaming
/// mapping is live and splits the area's free space for good once that mapping goes. Placed
/// from the top of the area down, it leaves the bottom in one piece.
#[test]
fn coherent_allocation_taken_while_a_mapping_is_live_does_not_split_the_free_space() {
    // One area of two 128-slot segments.
    let pool = pool(256);
    let dma_base = pool.dma_range().start;
    let mut big = Orig::new(100 * 2048, 0, 7);
    let big_dma = big.map(&pool, Direction::ToDevice, &Constraints::NONE);
    let ring = pool.alloc(8192, &Constraints::NONE).unwrap();
    assert_eq!(
        ring.dma() + 8192,
        pool.dma_range().end,
        "the ring sits at the top of the area (the mapping is at {:#x})",
        big_dma - dma_base
    );
    big.unmap(&pool, big_dma, Direction::ToDevice);
    // Both segments are whole but for the ring's 4 slots: a segment-long mapping fits in
    // the first, and one of 124 slots in the second.
    let mut whole = Orig::new(128 * 2048, 0, 8);
    let whole_dma = whole.map(&pool, Direction::ToDevice, &Constraints::NONE);
    let mut rest = Orig::new(124 * 2048, 0, 9);
    let rest_dma = rest.map(&pool, Direction::ToDevice, &Constraints::NONE);
    assert_eq!(pool.stats().used_slots, 256);
    rest.unmap(&pool, rest_dma, Direction::ToDevice);
    whole.unmap(&pool, whole_dma, Direction::ToDevice);
    pool.free(ring).unwrap();
    assert_eq!(pool.stats().used_slots, 0);
}

#[test]
fn coherent_allocations_obey_limit_boundary_and_larger_alignment() {
    let pool = pool(1024);
    let start = pool.dma_range().start;
    let c = Constraints::new()
        .dma_limit(start + (1 << 20) - 1)
        .seg_boundary_mask(0x7fff)
        .alloc_align_mask(0x7fff)
        .min_align_mask(0xfff);
    for _ in 0..5 {
        let a = pool.alloc(3000, &c).unwrap();
        assert_eq!(a.dma() % 0x8000, 0);
        assert!(a.dma() + 2999 < start + (1 << 20));
    }
    assert!(matches!(
        pool.alloc(262145, &Constraints::NONE),
        Err(MapError::TooLarge { .. })
    ));
    assert!(matches!(
        pool.alloc(0, &Constraints::NONE),
        Err(MapError::ZeroLength)
    ));
}

#[test]
fn statistics_count_slots_padding_high_water_and_failures() {
    let pool = pool(16);
    let s = pool.stats();
    assert_eq!(
        (
            s.total_slots,
            s.used_slots,
            s.high_water,
            s.failed_maps,
            s.areas
        ),
        (16, 0, 0, 0, 1)
    );
    let mut a = Orig::new(3000, 0, 0);
    let da = a.map(&pool, Direction::ToDevice, &Constraints::NONE);
    // Kept offset 0xe00 with a page-aligned allocation: one padding slot, then the data
    // 0x600 into the head slot and on into the next.
    let c = Constraints::new()
        .min_align_mask(0xfff)
        .alloc_align_mask(0xfff);
    let mut b = Orig::new(1600, 0xe00, 0);
    let db = b.map(&pool, Direction::ToDevice, &c);
    assert_eq!(pool.stats().used_slots, 2 + 3);
    a.unmap(&pool, da, Direction::ToDevice);
    assert_eq!(pool.stats().used_slots, 3);
    assert_eq!(pool.stats().high_water, 5);
    // 15 slots: more than are free, fewer than the pool has.
    let mut big = Orig::new(30000, 0, 0);
    assert!(matches!(
        big.try_map(&pool, Direction::ToDevice, &Constraints::NONE),
        Err(MapError::Full { .. })
    ));
    assert_eq!(pool.stats().failed_maps, 1);
    assert_eq!(pool.area_stats(0).unwrap().failed_searches, 1);
    b.unmap(&pool, db, Direction::ToDevice);
    let s = pool.stats();
    assert_eq!((s.used_slots, s.high_water, s.failed_maps), (0, 5, 1));
    let a0 = pool.area_stats(0).unwrap();
    assert_eq!((a0.total_slots, a0.used_slots, a0.high_water), (16, 0, 5));
    assert!(pool.area_stats(1).is_none());

    // A reset starts the pool's and the area's marks from the use now.
    let dc = a.map(&pool, Direction::ToDevice, &Constraints::NONE);
    assert_eq!(pool.reset_high_water(), 5);
    assert_eq!(pool.stats().high_water, 2);
    assert_eq!(pool.area_stats(0).unwrap().high_water, 2);
    a.unmap(&pool, dc, Direction::ToDevice);
    assert_eq!(pool.stats().high_water, 2);
}

#[test]
fn areas_split_on_segments_and_default_to_the_cpu_count() {
    let one_segment = Pool::allocate(128 * 2048, Config::new().with_areas(8)).unwrap();
    assert_eq!(one_segment.areas(), 1);
    let three = Pool::allocate(3 * 128 * 2048, Config::new().with_areas(8)).unwrap();
    assert_eq!(
        three.areas(),
        2,
        "a power of two no larger than the segment count"
    );
    let big = Pool::allocate(64 << 20, Config::new().with_areas(8)).unwrap();
    assert_eq!(big.areas(), 8);
    let total: usize = (0..8).map(|a| big.area_stats(a).unwrap().total_slots).sum();
    assert_eq!(total, 32768);
    let default = Pool::allocate(64 << 20, Config::new()).unwrap();
    let cpus = std::thread::available_parallelism().unwrap().get();
    assert_eq!(default.areas(), cpus.next_power_of_two().min(64));
}

fn area0() -> usize {
    0
}

#[test]
fn a_full_area_falls_back_to_the_next() {
    // Two areas of 128 slots; every caller starts in area 0.
    let pool = Pool::allocate(
        256 * 2048,
        Config::new().with_areas(2).with_area_hint(area0),
    )
    .unwrap();
    let mut live = Vec::new();
    for i in 0..256 {
        let mut o = Orig::new(2048, 0, i as u8);
        let dma = o.map(&pool, Direction::ToDevice, &Constraints::NONE);
        live.push((o, dma));
    }
    let (a0, a1) = (pool.area_stats(0).unwrap(), pool.area_stats(1).unwrap());
    assert_eq!((a0.used_slots, a1.used_slots), (128, 128));
    // Each of the 128 maps that went to area 1 first failed in area 0.
    assert_eq!(a0.failed_searches, 128);
    assert_eq!(a1.failed_searches, 0);
    let mut o = Orig::new(1, 0, 0);
    assert!(matches!(
        o.try_map(&pool, Direction::ToDevice, &Constraints::NONE),
        Err(MapError::Full { .. })
    ));
    for (mut o, dma) in live {
        o.unmap(&pool, dma, Direction::ToDevice);
    }
    assert_eq!(pool.stats().used_slots, 0);
}

#[test]
fn threads_each_find_their_own_area_and_share_nothing() {
    let pool = Arc::new(Pool::allocate(1024 * 2048, Config::new().with_areas(4)).unwrap());
    let barrier = Arc::new(Barrier::new(4));
    let threads: Vec<_> = (0..4u8)
        .map(|t| {
            let (pool, barrier) = (pool.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                for i in 0..2000usize {
                    let len = 1 + (i * 977 + t as usize * 31) % 9000;
                    let mut o = Orig::new(len, i, t);
                    let dma = o.map(&pool, Direction::Bidirectional, &Constraints::NONE);
                    assert_eq!(device_read(&pool, dma, len), o.bytes());
                    device_write(&pool, dma, &vec![t ^ i as u8; len]);
                    o.unmap(&pool, dma, Direction::Bidirectional);
                    assert!(o.bytes().iter().all(|b| *b == t ^ i as u8));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let s = pool.stats();
    assert_eq!(s.used_slots, 0);
    assert!(s.high_water >= 1 && s.high_water <= 4 * 5);
}

#[test]
fn contains_and_translate_cover_exactly_the_pool() {
    let pool = pool(4);
    let r = pool.dma_range();
    assert!(pool.contains(r.start) && pool.contains(r.end - 1));
    assert!(!pool.contains(r.start - 1) && !pool.contains(r.end));
    assert!(pool.translate(r.start, 4 * 2048).is_some());
    assert!(pool.translate(r.start, 4 * 2048 + 1).is_none());
    assert!(pool.translate(r.end, 0).is_some());
    assert!(pool.translate(r.start - 1, 1).is_none());
    assert!(pool.translate(u64::MAX, 2).is_none());
}

#[test]
fn scrub_on_release_zeroes_freed_slots() {
    let pool = Pool::allocate(
        16 * 2048,
        Config::new().with_areas(1).with_scrub_on_release(true),
    )
    .unwrap();
    // Kept offset 0xe00 with a page-aligned allocation: one padding slot, then 0x600 into
    // the head slot and on through two more.
    let c = Constraints::new()
        .min_align_mask(0xfff)
        .alloc_align_mask(0xfff);
    let mut o = Orig::new(3000, 0xe00, 1);
    let dma = o.map(&pool, Direction::Bidirectional, &c);
    let run_start = dma - 0xe00;
    assert_eq!(pool.stats().used_slots, 4);
    device_write(&pool, run_start, &[0x55; 4 * 2048]);
    o.unmap(&pool, dma, Direction::Bidirectional);
    let left = device_read(&pool, run_start, 4 * 2048)
        .iter()
        .filter(|b| **b != 0)
        .count();
    assert_eq!(left, 0, "bytes not scrubbed");
}

#[test]
fn lookup_finds_live_mappings_and_changes_nothing() {
    let pool = pool(16);
    assert_eq!(pool.page_size(), 4096);
    let mut o = Orig::new(3000, 0x10, 1);
    let dma = o.map(&pool, Direction::FromDevice, &Constraints::NONE);
    let expected = Some(Mapping {
        dma,
        len: 3000,
        kind: MappingKind::Streaming {
            dir: Direction::FromDevice,
            orig: o.as_ptr(),
        },
    });
    for at in [dma, dma + 1, dma + 2999] {
        assert_eq!(pool.lookup(at), expected);
    }
    assert_eq!(pool.lookup(dma + 3000), None);
    assert_eq!(pool.lookup(dma - 1), None);
    let c = pool.alloc(100, &Constraints::NONE).unwrap();
    assert_eq!(
        pool.lookup(c.dma() + 99),
        Some(Mapping {
            dma: c.dma(),
            len: 100,
            kind: MappingKind::Coherent
        })
    );
    assert_eq!(pool.stats().used_slots, 3);
    o.unmap(&pool, dma, Direction::FromDevice);
    let c_dma = c.dma();
    pool.free(c).unwrap();
    assert_eq!(pool.lookup(dma), None);
    assert_eq!(pool.lookup(c_dma), None);
}
