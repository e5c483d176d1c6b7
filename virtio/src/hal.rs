//! [`virtio_drivers::Hal`] over a pool.

use crate::binding::{PoolBinding, Registration};
use core::any::type_name;
use core::marker::PhantomData;
use core::ptr::NonNull;
use core::time::Duration;
use swiotlb::{Attrs, Direction, Fill, MapError};
use virtio_drivers::{BufferDirection, Hal, PhysAddr, PAGE_SIZE};

/// A [`virtio_drivers::Hal`] that bounces every buffer through the pool bound to `B`.
///
/// - `share` maps the buffer (`DriverToDevice` as `ToDevice`, `DeviceToDriver` as
///   `FromDevice`, `Both` as `Bidirectional`) and returns the bounce buffer's device
///   address. Driver-readable buffers are copied in; device-writable ones start as
///   [`HalOptions::fill`](crate::HalOptions::fill) says (zeros by default, so nothing of
///   the guest's old receive buffers reaches the host). A pool with no room grows if it
///   can; one that cannot is waited on as the binding's
///   [`FullPolicy`](crate::FullPolicy) says (woken by the unmap that makes room); any
///   other error panics. With [`HalOptions::track_shares`](crate::HalOptions::track_shares)
///   the binding records the share.
/// - `unshare` copies the bounce buffer back for `DeviceToDriver` and `Both` (the whole
///   buffer: the `Hal` is not told how much the device wrote, so with the default fill the
///   bytes past what the device wrote come back as zeros) and frees the slots.
/// - `dma_alloc` / `dma_dealloc` are coherent pool allocations: zeroed, aligned in device
///   space to their size's power-of-two page order, and page-aligned for the CPU because
///   registration checked that the pool's CPU and device addresses are congruent modulo
///   `PAGE_SIZE`. A failed allocation returns device address 0, which `virtio-drivers`
///   turns into `Error::DmaError`.
///
/// The copy back goes to the buffer given to `unshare`, which must be the one given to
/// `share` (same address and length: checked, and a mismatch panics). `virtio-drivers`
/// passes the same buffer and keeps it untouched in between (the contract of
/// `VirtQueue::add` / `pop_used`); a caller of the `Hal` outside `virtio-drivers` must do
/// the same.
///
/// # Panics
///
/// `share` and `unshare` before the binding's pool is registered; `share` when the pool is
/// full for longer than the policy allows, or refuses the buffer for another reason (zero
/// length, over [`max_mapping_size`](swiotlb::ElasticPool::max_mapping_size), a buffer
/// inside the pool); `unshare` of an address, length or direction that `share` did not
/// return (a broken `Hal` contract: refused by the pool, or with tracking on by the binding
/// before it touches the pool).
pub struct SwiotlbHal<B: PoolBinding>(PhantomData<fn() -> B>);

impl<B: PoolBinding> core::fmt::Debug for SwiotlbHal<B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "SwiotlbHal<{}>", type_name::<B>())
    }
}

/// The pool direction of a `virtio-drivers` buffer direction.
pub const fn direction(d: BufferDirection) -> Direction {
    match d {
        BufferDirection::DriverToDevice => Direction::ToDevice,
        BufferDirection::DeviceToDriver => Direction::FromDevice,
        BufferDirection::Both => Direction::Bidirectional,
    }
}

/// The registration of `B`, or a panic naming the binding.
fn registered<B: PoolBinding>() -> &'static Registration {
    match B::slot().get() {
        Some(r) => r,
        None => panic!(
            "swiotlb-virtio: {} used before a pool was registered for it",
            type_name::<B>()
        ),
    }
}

/// A failed `dma_alloc`, as `virtio-drivers` recognises it.
fn no_allocation() -> (PhysAddr, NonNull<u8>) {
    (0, NonNull::dangling())
}

// SAFETY: `dma_alloc` returns pool memory that the allocator reserved for this allocation
// alone until `dma_dealloc` frees it (so it aliases nothing), zeroed by `Pool::alloc`, and
// page-aligned: `Pool::alloc` aligns the device address to at least a page, and every
// region's CPU and device addresses differ by a multiple of `PAGE_SIZE` (checked at
// registration; a `Backend` aligns both to a page for a new region). `share`
// returns the device address of a bounce buffer holding the buffer's bytes; `unshare`
// copies it back (for device-writable directions) before the slots are freed.
// `mmio_phys_to_virt` is the binding's: `PoolBinding` is an `unsafe trait` whose
// implementors promise that it meets this trait's implementation safety (the default hands
// out pointers only inside `MmioWindow`s, whose unsafe constructors vouch for them), and
// that `slot` always returns the same pool (so `unshare`/`dma_dealloc` find what
// `share`/`dma_alloc` used).
unsafe impl<B: PoolBinding> Hal for SwiotlbHal<B> {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let slot = B::slot();
        let Some(reg) = slot.get() else {
            slot.counters.allocated(None);
            return no_allocation();
        };
        let Some(size) = pages.checked_mul(PAGE_SIZE) else {
            slot.counters.allocated(None);
            return no_allocation();
        };
        match reg.pool.try_alloc(size, &reg.options.constraints) {
            // Device address 0 is what `virtio-drivers` reads as a failure: a region that
            // holds it cannot serve this allocation.
            Ok(c) if c.dma() == 0 => {
                if reg.pool.free(c).is_err() {
                    debug_assert!(false, "a fresh allocation of this pool was refused");
                }
                slot.counters.allocated(None);
                no_allocation()
            }
            Ok(c) => {
                debug_assert_eq!(c.cpu().as_ptr().addr() % PAGE_SIZE, 0);
                slot.counters.allocated(Some(pages));
                // Owned from here by `virtio-drivers`, which gives it back to `dma_dealloc`.
                let (dma, cpu, _) = c.into_raw();
                (dma, cpu)
            }
            Err(_) => {
                slot.counters.allocated(None);
                no_allocation()
            }
        }
    }

    unsafe fn dma_dealloc(paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        let Some(reg) = B::slot().get() else {
            return -1;
        };
        let Some(size) = pages.checked_mul(PAGE_SIZE) else {
            return -1;
        };
        // A `vaddr` that is not this allocation's means a broken contract: refuse.
        if reg.pool.translate(paddr, size) != Some(vaddr) {
            return -1;
        }
        // SAFETY: `Hal::dma_dealloc`'s caller passes what `dma_alloc` returned, once, and
        // uses the memory no more: the allocation is ours to give back.
        match unsafe { reg.pool.free_raw(paddr, size) } {
            Ok(()) => 0,
            Err(_) => -1,
        }
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, size: usize) -> NonNull<u8> {
        // SAFETY: our caller promises `paddr..paddr + size` is a valid MMIO region, which is
        // the binding's precondition too.
        unsafe { B::mmio_phys_to_virt(paddr, size) }
    }

    unsafe fn share(buffer: NonNull<[u8]>, dir: BufferDirection) -> PhysAddr {
        let slot = B::slot();
        let reg = registered::<B>();
        let dir = direction(dir);
        let len = buffer.len();
        let attrs = Attrs::NONE.fill(reg.options.fill);
        let constraints = &reg.options.constraints;
        let policy = &reg.options.full;
        let mut waited = Duration::ZERO;
        // SAFETY: the caller gives a valid buffer, readable (and writable unless it is
        // driver-to-device, which we map `ToDevice` and never write), and `virtio-drivers`
        // keeps it valid and untouched until the matching `unshare`, which unmaps it
        // (VirtQueue::add's contract).
        let first = unsafe { reg.pool.try_map_attrs(buffer, dir, constraints, attrs) };
        let result = match first {
            Ok(dma) => Ok((dma, false)),
            // Only a share that must wait builds a waiter (an allocation, a thread handle).
            Err(MapError::Full { .. }) if !policy.max_wait.is_zero() => {
                // SAFETY: as above.
                unsafe {
                    reg.pool.map_wait_with(
                        buffer,
                        dir,
                        constraints,
                        attrs,
                        policy.waiter(&mut waited),
                    )
                }
            }
            Err(e) => Err(e),
        };
        match result {
            Ok((dma, did_wait)) => {
                if reg.options.track_shares {
                    slot.track(dma, len, dir);
                }
                let zero_filled = dir == Direction::FromDevice && attrs.fill == Fill::Zero;
                slot.counters
                    .shared(len, if zero_filled { 0 } else { len }, did_wait);
                dma
            }
            Err(e @ MapError::Full { .. }) => {
                let stats = reg.pool.stats();
                panic!(
                    "swiotlb-virtio: {}: pool still full after waiting {waited:?}: {e}; \
                     high water {} slots, {} failed maps, {} regions, {} growth failures",
                    type_name::<B>(),
                    stats.high_water,
                    stats.failed_maps,
                    stats.sub_pools,
                    stats.growth_failures,
                )
            }
            Err(e) => panic!(
                "swiotlb-virtio: {}: cannot share {len} bytes {dir:?}: {e}",
                type_name::<B>()
            ),
        }
    }

    unsafe fn unshare(paddr: PhysAddr, buffer: NonNull<[u8]>, dir: BufferDirection) {
        let slot = B::slot();
        let reg = registered::<B>();
        let dir = direction(dir);
        let len = buffer.len();
        if reg.options.track_shares && !slot.untrack(paddr, len, dir) {
            panic!(
                "swiotlb-virtio: {}: unshare of {paddr:#x} ({len} bytes, {dir:?}): not a live \
                 share of this binding",
                type_name::<B>()
            );
        }
        // The copy back goes to `buffer`, not to the pointer `share` was given: the driver
        // reborrowed its buffer to make this one, which (under Rust's aliasing rules)
        // invalidated the old pointer. `unmap_into` checks it is the same buffer.
        // SAFETY: `paddr` is what `share` returned for this buffer (caller's promise, and
        // the binding's record), and `buffer` is valid for writes and untouched by anyone
        // else during the call (VirtQueue's contract), so the copy back writes memory lent
        // us for exactly this.
        let result = unsafe { reg.pool.unmap_into(paddr, buffer, dir, Attrs::NONE) };
        if let Err(e) = result {
            panic!(
                "swiotlb-virtio: {}: unshare of {paddr:#x} ({len} bytes, {dir:?}) refused: {e}",
                type_name::<B>()
            );
        }
        slot.counters
            .unshared(if dir.from_device() { len } else { 0 });
    }
}
