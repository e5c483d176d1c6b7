//! A pool at a chosen device address, and the device's view of it: guest memory that holds
//! the pool's regions and nothing else, following the regions as the pool grows and
//! shrinks.

use std::boxed::Box;
use std::string::{String, ToString};
use std::sync::{Mutex, PoisonError};
use std::vec::Vec;
use swiotlb::testing::TestBackend;
use swiotlb::{Config, ElasticConfig, ElasticError, ElasticPool};
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
    /// The pool refused the configuration or its first region.
    Pool(ElasticError),
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

/// Memory the "host" may see: an [`ElasticPool`] whose regions come from a
/// [`TestBackend`] at device addresses from `dma_base` up (deliberately not the CPU
/// addresses, so a driver that leaks a CPU address to the device is caught), and a
/// vm-memory [`GuestMemoryMmap`] with the pool's regions at their device addresses. A
/// device model given [`memory`](Self::memory) can reach the regions shared now and
/// nothing else: a region given back by a shrink disappears from the view (its memory is
/// kept, unused, until the region is dropped, so a stale view cannot touch freed memory).
#[derive(Debug)]
pub struct DmaRegion {
    pool: ElasticPool,
    backend: TestBackend,
    /// The last view built, and the backend generation it was built at.
    view: Mutex<(usize, GuestMemoryMmap)>,
}

impl DmaRegion {
    /// A pool of one region of `size` bytes at device address `dma_base`, which never
    /// grows (a share that finds it full waits for room, as a fixed pool's would).
    ///
    /// # Errors
    ///
    /// [`RegionError`]: `size` or `dma_base` not page-aligned, a configuration the pool
    /// refuses, or guest memory vm-memory refuses.
    pub fn new(size: usize, dma_base: u64, config: Config) -> Result<Self, RegionError> {
        let mask = REGION_ALIGN - 1;
        if size == 0 || size & mask != 0 || dma_base & mask as u64 != 0 {
            return Err(RegionError::Unaligned { size, dma_base });
        }
        let elastic = ElasticConfig::new()
            .with_pool(config)
            .with_initial(size)
            .with_grow(size, size)
            .with_max_bytes(size)
            .with_grow_on_map(false);
        Self::elastic(dma_base, elastic)
    }

    /// An elastic pool with `config`, its first region at `dma_base` (rounded up to the
    /// region's alignment) and the regions it adds above.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    pub fn elastic(dma_base: u64, config: ElasticConfig) -> Result<Self, RegionError> {
        let backend = TestBackend::new(dma_base);
        backend.quarantine(true);
        let pool = ElasticPool::new(backend.clone(), config).map_err(RegionError::Pool)?;
        let view = build_view(&backend)?;
        Ok(Self {
            pool,
            view: Mutex::new((backend.generation(), view)),
            backend,
        })
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

    /// [`elastic`](Self::elastic), leaked.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    pub fn leak_elastic(
        dma_base: u64,
        config: ElasticConfig,
    ) -> Result<&'static Self, RegionError> {
        Self::elastic(dma_base, config).map(|r| &*Box::leak(Box::new(r)))
    }

    /// The pool.
    pub fn pool(&self) -> &ElasticPool {
        &self.pool
    }

    /// The backend its regions come from (every share and unshare is recorded there).
    pub fn backend(&self) -> &TestBackend {
        &self.backend
    }

    /// The device's view now: guest memory holding the regions shared now and nothing else.
    ///
    /// # Panics
    ///
    /// If vm-memory refuses the regions (they are page-aligned and disjoint, so it does
    /// not).
    pub fn memory(&self) -> GuestMemoryMmap {
        let mut view = self.view.lock().unwrap_or_else(PoisonError::into_inner);
        let generation = self.backend.generation();
        if view.0 != generation {
            *view = (
                generation,
                build_view(&self.backend).expect("guest memory over the pool's regions"),
            );
        }
        view.1.clone()
    }
}

/// Guest memory over the backend's live ranges.
fn build_view(backend: &TestBackend) -> Result<GuestMemoryMmap, RegionError> {
    let regions: Result<Vec<GuestRegionMmap>, String> = backend
        .live_ranges()
        .into_iter()
        .map(|r| {
            // SAFETY: `cpu..cpu + size` is a range the backend shared and keeps allocated
            // until it is dropped (quarantine: unshared ranges are kept too), after every
            // view of it, since the region (which owns the backend handle) outlives the
            // transports built over it; the view never owns or unmaps it.
            let mapping = unsafe {
                MmapRegion::build_raw(
                    r.cpu.as_ptr(),
                    r.size,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_ANONYMOUS | libc::MAP_PRIVATE,
                )
            }
            .map_err(|e| e.to_string())?;
            GuestRegionMmap::new(mapping, GuestAddress(r.dma))
                .ok_or_else(|| "region wraps the guest address space".to_string())
        })
        .collect();
    let regions = regions.map_err(RegionError::Memory)?;
    GuestMemoryMmap::from_regions(regions).map_err(|e| RegionError::Memory(e.to_string()))
}
