//! Scenarios sized for Miri (`bin/miri.sh`): the `Hal` round trip exactly as `virtio-drivers`
//! drives it, and `map_sg`. No device model (its mmap is not for Miri): the "device" reads
//! and writes the pool through `translate` and `swiotlb::shared`.

use core::ptr::NonNull;
use swiotlb::shared::{copy_from_shared, copy_to_shared};
use swiotlb::{Config, Constraints, ElasticPool, Pool};
use swiotlb_virtio::virtio_drivers::{BufferDirection, Hal, PAGE_SIZE};
use swiotlb_virtio::{bind_pool, map_sg, HalOptions, PoolBinding, SgBuf, SwiotlbHal};

fn pool() -> ElasticPool {
    ElasticPool::fixed(
        Pool::allocate(64 * 1024, Config::new().with_slot_size(512).with_areas(1)).expect("pool"),
    )
}

/// The pool of the `Hal` test: a binding needs a `&'static ElasticPool`, and one held by a
/// static (rather than leaked) is one Miri does not report as a leak.
static HAL_POOL: std::sync::OnceLock<ElasticPool> = std::sync::OnceLock::new();

fn device_read(pool: &ElasticPool, dma: u64, len: usize) -> Vec<u8> {
    let at = pool.translate(dma, len).expect("in the pool");
    let mut out = vec![0; len];
    // SAFETY: `translate` checked the range; read as the device would.
    unsafe { copy_from_shared(out.as_mut_ptr(), at.as_ptr(), len) };
    out
}

fn device_write(pool: &ElasticPool, dma: u64, bytes: &[u8]) {
    let at = pool.translate(dma, bytes.len()).expect("in the pool");
    // SAFETY: as in `device_read`, written as the device would.
    unsafe { copy_to_shared(at.as_ptr(), bytes.as_ptr(), bytes.len()) };
}

/// `share` then `unshare` the way `virtio-drivers`' `VirtQueue::add` / `pop_used` do: each
/// call gets its own reborrow of the driver's buffer, so the pointer `share` was given is
/// invalid (Stacked Borrows) by the time `unshare` runs. The copy back must go through the
/// pointer `unshare` is given; it went through the old one, which Miri reported.
#[test]
fn hal_share_unshare_as_virtio_drivers_calls_them() {
    bind_pool!(P);
    let pool = HAL_POOL.get_or_init(pool);
    P::register(pool, HalOptions::new()).unwrap();
    type H = SwiotlbHal<P>;

    let mut request = [7u8; 16];
    let mut response = [0xaau8; 40];
    // SAFETY: the buffers outlive the shares and are untouched until unshared.
    let req_dma = unsafe {
        H::share(
            NonNull::from(&mut request[..]),
            BufferDirection::DriverToDevice,
        )
    };
    // SAFETY: as above.
    let resp_dma = unsafe {
        H::share(
            NonNull::from(&mut response[..]),
            BufferDirection::DeviceToDriver,
        )
    };
    assert_eq!(device_read(pool, req_dma, 16), [7; 16]);
    assert_eq!(
        device_read(pool, resp_dma, 40),
        [0; 40],
        "receive buffer zero-filled"
    );
    device_write(pool, resp_dma, &[0x42; 8]);
    // SAFETY: what `share` returned, with fresh reborrows of the same buffers.
    unsafe {
        H::unshare(
            req_dma,
            NonNull::from(&mut request[..]),
            BufferDirection::DriverToDevice,
        );
        H::unshare(
            resp_dma,
            NonNull::from(&mut response[..]),
            BufferDirection::DeviceToDriver,
        );
    }
    assert_eq!(&response[..8], &[0x42; 8]);
    assert!(response[8..].iter().all(|b| *b == 0));

    // Rings: page-aligned, zeroed, given back.
    let (paddr, vaddr) = H::dma_alloc(1, BufferDirection::Both);
    assert_ne!(paddr, 0);
    assert_eq!(vaddr.as_ptr().addr() % PAGE_SIZE, 0);
    assert_eq!(device_read(pool, paddr, PAGE_SIZE), vec![0; PAGE_SIZE]);
    // SAFETY: what `dma_alloc` returned, once.
    assert_eq!(unsafe { H::dma_dealloc(paddr, vaddr, 1) }, 0);
    assert_eq!(pool.stats().used_slots, 0);
}

/// A scatter-gather list with an indirect table, mapped all-or-nothing and unmapped with a
/// used length.
#[test]
fn map_sg_round_trip_with_an_indirect_table() {
    let pool = &pool();
    let header = [1u8; 16];
    let mut data = [0xbbu8; 100];
    let mut status = [0xffu8; 1];
    let mut sg = map_sg(
        pool,
        [
            SgBuf::Out(&header),
            SgBuf::In(&mut data),
            SgBuf::In(&mut status),
        ],
        &Constraints::NONE,
    )
    .unwrap();
    let (table, len) = sg.map_indirect_table(&Constraints::NONE).unwrap();
    assert_eq!(len, 48);
    assert_eq!(
        device_read(pool, table, 8),
        sg.segments()[0].dma.to_le_bytes()
    );
    let segs = sg.segments().to_vec();
    device_write(pool, segs[1].dma, &[5; 100]);
    device_write(pool, segs[2].dma, &[0]);
    let done = sg.unmap(60).unwrap();
    assert_eq!(done.copied_back, 60);
    assert_eq!(&data[..60], &[5; 60]);
    assert_eq!(&data[60..], &[0xbb; 40], "past the used length: untouched");
    assert_eq!(
        status,
        [0xff],
        "the used length ran out before the status byte"
    );
    assert_eq!(pool.stats().used_slots, 0);
}
