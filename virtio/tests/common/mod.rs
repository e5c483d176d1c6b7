//! Shared by the integration tests: regions, pool checks, and a minimal split-virtqueue
//! driver built on the scatter-gather API (the "any other virtqueue implementation").
#![allow(dead_code)]

use std::collections::HashMap;
use std::ptr;
use std::sync::atomic::{fence, Ordering};
use swiotlb::{Coherent, Config, Constraints, ElasticPool};
use swiotlb_virtio::testing::{DmaRegion, PoolTransport, F_VERSION_1};
use swiotlb_virtio::{MappedSg, SgPool, DESC_F_NEXT};
use virtio_drivers::transport::{DeviceStatus, Transport};

/// Device address of every test pool: far from any heap address, so a CPU address handed
/// to the device is caught.
pub const DMA_BASE: u64 = 0x40_0000_0000;

/// A leaked region of `size` bytes at [`DMA_BASE`] with one area (figures are exact).
pub fn region(size: usize) -> &'static DmaRegion {
    DmaRegion::leak(size, DMA_BASE, Config::new().with_areas(1)).expect("test region")
}

/// The check every test ends with: no slot of the pool is still in use.
#[track_caller]
pub fn assert_idle(pool: &ElasticPool) {
    let stats = pool.stats();
    assert_eq!(stats.used_slots, 0, "pool not back to idle: {stats:?}");
}

/// A deterministic byte pattern, different for each `seed`.
pub fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(12345) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 8) as u8
        })
        .collect()
}

/// `VIRTQ_DESC_F_INDIRECT`.
pub const DESC_F_INDIRECT: u16 = 4;

/// A split virtqueue driven by hand: rings are coherent pool allocations, buffers come
/// mapped from `map_sg`. Several chains may be in flight.
pub struct MiniQueue {
    pool: &'static ElasticPool,
    size: u16,
    desc: Coherent,
    avail: Coherent,
    used: Coherent,
    avail_idx: u16,
    last_used: u16,
    free: Vec<u16>,
    chains: HashMap<u16, Vec<u16>>,
}

impl MiniQueue {
    /// Negotiates `VERSION_1 | extra` with the device and sets up queue 0 of `size`.
    pub fn new(
        pool: &'static ElasticPool,
        transport: &mut PoolTransport,
        size: u16,
        extra_features: u64,
    ) -> Self {
        transport.set_status(DeviceStatus::empty());
        transport.set_status(DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER);
        let offered = transport.read_device_features();
        let wanted = F_VERSION_1 | extra_features;
        assert_eq!(
            offered & wanted,
            wanted,
            "device does not offer {wanted:#x}"
        );
        transport.write_driver_features(wanted);
        transport.set_status(
            DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER | DeviceStatus::FEATURES_OK,
        );
        let n = size as usize;
        let alloc = |bytes| {
            pool.try_alloc(bytes, &Constraints::NONE)
                .expect("ring allocation")
        };
        let desc = alloc(16 * n);
        let avail = alloc(6 + 2 * n);
        let used = alloc(6 + 8 * n);
        transport.queue_set(0, size.into(), desc.dma(), avail.dma(), used.dma());
        transport.set_status(
            DeviceStatus::ACKNOWLEDGE
                | DeviceStatus::DRIVER
                | DeviceStatus::FEATURES_OK
                | DeviceStatus::DRIVER_OK,
        );
        Self {
            pool,
            size,
            desc,
            avail,
            used,
            avail_idx: 0,
            last_used: 0,
            free: (0..size).rev().collect(),
            chains: HashMap::new(),
        }
    }

    fn write_desc(&mut self, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let mut d = [0u8; 16];
        d[0..8].copy_from_slice(&addr.to_le_bytes());
        d[8..12].copy_from_slice(&len.to_le_bytes());
        d[12..14].copy_from_slice(&flags.to_le_bytes());
        d[14..16].copy_from_slice(&next.to_le_bytes());
        // SAFETY: descriptor `i` lies inside the coherent table (i < size); the device only
        // reads descriptors of chains made available, and this one is not (yet).
        unsafe {
            ptr::copy_nonoverlapping(
                d.as_ptr(),
                self.desc.cpu().as_ptr().add(16 * i as usize),
                16,
            )
        };
    }

    /// Makes `sg` available, directly or through its indirect table. Returns the head, or
    /// `None` when the table is out of descriptors.
    pub fn submit<P: SgPool + ?Sized>(
        &mut self,
        sg: &MappedSg<'_, '_, P>,
        indirect: Option<(u64, u32)>,
    ) -> Option<u16> {
        let needed = if indirect.is_some() {
            1
        } else {
            sg.segments().len()
        };
        if self.free.len() < needed {
            return None;
        }
        let ids: Vec<u16> = (0..needed).map(|_| self.free.pop().unwrap()).collect();
        match indirect {
            Some((addr, len)) => self.write_desc(ids[0], addr, len, DESC_F_INDIRECT, 0),
            None => {
                for (k, seg) in sg.segments().iter().enumerate() {
                    let last = k + 1 == ids.len();
                    let flags = seg.flags() | if last { 0 } else { DESC_F_NEXT };
                    let next = if last { 0 } else { ids[k + 1] };
                    self.write_desc(ids[k], seg.dma, seg.len, flags, next);
                }
            }
        }
        let head = ids[0];
        self.chains.insert(head, ids);
        self.publish(head);
        Some(head)
    }

    /// Makes a hand-made chain available: `(addr, len, flags)` per descriptor, each linked
    /// to the next; a last descriptor that has `DESC_F_NEXT` links back to the head (a loop).
    pub fn submit_raw(&mut self, descs: &[(u64, u32, u16)]) -> u16 {
        let ids: Vec<u16> = (0..descs.len()).map(|_| self.free.pop().unwrap()).collect();
        for (k, &(addr, len, flags)) in descs.iter().enumerate() {
            let next = ids[(k + 1) % ids.len()];
            self.write_desc(ids[k], addr, len, flags, next);
        }
        let head = ids[0];
        self.chains.insert(head, ids);
        self.publish(head);
        head
    }

    fn publish(&mut self, head: u16) {
        let slot = 4 + 2 * (self.avail_idx % self.size) as usize;
        // SAFETY: inside the coherent avail ring; the device reads entries only below idx.
        unsafe {
            ptr::write_volatile(
                self.avail.cpu().as_ptr().add(slot).cast::<[u8; 2]>(),
                head.to_le_bytes(),
            )
        };
        self.avail_idx = self.avail_idx.wrapping_add(1);
        // The ring entry and descriptors before the index that publishes them.
        fence(Ordering::Release);
        // SAFETY: `idx` of the coherent avail ring, written only by the driver.
        unsafe {
            ptr::write_volatile(
                self.avail.cpu().as_ptr().add(2).cast::<[u8; 2]>(),
                self.avail_idx.to_le_bytes(),
            )
        };
    }

    /// The next used element: (head, used length), freeing its descriptors.
    pub fn pop_used(&mut self) -> Option<(u16, u32)> {
        // SAFETY: `idx` of the coherent used ring; a raw read, the device may write it.
        let idx = u16::from_le_bytes(unsafe {
            ptr::read_volatile(self.used.cpu().as_ptr().add(2).cast::<[u8; 2]>())
        });
        if idx == self.last_used {
            return None;
        }
        fence(Ordering::Acquire);
        let at = 4 + 8 * (self.last_used % self.size) as usize;
        // SAFETY: a used element inside the coherent used ring, published by `idx`.
        let elem =
            unsafe { ptr::read_volatile(self.used.cpu().as_ptr().add(at).cast::<[u8; 8]>()) };
        self.last_used = self.last_used.wrapping_add(1);
        let id = u32::from_le_bytes(elem[0..4].try_into().unwrap());
        let len = u32::from_le_bytes(elem[4..8].try_into().unwrap());
        let head = u16::try_from(id).expect("device returned a bad id");
        let ids = self
            .chains
            .remove(&head)
            .expect("device returned an unknown head");
        self.free.extend(ids);
        Some((head, len))
    }

    /// Frees the rings (after the device has been reset or the queue unset).
    pub fn release(self, transport: &mut PoolTransport) {
        transport.queue_unset(0);
        for c in [self.desc, self.avail, self.used] {
            self.pool.free(c).expect("ring free");
        }
    }
}
