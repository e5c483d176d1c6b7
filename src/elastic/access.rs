//! Calls routed to their region: maps and allocations choose one (oldest first, growing the
//! pool when none has room), unmaps, syncs, frees and lookups find theirs by device
//! address.
//!
//! The first region is reached without the table: a map tries it directly while the pool
//! has not grown, and an unmap whose address is in it goes straight there. Only calls that
//! need another region pin the epoch and search the table.

use super::table::{SubPool, Table};
use super::{epoch, round_up, ElasticPool, FIRST_HINT, THROTTLED, WAITING};
use crate::api::DmaPool;
use crate::error::{LookupError, MapError};
use crate::pool::Pool;
use crate::pool::{Coherent, ForeignAllocation, Mapping};
use crate::request::{Attrs, Constraints, Direction, DmaAddr};
use crate::sync::Ordering;
use core::ptr::NonNull;
use lock_api::RawMutex;

/// Whether a new region could cure the error: no room (`Full`), or no placement in the
/// regions there are (`Impossible`: a region sized to the request may have one).
fn growable(e: &MapError) -> bool {
    matches!(e, MapError::Full { .. } | MapError::Impossible { .. })
}

/// How much an error says about the other regions: `Full` (room may come) over
/// `Unreachable` (the limit is to blame) over `Impossible`.
fn rank(e: &MapError) -> u8 {
    match e {
        MapError::Full { .. } => 2,
        MapError::Unreachable { .. } => 1,
        _ => 0,
    }
}

/// The most a request can be tried again after growth (another thread may take the new
/// room first, or change the table between the failure and the growth lock).
const GROWTH_ROUNDS: usize = 4;

impl<R: RawMutex> ElasticPool<R> {
    // --- streaming ----------------------------------------------------------------------

    /// Maps `buf` as [`Pool::map`](crate::Pool::map) does, in the first region with room,
    /// growing the pool if none has; never waits for another caller's unmap. Shorthand
    /// for [`try_map_attrs`](Self::try_map_attrs) with [`Attrs::NONE`].
    ///
    /// # Errors
    ///
    /// As [`try_map_attrs`](Self::try_map_attrs).
    ///
    /// # Safety
    ///
    /// As [`Pool::map`](crate::Pool::map).
    #[inline]
    pub unsafe fn try_map(
        &self,
        buf: NonNull<[u8]>,
        dir: Direction,
        constraints: &Constraints,
    ) -> Result<DmaAddr, MapError> {
        // SAFETY: the caller's promise, passed on.
        unsafe { self.try_map_attrs(buf, dir, constraints, Attrs::NONE) }
    }

    /// Maps `buf` as [`Pool::map_attrs`](crate::Pool::map_attrs) does, in the oldest region
    /// with room. When none has, and the configuration lets maps grow the pool, it adds a
    /// region from the backend (growth never holds an area lock, and maps that find room
    /// never wait for it) and maps there. It never waits for another caller to unmap: it
    /// returns `Full` at once instead (see [`map_wait`](Self::map_wait) and
    /// [`map_async`](Self::map_async) for maps that wait).
    ///
    /// # Errors
    ///
    /// As [`Pool::map_attrs`](crate::Pool::map_attrs); `Full` carries the figures of the
    /// whole pool, and comes when no region has room and the pool cannot grow (no backend,
    /// growth on maps off, the ceiling or the sub-pool limit reached, or the backend
    /// refusing even the floor). Nothing changes on error but the failure counts.
    ///
    /// # Safety
    ///
    /// As [`Pool::map`](crate::Pool::map).
    #[inline(always)]
    pub unsafe fn try_map_attrs(
        &self,
        buf: NonNull<[u8]>,
        dir: Direction,
        constraints: &Constraints,
        attrs: Attrs,
    ) -> Result<DmaAddr, MapError> {
        if !self.grown.load(Ordering::Relaxed) {
            // One region (for good in a fixed pool): a plain call into it.
            // SAFETY: the caller's promise, passed on.
            return match unsafe { self.first.pool.map_attrs(buf, dir, constraints, attrs) } {
                Ok(dma) => Ok(dma),
                // SAFETY: the caller's promise, passed on.
                Err(e) => unsafe { self.first_refused(e, buf, dir, constraints, attrs) },
            };
        }
        // SAFETY: the caller's promise, passed on.
        unsafe { self.map_slow(buf, dir, constraints, attrs) }
    }

    /// A map the first region refused (`e`) while the pool had not grown: a fixed pool's
    /// answer is its region's (whose own figures count the refusal); an elastic pool tries
    /// the table and grows if it may.
    ///
    /// # Safety
    ///
    /// As [`Pool::map`](crate::Pool::map).
    #[cold]
    #[inline(never)]
    unsafe fn first_refused(
        &self,
        e: MapError,
        buf: NonNull<[u8]>,
        dir: Direction,
        constraints: &Constraints,
        attrs: Attrs,
    ) -> Result<DmaAddr, MapError> {
        if self.fixed {
            return Err(e);
        }
        if growable(&e) && self.config.grow_on_map() {
            // SAFETY: the caller's promise, passed on.
            return unsafe { self.map_slow(buf, dir, constraints, attrs) };
        }
        let e = self.no_room(e, self.stream_need(buf.len(), constraints));
        self.refused(&e);
        Err(e)
    }

    /// The map of a pool that has grown, or whose first region is full.
    ///
    /// # Safety
    ///
    /// As [`Pool::map`](crate::Pool::map).
    #[inline(never)]
    pub(super) unsafe fn map_slow(
        &self,
        buf: NonNull<[u8]>,
        dir: Direction,
        constraints: &Constraints,
        attrs: Attrs,
    ) -> Result<DmaAddr, MapError> {
        let len = buf.len();
        if len == 0 {
            return Err(MapError::ZeroLength);
        }
        let addr = buf.cast::<u8>().as_ptr().addr();
        let end = addr
            .checked_add(len)
            .ok_or(MapError::BufferWraps { addr, len })?;
        // The size hints are kept for requests without constraints, whose needs grow with
        // their length (see `hints`).
        let hint = (*constraints == Constraints::NONE).then_some(len);
        let need = || self.stream_need(len, constraints);
        // The same map twice: the first, tried once at the cursor, is inlined there; the
        // other serves the rest of the search, out of line.
        self.place(
            need,
            hint,
            Some((addr, end)),
            // SAFETY: the caller's promise, passed on; a region that refuses changes
            // nothing, so the next may be tried with the same buffer.
            move |sub| unsafe { sub.pool.map_attrs(buf, dir, constraints, attrs) },
            // SAFETY: as above.
            move |sub| unsafe { sub.pool.map_attrs(buf, dir, constraints, attrs) },
        )
    }

    /// Unmaps as [`Pool::unmap`](crate::Pool::unmap) does, in whichever region holds
    /// `dma`, and wakes waiting maps if there are any.
    ///
    /// # Errors
    ///
    /// As [`Pool::unmap`](crate::Pool::unmap) (`NotMapped` for an address in no region).
    ///
    /// # Safety
    ///
    /// As [`Pool::unmap`](crate::Pool::unmap).
    #[inline(always)]
    pub unsafe fn unmap(
        &self,
        dma: DmaAddr,
        len: usize,
        dir: Direction,
        attrs: Attrs,
    ) -> Result<(), LookupError> {
        if self.first.pool.holds(dma) {
            // SAFETY: the caller's promise, passed on.
            let r = unsafe { self.first.pool.unmap(dma, len, dir, attrs) };
            self.released_first(&r);
            return r;
        }
        // SAFETY: the caller's promise, passed on.
        self.release_in_table(dma, move |pool| unsafe { pool.unmap(dma, len, dir, attrs) })
    }

    /// Unmaps as [`Pool::unmap_into`](crate::Pool::unmap_into) does, in whichever region
    /// holds `dma`, and wakes waiting maps if there are any.
    ///
    /// # Errors
    ///
    /// As [`Pool::unmap_into`](crate::Pool::unmap_into).
    ///
    /// # Safety
    ///
    /// As [`Pool::unmap_into`](crate::Pool::unmap_into).
    #[inline(always)]
    pub unsafe fn unmap_into(
        &self,
        dma: DmaAddr,
        buf: NonNull<[u8]>,
        dir: Direction,
        attrs: Attrs,
    ) -> Result<(), LookupError> {
        if self.first.pool.holds(dma) {
            // SAFETY: the caller's promise, passed on.
            let r = unsafe { self.first.pool.unmap_into(dma, buf, dir, attrs) };
            self.released_first(&r);
            return r;
        }
        // SAFETY: the caller's promise, passed on.
        self.release_in_table(dma, move |pool| unsafe {
            pool.unmap_into(dma, buf, dir, attrs)
        })
    }

    /// Runs a release (`f`: an unmap or a free) in the region that holds `dma`, then what
    /// a release owes the pool: the region's full hint cleared, waiters woken.
    fn release(
        &self,
        dma: DmaAddr,
        f: impl FnOnce(&Pool<R>) -> Result<(), LookupError>,
    ) -> Result<(), LookupError> {
        if self.first.pool.holds(dma) {
            let r = f(&self.first.pool);
            self.released_first(&r);
            return r;
        }
        self.release_in_table(dma, f)
    }

    /// After a release in the first region (`r`: whether it happened): one load, and the
    /// rest only when there is something to do.
    #[inline(always)]
    fn released_first(&self, r: &Result<(), LookupError>) {
        if r.is_ok() {
            let watch = self.watch.load(Ordering::Relaxed);
            if watch != 0 {
                self.released_first_slow(watch);
            }
        }
    }

    /// A release (`f`) in a region other than the first: pinned, through the table; then
    /// the region's full hint cleared and the cursor moved back to it if maps start past
    /// it (a load each when there is nothing to do), and waiters woken.
    #[inline(never)]
    fn release_in_table(
        &self,
        dma: DmaAddr,
        f: impl FnOnce(&Pool<R>) -> Result<(), LookupError>,
    ) -> Result<(), LookupError> {
        let guard = self.epoch.pin();
        let table = self.table(&guard);
        let r = match table.find(dma) {
            Some(e) => {
                let sub = self.resolve(&guard, e.sub);
                let r = f(&sub.pool);
                sub.track.read();
                if r.is_ok() {
                    if let Some(hint) = self.hints.get(e.id as usize) {
                        if hint.load(Ordering::Relaxed) != usize::MAX {
                            hint.store(usize::MAX, Ordering::Relaxed);
                        }
                    }
                    table.released_at(e.pos);
                }
                r
            }
            None => Err(LookupError::NotMapped { dma }),
        };
        table.track.read();
        drop(guard);
        if r.is_ok() {
            let watch = self.watch.load(Ordering::Relaxed);
            if watch & (WAITING | THROTTLED) != 0 {
                self.wake_after_release(watch);
            }
        }
        r
    }

    /// After a release in the first region that found something to do.
    #[cold]
    #[inline(never)]
    fn released_first_slow(&self, watch: usize) {
        if watch & FIRST_HINT != 0 {
            // The bit first, then the hint: a map that sets both in the other order can
            // leave the bit up with no hint (harmless), never a hint without its bit.
            self.watch.fetch_and(!FIRST_HINT, Ordering::AcqRel);
            self.hints[0].store(usize::MAX, Ordering::Release);
            // And maps look at the first region first again (it is always open, and the
            // oldest: first in the order).
            let guard = self.epoch.pin();
            let table = self.table(&guard);
            table.released_at(0);
            table.track.read();
        }
        if watch & (WAITING | THROTTLED) != 0 {
            self.wake_after_release(watch);
        }
    }

    /// [`Pool::sync_for_device`](crate::Pool::sync_for_device) in whichever region holds
    /// `dma`.
    ///
    /// # Errors
    ///
    /// As [`Pool::sync_for_device`](crate::Pool::sync_for_device).
    ///
    /// # Safety
    ///
    /// As [`Pool::sync_for_device`](crate::Pool::sync_for_device).
    pub unsafe fn sync_for_device(
        &self,
        dma: DmaAddr,
        len: usize,
        dir: Direction,
    ) -> Result<(), LookupError> {
        // SAFETY: the caller's promise, passed on.
        self.route(dma, |sub| unsafe {
            sub.pool.sync_for_device(dma, len, dir)
        })
        .unwrap_or(Err(unknown(dma, len)))
    }

    /// [`Pool::sync_for_device_from`](crate::Pool::sync_for_device_from) in whichever
    /// region holds `dma`.
    ///
    /// # Errors
    ///
    /// As [`Pool::sync_for_device_from`](crate::Pool::sync_for_device_from).
    ///
    /// # Safety
    ///
    /// As [`Pool::sync_for_device_from`](crate::Pool::sync_for_device_from).
    pub unsafe fn sync_for_device_from(
        &self,
        dma: DmaAddr,
        buf: NonNull<[u8]>,
        dir: Direction,
    ) -> Result<(), LookupError> {
        // SAFETY: the caller's promise, passed on.
        self.route(dma, |sub| unsafe {
            sub.pool.sync_for_device_from(dma, buf, dir)
        })
        .unwrap_or(Err(unknown(dma, buf.len())))
    }

    /// [`Pool::sync_for_cpu`](crate::Pool::sync_for_cpu) in whichever region holds `dma`.
    ///
    /// # Errors
    ///
    /// As [`Pool::sync_for_cpu`](crate::Pool::sync_for_cpu).
    ///
    /// # Safety
    ///
    /// As [`Pool::sync_for_cpu`](crate::Pool::sync_for_cpu).
    pub unsafe fn sync_for_cpu(
        &self,
        dma: DmaAddr,
        len: usize,
        dir: Direction,
    ) -> Result<(), LookupError> {
        // SAFETY: the caller's promise, passed on.
        self.route(dma, |sub| unsafe { sub.pool.sync_for_cpu(dma, len, dir) })
            .unwrap_or(Err(unknown(dma, len)))
    }

    /// [`Pool::sync_for_cpu_into`](crate::Pool::sync_for_cpu_into) in whichever region
    /// holds `dma`.
    ///
    /// # Errors
    ///
    /// As [`Pool::sync_for_cpu_into`](crate::Pool::sync_for_cpu_into).
    ///
    /// # Safety
    ///
    /// As [`Pool::sync_for_cpu_into`](crate::Pool::sync_for_cpu_into).
    pub unsafe fn sync_for_cpu_into(
        &self,
        dma: DmaAddr,
        buf: NonNull<[u8]>,
        dir: Direction,
    ) -> Result<(), LookupError> {
        // SAFETY: the caller's promise, passed on.
        self.route(dma, |sub| unsafe {
            sub.pool.sync_for_cpu_into(dma, buf, dir)
        })
        .unwrap_or(Err(unknown(dma, buf.len())))
    }

    // --- coherent -----------------------------------------------------------------------

    /// Allocates as [`Pool::alloc`](crate::Pool::alloc) does, in the oldest region with
    /// room, growing the pool if none has; never waits.
    ///
    /// # Errors
    ///
    /// As [`try_map_attrs`](Self::try_map_attrs) and [`Pool::alloc`](crate::Pool::alloc).
    pub fn try_alloc(&self, size: usize, constraints: &Constraints) -> Result<Coherent, MapError> {
        if self.fixed {
            return self.first.pool.alloc(size, constraints);
        }
        if !self.grown.load(Ordering::Relaxed) {
            match self.first.pool.alloc(size, constraints) {
                Ok(c) => return Ok(c),
                Err(e) if !(growable(&e) && self.grows_on_map()) => {
                    let e = self.no_room(e, self.coherent_need(size, constraints));
                    self.refused(&e);
                    return Err(e);
                }
                Err(_) => {}
            }
        }
        let need = || self.coherent_need(size, constraints);
        self.place(
            need,
            None,
            None,
            |sub| sub.pool.alloc(size, constraints),
            |sub| sub.pool.alloc(size, constraints),
        )
    }

    /// Frees a coherent allocation of this pool (whichever region made it), and wakes
    /// waiting maps if there are any.
    ///
    /// # Errors
    ///
    /// [`ForeignAllocation`], handing it back, if no region of this pool made it.
    pub fn free(&self, allocation: Coherent) -> Result<(), ForeignAllocation> {
        let dma = allocation.dma();
        if !self.contains(dma) {
            return Err(ForeignAllocation(allocation));
        }
        let mut allocation = Some(allocation);
        let mut foreign = None;
        let r = self.release(dma, |pool| {
            let Some(a) = allocation.take() else {
                return Err(LookupError::NotMapped { dma });
            };
            pool.free(a).map_err(|e| {
                foreign = Some(e);
                LookupError::NotMapped { dma }
            })
        });
        match (r, foreign, allocation) {
            (Ok(()), _, _) => Ok(()),
            (Err(_), Some(e), _) => Err(e),
            // The region went away between the two looks (given back by a shrink): then
            // it did not make this allocation, which would have kept it.
            (Err(_), None, Some(a)) => Err(ForeignAllocation(a)),
            // A region's free either frees the allocation or hands it back.
            (Err(_), None, None) => {
                debug_assert!(false, "allocation neither freed nor handed back");
                Ok(())
            }
        }
    }

    /// Frees from raw parts as [`Pool::free_raw`](crate::Pool::free_raw) does.
    ///
    /// # Errors
    ///
    /// As [`Pool::free_raw`](crate::Pool::free_raw) (`NotMapped` for an address in no
    /// region).
    ///
    /// # Safety
    ///
    /// As [`Pool::free_raw`](crate::Pool::free_raw).
    pub unsafe fn free_raw(&self, dma: DmaAddr, size: usize) -> Result<(), LookupError> {
        // SAFETY: the caller's promise, passed on.
        self.release(dma, |pool| unsafe { pool.free_raw(dma, size) })
    }

    // --- lookups ------------------------------------------------------------------------

    /// The live mapping or allocation whose data holds `dma`, in whichever region holds
    /// it ([`Pool::lookup`](crate::Pool::lookup)). Changes nothing; safe to call while
    /// regions are added and given back.
    pub fn lookup(&self, dma: DmaAddr) -> Option<Mapping> {
        self.route(dma, |sub| sub.pool.lookup(dma)).flatten()
    }

    /// Whether `dma` is in one of the pool's regions now (mapped or not).
    pub fn contains(&self, dma: DmaAddr) -> bool {
        self.route(dma, |_| ()).is_some()
    }

    /// The CPU address of `dma..dma + len`, if that range lies in one region
    /// ([`Pool::translate`](crate::Pool::translate), with its rules for using the pointer;
    /// the region may be given back once nothing is mapped in it).
    pub fn translate(&self, dma: DmaAddr, len: usize) -> Option<NonNull<u8>> {
        self.route(dma, |sub| sub.pool.translate(dma, len))
            .flatten()
    }

    // --- routing ------------------------------------------------------------------------

    /// Runs `f` on the region that holds `dma`, if any.
    #[inline(always)]
    fn route<T>(&self, dma: DmaAddr, f: impl FnOnce(&SubPool<R>) -> T) -> Option<T> {
        if self.first.pool.holds(dma) {
            return Some(f(&self.first));
        }
        self.route_table(dma, f)
    }

    /// [`route`](Self::route) past the first region: pinned, through the table.
    #[inline(never)]
    fn route_table<T>(&self, dma: DmaAddr, f: impl FnOnce(&SubPool<R>) -> T) -> Option<T> {
        let guard = self.epoch.pin();
        let table = self.table(&guard);
        let result = table.find(dma).map(|e| {
            let sub = self.resolve(&guard, e.sub);
            let r = f(sub);
            sub.track.read();
            r
        });
        table.track.read();
        result
    }

    // --- placement ----------------------------------------------------------------------

    fn grows_on_map(&self) -> bool {
        self.backend.is_some() && self.config.grow_on_map()
    }

    /// `Impossible` only when no region the pool could ever add would take the request
    /// either (it cannot grow, or not by `need` bytes): a region sized to it would have a
    /// placement, so otherwise the pool is just full.
    fn no_room(&self, e: MapError, need: usize) -> MapError {
        let MapError::Impossible {
            size,
            slots,
            align,
            boundary,
        } = e
        else {
            return e;
        };
        if self.backend.is_none() || need > self.config.max_bytes() {
            return e;
        }
        let stats = self.stats();
        MapError::Full {
            size,
            slots,
            align,
            boundary,
            total_slots: stats.total_slots,
            used_slots: stats.used_slots,
        }
    }

    /// Counts a refusal.
    #[cold]
    pub(super) fn refused(&self, e: &MapError) {
        if let MapError::Full { used_slots, .. } = *e {
            self.counters.failed_map();
            self.counters.sample(used_slots);
        }
    }

    /// Tries `f` on the open regions, oldest first, growing the pool (by a region of at
    /// least `need()` bytes) when none has room. `first` is `f` for the region tried first,
    /// inlined here (a closure called from the out-of-line rest of the search as well would
    /// not be).
    #[inline(always)]
    pub(super) fn place<T>(
        &self,
        need: impl Fn() -> usize,
        hint: Option<usize>,
        buffer: Option<(usize, usize)>,
        first: impl FnOnce(&SubPool<R>) -> Result<T, MapError>,
        mut f: impl FnMut(&SubPool<R>) -> Result<T, MapError>,
    ) -> Result<T, MapError> {
        let generation = self.generation.load(Ordering::Acquire);
        let guard = self.epoch.pin();
        let table = self.table(&guard);
        let r = self.place_in(&guard, table, hint, buffer, |_, sub| first(sub), &mut f);
        table.track.read();
        drop(guard);
        match r {
            Ok(v) => Ok(v),
            Err(e) => self.place_again(need, hint, buffer, f, e, generation),
        }
    }

    /// [`place`](Self::place) after its first look found no room (`e`, with the table at
    /// `generation`): growth, and another look, as long as growth adds room.
    #[inline(never)]
    fn place_again<T>(
        &self,
        need: impl Fn() -> usize,
        hint: Option<usize>,
        buffer: Option<(usize, usize)>,
        mut f: impl FnMut(&SubPool<R>) -> Result<T, MapError>,
        mut e: MapError,
        mut generation: usize,
    ) -> Result<T, MapError> {
        let mut rounds = 0;
        loop {
            if !(growable(&e) && self.grows_on_map() && rounds < GROWTH_ROUNDS) || {
                rounds += 1;
                self.grow_for(need(), generation).is_err()
            } {
                let e = self.no_room(e, need());
                self.refused(&e);
                return Err(e);
            }
            generation = self.generation.load(Ordering::Acquire);
            e = match self.place_once(hint, buffer, &mut f) {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
        }
    }

    /// One look at the open regions.
    fn place_once<T>(
        &self,
        hint: Option<usize>,
        buffer: Option<(usize, usize)>,
        f: &mut impl FnMut(&SubPool<R>) -> Result<T, MapError>,
    ) -> Result<T, MapError> {
        let guard = self.epoch.pin();
        let table = self.table(&guard);
        let result = self.place_in(&guard, table, hint, buffer, |f, sub| f(sub), f);
        table.track.read();
        result
    }

    /// Two passes over the open regions. The first starts at the table's cursor when the
    /// request is at least as large as the one that placed it (every region before it had
    /// refused such a request since its last release) and skips those whose hint says a
    /// map of this size failed there since; the second, only if the first found nothing,
    /// tries every region the first did not, hints ignored, so `Full` (and growth) comes
    /// only when no region took the request.
    ///
    /// The region at the cursor is tried here, inline: it is where a map lands when the
    /// cursor is right, and with it the whole look is a pin, a search of the CPU ranges,
    /// two loads and the region's own map. The rest of the first pass and the second are
    /// out of line ([`place_on`](Self::place_on)).
    #[inline(always)]
    fn place_in<T, F: FnMut(&SubPool<R>) -> Result<T, MapError>>(
        &self,
        guard: &epoch::Guard<'_>,
        table: &Table<R>,
        hint: Option<usize>,
        buffer: Option<(usize, usize)>,
        first: impl FnOnce(&mut F, &SubPool<R>) -> Result<T, MapError>,
        f: &mut F,
    ) -> Result<T, MapError> {
        if let Some((addr, end)) = buffer {
            if table.overlaps_cpu(addr, end) {
                return Err(MapError::BufferInPool {
                    addr,
                    len: end - addr,
                });
            }
        }
        // A hint is never 0, so `len` 0 (no hint for this request) skips nothing.
        let len = hint.unwrap_or(0);
        // Maps of at least `cursor_len` bytes start at the cursor.
        let cursor = if hint.is_some() && len >= table.cursor_len.load(Ordering::Relaxed) {
            table.cursor.load(Ordering::Relaxed)
        } else {
            0
        };
        let mut tried = None;
        if let Some(open) = table.order.get(cursor) {
            if self.hints[open.id].load(Ordering::Relaxed) > len {
                let sub = self.resolve(guard, open.sub);
                let r = first(f, sub);
                if r.is_ok() {
                    sub.touch();
                }
                sub.track.read();
                match r {
                    Ok(v) => return Ok(v),
                    Err(e) => tried = Some(e),
                }
            }
        }
        self.place_on(guard, table, hint, cursor.min(table.order.len()), tried, f)
    }

    /// The rest of [`place_in`](Self::place_in): `tried` is the region at `cursor`'s
    /// answer, if `place_in` asked it (it is not asked again).
    #[inline(never)]
    fn place_on<T>(
        &self,
        guard: &epoch::Guard<'_>,
        table: &Table<R>,
        hint: Option<usize>,
        cursor: usize,
        mut tried: Option<MapError>,
        f: &mut impl FnMut(&SubPool<R>) -> Result<T, MapError>,
    ) -> Result<T, MapError> {
        let (len, hinted) = (hint.unwrap_or(0), hint.is_some());
        // The cursor as it is now (`place_in` read it a moment ago): only whether to move
        // it depends on it.
        let (at, proof) = (
            table.cursor.load(Ordering::Relaxed),
            table.cursor_len.load(Ordering::Relaxed),
        );
        let mut best: Option<MapError> = None;
        let hints = &*self.hints;
        let order = &*table.order;
        // Positions from the cursor that the hints skipped: the first 64 exactly, any
        // further as "some" (the second pass then looks at their hints again).
        let (mut skipped, mut skipped_high) = (0u64, false);
        // Whether every region from the cursor up to here refused this request's size.
        let mut full_prefix = true;
        for pass in 0..2 {
            let from = if pass == 0 { cursor } else { 0 };
            for (k, open) in order.iter().enumerate().skip(from) {
                let sub = self.resolve(guard, open.sub);
                // The region at the cursor, if `place_in` asked it.
                let asked = if pass == 0 && k == cursor {
                    tried.take()
                } else {
                    None
                };
                let r = match asked {
                    Some(e) => Err(e),
                    None => {
                        let h = hints[open.id].load(Ordering::Relaxed);
                        if pass == 0 {
                            if h <= len {
                                let bit = k - cursor;
                                if bit < 64 {
                                    skipped |= 1 << bit;
                                } else {
                                    skipped_high = true;
                                }
                                continue;
                            }
                        } else if k >= cursor {
                            let bit = k - cursor;
                            let was_skipped = if bit < 64 {
                                skipped >> bit & 1 != 0
                            } else {
                                skipped_high && h <= len
                            };
                            if !was_skipped {
                                continue;
                            }
                        }
                        let r = f(sub);
                        if r.is_ok() {
                            sub.touch();
                        }
                        sub.track.read();
                        r
                    }
                };
                match r {
                    Ok(v) => {
                        if pass == 0 && full_prefix && k > cursor && (k > at || len <= proof) {
                            // Every region before this one refuses this size: later maps
                            // of at least this size start here. (Two stores racing others
                            // can only misplace a map: the second pass tries them all.)
                            table.cursor_len.store(len, Ordering::Relaxed);
                            table.cursor.store(k, Ordering::Relaxed);
                        } else if pass == 1 && k < cursor {
                            // Room before the cursor (a release it missed): look there first.
                            table.cursor.fetch_min(k, Ordering::Relaxed);
                        }
                        return Ok(v);
                    }
                    Err(e) => {
                        if !growable(&e) && !matches!(e, MapError::Unreachable { .. }) {
                            // The same answer from every region (length, masks, buffer).
                            return Err(e);
                        }
                        if let (MapError::Full { .. }, true) = (&e, hinted) {
                            hints[open.id].fetch_min(len, Ordering::AcqRel);
                            if open.id == 0 {
                                self.watch.fetch_or(FIRST_HINT, Ordering::AcqRel);
                            }
                        } else {
                            full_prefix = false;
                        }
                        if best.as_ref().is_none_or(|b| rank(&e) > rank(b)) {
                            best = Some(e);
                        }
                    }
                }
            }
            if pass == 0 && cursor == 0 && skipped == 0 && !skipped_high {
                break;
            }
        }
        // The first region is always open, so something was tried.
        let mut e = best.unwrap_or(MapError::ZeroLength);
        if let MapError::Full {
            total_slots,
            used_slots,
            ..
        } = &mut e
        {
            (*total_slots, *used_slots) = self.totals(guard, table);
        }
        Err(e)
    }

    /// Bytes a fresh region needs to hold a streaming mapping of `len` bytes under
    /// `constraints`: the data, room for the kept offset or alignment, at most a segment.
    pub(super) fn stream_need(&self, len: usize, c: &Constraints) -> usize {
        let slot = self.slot_size();
        let segment = slot * self.first.pool.segment_slots();
        let masks = (c.min_align_mask | c.alloc_align_mask).min(segment as u64) as usize;
        round_up(len.saturating_add(masks), slot)
            .unwrap_or(usize::MAX)
            .clamp(slot, segment.max(slot))
    }

    /// Bytes a fresh region needs to hold a coherent allocation of `size` bytes: its
    /// power-of-two page order (its alignment), at most a segment.
    pub(super) fn coherent_need(&self, size: usize, c: &Constraints) -> usize {
        let page = self.page_size();
        let segment = self.slot_size() * self.first.pool.segment_slots();
        let order = size
            .div_ceil(page)
            .checked_next_power_of_two()
            .map_or(usize::MAX, |p| p.saturating_mul(page));
        let align = usize::try_from(c.alloc_align_mask.saturating_add(1)).unwrap_or(usize::MAX);
        order.max(align).clamp(page, segment.max(page))
    }
}

/// The error for a sync of `dma..dma + len` in no region: `ZeroLength` first, as a pool's
/// own check orders them.
fn unknown(dma: DmaAddr, len: usize) -> LookupError {
    if len == 0 {
        LookupError::ZeroLength { dma }
    } else {
        LookupError::NotMapped { dma }
    }
}

impl<R: RawMutex> DmaPool for ElasticPool<R> {
    #[inline(always)]
    unsafe fn map_attrs(
        &self,
        buf: NonNull<[u8]>,
        dir: Direction,
        constraints: &Constraints,
        attrs: Attrs,
    ) -> Result<DmaAddr, MapError> {
        // SAFETY: the caller's promise, passed on.
        unsafe { self.try_map_attrs(buf, dir, constraints, attrs) }
    }

    #[inline(always)]
    unsafe fn unmap_into(
        &self,
        dma: DmaAddr,
        buf: NonNull<[u8]>,
        dir: Direction,
        attrs: Attrs,
    ) -> Result<(), LookupError> {
        // SAFETY: the caller's promise, passed on.
        unsafe { ElasticPool::unmap_into(self, dma, buf, dir, attrs) }
    }

    #[inline(always)]
    unsafe fn sync_for_cpu_into(
        &self,
        dma: DmaAddr,
        buf: NonNull<[u8]>,
        dir: Direction,
    ) -> Result<(), LookupError> {
        // SAFETY: the caller's promise, passed on.
        unsafe { ElasticPool::sync_for_cpu_into(self, dma, buf, dir) }
    }

    #[inline(always)]
    unsafe fn sync_for_device_from(
        &self,
        dma: DmaAddr,
        buf: NonNull<[u8]>,
        dir: Direction,
    ) -> Result<(), LookupError> {
        // SAFETY: the caller's promise, passed on.
        unsafe { ElasticPool::sync_for_device_from(self, dma, buf, dir) }
    }

    #[inline(always)]
    fn alloc(&self, size: usize, constraints: &Constraints) -> Result<Coherent, MapError> {
        self.try_alloc(size, constraints)
    }

    #[inline(always)]
    fn free(&self, allocation: Coherent) -> Result<(), ForeignAllocation> {
        ElasticPool::free(self, allocation)
    }
}

#[cfg(all(test, feature = "std", not(loom)))]
mod tests {
    use crate::request::{Attrs, Constraints, Direction};
    use crate::sync::{AtomicUsize, Ordering};
    use crate::{ElasticConfig, ElasticPool, HeapBackend, MapError};
    use alloc::sync::Arc;
    use alloc::task::Wake;
    use alloc::vec::Vec;
    use core::future::Future;
    use core::pin::pin;
    use core::ptr::NonNull;
    use core::task::{Context, Poll, Waker};

    /// A waker that counts its wakes.
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// An unmap in a grown region (the path through the table, not the first region's)
    /// wakes a map waiting for room, and the waiter then maps into the room it left.
    #[test]
    fn an_unmap_in_a_grown_region_wakes_a_waiting_map() {
        // Smaller under Miri, whose byte-wise copies and clears of each region made this one
        // test most of the Miri step's time (4 mappings a region instead of 16).
        const REGION: usize = if cfg!(miri) { 16 << 10 } else { 64 << 10 };
        let config = ElasticConfig::new()
            .with_initial(REGION)
            .with_grow(REGION, REGION)
            .with_max_sub_pools(2)
            .with_max_bytes(2 * REGION);
        let pool = ElasticPool::new(HeapBackend::new(), config).unwrap();
        let chunk = alloc::vec![0x5au8; 4096];
        let src = NonNull::from(&chunk[..]);
        // Fill both regions (the second grown on demand) with ToDevice maps of `chunk`.
        let mut held = Vec::new();
        loop {
            // SAFETY: `chunk` outlives every mapping (all unmapped below) and is only read.
            match unsafe { pool.try_map(src, Direction::ToDevice, &Constraints::NONE) } {
                Ok(dma) => held.push(dma),
                Err(MapError::Full { .. }) => break,
                Err(e) => panic!("{e:?}"),
            }
        }
        assert_eq!(pool.stats().sub_pools, 2, "grown to its ceiling");
        let pos = held
            .iter()
            .position(|&dma| !pool.first.pool.holds(dma))
            .expect("a mapping in the grown region");
        let in_grown = held.swap_remove(pos);

        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let mut out = alloc::vec![0u8; 4096];
        let dst = NonNull::from(&mut out[..]);
        // SAFETY: `out` outlives the future and its mapping (unmapped below).
        let mut fut = pin!(unsafe {
            pool.map_async(dst, Direction::ToDevice, &Constraints::NONE, Attrs::NONE)
        });
        assert!(fut.as_mut().poll(&mut cx).is_pending(), "no room: it waits");
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
        // SAFETY: a live ToDevice mapping of `chunk` (nothing is copied back).
        unsafe { pool.unmap(in_grown, 4096, Direction::ToDevice, Attrs::NONE) }.unwrap();
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "the unmap woke it");
        let Poll::Ready(Ok(dma)) = fut.as_mut().poll(&mut cx) else {
            panic!("room after the unmap")
        };
        assert!(!pool.first.pool.holds(dma), "into the room the unmap left");
        for dma in held.into_iter().chain([dma]) {
            // SAFETY: live ToDevice mappings of 4096 bytes, unmapped once each.
            unsafe { pool.unmap(dma, 4096, Direction::ToDevice, Attrs::NONE) }.unwrap();
        }
        assert_eq!(pool.stats().used_slots, 0);
    }
}
