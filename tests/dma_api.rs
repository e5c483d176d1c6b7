//! `PoolDmaOp` driven through the `dma-api` crate's own types, as a driver written against
//! that crate would: streaming maps in each direction with explicit ownership transfers,
//! coherent and contiguous arrays and boxes, the device's constraints, and errors.

use std::sync::OnceLock;
use swiotlb::dma_api::{
    DeviceDma, DmaCoherency, DmaConstraints, DmaDeviceInfo, DmaDirection, DmaDomainId, DmaError,
};
use swiotlb::shared::{copy_from_shared, copy_to_shared};
use swiotlb::{Config, Pool, PoolDmaOp};

/// One pool and one adapter for the whole file (`DeviceDma` wants `&'static dyn DmaOp`);
/// tests that check the pool's use take `LOCK`.
fn op() -> &'static PoolDmaOp<Pool> {
    static POOL: OnceLock<Pool> = OnceLock::new();
    static OP: OnceLock<PoolDmaOp<Pool>> = OnceLock::new();
    let pool =
        POOL.get_or_init(|| Pool::allocate(1 << 20, Config::new().with_areas(1)).expect("pool"));
    OP.get_or_init(|| PoolDmaOp::new(pool))
}

static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn device(mask: u64) -> DeviceDma {
    let info = DmaDeviceInfo::new(
        DmaDomainId::Direct,
        DmaCoherency::Coherent,
        DmaConstraints::new(mask),
    );
    DeviceDma::new(info, op())
}

fn device_read(dma: u64, len: usize) -> Vec<u8> {
    let at = op().pool().translate(dma, len).expect("in the pool");
    let mut out = vec![0; len];
    // SAFETY: `translate` checked the range; read as the device would.
    unsafe { copy_from_shared(out.as_mut_ptr(), at.as_ptr(), len) };
    out
}

fn device_write(dma: u64, bytes: &[u8]) {
    let at = op()
        .pool()
        .translate(dma, bytes.len())
        .expect("in the pool");
    // SAFETY: as in `device_read`.
    unsafe { copy_to_shared(at.as_ptr(), bytes.as_ptr(), bytes.len()) };
}

#[test]
fn streaming_maps_bounce_each_way_through_the_pool() {
    let _g = LOCK.lock().unwrap();
    let dev = device(u64::MAX);
    let pool = op().pool();

    // The driver fills a command and hands it over.
    let mut cmd = [0u32; 16];
    let mut map = dev
        .map_streaming_slice(&mut cmd, 64, DmaDirection::ToDevice)
        .unwrap();
    let dma = map.dma_addr().as_u64();
    assert!(pool.contains(dma));
    assert_eq!(dma % 64, 0, "aligned as asked");
    assert!(
        map.bounce_ptr().is_none(),
        "pool memory is not handed to dma-api's copies"
    );
    map.write_for_device(16, |w| {
        w.iter_mut().enumerate().for_each(|(i, x)| *x = i as u32)
    });
    let seen = device_read(dma, 64);
    assert_eq!(&seen[4..8], &1u32.to_ne_bytes());
    drop(map);

    // The device answers into a receive buffer; the driver takes part of it, then all.
    let mut rx = [0x11u8; 512];
    let map = dev
        .map_streaming_slice(&mut rx, 1, DmaDirection::FromDevice)
        .unwrap();
    let dma = map.dma_addr().as_u64();
    assert_eq!(
        device_read(dma, 512),
        vec![0; 512],
        "the device is shown zeros"
    );
    device_write(dma, &[0xa5; 100]);
    map.complete_for_cpu(0..50);
    assert_eq!(map.read_cpu(49), Some(0xa5));
    assert_eq!(map.read_cpu(50), Some(0x11), "only the range synced");
    let all = map.read_from_device(100, |b| b.to_vec());
    assert_eq!(all, vec![0xa5; 100]);
    drop(map);
    assert_eq!(rx[..100], [0xa5; 100]);
    assert_eq!(rx[100..], [0x11; 412], "the unmap copies nothing back");

    // Both ways, with a partial ownership transfer to the device.
    let mut buf = [3u8; 300];
    let mut map = dev
        .map_streaming_slice_for_device(&mut buf, 1, DmaDirection::Bidirectional)
        .unwrap();
    let dma = map.dma_addr().as_u64();
    assert_eq!(device_read(dma, 300), vec![3; 300]);
    map.set_cpu(200, 9);
    map.prepare_for_device(200..201);
    assert_eq!(device_read(dma + 199, 3), [3, 9, 3]);
    device_write(dma + 10, &[7; 5]);
    map.complete_for_cpu(10..15);
    assert_eq!(map.to_vec_cpu()[10..15], [7; 5]);
    drop(map);
    assert_eq!(pool.stats().used_slots, 0);
}

#[test]
fn coherent_and_contiguous_allocations_come_from_the_pool() {
    let _g = LOCK.lock().unwrap();
    let dev = device(u64::MAX);
    let pool = op().pool();
    let mut ring = dev.coherent_array_zero::<u64>(256).unwrap();
    let dma = ring.dma_addr().as_u64();
    assert!(pool.contains(dma));
    assert_eq!(dma % 4096, 0);
    assert_eq!(ring.read_cpu(255), Some(0));
    ring.set_cpu(3, 0x1122_3344_5566_7788);
    assert_eq!(
        device_read(dma + 24, 8),
        0x1122_3344_5566_7788u64.to_ne_bytes()
    );
    let data = dev
        .contiguous_array_zero_with_align::<u8>(5000, 8192, DmaDirection::FromDevice)
        .unwrap();
    assert_eq!(data.dma_addr().as_u64() % 8192, 0);
    device_write(data.dma_addr().as_u64() + 4999, &[1]);
    data.complete_for_cpu(4999..5000);
    assert_eq!(data.read_cpu(4999), Some(1));
    let boxed = dev.coherent_box_zero::<[u32; 4]>().unwrap();
    assert_eq!(boxed.read_cpu(), [0; 4]);
    assert!(pool.stats().used_slots > 0);
    drop((ring, data, boxed));
    assert_eq!(pool.stats().used_slots, 0);
}

#[test]
fn constraints_and_refusals() {
    let _g = LOCK.lock().unwrap();
    let pool = op().pool();
    // A device that reaches only the first 64 KiB of the pool.
    let limit = pool.dma_range().start + 64 * 1024 - 1;
    let dev = device(limit);
    let mut held = Vec::new();
    loop {
        match dev.contiguous_array_zero::<u8>(4096, DmaDirection::ToDevice) {
            Ok(a) => {
                assert!(a.dma_addr().as_u64() + 4095 <= limit);
                held.push(a);
            }
            Err(e) => {
                assert_eq!(e, DmaError::NoMemory);
                break;
            }
        }
    }
    assert_eq!(held.len(), 16, "64 KiB reachable, 4 KiB each");
    drop(held);

    // A device below the pool.
    let below = device(pool.dma_range().start - 1);
    let mut buf = [0u8; 64];
    assert!(matches!(
        below.map_streaming_slice(&mut buf, 1, DmaDirection::ToDevice),
        Err(DmaError::DmaMaskNotMatch { .. })
    ));
    // A mapping larger than the device's segments, or than one pool segment.
    let small_segments =
        dev.with_constraints(DmaConstraints::new(u64::MAX).with_max_segment_size(32));
    assert_eq!(
        small_segments
            .map_streaming_slice(&mut buf, 1, DmaDirection::ToDevice)
            .err(),
        Some(DmaError::SegmentTooLarge { size: 64, max: 32 })
    );
    let mut big = vec![0u8; 512 * 1024];
    assert!(matches!(
        device(u64::MAX).map_streaming_slice(&mut big, 1, DmaDirection::ToDevice),
        Err(DmaError::SegmentTooLarge { .. })
    ));
    // A boundary that is no power of two.
    let odd = device(u64::MAX).with_constraints(DmaConstraints::new(u64::MAX).with_boundary(3000));
    assert!(matches!(
        odd.map_streaming_slice(&mut buf, 1, DmaDirection::ToDevice),
        Err(DmaError::BoundaryCross { .. })
    ));
    assert_eq!(pool.stats().used_slots, 0, "nothing mapped by a refusal");
}
