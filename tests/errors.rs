//! Every bad input gets its own error and changes nothing: statistics, every pool byte and
//! every live mapping stay as they were.

mod common;

use common::{device_write, pool, snapshot, Orig};
use core::ptr::NonNull;
use swiotlb::{Attrs, Config, ConfigError, Constraints, Direction, LookupError, MapError, Pool};

/// A pool with some live mappings and a coherent allocation, the device having written to
/// all of them.
struct Scene {
    pool: Pool,
    bufs: Vec<(Orig, u64, Direction)>,
    co: swiotlb::Coherent,
}

fn scene() -> Scene {
    let pool = pool(64);
    let nvme = Constraints::new().min_align_mask(0xfff);
    let mut bufs = Vec::new();
    for (i, (len, dir)) in [
        (100, Direction::ToDevice),
        (5000, Direction::FromDevice),
        (3000, Direction::Bidirectional),
    ]
    .into_iter()
    .enumerate()
    {
        let mut o = Orig::new(len, 0xe00, i as u8);
        let dma = o.map(&pool, dir, &nvme);
        device_write(&pool, dma, &vec![0x30 + i as u8; len]);
        bufs.push((o, dma, dir));
    }
    let co = pool.alloc(6000, &Constraints::NONE).unwrap();
    device_write(&pool, co.dma(), &[0x99; 6000]);
    Scene { pool, bufs, co }
}

impl Scene {
    /// Checks that a refused call left everything alone, then releases everything cleanly.
    fn refused(mut self, before: common::Snapshot, originals: Vec<Vec<u8>>) {
        assert_eq!(
            snapshot(&self.pool),
            before,
            "a refused call changed the pool"
        );
        for ((o, _, _), orig) in self.bufs.iter().zip(&originals) {
            assert_eq!(o.bytes(), &orig[..], "a refused call touched an original");
        }
        for (mut o, dma, dir) in self.bufs.drain(..) {
            o.unmap(&self.pool, dma, dir);
        }
        self.pool.free(self.co).unwrap();
        assert_eq!(self.pool.stats().used_slots, 0);
    }

    fn originals(&self) -> Vec<Vec<u8>> {
        self.bufs
            .iter()
            .map(|(o, _, _)| o.bytes().to_vec())
            .collect()
    }
}

/// Runs `bad` against a fresh scene and checks it returns `expected` and changes nothing.
fn lookup_refused(
    bad: impl FnOnce(&Scene) -> Result<(), LookupError>,
    expected: impl FnOnce(&Scene) -> LookupError,
) {
    let s = scene();
    let before = snapshot(&s.pool);
    let originals = s.originals();
    let want = expected(&s);
    assert_eq!(bad(&s), Err(want));
    // The message carries the figures.
    assert!(!want.to_string().is_empty());
    s.refused(before, originals);
}

fn unmap(s: &Scene, dma: u64, len: usize, dir: Direction) -> Result<(), LookupError> {
    // SAFETY: every original of the scene is alive; refused calls touch nothing.
    unsafe { s.pool.unmap(dma, len, dir, Attrs::NONE) }
}

fn sync_cpu(s: &Scene, dma: u64, len: usize, dir: Direction) -> Result<(), LookupError> {
    // SAFETY: as in `unmap`.
    unsafe { s.pool.sync_for_cpu(dma, len, dir) }
}

fn sync_dev(s: &Scene, dma: u64, len: usize, dir: Direction) -> Result<(), LookupError> {
    // SAFETY: as in `unmap`.
    unsafe { s.pool.sync_for_device(dma, len, dir) }
}

#[test]
fn unmap_of_an_address_outside_the_pool_is_not_mapped() {
    for dma in [0, u64::MAX, 0x1000] {
        lookup_refused(
            |s| unmap(s, dma, 100, Direction::ToDevice),
            |_| LookupError::NotMapped { dma },
        );
    }
    lookup_refused(
        |s| unmap(s, s.pool.dma_range().end, 100, Direction::ToDevice),
        |s| LookupError::NotMapped {
            dma: s.pool.dma_range().end,
        },
    );
}

#[test]
fn unmap_of_a_free_slot_is_not_mapped() {
    lookup_refused(
        |s| unmap(s, s.pool.dma_range().end - 2048, 100, Direction::ToDevice),
        |s| LookupError::NotMapped {
            dma: s.pool.dma_range().end - 2048,
        },
    );
}

#[test]
fn unmap_of_front_padding_or_slack_is_not_mapped() {
    // The first mapping keeps offset 0xe00: its data starts 0x600 into its slot (bit 11 is
    // kept by choosing an odd slot); the bytes before and after the data are not mapped.
    lookup_refused(
        |s| unmap(s, s.bufs[0].1 - 0x800, 100, Direction::ToDevice),
        |s| LookupError::NotMapped {
            dma: s.bufs[0].1 - 0x800,
        },
    );
    lookup_refused(
        |s| unmap(s, s.bufs[0].1 - 1, 100, Direction::ToDevice),
        |s| LookupError::NotMapped {
            dma: s.bufs[0].1 - 1,
        },
    );
    lookup_refused(
        |s| unmap(s, s.bufs[0].1 + 100, 100, Direction::ToDevice),
        |s| LookupError::NotMapped {
            dma: s.bufs[0].1 + 100,
        },
    );
}

#[test]
fn double_unmap_is_not_mapped() {
    let s = scene();
    let mut extra = Orig::new(700, 0, 5);
    let dma = extra.map(&s.pool, Direction::FromDevice, &Constraints::NONE);
    extra.unmap(&s.pool, dma, Direction::FromDevice);
    let after_first = extra.bytes().to_vec();
    let before = snapshot(&s.pool);
    let originals = s.originals();
    assert_eq!(
        unmap(&s, dma, 700, Direction::FromDevice),
        Err(LookupError::NotMapped { dma })
    );
    assert_eq!(extra.bytes(), &after_first[..]);
    s.refused(before, originals);
}

#[test]
fn unmap_inside_a_mapping_is_not_its_start() {
    lookup_refused(
        |s| unmap(s, s.bufs[1].1 + 2500, 5000, Direction::FromDevice),
        |s| LookupError::NotStart {
            dma: s.bufs[1].1 + 2500,
            start: s.bufs[1].1,
        },
    );
}

#[test]
fn unmap_with_the_wrong_length_is_a_mismatch() {
    for given in [4999, 5001, 1] {
        lookup_refused(
            |s| unmap(s, s.bufs[1].1, given, Direction::FromDevice),
            |s| LookupError::LengthMismatch {
                dma: s.bufs[1].1,
                mapped: 5000,
                given,
            },
        );
    }
}

#[test]
fn unmap_with_the_wrong_direction_is_a_mismatch() {
    lookup_refused(
        |s| unmap(s, s.bufs[1].1, 5000, Direction::Bidirectional),
        |s| LookupError::DirectionMismatch {
            dma: s.bufs[1].1,
            mapped: Direction::FromDevice,
            given: Direction::Bidirectional,
        },
    );
}

#[test]
fn unmap_of_a_coherent_allocation_is_the_wrong_kind() {
    lookup_refused(
        |s| unmap(s, s.co.dma(), 6000, Direction::ToDevice),
        |s| LookupError::WrongKind {
            dma: s.co.dma(),
            expected: "streaming mapping",
            actual: "coherent allocation",
        },
    );
}

#[test]
fn sync_past_the_end_of_a_mapping_copies_nothing() {
    for (off, len) in [(0, 5001), (4999, 2), (2500, 2501), (100, usize::MAX)] {
        lookup_refused(
            |s| sync_cpu(s, s.bufs[1].1 + off, len, Direction::FromDevice),
            |s| LookupError::OutOfRange {
                dma: s.bufs[1].1 + off,
                len,
                start: s.bufs[1].1,
                mapped: 5000,
            },
        );
    }
    for (off, len) in [(0, 3001), (2999, 2), (1500, 1501)] {
        lookup_refused(
            |s| sync_dev(s, s.bufs[2].1 + off, len, Direction::Bidirectional),
            |s| LookupError::OutOfRange {
                dma: s.bufs[2].1 + off,
                len,
                start: s.bufs[2].1,
                mapped: 3000,
            },
        );
    }
}

#[test]
fn sync_of_zero_bytes_is_refused() {
    lookup_refused(
        |s| sync_cpu(s, s.bufs[1].1, 0, Direction::FromDevice),
        |s| LookupError::ZeroLength { dma: s.bufs[1].1 },
    );
}

#[test]
fn sync_in_a_contradicting_direction_is_a_mismatch() {
    lookup_refused(
        |s| sync_cpu(s, s.bufs[1].1, 10, Direction::ToDevice),
        |s| LookupError::DirectionMismatch {
            dma: s.bufs[1].1,
            mapped: Direction::FromDevice,
            given: Direction::ToDevice,
        },
    );
    lookup_refused(
        |s| sync_dev(s, s.bufs[0].1, 10, Direction::Bidirectional),
        |s| LookupError::DirectionMismatch {
            dma: s.bufs[0].1,
            mapped: Direction::ToDevice,
            given: Direction::Bidirectional,
        },
    );
}

#[test]
fn sync_of_unmapped_or_coherent_memory_is_refused() {
    lookup_refused(
        |s| sync_cpu(s, s.pool.dma_range().end - 1, 1, Direction::FromDevice),
        |s| LookupError::NotMapped {
            dma: s.pool.dma_range().end - 1,
        },
    );
    lookup_refused(
        |s| sync_dev(s, s.co.dma() + 10, 10, Direction::ToDevice),
        |s| LookupError::WrongKind {
            dma: s.co.dma() + 10,
            expected: "streaming mapping",
            actual: "coherent allocation",
        },
    );
}

/// `free_raw`, as a caller that took its handle apart would call it: every name that is
/// not a live allocation of its own size is refused.
fn free_raw(s: &Scene, dma: u64, size: usize) -> Result<(), LookupError> {
    // SAFETY: the scene's allocation is not named with its own start and size below, so no
    // call frees an allocation that someone else owns.
    unsafe { s.pool.free_raw(dma, size) }
}

#[test]
fn free_errors() {
    lookup_refused(
        |s| free_raw(s, s.bufs[0].1, 100),
        |s| LookupError::WrongKind {
            dma: s.bufs[0].1,
            expected: "coherent allocation",
            actual: "streaming mapping",
        },
    );
    lookup_refused(
        |s| free_raw(s, s.co.dma(), 4096),
        |s| LookupError::LengthMismatch {
            dma: s.co.dma(),
            mapped: 6000,
            given: 4096,
        },
    );
    lookup_refused(
        |s| free_raw(s, s.co.dma() + 2048, 6000),
        |s| LookupError::NotStart {
            dma: s.co.dma() + 2048,
            start: s.co.dma(),
        },
    );
    // Double free through the raw parts (a handle cannot be freed twice: it is consumed).
    let s = scene();
    let (dma, _, size) = s.pool.alloc(100, &Constraints::NONE).unwrap().into_raw();
    // SAFETY: the allocation is ours, taken apart just above.
    unsafe { s.pool.free_raw(dma, size) }.unwrap();
    let before = snapshot(&s.pool);
    let originals = s.originals();
    assert_eq!(free_raw(&s, dma, 100), Err(LookupError::NotMapped { dma }));
    s.refused(before, originals);
}

/// The fix of a finding: `Pool::free(dma, size)` was safe, so after alloc A, free A, alloc B
/// in the same slots, a stale `free(A)` freed B, and the next alloc handed B's memory to a
/// second owner while B was live (two threads then wrote the same bytes, a data race from
/// safe code). Allocations are now owned by a non-`Copy` handle that `free` consumes (the
/// stale call does not compile: see the `compile_fail` example on `Pool::free`), and the
/// handle is tied to its pool.
#[test]
fn a_handle_frees_only_its_own_allocation_in_its_own_pool() {
    let s = scene();
    let other = pool(8);
    let a = s.pool.alloc(4096, &Constraints::NONE).unwrap();
    let a_dma = a.dma();
    s.pool.free(a).unwrap();
    let b = s.pool.alloc(4096, &Constraints::NONE).unwrap();
    assert_eq!(
        b.dma(),
        a_dma,
        "B reuses A's slots, the case of the finding"
    );
    // B given to the wrong pool comes back untouched, and the pools are unchanged.
    let before = (snapshot(&s.pool), snapshot(&other));
    let b = match other.free(b) {
        Err(swiotlb::ForeignAllocation(b)) => b,
        Ok(()) => panic!("another pool freed B"),
    };
    assert_eq!((snapshot(&s.pool), snapshot(&other)), before);
    // B is still B's: a new allocation does not get its slots.
    let c = s.pool.alloc(4096, &Constraints::NONE).unwrap();
    assert_ne!(c.dma(), b.dma());
    s.pool.free(c).unwrap();
    s.pool.free(b).unwrap();
    let (before, originals) = (snapshot(&s.pool), s.originals());
    s.refused(before, originals);
}

/// Runs a refused map against a fresh scene and checks nothing changed except, for `Full`,
/// the failure counters.
fn map_refused(len: usize, low: usize, c: Constraints, expected: impl FnOnce(&Scene) -> MapError) {
    let s = scene();
    let before = snapshot(&s.pool);
    let originals = s.originals();
    let want = expected(&s);
    let mut o = Orig::new(len, low, 1);
    let untouched = o.bytes().to_vec();
    assert_eq!(o.try_map(&s.pool, Direction::Bidirectional, &c), Err(want));
    assert!(s.pool.alloc(len, &c).is_err());
    assert_eq!(o.bytes(), &untouched[..]);
    assert!(!want.to_string().is_empty());
    s.refused(before, originals);
}

#[test]
fn map_of_zero_bytes_is_refused() {
    map_refused(0, 0, Constraints::NONE, |_| MapError::ZeroLength);
}

#[test]
fn map_over_the_maximum_is_too_large() {
    map_refused(262145, 0, Constraints::NONE, |_| MapError::TooLarge {
        size: 262145,
        max: 262144,
    });
    map_refused(258049, 0, Constraints::new().min_align_mask(0xfff), |_| {
        MapError::TooLarge {
            size: 258049,
            max: 258048,
        }
    });
}

#[test]
fn masks_not_of_the_form_two_to_the_k_minus_one_are_refused() {
    map_refused(100, 0, Constraints::new().min_align_mask(0xf0f), |_| {
        MapError::InvalidMask {
            name: "min_align_mask",
            mask: 0xf0f,
        }
    });
    map_refused(100, 0, Constraints::new().alloc_align_mask(0x1000), |_| {
        MapError::InvalidMask {
            name: "alloc_align_mask",
            mask: 0x1000,
        }
    });
    map_refused(100, 0, Constraints::new().seg_boundary_mask(0xfffe), |_| {
        MapError::InvalidMask {
            name: "seg_boundary_mask",
            mask: 0xfffe,
        }
    });
}

#[test]
fn impossible_constraints_are_refused() {
    // An alignment beyond the whole pool (the pool is not 1 TiB-aligned).
    map_refused(
        100,
        0,
        Constraints::new().alloc_align_mask((1 << 40) - 1),
        |_| MapError::Impossible {
            size: 100,
            slots: 1,
            align: 1 << 40,
            boundary: 0,
        },
    );
    // A boundary window smaller than the mapping (5000 bytes is over a page: page-aligned).
    map_refused(5000, 0, Constraints::new().seg_boundary_mask(0xfff), |_| {
        MapError::Impossible {
            size: 5000,
            slots: 3,
            align: 0x1000,
            boundary: 0x1000,
        }
    });
}

#[test]
fn a_limit_below_the_pool_is_unreachable() {
    map_refused(100, 0, Constraints::new().dma_limit(0x1000), |s| {
        MapError::Unreachable {
            size: 100,
            limit: 0x1000,
            pool_start: s.pool.dma_range().start,
        }
    });
}

#[test]
fn mapping_pool_memory_is_refused() {
    let s = scene();
    let before = snapshot(&s.pool);
    let originals = s.originals();
    let inside = s.pool.translate(s.co.dma(), 100).unwrap();
    // SAFETY: refused before any access.
    let r = unsafe {
        s.pool.map(
            NonNull::slice_from_raw_parts(inside, 100),
            Direction::ToDevice,
            &Constraints::NONE,
        )
    };
    assert_eq!(
        r,
        Err(MapError::BufferInPool {
            addr: inside.as_ptr() as usize,
            len: 100
        })
    );
    s.refused(before, originals);
}

#[test]
fn a_full_pool_says_what_was_asked_and_what_is_used() {
    let pool = pool(8);
    let mut bufs: Vec<(Orig, u64)> = (0..7)
        .map(|i| {
            let mut o = Orig::new(2048, 0, i);
            let dma = o.map(&pool, Direction::ToDevice, &Constraints::NONE);
            (o, dma)
        })
        .collect();
    let before = snapshot(&pool);
    let mut o = Orig::new(4096, 0, 9);
    let err = o
        .try_map(&pool, Direction::ToDevice, &Constraints::NONE)
        .unwrap_err();
    assert_eq!(
        err,
        MapError::Full {
            size: 4096,
            slots: 2,
            align: 4096,
            boundary: 0,
            total_slots: 8,
            used_slots: 7,
        }
    );
    assert_eq!(
        err.to_string(),
        "swiotlb buffer is full (sz: 4096 bytes, 2 slots, aligned to 0x1000, boundary 0x0), total 8 (slots), used 7 (slots)"
    );
    let after = snapshot(&pool);
    assert_eq!(after.stats.failed_maps, 1);
    assert_eq!(after.stats.used_slots, before.stats.used_slots);
    assert_eq!(after.bytes, before.bytes);
    for (mut o, dma) in bufs.drain(..) {
        o.unmap(&pool, dma, Direction::ToDevice);
    }
    assert_eq!(pool.stats().used_slots, 0);
}

/// The message names the real limit, `MAX_AREAS` (64); it once said 1024.
#[test]
fn area_count_message_names_the_real_limit() {
    assert_eq!(swiotlb::MAX_AREAS, 64);
    let err = Pool::allocate(1 << 20, Config::new().with_areas(128)).unwrap_err();
    assert_eq!(err, ConfigError::Areas(128));
    assert_eq!(
        err.to_string(),
        "area count 128 is not a power of two between 1 and 64"
    );
}

#[test]
fn invalid_configurations_are_refused() {
    let cases: [(Config, ConfigError); 5] = [
        (
            Config::new().with_slot_size(3000),
            ConfigError::SlotSize(3000),
        ),
        (
            Config::new().with_slot_size(8192),
            ConfigError::SlotSize(8192),
        ),
        (
            Config::new().with_segment_slots(100),
            ConfigError::SegmentSlots(100),
        ),
        (Config::new().with_areas(3), ConfigError::Areas(3)),
        (
            Config::new().with_page_size(1024),
            ConfigError::PageSize(1024),
        ),
    ];
    for (config, err) in cases {
        assert_eq!(Pool::allocate(1 << 20, config).unwrap_err(), err);
    }
    assert!(matches!(
        Pool::allocate(2047, Config::new()),
        Err(ConfigError::TooSmall {
            size: 2047,
            slot_size: 2048,
            ..
        })
    ));
    let mut mem = vec![0u8; 8192];
    let cpu = NonNull::new(mem.as_mut_ptr()).unwrap();
    // SAFETY: refused before any access.
    let r = unsafe { Pool::new(cpu, u64::MAX - 4096, 8192, Config::new()) };
    assert_eq!(
        r.unwrap_err(),
        ConfigError::Wraps {
            size: 8192,
            dma_base: u64::MAX - 4096
        }
    );
    // SAFETY: refused before any access: the region's first whole slot is past its end.
    let r = unsafe { Pool::new(cpu, 0x1001, 2048, Config::new()) };
    assert_eq!(
        r.unwrap_err(),
        ConfigError::TooSmall {
            size: 2048,
            dma_base: 0x1001,
            slot_size: 2048
        }
    );
}
