//! Placement: a request in slot terms, the search for a run across the areas, and giving
//! a run back.

use super::{Found, Pool};
use crate::area::{Area, AreaGuard, Placement};
use crate::error::{LookupError, MapError};
use crate::request::{Constraints, DmaAddr};
use crate::slot::{Head, Use};
use crate::sync::Ordering;
use lock_api::RawMutex;

/// A mapping request turned into slot terms.
#[derive(Clone, Copy, Debug)]
pub(super) struct Request {
    pub(super) placement: Placement,
    /// Whole slots of front padding.
    pub(super) pad: usize,
    /// Offset of the data within the head slot.
    pub(super) offset: usize,
    /// Bytes asked for.
    pub(super) size: usize,
    /// Alignment of the first slot, for error reports.
    pub(super) align: u64,
    /// Device window the run must not cross (0: none), for error reports.
    pub(super) boundary: u64,
    /// The device's address limit, for error reports.
    pub(super) limit: u64,
}

/// What a new run's head records besides where it is: its use, length and original.
#[derive(Clone, Copy, Debug)]
pub(super) struct NewHead {
    pub(super) use_: Use,
    pub(super) len: usize,
    pub(super) orig: *mut u8,
}

/// A run reserved for one caller: recorded in its area's tags, and the caller's until it is
/// released.
pub(super) struct Reserved<'a, R> {
    pub(super) area: &'a Area<R>,
    /// Pool slot number of the run's first slot (front padding included).
    pub(super) start: usize,
}

fn is_low_mask(mask: u64) -> bool {
    mask & mask.wrapping_add(1) == 0
}

impl<R: RawMutex> Pool<R> {
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
    pub(super) fn stream_request(
        &self,
        orig: usize,
        len: usize,
        c: &Constraints,
    ) -> Result<Request, MapError> {
        match self.unconstrained_request(len, c) {
            Some(req) => Ok(req),
            None => self.stream_request_with(orig, len, c),
        }
    }

    /// The request of a streaming mapping of `len` bytes under constraints that ask nothing
    /// but what every mapping gets (no mask, no limit inside the pool), or `None` for any
    /// other (and for a length `stream_request_with` refuses): the common case, without the
    /// masks' arithmetic.
    #[inline(always)]
    pub(super) fn unconstrained_request(&self, len: usize, c: &Constraints) -> Option<Request> {
        let plain = c.min_align_mask | c.alloc_align_mask == 0
            && c.seg_boundary_mask == u64::MAX
            && c.dma_limit >= self.dma_last
            // 1 to a segment's bytes.
            && len.wrapping_sub(1) < self.segment_bytes;
        if !plain {
            return None;
        }
        // A page or more is page-aligned (`stream_request_with` with both masks zero).
        let stride = if len >= self.page_size {
            self.page_slots
        } else {
            1
        };
        Some(Request {
            placement: Placement {
                // No overflow: `len` is at most a segment's bytes.
                slots: (len + self.slot_mask) >> self.slot_shift,
                stride: stride as u64,
                phase: 0,
                window: self.segment_slots as u64,
                // Every slot of the pool is below the limit.
                limit: u64::MAX,
                from_top: false,
            },
            pad: 0,
            offset: 0,
            size: len,
            align: (stride << self.slot_shift) as u64,
            boundary: 0,
            limit: c.dma_limit,
        })
    }

    /// [`stream_request`](Self::stream_request) under any constraints.
    #[inline(never)]
    fn stream_request_with(
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
    pub(super) fn coherent_request(
        &self,
        size: usize,
        c: &Constraints,
    ) -> Result<Request, MapError> {
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

    /// Reserves a run for `req` in the caller's own area if its lock is free and it has
    /// room: the common case, kept small so that it stays in registers. `None` changes
    /// nothing; [`reserve`](Self::reserve) then does the whole search.
    #[inline(always)]
    pub(super) fn reserve_here(&self, req: &Request, head: NewHead) -> Option<Reserved<'_, R>> {
        let guard = self.areas[self.first_area()].try_lock()?;
        self.take_in(guard, req, head)
    }

    /// The area a caller starts in: its hint's, modulo the number of areas.
    #[inline(always)]
    fn first_area(&self) -> usize {
        let n = self.areas.len();
        if n == 1 {
            0
        } else {
            let hint = match self.hint {
                Some(hint) => hint(),
                None => crate::sync::thread_hint(),
            };
            hint & (n - 1)
        }
    }

    /// Finds and reserves a run for `req`, starting in the caller's area and falling back to
    /// the others, and records it with the head `head` describes.
    #[inline(never)]
    pub(super) fn reserve(
        &self,
        req: &Request,
        head: NewHead,
    ) -> Result<Reserved<'_, R>, MapError> {
        let n = self.areas.len();
        let first = self.first_area();
        let mut busy = 0u64;
        let mut missed = 0u64;
        let found = 'search: {
            // First pass: only areas whose lock is free, so that a thread whose area is busy
            // moves on instead of queueing.
            for k in 0..n {
                let area = &self.areas[(first + k) & (n - 1)];
                match area.try_lock() {
                    Some(guard) => match self.take_in(guard, req, head) {
                        Some(reserved) => break 'search Some(reserved),
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
                match self.take_in(area.lock(), req, head) {
                    Some(reserved) => break 'search Some(reserved),
                    None => missed |= 1 << k,
                }
            }
            None
        };
        match found {
            Some(reserved) => {
                self.count_missed(first, missed);
                Ok(reserved)
            }
            None => Err(self.failure(req, first, missed)),
        }
    }

    #[inline(always)]
    fn take_in<'a>(
        &self,
        mut guard: AreaGuard<'a, R>,
        req: &Request,
        head: NewHead,
    ) -> Option<Reserved<'a, R>> {
        let taken = guard.take(&req.placement)?;
        let slot = taken.start + req.pad;
        guard.area().slots.write_run(
            taken.start,
            req.placement.slots,
            req.pad,
            Head {
                slot,
                use_: head.use_,
                offset: req.offset,
                len: head.len,
                orig: head.orig,
            },
        );
        if taken.raised_high_water {
            // Sampled before unlocking, so this area's part of the sum is its new peak (a
            // racing unmap in this area cannot lower it first): the pool's mark stays at or
            // above every area's, and is exact with one area.
            self.high_water
                .fetch_max(self.used_slots(), Ordering::Relaxed);
        }
        let area = guard.area();
        drop(guard);
        Some(Reserved {
            area,
            start: taken.start,
        })
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

    /// Gives back the run of the live mapping `found`, if it is still the one recorded.
    ///
    /// Everything is decided under the area lock: the head is checked again there (a racing
    /// release of the same mapping, which only a broken caller contract allows, loses and
    /// changes nothing), and its tags are cleared before the lock is dropped, so no later
    /// lookup finds the run. With scrubbing, the run is zeroed only after that, outside the
    /// lock, while its bitmap bits still keep every other caller out, and then given back:
    /// the zeroing can never touch memory that someone else has since been given.
    #[inline(always)]
    pub(super) fn release(&self, found: &Found<'_, R>, dma: DmaAddr) -> Result<(), LookupError> {
        let Found { area, head, .. } = found;
        let data_slots = self.slots_for(head.offset + head.len);
        let mut guard = area.lock();
        if !area.slots.still(head) {
            return Err(LookupError::NotMapped { dma });
        }
        let pad = area.slots.pad_before(head.slot, area.first);
        let start = head.slot - pad;
        area.slots.clear_run(start, pad + data_slots);
        if self.scrub {
            drop(guard);
            // SAFETY: the run is ours: its tags are cleared (nobody can find it) and its
            // bitmap bits are still set (nobody can take it) until `give` below.
            unsafe { self.scrub_run(area, start, pad + data_slots) };
            guard = area.lock();
        }
        // Streaming runs wait in the area's cache for the next mapping of their size;
        // coherent ones (rings, rare and long-lived) go straight back.
        guard.give(start, pad + data_slots, head.use_ != Use::Coherent);
        Ok(())
    }
}
