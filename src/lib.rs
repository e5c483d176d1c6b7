//! A SWIOTLB for Rust: DMA bounced through memory the device may see.
//!
//! Confidential and protected VMs (pKVM, SEV-SNP, TDX, Arm CCA, Gunyah) must not let a
//! device read arbitrary guest memory. Every DMA buffer is copied into memory shared with
//! the device on map and back out on unmap, and the device only ever sees those bounce
//! addresses. The semantics are Linux's `kernel/dma/swiotlb.c` (v6.10+), including the
//! fixes of 2022-2024: `min_align_mask` offset preservation with front padding,
//! `alloc_align_mask`, page alignment of page-sized mappings, segment boundaries, address
//! limits, partial syncs at any offset, coherent allocations.
//!
//! Two rooms:
//!
//! - [`ElasticPool`]: a set of regions obtained from a [`Backend`] (pages the guest shares
//!   with the host on demand: pKVM's MEM_SHARE, TDX's MapGPA, SNP's page-state changes,
//!   CCA's unprotected alias), grown when full, given back when idle, found by device
//!   address in O(log n) without a lock, with maps that wait for room instead of failing
//!   ([`map_async`](ElasticPool::map_async), [`map_wait`](ElasticPool::map_wait)).
//!   [`ElasticPool::fixed`] is the same over one region shared beforehand.
//! - [`Pool`]: one contiguous region, split into areas, each with its own lock and bitmap;
//!   a caller starts in its own area (its thread or CPU) and falls back to the others, so
//!   an uncontended map and unmap touch no lock another area's user touches. All allocator
//!   metadata lives outside the region (15 bytes and a bit per slot on 64-bit), because the
//!   device can write it.
//!
//! See [`implementation`] for the design and why.
//!
//! # Examples
//!
//! The safe mapping types ([`DmaRef`], [`DmaMut`], [`DmaOwned`], [`CoherentGuard`]) borrow
//! or own the buffer for as long as the device may use it and unmap when dropped. Here over
//! an elastic pool that starts at 256 KiB and grows by 1 MiB regions from its backend
//! (ordinary memory here; in a confidential VM, a backend that shares pages with the host):
//!
//! ```
//! use swiotlb::{Constraints, DmaMut, ElasticConfig, ElasticPool, HeapBackend};
//!
//! let config = ElasticConfig::new().with_initial(256 << 10).with_grow(1 << 20, 256 << 10);
//! let pool = ElasticPool::new(HeapBackend::new(), config)?;
//! let nvme = Constraints::new().min_align_mask(0xfff);
//!
//! let mut buf = vec![7u8; 3000];
//! let mapping = DmaMut::bidirectional(&pool, &mut buf, &nvme)?;
//! assert_eq!(mapping.dma() & 0xfff, mapping.as_slice().as_ptr() as u64 & 0xfff); // low bits kept
//!
//! // ... the device reads and writes pool memory at `mapping.dma()` ...
//! # let cpu = pool.translate(mapping.dma(), 1).unwrap();
//! # unsafe { swiotlb::shared::fill_shared(cpu.as_ptr(), 42, 1) };
//!
//! mapping.unmap()?; // copies back
//! assert_eq!(buf[0], 42);
//! assert_eq!(pool.stats().used_slots, 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A [`Pool`] over one region the user shared beforehand (`Pool::new`, or
//! `Pool::allocate` for tests) takes the same mapping types.
//!
//! The raw calls ([`Pool::map`], [`Pool::unmap`], the syncs,
//! [`ElasticPool::try_map_attrs`] and the others, and the [`DmaPool`] trait) are `unsafe`:
//! the caller keeps the buffer alive and alone while it is mapped. They are for code that
//! keeps its own books, such as a `virtio_drivers::Hal`.
//!
//! # Features
//!
//! | feature          | default | adds                                                          |
//! |------------------|---------|---------------------------------------------------------------|
//! | `std`            | yes     | `Pool::allocate`, `parking_lot` locks, a per-thread area hint, `ElasticPool::map_wait`, a monotonic clock for idle times |
//! | `allocator-api2` | no      | `SharedAlloc`: an `allocator_api2` `Allocator` whose blocks are pool memory |
//! | `dma-api`        | no      | `PoolDmaOp`: the `dma-api` crate's `DmaOp` over a pool (Rust 1.85) |
//! | `fdt`            | no      | `fdt`: pools from device-tree `restricted-dma-pool` nodes (Rust 1.88) |
//! | `test-utils`     | no      | `testing`: the shadow models, operations and checks shared by tests, fuzzing and benches, and `TestBackend` |
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

mod api;
mod area;
pub mod backend;
mod cache;
mod config;
#[cfg(feature = "dma-api")]
#[cfg_attr(docsrs, doc(cfg(feature = "dma-api")))]
pub mod dma_op;
mod elastic;
mod error;
#[cfg(feature = "fdt")]
#[cfg_attr(docsrs, doc(cfg(feature = "fdt")))]
pub mod fdt;
pub mod guard;
pub mod implementation;
mod padded;
mod pool;
mod request;
pub mod shared;
#[cfg(feature = "allocator-api2")]
#[cfg_attr(docsrs, doc(cfg(feature = "allocator-api2")))]
pub mod shared_alloc;
mod slot;
mod sync;
#[cfg(feature = "test-utils")]
pub mod testing;
#[cfg(all(test, loom))]
mod tests;

/// The README's examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

pub use api::DmaPool;
pub use area::AreaStats;
pub use backend::{Backend, BackendError, HeapBackend, SharedRange};
pub use config::{Config, MAX_AREAS};
pub use elastic::{
    ElasticConfig, ElasticError, ElasticPool, ElasticStats, GrowError, MapFuture, SubPoolKind,
    SubPoolStats, Wakeup, MAX_SUB_POOLS,
};
pub use error::{ConfigError, LookupError, MapError};
pub use guard::{BufError, CoherentGuard, DmaMut, DmaOwned, DmaRef, OwnedBuf};
pub use lock_api::RawMutex;
pub use pool::{Coherent, ForeignAllocation, Mapping, MappingKind, Pool, Stats};
pub use request::{Attrs, Constraints, Direction, DmaAddr, Fill};
pub use sync::{DefaultRawMutex, SpinRawMutex};

/// The `allocator-api2` crate [`SharedAlloc`] implements `Allocator` of (its `Vec`, `Box`).
#[cfg(feature = "allocator-api2")]
#[cfg_attr(docsrs, doc(cfg(feature = "allocator-api2")))]
pub use allocator_api2;
#[cfg(feature = "allocator-api2")]
#[cfg_attr(docsrs, doc(cfg(feature = "allocator-api2")))]
pub use shared_alloc::SharedAlloc;

/// The `dma-api` crate whose [`DmaOp`](dma_api::DmaOp) [`PoolDmaOp`] implements.
#[cfg(feature = "dma-api")]
#[cfg_attr(docsrs, doc(cfg(feature = "dma-api")))]
pub use dma_api;
#[cfg(feature = "dma-api")]
#[cfg_attr(docsrs, doc(cfg(feature = "dma-api")))]
pub use dma_op::PoolDmaOp;
