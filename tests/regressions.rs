//! The eight cases Linux learned the hard way (SEMANTICS.md, "Regression cases"), one test
//! each, named after the bug.

mod common;

use common::{device_read, device_write, pool, with_fillers, Orig};
use std::sync::mpsc;
use std::time::Duration;
use swiotlb::{Attrs, Config, Constraints, Direction, LookupError, MapError, Pool};

/// Case 1: Linux 2022, "swiotlb: fix the deadlock in find_slots": a search that runs all the way
/// round a nearly full area with an alignment it cannot meet must fail, not spin forever.
#[test]
fn find_slots_deadlock_nearly_full_area_with_unmeetable_alignment_fails() {
    let (done, wait) = mpsc::channel();
    std::thread::spawn(move || {
        let pool = pool(256);
        // Fill every slot, then free every other one: 128 free slots, none adjacent.
        let mut bufs: Vec<(Orig, u64)> = (0..256)
            .map(|i| {
                let mut o = Orig::new(64, 0, i as u8);
                let dma = o.map(&pool, Direction::ToDevice, &Constraints::NONE);
                (o, dma)
            })
            .collect();
        assert_eq!(pool.stats().used_slots, 256);
        let mut kept = Vec::new();
        for (i, (mut o, dma)) in bufs.drain(..).enumerate() {
            if i % 2 == 1 {
                o.unmap(&pool, dma, Direction::ToDevice);
            } else {
                kept.push((o, dma));
            }
        }
        // Two slots (4 KiB, so page-aligned too) can never fit; neither can one slot
        // aligned to 4 KiB (free slots are all odd, aligned ones even).
        let mut big = Orig::new(4096, 0, 1);
        let r = big.try_map(&pool, Direction::ToDevice, &Constraints::NONE);
        assert!(matches!(r, Err(MapError::Full { slots: 2, .. })), "{r:?}");
        let mut aligned = Orig::new(64, 0, 2);
        let c = Constraints::new().alloc_align_mask(0xfff);
        let r = aligned.try_map(&pool, Direction::ToDevice, &c);
        assert!(
            matches!(r, Err(MapError::Full { align: 4096, .. })),
            "{r:?}"
        );
        // A single unaligned slot still fits.
        let mut small = Orig::new(64, 0, 3);
        let dma = small.map(&pool, Direction::ToDevice, &Constraints::NONE);
        small.unmap(&pool, dma, Direction::ToDevice);
        for (mut o, dma) in kept {
            o.unmap(&pool, dma, Direction::ToDevice);
        }
        assert_eq!(pool.stats().used_slots, 0);
        done.send(()).unwrap();
    });
    wait.recv_timeout(Duration::from_secs(60))
        .expect("the search did not end (or the test panicked)");
}

/// Case 2: Linux 2024, "swiotlb: Fix double-allocation of slots due to broken alignment
/// handling": a coherent 8 KiB allocation made after a 1-slot mapping left the cursor on
/// an odd slot is aligned to its size (8 KiB) and shares no slot with anything.
#[test]
fn double_allocation_coherent_8k_after_one_slot_mapping_is_aligned_and_shares_no_slot() {
    let pool = pool(512);
    with_fillers(&pool, 40, |pool, round| {
        let mut one = Orig::new(100, round * 8, round as u8);
        let dma = one.map(pool, Direction::Bidirectional, &Constraints::NONE);
        let co = pool.alloc(8192, &Constraints::NONE).expect("alloc");
        assert_eq!(co.dma() % 8192, 0, "round {round}: {:#x}", co.dma());
        // The 1-slot mapping's slot and the allocation's four do not meet.
        let slot = dma & !2047;
        assert!(
            slot + 2048 <= co.dma() || co.dma() + 8192 <= slot,
            "round {round}: overlap"
        );
        // Writing the whole allocation leaves the mapping's bounce bytes alone.
        device_write(pool, co.dma(), &[0xee; 8192]);
        assert_eq!(device_read(pool, dma, 100), one.bytes(), "round {round}");
        pool.free(co).expect("free");
        one.unmap(pool, dma, Direction::Bidirectional);
    });
}

/// Case 3: Linux 2024, "swiotlb: Fix alignment checks when both allocation and DMA masks
/// are present" (NVMe behind a 64 KiB-page IOMMU): `alloc_align_mask` 64 KiB - 1 with
/// `min_align_mask` 4 KiB - 1 and an original with bit 11 set must succeed (every such
/// request failed as "buffer is full") and keep the low 12 bits.
#[test]
fn nvme_64k_iommu_alloc_align_with_bit_11_set_succeeds_and_keeps_low_bits() {
    let pool = pool(1024);
    let c = Constraints::new()
        .min_align_mask(0xfff)
        .alloc_align_mask(0xffff);
    with_fillers(&pool, 30, |pool, round| {
        for low in [0x800, 0xa34, 0xfff, 0x8c0 + round] {
            let mut o = Orig::new(4096, low, round as u8);
            assert_ne!(o.addr() & 0x800, 0);
            let dma = o.map(pool, Direction::ToDevice, &c);
            assert_eq!(dma & 0xfff, o.addr() & 0xfff, "round {round}, low {low:#x}");
            // The allocation starts 64 KiB-aligned, the kept offset in front of the data.
            assert_eq!((dma - (o.addr() & 0xfff)) % 0x10000, 0);
            assert_eq!(device_read(pool, dma, 4096), o.bytes());
            o.unmap(pool, dma, Direction::ToDevice);
        }
    });
}

/// Case 4: Linux 2024, "swiotlb: extend buffer pre-padding to alloc_align_mask if necessary":
/// bits of `min_align_mask` above the slot size but inside `alloc_align_mask` are kept by
/// padding in front. Original ending in 0xfa0 gives a bounce address ending in 0xfa0 (not
/// 0x7a0), and unmap frees the padding slot too.
#[test]
fn pre_padding_keeps_min_align_bits_above_the_slot_and_unmap_frees_it() {
    let pool = pool(512);
    let c = Constraints::new()
        .min_align_mask(0xfff)
        .alloc_align_mask(0xfff);
    with_fillers(&pool, 30, |pool, round| {
        let before = pool.stats().used_slots;
        let mut o = Orig::new(1000 + round * 10, 0xfa0, round as u8);
        let dma = o.map(pool, Direction::FromDevice, &c);
        assert_eq!(dma & 0xfff, 0xfa0, "round {round}: {dma:#x}");
        // One padding slot, then the data from 0x7a0 into the next slot and beyond.
        let data_slots = (0x7a0 + o.len()).div_ceil(2048);
        assert_eq!(pool.stats().used_slots - before, 1 + data_slots);
        // The padding slot is not part of the mapping.
        // SAFETY: a refused sync copies nothing; were it accepted, it would copy one byte
        // into `o`, which is live and mapped.
        let r = unsafe { pool.sync_for_cpu(dma - 0x800, 1, Direction::FromDevice) };
        assert_eq!(r, Err(LookupError::NotMapped { dma: dma - 0x800 }));
        o.unmap(pool, dma, Direction::FromDevice);
        assert_eq!(
            pool.stats().used_slots,
            before,
            "round {round}: padding leaked"
        );
    });
}

/// Case 5: Linux 2024, "swiotlb: Reinstate page-alignment for mappings >= PAGE_SIZE": with no
/// masks, mappings of a page or more are page-aligned whatever the original's alignment.
#[test]
fn page_alignment_reinstated_for_mappings_of_a_page_or_more() {
    let pool = pool(1024);
    with_fillers(&pool, 30, |pool, round| {
        for len in [4096, 4097, 6000, 8192, 65536] {
            let mut o = Orig::new(len, 0x123 + round * 0x40, round as u8);
            let dma = o.map(pool, Direction::ToDevice, &Constraints::NONE);
            assert_eq!(dma % 4096, 0, "round {round}, len {len}: {dma:#x}");
            o.unmap(pool, dma, Direction::ToDevice);
        }
        // Below a page, only slot alignment: some of these land on odd slots.
        let mut o = Orig::new(2048, 0x123, 0);
        let dma = o.map(pool, Direction::ToDevice, &Constraints::NONE);
        assert_eq!(dma % 2048, 0);
        o.unmap(pool, dma, Direction::ToDevice);
    });
}

/// Case 6: Linux 2024, "swiotlb: fix swiotlb_bounce() to do partial sync's correctly": a partial
/// sync at an offset past the first slot of a mapping with a `min_align_mask` offset copies
/// the right bytes (original at ...0600, mask 0xfff, sync at start + 0x300 reaches original
/// ...0900).
#[test]
fn partial_sync_past_first_slot_with_min_align_offset_copies_the_right_bytes() {
    let pool = pool(512);
    let c = Constraints::new().min_align_mask(0xfff);
    with_fillers(&pool, 30, |pool, round| {
        let mut o = Orig::new(8192, 0x600, round as u8);
        let dma = o.map(pool, Direction::FromDevice, &c);
        assert_eq!(dma & 0xfff, 0x600);
        let device: Vec<u8> = (0..8192).map(|i| (i % 251) as u8 ^ 0xff).collect();
        device_write(pool, dma, &device);
        for (off, len) in [
            (0x300, 16),
            (0x200, 0x300),
            (0x1000, 100),
            (0x1ff0, 0x10),
            (0x7ff, 3000),
        ] {
            // SAFETY: the mapping is live and `o` is alive.
            unsafe { pool.sync_for_cpu(dma + off, len, Direction::FromDevice) }.expect("sync");
            let orig_addr = o.addr() + off;
            assert_eq!(
                &o.bytes()[off as usize..off as usize + len],
                &device[off as usize..off as usize + len]
            );
            if off == 0x300 {
                assert_eq!(orig_addr & 0xfff, 0x900);
            }
        }
        // Bytes never synced are still the original's.
        let fresh = Orig::new(8192, 0x600, round as u8);
        assert_eq!(&o.bytes()[..0x200], &fresh.bytes()[..0x200]);
        // SAFETY: as above.
        unsafe { pool.unmap(dma, 8192, Direction::FromDevice, Attrs::SKIP_CPU_SYNC) }.unwrap();
    });
}

/// Case 7: Linux CVE-2023-52790 ("swiotlb: fix out-of-bounds TLB allocations with
/// CONFIG_SWIOTLB_DYNAMIC"): a pool smaller than areas x segment, down to a few slots,
/// still works and never hands out a slot past its end.
#[test]
fn tiny_pool_never_hands_out_a_slot_past_its_end() {
    for slots in 1..=9usize {
        for areas in [1, 2, 4, 8] {
            let pool = Pool::allocate(slots * 2048, Config::new().with_areas(areas)).unwrap();
            assert_eq!(pool.stats().total_slots, slots);
            assert_eq!(pool.areas(), 1, "a pool under one segment has one area");
            let range = pool.dma_range();
            let mut live = Vec::new();
            loop {
                let mut o = Orig::new(100, 0, live.len() as u8);
                match o.try_map(&pool, Direction::ToDevice, &Constraints::NONE) {
                    Ok(dma) => {
                        assert!(
                            range.contains(&dma) && dma + 100 <= range.end,
                            "{dma:#x} outside {range:x?}"
                        );
                        live.push((o, dma));
                    }
                    Err(MapError::Full {
                        total_slots,
                        used_slots,
                        ..
                    }) => {
                        assert_eq!((total_slots, used_slots), (slots, slots));
                        break;
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            assert_eq!(live.len(), slots);
            // A mapping bigger than the pool can never fit.
            let mut big = Orig::new(2048 * slots + 1, 0, 0);
            let r = big.try_map(&pool, Direction::ToDevice, &Constraints::NONE);
            assert!(matches!(r, Err(MapError::Impossible { .. })), "{r:?}");
            for (mut o, dma) in live {
                o.unmap(&pool, dma, Direction::ToDevice);
            }
            assert_eq!(pool.stats().used_slots, 0);
        }
    }
}

/// Case 8: Linux CVE-2022-0854 ("swiotlb: fix info leak with DMA_FROM_DEVICE"): a device that
/// writes only the first bytes of a `FromDevice` buffer leaves the rest of the original
/// unchanged on unmap, and the earlier user's bytes never reach it.
#[test]
fn from_device_partial_write_leaves_rest_of_original_unchanged() {
    let pool = pool(64);
    with_fillers(&pool, 20, |pool, round| {
        // An earlier user leaves secrets in the slots.
        let mut secret = Orig::new(6000, 0, 0);
        let dma = secret.map(pool, Direction::FromDevice, &Constraints::NONE);
        device_write(pool, dma, &[0xaa; 6000]);
        secret.unmap(pool, dma, Direction::FromDevice);

        let mut o = Orig::new(6000, 0, 7 + round as u8);
        let expected_tail = o.bytes()[100..].to_vec();
        let dma = o.map(pool, Direction::FromDevice, &Constraints::NONE);
        // The device sees the original's bytes, not the earlier user's.
        assert_eq!(device_read(pool, dma, 6000), o.bytes());
        device_write(pool, dma, &[0x11; 100]);
        o.unmap(pool, dma, Direction::FromDevice);
        assert_eq!(&o.bytes()[..100], &[0x11; 100][..]);
        assert_eq!(&o.bytes()[100..], &expected_tail[..], "round {round}");
    });
}
