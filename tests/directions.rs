//! Which bytes move, and which must not, for every operation and direction.

mod common;

use common::{device_read, device_write, pattern, pool, with_fillers, Orig};
use swiotlb::{Attrs, Constraints, Direction, LookupError};

const DIRS: [Direction; 3] = [
    Direction::ToDevice,
    Direction::FromDevice,
    Direction::Bidirectional,
];

#[test]
fn map_copies_the_original_in_for_every_direction() {
    let pool = pool(256);
    with_fillers(&pool, 20, |pool, round| {
        for (k, dir) in DIRS.into_iter().enumerate() {
            for len in [1, 63, 2048, 2049, 10000] {
                let mut o = Orig::new(len, round * 3 + k, (round + k) as u8);
                let dma = o.map(pool, dir, &Constraints::NONE);
                assert_eq!(device_read(pool, dma, len), o.bytes(), "{dir:?} {len}");
                o.unmap(pool, dma, dir);
            }
        }
    });
}

#[test]
fn unmap_copies_back_only_from_device_and_bidirectional() {
    let pool = pool(256);
    with_fillers(&pool, 20, |pool, round| {
        for dir in DIRS {
            let mut o = Orig::new(5000, round * 16, round as u8);
            let before = o.bytes().to_vec();
            let dma = o.map(pool, dir, &Constraints::NONE);
            let device: Vec<u8> = (0..5000).map(|i| pattern(200, i)).collect();
            device_write(pool, dma, &device);
            // Nothing reaches the original before unmap (or a sync).
            assert_eq!(o.bytes(), &before[..]);
            o.unmap(pool, dma, dir);
            let expected = if dir.from_device() { &device } else { &before };
            assert_eq!(o.bytes(), &expected[..], "{dir:?}");
        }
    });
}

#[test]
fn skip_cpu_sync_leaves_the_original_alone_on_unmap() {
    let pool = pool(64);
    for dir in DIRS {
        let mut o = Orig::new(3000, 0, 3);
        let before = o.bytes().to_vec();
        let dma = o.map(&pool, dir, &Constraints::NONE);
        device_write(&pool, dma, &[0x77; 3000]);
        // SAFETY: `o` is alive and mapped.
        unsafe { pool.unmap(dma, 3000, dir, Attrs::SKIP_CPU_SYNC) }.unwrap();
        assert_eq!(o.bytes(), &before[..], "{dir:?}");
        assert_eq!(pool.stats().used_slots, 0);
    }
}

#[test]
fn sync_for_device_copies_in_for_to_device_and_bidirectional_only() {
    let pool = pool(64);
    for dir in DIRS {
        let mut o = Orig::new(4000, 0x10, 9);
        let dma = o.map(&pool, dir, &Constraints::NONE);
        let mapped = device_read(&pool, dma, 4000);
        o.bytes_mut().fill(0x42);
        // SAFETY: mapping live, original alive.
        unsafe { pool.sync_for_device(dma, 4000, dir) }.unwrap();
        let now = device_read(&pool, dma, 4000);
        if dir.to_device() {
            assert_eq!(now, vec![0x42; 4000], "{dir:?}");
        } else {
            assert_eq!(
                now, mapped,
                "{dir:?}: FromDevice sync_for_device must copy nothing"
            );
        }
        // SAFETY: as above.
        unsafe { pool.unmap(dma, 4000, dir, Attrs::SKIP_CPU_SYNC) }.unwrap();
    }
}

#[test]
fn sync_for_cpu_copies_out_for_from_device_and_bidirectional_only() {
    let pool = pool(64);
    for dir in DIRS {
        let mut o = Orig::new(4000, 0x10, 9);
        let before = o.bytes().to_vec();
        let dma = o.map(&pool, dir, &Constraints::NONE);
        device_write(&pool, dma, &[0x24; 4000]);
        // SAFETY: mapping live, original alive.
        unsafe { pool.sync_for_cpu(dma, 4000, dir) }.unwrap();
        if dir.from_device() {
            assert_eq!(o.bytes(), &[0x24; 4000][..], "{dir:?}");
        } else {
            assert_eq!(
                o.bytes(),
                &before[..],
                "{dir:?}: ToDevice sync_for_cpu must copy nothing"
            );
        }
        // SAFETY: as above.
        unsafe { pool.unmap(dma, 4000, dir, Attrs::SKIP_CPU_SYNC) }.unwrap();
    }
}

#[test]
fn bidirectional_mapping_syncs_in_the_direction_given() {
    let pool = pool(64);
    let mut o = Orig::new(3000, 0, 1);
    let dma = o.map(&pool, Direction::Bidirectional, &Constraints::NONE);
    device_write(&pool, dma, &[0x01; 3000]);
    // A ToDevice sync_for_cpu copies nothing, even on a bidirectional mapping.
    let before = o.bytes().to_vec();
    // SAFETY: mapping live, original alive.
    unsafe { pool.sync_for_cpu(dma, 3000, Direction::ToDevice) }.unwrap();
    assert_eq!(o.bytes(), &before[..]);
    // SAFETY: as above.
    unsafe { pool.sync_for_cpu(dma, 3000, Direction::FromDevice) }.unwrap();
    assert_eq!(o.bytes(), &[0x01; 3000][..]);
    o.bytes_mut().fill(0x02);
    // SAFETY: as above.
    unsafe { pool.sync_for_device(dma, 3000, Direction::FromDevice) }.unwrap();
    assert_eq!(device_read(&pool, dma, 3000), vec![0x01; 3000]);
    // SAFETY: as above.
    unsafe { pool.sync_for_device(dma, 3000, Direction::ToDevice) }.unwrap();
    assert_eq!(device_read(&pool, dma, 3000), vec![0x02; 3000]);
    // Unmap wants the mapping's own direction.
    // SAFETY: as above.
    let r = unsafe { pool.unmap(dma, 3000, Direction::FromDevice, Attrs::NONE) };
    assert!(matches!(r, Err(LookupError::DirectionMismatch { .. })));
    o.unmap(&pool, dma, Direction::Bidirectional);
}

#[test]
fn partial_syncs_move_exactly_their_range_at_any_offset() {
    let pool = pool(512);
    let nvme = Constraints::new().min_align_mask(0xfff);
    with_fillers(&pool, 12, |pool, round| {
        for c in [Constraints::NONE, nvme] {
            let len = 20000;
            let mut o = Orig::new(len, 0x2d0 + round * 0x111, round as u8);
            let dma = o.map(pool, Direction::Bidirectional, &c);
            let device: Vec<u8> = (0..len).map(|i| pattern(99, i)).collect();
            device_write(pool, dma, &device);
            let mut expect_orig = o.bytes().to_vec();
            for (off, n) in [
                (0, 1),
                (1, 2047),
                (2047, 2),
                (2048, 2048),
                (5000, 7000),
                (len - 1, 1),
                (0, len),
            ] {
                // SAFETY: mapping live, original alive.
                unsafe { pool.sync_for_cpu(dma + off as u64, n, Direction::Bidirectional) }
                    .unwrap();
                expect_orig[off..off + n].copy_from_slice(&device[off..off + n]);
                assert_eq!(o.bytes(), &expect_orig[..], "sync_for_cpu {off}+{n}");
            }
            // Now the other way: change the original, push part of it.
            o.bytes_mut().fill(0xc3);
            let mut expect_bounce = device.clone();
            for (off, n) in [(3, 5), (2040, 20), (19999, 1)] {
                // SAFETY: as above.
                unsafe { pool.sync_for_device(dma + off as u64, n, Direction::Bidirectional) }
                    .unwrap();
                expect_bounce[off..off + n].fill(0xc3);
                assert_eq!(
                    device_read(pool, dma, len),
                    expect_bounce,
                    "sync_for_device {off}+{n}"
                );
            }
            // SAFETY: as above.
            unsafe { pool.unmap(dma, len, Direction::Bidirectional, Attrs::SKIP_CPU_SYNC) }
                .unwrap();
        }
    });
}

#[test]
fn neighbouring_mappings_never_see_each_others_bytes() {
    let pool = pool(128);
    let mut bufs: Vec<(Orig, u64)> = (0..40)
        .map(|i| {
            let mut o = Orig::new(100 + i * 97, i * 13, i as u8);
            let dma = o.map(&pool, Direction::Bidirectional, &Constraints::NONE);
            (o, dma)
        })
        .collect();
    // The device fills every mapping completely with its own index.
    for (i, (o, dma)) in bufs.iter().enumerate() {
        device_write(&pool, *dma, &vec![i as u8; o.len()]);
    }
    for (i, (o, dma)) in bufs.iter_mut().enumerate() {
        let len = o.len();
        o.unmap(&pool, *dma, Direction::Bidirectional);
        assert_eq!(o.bytes(), &vec![i as u8; len][..], "mapping {i}");
    }
}
