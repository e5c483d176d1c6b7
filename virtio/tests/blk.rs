//! virtio-drivers' `VirtIOBlk` over `SwiotlbHal`, against a virtio-queue / vm-memory block
//! device that can reach only the pool.

mod common;

use common::{assert_idle, pattern, region};
use core::ptr::NonNull;
use swiotlb::Fill;
use swiotlb_virtio::testing::{
    BlockDevice, DeviceError, DeviceHandle, DmaRegion, Mode, PoolTransport, TransportBuilder,
    F_EVENT_IDX, F_INDIRECT_DESC, SECTOR_SIZE,
};
use swiotlb_virtio::{bind_pool, HalCounters, HalOptions, PoolBinding, SwiotlbHal};
use virtio_drivers::device::blk::{BlkReq, BlkResp, RespStatus, VirtIOBlk};
use virtio_drivers::{BufferDirection, Error, Hal, PhysAddr};

type Blk<B> = VirtIOBlk<SwiotlbHal<B>, PoolTransport>;

const DISK_SECTORS: u64 = 2048;

fn setup<B: PoolBinding>(
    pool_bytes: usize,
    builder: impl FnOnce(TransportBuilder) -> TransportBuilder,
) -> (&'static DmaRegion, Blk<B>, DeviceHandle) {
    let region = region(pool_bytes);
    B::register(region.pool(), HalOptions::new()).unwrap();
    let (transport, device) = builder(TransportBuilder::new(
        BlockDevice::new(DISK_SECTORS),
        region,
    ))
    .build();
    let blk = Blk::<B>::new(transport).expect("driver init");
    (region, blk, device)
}

/// (first sector, sectors): one sector up to the largest mapping (256 KiB), unaligned
/// starts, overlapping rewrites.
const REQUESTS: [(usize, usize); 7] = [
    (0, 1),
    (1, 8),
    (9, 3),
    (100, 128),
    (300, 255),
    (1024, 512),
    (5, 20),
];

fn write_read_back<B: PoolBinding>(builder: impl FnOnce(TransportBuilder) -> TransportBuilder) {
    let (region, mut blk, device) = setup::<B>(1 << 20, builder);
    let mut shadow = vec![0u8; DISK_SECTORS as usize * SECTOR_SIZE];
    for (i, &(sector, count)) in REQUESTS.iter().enumerate() {
        let data = pattern(count * SECTOR_SIZE, i as u32);
        blk.write_blocks(sector, &data).unwrap();
        shadow[sector * SECTOR_SIZE..][..data.len()].copy_from_slice(&data);
    }
    // The device's disk holds what was written: the data went through the pool.
    let disk = device
        .with_model(|d: &mut BlockDevice| d.disk().to_vec())
        .unwrap();
    assert!(disk == shadow, "device disk differs from what was written");
    for &(sector, count) in &REQUESTS {
        let mut back = vec![0xeeu8; count * SECTOR_SIZE];
        blk.read_blocks(sector, &mut back).unwrap();
        assert!(
            back[..] == shadow[sector * SECTOR_SIZE..][..back.len()],
            "read back of sector {sector} x {count} differs"
        );
    }
    let stats = device.stats();
    assert_eq!(stats.chains, 2 * REQUESTS.len() as u64);
    if device.driver_features() & F_INDIRECT_DESC != 0 {
        assert_eq!(stats.indirect_chains, stats.chains, "{stats:?}");
    } else {
        assert_eq!(stats.indirect_chains, 0, "{stats:?}");
    }
    assert!(device.failure().is_none());
    drop(blk);
    assert_idle(region.pool());
}

#[test]
fn blk_write_read_back_direct_descriptors() {
    bind_pool!(P);
    write_read_back::<P>(|b| b);
}

#[test]
fn blk_write_read_back_indirect_descriptors() {
    bind_pool!(P);
    write_read_back::<P>(|b| b.indirect(true));
}

#[test]
fn blk_write_read_back_event_idx_and_indirect() {
    bind_pool!(P);
    write_read_back::<P>(|b| b.indirect(true).event_idx(true));
}

#[test]
fn blk_negotiates_what_the_device_offers() {
    bind_pool!(P);
    let (region, blk, device) = setup::<P>(256 << 10, |b| b.indirect(true));
    assert_ne!(device.driver_features() & F_INDIRECT_DESC, 0);
    assert_eq!(device.driver_features() & F_EVENT_IDX, 0);
    drop(blk);
    assert_idle(region.pool());
}

/// Exact bytes copied through the Hal for one 4 KiB write and one 4 KiB read, with each
/// fill rule for device-writable buffers.
#[test]
fn blk_bytes_copied_per_request() {
    fn measure<B: PoolBinding>(indirect: bool, fill: Fill) -> (HalCounters, HalCounters) {
        let region = region(256 << 10);
        B::register(region.pool(), HalOptions::new().fill(fill)).unwrap();
        let (transport, _device) = TransportBuilder::new(BlockDevice::new(DISK_SECTORS), region)
            .indirect(indirect)
            .build();
        let mut blk = Blk::<B>::new(transport).expect("driver init");
        let data = pattern(4096, 1);
        let before = B::counters();
        blk.write_blocks(8, &data).unwrap();
        let write = B::counters().since(&before);
        let mut back = vec![0xeeu8; 4096];
        let before = B::counters();
        blk.read_blocks(8, &mut back).unwrap();
        let read = B::counters().since(&before);
        assert_eq!(back, data);
        drop(blk);
        assert_idle(region.pool());
        for c in [write, read] {
            assert_eq!(c.shares, c.unshares);
            assert_eq!(c.share_waits, 0);
        }
        (write, read)
    }
    let counts = |c: HalCounters| (c.shares, c.bytes_copied_in, c.bytes_copied_out);
    // The default, zero fill. Write: header 16 + data 4096 copied in; the status byte is
    // device-writable, zero-filled, and copied back.
    bind_pool!(Direct);
    let (w, r) = measure::<Direct>(false, Fill::Zero);
    assert_eq!(counts(w), (3, 4112, 1));
    // Read: only the header goes in; nothing of `back` (0xee) reaches the pool.
    assert_eq!(counts(r), (3, 16, 4097));
    // Plus the indirect table: three 16-byte descriptors, a ToDevice mapping.
    bind_pool!(Indirect);
    let (w, r) = measure::<Indirect>(true, Fill::Zero);
    assert_eq!(counts(w), (4, 4160, 1));
    assert_eq!(counts(r), (4, 64, 4097));
    // Linux's rule: device-writable buffers are copied in too (CVE-2022-0854).
    bind_pool!(Original);
    let (w, r) = measure::<Original>(false, Fill::Original);
    assert_eq!(counts(w), (3, 4113, 1));
    assert_eq!(counts(r), (3, 4113, 4097));
}

/// Several requests in flight: submitted without waiting, served in one batch by the device,
/// completed in the order the device used them.
fn in_flight<B: PoolBinding>(indirect: bool, n: usize) {
    let (region, mut blk, device) =
        setup::<B>(1 << 20, |b| b.indirect(indirect).mode(Mode::Manual));
    // The rings: coherent allocations that live as long as the driver.
    let rings = region.pool().stats().used_slots;
    let datas: Vec<Vec<u8>> = (0..n)
        .map(|i| pattern((2 * SECTOR_SIZE) << (i % 4), 100 + i as u32))
        .collect();
    let mut reqs: Vec<BlkReq> = (0..n).map(|_| BlkReq::default()).collect();
    let mut resps: Vec<BlkResp> = (0..n).map(|_| BlkResp::default()).collect();
    let mut tokens = Vec::new();
    for i in 0..n {
        // SAFETY: req, data and resp of request i are not touched until it completes below.
        let t =
            unsafe { blk.write_blocks_nb(64 * i, &mut reqs[i], &datas[i], &mut resps[i]) }.unwrap();
        tokens.push(t);
    }
    // All mapped, none served yet.
    assert_eq!(device.stats().chains, 0);
    assert!(region.pool().stats().used_slots > rings);
    assert_eq!(device.process().unwrap(), n);
    assert_eq!(device.stats().max_batch, n as u64);
    let mut done = 0;
    while let Some(token) = blk.peek_used() {
        let i = tokens
            .iter()
            .position(|&t| t == token)
            .expect("known token");
        // SAFETY: the same buffers as were given to write_blocks_nb for this token.
        unsafe { blk.complete_write_blocks(token, &reqs[i], &datas[i], &mut resps[i]) }.unwrap();
        assert_eq!(resps[i].status(), RespStatus::OK);
        done += 1;
    }
    assert_eq!(done, n);
    // Every buffer unshared: only the rings remain.
    assert_eq!(region.pool().stats().used_slots, rings);
    // Now read them all back in flight.
    let mut backs: Vec<Vec<u8>> = datas.iter().map(|d| vec![0u8; d.len()]).collect();
    tokens.clear();
    for i in 0..n {
        // SAFETY: as above.
        let t = unsafe { blk.read_blocks_nb(64 * i, &mut reqs[i], &mut backs[i], &mut resps[i]) }
            .unwrap();
        tokens.push(t);
    }
    assert_eq!(device.process().unwrap(), n);
    while let Some(token) = blk.peek_used() {
        let i = tokens.iter().position(|&t| t == token).unwrap();
        // SAFETY: as above.
        unsafe { blk.complete_read_blocks(token, &reqs[i], &mut backs[i], &mut resps[i]) }.unwrap();
    }
    assert!(backs == datas, "in-flight reads differ from the writes");
    drop(blk);
    assert_idle(region.pool());
}

#[test]
fn blk_requests_in_flight_direct() {
    bind_pool!(P);
    // 16 descriptors, 3 per request.
    in_flight::<P>(false, 5);
}

#[test]
fn blk_requests_in_flight_indirect() {
    bind_pool!(P);
    // One descriptor per request: the whole queue.
    in_flight::<P>(true, 16);
}

#[test]
fn blk_queue_full_is_an_error_and_leaks_nothing() {
    bind_pool!(P);
    let (region, mut blk, device) = setup::<P>(1 << 20, |b| b.mode(Mode::Manual));
    let data = pattern(SECTOR_SIZE, 9);
    let mut reqs: Vec<BlkReq> = (0..6).map(|_| BlkReq::default()).collect();
    let mut resps: Vec<BlkResp> = (0..6).map(|_| BlkResp::default()).collect();
    let mut tokens = Vec::new();
    let mut refused = None;
    for i in 0..6 {
        // SAFETY: buffers untouched until completion below.
        match unsafe { blk.write_blocks_nb(i, &mut reqs[i], &data, &mut resps[i]) } {
            Ok(t) => tokens.push((i, t)),
            Err(e) => refused = Some(e),
        }
    }
    assert_eq!(refused, Some(Error::QueueFull));
    assert_eq!(tokens.len(), 5);
    device.process().unwrap();
    for (i, t) in tokens {
        // SAFETY: same buffers as submitted.
        unsafe { blk.complete_write_blocks(t, &reqs[i], &data, &mut resps[i]) }.unwrap();
    }
    drop(blk);
    assert_idle(region.pool());
}

#[test]
fn blk_device_id_flush_and_out_of_range() {
    bind_pool!(P);
    let (region, mut blk, device) = setup::<P>(256 << 10, |b| b);
    let mut id = [0u8; 20];
    let n = blk.device_id(&mut id).unwrap();
    assert_eq!(&id[..n], b"swiotlb-virtio-blk");
    blk.flush().unwrap();
    // Past the end of the disk: the device answers IOERR, the driver reports it.
    let mut buf = vec![0u8; SECTOR_SIZE];
    assert_eq!(
        blk.read_blocks(DISK_SECTORS as usize, &mut buf),
        Err(Error::IoError)
    );
    let stats = device.with_model(|d: &mut BlockDevice| d.stats()).unwrap();
    assert_eq!((stats.flushes, stats.io_errors), (1, 1));
    drop(blk);
    assert_idle(region.pool());
}

#[test]
fn blk_pool_too_small_for_the_rings_fails_init_cleanly() {
    bind_pool!(P);
    // A pool of one page: the first ring allocation (descriptors and available ring, one
    // page) fits, the second (used ring) does not.
    let region = region(4096);
    P::register(region.pool(), HalOptions::new()).unwrap();
    let (transport, _device) = TransportBuilder::new(BlockDevice::new(8), region).build();
    assert_eq!(Blk::<P>::new(transport).err(), Some(Error::DmaError));
    assert_eq!(P::counters().coherent_failures, 1);
    assert_idle(region.pool());
}

/// A Hal that "forgets" to bounce: rings from the pool, buffers at their CPU addresses.
/// The device, which can reach only the pool, must refuse loudly.
struct LeakyHal;
bind_pool!(LeakyPool);

// SAFETY: allocation is `SwiotlbHal`'s; share returns the buffer's own address, which is
// exactly the bug under test (it is never dereferenced by this process as a device address).
unsafe impl Hal for LeakyHal {
    fn dma_alloc(pages: usize, d: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        SwiotlbHal::<LeakyPool>::dma_alloc(pages, d)
    }
    unsafe fn dma_dealloc(paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        // SAFETY: forwarded unchanged from our caller.
        unsafe { SwiotlbHal::<LeakyPool>::dma_dealloc(paddr, vaddr, pages) }
    }
    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        NonNull::new(paddr as *mut u8).unwrap()
    }
    unsafe fn share(buffer: NonNull<[u8]>, _d: BufferDirection) -> PhysAddr {
        buffer.cast::<u8>().as_ptr() as PhysAddr
    }
    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _d: BufferDirection) {}
}

#[test]
fn blk_device_refuses_addresses_outside_the_pool() {
    let region = region(256 << 10);
    LeakyPool::register(region.pool(), HalOptions::new()).unwrap();
    let (transport, device) = TransportBuilder::new(BlockDevice::new(8), region)
        .mode(Mode::Manual)
        .build();
    let mut blk = VirtIOBlk::<LeakyHal, _>::new(transport).unwrap();
    let data = pattern(SECTOR_SIZE, 3);
    let (mut req, mut resp) = (BlkReq::default(), BlkResp::default());
    // SAFETY: the buffers outlive the request, which the device never completes.
    unsafe { blk.write_blocks_nb(0, &mut req, &data, &mut resp) }.unwrap();
    let err = device.process().unwrap_err();
    assert!(
        matches!(err, DeviceError::DescriptorOutsidePool { addr, .. } if addr == req_addr(&req)),
        "{err}"
    );
    // It stays failed, and wrote nothing to its disk.
    assert_eq!(device.failure(), Some(err));
    assert!(device.process().is_err());
    let disk = device
        .with_model(|d: &mut BlockDevice| d.disk().to_vec())
        .unwrap();
    assert!(disk.iter().all(|&b| b == 0));
    drop(blk);
    assert_idle(region.pool());
}

fn req_addr(req: &BlkReq) -> u64 {
    req as *const BlkReq as u64
}

/// The same, inline: the failure panics in the driver's thread (inside `notify`).
#[test]
#[should_panic(expected = "outside the pool")]
fn blk_device_refuses_outside_addresses_inline_with_a_panic() {
    bind_pool!(P);
    struct Leaky2;
    // SAFETY: as `LeakyHal`, over pool `P`.
    unsafe impl Hal for Leaky2 {
        fn dma_alloc(pages: usize, d: BufferDirection) -> (PhysAddr, NonNull<u8>) {
            SwiotlbHal::<P>::dma_alloc(pages, d)
        }
        unsafe fn dma_dealloc(paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
            // SAFETY: forwarded unchanged from our caller.
            unsafe { SwiotlbHal::<P>::dma_dealloc(paddr, vaddr, pages) }
        }
        unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
            NonNull::new(paddr as *mut u8).unwrap()
        }
        unsafe fn share(buffer: NonNull<[u8]>, _d: BufferDirection) -> PhysAddr {
            buffer.cast::<u8>().as_ptr() as PhysAddr
        }
        unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _d: BufferDirection) {}
    }
    let region = region(256 << 10);
    P::register(region.pool(), HalOptions::new()).unwrap();
    let (transport, _device) = TransportBuilder::new(BlockDevice::new(8), region).build();
    let mut blk = VirtIOBlk::<Leaky2, _>::new(transport).unwrap();
    let _ = blk.write_blocks(0, &[1u8; SECTOR_SIZE]);
}
