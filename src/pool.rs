//! The pool: construction, map / unmap / sync, coherent alloc / free, statistics.

use crate::area::{Area, AreaGuard, AreaStats, Placement};
use crate::config::Config;
use crate::error::{ConfigError, LookupError, MapError};
use crate::slot::{Head, Slots, Use};

use crate::sync::{AtomicUsize, Ordering};
use crate::{Attrs, Constraints, Direction, DmaAddr};
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::ops::Range;
use core::ptr::{self, NonNull};
use crossbeam_utils::CachePadded;

/// A bounce pool: a region of memory the device can address, carved into slots, with the
/// bookkeeping (kept outside the region) to map buffers through it.
///
/// All methods take `&self`; share a pool between threads with a reference, an `Arc` or a
/// `static`.
///
/// # Memory the device can see
///
/// The pool never forms a reference to its region: every byte is moved by raw-pointer
/// copies, each byte read once per operation, and no value read from the region steers the
/// allocator. What a device writes there can corrupt only the data of its own mappings.
pub struct Pool {
    /// CPU address of slot 0.
    cpu: NonNull<u8>,
    /// Device address of slot 0 (a multiple of the slot size).
    dma: DmaAddr,
    slot_shift: u32,
    slots_total: usize,
    segment_slots: usize,
    /// log2 of `segment_slots`.
    segment_shift: u32,
    page_size: usize,
    scrub: bool,
    hint: fn() -> usize,
    areas: Box<[CachePadded<Area>]>,
    /// Area of each segment, by device segment number minus the first one's.
    segment_area: Box<[u8]>,
    first_segment: u64,
    high_water: CachePadded<AtomicUsize>,
    failed_maps: AtomicUsize,
    #[cfg(feature = "std")]
    owned: Option<(NonNull<u8>, core::alloc::Layout)>,
}

// SAFETY: the region behind `cpu` is only touched through raw-pointer copies by whoever
// holds the mapping that covers the bytes (the slot reservation protocol, under the area
// locks, hands each run to one owner); every other field is immutable after construction
// or an atomic or a lock.
unsafe impl Send for Pool {}
// SAFETY: as for `Send`: `&Pool` gives no unsynchronised access to anything.
unsafe impl Sync for Pool {}

/// A coherent allocation from a pool: zeroed memory for rings and other structures that the
/// CPU and the device share for a long time. Free it with [`Pool::free`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Coherent {
    /// Device address.
    pub dma: DmaAddr,
    /// CPU address (aligned like `dma` when the pool's CPU and device addresses agree
    /// modulo the alignment, as they do for [`Pool::allocate`]).
    pub cpu: NonNull<u8>,
    /// Bytes asked for (the allocation owns whole slots; the rest of the last one is
    /// zeroed too and shared with nothing).
    pub size: usize,
}

/// What [`Pool::lookup`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// Device address of the first byte of data.
    pub dma: DmaAddr,
    /// Length in bytes.
    pub len: usize,
    /// Streaming mapping or coherent allocation.
    pub kind: MappingKind,
}

/// The kind of a [`Mapping`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MappingKind {
    /// Made by [`Pool::map`].
    Streaming {
        /// Its direction.
        dir: Direction,
        /// CPU address of the original buffer.
        orig: usize,
    },
    /// Made by [`Pool::alloc`].
    Coherent,
}

/// Figures of a whole pool. Taken without stopping other threads, so under load the fields
/// are each exact but not from one instant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Slots in the pool.
    pub total_slots: usize,
    /// Slots in use (front padding included).
    pub used_slots: usize,
    /// The most slots seen in use at once: the sum of all areas' use, sampled whenever an
    /// area reaches a new high of its own and whenever stats are taken. Exact with one area.
    /// With several it is a lower bound of the true peak (a peak reached without any area
    /// reaching a new high of its own is missed), never falls, and is never below
    /// `used_slots` or any area's own mark. An exact pool-wide figure would need one counter
    /// updated by every map on every CPU.
    pub high_water: usize,
    /// Maps and allocations refused because the pool had no room ([`MapError::Full`]).
    pub failed_maps: usize,
    /// Number of areas.
    pub areas: usize,
}

/// The error for a call that wanted a coherent allocation (`coherent`) or a streaming
/// mapping and found the other.
fn wrong_kind(dma: DmaAddr, coherent: bool) -> LookupError {
    let (coherent_name, streaming_name) = ("coherent allocation", "streaming mapping");
    let (expected, actual) = if coherent {
        (coherent_name, streaming_name)
    } else {
        (streaming_name, coherent_name)
    };
    LookupError::WrongKind {
        dma,
        expected,
        actual,
    }
}

/// A live run found from a device address.
#[derive(Clone, Copy)]
struct Found<'a> {
    area: &'a Area,
    head: Head,
    /// Device address of its data.
    start: DmaAddr,
}

/// A mapping request turned into slot terms.
#[derive(Clone, Copy, Debug)]
struct Request {
    placement: Placement,
    /// Whole slots of front padding.
    pad: usize,
    /// Offset of the data within the head slot.
    offset: usize,
    /// Bytes asked for.
    size: usize,
    /// Alignment of the first slot, for error reports.
    align: u64,
    /// Device window the run must not cross (0: none), for error reports.
    boundary: u64,
    /// The device's address limit, for error reports.
    limit: u64,
}

fn is_low_mask(mask: u64) -> bool {
    mask & mask.wrapping_add(1) == 0
}

impl Pool {
    /// Builds a pool over `size` bytes of memory at CPU address `cpu` and device address
    /// `dma_base`.
    ///
    /// If `dma_base` is not a multiple of the slot size, the bytes up to the next multiple
    /// are left out, so that every slot is slot-aligned in device space; a partial slot at
    /// the end is left out too. Page and larger alignments are computed on device addresses
    /// and hold wherever the region starts.
    ///
    /// Segments are aligned in device space too (so that an allocation aligned to a whole
    /// segment can exist). A region that is not aligned to `slot_size * segment_slots` in
    /// device space therefore starts and ends with a partial segment, which cannot hold a
    /// mapping as large as a full one; align the region to a segment to avoid that.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] for an invalid configuration, a region that wraps or holds no slot,
    /// or metadata that cannot be allocated.
    ///
    /// # Safety
    ///
    /// For as long as the pool lives:
    /// - `cpu..cpu + size` is valid for reads and writes, and nothing in the program reads or
    ///   writes it except through this pool (and the pointers it hands out);
    /// - the device sees that memory at `dma_base..dma_base + size`.
    ///
    /// The device may read and write the region at any time: the pool assumes nothing
    /// about its contents.
    pub unsafe fn new(
        cpu: NonNull<u8>,
        dma_base: DmaAddr,
        size: usize,
        config: Config,
    ) -> Result<Self, ConfigError> {
        let want_areas = config.check()?;
        let slot = config.get_slot_size();
        let wraps = ConfigError::Wraps { size, dma_base };
        if (cpu.as_ptr() as usize).checked_add(size).is_none() {
            return Err(wraps);
        }
        let end = dma_base.checked_add(size as u64).ok_or(wraps)?;
        let skip = dma_base.wrapping_neg() & (slot as u64 - 1);
        let too_small = ConfigError::TooSmall {
            size,
            dma_base,
            slot_size: slot,
        };
        if end - dma_base < skip + slot as u64 {
            return Err(too_small);
        }
        let skip = skip as usize;
        let slots_total = (size - skip) / slot;
        let dma = dma_base + skip as u64;
        // SAFETY: `skip < size`, so the result is inside the region the caller vouched for,
        // and the addition cannot wrap (checked above); it is not null because the region
        // does not wrap past zero.
        let cpu = unsafe { NonNull::new_unchecked(cpu.as_ptr().add(skip)) };

        let slot_shift = slot.trailing_zeros();
        let seg = config.get_segment_slots() as u64;
        let origin = dma >> slot_shift;
        let first_segment = origin / seg;
        let segments = ((origin + slots_total as u64 - 1) / seg - first_segment + 1) as usize;
        // A power of two, and no more areas than segments.
        let nareas = want_areas.min(1 << segments.ilog2());

        let mut areas = Vec::new();
        areas
            .try_reserve_exact(nareas)
            .map_err(|_| ConfigError::OutOfMemory(nareas * core::mem::size_of::<Area>()))?;
        let mut segment_area = Vec::new();
        segment_area
            .try_reserve_exact(segments)
            .map_err(|_| ConfigError::OutOfMemory(segments))?;
        for k in 0..nareas {
            let lo = k * segments / nareas;
            let hi = (k + 1) * segments / nareas;
            let slot_at = |s: usize| {
                let dev = (first_segment + s as u64) * seg;
                (dev.saturating_sub(origin) as usize).min(slots_total)
            };
            let (first, last) = (slot_at(lo), slot_at(hi));
            let area = Area::new(first, last - first, origin + first as u64).ok_or(
                ConfigError::OutOfMemory((last - first) * Slots::BYTES_PER_SLOT),
            )?;
            areas.push(CachePadded::new(area));
            segment_area.resize(hi, k as u8);
        }

        Ok(Self {
            cpu,
            dma,
            slot_shift,
            slots_total,
            segment_slots: seg as usize,
            segment_shift: seg.trailing_zeros(),
            page_size: config.get_page_size(),
            scrub: config.scrubs(),
            hint: config.hint(),
            areas: areas.into_boxed_slice(),
            segment_area: segment_area.into_boxed_slice(),
            first_segment,
            high_water: CachePadded::new(AtomicUsize::new(0)),
            failed_maps: AtomicUsize::new(0),
            #[cfg(feature = "std")]
            owned: None,
        })
    }

    /// Allocates a zeroed region of `size` bytes, aligned to a segment (and a page), and
    /// builds a pool over it,
    /// with device addresses equal to CPU addresses: for tests, benchmarks and user-space
    /// drivers whose "device" shares the process's address space.
    ///
    /// # Errors
    ///
    /// As [`Pool::new`], and [`ConfigError::OutOfMemory`] if the region cannot be allocated.
    #[cfg(feature = "std")]
    pub fn allocate(size: usize, config: Config) -> Result<Self, ConfigError> {
        config.check()?;
        // Aligned to a whole segment, so that no segment of the pool is partial. The region
        // is over-allocated and aligned by hand: a zeroed allocation with a small alignment is
        // `calloc`, whose large blocks are fresh zero pages, where a large alignment would
        // make the allocator zero (and so touch and commit) every page up front.
        let align = config
            .get_page_size()
            .max(config.get_slot_size() * config.get_segment_slots());
        let oom = ConfigError::OutOfMemory(size);
        let layout = size
            .checked_add(align)
            .and_then(|total| core::alloc::Layout::from_size_align(total, 16).ok())
            .ok_or(oom)?;
        // SAFETY: the layout has a non-zero size.
        let mem = NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) }).ok_or(oom)?;
        let skip = (mem.as_ptr() as usize).wrapping_neg() & (align - 1);
        // SAFETY: `skip < align`, so the region `skip..skip + size` is inside the allocation.
        let start = unsafe { NonNull::new_unchecked(mem.as_ptr().add(skip)) };
        // SAFETY: `start..start + size` is a fresh zeroed allocation owned by the pool from
        // here on (freed in `drop`) and reachable by nothing else; the "device" of such a
        // pool uses CPU addresses.
        let pool = unsafe { Self::new(start, start.as_ptr() as u64, size, config) };
        match pool {
            Ok(mut pool) => {
                pool.owned = Some((mem, layout));
                Ok(pool)
            }
            Err(e) => {
                // SAFETY: allocated above with this layout, and never handed out.
                unsafe { std::alloc::dealloc(mem.as_ptr(), layout) };
                Err(e)
            }
        }
    }

    // --- geometry -----------------------------------------------------------------------

    /// Bytes in a slot.
    pub fn slot_size(&self) -> usize {
        1 << self.slot_shift
    }

    /// Slots in a segment.
    pub fn segment_slots(&self) -> usize {
        self.segment_slots
    }

    /// Page size: mappings of a page or more are page-aligned when no mask says otherwise,
    /// and coherent allocations are aligned to at least a page.
    pub fn page_size(&self) -> usize {
        self.page_size
    }

    /// Number of areas.
    pub fn areas(&self) -> usize {
        self.areas.len()
    }

    /// The device addresses of the pool's slots.
    pub fn dma_range(&self) -> Range<DmaAddr> {
        self.dma..self.dma + ((self.slots_total as u64) << self.slot_shift)
    }

    /// Whether `dma` is a device address of this pool (mapped or not). Linux's
    /// `is_swiotlb_buffer`.
    pub fn contains(&self, dma: DmaAddr) -> bool {
        self.dma_range().contains(&dma)
    }

    /// The CPU address of `dma..dma + len`, if that range lies in the pool. For device
    /// models and tests that act as the device: the pointer may be used for raw reads and
    /// writes only.
    pub fn translate(&self, dma: DmaAddr, len: usize) -> Option<NonNull<u8>> {
        let off = dma.checked_sub(self.dma)?;
        let end = off.checked_add(len as u64)?;
        if end > (self.slots_total as u64) << self.slot_shift {
            return None;
        }
        // SAFETY: `off + len` is within the pool's slots, which are inside the region.
        Some(unsafe { NonNull::new_unchecked(self.cpu.as_ptr().add(off as usize)) })
    }

    /// Bytes of allocator metadata per slot (outside the pool), not counting the area
    /// bitmaps' one bit and the segment table's one byte per segment.
    pub const METADATA_BYTES_PER_SLOT: usize = Slots::BYTES_PER_SLOT;

    /// The largest mapping [`map`](Self::map) accepts under `constraints`: a segment, less
    /// `min_align_mask` rounded up to a slot (Linux's `swiotlb_max_mapping_size`).
    pub fn max_mapping_size(&self, constraints: &Constraints) -> usize {
        let slot = self.slot_size() as u64;
        let segment = slot * self.segment_slots as u64;
        let pad = match constraints.min_align_mask {
            0 => 0,
            mask => mask.div_ceil(slot).saturating_mul(slot),
        };
        segment.saturating_sub(pad) as usize
    }

    // --- statistics ---------------------------------------------------------------------

    /// Pool-wide figures.
    pub fn stats(&self) -> Stats {
        let used_slots = self.used_slots();
        // Fold in the use seen now, so the mark is never below it and never falls.
        let high_water = self
            .high_water
            .fetch_max(used_slots, Ordering::Relaxed)
            .max(used_slots);
        Stats {
            total_slots: self.slots_total,
            used_slots,
            high_water,
            failed_maps: self.failed_maps.load(Ordering::Relaxed),
            areas: self.areas.len(),
        }
    }

    /// Figures of area `index`, or `None` past the last area.
    pub fn area_stats(&self, index: usize) -> Option<AreaStats> {
        self.areas.get(index).map(|a| a.stats())
    }

    fn used_slots(&self) -> usize {
        self.areas.iter().map(|a| a.used()).sum()
    }

    // --- addresses ----------------------------------------------------------------------

    /// Slots that hold `bytes` bytes (a shift: the slot size is a power of two).
    #[inline]
    fn slots_for(&self, bytes: usize) -> usize {
        (bytes + (1 << self.slot_shift) - 1) >> self.slot_shift
    }

    #[inline]
    fn slot_dma(&self, slot: usize) -> DmaAddr {
        self.dma + ((slot as u64) << self.slot_shift)
    }

    /// CPU pointer to byte `offset` of the pool.
    ///
    /// # Safety
    ///
    /// `offset` is at most the size of the pool's slots.
    #[inline]
    unsafe fn cpu_at(&self, offset: usize) -> *mut u8 {
        debug_assert!(offset <= self.slots_total << self.slot_shift);
        // SAFETY: in bounds of the region, by the caller's promise.
        unsafe { self.cpu.as_ptr().add(offset) }
    }

    #[inline]
    fn area_of(&self, slot: usize) -> &Area {
        let segment = (((self.dma >> self.slot_shift) + slot as u64) >> self.segment_shift)
            - self.first_segment;
        let area = &self.areas[self.segment_area[segment as usize] as usize];
        debug_assert!(area.holds(slot));
        area
    }

    /// The live mapping holding `dma`'s slot, its area, and the device address of its data.
    #[inline(always)]
    fn find(&self, dma: DmaAddr) -> Result<Found<'_>, LookupError> {
        let not_mapped = LookupError::NotMapped { dma };
        let off = dma.checked_sub(self.dma).ok_or(not_mapped)?;
        let slot = off >> self.slot_shift;
        if slot >= self.slots_total as u64 {
            return Err(not_mapped);
        }
        let slot = slot as usize;
        let area = self.area_of(slot);
        let head = area.slots.head_of(slot).ok_or(not_mapped)?;
        let start = self.slot_dma(head.slot) + head.offset as u64;
        if dma < start || dma - start >= head.len as u64 {
            return Err(not_mapped);
        }
        Ok(Found { area, head, start })
    }

    /// The live mapping or coherent allocation whose data holds `dma`, if any. Changes
    /// nothing. A mapping being unmapped by another thread at the same time may or may not
    /// be seen.
    pub fn lookup(&self, dma: DmaAddr) -> Option<Mapping> {
        let Found { head, start, .. } = self.find(dma).ok()?;
        Some(Mapping {
            dma: start,
            len: head.len,
            kind: match head.use_ {
                Use::Stream(dir) => MappingKind::Streaming {
                    dir,
                    orig: head.orig,
                },
                Use::Coherent => MappingKind::Coherent,
            },
        })
    }

    // --- placement ----------------------------------------------------------------------

    /// Turns a request into slot terms: `slots` slots whose first is aligned to
    /// `align_mask + 1` and has the bits of `orig` under `match_mask`, not crossing a segment
    /// or the device's boundary, with the byte `extent - 1` past the first slot's start
    /// reachable by the device.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn request(
        &self,
        c: &Constraints,
        size: usize,
        slots: usize,
        pad: usize,
        offset: usize,
        align_mask: u64,
        match_mask: u64,
        orig: u64,
        extent: usize,
    ) -> Result<Request, MapError> {
        let shift = self.slot_shift;
        let align = align_mask.saturating_add(1);
        let mut window = self.segment_slots as u64;
        let mut boundary = 0;
        if c.seg_boundary_mask != u64::MAX {
            boundary = c.seg_boundary_mask + 1;
            window = window.min(boundary >> shift);
        }
        if window == 0 || slots as u64 > window {
            return Err(MapError::Impossible {
                size,
                slots,
                align,
                boundary,
            });
        }
        // The first slot's device slot number must be below `limit` for the data's last byte
        // to be reachable; a limit below even that leaves no placement (and `failure` tells
        // `Unreachable` from `Impossible`).
        let limit = c
            .dma_limit
            .checked_sub(extent as u64 - 1)
            .map_or(0, |last_start| (last_start >> shift) + 1);
        Ok(Request {
            placement: Placement {
                slots,
                stride: ((align_mask | match_mask) >> shift) + 1,
                phase: (orig & match_mask) >> shift,
                window,
                limit,
                from_top: false,
            },
            pad,
            offset,
            size,
            align,
            boundary,
            limit: c.dma_limit,
        })
    }

    fn check_masks(c: &Constraints) -> Result<(), MapError> {
        for (name, mask) in [
            ("min_align_mask", c.min_align_mask),
            ("alloc_align_mask", c.alloc_align_mask),
            ("seg_boundary_mask", c.seg_boundary_mask),
        ] {
            if !is_low_mask(mask) {
                return Err(MapError::InvalidMask { name, mask });
            }
        }
        Ok(())
    }

    /// The request of a streaming mapping of `len` bytes from CPU address `orig`.
    #[inline(always)]
    fn stream_request(
        &self,
        orig: usize,
        len: usize,
        c: &Constraints,
    ) -> Result<Request, MapError> {
        if len == 0 {
            return Err(MapError::ZeroLength);
        }
        Self::check_masks(c)?;
        let max = self.max_mapping_size(c);
        if len > max {
            return Err(MapError::TooLarge { size: len, max });
        }
        let slot_mask = (1u64 << self.slot_shift) - 1;
        let orig64 = orig as u64;
        // Linux's swiotlb_align_offset: the offset kept from the original; whole slots of it
        // become front padding.
        let offset = (orig64 & c.min_align_mask & (c.alloc_align_mask | slot_mask)) as usize;
        let extent = offset + len;
        let slots = self.slots_for(extent);
        let mut align_mask = c.alloc_align_mask;
        if align_mask == 0 && c.min_align_mask == 0 && len >= self.page_size {
            // Mappings of a page or more are page-aligned when nothing else is asked.
            align_mask = self.page_size as u64 - 1;
        }
        align_mask |= slot_mask;
        // Bits above the allocation alignment are kept by choosing the slot, not by padding.
        let match_mask = c.min_align_mask & !align_mask;
        self.request(
            c,
            len,
            slots,
            offset >> self.slot_shift,
            offset & slot_mask as usize,
            align_mask,
            match_mask,
            orig64,
            extent,
        )
    }

    /// The request of a coherent allocation of `size` bytes.
    fn coherent_request(&self, size: usize, c: &Constraints) -> Result<Request, MapError> {
        if size == 0 {
            return Err(MapError::ZeroLength);
        }
        Self::check_masks(c)?;
        let slots = self.slots_for(size);
        if slots > self.segment_slots {
            return Err(MapError::TooLarge {
                size,
                max: self.segment_slots << self.slot_shift,
            });
        }
        // Aligned to its size's power-of-two page order (a 12 KiB allocation is 16 KiB
        // aligned), as Linux's swiotlb_alloc since 2024.
        let order_bytes =
            (size.div_ceil(self.page_size).next_power_of_two() * self.page_size) as u64;
        let align_mask = (order_bytes - 1) | c.alloc_align_mask | ((1 << self.slot_shift) - 1);
        let mut req = self.request(c, size, slots, 0, 0, align_mask, 0, 0, size)?;
        req.placement.from_top = true;
        Ok(req)
    }

    // --- reservation --------------------------------------------------------------------

    /// Finds and reserves a run for `req`, starting in the caller's area and falling back to
    /// the others, and records it with `head_at(head_slot)`. Returns the run's first slot.
    #[inline]
    fn reserve(&self, req: &Request, head_at: impl Fn(usize) -> Head) -> Result<usize, MapError> {
        let n = self.areas.len();
        let first = (self.hint)() & (n - 1);
        let mut busy = 0u64;
        let mut missed = 0u64;
        let found = 'search: {
            // First pass: only areas whose lock is free, so that a thread whose area is busy
            // moves on instead of queueing.
            for k in 0..n {
                let area = &self.areas[(first + k) & (n - 1)];
                match area.try_lock() {
                    Some(guard) => match self.take_in(guard, req, &head_at) {
                        Some(start) => break 'search Some(start),
                        None => missed |= 1 << k,
                    },
                    None => busy |= 1 << k,
                }
            }
            // Second pass: wait for the busy ones.
            while busy != 0 {
                let k = busy.trailing_zeros() as usize;
                busy &= busy - 1;
                let area = &self.areas[(first + k) & (n - 1)];
                match self.take_in(area.lock(), req, &head_at) {
                    Some(start) => break 'search Some(start),
                    None => missed |= 1 << k,
                }
            }
            None
        };
        match found {
            Some(start) => {
                self.count_missed(first, missed);
                Ok(start)
            }
            None => Err(self.failure(req, first, missed)),
        }
    }

    #[inline(always)]
    fn take_in(
        &self,
        mut guard: AreaGuard<'_>,
        req: &Request,
        head_at: &impl Fn(usize) -> Head,
    ) -> Option<usize> {
        let taken = guard.take(&req.placement)?;
        guard.area().slots.write_run(
            taken.start,
            req.placement.slots,
            req.pad,
            head_at(taken.start + req.pad),
        );
        if taken.raised_high_water {
            // Sampled before unlocking, so this area's part of the sum is its new peak (a
            // racing unmap in this area cannot lower it first): the pool's mark stays at or
            // above every area's, and is exact with one area.
            self.high_water
                .fetch_max(self.used_slots(), Ordering::Relaxed);
        }
        drop(guard);
        Some(taken.start)
    }

    fn count_missed(&self, first: usize, mut missed: u64) {
        let n = self.areas.len();
        while missed != 0 {
            let k = missed.trailing_zeros() as usize;
            missed &= missed - 1;
            self.areas[(first + k) & (n - 1)].note_failed_search();
        }
    }

    /// The error for a request no area could take: `Full` if some area could hold it when
    /// empty, else `Unreachable` (the address limit is to blame) or `Impossible`.
    #[cold]
    fn failure(&self, req: &Request, first: usize, missed: u64) -> MapError {
        let p = &req.placement;
        if !self.areas.iter().any(|a| a.could_hold(p)) {
            let unlimited = Placement {
                limit: u64::MAX,
                ..*p
            };
            return if self.areas.iter().any(|a| a.could_hold(&unlimited)) {
                MapError::Unreachable {
                    size: req.size,
                    limit: req.limit,
                    pool_start: self.dma,
                }
            } else {
                MapError::Impossible {
                    size: req.size,
                    slots: p.slots,
                    align: req.align,
                    boundary: req.boundary,
                }
            };
        }
        self.count_missed(first, missed);
        self.failed_maps.fetch_add(1, Ordering::Relaxed);
        MapError::Full {
            size: req.size,
            slots: p.slots,
            align: req.align,
            boundary: req.boundary,
            total_slots: self.slots_total,
            used_slots: self.used_slots(),
        }
    }

    /// Gives back the run of the live mapping `head`, if it is still the one recorded.
    #[inline(always)]
    fn release(&self, found: &Found<'_>, dma: DmaAddr) -> Result<(), LookupError> {
        let Found { area, head, .. } = found;
        let data_slots = self.slots_for(head.offset + head.len);
        if self.scrub {
            let pad = area.slots.pad_before(head.slot, area.first);
            let start = head.slot - pad;
            // SAFETY: the run is the caller's until `give` below (the head was found live
            // and the caller promised no one else releases it), and it lies in the pool.
            unsafe {
                ptr::write_bytes(
                    self.cpu_at(start << self.slot_shift),
                    0,
                    (pad + data_slots) << self.slot_shift,
                )
            };
        }
        let mut guard = area.lock();
        // Someone else released it meanwhile (a racing double unmap): refuse, change nothing.
        if area.slots.head_of(head.slot).as_ref() != Some(head) {
            return Err(LookupError::NotMapped { dma });
        }
        let pad = area.slots.pad_before(head.slot, area.first);
        let start = head.slot - pad;
        area.slots.clear_run(start, pad + data_slots);
        guard.give(start, pad + data_slots);
        Ok(())
    }

    // --- streaming mappings -------------------------------------------------------------

    /// Maps `buf` for DMA in direction `dir` and returns the device address of its bounce
    /// buffer. Copies `buf` into the bounce buffer whatever the direction, so that a device
    /// that writes only part of a `FromDevice` buffer leaves the rest of `buf` as it was
    /// (Linux CVE-2022-0854) and never sees an earlier mapping's bytes.
    ///
    /// The bounce address keeps `buf`'s address bits under `min_align_mask`; the allocation
    /// is aligned to `alloc_align_mask + 1` (a page, for a mapping of a page or more when
    /// neither mask is given), does not cross a segment or `seg_boundary_mask`, and lies
    /// wholly at or below `dma_limit`.
    ///
    /// # Errors
    ///
    /// [`MapError`]: zero length, over [`max_mapping_size`](Self::max_mapping_size), a mask
    /// not of the form `2^k - 1`, constraints no placement in this pool meets, a limit below
    /// the pool, a buffer inside the pool, or no room. Nothing changes on error.
    ///
    /// # Safety
    ///
    /// `buf` is valid for reads, and for writes if `dir` is not `ToDevice`, and nothing else
    /// accesses it, from this call until the mapping is unmapped (syncs and unmap write it).
    pub unsafe fn map(
        &self,
        buf: NonNull<[u8]>,
        dir: Direction,
        constraints: &Constraints,
    ) -> Result<DmaAddr, MapError> {
        let len = buf.len();
        if len == 0 {
            return Err(MapError::ZeroLength);
        }
        let orig = buf.cast::<u8>().as_ptr() as usize;
        let end = orig
            .checked_add(len)
            .ok_or(MapError::BufferWraps { addr: orig, len })?;
        let pool = self.cpu.as_ptr() as usize;
        if orig < pool + (self.slots_total << self.slot_shift) && end > pool {
            return Err(MapError::BufferInPool { addr: orig, len });
        }
        let req = self.stream_request(orig, len, constraints)?;
        let start = self.reserve(&req, |slot| Head {
            slot,
            use_: Use::Stream(dir),
            offset: req.offset,
            len,
            orig,
        })?;
        let head = start + req.pad;
        let at = (head << self.slot_shift) + req.offset;
        // SAFETY: `buf` is readable (caller's promise) and does not overlap the pool
        // (checked above); the run from `start` is reserved for this mapping and holds
        // `offset + len` bytes from the head slot, inside the pool.
        unsafe { ptr::copy_nonoverlapping(orig as *const u8, self.cpu_at(at), len) };
        Ok(self.slot_dma(head) + req.offset as u64)
    }

    /// The live run that starts at `dma`, is `len` bytes long, and is a coherent
    /// allocation or a streaming mapping as `coherent` says.
    fn find_whole(
        &self,
        dma: DmaAddr,
        len: usize,
        coherent: bool,
    ) -> Result<Found<'_>, LookupError> {
        let found = self.find(dma)?;
        let Found { head, start, .. } = found;
        if (head.use_ == Use::Coherent) != coherent {
            return Err(wrong_kind(dma, coherent));
        }
        if dma != start {
            return Err(LookupError::NotStart { dma, start });
        }
        if len != head.len {
            return Err(LookupError::LengthMismatch {
                dma,
                mapped: head.len,
                given: len,
            });
        }
        Ok(found)
    }

    /// Unmaps the mapping at `dma`: copies the bounce buffer back to the original for
    /// `FromDevice` and `Bidirectional` (unless `attrs.skip_cpu_sync`), then frees its slots,
    /// front padding included.
    ///
    /// # Errors
    ///
    /// [`LookupError`] if `dma` is not the start of a live streaming mapping, or `len` or
    /// `dir` are not the mapping's. Nothing changes on error.
    ///
    /// # Safety
    ///
    /// If `dma` is the start of a live mapping, its original buffer is still valid as
    /// [`map`](Self::map) requires, and no other thread syncs or unmaps the mapping during
    /// the call.
    pub unsafe fn unmap(
        &self,
        dma: DmaAddr,
        len: usize,
        dir: Direction,
        attrs: Attrs,
    ) -> Result<(), LookupError> {
        let found = self.find_whole(dma, len, false)?;
        let head = &found.head;
        if let Use::Stream(mapped) = head.use_ {
            if dir != mapped {
                return Err(LookupError::DirectionMismatch {
                    dma,
                    mapped,
                    given: dir,
                });
            }
        }
        if dir.from_device() && !attrs.skip_cpu_sync {
            // SAFETY: the mapping is live and ours: its original is writable for `len`
            // bytes (caller's promise, made at map), and its data lies in the pool.
            unsafe { self.copy_out(head, 0, len) };
        }
        self.release(&found, dma)
    }

    /// The live streaming mapping holding `dma..dma + len`, checked against `dir`, and the
    /// offset of `dma` in it.
    fn find_range(
        &self,
        dma: DmaAddr,
        len: usize,
        dir: Direction,
    ) -> Result<(Head, usize), LookupError> {
        if len == 0 {
            return Err(LookupError::ZeroLength { dma });
        }
        let Found { head, start, .. } = self.find(dma)?;
        let Use::Stream(mapped) = head.use_ else {
            return Err(wrong_kind(dma, false));
        };
        let offset = (dma - start) as usize;
        if len > head.len - offset {
            return Err(LookupError::OutOfRange {
                dma,
                len,
                start,
                mapped: head.len,
            });
        }
        if dir != mapped && mapped != Direction::Bidirectional {
            return Err(LookupError::DirectionMismatch {
                dma,
                mapped,
                given: dir,
            });
        }
        Ok((head, offset))
    }

    /// Makes `dma..dma + len` of a mapping current for the device: copies the original to
    /// the bounce buffer for `ToDevice` and `Bidirectional`, nothing for `FromDevice`. `dma`
    /// may be anywhere inside the mapping.
    ///
    /// # Errors
    ///
    /// [`LookupError`] if the range is empty or not inside one live streaming mapping, or
    /// `dir` contradicts the mapping's direction (it must match unless the mapping is
    /// bidirectional). Nothing is copied on error.
    ///
    /// # Safety
    ///
    /// The mapping is live and stays so during the call, and its original buffer is valid as
    /// [`map`](Self::map) requires.
    pub unsafe fn sync_for_device(
        &self,
        dma: DmaAddr,
        len: usize,
        dir: Direction,
    ) -> Result<(), LookupError> {
        let (head, offset) = self.find_range(dma, len, dir)?;
        if dir.to_device() {
            // SAFETY: `offset + len` is within the live mapping (checked), whose original is
            // readable for its whole length (caller's promise).
            unsafe { self.copy_in(&head, offset, len) };
        }
        Ok(())
    }

    /// Makes `dma..dma + len` of a mapping current for the CPU: copies the bounce buffer to
    /// the original for `FromDevice` and `Bidirectional`, nothing for `ToDevice`. `dma` may be
    /// anywhere inside the mapping.
    ///
    /// # Errors
    ///
    /// As [`sync_for_device`](Self::sync_for_device).
    ///
    /// # Safety
    ///
    /// As [`sync_for_device`](Self::sync_for_device).
    pub unsafe fn sync_for_cpu(
        &self,
        dma: DmaAddr,
        len: usize,
        dir: Direction,
    ) -> Result<(), LookupError> {
        let (head, offset) = self.find_range(dma, len, dir)?;
        if dir.from_device() {
            // SAFETY: `offset + len` is within the live mapping (checked), whose original is
            // writable for its whole length (caller's promise).
            unsafe { self.copy_out(&head, offset, len) };
        }
        Ok(())
    }

    /// Copies `len` bytes at `offset` of mapping `head` from the original to the pool.
    ///
    /// # Safety
    ///
    /// `head` is a live mapping whose original is readable, and `offset + len <= head.len`.
    #[inline]
    unsafe fn copy_in(&self, head: &Head, offset: usize, len: usize) {
        debug_assert!(offset + len <= head.len);
        let at = (head.slot << self.slot_shift) + head.offset + offset;
        // SAFETY: the original is readable for `head.len` bytes (caller), the pool range is
        // inside the mapping's slots, and the two never overlap (checked at map).
        unsafe {
            ptr::copy_nonoverlapping((head.orig + offset) as *const u8, self.cpu_at(at), len)
        };
    }

    /// Copies `len` bytes at `offset` of mapping `head` from the pool to the original.
    ///
    /// # Safety
    ///
    /// `head` is a live mapping whose original is writable, and `offset + len <= head.len`.
    #[inline]
    unsafe fn copy_out(&self, head: &Head, offset: usize, len: usize) {
        debug_assert!(offset + len <= head.len);
        let at = (head.slot << self.slot_shift) + head.offset + offset;
        // SAFETY: as in `copy_in`, with the original writable. Each pool byte is read once.
        unsafe { ptr::copy_nonoverlapping(self.cpu_at(at), (head.orig + offset) as *mut u8, len) };
    }

    // --- coherent allocations -----------------------------------------------------------

    /// Allocates `size` bytes of zeroed pool memory for structures the CPU and the device
    /// share (rings, descriptor tables). Aligned in device space to its size's power-of-two
    /// page order, never sharing a slot with another allocation; obeys `constraints`'
    /// `alloc_align_mask` (when larger), `seg_boundary_mask` and `dma_limit`, and ignores
    /// `min_align_mask`. Placed from the top of the area down, away from streaming
    /// mappings, so that long-lived allocations do not split the free space.
    ///
    /// # Errors
    ///
    /// As [`map`](Self::map); the largest allocation is one segment.
    pub fn alloc(&self, size: usize, constraints: &Constraints) -> Result<Coherent, MapError> {
        let req = self.coherent_request(size, constraints)?;
        let start = self.reserve(&req, |slot| Head {
            slot,
            use_: Use::Coherent,
            offset: 0,
            len: size,
            orig: 0,
        })?;
        let at = start << self.slot_shift;
        // SAFETY: the run is reserved for this allocation and lies in the pool.
        let cpu = unsafe { self.cpu_at(at) };
        // SAFETY: as above; zero whole slots so nothing of an earlier user is left.
        unsafe { ptr::write_bytes(cpu, 0, req.placement.slots << self.slot_shift) };
        Ok(Coherent {
            dma: self.slot_dma(start),
            // SAFETY: inside the region, which does not contain address 0.
            cpu: unsafe { NonNull::new_unchecked(cpu) },
            size,
        })
    }

    /// Frees the coherent allocation of `size` bytes at `dma`.
    ///
    /// # Errors
    ///
    /// [`LookupError`] if `dma` is not the start of a live coherent allocation of `size`
    /// bytes. Nothing changes on error.
    pub fn free(&self, dma: DmaAddr, size: usize) -> Result<(), LookupError> {
        let found = self.find_whole(dma, size, true)?;
        self.release(&found, dma)
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        #[cfg(feature = "std")]
        if let Some((mem, layout)) = self.owned.take() {
            // SAFETY: allocated in `allocate` with this layout; the pool is going away, and
            // with it every way to reach the memory.
            unsafe { std::alloc::dealloc(mem.as_ptr(), layout) };
        }
    }
}

impl core::fmt::Debug for Pool {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let range = self.dma_range();
        f.debug_struct("Pool")
            .field(
                "dma_range",
                &format_args!("{:#x}..{:#x}", range.start, range.end),
            )
            .field("slot_size", &self.slot_size())
            .field("segment_slots", &self.segment_slots)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}
