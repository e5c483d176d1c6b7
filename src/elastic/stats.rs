//! The elastic pool's figures: its use across regions, each region's own, and what growth,
//! shrinking and waiting did.

use super::table::SubPoolKind;
use super::ElasticPool;
use crate::pool::Stats;
use crate::request::DmaAddr;
use crate::sync::{AtomicUsize, Ordering};
use alloc::vec::Vec;
use core::ops::Range;
use lock_api::RawMutex;

/// Figures of an elastic pool. Taken without stopping other threads: each field is exact
/// but they are not all from one instant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ElasticStats {
    /// Slots in all regions.
    pub total_slots: usize,
    /// Slots in use (front padding included).
    pub used_slots: usize,
    /// The most slots seen in use at once since the pool was built or
    /// [`reset_high_water`](ElasticPool::reset_high_water) was last called: the highest of
    /// the use sampled whenever the figures are taken, a map is refused, the pool grows or
    /// a shrink pass runs, and each region's own mark (which [`Pool`](crate::Pool) keeps
    /// as its areas reach new highs; exact for a region of one area, so for a fixed pool of
    /// one area this is exact). Not tracked pool-wide on every map (that would need a
    /// counter every CPU writes), so with several regions or areas it is a lower bound of
    /// the true peak, never below `used_slots`; each region's own mark is in
    /// [`ElasticPool::sub_pools`].
    pub high_water: usize,
    /// Maps and allocations refused with [`MapError::Full`](crate::MapError::Full).
    pub failed_maps: usize,
    /// Regions now, the first included.
    pub sub_pools: usize,
    /// Bytes held from the backend now (the first region included, leaks not).
    pub held_bytes: usize,
    /// Regions added by growth, ever.
    pub growths: usize,
    /// Of those, regions sized to one request larger than the configured growth.
    pub transient_growths: usize,
    /// Growths that added nothing (ceiling, sub-pool limit, backend refusals down to the
    /// floor, a bad range).
    pub growth_failures: usize,
    /// Shares the backend refused (each halving step counts).
    pub backend_refusals: usize,
    /// Regions given back, ever.
    pub shrinks: usize,
    /// Unshares that failed, and bad ranges: each leaked, never used again.
    pub leaks: usize,
    /// Bytes leaked so.
    pub leaked_bytes: usize,
    /// Waiting maps that had to wait (at least once).
    pub waits: usize,
    /// Waiting maps that gave up at their deadline.
    pub wait_timeouts: usize,
    /// Waiting maps held back by throttling (at least once).
    pub throttled_waits: usize,
    /// Whether throttling holds waiting maps back now.
    pub throttled: bool,
}

/// Figures of one region ([`ElasticPool::sub_pools`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubPoolStats {
    /// Device addresses of its slots.
    pub dma_range: Range<DmaAddr>,
    /// Bytes of the region.
    pub bytes: usize,
    /// Why it exists.
    pub kind: SubPoolKind,
    /// Whether maps may go there (a region being given back is closed first).
    pub open: bool,
    /// Its own figures (high water since it was created).
    pub stats: Stats,
}

/// The counters, all relaxed atomics.
#[derive(Debug)]
pub(crate) struct Counters {
    failed_maps: AtomicUsize,
    growths: AtomicUsize,
    transient_growths: AtomicUsize,
    growth_failures: AtomicUsize,
    backend_refusals: AtomicUsize,
    shrinks: AtomicUsize,
    leaks: AtomicUsize,
    leaked_bytes: AtomicUsize,
    waits: AtomicUsize,
    wait_timeouts: AtomicUsize,
    throttled_waits: AtomicUsize,
    held: AtomicUsize,
    high_water: AtomicUsize,
}

impl Counters {
    pub(crate) fn new() -> Self {
        let z = || AtomicUsize::new(0);
        Self {
            failed_maps: z(),
            growths: z(),
            transient_growths: z(),
            growth_failures: z(),
            backend_refusals: z(),
            shrinks: z(),
            leaks: z(),
            leaked_bytes: z(),
            waits: z(),
            wait_timeouts: z(),
            throttled_waits: z(),
            held: z(),
            high_water: z(),
        }
    }

    fn add(c: &AtomicUsize, n: usize) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn failed_map(&self) {
        Self::add(&self.failed_maps, 1);
    }

    pub(crate) fn grew(&self, transient: bool) {
        Self::add(&self.growths, 1);
        if transient {
            Self::add(&self.transient_growths, 1);
        }
    }

    pub(crate) fn growth_failed(&self) {
        Self::add(&self.growth_failures, 1);
    }

    pub(crate) fn backend_refused(&self) {
        Self::add(&self.backend_refusals, 1);
    }

    pub(crate) fn shrank(&self) {
        Self::add(&self.shrinks, 1);
    }

    pub(crate) fn leaked(&self, bytes: usize) {
        Self::add(&self.leaks, 1);
        Self::add(&self.leaked_bytes, bytes);
    }

    pub(crate) fn waited(&self) {
        Self::add(&self.waits, 1);
    }

    pub(crate) fn timed_out(&self) {
        Self::add(&self.wait_timeouts, 1);
    }

    pub(crate) fn throttled_wait(&self) {
        Self::add(&self.throttled_waits, 1);
    }

    pub(crate) fn set_held(&self, bytes: usize) {
        self.held.store(bytes, Ordering::Relaxed);
    }

    /// Folds a use seen now into the high-water mark.
    pub(crate) fn sample(&self, used: usize) -> usize {
        self.high_water.fetch_max(used, Ordering::Relaxed).max(used)
    }

    fn get(c: &AtomicUsize) -> usize {
        c.load(Ordering::Relaxed)
    }
}

impl<R: RawMutex> ElasticPool<R> {
    /// The pool's figures (and a sample of its use for the high-water mark).
    pub fn stats(&self) -> ElasticStats {
        let guard = self.epoch.pin();
        let table = self.table(&guard);
        let (total_slots, used_slots) = self.totals(&guard, table);
        let region_mark = self.region_marks(&guard, table);
        let sub_pools = table.by_dma.len();
        table.track.read();
        drop(guard);
        let c = &self.counters;
        let held = Counters::get(&c.held);
        ElasticStats {
            total_slots,
            used_slots,
            high_water: c.sample(used_slots).max(region_mark),
            // A fixed pool's refusals are its region's own (its maps go straight there).
            failed_maps: Counters::get(&c.failed_maps)
                + if self.fixed {
                    self.first.pool.stats().failed_maps
                } else {
                    0
                },
            sub_pools,
            held_bytes: if self.backend.is_some() { held } else { 0 },
            growths: Counters::get(&c.growths),
            transient_growths: Counters::get(&c.transient_growths),
            growth_failures: Counters::get(&c.growth_failures),
            backend_refusals: Counters::get(&c.backend_refusals),
            shrinks: Counters::get(&c.shrinks),
            leaks: Counters::get(&c.leaks),
            leaked_bytes: Counters::get(&c.leaked_bytes),
            waits: Counters::get(&c.waits),
            wait_timeouts: Counters::get(&c.wait_timeouts),
            throttled_waits: Counters::get(&c.throttled_waits),
            throttled: self.watch.load(Ordering::Relaxed) & super::THROTTLED != 0,
        }
    }

    /// Each region's figures, in device address order.
    pub fn sub_pools(&self) -> Vec<SubPoolStats> {
        let guard = self.epoch.pin();
        let table = self.table(&guard);
        let list = table
            .by_dma
            .iter()
            .map(|e| {
                let sub = self.resolve(&guard, e.sub);
                let s = SubPoolStats {
                    dma_range: sub.pool.dma_range(),
                    bytes: sub.bytes(),
                    kind: sub.kind,
                    open: e.open(),
                    stats: sub.pool.stats(),
                };
                sub.track.read();
                s
            })
            .collect();
        table.track.read();
        list
    }

    /// Starts a new high-water mark (the pool's and every region's) from the use now, and
    /// returns the old mark.
    pub fn reset_high_water(&self) -> usize {
        let guard = self.epoch.pin();
        let table = self.table(&guard);
        let (_, used) = self.totals(&guard, table);
        let old = self.region_marks(&guard, table);
        for e in table.by_dma.iter() {
            let sub = self.resolve(&guard, e.sub);
            sub.pool.reset_high_water();
            sub.track.read();
        }
        table.track.read();
        drop(guard);
        self.counters
            .high_water
            .swap(used, Ordering::Relaxed)
            .max(used)
            .max(old)
    }

    /// The highest of the regions' own marks: each region's peak is a lower bound of the
    /// pool's, and a region's mark is exact when it has one area (the sampled mark alone
    /// misses peaks that come and go between samples).
    fn region_marks(&self, guard: &super::epoch::Guard<'_>, table: &super::Table<R>) -> usize {
        let mut mark = 0;
        for e in table.by_dma.iter() {
            let sub = self.resolve(guard, e.sub);
            mark = mark.max(sub.pool.stats().high_water);
            sub.track.read();
        }
        mark
    }

    /// Slots in use across the regions now.
    pub(super) fn used_now(&self) -> usize {
        let guard = self.epoch.pin();
        let table = self.table(&guard);
        let (_, used) = self.totals(&guard, table);
        table.track.read();
        used
    }

    /// Folds the use now into the high-water mark.
    pub(super) fn sample_use(&self) {
        self.counters.sample(self.used_now());
    }
}
