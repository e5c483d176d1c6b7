//! The pool: one region carved into slots. This file holds the pool itself, its
//! construction, geometry and address arithmetic; each kind of work has its own file:
//!
//! - [`placement`]: turning a request into slot terms, finding and reserving a run,
//!   giving it back;
//! - [`streaming`]: map / unmap / sync;
//! - [`coherent`]: alloc / free;
//! - [`fill`]: what a run shows the device before its data goes in, and scrubbing;
//! - [`stats`]: the figures;
//! - [`probe`]: read-only views for the elastic pool above.

mod coherent;
mod fill;
mod placement;
mod probe;
mod stats;
mod streaming;

pub use coherent::{Coherent, ForeignAllocation};
use fill::Prepare;
pub use stats::Stats;

use crate::area::Area;
use crate::config::Config;
use crate::error::{ConfigError, LookupError};
use crate::request::{Direction, DmaAddr};
use crate::slot::{Head, Slots, Tag, Use};
use crate::sync::{AtomicUsize, DefaultRawMutex};
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::ops::Range;
use core::ptr::NonNull;
use crossbeam_utils::CachePadded;
use lock_api::RawMutex;

/// A bounce pool: a region of memory the device can address, carved into slots, with the
/// bookkeeping (kept outside the region) to map buffers through it.
///
/// All methods take `&self`; share a pool between threads with a reference, an `Arc` or a
/// `static`.
///
/// `R` is the lock each area uses ([`DefaultRawMutex`](crate::DefaultRawMutex) unless the
/// pool is built with [`with_raw_mutex`](Pool::with_raw_mutex)): bring one that masks
/// interrupts if an interrupt handler may map or unmap on a CPU that can hold the lock.
///
/// # Memory the device can see
///
/// The pool never forms a reference to its region: every byte is moved by the copies of
/// [`shared`](crate::shared), which are defined even while the device writes the same
/// bytes, each pool byte is read once per operation, and no value read from the region
/// steers the allocator. What a device writes there can corrupt only the data of its own
/// mappings. Bytes of a mapping's slots that are not its data (front padding, the head of
/// its first slot, the tail of its last) are zero, never an earlier mapping's, and the
/// region is cleared when the pool is built.
pub struct Pool<R = DefaultRawMutex> {
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
    /// What the common path would otherwise compute on every map (see `plain_request`):
    /// `slot_size - 1`, one segment's bytes (the largest mapping without
    /// `min_align_mask`), the slots of a page (at least one), the CPU address one past the
    /// last slot and the device address of the last slot's last byte.
    slot_mask: usize,
    segment_bytes: usize,
    page_slots: usize,
    cpu_end: usize,
    dma_last: DmaAddr,
    /// log2 of the granule slots' dirty prefixes are counted in.
    dirty_shift: u32,
    scrub: bool,
    /// The user's area hint; `None` for the default, called directly.
    hint: Option<fn() -> usize>,
    /// Ties [`Coherent`] handles to this pool (no other pool of the program has it).
    id: usize,
    areas: Box<[CachePadded<Area<R>>]>,
    /// Area of each segment, by device segment number minus the first one's.
    segment_area: Box<[u8]>,
    first_segment: u64,
    high_water: CachePadded<AtomicUsize>,
    failed_maps: AtomicUsize,
    #[cfg(feature = "std")]
    owned: Option<(NonNull<u8>, core::alloc::Layout)>,
}

// SAFETY: the region behind `cpu` is only touched through the copies of `shared` by whoever
// holds the mapping that covers the bytes (the slot reservation protocol, under the area
// locks, hands each run to one owner), and those copies are defined even when another
// agent writes the same bytes; every other field is immutable after construction, an
// atomic, or behind an area lock, which moves between threads if `R` does.
unsafe impl<R: RawMutex + Send> Send for Pool<R> {}
// SAFETY: as for `Send`: `&Pool` gives no unsynchronised access to anything, and the area
// locks may be taken from any thread if `R` is `Sync`.
unsafe impl<R: RawMutex + Sync> Sync for Pool<R> {}

/// What [`Pool::lookup`] found.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    /// Device address of the first byte of data.
    pub dma: DmaAddr,
    /// Length in bytes.
    pub len: usize,
    /// Streaming mapping or coherent allocation.
    pub kind: MappingKind,
}

impl core::fmt::Debug for Mapping {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Mapping")
            .field("dma", &crate::error::Hex(self.dma))
            .field("len", &self.len)
            .field("kind", &self.kind)
            .finish()
    }
}

/// The kind of a [`Mapping`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MappingKind {
    /// Made by [`Pool::map`].
    Streaming {
        /// Its direction.
        dir: Direction,
        /// The original buffer (for reports; the pool owns no right to it).
        orig: *const u8,
    },
    /// Made by [`Pool::alloc`].
    Coherent,
}

/// A live run found from a device address.
#[derive(Clone, Copy)]
pub(super) struct Found<'a, R> {
    pub(super) area: &'a Area<R>,
    pub(super) head: Head,
    /// Device address of its data.
    pub(super) start: DmaAddr,
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
    /// about its contents, and clears the slots before use (a memset of the region; a
    /// `Pool::allocate` region comes zeroed and is not written).
    pub unsafe fn new(
        cpu: NonNull<u8>,
        dma_base: DmaAddr,
        size: usize,
        config: Config,
    ) -> Result<Self, ConfigError> {
        // SAFETY: the caller's promise, passed on.
        unsafe { Self::with_raw_mutex(cpu, dma_base, size, config) }
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
            .page_size()
            .max(config.slot_size() * config.segment_slots());
        let oom = ConfigError::OutOfMemory(size);
        let layout = size
            .checked_add(align)
            .and_then(|total| core::alloc::Layout::from_size_align(total, 16).ok())
            .ok_or(oom)?;
        // SAFETY: the layout has a non-zero size.
        let mem = NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) }).ok_or(oom)?;
        let skip = mem.as_ptr().addr().wrapping_neg() & (align - 1);
        // SAFETY: `skip < align`, so the region `skip..skip + size` is inside the allocation.
        let start = unsafe { NonNull::new_unchecked(mem.as_ptr().add(skip)) };
        // SAFETY: `start..start + size` is a fresh zeroed allocation owned by the pool from
        // here on (freed in `drop`) and reachable by nothing else (so `build` need not clear
        // it); the "device" of such a pool uses CPU addresses.
        let pool = unsafe { Self::build(start, start.as_ptr().addr() as u64, size, config, true) };
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
}

impl<R: RawMutex> Pool<R> {
    /// As [`Pool::new`], with `R` as each area's lock: for `no_std` users whose maps and
    /// unmaps can run in contexts the default lock is not safe in (an interrupt handler on
    /// a CPU that may hold the lock: give a lock that masks interrupts).
    ///
    /// # Errors
    ///
    /// As [`Pool::new`].
    ///
    /// # Safety
    ///
    /// As [`Pool::new`].
    pub unsafe fn with_raw_mutex(
        cpu: NonNull<u8>,
        dma_base: DmaAddr,
        size: usize,
        config: Config,
    ) -> Result<Self, ConfigError> {
        // SAFETY: the caller's promise, passed on; the region's contents are unknown, so
        // `build` clears it.
        unsafe { Self::build(cpu, dma_base, size, config, false) }
    }

    /// Builds the pool; clears the region's slots unless `zeroed` says they are zero.
    ///
    /// # Safety
    ///
    /// As [`Pool::new`]; if `zeroed`, every byte of the region is zero.
    unsafe fn build(
        cpu: NonNull<u8>,
        dma_base: DmaAddr,
        size: usize,
        config: Config,
        zeroed: bool,
    ) -> Result<Self, ConfigError> {
        let want_areas = config.check()?;
        let slot = config.slot_size();
        let wraps = ConfigError::Wraps { size, dma_base };
        if cpu.as_ptr().addr().checked_add(size).is_none() {
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
        let seg = config.segment_slots() as u64;
        let origin = dma >> slot_shift;
        let first_segment = origin / seg;
        let segments = ((origin + slots_total as u64 - 1) / seg - first_segment + 1) as usize;
        // A power of two, and no more areas than segments.
        let nareas = want_areas.min(1 << segments.ilog2());

        let mut areas = Vec::new();
        areas
            .try_reserve_exact(nareas)
            .map_err(|_| ConfigError::OutOfMemory(nareas * core::mem::size_of::<Area<R>>()))?;
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
            let area = Area::new(first, last - first, origin + first as u64, seg).ok_or(
                ConfigError::OutOfMemory((last - first) * Slots::BYTES_PER_SLOT),
            )?;
            areas.push(CachePadded::new(area));
            segment_area.resize(hi, k as u8);
        }

        if !zeroed {
            // Whatever the region held before (another pool's mappings, a boot loader's
            // data) must not reach a device through a mapping. Linux clears its pool at
            // boot too. The slots are clean from here, which their dirty prefixes (0) say.
            // SAFETY: the slots lie in the region the caller vouched for; no mapping
            // exists yet.
            unsafe { crate::shared::fill_shared(cpu.as_ptr(), 0, slots_total << slot_shift) };
        }
        Ok(Self {
            cpu,
            dma,
            slot_shift,
            slots_total,
            segment_slots: seg as usize,
            segment_shift: seg.trailing_zeros(),
            page_size: config.page_size(),
            slot_mask: slot - 1,
            segment_bytes: slot * seg as usize,
            page_slots: (config.page_size() >> slot_shift).max(1),
            cpu_end: cpu.as_ptr().addr() + (slots_total << slot_shift),
            dma_last: dma + ((slots_total as u64) << slot_shift) - 1,
            dirty_shift: crate::slot::dirty_shift(slot_shift),
            scrub: config.scrub_on_release(),
            hint: config.own_area_hint(),
            id: crate::sync::next_pool_id(),
            areas: areas.into_boxed_slice(),
            segment_area: segment_area.into_boxed_slice(),
            first_segment,
            high_water: CachePadded::new(AtomicUsize::new(0)),
            failed_maps: AtomicUsize::new(0),
            #[cfg(feature = "std")]
            owned: None,
        })
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
    /// models and tests that act as the device: use the pointer only with the functions of
    /// [`shared`](crate::shared) (or atomics), never through a reference, since other
    /// agents may write the same bytes at any time.
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

    // --- addresses ----------------------------------------------------------------------

    /// Slots that hold `bytes` bytes (a shift: the slot size is a power of two).
    #[inline]
    pub(super) fn slots_for(&self, bytes: usize) -> usize {
        // Not `(bytes + slot - 1) >> shift`, which overflows for sizes near `usize::MAX`.
        (bytes >> self.slot_shift) + usize::from(bytes & ((1 << self.slot_shift) - 1) != 0)
    }

    #[inline]
    pub(super) fn slot_dma(&self, slot: usize) -> DmaAddr {
        self.dma + ((slot as u64) << self.slot_shift)
    }

    /// CPU pointer to byte `offset` of the pool.
    ///
    /// # Safety
    ///
    /// `offset` is at most the size of the pool's slots.
    #[inline]
    pub(super) unsafe fn cpu_at(&self, offset: usize) -> *mut u8 {
        debug_assert!(offset <= self.slots_total << self.slot_shift);
        // SAFETY: in bounds of the region, by the caller's promise.
        unsafe { self.cpu.as_ptr().add(offset) }
    }

    #[inline]
    pub(super) fn area_of(&self, slot: usize) -> &Area<R> {
        let segment = (((self.dma >> self.slot_shift) + slot as u64) >> self.segment_shift)
            - self.first_segment;
        let area = &self.areas[self.segment_area[segment as usize] as usize];
        debug_assert!(area.holds(slot));
        area
    }

    /// The live mapping holding `dma`'s slot, its area, and the device address of its data.
    #[inline(always)]
    pub(super) fn find(&self, dma: DmaAddr) -> Result<Found<'_, R>, LookupError> {
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

    /// The live run of use `use_` whose data starts at `dma` and is `len` bytes long, found
    /// with one comparison of the tag (which holds the use and the data's offset in the
    /// slot) and one of the length. `None` does not say what is wrong: the callers ask
    /// [`find`](Self::find) then.
    #[inline(always)]
    pub(super) fn find_exact(&self, dma: DmaAddr, len: usize, use_: Use) -> Option<Found<'_, R>> {
        let off = dma.wrapping_sub(self.dma);
        let slot = off >> self.slot_shift;
        if slot >= self.slots_total as u64 {
            return None;
        }
        let slot = slot as usize;
        let offset = off as usize & ((1 << self.slot_shift) - 1);
        let area = self.area_of(slot);
        let tag = Tag::Head { use_, offset }.encode();
        let head = area.slots.head_if(slot, tag, len)?;
        Some(Found {
            area,
            head,
            start: dma,
        })
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
                    orig: head.orig.cast_const(),
                },
                Use::Coherent => MappingKind::Coherent,
            },
        })
    }
}

impl<R> Drop for Pool<R> {
    fn drop(&mut self) {
        #[cfg(feature = "std")]
        if let Some((mem, layout)) = self.owned.take() {
            // SAFETY: allocated in `allocate` with this layout; the pool is going away, and
            // with it every way to reach the memory.
            unsafe { std::alloc::dealloc(mem.as_ptr(), layout) };
        }
    }
}

impl<R: RawMutex> core::fmt::Debug for Pool<R> {
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
