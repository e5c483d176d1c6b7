//! A SWIOTLB for Rust: DMA bounced through memory the device may see.
//!
//! Confidential and protected VMs (pKVM, SEV-SNP, TDX, Arm CCA, Gunyah) must not let a
//! device read arbitrary guest memory. Every DMA buffer is copied into memory shared with
//! the device on [`map`](Pool::map) and back out on [`unmap`](Pool::unmap), and the device
//! only ever sees those bounce addresses. The semantics are Linux's `kernel/dma/swiotlb.c`
//! (v6.10+), including the fixes of 2022-2024: `min_align_mask` offset preservation with
//! front padding, `alloc_align_mask`, page alignment of page-sized mappings, segment
//! boundaries, address limits, partial syncs at any offset, coherent allocations.
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
//!   a caller starts in its own area (its thread or CPU) and falls back to the others. All
//!   allocator metadata lives outside the region (15 bytes and a bit per slot on 64-bit),
//!   because the device can write it.
//!
//! See [`implementation`] for the design and why.
//!
//! # Examples
//!
//! ```
//! use core::ptr::NonNull;
//! use swiotlb::{Attrs, Constraints, Direction, ElasticConfig, ElasticPool, HeapBackend};
//!
//! // A pool that starts at 256 KiB and grows by 1 MiB regions from the backend (ordinary
//! // memory here; in a confidential VM, a backend that shares pages with the host).
//! let config = ElasticConfig::new().with_initial(256 << 10).with_grow(1 << 20, 256 << 10);
//! let pool = ElasticPool::new(HeapBackend::new(), config)?;
//! let nvme = Constraints::new().min_align_mask(0xfff);
//!
//! let mut buf = vec![7u8; 3000];
//! // SAFETY: `buf` stays alive and untouched until the unmap below.
//! let dma = unsafe {
//!     pool.try_map_attrs(NonNull::from(&mut buf[..]), Direction::Bidirectional, &nvme, Attrs::NONE)?
//! };
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
//! One region the user shared beforehand, with no growth:
//!
//! ```
//! use core::ptr::NonNull;
//! use swiotlb::{Attrs, Config, Constraints, Direction, Pool};
//!
//! let pool = Pool::allocate(1 << 20, Config::new())?; // or Pool::new over your region
//! let mut buf = vec![7u8; 3000];
//! // SAFETY: `buf` stays alive and untouched until the unmap below.
//! let dma = unsafe { pool.map(NonNull::from(&mut buf[..]), Direction::ToDevice, &Constraints::NONE)? };
//! // SAFETY: as above.
//! unsafe { pool.unmap(dma, buf.len(), Direction::ToDevice, Attrs::NONE)? };
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Features
//!
//! | feature      | default | adds                                                          |
//! |--------------|---------|---------------------------------------------------------------|
//! | `std`        | yes     | `Pool::allocate`, `parking_lot` locks, a per-thread area hint, `ElasticPool::map_wait`, a monotonic clock for idle times |
//! | `test-utils` | no      | `testing`: the shadow models, operations and checks shared by tests, fuzzing and benches, and `TestBackend` |
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
mod config;
mod elastic;
mod error;
pub mod implementation;
mod padded;
mod pool;
mod request;
pub mod shared;
mod slot;
mod sync;
#[cfg(feature = "test-utils")]
pub mod testing;
#[cfg(all(test, loom))]
mod tests;

pub use api::DmaPool;
pub use area::AreaStats;
pub use backend::{Backend, BackendError, HeapBackend, SharedRange};
pub use config::{Config, MAX_AREAS};
pub use elastic::{
    ElasticConfig, ElasticError, ElasticPool, ElasticStats, GrowError, MapFuture, SubPoolKind,
    SubPoolStats, Wakeup, MAX_SUB_POOLS,
};
pub use error::{ConfigError, LookupError, MapError};
pub use lock_api::RawMutex;
pub use pool::{Coherent, ForeignAllocation, Mapping, MappingKind, Pool, Stats};
pub use request::{Attrs, Constraints, Direction, DmaAddr, Fill};
pub use sync::{DefaultRawMutex, SpinRawMutex};
