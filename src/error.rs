//! Typed errors, one enum per concern.
//!
//! Every error is returned before the pool changes: a failed call leaves every slot, every
//! byte of the pool and every statistic except [`Stats::failed_maps`](crate::Stats) as it was.

use crate::config::MAX_AREAS;
use crate::request::{Direction, DmaAddr};
use core::fmt;

/// A pool configuration or region that cannot work.
#[derive(Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The slot size is not a power of two between 64 bytes and 4 KiB.
    #[error("slot size {0} is not a power of two between 64 and 4096 bytes")]
    SlotSize(usize),
    /// The segment length is not a power of two between 1 and 16384 slots.
    #[error("segment length {0} is not a power of two between 1 and 16384 slots")]
    SegmentSlots(usize),
    /// The page size is not a power of two of at least 4 KiB.
    #[error("page size {0} is not a power of two of at least 4096 bytes")]
    PageSize(usize),
    /// The number of areas asked for is zero, not a power of two, or over
    /// [`MAX_AREAS`](crate::MAX_AREAS).
    #[error("area count {0} is not a power of two between 1 and {MAX_AREAS}")]
    Areas(usize),
    /// The region holds no whole slot once its start is aligned to a slot in device space.
    #[error("region of {size} bytes at device address {dma_base:#x} holds no whole {slot_size}-byte slot")]
    TooSmall {
        /// Bytes in the region as given.
        size: usize,
        /// Device address of the region as given.
        dma_base: DmaAddr,
        /// Configured slot size.
        slot_size: usize,
    },
    /// The region wraps around the CPU or the device address space.
    #[error("region of {size} bytes at device address {dma_base:#x} wraps an address space")]
    Wraps {
        /// Bytes in the region as given.
        size: usize,
        /// Device address of the region as given.
        dma_base: DmaAddr,
    },
    /// The memory for the pool (or its metadata) could not be allocated.
    #[error("could not allocate {0} bytes for the pool")]
    OutOfMemory(usize),
}

/// Why a mapping or a coherent allocation was refused.
#[derive(Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MapError {
    /// A mapping or allocation of zero bytes.
    #[error("zero-length mapping")]
    ZeroLength,
    /// The length is over what one mapping can hold under these constraints
    /// (see [`Pool::max_mapping_size`](crate::Pool::max_mapping_size)).
    #[error("mapping of {size} bytes is over the maximum of {max} bytes")]
    TooLarge {
        /// Bytes asked for.
        size: usize,
        /// Largest mapping these constraints allow.
        max: usize,
    },
    /// A mask that is not of the form `2^k - 1`.
    #[error("{name} {mask:#x} is not of the form 2^k - 1")]
    InvalidMask {
        /// Which mask: `min_align_mask`, `alloc_align_mask` or `seg_boundary_mask`.
        name: &'static str,
        /// The mask given.
        mask: u64,
    },
    /// No placement in this pool could ever satisfy the constraints, even with every slot
    /// free (for example an alignment no slot of the pool has, or a segment boundary smaller
    /// than the mapping).
    #[error("no placement of {size} bytes ({slots} slots, aligned to {align:#x}, boundary {boundary:#x}) exists in this pool")]
    Impossible {
        /// Bytes asked for.
        size: usize,
        /// Slots the request needs, front padding included.
        slots: usize,
        /// Alignment of the first slot in device address space, in bytes.
        align: u64,
        /// Device address window the slots must not cross, in bytes (`0`: none).
        boundary: u64,
    },
    /// The device cannot reach any part of the pool that could hold the mapping.
    #[error("device address limit {limit:#x} is below every placement of {size} bytes (pool at {pool_start:#x})")]
    Unreachable {
        /// Bytes asked for.
        size: usize,
        /// The device's highest reachable address.
        limit: u64,
        /// Device address of the pool's first slot.
        pool_start: DmaAddr,
    },
    /// The original buffer overlaps the pool itself.
    #[error("original buffer at {addr:#x} ({len} bytes) overlaps the bounce pool")]
    BufferInPool {
        /// CPU address of the original buffer.
        addr: usize,
        /// Its length.
        len: usize,
    },
    /// The buffer ends past the top of the address space.
    #[error("original buffer at {addr:#x} ({len} bytes) wraps the address space")]
    BufferWraps {
        /// CPU address of the original buffer.
        addr: usize,
        /// Its length.
        len: usize,
    },
    /// Every area was searched and none had room that meets the constraints.
    #[error("swiotlb buffer is full (sz: {size} bytes, {slots} slots, aligned to {align:#x}, boundary {boundary:#x}), total {total_slots} (slots), used {used_slots} (slots)")]
    Full {
        /// Bytes asked for.
        size: usize,
        /// Slots the request needs, front padding included.
        slots: usize,
        /// Alignment of the first slot in device address space, in bytes.
        align: u64,
        /// Device address window the slots must not cross, in bytes (`0`: none).
        boundary: u64,
        /// Slots in the pool.
        total_slots: usize,
        /// Slots in use when the search ended.
        used_slots: usize,
    },
}

/// Why an unmap, sync or free was refused: the address, length or direction does not
/// describe a live mapping (or coherent allocation) of this pool.
#[derive(Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LookupError {
    /// A sync of zero bytes.
    #[error("zero-length sync at {dma:#x}")]
    ZeroLength {
        /// Device address given.
        dma: DmaAddr,
    },
    /// The address is not inside a live mapping of this pool (outside the pool, in a free
    /// slot, in front padding, or already unmapped).
    #[error("{dma:#x} is not inside a live mapping of this pool")]
    NotMapped {
        /// Device address given.
        dma: DmaAddr,
    },
    /// Unmap or free with an address inside a mapping but not at its start.
    #[error("{dma:#x} is inside the mapping at {start:#x}, not its start")]
    NotStart {
        /// Device address given.
        dma: DmaAddr,
        /// Start of the mapping that holds it.
        start: DmaAddr,
    },
    /// Unmap or free with a length other than the mapping's.
    #[error("mapping at {dma:#x} is {mapped} bytes, not {given}")]
    LengthMismatch {
        /// Device address given.
        dma: DmaAddr,
        /// Length of the mapping.
        mapped: usize,
        /// Length given.
        given: usize,
    },
    /// A sync range that starts inside a mapping but runs past its end (Linux warns and
    /// truncates; this pool copies nothing).
    #[error("sync of {len} bytes at {dma:#x} runs past the end of the {mapped}-byte mapping at {start:#x}")]
    OutOfRange {
        /// Device address given.
        dma: DmaAddr,
        /// Length given.
        len: usize,
        /// Start of the mapping.
        start: DmaAddr,
        /// Length of the mapping.
        mapped: usize,
    },
    /// A direction that contradicts the mapping's: unmap must give the mapping's direction,
    /// sync must give it too unless the mapping is bidirectional.
    #[error("mapping at {dma:#x} is {mapped:?}, not {given:?}")]
    DirectionMismatch {
        /// Device address given.
        dma: DmaAddr,
        /// Direction of the mapping.
        mapped: Direction,
        /// Direction given.
        given: Direction,
    },
    /// A buffer given to [`unmap_into`](crate::Pool::unmap_into),
    /// [`sync_for_cpu_into`](crate::Pool::sync_for_cpu_into) or
    /// [`sync_for_device_from`](crate::Pool::sync_for_device_from) that is not the mapping's
    /// original, or not the part of it that the device address corresponds to.
    #[error(
        "buffer at {given:#x} is not the original's byte for {dma:#x}, which is at {expected:#x}"
    )]
    WrongBuffer {
        /// Device address given.
        dma: DmaAddr,
        /// CPU address of the original's byte for `dma`.
        expected: usize,
        /// CPU address of the buffer given.
        given: usize,
    },
    /// A streaming call on a coherent allocation, or a free of a streaming mapping.
    #[error("{dma:#x} is a {actual}, not a {expected}")]
    WrongKind {
        /// Device address given.
        dma: DmaAddr,
        /// What the call expected: "streaming mapping" or "coherent allocation".
        expected: &'static str,
        /// What the address is.
        actual: &'static str,
    },
}

// === Debug: addresses, masks and alignments in hex, as the messages print them ===

/// A number that `Debug` prints in hex (`0x1000`).
pub(crate) struct Hex<T>(pub(crate) T);

impl<T: fmt::LowerHex> fmt::Debug for Hex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

impl fmt::Debug for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::SlotSize(n) => f.debug_tuple("SlotSize").field(&n).finish(),
            Self::SegmentSlots(n) => f.debug_tuple("SegmentSlots").field(&n).finish(),
            Self::PageSize(n) => f.debug_tuple("PageSize").field(&n).finish(),
            Self::Areas(n) => f.debug_tuple("Areas").field(&n).finish(),
            Self::TooSmall {
                size,
                dma_base,
                slot_size,
            } => f
                .debug_struct("TooSmall")
                .field("size", &size)
                .field("dma_base", &Hex(dma_base))
                .field("slot_size", &slot_size)
                .finish(),
            Self::Wraps { size, dma_base } => f
                .debug_struct("Wraps")
                .field("size", &size)
                .field("dma_base", &Hex(dma_base))
                .finish(),
            Self::OutOfMemory(n) => f.debug_tuple("OutOfMemory").field(&n).finish(),
        }
    }
}

impl fmt::Debug for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::ZeroLength => f.write_str("ZeroLength"),
            Self::TooLarge { size, max } => f
                .debug_struct("TooLarge")
                .field("size", &size)
                .field("max", &max)
                .finish(),
            Self::InvalidMask { name, mask } => f
                .debug_struct("InvalidMask")
                .field("name", &name)
                .field("mask", &Hex(mask))
                .finish(),
            Self::Impossible {
                size,
                slots,
                align,
                boundary,
            } => f
                .debug_struct("Impossible")
                .field("size", &size)
                .field("slots", &slots)
                .field("align", &Hex(align))
                .field("boundary", &Hex(boundary))
                .finish(),
            Self::Unreachable {
                size,
                limit,
                pool_start,
            } => f
                .debug_struct("Unreachable")
                .field("size", &size)
                .field("limit", &Hex(limit))
                .field("pool_start", &Hex(pool_start))
                .finish(),
            Self::BufferInPool { addr, len } => f
                .debug_struct("BufferInPool")
                .field("addr", &Hex(addr))
                .field("len", &len)
                .finish(),
            Self::BufferWraps { addr, len } => f
                .debug_struct("BufferWraps")
                .field("addr", &Hex(addr))
                .field("len", &len)
                .finish(),
            Self::Full {
                size,
                slots,
                align,
                boundary,
                total_slots,
                used_slots,
            } => f
                .debug_struct("Full")
                .field("size", &size)
                .field("slots", &slots)
                .field("align", &Hex(align))
                .field("boundary", &Hex(boundary))
                .field("total_slots", &total_slots)
                .field("used_slots", &used_slots)
                .finish(),
        }
    }
}

impl fmt::Debug for LookupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::ZeroLength { dma } => f
                .debug_struct("ZeroLength")
                .field("dma", &Hex(dma))
                .finish(),
            Self::NotMapped { dma } => f.debug_struct("NotMapped").field("dma", &Hex(dma)).finish(),
            Self::NotStart { dma, start } => f
                .debug_struct("NotStart")
                .field("dma", &Hex(dma))
                .field("start", &Hex(start))
                .finish(),
            Self::LengthMismatch { dma, mapped, given } => f
                .debug_struct("LengthMismatch")
                .field("dma", &Hex(dma))
                .field("mapped", &mapped)
                .field("given", &given)
                .finish(),
            Self::OutOfRange {
                dma,
                len,
                start,
                mapped,
            } => f
                .debug_struct("OutOfRange")
                .field("dma", &Hex(dma))
                .field("len", &len)
                .field("start", &Hex(start))
                .field("mapped", &mapped)
                .finish(),
            Self::DirectionMismatch { dma, mapped, given } => f
                .debug_struct("DirectionMismatch")
                .field("dma", &Hex(dma))
                .field("mapped", &mapped)
                .field("given", &given)
                .finish(),
            Self::WrongBuffer {
                dma,
                expected,
                given,
            } => f
                .debug_struct("WrongBuffer")
                .field("dma", &Hex(dma))
                .field("expected", &Hex(expected))
                .field("given", &Hex(given))
                .finish(),
            Self::WrongKind {
                dma,
                expected,
                actual,
            } => f
                .debug_struct("WrongKind")
                .field("dma", &Hex(dma))
                .field("expected", &expected)
                .field("actual", &actual)
                .finish(),
        }
    }
}
