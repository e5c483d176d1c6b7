//! A SWIOTLB for Rust: DMA bounced through a fixed pool of memory the device may see.
//!
//! Confidential and protected VMs (pKVM, SEV-SNP, TDX, Gunyah) must not let a device read
//! arbitrary guest memory. A [`Pool`] is a region shared with the device; every DMA buffer is
//! copied into it on [`map`](Pool::map) and back out on [`unmap`](Pool::unmap), and the
//! device only ever sees pool addresses. The semantics are Linux's `kernel/dma/swiotlb.c`
//! (v6.10+), including the fixes of 2022-2024: `min_align_mask` offset preservation with
//! front padding, `alloc_align_mask`, page alignment of page-sized mappings, segment
//! boundaries, address limits, partial syncs at any offset, coherent allocations.
//!
//! The pool is split into areas, each with its own lock and bitmap; a caller starts in its
//! own area (its thread or CPU) and falls back to the others, so an uncontended map and
//! unmap touch no lock another area's user touches. All allocator metadata lives outside
//! the pool (14 bytes and a bit per slot on 64-bit), because the device can write the pool.
//! See [`implementation`] for the design and why.
//!
//! # Examples
//!
//! ```
//! use core::ptr::NonNull;
//! use swiotlb::{Attrs, Config, Constraints, Direction, Pool};
//!
//! let pool = Pool::allocate(1 << 20, Config::new())?;
//! let nvme = Constraints::new().min_align_mask(0xfff);
//!
//! let mut buf = vec![7u8; 3000];
//! // SAFETY: `buf` stays alive and untouched until the unmap below.
//! let dma = unsafe { pool.map(NonNull::from(&mut buf[..]), Direction::Bidirectional, &nvme)? };
//! assert_eq!(dma & 0xfff, buf.as_ptr() as u64 & 0xfff); // low bits kept for the device
//!
//! // ... the device reads and writes pool memory at `dma` ...
//! # let cpu = pool.translate(dma, 3000).unwrap();
//! # unsafe { cpu.as_ptr().write(42) };
//!
//! // SAFETY: as above; the device is done with the buffer.
//! unsafe { pool.unmap(dma, buf.len(), Direction::Bidirectional, Attrs::NONE)? };
//! assert_eq!(buf[0], 42);
//! assert_eq!(pool.stats().used_slots, 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Features
//!
//! | feature      | default | adds                                                          |
//! |--------------|---------|---------------------------------------------------------------|
//! | `std`        | yes     | [`Pool::allocate`], `parking_lot` locks, a per-thread area hint |
//! | `test-utils` | no      | [`testing`]: the shadow model, operations and checks shared by tests, fuzzing and benches |
//!
//! Without `std` the crate needs only `alloc` (for the metadata), and the areas use a spin
//! lock with exponential backoff.
#![no_std]
#![deny(
    unsafe_op_in_unsafe_fn,
    missing_docs,
    clippy::undocumented_unsafe_blocks,
    rust_2018_idioms
)]
#![cfg_attr(docsrs, feature(doc_cfg))]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

mod area;
mod config;
mod error;
pub mod implementation;
mod padded;
mod pool;
mod slot;
mod sync;
#[cfg(feature = "test-utils")]
pub mod testing;
#[cfg(all(test, loom))]
mod tests;

pub use area::AreaStats;
pub use config::{Config, MAX_AREAS};
pub use error::{ConfigError, LookupError, MapError};
pub use pool::{Coherent, Mapping, MappingKind, Pool, Stats};

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

/// Options of [`Pool::unmap`] (Linux's `DMA_ATTR_*`).
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
