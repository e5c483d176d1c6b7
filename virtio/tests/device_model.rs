//! The device model is honest: anything outside the pool, or a chain it cannot walk, fails
//! the device loudly instead of being skipped.

mod common;

use common::{assert_idle, region, MiniQueue, DESC_F_INDIRECT};
use swiotlb::{Coherent, Constraints};
use swiotlb_virtio::testing::{
    BlockDevice, DeviceError, DeviceHandle, DmaRegion, Mode, PoolTransport, TransportBuilder,
    F_INDIRECT_DESC,
};
use swiotlb_virtio::DESC_F_NEXT;

fn rig() -> (&'static DmaRegion, PoolTransport, DeviceHandle, MiniQueue) {
    let region = region(256 << 10);
    let (mut transport, device) = TransportBuilder::new(BlockDevice::new(64), region)
        .indirect(true)
        .mode(Mode::Manual)
        .build();
    let queue = MiniQueue::new(region.pool(), &mut transport, 16, F_INDIRECT_DESC);
    (region, transport, device, queue)
}

/// A coherent scratch buffer inside the pool, for hand-made requests.
fn scratch(region: &DmaRegion, bytes: usize) -> Coherent {
    region.pool().try_alloc(bytes, &Constraints::NONE).unwrap()
}

/// Frees the queue and the scratch buffers, and checks the pool is idle.
fn finish(
    region: &DmaRegion,
    mut transport: PoolTransport,
    queue: MiniQueue,
    scratch: Vec<Coherent>,
) {
    queue.release(&mut transport);
    for c in scratch {
        region.pool().free(c).unwrap();
    }
    assert_idle(region.pool());
}

#[test]
fn an_indirect_table_outside_the_pool_fails_the_device() {
    let (region, transport, device, mut queue) = rig();
    let table = [0u8; 48];
    let addr = table.as_ptr() as u64;
    queue.submit_raw(&[(addr, 48, DESC_F_INDIRECT)]);
    let err = device.process().unwrap_err();
    assert!(
        matches!(err, DeviceError::IndirectTableOutsidePool { addr: a, len: 48, .. } if a == addr),
        "{err}"
    );
    assert_eq!(device.failure(), Some(err));
    finish(region, transport, queue, vec![]);
}

#[test]
fn a_descriptor_past_the_end_of_the_pool_fails_the_device() {
    let (region, transport, device, mut queue) = rig();
    let end = region.pool().sub_pools()[0].dma_range.end;
    let inside_alloc = scratch(region, 16);
    let inside = inside_alloc.dma();
    // Starts inside the pool, runs 1 byte past its end.
    queue.submit_raw(&[(inside, 16, DESC_F_NEXT), (end - 8, 9, 2)]);
    let err = device.process().unwrap_err();
    assert!(
        matches!(err, DeviceError::DescriptorOutsidePool { addr, len: 9, .. } if addr == end - 8),
        "{err}"
    );
    finish(region, transport, queue, vec![inside_alloc]);
}

#[test]
fn a_descriptor_loop_fails_the_device() {
    let (region, transport, device, mut queue) = rig();
    let buf_alloc = scratch(region, 64);
    let buf = buf_alloc.dma();
    // The last descriptor has NEXT and points back at the head.
    queue.submit_raw(&[(buf, 16, DESC_F_NEXT), (buf + 16, 16, DESC_F_NEXT)]);
    let err = device.process().unwrap_err();
    assert!(matches!(err, DeviceError::BrokenChain { .. }), "{err}");
    finish(region, transport, queue, vec![buf_alloc]);
}

#[test]
fn rings_outside_the_pool_fail_the_device() {
    use virtio_drivers::transport::Transport;
    let region = region(64 << 10);
    let (mut transport, device) = TransportBuilder::new(BlockDevice::new(8), region)
        .mode(Mode::Manual)
        .build();
    let heap = vec![0u8; 4096];
    let at = heap.as_ptr() as u64;
    transport.queue_set(0, 4, at, at + 1024, at + 2048);
    let err = device.process().unwrap_err();
    assert!(
        matches!(err, DeviceError::RingsOutsidePool { desc, .. } if desc == at),
        "{err}"
    );
}

#[test]
fn a_well_formed_hand_made_request_is_served() {
    // The same rig serves a correct request: the failures above are the checks, not the rig.
    let (region, transport, device, mut queue) = rig();
    let req_alloc = scratch(region, 4096);
    let req = req_alloc.dma();
    let header = [1u8, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]; // OUT, sector 2
    let cpu = region.pool().translate(req, 4096).unwrap();
    // SAFETY: `req` is a live coherent allocation of 4096 bytes; the device has not been
    // given it yet.
    unsafe {
        core::ptr::copy_nonoverlapping(header.as_ptr(), cpu.as_ptr(), 16);
        core::ptr::write_bytes(cpu.as_ptr().add(16), 0x77, 512);
    }
    queue.submit_raw(&[
        (req, 16, DESC_F_NEXT),
        (req + 16, 512, DESC_F_NEXT),
        (req + 1024, 1, 2),
    ]);
    assert_eq!(device.process().unwrap(), 1);
    assert_eq!(queue.pop_used().map(|(_, len)| len), Some(1));
    // SAFETY: the status byte of the coherent allocation, written by the device.
    assert_eq!(unsafe { cpu.as_ptr().add(1024).read_volatile() }, 0);
    let disk = device
        .with_model(|d: &mut BlockDevice| d.disk()[1024..1536].to_vec())
        .unwrap();
    assert!(disk.iter().all(|&b| b == 0x77));
    assert!(device.failure().is_none());
    finish(region, transport, queue, vec![req_alloc]);
}
