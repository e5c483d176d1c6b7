//! Scenarios sized for Miri (`bin/miri.sh` runs them under Stacked and Tree Borrows with
//! strict provenance): every unsafe path of the core with small pools and buffers. Each
//! also runs as an ordinary test.
//!
//! Originals are touched the way a driver touches them: through `&mut` between pool calls,
//! with the `_into` / `_from` calls given a fresh pointer after such a use (the pointer kept
//! at map is then invalid, which Miri would report).

use core::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use swiotlb::shared::{copy_from_shared, copy_to_shared};
use swiotlb::{Attrs, Config, Constraints, Direction, DmaAddr, Fill, LookupError, Pool};

fn small_pool() -> Pool {
    Pool::allocate(
        16 * 512,
        Config::new()
            .with_slot_size(512)
            .with_segment_slots(8)
            .with_areas(1),
    )
    .expect("pool")
}

fn read(pool: &Pool, dma: DmaAddr, len: usize) -> Vec<u8> {
    let at = pool.translate(dma, len).expect("in the pool");
    let mut out = vec![0; len];
    // SAFETY: `translate` checked the range; read as the device would.
    unsafe { copy_from_shared(out.as_mut_ptr(), at.as_ptr(), len) };
    out
}

fn write(pool: &Pool, dma: DmaAddr, bytes: &[u8]) {
    let at = pool.translate(dma, bytes.len()).expect("in the pool");
    // SAFETY: as in `read`, written as the device would.
    unsafe { copy_to_shared(at.as_ptr(), bytes.as_ptr(), bytes.len()) };
}

/// Every direction under NVMe-like masks (a kept offset, front padding), the device
/// answering, the copy back into a buffer reborrowed since map.
#[test]
fn each_direction_with_masks_round_trips() {
    let pool = small_pool();
    let c = Constraints::new()
        .min_align_mask(0x3ff)
        .alloc_align_mask(0x3ff);
    for dir in [
        Direction::ToDevice,
        Direction::FromDevice,
        Direction::Bidirectional,
    ] {
        let mut storage = vec![0u8; 2048];
        let at = 0x2c0usize.wrapping_sub(storage.as_ptr().addr()) & 0x3ff;
        let buf = &mut storage[at..at + 700];
        buf.iter_mut().enumerate().for_each(|(i, b)| *b = i as u8);
        // SAFETY: `storage` outlives the mapping; between pool calls only this thread
        // touches it.
        let dma = unsafe { pool.map(NonNull::from(&mut *buf), dir, &c) }.unwrap();
        assert_eq!(dma & 0x3ff, 0x2c0);
        assert_eq!(read(&pool, dma, 700)[..4], [0, 1, 2, 3]);
        write(&pool, dma, &[0xd0; 10]);
        buf[699] = 0x55; // the CPU uses its buffer between calls
        let buf = &mut storage[at..at + 700];
        // SAFETY: the mapping is ours; `buf` is its original, freshly borrowed.
        unsafe { pool.unmap_into(dma, NonNull::from(&mut *buf), dir, Attrs::NONE) }.unwrap();
        if dir.from_device() {
            assert_eq!(&buf[..10], &[0xd0; 10]);
            assert_eq!(buf[699], 699u16 as u8, "the whole bounce buffer came back");
        } else {
            assert_eq!(buf[0], 0);
            assert_eq!(buf[699], 0x55);
        }
    }
    assert_eq!(pool.stats().used_slots, 0);
}

/// Partial syncs at offsets past the first slot, with a kept offset (Linux 2024's negative
/// `tlb_offset` case), in both directions.
#[test]
fn partial_syncs_at_offsets() {
    let pool = small_pool();
    let c = Constraints::new().min_align_mask(0x1ff);
    let mut storage = vec![0u8; 2048];
    let at = 0x100usize.wrapping_sub(storage.as_ptr().addr()) & 0x1ff;
    let base = NonNull::from(&mut storage[at..at + 1500]).cast::<u8>();
    let whole = NonNull::slice_from_raw_parts(base, 1500);
    // SAFETY: `storage` outlives the mapping and is touched only through these pointers.
    let dma = unsafe { pool.map(whole, Direction::Bidirectional, &c) }.unwrap();
    write(&pool, dma + 600, &[0xaa; 50]);
    let part = |off: usize, len: usize| {
        // SAFETY: `off + len <= 1500`, inside the buffer `base` points into.
        NonNull::slice_from_raw_parts(unsafe { base.add(off) }, len)
    };
    // SAFETY: the mapping is ours; each part is the original's bytes for its address.
    unsafe { pool.sync_for_cpu_into(dma + 600, part(600, 50), Direction::Bidirectional) }.unwrap();
    // SAFETY: as above, and a refused call copies nothing.
    let wrong =
        unsafe { pool.sync_for_cpu_into(dma + 600, part(601, 50), Direction::Bidirectional) };
    assert!(matches!(wrong, Err(LookupError::WrongBuffer { .. })));
    // SAFETY: `part(1000, 8)` is written by this thread between pool calls only.
    unsafe { part(1000, 8).cast::<u8>().write_bytes(0x77, 8) };
    // SAFETY: as above.
    unsafe { pool.sync_for_device_from(dma + 1000, part(1000, 8), Direction::Bidirectional) }
        .unwrap();
    assert_eq!(read(&pool, dma + 1000, 8), [0x77; 8]);
    // SAFETY: as above.
    unsafe { pool.unmap_into(dma, whole, Direction::Bidirectional, Attrs::SKIP_CPU_SYNC) }.unwrap();
    let buf = &storage[at..at + 1500];
    assert_eq!(&buf[600..650], &[0xaa; 50]);
    assert_eq!(&buf[1000..1008], &[0x77; 8]);
    assert_eq!(buf[650], 0);
}

/// Coherent allocations: zeroed, owned by their handle, freed from raw parts too; stale
/// bytes never around a new mapping's data; zero fill shows the device nothing.
#[test]
fn coherent_zero_fill_and_stale_bytes() {
    let pool = small_pool();
    let ring = pool.alloc(700, &Constraints::NONE).unwrap();
    assert_eq!(read(&pool, ring.dma(), 1024), vec![0; 1024]);
    write(&pool, ring.dma(), &[0x11; 1024]);
    let (dma, _, size) = ring.into_raw();
    // SAFETY: the allocation is ours, taken apart just above, and no longer used.
    unsafe { pool.free_raw(dma, size) }.unwrap();
    let mut secret = vec![0x5eu8; 300];
    // SAFETY: `secret` outlives the mapping and is untouched meanwhile.
    let dma = unsafe {
        pool.map_attrs(
            NonNull::from(&mut secret[..]),
            Direction::FromDevice,
            &Constraints::NONE,
            Attrs::NONE.fill(Fill::Zero),
        )
    }
    .unwrap();
    assert_eq!(dma, pool.dma_range().start, "reuses the ring's dirty slot");
    assert_eq!(
        read(&pool, dma, 512),
        vec![0; 512],
        "no secret, no ring bytes"
    );
    write(&pool, dma, &[1; 10]);
    // SAFETY: the mapping is ours; `secret` is its original.
    unsafe {
        pool.unmap_into(
            dma,
            NonNull::from(&mut secret[..]),
            Direction::FromDevice,
            Attrs::NONE,
        )
    }
    .unwrap();
    assert_eq!(&secret[..10], &[1; 10]);
    assert!(secret[10..].iter().all(|b| *b == 0));
    assert_eq!(pool.stats().used_slots, 0);
}

/// A device thread writes the bounce buffer while the CPU copies out of it (and into it):
/// the copies are atomic per byte, so there is no data race, and each byte read is one the
/// device or the CPU wrote.
#[test]
fn a_device_thread_writes_while_the_cpu_copies() {
    let pool = Arc::new(small_pool());
    let mut buf = [0u8; 64];
    // SAFETY: `buf` outlives the mapping; this thread touches it only between pool calls.
    let dma = unsafe {
        pool.map(
            NonNull::from(&mut buf[..]),
            Direction::Bidirectional,
            &Constraints::NONE,
        )
    }
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let device = {
        let (pool, stop) = (pool.clone(), stop.clone());
        std::thread::spawn(move || {
            let p = pool.translate(dma, 64).unwrap().as_ptr();
            let mut round = 0u8;
            while !stop.load(Ordering::Relaxed) && round < 20 {
                round += 1;
                for i in 0..64 {
                    // SAFETY: inside the pool; the device writes with byte atomics, as the
                    // copies read.
                    unsafe { AtomicU8::from_ptr(p.add(i)) }.store(round, Ordering::Relaxed);
                }
            }
        })
    };
    for _ in 0..5 {
        let ptr = NonNull::from(&mut buf[..]);
        // SAFETY: the mapping is ours; `ptr` is its original.
        unsafe { pool.sync_for_cpu_into(dma, ptr, Direction::Bidirectional) }.unwrap();
        assert!(buf.iter().all(|b| *b <= 20));
        let ptr = NonNull::from(&mut buf[..]);
        // SAFETY: as above.
        unsafe { pool.sync_for_device_from(dma, ptr, Direction::Bidirectional) }.unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    device.join().unwrap();
    // SAFETY: as above.
    unsafe {
        pool.unmap_into(
            dma,
            NonNull::from(&mut buf[..]),
            Direction::Bidirectional,
            Attrs::NONE,
        )
    }
    .unwrap();
    assert_eq!(pool.stats().used_slots, 0);
}

/// The common path and the run cache: plain mappings of one, two and several slots given
/// back and taken again by the next mapping of their size class (the rest of a longer run
/// going back free), then one as long as a segment, which finds room only once every held
/// run is given back, and zero fill into a reused run.
#[test]
fn runs_given_back_are_taken_again_and_a_long_mapping_gets_them_all() {
    let pool = small_pool();
    let none = Constraints::NONE;
    let mut bufs: Vec<Vec<u8>> = [300usize, 900, 2500, 2000]
        .iter()
        .map(|&len| (0..len).map(|i| i as u8).collect())
        .collect();
    let dir = Direction::Bidirectional;
    for _round in 0..2 {
        let mut live = Vec::new();
        for buf in &mut bufs {
            // SAFETY: each buffer outlives its mapping and is untouched meanwhile.
            let dma = unsafe { pool.map(NonNull::from(&mut buf[..]), dir, &none) }.unwrap();
            assert_eq!(read(&pool, dma, buf.len()), *buf);
            live.push(dma);
        }
        for (buf, dma) in bufs.iter_mut().zip(live) {
            write(&pool, dma, &[0xee; 3]);
            // SAFETY: the live mapping of `buf`, given afresh.
            unsafe { pool.unmap_into(dma, NonNull::from(&mut buf[..]), dir, Attrs::NONE) }.unwrap();
            assert_eq!(&buf[..3], &[0xee; 3]);
            buf[..3].copy_from_slice(&[0, 1, 2]);
        }
    }
    assert_eq!(pool.stats().used_slots, 0);
    // A whole segment (8 slots of 512 bytes), zero-filled: held runs must come back first.
    let mut big = vec![0x77u8; 8 * 512];
    let zero = Attrs::ZERO_FILL;
    // SAFETY: as above.
    let dma = unsafe {
        pool.map_attrs(
            NonNull::from(&mut big[..]),
            Direction::FromDevice,
            &none,
            zero,
        )
    }
    .unwrap();
    assert!(read(&pool, dma, big.len()).iter().all(|&b| b == 0));
    // SAFETY: as above.
    unsafe {
        pool.unmap_into(
            dma,
            NonNull::from(&mut big[..]),
            Direction::FromDevice,
            Attrs::NONE,
        )
    }
    .unwrap();
    assert!(big.iter().all(|&b| b == 0));
    assert_eq!(pool.stats().used_slots, 0);
}

/// The elastic pool over the heap backend: maps that grow it (a region from `alloc`), the
/// device answering in a grown region, the copy back through a reborrowed buffer, a
/// lookup, a shrink that frees the regions (their metadata, then their memory), and the
/// pool dropped with its first region.
#[test]
fn elastic_pool_grows_maps_and_shrinks() {
    use swiotlb::{ElasticConfig, ElasticPool, HeapBackend};
    let config = ElasticConfig::new()
        .with_pool(
            Config::new()
                .with_slot_size(512)
                .with_segment_slots(8)
                .with_areas(1),
        )
        .with_initial(4096)
        .with_grow(4096, 4096)
        .with_max_bytes(32 << 10)
        .with_idle_time_ns(0);
    let pool = ElasticPool::new(HeapBackend::new(), config).expect("pool");
    let mut bufs: Vec<Vec<u8>> = (0..3).map(|i| vec![i as u8; 3000]).collect();
    let mut dmas = Vec::new();
    for b in &mut bufs {
        // SAFETY: each buffer outlives its mapping; between pool calls only this thread
        // touches it.
        let dma = unsafe {
            pool.try_map_attrs(
                NonNull::from(&mut b[..]),
                Direction::FromDevice,
                &Constraints::NONE,
                Attrs::ZERO_FILL,
            )
        }
        .unwrap();
        dmas.push(dma);
    }
    assert_eq!(pool.stats().sub_pools, 3);
    for (i, &dma) in dmas.iter().enumerate() {
        let at = pool.translate(dma, 3000).unwrap();
        // SAFETY: inside a live mapping, written as the device would.
        unsafe { swiotlb::shared::fill_shared(at.as_ptr(), 0x40 + i as u8, 3000) };
        assert!(pool.lookup(dma + 100).is_some());
    }
    for (i, (b, &dma)) in bufs.iter_mut().zip(&dmas).enumerate() {
        // A CPU use of the buffer between calls: the pointer kept at map dies.
        b[0] = 0xff;
        // SAFETY: `b` is the mapping's original, given fresh.
        unsafe {
            pool.unmap_into(
                dma,
                NonNull::from(&mut b[..]),
                Direction::FromDevice,
                Attrs::NONE,
            )
        }
        .unwrap();
        assert!(b.iter().all(|&x| x == 0x40 + i as u8));
    }
    assert_eq!(pool.shrink(), 2);
    assert_eq!(pool.stats().sub_pools, 1);
}

/// A map future registered with a full pool, woken (through an `Arc` waker) by the unmap
/// that makes room; a second one dropped while waiting deregisters.
#[test]
fn elastic_map_future_is_woken_by_an_unmap() {
    use core::future::Future;
    use core::task::{Context, Poll, Waker};
    use swiotlb::ElasticPool;
    struct Flag(AtomicBool);
    impl std::task::Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let pool = ElasticPool::fixed(small_pool());
    // Two segments of 8 slots: two hogs fill it.
    let mut hog = vec![0u8; 8 * 512];
    let mut hog2 = vec![0u8; 8 * 512];
    // SAFETY: the hogs outlive their mappings.
    let held = unsafe {
        pool.try_map(
            NonNull::from(&mut hog[..]),
            Direction::ToDevice,
            &Constraints::NONE,
        )
    }
    .unwrap();
    // SAFETY: as above.
    let held2 = unsafe {
        pool.try_map(
            NonNull::from(&mut hog2[..]),
            Direction::ToDevice,
            &Constraints::NONE,
        )
    }
    .unwrap();
    let flag = Arc::new(Flag(AtomicBool::new(false)));
    let waker = Waker::from(flag.clone());
    let mut cx = Context::from_waker(&waker);
    let mut buf = [9u8; 100];
    // SAFETY: `buf` outlives the future and its mapping.
    let mut fut = Box::pin(unsafe {
        pool.map_async(
            NonNull::from(&mut buf[..]),
            Direction::ToDevice,
            &Constraints::NONE,
            Attrs::NONE,
        )
    });
    assert!(fut.as_mut().poll(&mut cx).is_pending());
    {
        let mut other = [1u8; 10];
        // SAFETY: as above; dropped unpolled-to-completion.
        let mut waiting = Box::pin(unsafe {
            pool.map_async(
                NonNull::from(&mut other[..]),
                Direction::ToDevice,
                &Constraints::NONE,
                Attrs::NONE,
            )
        });
        assert!(waiting.as_mut().poll(&mut cx).is_pending());
    }
    // SAFETY: the live mapping of `hog`.
    unsafe { pool.unmap(held, hog.len(), Direction::ToDevice, Attrs::NONE) }.unwrap();
    assert!(flag.0.load(Ordering::SeqCst), "woken by the unmap");
    let Poll::Ready(Ok(dma)) = fut.as_mut().poll(&mut cx) else {
        panic!("room after the unmap")
    };
    drop(fut);
    // SAFETY: the live mappings of `buf` and `hog2`.
    unsafe { pool.unmap(dma, buf.len(), Direction::ToDevice, Attrs::NONE) }.unwrap();
    // SAFETY: as above.
    unsafe { pool.unmap(held2, hog2.len(), Direction::ToDevice, Attrs::NONE) }.unwrap();
    assert_eq!(pool.stats().used_slots, 0);
}

/// The safe guards: a `DmaMut` whose buffer the CPU writes through `as_mut_slice` between
/// syncs (which invalidates any pointer taken at map: the guard must hand the pool fresh
/// ones), a `DmaRef`, owned buffers moved through a queue before their unmap, and a
/// coherent guard read and written.
#[test]
fn guards_give_the_pool_fresh_pointers() {
    use swiotlb::{CoherentGuard, DmaMut, DmaOwned, DmaRef};
    let pool = small_pool();
    let c = Constraints::new().min_align_mask(0x3ff);
    let mut buf = vec![0u8; 700];
    let mut m = DmaMut::bidirectional(&pool, &mut buf[..], &c).unwrap();
    m.as_mut_slice()[600..].fill(3);
    m.sync_for_device(600..).unwrap();
    assert_eq!(read(&pool, m.dma() + 600, 100), vec![3; 100]);
    write(&pool, m.dma() + 520, &[5; 20]);
    m.sync_for_cpu(520..540).unwrap();
    assert_eq!(m.as_slice()[520..540], [5; 20]);
    m.as_mut_slice()[0] = 9;
    write(&pool, m.dma() + 1, &[6]);
    drop(m); // copies back through a pointer taken now
    assert_eq!(buf[..2], [0, 6]);

    let command = [1u8; 40];
    let r = DmaRef::to_device(&pool, &command, &c).unwrap();
    assert_eq!(read(&pool, r.dma(), 40), vec![1; 40]);
    r.unmap().unwrap();

    let mut queue = Vec::new();
    for i in 0..3u8 {
        let m = DmaOwned::map(
            &pool,
            vec![i; 300],
            Direction::FromDevice,
            &Constraints::NONE,
            Attrs::ZERO_FILL,
        )
        .unwrap();
        queue.push(m); // the Vec moves, its heap bytes do not
    }
    queue.reverse();
    for m in &queue {
        write(&pool, m.dma(), &[0xaa; 300]);
    }
    for m in queue {
        assert_eq!(m.unmap().unwrap(), vec![0xaa; 300]);
    }

    let mut ring = CoherentGuard::new(&pool, 200, &Constraints::NONE).unwrap();
    ring.write(100, &[7; 50]).unwrap();
    let mut back = [0u8; 60];
    ring.read(95, &mut back).unwrap();
    assert_eq!(back[..5], [0; 5]);
    assert_eq!(back[5..55], [7; 50]);
    drop(ring);
    assert_eq!(pool.stats().used_slots, 0);
}

/// The allocator: a `Vec` in pool memory grown through the size classes into a large block
/// and shrunk back (each move a shared copy), a `Box`, zeroed blocks, everything given back.
#[test]
fn shared_alloc_vec_grows_and_shrinks_in_pool_memory() {
    use swiotlb::allocator_api2::alloc::Allocator;
    use swiotlb::allocator_api2::vec::Vec as AVec;
    use swiotlb::SharedAlloc;
    let config = Config::new()
        .with_slot_size(512)
        .with_segment_slots(8)
        .with_areas(1);
    let pool = Pool::allocate(32 * 512, config).expect("pool");
    {
        let alloc = SharedAlloc::new(&pool, Constraints::NONE);
        let mut v: AVec<u8, _> = AVec::new_in(&alloc);
        for i in 0..2100u32 {
            v.push(i as u8);
        }
        assert!(v.iter().enumerate().all(|(i, &b)| b == i as u8));
        let dma = alloc.dma_addr(v.as_ptr()).unwrap();
        assert_eq!(read(&pool, dma + 5, 3), [5, 6, 7]);
        v.truncate(40);
        v.shrink_to_fit();
        assert_eq!(v[39], 39);
        let layout = core::alloc::Layout::from_size_align(100, 16).unwrap();
        let z = alloc.allocate_zeroed(layout).unwrap();
        let mut back = [1u8; 100];
        // SAFETY: a live block of 100 bytes or more.
        unsafe { copy_from_shared(back.as_mut_ptr(), z.cast::<u8>().as_ptr(), 100) };
        assert_eq!(back, [0; 100]);
        // SAFETY: the block just allocated, with its layout.
        unsafe { alloc.deallocate(z.cast(), layout) };
        let b = swiotlb::allocator_api2::boxed::Box::new_in(0x1234u32, &alloc);
        assert_eq!(*b, 0x1234);
        drop((v, b));
    }
    assert_eq!(pool.stats().used_slots, 0);
}
