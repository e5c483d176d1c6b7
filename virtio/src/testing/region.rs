//! A pool at a chosen device address, and the device's view of it: guest memory that holds
//! the pool and nothing else.

use core::ptr::NonNull;
use std::alloc::{self, Layout};
use std::boxed::Box;
use std::string::{String, ToString};
use swiotlb::{Config, ConfigError, Pool};
use vm_memory::{GuestAddress, GuestMemoryMmap, GuestRegionMmap, MmapRegion};

/// Alignment of the memory behind a [`DmaRegion`]: a page, which vm-memory needs for a raw
/// region and `virtio-drivers` for coherent allocations.
pub const REGION_ALIGN: usize = 4096;

/// Why a [`DmaRegion`] could not be built.
#[derive(Debug)]
#[non_exhaustive]
pub enum RegionError {
    /// The size or device address is not a whole number of pages.
    Unaligned {
        /// Bytes asked for.
        size: usize,
        /// Device address asked for.
        dma_base: u64,
    },
    /// The pool refused the region.
    Pool(ConfigError),
    /// vm-memory refused the region.
    Memory(String),
}

impl core::fmt::Display for RegionError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Unaligned { size, dma_base } => write!(
                f,
                "region of {size:#x} bytes at device address {dma_base:#x} is not page-aligned"
            ),
            Self::Pool(e) => write!(f, "pool: {e}"),
            Self::Memory(e) => write!(f, "guest memory: {e}"),
        }
    }
}

impl std::error::Error for RegionError {}

/// Memory the "host" may see: a [`Pool`] over `size` bytes of page-aligned heap memory at
/// device address `dma_base` (deliberately not the CPU address, so a driver that leaks a CPU
/// address to the device is caught), and a vm-memory [`GuestMemoryMmap`] with one region:
/// the pool's slots at their device addresses. A device model given [`memory`](Self::memory)
/// can reach the pool and nothing else.
#[derive(Debug)]
pub struct DmaRegion {
    pool: Pool,
    memory: GuestMemoryMmap,
    mem: NonNull<u8>,
    layout: Layout,
}

// SAFETY: the heap block is reached only through the pool (which is Send + Sync) and the
// guest memory view (raw, volatile accesses); `mem` itself is only used to free the block.
unsafe impl Send for DmaRegion {}
// SAFETY: as for `Send`: `&DmaRegion` gives no unsynchronised access to anything.
unsafe impl Sync for DmaRegion {}

impl DmaRegion {
    /// Allocates `size` bytes and builds the pool and the guest memory over them.
    ///
    /// # Errors
    ///
    /// [`RegionError`]: `size` or `dma_base` not page-aligned, a configuration the pool
    /// refuses, or guest memory vm-memory refuses.
    pub fn new(size: usize, dma_base: u64, config: Config) -> Result<Self, RegionError> {
        let unaligned = RegionError::Unaligned { size, dma_base };
        let mask = REGION_ALIGN - 1;
        if size == 0 || size & mask != 0 || dma_base & mask as u64 != 0 {
            return Err(unaligned);
        }
        let layout = Layout::from_size_align(size, REGION_ALIGN).map_err(|_| unaligned)?;
        // SAFETY: `layout` has a non-zero size (checked above).
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let Some(mem) = NonNull::new(raw) else {
            alloc::handle_alloc_error(layout);
        };
        let free = |e| {
            // SAFETY: allocated above with `layout`, and handed to nothing that outlives this.
            unsafe { alloc::dealloc(mem.as_ptr(), layout) };
            e
        };
        // SAFETY: `mem..mem + size` is a fresh allocation that only this region (the pool and
        // the device's view of the pool) will touch, freed in `drop` after both are gone; the
        // "device" sees it at `dma_base` because the guest memory built below says so.
        let pool = unsafe { Pool::new(mem, dma_base, size, config) }
            .map_err(|e| free(RegionError::Pool(e)))?;
        let range = pool.dma_range();
        let len = (range.end - range.start) as usize;
        let Some(cpu) = pool.translate(range.start, len) else {
            drop(pool);
            return Err(free(RegionError::Memory(
                "pool range does not translate".into(),
            )));
        };
        // SAFETY: `cpu..cpu + len` is inside the allocation above, which stays alive as long
        // as this region (and so as the mapping, which does not own or unmap it).
        let mapping = unsafe {
            MmapRegion::build_raw(
                cpu.as_ptr(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_ANONYMOUS | libc::MAP_PRIVATE,
            )
        };
        let memory = mapping
            .map_err(|e| e.to_string())
            .and_then(|m| {
                GuestRegionMmap::new(m, GuestAddress(range.start))
                    .ok_or_else(|| "region wraps the guest address space".to_string())
            })
            .and_then(|r| GuestMemoryMmap::from_regions(vec![r]).map_err(|e| e.to_string()));
        match memory {
            Ok(memory) => Ok(Self {
                pool,
                memory,
                mem,
                layout,
            }),
            Err(e) => {
                drop(pool);
                Err(free(RegionError::Memory(e)))
            }
        }
    }

    /// [`new`](Self::new), leaked: a region for the rest of the program, as a pool bound to
    /// a `Hal` must be.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    pub fn leak(size: usize, dma_base: u64, config: Config) -> Result<&'static Self, RegionError> {
        Self::new(size, dma_base, config).map(|r| &*Box::leak(Box::new(r)))
    }

    /// The pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The device's view: guest memory holding the pool's slots and nothing else.
    pub fn memory(&self) -> &GuestMemoryMmap {
        &self.memory
    }
}

impl Drop for DmaRegion {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout. The pool and the guest memory view
        // are dropped right after this without touching the memory (neither owns it), and
        // nothing else can reach it.
        unsafe { alloc::dealloc(self.mem.as_ptr(), self.layout) };
    }
}
