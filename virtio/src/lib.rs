//! Route every virtqueue buffer through a [`swiotlb`] pool, so a virtio device without an
//! IOMMU only ever sees bounce addresses and the rest of the guest's memory stays private.
//!
//! Two ways in:
//!
//! - [`SwiotlbHal`]: a [`virtio_drivers::Hal`] backed by a pool. `share` maps each buffer in
//!   its direction (copying it into the pool), `unshare` copies back what the device may
//!   have written and frees the slots, `dma_alloc` / `dma_dealloc` take the rings from the
//!   pool as coherent allocations. Every `virtio-drivers` driver (block, console, net, rng,
//!   gpu, socket, ...) then works unchanged.
//! - [`map_sg`]: a scatter-gather list of buffers for any other virtqueue implementation,
//!   mapped all-or-nothing and unmapped with the used length the device reported, copying
//!   back only the bytes the device claims to have written (clamped to the buffers: the
//!   device is not trusted).
//!
//! The mapping rules are SEMANTICS.md's "virtio" section: driver-readable ("out") buffers
//! are `ToDevice`, device-writable ("in") buffers `FromDevice`, an indirect descriptor table
//! is itself a `ToDevice` mapping, rings are coherent allocations from the pool.
//!
//! # Binding a pool to a `Hal`
//!
//! `Hal`'s functions take no `self`, so the pool is found through the type: a marker type
//! made by [`bind_pool!`] owns a `static` [`PoolSlot`], registered once at start-up. The pool
//! is an [`ElasticPool`](swiotlb::ElasticPool): one that grows from a
//! [`Backend`](swiotlb::Backend) (pages shared with the host on demand), or
//! [`ElasticPool::fixed`](swiotlb::ElasticPool::fixed) over one region shared beforehand.
//!
//! ```
//! use swiotlb::{Config, ElasticConfig, ElasticPool, HeapBackend, Pool};
//! use swiotlb_virtio::{bind_pool, HalOptions, PoolBinding, SwiotlbHal};
//!
//! bind_pool!(pub BlkPool);
//! type BlkHal = SwiotlbHal<BlkPool>;
//!
//! // At start-up: a pool that starts at 256 KiB and grows from a backend (here, heap
//! // memory; in a confidential VM, pages shared with the host)...
//! let config = ElasticConfig::new().with_initial(256 << 10);
//! let pool = ElasticPool::new(HeapBackend::new(), config)?;
//! BlkPool::register(Box::leak(Box::new(pool)), HalOptions::new())?;
//!
//! // ... or a fixed one over a region shared beforehand.
//! bind_pool!(pub NetPool);
//! let fixed = ElasticPool::fixed(Pool::allocate(1 << 20, Config::new())?);
//! NetPool::register(Box::leak(Box::new(fixed)), HalOptions::new())?;
//!
//! // Then, for instance: VirtIOBlk::<BlkHal, _>::new(transport)
//! # let _ = core::marker::PhantomData::<BlkHal>;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Several devices can have several pools (one marker each), or share one pool through
//! several markers (each with its own [`Constraints`](swiotlb::Constraints)).
//!
//! [`PoolBinding`] is an `unsafe trait` (`SwiotlbHal`'s `unsafe impl Hal` relies on it);
//! `bind_pool!` writes the `unsafe impl` for you, using only the trait's defaults.
//!
//! # PCI BARs: MMIO windows
//!
//! The PCI transport's constructor asks the `Hal` for a pointer to each virtio structure in
//! the device's BARs (`Hal::mmio_phys_to_virt`). In a confidential VM the host emulates PCI
//! and picks those addresses, so the default translation accepts only ranges that lie
//! entirely inside an [`MmioWindow`] listed in [`HalOptions::mmio_windows`]: MMIO the guest
//! mapped itself, vouched for by the window's `unsafe` constructor and checked at
//! registration (not empty, not wrapping, not overlapping another window or the pool). A
//! BAR anywhere else panics with its address, size and the binding's name, so the driver
//! stops instead of being handed RAM or the pool as registers. The virtio-mmio transport
//! never asks, and needs no windows.
//!
//! ```
//! use swiotlb::{Config, ElasticPool, Pool};
//! use swiotlb_virtio::{bind_pool, HalOptions, MmioWindow, PoolBinding, SwiotlbHal};
//! use virtio_drivers::Hal;
//!
//! bind_pool!(NetPool);
//!
//! // SAFETY: on the platform this stands for, physical 0xfe00_0000.. is PCI memory space
//! // mapped 1:1 and used for nothing else (this example never dereferences it).
//! let pci = unsafe { MmioWindow::identity(0xfe00_0000, 0x100_0000) };
//! let windows: &'static [MmioWindow] = Box::leak(Box::new([pci]));
//! let pool = ElasticPool::fixed(Pool::allocate(1 << 20, Config::new())?);
//! NetPool::register(Box::leak(Box::new(pool)), HalOptions::new().mmio_windows(windows))?;
//!
//! // What PciTransport::new does with a BAR at 0xfe00_4000 (a 0x38-byte common config):
//! // SAFETY: translation only; the pointer is not used.
//! let regs = unsafe { SwiotlbHal::<NetPool>::mmio_phys_to_virt(0xfe00_4000, 0x38) };
//! assert_eq!(regs.as_ptr().addr(), 0xfe00_4000);
//! // A BAR the host pointed at the pool would panic instead.
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # When the pool is full
//!
//! `Hal::share` cannot fail. A share that finds no room first lets the pool grow (if it has
//! a backend and room under its ceiling); if it still finds none, it waits on the pool
//! itself, woken by the unmap or free that makes room (no polling), for at most
//! [`FullPolicy`]'s bound, then panics with the pool's figures. Any other mapping error (a
//! buffer over [`max_mapping_size`](swiotlb::ElasticPool::max_mapping_size), say) panics at
//! once: waiting cannot help. `dma_alloc` does not wait: it reports failure, and the driver
//! returns `Error::DmaError`. [`map_sg`] never waits or panics: it returns the error.
//!
//! # When a driver is dropped
//!
//! virtio-drivers 0.13's console, net and input drivers never unshare the receive buffers
//! they have posted when they are dropped, so those stay mapped. A binding registered with
//! [`HalOptions::track_shares`] records what it shared ([`PoolSlot::outstanding`]), and
//! [`PoolSlot::reclaim`] (or [`PoolBinding::reclaim`]) takes those back, freeing the slots
//! without copying anything into the driver's buffers (which are gone). It is `unsafe`: the caller vouches that no
//! driver of the binding is left to unshare them and that the device was reset (dropping a
//! virtio-drivers driver unsets its queues).
//!
//! # Features
//!
//! | feature      | default | adds                                                       |
//! |--------------|---------|------------------------------------------------------------|
//! | `std`        | yes     | a waiting share parks its thread (woken by the unmap) instead of spinning |
//! | `counters`   | no      | [`PoolSlot::counters`]: shares, waits, bytes copied each way, reclaims |
//! | `test-utils` | no      | `testing`: a transport whose device is a rust-vmm model that can only reach the pool |
//!
//! Without `std` the crate needs only `core` and `alloc`.
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
#[macro_use]
extern crate std;

mod binding;
mod counters;
mod hal;
mod mmio;
mod policy;
mod sg;
#[cfg(feature = "test-utils")]
pub mod testing;

pub use binding::{BindError, HalOptions, PoolBinding, PoolSlot, Reclaimed};
pub use counters::HalCounters;
pub use hal::{direction, SwiotlbHal};
pub use mmio::MmioWindow;
pub use policy::FullPolicy;
pub use sg::{
    map_sg, Completion, MappedSg, Segment, SgBuf, SgError, SgPool, DESC_F_NEXT, DESC_F_WRITE,
};

/// The `virtio-drivers` crate this one implements [`Hal`](virtio_drivers::Hal) for.
pub use virtio_drivers;

/// The README's examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// The `swiotlb` crate whose pools this one binds (`swiotlb_virtio::swiotlb::Pool`), so a
/// user needs one dependency line and gets the matching version.
pub use swiotlb;
