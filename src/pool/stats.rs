//! Pool-wide and per-area figures.

use super::Pool;
use crate::area::AreaStats;
use crate::sync::Ordering;
use lock_api::RawMutex;

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
    /// Maps and allocations refused because the pool had no room ([`MapError::Full`](crate::MapError::Full)).
    pub failed_maps: usize,
    /// Number of areas.
    pub areas: usize,
}

impl<R: RawMutex> Pool<R> {
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

    /// Starts a new high-water mark (the pool's and every area's) from the use now, and
    /// returns the pool's old mark: as writing to Linux's `io_tlb_used_hiwater` in debugfs,
    /// to watch the peak of one phase of a workload.
    pub fn reset_high_water(&self) -> usize {
        for area in self.areas.iter() {
            area.reset_high_water();
        }
        let used = self.used_slots();
        self.high_water.swap(used, Ordering::Relaxed).max(used)
    }

    /// Figures of area `index`, or `None` past the last area.
    pub fn area_stats(&self, index: usize) -> Option<AreaStats> {
        self.areas.get(index).map(|a| a.stats())
    }

    pub(super) fn used_slots(&self) -> usize {
        self.areas.iter().map(|a| a.used()).sum()
    }
}
