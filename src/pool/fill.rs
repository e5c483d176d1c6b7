//! What a run shows the device: before a mapping's data goes in, every byte of its slots
//! that is not its data is zero, never an earlier mapping's; scrubbing on release.
//!
//! Zeroing whole runs on every map would cost a `memset` of up to a slot per small mapping
//! (2 KiB for a 64-byte one). Instead each slot records how much of it, from its start,
//! may hold data (its dirty prefix, kept outside the pool), and a new run zeroes only what
//! is dirty and not about to be overwritten by its own data. A slot reused by mappings of
//! the same size zeroes nothing; one that held a longer mapping has the difference zeroed.

use super::Pool;
use crate::area::Area;
use crate::shared::fill_shared;
use crate::slot::dirty_units;
use crate::sync::Ordering;
use core::ops::Range;
use lock_api::RawMutex;

/// Pool byte ranges to zero, merged while they touch, so that a run of dirty slots is one
/// `fill_shared`.
struct Zeroes<'p, R> {
    pool: &'p Pool<R>,
    pending: Range<usize>,
}

impl<R: RawMutex> Zeroes<'_, R> {
    /// Adds `range` (pool byte offsets inside runs the caller owns).
    #[inline(always)]
    fn add(&mut self, range: Range<usize>) {
        if range.is_empty() {
            return;
        }
        if self.pending.end == range.start && !self.pending.is_empty() {
            self.pending.end = range.end;
        } else {
            self.flush();
            self.pending = range;
        }
    }

    /// Zeroes what is pending.
    #[inline(always)]
    fn flush(&mut self) {
        let Range { start, end } = core::mem::take(&mut self.pending);
        if start < end {
            // SAFETY: every added range lies in a run its caller owns (`prepare_run` and
            // `scrub_run`'s contracts), inside the pool.
            unsafe { fill_shared(self.pool.cpu_at(start), 0, end - start) };
        }
    }
}

/// What [`Pool::prepare_run`] leaves in a run's data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Prepare {
    /// Nothing: the caller copies the data in next.
    Copy,
    /// Zeros (a `FromDevice` mapping with [`Fill::Zero`](crate::Fill::Zero)).
    ZeroData,
    /// Zeros, and the whole run is zeroed whatever its slots say (coherent allocations,
    /// which are rare and whose memory must read zero when handed out).
    ZeroAll,
}

impl<R: RawMutex> Pool<R> {
    /// Makes the run of `count` slots from pool slot `start` show nothing but zeros outside
    /// `data` (pool byte offsets inside the run), fills `data` as `prepare` says, and records
    /// each slot's new dirty prefix (up to the end of its part of `data`).
    ///
    /// # Safety
    ///
    /// The caller owns the run (reserved and not yet handed to anyone else), which lies in
    /// `area`.
    #[inline(always)]
    pub(super) unsafe fn prepare_run(
        &self,
        area: &Area<R>,
        start: usize,
        count: usize,
        data: Range<usize>,
        prepare: Prepare,
    ) {
        let shift = self.slot_shift;
        let size = 1usize << shift;
        debug_assert!(count > 0 && !data.is_empty());
        debug_assert!(start << shift <= data.start && data.end <= (start + count) << shift);
        if prepare != Prepare::ZeroAll && data.start == start << shift {
            // The data starts the run (no padding, no offset: every mapping without
            // `min_align_mask`), and so ends in its last slot: every slot before that is all
            // data, and only the last can have dirty bytes past the data.
            // SAFETY: the caller's promise, passed on.
            unsafe { self.prepare_from_start(area, start, count, data.len(), prepare) };
            return;
        }
        let mut zeroes = Zeroes {
            pool: self,
            pending: 0..0,
        };
        if prepare == Prepare::ZeroAll {
            zeroes.add(start << shift..(start + count) << shift);
        }
        for slot in start..start + count {
            let base = slot << shift;
            // This slot's part of the data, as offsets in the slot (empty for padding).
            let lo = data.start.clamp(base, base + size) - base;
            let hi = data.end.clamp(base, base + size) - base;
            if prepare != Prepare::ZeroAll {
                let dirty = area.slots.dirty(slot, shift);
                if dirty != 0 {
                    // Zero what is dirty around this slot's part of the data.
                    zeroes.add(base..base + dirty.min(lo));
                    zeroes.add(base + hi.max(lo)..base + dirty.max(hi));
                }
            }
            // From here only this slot's data may be non-zero (and the zeros before it).
            area.slots
                .set_dirty(slot, if lo < hi { hi } else { 0 }, shift);
        }
        if prepare == Prepare::ZeroData {
            zeroes.add(data);
        }
        zeroes.flush();
    }

    /// [`prepare_run`](Self::prepare_run) of a run whose `len` bytes of data start at its
    /// first byte.
    ///
    /// # Safety
    ///
    /// As [`prepare_run`](Self::prepare_run).
    #[inline(always)]
    unsafe fn prepare_from_start(
        &self,
        area: &Area<R>,
        start: usize,
        count: usize,
        len: usize,
        prepare: Prepare,
    ) {
        let shift = self.slot_shift;
        let granule = self.dirty_shift;
        let cells = area.slots.dirty_run(start, count);
        let Some((last, whole)) = cells.split_last() else {
            return;
        };
        if !whole.is_empty() {
            let full = dirty_units(1 << shift, granule);
            for cell in whole {
                // Most maps reuse slots with data of the same extent: leave their line clean.
                if cell.load(Ordering::Relaxed) != full {
                    cell.store(full, Ordering::Relaxed);
                }
            }
        }
        // The data's part of the last slot, and what may be dirty past it.
        let tail = len - ((count - 1) << shift);
        let old = last.load(Ordering::Relaxed);
        let units = dirty_units(tail, granule);
        if old != units {
            last.store(units, Ordering::Relaxed);
        }
        let dirty = (old as usize) << granule;
        let base = (start + count - 1) << shift;
        let zero = match prepare {
            Prepare::ZeroData => (start << shift)..base + tail.max(dirty),
            _ => base + tail..base + tail.max(dirty),
        };
        if !zero.is_empty() {
            // SAFETY: inside the run, which the caller owns.
            unsafe { fill_shared(self.cpu_at(zero.start), 0, zero.len()) };
        }
    }

    /// Zeroes the whole run of `count` slots from pool slot `start` (what a device wrote
    /// anywhere in it too, not only what may hold data) and marks its slots clean.
    ///
    /// # Safety
    ///
    /// As [`prepare_run`](Self::prepare_run): the caller owns the run, which lies in `area`.
    pub(super) unsafe fn scrub_run(&self, area: &Area<R>, start: usize, count: usize) {
        let shift = self.slot_shift;
        // SAFETY: the caller owns the run, inside the pool.
        unsafe { fill_shared(self.cpu_at(start << shift), 0, count << shift) };
        for slot in start..start + count {
            area.slots.set_dirty(slot, 0, shift);
        }
    }
}
