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

/// What the bounce buffer of a `FromDevice` mapping holds when the device is given it.
///
/// `ToDevice` and `Bidirectional` mappings always start as a copy of the original (the
/// device must read it); the rule matters only for buffers the device writes.
///
/// | rule       | bounce buffer at map | a device that writes only part, then a whole copy back |
/// |------------|----------------------|-------------------------------------------------------|
/// | `Original` | the original's bytes | the rest of the original is unchanged                  |
/// | `Zero`     | zeros                | the rest of the original becomes zeros                 |
///
/// `Original` is Linux's rule (since CVE-2022-0854): a caller that copies the whole buffer
/// back never sees stale pool bytes or loses its own. But it shows the device every byte
/// the buffer held before, which in a confidential VM is private memory handed to the
/// host. `Zero` shows the device nothing of the guest; it is the right rule wherever the
/// caller copies back only what the device reports it wrote (virtio's used length: the
/// spec forbids drivers to rely on bytes past it), and the only one that keeps a receive
/// buffer's old contents private.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "test-utils", derive(arbitrary::Arbitrary))]
pub enum Fill {
    /// A copy of the original (Linux).
    #[default]
    Original,
    /// Zeros: nothing of the original reaches the pool.
    Zero,
}

/// Options of a map or unmap (Linux's `DMA_ATTR_*`), for
/// [`Pool::map_attrs`](crate::Pool::map_attrs) and [`Pool::unmap`](crate::Pool::unmap).
///
/// # Examples
///
/// ```
/// use swiotlb::{Attrs, Fill};
/// let receive = Attrs::NONE.fill(Fill::Zero);
/// assert_eq!(receive, Attrs::ZERO_FILL);
/// assert!(!receive.skip_cpu_sync);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Attrs {
    /// Unmap: do not copy the bounce buffer back to the original (Linux
    /// `DMA_ATTR_SKIP_CPU_SYNC`). Ignored by map, whose copy (or fill) always happens.
    pub skip_cpu_sync: bool,
    /// Map: what a `FromDevice` bounce buffer starts as ([`Fill`]). Ignored by unmap.
    pub fill: Fill,
}

impl Attrs {
    /// No options: copy back on unmap, `FromDevice` buffers start as the original.
    pub const NONE: Self = Self {
        skip_cpu_sync: false,
        fill: Fill::Original,
    };
    /// Skip the copy back on unmap.
    pub const SKIP_CPU_SYNC: Self = Self::NONE.skip_cpu_sync(true);
    /// `FromDevice` bounce buffers start as zeros.
    pub const ZERO_FILL: Self = Self::NONE.fill(Fill::Zero);

    /// Sets [`skip_cpu_sync`](Self::skip_cpu_sync).
    pub const fn skip_cpu_sync(mut self, skip: bool) -> Self {
        self.skip_cpu_sync = skip;
        self
    }

    /// Sets [`fill`](Self::fill).
    pub const fn fill(mut self, fill: Fill) -> Self {
        self.fill = fill;
        self
    }
}
