//! Pools from device-tree `restricted-dma-pool` nodes. The trees are written here with
//! rust-vmm's `vm-fdt` (no dtc needed), the way pvmfw and Gunyah lay them out: a
//! `/reserved-memory` child with `reg` (or only `size` and `alignment`), devices that name
//! it in `memory-region`, and the malformed cases.

use core::ptr::NonNull;
use swiotlb::fdt::{DeviceTree, FdtError, RegionPoolError, RestrictedDmaRegion};
use swiotlb::{Config, Constraints, DmaMut, Fill};
use vm_fdt::FdtWriter;

/// What a tree holds under `/reserved-memory` (each a node) and which devices name what.
struct Tree {
    cells: u32,
    nodes: Vec<Node>,
    devices: Vec<(&'static str, Vec<u8>)>,
}

struct Node {
    name: &'static str,
    compatible: &'static str,
    phandle: Option<u32>,
    reg: Option<(u64, u64)>,
    size: Option<u64>,
    alignment: Option<u64>,
    status: Option<&'static str>,
}

impl Node {
    fn pool(name: &'static str, phandle: u32, base: u64, size: u64) -> Self {
        Node {
            name,
            compatible: "restricted-dma-pool",
            phandle: Some(phandle),
            reg: Some((base, size)),
            size: None,
            alignment: None,
            status: None,
        }
    }
}

fn cells(value: u64, n: u32) -> Vec<u32> {
    if n == 2 {
        vec![(value >> 32) as u32, value as u32]
    } else {
        vec![value as u32]
    }
}

fn phandles(list: &[u32]) -> Vec<u8> {
    list.iter().flat_map(|p| p.to_be_bytes()).collect()
}

fn build(tree: &Tree) -> Vec<u8> {
    let mut w = FdtWriter::new().unwrap();
    let root = w.begin_node("").unwrap();
    w.property_u32("#address-cells", 2).unwrap();
    w.property_u32("#size-cells", 2).unwrap();
    let rm = w.begin_node("reserved-memory").unwrap();
    w.property_u32("#address-cells", tree.cells).unwrap();
    w.property_u32("#size-cells", tree.cells).unwrap();
    w.property_null("ranges").unwrap();
    for n in &tree.nodes {
        let node = w.begin_node(n.name).unwrap();
        w.property_string("compatible", n.compatible).unwrap();
        if let Some((base, size)) = n.reg {
            let mut reg = cells(base, tree.cells);
            reg.extend(cells(size, tree.cells));
            w.property_array_u32("reg", &reg).unwrap();
        }
        if let Some(size) = n.size {
            w.property_array_u32("size", &cells(size, tree.cells))
                .unwrap();
        }
        if let Some(a) = n.alignment {
            w.property_array_u32("alignment", &cells(a, tree.cells))
                .unwrap();
        }
        if let Some(p) = n.phandle {
            w.property_u32("phandle", p).unwrap();
        }
        if let Some(s) = n.status {
            w.property_string("status", s).unwrap();
        }
        w.end_node(node).unwrap();
    }
    w.end_node(rm).unwrap();
    for (name, memory_region) in &tree.devices {
        let dev = w.begin_node(name).unwrap();
        w.property_string("compatible", "virtio,mmio").unwrap();
        if !memory_region.is_empty() {
            w.property("memory-region", memory_region).unwrap();
        }
        w.end_node(dev).unwrap();
    }
    w.end_node(root).unwrap();
    w.finish().unwrap()
}

/// pvmfw's layout: one pool with a fixed `reg`, two devices using it, another reserved
/// region that is not a bounce pool, a device that does not bounce.
fn pvmfw_like(cells: u32) -> Vec<u8> {
    build(&Tree {
        cells,
        nodes: vec![
            Node {
                compatible: "shared-dma-pool",
                ..Node::pool("dma@70000000", 7, 0x7000_0000, 0x1000)
            },
            Node::pool("restricted-dma@80000000", 1, 0x8000_0000, 0x40_0000),
        ],
        devices: vec![
            ("virtio_blk@a000000", phandles(&[1])),
            ("virtio_net@a001000", phandles(&[7, 1])),
            ("uart@3f8", Vec::new()),
        ],
    })
}

#[test]
fn a_pvmfw_tree_gives_its_pool_and_the_devices_that_use_it() {
    for cells in [1, 2] {
        let dtb = pvmfw_like(cells);
        let tree = DeviceTree::new(&dtb).unwrap();
        let regions: Vec<_> = tree
            .restricted_dma_regions()
            .collect::<Result<_, _>>()
            .unwrap();
        let pool = RestrictedDmaRegion {
            name: "restricted-dma@80000000",
            phandle: Some(1),
            base: Some(0x8000_0000),
            size: 0x40_0000,
            alignment: None,
        };
        assert_eq!(
            regions,
            [pool],
            "only the restricted-dma-pool node, {cells} cells"
        );
        assert_eq!(tree.region_of("/virtio_blk@a000000"), Ok(Some(pool)));
        assert_eq!(
            tree.region_of("/virtio_net@a001000"),
            Ok(Some(pool)),
            "the restricted pool among several memory-regions"
        );
        assert_eq!(tree.region_of("/uart@3f8"), Ok(None));
        assert_eq!(tree.region_of("/nowhere"), Err(FdtError::NoSuchNode));
        assert_eq!(
            tree.devices_of(1),
            ["virtio_blk@a000000", "virtio_net@a001000"]
        );
        assert!(tree.devices_of(99).is_empty());
    }
}

#[test]
fn a_64_bit_region_above_4_gib() {
    let dtb = build(&Tree {
        cells: 2,
        nodes: vec![Node::pool(
            "restricted-dma@8_0000_0000",
            3,
            0x8_0000_0000,
            0x1_0000_0000,
        )],
        devices: vec![],
    });
    let tree = DeviceTree::new(&dtb).unwrap();
    let region = tree.restricted_dma_regions().next().unwrap().unwrap();
    assert_eq!(region.base, Some(0x8_0000_0000));
    assert_eq!(region.size, 0x1_0000_0000);
}

#[test]
fn a_size_only_node_is_reported_for_the_caller_to_place() {
    let dtb = build(&Tree {
        cells: 2,
        nodes: vec![Node {
            reg: None,
            size: Some(0x20_0000),
            alignment: Some(0x1000),
            ..Node::pool("restricted-dma", 2, 0, 0)
        }],
        devices: vec![("vm-device", phandles(&[2]))],
    });
    let tree = DeviceTree::new(&dtb).unwrap();
    let region = tree.region_of("/vm-device").unwrap().unwrap();
    assert_eq!(region.base, None);
    assert_eq!(region.size, 0x20_0000);
    assert_eq!(region.alignment, Some(0x1000));
    // SAFETY: refused before the pointer is used.
    let err = unsafe { region.pool(NonNull::dangling(), Config::new()) }.unwrap_err();
    assert_eq!(err, RegionPoolError::NoAddress(0x20_0000));
}

#[test]
fn disabled_nodes_are_skipped() {
    let dtb = build(&Tree {
        cells: 2,
        nodes: vec![
            Node {
                status: Some("disabled"),
                ..Node::pool("restricted-dma@1000000", 1, 0x100_0000, 0x10_0000)
            },
            Node {
                status: Some("okay"),
                ..Node::pool("restricted-dma@2000000", 2, 0x200_0000, 0x10_0000)
            },
        ],
        devices: vec![],
    });
    let tree = DeviceTree::new(&dtb).unwrap();
    let names: Vec<_> = tree
        .restricted_dma_regions()
        .map(|r| r.unwrap().name)
        .collect();
    assert_eq!(names, ["restricted-dma@2000000"]);
}

#[test]
fn malformed_trees_are_typed_errors() {
    assert_eq!(
        DeviceTree::new(b"not a device tree").unwrap_err(),
        FdtError::Invalid
    );
    let mut dtb = pvmfw_like(2);
    dtb[0] ^= 0xff; // the magic
    assert_eq!(DeviceTree::new(&dtb).unwrap_err(), FdtError::Invalid);
    assert_eq!(
        DeviceTree::new(&pvmfw_like(2)[..40]).unwrap_err(),
        FdtError::Invalid
    );

    let dtb = build(&Tree {
        cells: 2,
        nodes: vec![Node {
            reg: None,
            ..Node::pool("restricted-dma", 1, 0, 0)
        }],
        devices: vec![
            ("short", vec![0, 0, 1]),
            ("dangling", phandles(&[42])),
            ("sized", phandles(&[1])),
        ],
    });
    let tree = DeviceTree::new(&dtb).unwrap();
    assert_eq!(
        tree.region_of("/short"),
        Err(FdtError::BadProperty("memory-region"))
    );
    assert_eq!(
        tree.region_of("/dangling"),
        Err(FdtError::NoSuchPhandle(42))
    );
    assert_eq!(tree.region_of("/sized"), Err(FdtError::NoSize));
    assert_eq!(
        tree.restricted_dma_regions().next(),
        Some(Err(FdtError::NoSize))
    );
}

/// The whole path: a tree whose region is memory of this process, a pool built over it,
/// a buffer bounced through it at the device addresses the tree gives.
#[test]
fn a_pool_over_the_region_bounces_at_the_trees_addresses() {
    let mut memory = vec![0u8; 128 * 1024];
    let at = memory.as_mut_ptr();
    let dtb = build(&Tree {
        cells: 2,
        nodes: vec![Node::pool(
            "restricted-dma",
            5,
            at.addr() as u64,
            128 * 1024,
        )],
        devices: vec![("virtio_blk", phandles(&[5]))],
    });
    let tree = DeviceTree::new(&dtb).unwrap();
    let region = tree.region_of("/virtio_blk").unwrap().unwrap();
    // SAFETY: `memory` outlives the pool, is used by nothing else meanwhile, and the
    // "device" of this test sees it at its CPU address, which the tree gives as `reg`.
    let pool = unsafe { region.pool(NonNull::new(at).unwrap(), Config::new()) }.unwrap();
    let range = pool.dma_range();
    assert!(range.start >= region.base.unwrap());
    assert!(range.end <= region.base.unwrap() + region.size);
    let mut buf = [0u8; 100];
    let m = DmaMut::from_device(&pool, &mut buf, &Constraints::NONE, Fill::Zero).unwrap();
    assert!(range.contains(&m.dma()));
    m.unmap().unwrap();
    drop(pool);
    drop(memory);
}
