//! The safe mapping types: each direction, partial syncs, what a drop does, errors that
//! change nothing, owned buffers kept in a queue, coherent guards, `dyn DmaPool`, and what
//! a forgotten guard leaves behind.

use std::collections::VecDeque;
use swiotlb::shared::{copy_from_shared, copy_to_shared};
use swiotlb::{
    Attrs, BufError, CoherentGuard, Config, Constraints, Direction, DmaAddr, DmaMut, DmaOwned,
    DmaPool, DmaRef, Fill, LookupError, MapError, MappingKind, Pool,
};

fn pool() -> Pool {
    Pool::allocate(64 * 2048, Config::new().with_areas(1)).expect("pool")
}

/// What the device reads at `dma`.
fn device_read(pool: &Pool, dma: DmaAddr, len: usize) -> Vec<u8> {
    let at = pool.translate(dma, len).expect("in the pool");
    let mut out = vec![0; len];
    // SAFETY: `translate` checked the range; read as the device would.
    unsafe { copy_from_shared(out.as_mut_ptr(), at.as_ptr(), len) };
    out
}

/// The device writes `bytes` at `dma`.
fn device_write(pool: &Pool, dma: DmaAddr, bytes: &[u8]) {
    let at = pool.translate(dma, bytes.len()).expect("in the pool");
    // SAFETY: as in `device_read`.
    unsafe { copy_to_shared(at.as_ptr(), bytes.as_ptr(), bytes.len()) };
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + 3) as u8).collect()
}

#[test]
fn to_device_shows_the_buffer_and_unmaps_on_drop() {
    let pool = pool();
    let buf = pattern(3000);
    {
        let m = DmaRef::to_device(&pool, &buf, &Constraints::NONE).unwrap();
        assert_eq!(m.len(), 3000);
        assert_eq!(m.as_slice(), &buf[..]); // still readable while mapped
        assert_eq!(device_read(&pool, m.dma(), 3000), buf);
        assert_eq!(pool.stats().used_slots, 2);
    }
    assert_eq!(pool.stats().used_slots, 0);
}

#[test]
fn to_device_sync_rewrites_what_the_device_overwrote() {
    let pool = pool();
    let buf = pattern(100);
    let mut m = DmaRef::to_device(&pool, &buf, &Constraints::NONE).unwrap();
    device_write(&pool, m.dma() + 10, &[0xee; 20]);
    m.sync_for_device(10..30).unwrap();
    assert_eq!(device_read(&pool, m.dma(), 100), buf);
    m.unmap().unwrap();
    assert_eq!(
        buf,
        pattern(100),
        "nothing is copied back into a ToDevice buffer"
    );
    assert_eq!(pool.stats().used_slots, 0);
}

#[test]
fn from_device_zero_fill_shows_zeros_and_copies_back_on_drop() {
    let pool = pool();
    let mut buf = pattern(4096);
    {
        let m = DmaMut::from_device(&pool, &mut buf, &Constraints::NONE, Fill::Zero).unwrap();
        assert_eq!(m.direction(), Direction::FromDevice);
        assert_eq!(device_read(&pool, m.dma(), 4096), vec![0; 4096]);
        device_write(&pool, m.dma(), &[0xa5; 100]);
    } // drop: the whole bounce buffer comes back
    assert_eq!(buf[..100], [0xa5; 100]);
    assert!(
        buf[100..].iter().all(|&b| b == 0),
        "Zero: the rest is zeros"
    );
    assert_eq!(pool.stats().used_slots, 0);
}

#[test]
fn from_device_original_fill_keeps_what_the_device_did_not_write() {
    let pool = pool();
    let mut buf = pattern(4096);
    let m = DmaMut::from_device(&pool, &mut buf, &Constraints::NONE, Fill::Original).unwrap();
    assert_eq!(device_read(&pool, m.dma(), 4096), pattern(4096));
    device_write(&pool, m.dma(), &[0xa5; 100]);
    m.unmap().unwrap();
    assert_eq!(buf[..100], [0xa5; 100]);
    assert_eq!(buf[100..], pattern(4096)[100..]);
}

#[test]
fn partial_syncs_move_only_their_range_each_way() {
    let pool = pool();
    let mut buf = pattern(5000);
    let mut m = DmaMut::bidirectional(&pool, &mut buf, &Constraints::NONE).unwrap();
    let dma = m.dma();
    assert_eq!(device_read(&pool, dma, 5000), pattern(5000));

    // The device writes two places; the CPU takes only the second.
    device_write(&pool, dma + 10, &[1; 10]);
    device_write(&pool, dma + 4000, &[2; 50]);
    m.sync_for_cpu(4000..4050).unwrap();
    assert_eq!(m.as_slice()[4000..4050], [2; 50]);
    assert_eq!(m.as_slice()[10..20], pattern(5000)[10..20]);

    // The CPU writes two places; the device is given only the first (an inclusive range).
    m.as_mut_slice()[2100..2200].fill(3);
    m.as_mut_slice()[0..5].fill(4);
    m.sync_for_device(2100..=2199).unwrap();
    assert_eq!(device_read(&pool, dma + 2100, 100), vec![3; 100]);
    assert_eq!(device_read(&pool, dma, 5), pattern(5000)[..5]);

    m.discard().unwrap(); // no copy back
    assert_eq!(buf[10..20], pattern(5000)[10..20]);
    assert_eq!(buf[0..5], [4; 5]);
    assert_eq!(pool.stats().used_slots, 0);
}

#[test]
fn syncs_past_the_mapping_are_refused_and_copy_nothing() {
    let pool = pool();
    let mut buf = pattern(300);
    let mut m = DmaMut::from_device(&pool, &mut buf, &Constraints::NONE, Fill::Zero).unwrap();
    let dma = m.dma();
    device_write(&pool, dma, &[9; 300]);
    let out_of_range = |d: u64, len: usize| LookupError::OutOfRange {
        dma: d,
        len,
        start: dma,
        mapped: 300,
    };
    assert_eq!(m.sync_for_cpu(200..301), Err(out_of_range(dma + 200, 101)));
    assert_eq!(m.sync_for_cpu(301..), Err(out_of_range(dma + 301, 0)));
    #[allow(clippy::reversed_empty_ranges)]
    let backwards = m.sync_for_cpu(20..10);
    assert_eq!(backwards, Err(out_of_range(dma + 20, 0)));
    assert!(matches!(
        m.sync_for_cpu(..=usize::MAX),
        Err(LookupError::OutOfRange { .. })
    ));
    assert!(matches!(
        m.sync_for_device((
            core::ops::Bound::Excluded(usize::MAX),
            core::ops::Bound::Unbounded
        )),
        Err(LookupError::OutOfRange { .. })
    ));
    assert_eq!(
        m.sync_for_cpu(5..5),
        Err(LookupError::ZeroLength { dma: dma + 5 })
    );
    assert_eq!(m.as_slice(), &pattern(300)[..], "nothing was copied");
    m.sync_for_cpu(..).unwrap();
    assert_eq!(m.as_slice(), &[9; 300][..]);
}

#[test]
fn map_errors_map_nothing() {
    let pool = pool();
    let mut empty: [u8; 0] = [];
    assert_eq!(
        DmaMut::from_device(&pool, &mut empty, &Constraints::NONE, Fill::Zero).unwrap_err(),
        MapError::ZeroLength
    );
    let big = vec![0u8; pool.max_mapping_size(&Constraints::NONE) + 1];
    assert!(matches!(
        DmaRef::to_device(&pool, &big, &Constraints::NONE).unwrap_err(),
        MapError::TooLarge { .. }
    ));
    let bad = Constraints::new().min_align_mask(0x7);
    let bad = bad.min_align_mask(0x5);
    assert!(matches!(
        DmaRef::to_device(&pool, &[1, 2, 3], &bad).unwrap_err(),
        MapError::InvalidMask { .. }
    ));
    let err = DmaOwned::map(
        &pool,
        Vec::new(),
        Direction::ToDevice,
        &Constraints::NONE,
        Attrs::NONE,
    )
    .unwrap_err();
    assert_eq!(
        err,
        BufError {
            buf: Vec::new(),
            error: MapError::ZeroLength
        }
    );
    let err = DmaOwned::map(
        &pool,
        big.into_boxed_slice(),
        Direction::ToDevice,
        &Constraints::NONE,
        Attrs::NONE,
    )
    .unwrap_err();
    assert_eq!(err.buf.len(), pool.max_mapping_size(&Constraints::NONE) + 1);
    assert_eq!(pool.stats().used_slots, 0);
}

#[test]
fn owned_mappings_wait_in_a_queue_and_come_back_with_the_data() {
    let pool = pool();
    let mut queue: VecDeque<DmaOwned<'_, Pool, Vec<u8>>> = VecDeque::new();
    for i in 0..8u8 {
        let buf = vec![i; 1000 + usize::from(i)];
        let m = DmaOwned::map(
            &pool,
            buf,
            Direction::FromDevice,
            &Constraints::NONE,
            Attrs::ZERO_FILL,
        )
        .unwrap();
        queue.push_back(m);
    }
    assert_eq!(pool.stats().used_slots, 8);
    // The device completes them in order; each answer is its index plus 100.
    for m in &queue {
        device_write(&pool, m.dma(), &vec![m.as_slice()[0] + 100; m.len()]);
    }
    let mut i = 0u8;
    while let Some(m) = queue.pop_front() {
        let buf = m.unmap().unwrap();
        assert_eq!(buf, vec![i + 100; 1000 + usize::from(i)]);
        i += 1;
    }
    assert_eq!(pool.stats().used_slots, 0);
}

#[test]
fn owned_drop_unmaps_without_copying_and_boxes_work_too() {
    let pool = pool();
    let mut m = DmaOwned::map(
        &pool,
        pattern(600).into_boxed_slice(),
        Direction::Bidirectional,
        &Constraints::NONE,
        Attrs::NONE,
    )
    .unwrap();
    m.as_mut_slice()[..3].copy_from_slice(&[7, 7, 7]);
    m.sync_for_device(..3).unwrap();
    assert_eq!(device_read(&pool, m.dma(), 4), [7, 7, 7, pattern(600)[3]]);
    device_write(&pool, m.dma() + 500, &[1; 100]);
    m.sync_for_cpu(500..).unwrap();
    assert_eq!(m.as_slice()[500..], [1; 100]);
    drop(m);
    assert_eq!(pool.stats().used_slots, 0);

    let m = DmaOwned::<_, Box<[u8]>>::map(
        &pool,
        vec![5u8; 10].into_boxed_slice(),
        Direction::FromDevice,
        &Constraints::NONE,
        Attrs::NONE,
    )
    .unwrap();
    device_write(&pool, m.dma(), &[6; 4]);
    assert_eq!(&m.discard().unwrap()[..], &[5; 10]);
}

#[test]
fn constraints_hold_through_the_guards() {
    let pool = pool();
    let nvme = Constraints::new().min_align_mask(0xfff);
    let mut storage = vec![0u8; 8192];
    let at = 0x234usize.wrapping_sub(storage.as_ptr() as usize) & 0xfff;
    let m = DmaMut::from_device(&pool, &mut storage[at..at + 100], &nvme, Fill::Zero).unwrap();
    assert_eq!(m.dma() & 0xfff, 0x234);
}

#[test]
fn coherent_guard_reads_writes_and_frees_on_drop() {
    let pool = pool();
    {
        let mut ring = CoherentGuard::new(&pool, 6000, &Constraints::NONE).unwrap();
        assert_eq!(ring.size(), 6000);
        assert_eq!(ring.dma() % 8192, 0, "aligned to its size's page order");
        let mut back = vec![1u8; 6000];
        ring.read(0, &mut back).unwrap();
        assert!(back.iter().all(|&b| b == 0), "zeroed");
        ring.write(5990, &[3; 10]).unwrap();
        assert_eq!(device_read(&pool, ring.dma() + 5990, 10), [3; 10]);
        device_write(&pool, ring.dma() + 8, &[4; 8]);
        let mut got = [0u8; 8];
        ring.read(8, &mut got).unwrap();
        assert_eq!(got, [4; 8]);
        let past = LookupError::OutOfRange {
            dma: ring.dma() + 5995,
            len: 10,
            start: ring.dma(),
            mapped: 6000,
        };
        assert_eq!(ring.write(5995, &[0; 10]), Err(past));
        assert!(ring.read(usize::MAX, &mut got).is_err());
        assert_eq!(device_read(&pool, ring.dma() + 5990, 10), [3; 10]);
        assert!(pool.stats().used_slots > 0);
    }
    assert_eq!(pool.stats().used_slots, 0);

    let ring = CoherentGuard::new(&pool, 100, &Constraints::NONE).unwrap();
    let raw = ring.into_coherent();
    assert_eq!(pool.stats().used_slots, 1, "taken apart, still live");
    pool.free(raw).unwrap();
    let ring = CoherentGuard::new(&pool, 100, &Constraints::NONE).unwrap();
    ring.free().unwrap();
    assert_eq!(pool.stats().used_slots, 0);
    assert_eq!(
        CoherentGuard::new(&pool, 0, &Constraints::NONE).unwrap_err(),
        MapError::ZeroLength
    );
}

#[test]
fn guards_take_any_pool_behind_dyn_dma_pool() {
    let pool = pool();
    let dynamic: &dyn DmaPool = &pool;
    let mut buf = [0u8; 64];
    let m = DmaMut::from_device(dynamic, &mut buf, &Constraints::NONE, Fill::Zero).unwrap();
    device_write(&pool, m.dma(), &[8; 64]);
    m.unmap().unwrap();
    assert_eq!(buf, [8; 64]);
    let ring = CoherentGuard::new(dynamic, 64, &Constraints::NONE).unwrap();
    drop(ring);
    assert_eq!(pool.stats().used_slots, 0);
}

/// A forgotten guard leaves its mapping live (a leak), and nothing writes the buffer
/// afterwards: not other guards' maps, syncs and unmaps in the same slots' neighbourhood,
/// not the device writing the forgotten bounce buffer.
#[test]
fn a_forgotten_guard_leaks_its_slots_and_never_writes_the_buffer_again() {
    let pool = pool();
    let mut buf = vec![0u8; 2048];
    let m = DmaMut::from_device(&pool, &mut buf, &Constraints::NONE, Fill::Zero).unwrap();
    let dma = m.dma();
    std::mem::forget(m);
    buf.fill(0x11); // the borrow has ended: the buffer is the caller's again
    device_write(&pool, dma, &[0x99; 2048]);
    for _ in 0..10 {
        let mut other = vec![0u8; 2048];
        let g = DmaMut::from_device(&pool, &mut other, &Constraints::NONE, Fill::Zero).unwrap();
        device_write(&pool, g.dma(), &[0x77; 2048]);
        g.unmap().unwrap();
        assert_eq!(other, vec![0x77; 2048]);
    }
    assert_eq!(buf, vec![0x11; 2048]);
    assert!(matches!(
        pool.lookup(dma).map(|m| m.kind),
        Some(MappingKind::Streaming {
            dir: Direction::FromDevice,
            ..
        })
    ));
    assert_eq!(
        pool.stats().used_slots,
        1,
        "the forgotten mapping's slot is leaked"
    );
    drop(buf);
}

#[test]
fn debug_shows_device_addresses_in_hex() {
    let pool = pool();
    let buf = [1u8; 10];
    let m = DmaRef::to_device(&pool, &buf, &Constraints::NONE).unwrap();
    assert_eq!(
        format!("{m:?}"),
        format!("DmaRef({:#x}, 10 bytes, ToDevice)", m.dma())
    );
    let ring = CoherentGuard::new(&pool, 10, &Constraints::NONE).unwrap();
    assert_eq!(
        format!("{ring:?}"),
        format!("CoherentGuard({:#x}, 10 bytes)", ring.dma())
    );
}

#[test]
fn errors_mappings_and_allocations_print_addresses_in_hex_in_debug() {
    let pool = pool();
    let err = LookupError::NotStart {
        dma: 0x1000,
        start: 0xff0,
    };
    assert_eq!(format!("{err:?}"), "NotStart { dma: 0x1000, start: 0xff0 }");
    let err = MapError::Unreachable {
        size: 10,
        limit: 0xffff,
        pool_start: 0x10_0000,
    };
    assert_eq!(
        format!("{err:?}"),
        "Unreachable { size: 10, limit: 0xffff, pool_start: 0x100000 }"
    );
    let err = swiotlb::ConfigError::Wraps {
        size: 4096,
        dma_base: 0xffff_f000,
    };
    assert_eq!(
        format!("{err:?}"),
        "Wraps { size: 4096, dma_base: 0xfffff000 }"
    );
    let buf = [1u8; 10];
    let m = DmaRef::to_device(&pool, &buf, &Constraints::NONE).unwrap();
    let found = pool.lookup(m.dma()).unwrap();
    assert!(format!("{found:?}").starts_with(&format!("Mapping {{ dma: {:#x}, len: 10,", m.dma())));
    let ring = pool.alloc(100, &Constraints::NONE).unwrap();
    assert!(
        format!("{ring:?}").starts_with(&format!("Coherent {{ dma: {:#x}, cpu: 0x", ring.dma()))
    );
    pool.free(ring).unwrap();
}
