//! Growth: a new region from the backend, published in a new table. The writer's side,
//! under the growth lock (never an area lock), so maps that find room are never held up.

use super::table::{Member, SubPool, SubPoolKind, Table};
use super::{region_align, round_up, stats::Counters, ElasticPool};
use crate::backend::{Backend, BackendError, SharedRange};
use crate::error::ConfigError;
use crate::pool::Pool;
use crate::request::DmaAddr;
use crate::sync::Ordering;
use alloc::boxed::Box;
use alloc::vec::Vec;
use lock_api::RawMutex;

/// Why the pool did not grow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GrowError {
    /// The pool has no backend ([`ElasticPool::fixed`]).
    #[error("a fixed pool does not grow")]
    Fixed,
    /// The ceiling leaves no room for the region.
    #[error("growth by {asked} bytes would pass the ceiling: {held} of {max} bytes held")]
    Ceiling {
        /// Bytes the region needed at least.
        asked: usize,
        /// Bytes held from the backend.
        held: usize,
        /// The ceiling.
        max: usize,
    },
    /// The pool has as many sub-pools as it may.
    #[error("the pool has its maximum of {0} sub-pools")]
    SubPools(usize),
    /// The backend refused every size down to the floor; its last answer.
    #[error("the backend refused down to {size} bytes: {error}")]
    Backend {
        /// The last size asked.
        size: usize,
        /// What the backend said.
        error: BackendError,
    },
    /// A pool could not be built over the range (its metadata could not be allocated);
    /// the range was given back.
    #[error("no pool over the new region: {0}")]
    Region(ConfigError),
    /// The backend returned a range that breaks its contract (wrong size, misaligned,
    /// wrapping, or overlapping a region the pool holds). The pool leaks it: it cannot
    /// know what unsharing it would do.
    #[error("the backend returned a bad range: {size} bytes at device {dma:#x}")]
    BadRange {
        /// Device address of the range.
        dma: DmaAddr,
        /// Its size.
        size: usize,
    },
}

/// The writer's state, behind the growth lock.
pub(crate) struct Grower<R: RawMutex> {
    /// The regions other than the first, owned here (the table only points at them),
    /// with the time since which each has been seen empty.
    pub(super) subs: Vec<(*mut SubPool<R>, Option<u64>)>,
    /// Hint indexes free for new regions (0 is the first's).
    free_ids: Vec<usize>,
    next_serial: u64,
    /// Bytes held from the backend (the first region included, leaks not).
    pub(super) held: usize,
    /// Under loom, retired objects are kept until the pool is dropped, so that a model in
    /// which something reads one after its retirement fails on the check (`TrackCell`)
    /// rather than on freed memory.
    #[cfg(loom)]
    graveyard: Graveyard<R>,
}

/// Retired tables and regions, kept under loom.
#[cfg(loom)]
type Graveyard<R> = (Vec<Box<Table<R>>>, Vec<Box<SubPool<R>>>);

impl<R: RawMutex> Grower<R> {
    pub(super) fn new(max_subs: usize, first_bytes: usize) -> Self {
        Self {
            subs: Vec::new(),
            free_ids: (1..max_subs).rev().collect(),
            next_serial: 1,
            held: first_bytes,
            #[cfg(loom)]
            graveyard: (Vec::new(), Vec::new()),
        }
    }

    /// Frees a table nobody can reach any more (after `synchronize`).
    pub(super) fn retire_table(&mut self, table: Box<Table<R>>) {
        table.track.free();
        #[cfg(loom)]
        self.graveyard.0.push(table);
        #[cfg(not(loom))]
        drop(table);
    }

    /// Frees a region nobody can reach any more (after `synchronize`) and gives its
    /// memory back to the backend; a failed unshare leaks it (counted).
    pub(super) fn give_back(
        &mut self,
        backend: Option<&dyn Backend>,
        sub: Box<SubPool<R>>,
        counters: &Counters,
    ) {
        sub.track.free();
        self.free_ids.push(sub.id);
        let range = sub.range;
        // The pool's metadata goes first: it never touches the region when dropped.
        #[cfg(loom)]
        self.graveyard.1.push(sub);
        #[cfg(not(loom))]
        drop(sub);
        if let (Some(range), Some(backend)) = (range, backend) {
            self.held -= range.size;
            // SAFETY: the range came from this backend's `share`, is given back once (the
            // region was unlisted and waited out), and nothing uses its memory any more.
            if unsafe { backend.unshare(range) }.is_err() {
                counters.leaked(range.size);
            }
        }
    }

    /// Drops what loom kept.
    pub(super) fn drop_graveyard(&mut self) {
        #[cfg(loom)]
        {
            self.graveyard.0.clear();
            self.graveyard.1.clear();
        }
    }
}

impl<R: RawMutex> ElasticPool<R> {
    /// Adds a region of (at least) `bytes` bytes now, ahead of need: for callers whose maps
    /// must not grow the pool themselves ([`ElasticConfig::with_grow_on_map`]), from a
    /// worker. Returns the bytes added.
    ///
    /// # Errors
    ///
    /// [`GrowError`]: no backend, the ceiling or the sub-pool limit reached, the backend
    /// refusing down to the floor, or a range the pool cannot use.
    ///
    /// [`ElasticConfig::with_grow_on_map`]: crate::ElasticConfig::with_grow_on_map
    pub fn grow(&self, bytes: usize) -> Result<usize, GrowError> {
        let mut grower = self.grower.lock();
        let added = self.grow_locked(&mut grower, bytes.max(1), bytes.max(1));
        drop(grower);
        if added.is_ok() {
            self.wake_all();
        }
        added
    }

    /// Growth for a map that found no room: unless the table changed since the map looked
    /// (`generation`; another thread grew or shrank meanwhile, so the map tries again
    /// first), adds a region of the configured size, or sized to the request when that is
    /// more (`need`).
    pub(super) fn grow_for(&self, need: usize, generation: usize) -> Result<(), GrowError> {
        let mut grower = self.grower.lock();
        if self.generation.load(Ordering::Acquire) != generation {
            return Ok(());
        }
        let added = self.grow_locked(&mut grower, self.config.grow(), need);
        drop(grower);
        match added {
            Ok(_) => {
                self.wake_all();
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Adds a region of `size` bytes (at least `need`), halving on refusal down to the
    /// floor (never below `need`).
    fn grow_locked(
        &self,
        grower: &mut Grower<R>,
        size: usize,
        need: usize,
    ) -> Result<usize, GrowError> {
        let failed = |e: GrowError| {
            self.counters.growth_failed();
            e
        };
        let backend = self.backend.as_deref().ok_or(GrowError::Fixed)?;
        if grower.free_ids.is_empty() {
            return Err(failed(GrowError::SubPools(self.hints.len())));
        }
        let granule = self.granule;
        let max = self.config.max_bytes();
        let room = max.saturating_sub(grower.held) & !(granule - 1);
        let ceiling = GrowError::Ceiling {
            asked: need,
            held: grower.held,
            max,
        };
        let need = round_up(need, granule).ok_or_else(|| failed(ceiling))?;
        if need > room {
            return Err(failed(ceiling));
        }
        let default = round_up(size, granule).unwrap_or(room);
        let floor = round_up(self.config.min_grow(), granule).unwrap_or(room);
        let transient = need > default;
        let mut size = default.max(need).min(room);
        let lowest = floor.max(need).min(size);
        self.sample_use();
        let range = loop {
            match backend.share(size, region_align(&self.config, granule, size)) {
                Ok(range) => break range,
                Err(error) => {
                    self.counters.backend_refused();
                    if size <= lowest {
                        return Err(failed(GrowError::Backend { size, error }));
                    }
                    size = round_up(size / 2, granule).unwrap_or(lowest).max(lowest);
                }
            }
        };
        if !self.range_ok(grower, &range, size) {
            // Its contract broken, the backend cannot be trusted to unshare it right.
            self.counters.leaked(range.size);
            return Err(failed(GrowError::BadRange {
                dma: range.dma,
                size: range.size,
            }));
        }
        // SAFETY: `Backend`'s implementation safety: the range is ours, valid, and seen by
        // the device at `range.dma` until we give it back (after the pool over it is gone).
        let pool =
            unsafe { Pool::with_raw_mutex(range.cpu, range.dma, range.size, self.config.pool()) };
        let pool = match pool {
            Ok(pool) => pool,
            Err(e) => {
                // SAFETY: from `share` just above; nothing uses it.
                if unsafe { backend.unshare(range) }.is_err() {
                    self.counters.leaked(range.size);
                }
                return Err(failed(GrowError::Region(e)));
            }
        };
        let Some(id) = grower.free_ids.pop() else {
            unreachable!("checked above, under the same lock");
        };
        let kind = if transient {
            SubPoolKind::Transient
        } else {
            SubPoolKind::Grown
        };
        let serial = grower.next_serial;
        grower.next_serial += 1;
        let sub = Box::into_raw(Box::new(SubPool::new(pool, Some(range), id, serial, kind)));
        self.hints[id].store(usize::MAX, Ordering::Relaxed);
        grower.subs.push((sub, None));
        grower.held += range.size;
        self.counters.set_held(grower.held);

        let mut members = self.current_members();
        members.push(Member {
            sub: sub.cast_const(),
            open: true,
        });
        let old = self.publish(Table::build(&self.first, &members));
        self.epoch.synchronize();
        grower.retire_table(old);
        self.counters.grew(transient);
        Ok(range.size)
    }

    /// The members of the current table. Writer only: the table is not freed while the
    /// growth lock is held.
    pub(super) fn current_members(&self) -> Vec<Member<R>> {
        // SAFETY: only the holder of the growth lock (our caller) replaces or frees the
        // table, so the current one stays valid for this call.
        let table = unsafe { &*self.table.load(Ordering::SeqCst) };
        table.members()
    }

    /// Whether `range` is what was asked, aligned, and disjoint from every region held.
    fn range_ok(&self, grower: &Grower<R>, range: &SharedRange, size: usize) -> bool {
        let align = region_align(&self.config, self.granule, size) as u64;
        let cpu = range.cpu.as_ptr().addr();
        let (Some(cpu_end), Some(dma_end)) = (
            cpu.checked_add(range.size),
            range.dma.checked_add(range.size as u64),
        ) else {
            return false;
        };
        if range.size != size || range.dma % align != 0 || cpu as u64 % align != 0 {
            return false;
        }
        let disjoint = |sub: &SubPool<R>| {
            let (dma, cpu_range) = (sub.pool.dma_range(), sub.pool.cpu_range());
            (dma_end <= dma.start || range.dma >= dma.end)
                && (cpu_end <= cpu_range.start || cpu >= cpu_range.end)
        };
        disjoint(&self.first)
            && grower.subs.iter().all(|&(sub, _)| {
                // SAFETY: the grower owns the sub-pools it lists, alive while listed.
                disjoint(unsafe { &*sub })
            })
    }
}
