//! Test doubles (feature `test-utils`): a virtio transport whose device side is a real
//! device model, built on rust-vmm's `virtio-queue` (ring and chain handling) and
//! `vm-memory` (all device memory accesses), whose guest memory holds **only the pool**.
//!
//! - [`DmaRegion`]: a pool at a device address of your choice (not the CPU address) and the
//!   device's view of it: one vm-memory region with the pool's slots at their device
//!   addresses, nothing else.
//! - [`PoolTransport`]: a `virtio_drivers::transport::Transport` (feature negotiation,
//!   config space, queue setup, notify) driving a [`DeviceModel`] over that memory;
//!   [`DeviceHandle`] is the test's side of it.
//! - [`BlockDevice`], [`ConsoleDevice`], [`RngDevice`]: device models.
//!
//! A descriptor, ring or indirect table outside the pool is a [`DeviceError`]: in
//! [`Mode::Inline`] `notify` panics with it, in [`Mode::Manual`] [`DeviceHandle::process`]
//! returns it, and either way the device stays failed.
//!
//! ```
//! use swiotlb::Config;
//! use swiotlb_virtio::testing::{BlockDevice, DmaRegion, TransportBuilder};
//! use swiotlb_virtio::{bind_pool, HalOptions, PoolBinding, SwiotlbHal};
//! use virtio_drivers::device::blk::VirtIOBlk;
//!
//! bind_pool!(DocPool);
//! let region = DmaRegion::leak(256 << 10, 0x8000_0000, Config::new())?;
//! DocPool::register(region.pool(), HalOptions::new())?;
//! let (transport, device) = TransportBuilder::new(BlockDevice::new(64), region).build();
//! let mut blk = VirtIOBlk::<SwiotlbHal<DocPool>, _>::new(transport)?;
//! blk.write_blocks(3, &[0x5a; 1024])?;
//! let mut back = [0u8; 1024];
//! blk.read_blocks(3, &mut back)?;
//! assert_eq!(back, [0x5a; 1024]);
//! drop(blk);
//! assert_eq!(region.pool().stats().used_slots, 0);
//! assert!(device.failure().is_none());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod chain;
mod devices;
mod region;
mod transport;

pub use chain::{Chain, Desc, DeviceError};
pub use devices::{BlockDevice, BlockStats, ConsoleDevice, RngDevice, SECTOR_SIZE};
pub use region::{DmaRegion, RegionError, REGION_ALIGN};
pub use transport::{
    DeviceHandle, DeviceModel, DeviceStats, Handled, Mode, PoolTransport, TransportBuilder,
    F_EVENT_IDX, F_INDIRECT_DESC, F_VERSION_1,
};
