//! Registration: once per binding, only pools `virtio-drivers` can use, several pools side
//! by side, only MMIO windows that cannot hand the driver the pool or wrap.

mod common;

use common::{assert_idle, pattern, region, DMA_BASE};
use core::ptr::NonNull;
use std::alloc::{alloc_zeroed, Layout};
use swiotlb::{Config, Constraints, ElasticPool, Pool};
use swiotlb_virtio::testing::{BlockDevice, DmaRegion, TransportBuilder};
use swiotlb_virtio::{
    bind_pool, BindError, HalOptions, MmioWindow, PoolBinding, PoolSlot, SwiotlbHal,
};
use virtio_drivers::device::blk::VirtIOBlk;
use virtio_drivers::{BufferDirection, Error, Hal};

/// A leaked pool over fresh page-aligned memory, CPU address offset by `cpu_skew`.
fn raw_pool(dma_base: u64, cpu_skew: usize) -> &'static ElasticPool {
    let layout = Layout::from_size_align(64 << 10, 4096).unwrap();
    // SAFETY: non-zero size.
    let mem = NonNull::new(unsafe { alloc_zeroed(layout) }).unwrap();
    // SAFETY: `mem + cpu_skew ..` lies in the allocation, which is leaked: only the pool
    // ever touches it.
    let pool = unsafe {
        Pool::new(
            NonNull::new_unchecked(mem.as_ptr().add(cpu_skew)),
            dma_base,
            (64 << 10) - cpu_skew,
            Config::new(),
        )
    }
    .unwrap();
    Box::leak(Box::new(ElasticPool::fixed(pool)))
}

/// Leaked, zeroed, page-aligned memory standing in for a device's MMIO: valid for volatile
/// access for the rest of the program and used by nothing else.
fn fake_mmio(size: usize) -> NonNull<u8> {
    let layout = Layout::from_size_align(size, 4096).unwrap();
    // SAFETY: non-zero size.
    NonNull::new(unsafe { alloc_zeroed(layout) }).unwrap()
}

/// A window of `size` bytes at physical `phys`, over fresh [`fake_mmio`].
fn window(phys: u64, size: usize) -> MmioWindow {
    let virt = fake_mmio(size);
    // SAFETY: `virt..virt + size` is leaked memory that only this window reaches (it stands
    // in for the device's MMIO at `phys`), valid for volatile access from now on.
    unsafe { MmioWindow::new(phys, size as u64, virt) }
}

/// A window over CPU addresses nothing may touch, at `virt`: only for registrations that
/// must be refused. Its pointer has no provenance and is never dereferenced.
fn bogus_window(phys: u64, size: u64, virt: usize) -> MmioWindow {
    let virt = NonNull::new(core::ptr::without_provenance_mut(virt)).unwrap();
    // SAFETY: a contract breach on purpose: registration must refuse this window, and
    // nothing ever reads or writes through it.
    unsafe { MmioWindow::new(phys, size, virt) }
}

fn leak(windows: Vec<MmioWindow>) -> &'static [MmioWindow] {
    Vec::leak(windows)
}

/// Registers `pool` with `windows` in a fresh slot, expecting refusal; checks that the slot
/// stays empty and still takes a good registration, and returns the error.
fn refused(pool: &'static ElasticPool, windows: Vec<MmioWindow>) -> BindError {
    let slot: &'static PoolSlot = Box::leak(Box::new(PoolSlot::new()));
    let err = slot
        .register(pool, HalOptions::new().mmio_windows(leak(windows)))
        .unwrap_err();
    assert!(slot.pool().is_none(), "a refused registration left a pool");
    assert!(
        slot.options().is_none(),
        "a refused registration left options"
    );
    slot.register(pool, HalOptions::new()).unwrap();
    err
}

#[test]
fn a_binding_registers_once() {
    bind_pool!(P);
    let region = region(64 << 10);
    assert!(P::pool().is_none());
    P::register(region.pool(), HalOptions::new()).unwrap();
    assert!(core::ptr::eq(P::pool().unwrap(), region.pool()));
    let other = common::region(64 << 10);
    assert_eq!(
        P::register(other.pool(), HalOptions::new()),
        Err(BindError::AlreadyRegistered)
    );
    // The first registration stands.
    assert!(core::ptr::eq(P::pool().unwrap(), region.pool()));
    assert_idle(region.pool());
    assert_idle(other.pool());
}

#[test]
fn pools_that_cannot_give_page_aligned_rings_are_refused() {
    bind_pool!(P);
    // CPU and device addresses 2 KiB apart modulo a page.
    let skewed = raw_pool(DMA_BASE, 2048);
    let err = P::register(skewed, HalOptions::new()).unwrap_err();
    assert!(
        matches!(err, BindError::Incongruent { dma, .. } if dma == DMA_BASE),
        "{err}"
    );
    // Device address 0 reads as a failed allocation to virtio-drivers.
    let at_zero = raw_pool(0, 0);
    assert_eq!(
        P::register(at_zero, HalOptions::new()),
        Err(BindError::HoldsAddressZero)
    );
    assert!(P::pool().is_none());
    // A congruent pool elsewhere is fine.
    assert_eq!(
        P::register(raw_pool(0x1234_5000, 0), HalOptions::new()),
        Ok(())
    );
}

#[test]
fn an_unregistered_binding_fails_driver_init_cleanly() {
    bind_pool!(P);
    let region = region(64 << 10);
    let (transport, _device) = TransportBuilder::new(BlockDevice::new(8), region).build();
    assert_eq!(
        VirtIOBlk::<SwiotlbHal<P>, _>::new(transport).err(),
        Some(Error::DmaError)
    );
    assert_idle(region.pool());
}

#[test]
#[should_panic(expected = "used before a pool was registered")]
fn an_unregistered_binding_panics_on_share() {
    bind_pool!(P);
    let buf = [0u8; 8];
    // SAFETY: `buf` is valid for the call.
    unsafe { SwiotlbHal::<P>::share(NonNull::from(&buf[..]), BufferDirection::DriverToDevice) };
}

/// Two devices, two pools, two bindings: each device's buffers land in its own pool only
/// (each device model can reach only its pool, and would fail otherwise).
#[test]
fn two_pools_for_two_devices() {
    bind_pool!(First);
    bind_pool!(Second);
    let a = region(256 << 10);
    let b = DmaRegion::leak(256 << 10, 0x7f_0000_0000, Config::new().with_areas(1)).unwrap();
    First::register(a.pool(), HalOptions::new()).unwrap();
    Second::register(b.pool(), HalOptions::new()).unwrap();
    let (ta, da) = TransportBuilder::new(BlockDevice::new(64), a).build();
    let (tb, db) = TransportBuilder::new(BlockDevice::new(64), b).build();
    let mut blk_a = VirtIOBlk::<SwiotlbHal<First>, _>::new(ta).unwrap();
    let mut blk_b = VirtIOBlk::<SwiotlbHal<Second>, _>::new(tb).unwrap();
    let (x, y) = (pattern(4096, 1), pattern(4096, 2));
    blk_a.write_blocks(0, &x).unwrap();
    blk_b.write_blocks(0, &y).unwrap();
    let mut back = vec![0u8; 4096];
    blk_a.read_blocks(0, &mut back).unwrap();
    assert_eq!(back, x);
    blk_b.read_blocks(0, &mut back).unwrap();
    assert_eq!(back, y);
    assert!(da.failure().is_none() && db.failure().is_none());
    assert_eq!(First::counters().shares, 6);
    assert_eq!(Second::counters().shares, 6);
    drop((blk_a, blk_b));
    assert_idle(a.pool());
    assert_idle(b.pool());
}

/// The binding's constraints reach the pool: a device limited to the pool's first 64 KiB
/// gets every ring and buffer there.
#[test]
fn the_bindings_constraints_apply_to_shares_and_rings() {
    bind_pool!(P);
    let region = region(256 << 10);
    let limit = common::DMA_BASE + (64 << 10) - 1;
    P::register(
        region.pool(),
        HalOptions::new().constraints(Constraints::new().dma_limit(limit)),
    )
    .unwrap();
    let (transport, _device) = TransportBuilder::new(BlockDevice::new(64), region).build();
    let mut blk = VirtIOBlk::<SwiotlbHal<P>, _>::new(transport).unwrap();
    // Fits under the limit.
    blk.write_blocks(0, &pattern(16 << 10, 3)).unwrap();
    let buf = [1u8; 4096];
    // SAFETY: `buf` is valid until the unshare below.
    let dma =
        unsafe { SwiotlbHal::<P>::share(NonNull::from(&buf[..]), BufferDirection::DriverToDevice) };
    assert!(dma + 4096 - 1 <= limit);
    // SAFETY: the share above, same buffer and direction.
    unsafe {
        SwiotlbHal::<P>::unshare(
            dma,
            NonNull::from(&buf[..]),
            BufferDirection::DriverToDevice,
        )
    };
    // And coherent allocations.
    let (paddr, vaddr) = SwiotlbHal::<P>::dma_alloc(1, BufferDirection::Both);
    assert!(paddr != 0 && paddr + 4096 - 1 <= limit);
    // SAFETY: just allocated, with these values.
    assert_eq!(unsafe { SwiotlbHal::<P>::dma_dealloc(paddr, vaddr, 1) }, 0);
    // A second dealloc is refused, not a double free.
    // SAFETY: a contract breach on purpose: the Hal must refuse it.
    assert_eq!(unsafe { SwiotlbHal::<P>::dma_dealloc(paddr, vaddr, 1) }, -1);
    drop(blk);
    assert_idle(region.pool());
}

#[test]
fn mmio_windows_overlapping_the_pool_are_refused_and_leave_the_slot_empty() {
    let region = region(64 << 10);
    let pool = region.pool();
    let pool_cpu = pool.translate(DMA_BASE, 1).unwrap().as_ptr().addr();
    // Physically inside the pool: a BAR there would give the driver pool memory.
    let inside = window(DMA_BASE + 0x3000, 0x1000);
    let err = refused(pool, vec![inside]);
    assert_eq!(
        err,
        BindError::MmioWindowOverlapsPool {
            window: inside,
            pool_dma: DMA_BASE,
            pool_cpu,
            pool_bytes: 64 << 10,
        }
    );
    let msg = err.to_string();
    assert!(
        msg.contains("0x10000 bytes at device 0x4000000000"),
        "{msg}"
    );
    assert!(
        msg.contains("0x1000 bytes at physical 0x4000003000"),
        "{msg}"
    );
    // Straddling the pool's last byte.
    let straddle = window(DMA_BASE + (64 << 10) - 1, 0x1000);
    assert!(matches!(
        refused(pool, vec![straddle]),
        BindError::MmioWindowOverlapsPool { .. }
    ));
    // Physically elsewhere, but mapped over the pool's CPU memory.
    let aliased = bogus_window(0x1_0000_0000, 0x1000, pool_cpu + 0x800);
    assert!(matches!(
        refused(pool, vec![aliased]),
        BindError::MmioWindowOverlapsPool { window, .. } if window == aliased
    ));
    // Adjacent below and above the pool is fine.
    bind_pool!(Q);
    let edges = leak(vec![
        window(DMA_BASE - 0x1000, 0x1000),
        window(DMA_BASE + (64 << 10), 0x1000),
    ]);
    Q::register(pool, HalOptions::new().mmio_windows(edges)).unwrap();
    assert_idle(pool);
}

#[test]
fn mmio_windows_overlapping_each_other_are_refused() {
    let pool = region(64 << 10).pool();
    // Physically: a BAR in the overlap could translate two ways.
    let (a, b) = (window(0x1000_0000, 0x2000), window(0x1000_1000, 0x2000));
    let err = refused(pool, vec![a, b]);
    assert_eq!(
        err,
        BindError::MmioWindowsOverlap {
            first: a,
            second: b
        }
    );
    assert!(
        err.to_string().contains("overlap in physical addresses"),
        "{err}"
    );
    // In CPU addresses: two windows over the same memory.
    let c = bogus_window(0x2000_0000, 0x1000, a.virt().as_ptr().addr() + 0x1000);
    let err = refused(pool, vec![a, c]);
    assert_eq!(
        err,
        BindError::MmioWindowsOverlap {
            first: a,
            second: c
        }
    );
    assert!(
        err.to_string().contains("overlap in CPU addresses"),
        "{err}"
    );
    // Physically adjacent windows, each its own mapping, are fine.
    bind_pool!(Q);
    let d = window(0x1000_2000, 0x1000);
    Q::register(pool, HalOptions::new().mmio_windows(leak(vec![a, d]))).unwrap();
}

#[test]
fn mmio_windows_that_wrap_or_are_empty_are_refused() {
    let pool = region(64 << 10).pool();
    // Physical range past the top of u64.
    let phys_wraps = window(u64::MAX - 0xfff, 0x2000);
    let err = refused(pool, vec![phys_wraps]);
    assert_eq!(err, BindError::MmioWindowWraps(phys_wraps));
    assert!(
        err.to_string()
            .contains("0x2000 bytes at physical 0xfffffffffffff000"),
        "{err}"
    );
    // CPU range past the top of the address space.
    let cpu_wraps = bogus_window(0x1000_0000, 0x2000, usize::MAX - 0xfff);
    assert_eq!(
        refused(pool, vec![cpu_wraps]),
        BindError::MmioWindowWraps(cpu_wraps)
    );
    // Zero bytes.
    let empty = window(0x1000_0000, 0x1000);
    // SAFETY: a sub-range (empty) of a window made above.
    let empty = unsafe { MmioWindow::new(empty.phys(), 0, empty.virt()) };
    let err = refused(pool, vec![window(0x2000_0000, 0x1000), empty]);
    assert_eq!(err, BindError::EmptyMmioWindow(empty));
    assert!(err.to_string().contains("zero bytes"), "{err}");
}

/// The message of the panic `f` raises (it must raise one).
fn panic_message(f: impl FnOnce() + std::panic::UnwindSafe) -> String {
    let payload = std::panic::catch_unwind(f).expect_err("expected a panic");
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(p) => p.downcast::<&str>().map(|s| s.to_string()).unwrap(),
    }
}

/// `SwiotlbHal::<B>::mmio_phys_to_virt`, as the PCI transport calls it.
fn bar<B: PoolBinding>(paddr: u64, size: usize) -> NonNull<u8> {
    // SAFETY: the range stands for a BAR the (possibly hostile) device reported; the
    // default translation must check it, which is what these tests prove.
    unsafe { SwiotlbHal::<B>::mmio_phys_to_virt(paddr, size) }
}

#[test]
fn a_bar_inside_a_window_translates_to_its_cpu_address() {
    bind_pool!(P);
    let (a, b) = (window(0x1000_0000, 0x4000), window(0x2_0000_0000, 0x1000));
    let pool = region(64 << 10).pool();
    P::register(pool, HalOptions::new().mmio_windows(leak(vec![a, b]))).unwrap();
    let base = a.virt().as_ptr();
    // First byte, last byte, the whole window, a structure in the middle.
    assert_eq!(bar::<P>(0x1000_0000, 1).as_ptr(), base);
    assert_eq!(bar::<P>(0x1000_3fff, 1).as_ptr(), base.wrapping_add(0x3fff));
    assert_eq!(bar::<P>(0x1000_0000, 0x4000).as_ptr(), base);
    assert_eq!(
        bar::<P>(0x1000_2000, 0x38).as_ptr(),
        base.wrapping_add(0x2000)
    );
    // An empty range at the window's start (a zero-length notify structure, say).
    assert_eq!(bar::<P>(0x1000_0000, 0).as_ptr(), base);
    // The second window, above 4 GiB physically.
    assert_eq!(
        bar::<P>(0x2_0000_0ff8, 8).as_ptr(),
        b.virt().as_ptr().wrapping_add(0xff8)
    );
    // The pointer is the window's memory: a volatile write lands where the window says.
    let reg = bar::<P>(0x1000_0010, 4).cast::<u32>();
    // SAFETY: inside window `a`, whose memory is valid for volatile access (see `window`).
    unsafe { reg.as_ptr().write_volatile(0xdead_beef) };
    // SAFETY: as above, the same four bytes.
    let back = unsafe { base.add(0x10).cast::<u32>().read_volatile() };
    assert_eq!(back, 0xdead_beef);
}

#[test]
fn a_bar_outside_every_window_panics_with_its_figures() {
    bind_pool!(Hostile);
    // Two physically adjacent windows, each its own mapping.
    let (a, c) = (window(0x1000_0000, 0x4000), window(0x1000_4000, 0x1000));
    let pool = region(64 << 10).pool();
    Hostile::register(pool, HalOptions::new().mmio_windows(leak(vec![a, c]))).unwrap();
    let cases: [(u64, usize, &str); 6] = [
        (0x1000_4ff0, 0x20, "straddling the window end"),
        (0x1000_5000, 1, "just past the window"),
        (0x0fff_ffff, 2, "straddling the window start"),
        (u64::MAX - 1, 4, "wrapping u64"),
        (0x3000_0000, 0x100, "in no window"),
        (0x1000_3ff0, 0x20, "across two adjacent windows"),
    ];
    for (paddr, size, what) in cases {
        let msg = panic_message(move || {
            bar::<Hostile>(paddr, size);
        });
        let figures = format!("MMIO range of {size:#x} bytes at physical {paddr:#x}");
        assert!(msg.contains(&figures), "{what}: {msg}");
        assert!(msg.contains("Hostile"), "{what}: names the binding: {msg}");
        assert!(msg.contains("lies in no MMIO window"), "{what}: {msg}");
        assert!(
            msg.contains("windows: [0x4000 bytes at physical 0x10000000"),
            "{what}: lists the windows: {msg}"
        );
    }
    // An empty range must start inside a window too.
    let msg = panic_message(|| {
        bar::<Hostile>(0x1000_5000, 0);
    });
    assert!(msg.contains("0x0 bytes at physical 0x10005000"), "{msg}");
}

/// Before MMIO windows, the default returned `paddr` itself: a BAR at the pool's address
/// gave the driver the pool (here device and CPU addresses are equal, as in
/// `Pool::allocate`) as its "registers". Now it is refused.
#[test]
fn a_bar_pointing_at_the_pool_is_refused_not_identity_mapped() {
    bind_pool!(P);
    let pool: &'static ElasticPool = Box::leak(Box::new(ElasticPool::fixed(
        Pool::allocate(64 << 10, Config::new()).unwrap(),
    )));
    P::register(pool, HalOptions::new()).unwrap();
    let paddr = pool.sub_pools()[0].dma_range.start;
    assert_eq!(
        pool.translate(paddr, 1).unwrap().as_ptr().addr() as u64,
        paddr
    );
    let msg = panic_message(move || {
        let virt = bar::<P>(paddr, 0x1000);
        // The old default reached this line with `virt == paddr`.
        panic!("translated to {virt:p}");
    });
    assert!(
        msg.contains(&format!(
            "0x1000 bytes at physical {paddr:#x} (a PCI BAR) lies in no"
        )),
        "{msg}"
    );
    assert!(
        msg.contains("none registered"),
        "says no windows were given: {msg}"
    );
}

#[test]
#[should_panic(expected = "UnregisteredMmio used before a pool was registered")]
fn mmio_translation_before_registration_panics_naming_the_binding() {
    bind_pool!(UnregisteredMmio);
    bar::<UnregisteredMmio>(0x1000_0000, 4);
}

/// A binding written by hand, without the macro: the defaults (registration, windows) work
/// through it, and so does an override of `mmio_phys_to_virt` that keeps the contract.
#[test]
fn a_hand_written_binding_works() {
    struct Hand;
    static HAND: PoolSlot = PoolSlot::new();
    // SAFETY: `slot` always returns `HAND`, this binding's own static; defaults otherwise.
    unsafe impl PoolBinding for Hand {
        fn slot() -> &'static PoolSlot {
            &HAND
        }
    }

    /// Confines BARs to the first registered window only (say, a platform whose second
    /// window is for another device), by way of `MmioWindow::translate`.
    struct FirstWindowOnly;
    static FIRST: PoolSlot = PoolSlot::new();
    // SAFETY: `slot` always returns `FIRST`; the override hands out only pointers that
    // `MmioWindow::translate` gives for a registered window, as the default does.
    unsafe impl PoolBinding for FirstWindowOnly {
        fn slot() -> &'static PoolSlot {
            &FIRST
        }
        unsafe fn mmio_phys_to_virt(paddr: u64, size: usize) -> NonNull<u8> {
            let options = FIRST.options().expect("registered");
            options.mmio_windows[0]
                .translate(paddr, size)
                .expect("BAR outside the first window")
        }
    }

    let (a, b) = (window(0x1000_0000, 0x1000), window(0x1100_0000, 0x1000));
    let windows = leak(vec![a, b]);
    let region = region(64 << 10);
    Hand::register(region.pool(), HalOptions::new().mmio_windows(windows)).unwrap();
    FirstWindowOnly::register(region.pool(), HalOptions::new().mmio_windows(windows)).unwrap();

    assert_eq!(
        bar::<Hand>(0x1100_0008, 8).as_ptr(),
        b.virt().as_ptr().wrapping_add(8)
    );
    assert_eq!(
        bar::<FirstWindowOnly>(0x1000_0008, 8).as_ptr(),
        a.virt().as_ptr().wrapping_add(8)
    );
    let msg = panic_message(|| {
        bar::<FirstWindowOnly>(0x1100_0008, 8);
    });
    assert!(msg.contains("outside the first window"), "{msg}");

    // Shares go through the hand-written slot's pool and come back.
    let buf = pattern(512, 9);
    // SAFETY: `buf` stays valid and untouched until the unshare below.
    let dma = unsafe {
        SwiotlbHal::<Hand>::share(NonNull::from(&buf[..]), BufferDirection::DriverToDevice)
    };
    assert!(region.pool().contains(dma));
    // SAFETY: the share above, same buffer and direction.
    unsafe {
        SwiotlbHal::<Hand>::unshare(
            dma,
            NonNull::from(&buf[..]),
            BufferDirection::DriverToDevice,
        )
    };
    assert_idle(region.pool());
}
