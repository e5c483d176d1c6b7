//! Pools from a device tree's `restricted-dma-pool` reserved-memory nodes, the way pKVM's
//! pvmfw and Gunyah describe the memory a protected guest shares with its devices:
//!
//! ```text
//! reserved-memory {
//!     #address-cells = <2>;
//!     #size-cells = <2>;
//!     ranges;
//!     swiotlb: restricted-dma@80000000 {
//!         compatible = "restricted-dma-pool";
//!         reg = <0x0 0x80000000 0x0 0x400000>;   // or: size = <...>; alignment = <...>;
//!     };
//! };
//! virtio_blk@a000000 { ...; memory-region = <&swiotlb>; };
//! ```
//!
//! [`DeviceTree::restricted_dma_regions`] lists the pools, [`DeviceTree::region_of`] finds
//! a device's pool through its `memory-region` phandles, and the `unsafe`
//! [`RestrictedDmaRegion::pool`] builds a [`Pool`] over one, given where the CPU sees it.
//! A node with `size` (and maybe `alignment`) instead of `reg` asks the OS to choose the
//! memory; it is reported ([`RestrictedDmaRegion::base`] is `None`) and the caller
//! allocates and shares it, then builds the pool with [`Pool::new`].
//!
//! The parser is [`dtoolkit`] (Google's, `no_std` without `alloc`, `MIT OR Apache-2.0`
//! like this crate, maintained, and able to write device trees too): the `fdt` crate is
//! MPL-2.0 and its 0.1 line has not changed since 2023, `fdt-rs` since 2021. `dtoolkit`
//! 0.4 needs Rust 1.88.
//!
//! Device addresses are the `reg` addresses: pvmfw and Gunyah guests have no IOMMU and no
//! `dma-ranges` translation between the pool and its devices. A platform whose devices see
//! the pool elsewhere builds it with [`Pool::new`] and its own device address.
//!
//! ```
//! # let dtb = swiotlb_fdt_example();
//! # fn swiotlb_fdt_example() -> Vec<u8> {
//! #     let mut w = vm_fdt::FdtWriter::new().unwrap();
//! #     let root = w.begin_node("").unwrap();
//! #     w.property_u32("#address-cells", 2).unwrap();
//! #     w.property_u32("#size-cells", 2).unwrap();
//! #     let rm = w.begin_node("reserved-memory").unwrap();
//! #     w.property_u32("#address-cells", 2).unwrap();
//! #     w.property_u32("#size-cells", 2).unwrap();
//! #     w.property_null("ranges").unwrap();
//! #     let n = w.begin_node("restricted-dma@80000000").unwrap();
//! #     w.property_string("compatible", "restricted-dma-pool").unwrap();
//! #     w.property_array_u64("reg", &[0x8000_0000, 0x40_0000]).unwrap();
//! #     w.property_u32("phandle", 1).unwrap();
//! #     w.end_node(n).unwrap();
//! #     w.end_node(rm).unwrap();
//! #     let blk = w.begin_node("virtio_blk@a000000").unwrap();
//! #     w.property_u32("memory-region", 1).unwrap();
//! #     w.end_node(blk).unwrap();
//! #     w.end_node(root).unwrap();
//! #     w.finish().unwrap()
//! # }
//! use swiotlb::fdt::DeviceTree;
//!
//! let tree = DeviceTree::new(&dtb)?;
//! let region = tree.region_of("/virtio_blk@a000000")?.expect("the device bounces");
//! assert_eq!((region.base, region.size), (Some(0x8000_0000), 0x40_0000));
//! // On the guest, with the region mapped (shared with the host) at `virt`:
//! // let pool = unsafe { region.pool(virt, Config::new()) }?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::config::Config;
use crate::error::ConfigError;
use crate::pool::Pool;
use crate::request::DmaAddr;
use alloc::vec::Vec;
use core::ptr::NonNull;
use dtoolkit::fdt::{Fdt, FdtNode};
use dtoolkit::standard::NodeStandard;
use dtoolkit::{Node, Property, ToCellInt};

/// The `compatible` string of a bounce-buffer region.
pub const RESTRICTED_DMA_POOL: &str = "restricted-dma-pool";

/// Why a device tree could not be read as this module needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FdtError {
    /// The blob is not a valid flattened device tree.
    #[error("not a valid flattened device tree")]
    Invalid,
    /// No node at the path given.
    #[error("no node at the path given")]
    NoSuchNode,
    /// A property whose value cannot be what the binding says (a wrong length, a size of
    /// more than 64 bits, a `memory-region` that is not a list of phandles).
    #[error("property `{0}` of a node has a malformed value")]
    BadProperty(&'static str),
    /// A `memory-region` phandle that names no node.
    #[error("memory-region phandle {0:#x} names no node")]
    NoSuchPhandle(u32),
    /// A `restricted-dma-pool` node with neither `reg` nor `size`.
    #[error("restricted-dma-pool node without `reg` or `size`")]
    NoSize,
}

/// A `restricted-dma-pool` node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestrictedDmaRegion<'a> {
    /// The node's name (`restricted-dma@80000000`).
    pub name: &'a str,
    /// Its `phandle`, if any (devices name it in `memory-region`).
    pub phandle: Option<u32>,
    /// Its address (the first `reg` entry): the same for the device and, in a guest without
    /// an IOMMU, guest-physical. `None` for a node that gives only a `size`, whose memory the
    /// OS chooses.
    pub base: Option<DmaAddr>,
    /// Its size in bytes.
    pub size: u64,
    /// The `alignment` property, for a node that gives only a `size`.
    pub alignment: Option<u64>,
}

/// Why a pool could not be built over a region.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegionPoolError {
    /// The node gives no `reg`: the caller chooses its memory (use [`Pool::new`]).
    #[error("restricted-dma-pool region {0} has no fixed address (only a size)")]
    NoAddress(u64),
    /// The region is larger than the address space.
    #[error("restricted-dma-pool region of {0:#x} bytes does not fit the address space")]
    TooLarge(u64),
    /// The pool refused the region or the configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

impl RestrictedDmaRegion<'_> {
    /// Builds a pool over this region, whose bytes the CPU sees at `cpu` (where the caller
    /// mapped the region's guest-physical addresses) and the device at
    /// [`base`](Self::base).
    ///
    /// # Errors
    ///
    /// [`RegionPoolError`]: a node with no `reg`, a size larger than the address space, or
    /// what [`Pool::new`] refuses.
    ///
    /// # Safety
    ///
    /// [`Pool::new`]'s, for `cpu`, `base` and `size`: for as long as the pool lives,
    /// `cpu..cpu + size` is mapped to the region's physical memory `base..base + size`,
    /// valid for reads and writes, shared with the host or device (on pKVM: the pages have
    /// been shared with `MEM_SHARE`; on other platforms as they require), and used by
    /// nothing else in the program; the device reaches the same bytes at `base`.
    pub unsafe fn pool(&self, cpu: NonNull<u8>, config: Config) -> Result<Pool, RegionPoolError> {
        let base = self.base.ok_or(RegionPoolError::NoAddress(self.size))?;
        let size = usize::try_from(self.size).map_err(|_| RegionPoolError::TooLarge(self.size))?;
        // SAFETY: the caller's promise, which is `Pool::new`'s for these figures.
        Ok(unsafe { Pool::new(cpu, base, size, config) }?)
    }
}

/// A parsed device tree, read for its bounce-buffer regions. Reads the blob in place and
/// allocates only while searching by phandle.
#[derive(Clone, Copy, Debug)]
pub struct DeviceTree<'a> {
    fdt: Fdt<'a>,
}

impl<'a> DeviceTree<'a> {
    /// Checks and parses `dtb`.
    ///
    /// # Errors
    ///
    /// [`FdtError::Invalid`] if the header or structure is malformed.
    pub fn new(dtb: &'a [u8]) -> Result<Self, FdtError> {
        let fdt = Fdt::new(dtb).map_err(|_| FdtError::Invalid)?;
        Ok(Self { fdt })
    }

    /// Every `restricted-dma-pool` node under `/reserved-memory` whose status is okay, in
    /// the tree's order.
    pub fn restricted_dma_regions(
        &self,
    ) -> impl Iterator<Item = Result<RestrictedDmaRegion<'a>, FdtError>> + 'a {
        self.fdt
            .reserved_memory()
            .into_iter()
            .flatten()
            .map(|rm| *rm)
            .filter(is_restricted_pool)
            .map(region)
    }

    /// The `restricted-dma-pool` region that the node at `path` (a device) names in its
    /// `memory-region` property, or `None` if it names none (the device does not bounce).
    ///
    /// # Errors
    ///
    /// [`FdtError::NoSuchNode`] for a path that names no node, [`FdtError::BadProperty`] for
    /// a malformed `memory-region`, [`FdtError::NoSuchPhandle`] for a phandle that names no
    /// node, and the errors of [`restricted_dma_regions`](Self::restricted_dma_regions) for
    /// the region's own node.
    pub fn region_of(&self, path: &str) -> Result<Option<RestrictedDmaRegion<'a>>, FdtError> {
        let node = self.fdt.find_node(path).ok_or(FdtError::NoSuchNode)?;
        let Some(prop) = node.property("memory-region") else {
            return Ok(None);
        };
        let bytes = prop.value();
        if bytes.len() % 4 != 0 {
            return Err(FdtError::BadProperty("memory-region"));
        }
        for cell in bytes.chunks_exact(4) {
            let phandle = u32::from_be_bytes([cell[0], cell[1], cell[2], cell[3]]);
            let target = self
                .find_phandle(phandle)?
                .ok_or(FdtError::NoSuchPhandle(phandle))?;
            if is_restricted_pool(&target) {
                return region(target).map(Some);
            }
        }
        Ok(None)
    }

    /// The names of the nodes whose `memory-region` names `phandle` (the devices that
    /// bounce through that region), in the tree's order.
    pub fn devices_of(&self, phandle: u32) -> Vec<&'a str> {
        let mut out = Vec::new();
        self.walk(|node| {
            let names_it = node.property("memory-region").is_some_and(|p| {
                p.value()
                    .chunks_exact(4)
                    .any(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) == phandle)
            });
            if names_it {
                out.push(node.name());
            }
            false
        });
        out
    }

    fn find_phandle(&self, phandle: u32) -> Result<Option<FdtNode<'a>>, FdtError> {
        let mut found = None;
        let mut bad = false;
        self.walk(|node| match node.phandle() {
            Ok(Some(p)) if p == phandle => {
                found = Some(node);
                true
            }
            Ok(_) => false,
            Err(_) => {
                bad = true;
                true
            }
        });
        if bad {
            return Err(FdtError::BadProperty("phandle"));
        }
        Ok(found)
    }

    /// Visits every node depth first until `visit` returns `true`.
    fn walk(&self, mut visit: impl FnMut(FdtNode<'a>) -> bool) {
        let mut stack = Vec::new();
        stack.push(self.fdt.root());
        while let Some(node) = stack.pop() {
            if visit(node) {
                return;
            }
            let first = stack.len();
            stack.extend(node.children());
            stack[first..].reverse();
        }
    }
}

fn is_restricted_pool(node: &FdtNode<'_>) -> bool {
    let okay = node
        .property("status")
        .and_then(|p| p.value_as::<&str>().ok())
        .is_none_or(|s| s == "okay" || s == "ok");
    okay && node.is_compatible(RESTRICTED_DMA_POOL)
}

/// Reads a `restricted-dma-pool` node.
fn region(node: FdtNode<'_>) -> Result<RestrictedDmaRegion<'_>, FdtError> {
    let phandle = node
        .phandle()
        .map_err(|_| FdtError::BadProperty("phandle"))?;
    let bad_reg = FdtError::BadProperty("reg");
    let reg = node
        .reg()
        .map_err(|_| bad_reg)?
        .and_then(|mut regs| regs.next());
    let cells = |name: &'static str| -> Result<Option<u64>, FdtError> {
        match node.property(name) {
            None => Ok(None),
            Some(p) => {
                let v = p.value();
                if v.is_empty() || v.len() % 4 != 0 || v.len() > 8 {
                    return Err(FdtError::BadProperty(name));
                }
                Ok(Some(v.chunks_exact(4).fold(0u64, |acc, c| {
                    acc << 32 | u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                })))
            }
        }
    };
    let (base, size) = match reg {
        Some(reg) => (
            Some(reg.address.to_int::<u64>().map_err(|_| bad_reg)?),
            reg.size.to_int::<u64>().map_err(|_| bad_reg)?,
        ),
        None => (None, cells("size")?.ok_or(FdtError::NoSize)?),
    };
    Ok(RestrictedDmaRegion {
        name: node.name(),
        phandle,
        base,
        size,
        alignment: cells("alignment")?,
    })
}
