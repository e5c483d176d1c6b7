//! Read-only views of a pool for the layer above it (the elastic pool): its size, its use,
//! its CPU range, and a way to order oneself after every release so far. None of them
//! changes the pool or its figures.

use super::Pool;
use crate::request::DmaAddr;
use core::ops::Range;
use lock_api::RawMutex;

impl<R: RawMutex> Pool<R> {
    /// Slots in the pool.
    #[inline]
    pub(crate) fn total_slots(&self) -> usize {
        self.slots_total
    }

    /// Slots in use now: the areas' counters, each read once (no fence, no RMW: unlike
    /// [`stats`](Pool::stats), which folds the figure into the high-water mark).
    #[inline]
    pub(crate) fn used_now(&self) -> usize {
        self.used_slots()
    }

    /// Whether `dma` is in one of the pool's slots ([`contains`](Pool::contains)), tested
    /// as an unmap first tests it: a caller that asks before unmapping (the elastic pool,
    /// routing to its first region) then pays for one test, not two.
    #[inline(always)]
    pub(crate) fn holds(&self, dma: DmaAddr) -> bool {
        (dma.wrapping_sub(self.dma) >> self.slot_shift) < self.slots_total as u64
    }

    /// The CPU addresses of the pool's slots.
    #[inline]
    pub(crate) fn cpu_range(&self) -> Range<usize> {
        let start = self.cpu.as_ptr().addr();
        start..start + (self.slots_total << self.slot_shift)
    }

    /// Takes and drops every area's lock in turn. Every release (unmap or free) that ended
    /// before this call started then happens before the caller's next step, whatever the
    /// search does internally: a waiter that registered before calling this cannot miss a
    /// release that did not see its registration.
    pub(crate) fn order_after_releases(&self) {
        for area in self.areas.iter() {
            drop(area.lock());
        }
    }

    /// The area hint the pool was configured with, if the user gave one.
    pub(crate) fn hint(&self) -> Option<fn() -> usize> {
        self.hint
    }
}
