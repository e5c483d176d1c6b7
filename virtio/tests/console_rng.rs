//! More device types through `SwiotlbHal`: virtio-drivers' console and entropy drivers.

mod common;

use common::{assert_idle, region};
use swiotlb::Fill;
use swiotlb_virtio::testing::{ConsoleDevice, RngDevice, TransportBuilder, F_INDIRECT_DESC};
use swiotlb_virtio::{bind_pool, HalOptions, PoolBinding, SwiotlbHal};
use virtio_drivers::device::console::VirtIOConsole;
use virtio_drivers::device::rng::VirtIORng;

#[test]
fn console_sends_and_receives_through_the_pool() {
    bind_pool!(P);
    let region = region(256 << 10);
    P::register(region.pool(), HalOptions::new()).unwrap();
    let (transport, device) = TransportBuilder::new(ConsoleDevice::new(80, 25), region)
        .indirect(true)
        .build();
    let mut console = VirtIOConsole::<SwiotlbHal<P>, _>::new(transport).unwrap();
    let size = console.size().unwrap().unwrap();
    assert_eq!((size.columns, size.rows), (80, 25));

    console.send_bytes(b"hello, host").unwrap();
    console.send(b'!').unwrap();
    let out = device
        .with_model(|c: &mut ConsoleDevice| c.output().to_vec())
        .unwrap();
    assert_eq!(out, b"hello, host!");

    // Nothing to receive yet: the device holds the receive buffer back.
    assert_eq!(console.recv(true).unwrap(), None);
    device.with_model(|c: &mut ConsoleDevice| c.push_input(b"hi"));
    assert_eq!(device.process().unwrap(), 1);
    assert_eq!(console.recv(true).unwrap(), Some(b'h'));
    // Peek the last byte without popping it, so that no new receive buffer is posted: the
    // driver keeps one posted whenever its buffer is drained, and drops it unreclaimed (see
    // the next test).
    assert_eq!(console.recv(false).unwrap(), Some(b'i'));
    assert!(device.failure().is_none());
    drop(console);
    assert_idle(region.pool());
}

/// virtio-drivers 0.13's console posts a 4 KiB receive buffer and, if dropped while it is
/// still posted, never unshares it: with a bounce pool, its two slots stay taken. This
/// pins the upstream behaviour down (the pool loses the slots, nothing worse).
#[test]
fn console_dropped_with_a_receive_posted_keeps_its_buffer_mapped() {
    bind_pool!(P);
    let region = region(256 << 10);
    P::register(region.pool(), HalOptions::new()).unwrap();
    let (transport, _device) = TransportBuilder::new(ConsoleDevice::new(80, 25), region).build();
    let console = VirtIOConsole::<SwiotlbHal<P>, _>::new(transport).unwrap();
    let counters = P::counters();
    assert_eq!(counters.shares - counters.unshares, 1);
    drop(console);
    assert_eq!(
        region.pool().stats().used_slots,
        4096 / region.pool().slot_size()
    );
}

/// The same console dropped with its receive buffer posted: the binding knows the share is
/// outstanding, `reclaim` takes it back without copying into the driver's freed buffer,
/// and a console created again on the same binding works and ends with the pool idle. A
/// stale unshare of the reclaimed address is refused before it touches the pool.
#[test]
fn a_dropped_console_s_receive_buffer_is_reclaimed_and_the_device_recreated() {
    bind_pool!(P);
    let region = region(256 << 10);
    P::register(region.pool(), HalOptions::new().track_shares(true)).unwrap();
    let (transport, device) = TransportBuilder::new(ConsoleDevice::new(80, 25), region).build();
    let console = VirtIOConsole::<SwiotlbHal<P>, _>::new(transport).unwrap();
    assert_eq!(P::slot().outstanding(), Some(1));
    drop(console);
    // Dropping the driver unset its queues: the device no longer uses the buffer.
    assert_eq!(region.pool().stats().used_slots, 2);
    // SAFETY: the only driver of this binding is dropped (it will not unshare), and its
    // queues are unset.
    let reclaimed = unsafe { P::reclaim() };
    assert_eq!(
        reclaimed,
        Some(swiotlb_virtio::Reclaimed {
            shares: 1,
            bytes: 4096,
            missing: 0
        })
    );
    assert_eq!(P::slot().outstanding(), Some(0));
    assert_idle(region.pool());
    let c = P::counters();
    assert_eq!((c.reclaimed, c.bytes_reclaimed), (1, 4096));
    assert_eq!(c.shares - c.unshares, c.reclaimed);

    // A driver that still unshared the reclaimed buffer would be refused, the pool untouched.
    drop(device);
    let mut buf = [0u8; 4096];
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: a broken contract on purpose: the binding refuses before any pool access.
        unsafe {
            <SwiotlbHal<P> as virtio_drivers::Hal>::unshare(
                region.pool().sub_pools()[0].dma_range.start,
                core::ptr::NonNull::from(&mut buf[..]),
                virtio_drivers::BufferDirection::DeviceToDriver,
            )
        }
    }));
    let message = outcome.expect_err("refused").downcast::<String>().unwrap();
    assert!(
        message.contains("not a live share of this binding"),
        "{message}"
    );
    assert_idle(region.pool());

    // The device again, on the same binding and pool.
    let (transport, device) = TransportBuilder::new(ConsoleDevice::new(80, 25), region).build();
    let mut console = VirtIOConsole::<SwiotlbHal<P>, _>::new(transport).unwrap();
    console.send_bytes(b"again").unwrap();
    let out = device
        .with_model(|c: &mut ConsoleDevice| c.output().to_vec())
        .unwrap();
    assert_eq!(out, b"again");
    drop(console);
    // SAFETY: as above.
    assert_eq!(unsafe { P::reclaim() }.map(|r| r.shares), Some(1));
    assert_idle(region.pool());

    // A binding that does not record its shares has nothing to take back, and says so.
    bind_pool!(Q);
    let other = common::region(256 << 10);
    Q::register(other.pool(), HalOptions::new()).unwrap();
    assert_eq!(Q::slot().outstanding(), None);
    // SAFETY: nothing of Q's is shared.
    assert_eq!(unsafe { Q::reclaim() }, None);
}

/// The device writes 16 bytes of a 256-byte buffer; the Hal copies the whole buffer back
/// (it is not told the used length). What lies past the 16 bytes depends on the fill rule,
/// and is never a stale pool byte.
fn rng_fill<B: PoolBinding>(fill: Fill, past_used: u8) {
    let region = region(256 << 10);
    B::register(region.pool(), HalOptions::new().fill(fill)).unwrap();
    let (transport, device) = TransportBuilder::new(RngDevice::new(42).chunk(16), region)
        .indirect(true)
        .build();
    let mut rng = VirtIORng::<SwiotlbHal<B>, _>::new(transport).unwrap();
    assert_ne!(device.driver_features() & F_INDIRECT_DESC, 0);

    let mut got = Vec::new();
    for _ in 0..4 {
        let mut buf = [0xaau8; 256];
        let n = rng.request_entropy(&mut buf).unwrap();
        assert_eq!(n, 16);
        got.extend_from_slice(&buf[..n]);
        assert!(
            buf[n..].iter().all(|&b| b == past_used),
            "{fill:?}: past the used length {:x?}",
            &buf[n..n + 8]
        );
    }
    // The bytes are the device's stream, in order.
    assert_eq!(got, RngDevice::stream(42, 64));
    assert_eq!(
        device.with_model(|d: &mut RngDevice| d.produced()),
        Some(64)
    );
    drop(rng);
    assert_idle(region.pool());
}

#[test]
fn rng_fills_only_what_the_device_wrote() {
    // Zero fill (the default): the buffer's 0xaa never reached the pool; past the used
    // length it comes back as zeros.
    bind_pool!(Zero);
    rng_fill::<Zero>(Fill::Zero, 0);
    // Linux's rule: the buffer was copied in, so past the used length it is unchanged
    // (CVE-2022-0854).
    bind_pool!(Original);
    rng_fill::<Original>(Fill::Original, 0xaa);
}
