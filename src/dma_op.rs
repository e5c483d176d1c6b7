//! [`dma_api::DmaOp`] over a pool: drivers written against the `dma-api` crate
//! (`DeviceDma`, `StreamingMap`, `CoherentArray`, ...) bounce through the pool unchanged.
//!
//! ```
//! use swiotlb::dma_api::{DeviceDma, DmaCoherency, DmaConstraints, DmaDeviceInfo, DmaDirection, DmaDomainId};
//! use swiotlb::{Config, Pool, PoolDmaOp};
//!
//! let pool: &'static Pool = Box::leak(Box::new(Pool::allocate(1 << 20, Config::new())?));
//! let op: &'static PoolDmaOp<Pool> = Box::leak(Box::new(PoolDmaOp::new(pool)));
//! let info = DmaDeviceInfo::new(
//!     DmaDomainId::Direct,
//!     DmaCoherency::Coherent,
//!     DmaConstraints::new(u64::MAX), // the device's DMA mask
//! );
//! let dma = DeviceDma::new(info, op);
//!
//! let mut frame = [0u8; 1514];
//! let map = dma.map_streaming_slice(&mut frame, 64, DmaDirection::FromDevice)?;
//! assert!(pool.contains(map.dma_addr().as_u64())); // the device sees only the pool
//! // ... the device writes; then, as dma-api drivers do:
//! map.complete_for_cpu(0..map.bytes_len());
//! drop(map);
//! assert_eq!(pool.stats().used_slots, 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # How the calls map
//!
//! | `DmaOp`                         | pool                                              |
//! |---------------------------------|---------------------------------------------------|
//! | `map_streaming`                 | `map_attrs` (`FromDevice` zero-filled), constraints below |
//! | `sync_map_for_device` / `_cpu`  | `sync_for_device_from` / `sync_for_cpu_into` of the range |
//! | `unmap_streaming`               | `unmap_into` with `skip_cpu_sync`                  |
//! | `alloc_contiguous` / `alloc_coherent` | `alloc` (zeroed, aligned as the layout asks)  |
//! | `dealloc_contiguous` / `dealloc_coherent` | `free`                                 |
//!
//! Constraints: `addr_mask` is the [`dma_limit`](crate::Constraints::dma_limit), `align`
//! the `alloc_align_mask` (plus one), `boundary` the `seg_boundary_mask` (plus one), and
//! a mapping over `max_segment_size` is refused with `SegmentTooLarge`. An alignment or
//! boundary that is not a power of two is refused (`AlignMismatch` / `BoundaryCross`).
//!
//! `dma-api` moves data explicitly (`prepare_for_device` before the device runs,
//! `complete_for_cpu` after), so the unmap copies nothing back. It could not safely:
//! `StreamingMap` does not borrow the buffer it maps, so by the time it is dropped the
//! buffer may be gone. `FromDevice` bounce buffers start as zeros (nothing of the guest
//! is shown to the device), which is what `dma-api`'s model expects of a bounce buffer.
//!
//! The syncs of this adapter replace `DmaOp`'s default ones, which copy between the
//! bounce buffer and the original with `copy_nonoverlapping`: on pool memory that a device
//! may write, only the copies of [`shared`](crate::shared) are defined. Map handles carry
//! no bounce pointer for the same reason (`StreamingMap::bounce_ptr` is `None`).
//!
//! # Caveats
//!
//! - `DmaOp` returns no error from syncs or unmaps: a call the pool refuses (which the
//!   adapter's own handles never cause) copies or frees nothing.
//! - `dma-api`'s allocation types (`CoherentArray`, `ContiguousBox`, ...) read and write
//!   their memory, pool memory here, with plain pointer accesses (and hand out slices of
//!   it). The device may change those bytes at any time: read each value once and check
//!   it in private memory (as for `SharedAlloc`, feature `allocator-api2`).
//! - Each live allocation's handle is kept in a map behind a lock (outside the pool), so
//!   that `dealloc_*`, given only raw parts, frees exactly what `alloc_*` made.
//! - `dma-api` 0.10 needs Rust 1.85.

use crate::api::DmaPool;
use crate::error::{LookupError, MapError};
use crate::pool::Coherent;
use crate::request::{Attrs, Constraints, Direction, Fill};
use crate::sync::{DefaultRawMutex, Mutex};
use alloc::collections::BTreeMap;
use core::alloc::Layout;
use core::fmt;
use core::num::NonZeroUsize;
use core::ptr::NonNull;
use dma_api::{
    DmaAddr, DmaAllocHandle, DmaCoherency, DmaConstraints, DmaDirection, DmaError, DmaMapHandle,
    DmaOp,
};

/// A [`DmaOp`] that bounces every streaming mapping through `pool` and takes every
/// allocation from it. See the [module docs](self).
pub struct PoolDmaOp<P: DmaPool + ?Sized + 'static> {
    pool: &'static P,
    page_size: usize,
    /// Live allocations by device address: what `dealloc_*` gives back.
    allocations: Mutex<DefaultRawMutex, BTreeMap<u64, Coherent>>,
}

impl<P: DmaPool + ?Sized + 'static> PoolDmaOp<P> {
    /// An adapter over `pool`, reporting 4 KiB pages.
    pub fn new(pool: &'static P) -> Self {
        Self {
            pool,
            page_size: 4096,
            allocations: Mutex::new(BTreeMap::new()),
        }
    }

    /// Reports `page_size` from [`DmaOp::page_size`] instead.
    pub fn with_page_size(mut self, page_size: usize) -> Self {
        self.page_size = page_size;
        self
    }

    /// The pool.
    pub fn pool(&self) -> &'static P {
        self.pool
    }

    fn alloc(&self, constraints: DmaConstraints, layout: Layout) -> Option<DmaAllocHandle> {
        let c = pool_constraints(constraints, layout.align(), layout.size()).ok()?;
        let mem = self.pool.alloc(layout.size(), &c).ok()?;
        let cpu = mem.cpu();
        if cpu.as_ptr().addr() % layout.align() != 0 {
            // The pool's CPU addresses are not aligned like its device addresses.
            let _ = self.pool.free(mem);
            return None;
        }
        let dma = mem.dma();
        self.allocations.lock().insert(dma, mem);
        // SAFETY: `cpu` is the allocation's only CPU address, `dma` its device address, and
        // it holds `layout.size()` bytes aligned to `layout.align()` (checked); it stays
        // live until `dealloc` gives the handle kept above back to the pool.
        Some(unsafe { DmaAllocHandle::new(cpu, cpu, DmaAddr::from(dma), layout) })
    }

    fn dealloc(&self, handle: &DmaAllocHandle) -> Result<(), DmaError> {
        let dma = handle.dma_addr().as_u64();
        let mut live = self.allocations.lock();
        match live.get(&dma) {
            Some(mem) if mem.size() == handle.size() && mem.cpu() == handle.as_ptr() => {}
            _ => return Err(DmaError::CoherentReleaseFailed),
        }
        let mem = live.remove(&dma).ok_or(DmaError::CoherentReleaseFailed)?;
        drop(live);
        // A broken `DmaPool` hands the handle back: dropping a `Coherent` leaves its
        // allocation live (quarantined), as `DmaOp` asks.
        self.pool
            .free(mem)
            .map_err(|_| DmaError::CoherentReleaseFailed)
    }
}

/// The pool's constraints for `dma-api`'s, for `size` bytes aligned to `align`.
fn pool_constraints(c: DmaConstraints, align: usize, size: usize) -> Result<Constraints, DmaError> {
    let align = c.align.max(align).max(1);
    if !align.is_power_of_two() {
        return Err(DmaError::AlignMismatch {
            required: align,
            address: DmaAddr::from(0),
        });
    }
    let seg_boundary_mask = match c.boundary {
        None => u64::MAX,
        Some(b) if b.is_power_of_two() => b as u64 - 1,
        Some(b) => {
            return Err(DmaError::BoundaryCross {
                addr: DmaAddr::from(0),
                size,
                boundary: b,
            })
        }
    };
    if let Some(max) = c.max_segment_size {
        if size > max {
            return Err(DmaError::SegmentTooLarge { size, max });
        }
    }
    Ok(Constraints::new()
        .alloc_align_mask(align as u64 - 1)
        .seg_boundary_mask(seg_boundary_mask)
        .dma_limit(c.addr_mask))
}

fn direction(d: DmaDirection) -> Direction {
    match d {
        DmaDirection::ToDevice => Direction::ToDevice,
        DmaDirection::FromDevice => Direction::FromDevice,
        DmaDirection::Bidirectional => Direction::Bidirectional,
    }
}

/// `dma-api`'s error for a refused map.
fn map_error(e: MapError, mask: u64) -> DmaError {
    match e {
        MapError::ZeroLength => DmaError::ZeroSizedBuffer,
        MapError::TooLarge { size, max } => DmaError::SegmentTooLarge { size, max },
        MapError::Unreachable { pool_start, .. } => DmaError::DmaMaskNotMatch {
            addr: DmaAddr::from(pool_start),
            mask,
        },
        _ => DmaError::NoMemory,
    }
}

// The `DmaOp` contract asks nothing unsafe of an implementor beyond its methods' own
// safety sections, which each method below keeps.
impl<P: DmaPool + ?Sized + Send + Sync + 'static> DmaOp for PoolDmaOp<P> {
    fn page_size(&self) -> usize {
        self.page_size
    }

    unsafe fn alloc_contiguous(
        &self,
        constraints: DmaConstraints,
        layout: Layout,
    ) -> Option<DmaAllocHandle> {
        self.alloc(constraints, layout)
    }

    unsafe fn dealloc_contiguous(&self, handle: DmaAllocHandle) {
        let _ = self.dealloc(&handle);
    }

    unsafe fn alloc_coherent(
        &self,
        constraints: DmaConstraints,
        layout: Layout,
    ) -> Option<DmaAllocHandle> {
        self.alloc(constraints, layout)
    }

    unsafe fn dealloc_coherent(&self, handle: DmaAllocHandle) -> Result<(), DmaError> {
        self.dealloc(&handle)
    }

    unsafe fn map_streaming(
        &self,
        constraints: DmaConstraints,
        addr: NonNull<u8>,
        size: NonZeroUsize,
        dir: DmaDirection,
    ) -> Result<DmaMapHandle, DmaError> {
        let size = size.get();
        let c = pool_constraints(constraints, 1, size)?;
        let layout = Layout::from_size_align(size, c.alloc_align_mask as usize + 1)?;
        let buf = NonNull::slice_from_raw_parts(addr, size);
        let attrs = Attrs::NONE.fill(Fill::Zero);
        // SAFETY: `DmaOp::map_streaming`'s contract: `addr..addr + size` stays live until
        // `unmap_streaming`, and the CPU touches it only as the sync calls allow, which is
        // what the pool's map asks. Every later call on the mapping is given `addr`.
        let dma = unsafe { self.pool.map_attrs(buf, direction(dir), &c, attrs) }
            .map_err(|e| map_error(e, constraints.addr_mask))?;
        // SAFETY: `addr` is the caller's buffer for the mapping's life (as above); no bounce
        // pointer is given (module docs).
        Ok(unsafe { DmaMapHandle::new(addr, DmaAddr::from(dma), layout, None) })
    }

    unsafe fn unmap_streaming(&self, handle: DmaMapHandle) {
        let dma = handle.dma_addr().as_u64();
        let buf = NonNull::slice_from_raw_parts(handle.as_ptr(), handle.size());
        // The handle does not say its direction; the pool does, when asked with another.
        let mut dir = Direction::ToDevice;
        for _ in 0..2 {
            // SAFETY: `DmaOp::unmap_streaming`'s contract: the handle is one of our live
            // mappings, given up by its owner; nothing is copied (`skip_cpu_sync`), so the
            // buffer is not touched.
            match unsafe { self.pool.unmap_into(dma, buf, dir, Attrs::SKIP_CPU_SYNC) } {
                Err(LookupError::DirectionMismatch { mapped, .. }) => dir = mapped,
                _ => return,
            }
        }
    }

    fn sync_map_for_device(
        &self,
        handle: &DmaMapHandle,
        offset: usize,
        size: usize,
        dir: DmaDirection,
        _coherency: DmaCoherency,
    ) {
        let Some(part) = part(handle, offset, size) else {
            return;
        };
        let dma = handle.dma_addr().as_u64() + offset as u64;
        // SAFETY: the handle is a live mapping of ours whose owner syncs it (the sync
        // contract of `map_streaming`); `part` lies in its buffer (checked) and is only
        // read. A refused call copies nothing.
        let _ = unsafe { self.pool.sync_for_device_from(dma, part, direction(dir)) };
    }

    fn sync_map_for_cpu(
        &self,
        handle: &DmaMapHandle,
        offset: usize,
        size: usize,
        dir: DmaDirection,
        _coherency: DmaCoherency,
    ) {
        let Some(part) = part(handle, offset, size) else {
            return;
        };
        let dma = handle.dma_addr().as_u64() + offset as u64;
        // SAFETY: as in `sync_map_for_device`; the buffer is writable for a mapping the
        // device writes (the caller mapped it so), and only such mappings copy back.
        let _ = unsafe { self.pool.sync_for_cpu_into(dma, part, direction(dir)) };
    }
}

/// Bytes `offset..offset + size` of the handle's buffer, if that is a non-empty part of it.
fn part(handle: &DmaMapHandle, offset: usize, size: usize) -> Option<NonNull<[u8]>> {
    let end = offset.checked_add(size)?;
    if size == 0 || end > handle.size() {
        return None;
    }
    let start = handle.as_ptr().as_ptr().wrapping_add(offset);
    Some(NonNull::slice_from_raw_parts(NonNull::new(start)?, size))
}

impl<P: DmaPool + ?Sized + 'static> fmt::Debug for PoolDmaOp<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolDmaOp")
            .field("page_size", &self.page_size)
            .field("allocations", &self.allocations.lock().len())
            .finish_non_exhaustive()
    }
}
