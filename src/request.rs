//! The vocabulary of a request: device addresses, directions, a device's constraints and
//! the options of a call.

/// An address in the device's address space (Linux's `dma_addr_t`).
pub type DmaAddr = u64;

/// Which way data moves through a mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "test-utils", derive(arbitrary::Arbitrary))]
pub enum Direction {
    /// The device reads the buffer (Linux `DMA_TO_DEVICE`).
    ToDevice,
    /// The device writes the buffer (Linux `DMA_FROM_DEVICE`).
    FromDevice,
    /// Both (Linux `DMA_BIDIRECTIONAL`).
    Bidirectional,
}

impl Direction {
    /// Whether data moves from the original to the bounce buffer on `sync_for_device`.
    pub const fn to_device(self) -> bool {
        matches!(self, Direction::ToDevice | Direction::Bidirectional)
    }

    /// Whether data moves from the bounce buffer to the original on `sync_for_cpu` and
    /// `unmap`.
    pub const fn from_device(self) -> bool {
        matches!(self, Direction::FromDevice | Direction::Bidirectional)
    }
}

/// What a device can and cannot do with addresses: Linux's `min_align_mask`,
/// `alloc_align_mask`, `seg_boundary_mask` and DMA mask, as one value per device.
///
/// Every mask is of the form `2^k - 1`; all are applied to device addresses.
///
/// # Examples
///
/// ```
/// use swiotlb::Constraints;
/// // An NVMe controller that can address 32 bits.
/// let nvme = Constraints::new().min_align_mask(0xfff).dma_limit(u32::MAX as u64);
/// assert_eq!(nvme.seg_boundary_mask, u64::MAX);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Constraints {
    /// Bits of the original address the bounce address must keep (`dma & mask == orig &
    /// mask`). NVMe uses `0xfff`. Whole slots of the kept offset become front padding.
    pub min_align_mask: u64,
    /// The first allocated slot (before the kept offset) is aligned to `mask + 1`. With this
    /// and `min_align_mask` both zero, mappings of a page or more are page-aligned.
    pub alloc_align_mask: u64,
    /// The allocated slots never cross a multiple of `mask + 1`. `u64::MAX`: no boundary.
    pub seg_boundary_mask: u64,
    /// The highest device address the device can reach; no byte of a mapping lies above it.
    pub dma_limit: u64,
}

impl Constraints {
    /// No constraint at all.
    pub const NONE: Self = Self {
        min_align_mask: 0,
        alloc_align_mask: 0,
        seg_boundary_mask: u64::MAX,
        dma_limit: u64::MAX,
    };

    /// No constraint at all (the same as [`Constraints::NONE`]).
    pub const fn new() -> Self {
        Self::NONE
    }

    /// Sets [`min_align_mask`](Self::min_align_mask).
    pub const fn min_align_mask(mut self, mask: u64) -> Self {
        self.min_align_mask = mask;
        self
    }

    /// Sets [`alloc_align_mask`](Self::alloc_align_mask).
    pub const fn alloc_align_mask(mut self, mask: u64) -> Self {
        self.alloc_align_mask = mask;
        self
    }

    /// Sets [`seg_boundary_mask`](Self::seg_boundary_mask).
    pub const fn seg_boundary_mask(mut self, mask: u64) -> Self {
        self.seg_boundary_mask = mask;
        self
    }

    /// Sets [`dma_limit`](Self::dma_limit).
    pub const fn dma_limit(mut self, limit: u64) -> Self {
        self.dma_limit = limit;
        self
    }
}

impl Default for Constraints {
    fn default() -> Self {
        Self::NONE
    }
}

/// Options of [`Pool::unmap`](crate::Pool::unmap) (Linux's `DMA_ATTR_*`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Attrs {
    /// Do not copy the bounce buffer back to the original on unmap (Linux
    /// `DMA_ATTR_SKIP_CPU_SYNC`). The copy into the bounce buffer on map always happens.
    pub skip_cpu_sync: bool,
}

impl Attrs {
    /// No options.
    pub const NONE: Self = Self {
        skip_cpu_sync: false,
    };
    /// Skip the copy back on unmap.
    pub const SKIP_CPU_SYNC: Self = Self {
        skip_cpu_sync: true,
    };
}
