//! The elastic pool: a set of regions ("sub-pools", each a [`Pool`]) obtained from a
//! [`Backend`], grown when full, given back when idle, with maps that wait for room.
//!
//! This is the second room of the crate. The first, [`Pool`], allocates inside one
//! contiguous region; this one decides how many regions there are and finds the right one:
//!
//! - [`table`]: the sub-pools, and an immutable table that finds them by device address
//!   (binary search) and lists the open ones in the order maps try them;
//! - [`epoch`]: the reader protection that lets a shrink free a sub-pool while other
//!   threads look the table up without a lock;
//! - [`access`]: maps, unmaps, syncs, allocations and lookups routed to their sub-pool;
//! - [`grow`] and [`shrink`]: the writer's side, under one growth lock;
//! - [`wait`]: maps that wait for room (blocking with a timeout, or a `Future`) and
//!   throttling;
//! - [`stats`]: the figures.
//!
//! The design and why is in [`implementation`](crate::implementation), "Elastic pools".

mod access;
mod config;
mod epoch;
mod grow;
mod shrink;
mod stats;
mod table;
mod wait;

pub use config::{ElasticConfig, ElasticError, MAX_SUB_POOLS};
pub use grow::GrowError;
pub use stats::{ElasticStats, SubPoolStats};
pub use table::SubPoolKind;
pub use wait::{MapFuture, Wakeup};

use crate::backend::Backend;
use crate::pool::Pool;
use crate::sync::{AtomicBool, AtomicPtr, AtomicUsize, DefaultRawMutex, Mutex, Ordering};

/// [`ElasticPool::watch`]: waiters are registered.
const WAITING: usize = 1;
/// [`ElasticPool::watch`]: throttling holds waiting maps back.
const THROTTLED: usize = 2;
/// [`ElasticPool::watch`]: the first region's full hint is set.
const FIRST_HINT: usize = 4;
use alloc::boxed::Box;
use alloc::vec::Vec;
use epoch::Epoch;
use lock_api::RawMutex;
use table::{Member, SubPool, Table};

/// A bounce pool that grows: regions of device-visible memory obtained from a [`Backend`]
/// when maps run out of room, given back when they stay idle, found by device address in
/// O(log n) without a lock, with maps that can wait for room instead of failing.
///
/// Every region is a [`Pool`] with the same [`Config`](crate::Config), so each mapping
/// has the semantics of `SEMANTICS.md`; the elastic pool only chooses the region.
///
/// - [`try_map_attrs`](Self::try_map_attrs) (and the [`DmaPool`](crate::DmaPool) calls)
///   never wait for other callers: they try the regions oldest first, grow the pool when
///   none has room (if the configuration lets maps grow it and the backend gives memory),
///   and return [`MapError::Full`](crate::MapError::Full) at once otherwise.
/// - [`map_wait`](Self::map_wait) (with `std`), [`map_wait_with`](Self::map_wait_with) and
///   [`map_async`](Self::map_async) wait for an unmap or free to make room, woken by it
///   (no polling), and obey the throttling watermarks.
/// - [`shrink`](Self::shrink) gives back regions that have stayed empty past the idle
///   time (never the first), and [`grow`](Self::grow) adds one ahead of need.
///
/// A pool over one region that never grows is [`ElasticPool::fixed`]: the same calls,
/// waits included, at the cost of a range check on unmap (the first region is reached
/// without the table).
///
/// # Examples
///
/// ```
/// use core::ptr::NonNull;
/// use swiotlb::{Attrs, Constraints, Direction, ElasticConfig, ElasticPool, HeapBackend};
///
/// // Ordinary memory here; in a confidential VM, a backend that shares pages with the host.
/// let config = ElasticConfig::new().with_initial(64 << 10).with_idle_time_ns(0);
/// let pool = ElasticPool::new(HeapBackend::new(), config)?;
///
/// let mut bufs = vec![vec![7u8; 64 << 10]; 4];            // 256 KiB: more than the first region
/// let mut mapped = Vec::new();
/// for buf in &mut bufs {
///     // SAFETY: each buffer stays alive and untouched until it is unmapped below.
///     let dma = unsafe {
///         pool.try_map_attrs(NonNull::from(&mut buf[..]), Direction::ToDevice, &Constraints::NONE, Attrs::NONE)?
///     };
///     mapped.push(dma);
/// }
/// assert!(pool.stats().sub_pools > 1);                    // it grew
/// for (dma, buf) in mapped.into_iter().zip(&bufs) {
///     // SAFETY: mapped above, unmapped once.
///     unsafe { pool.unmap(dma, buf.len(), Direction::ToDevice, Attrs::NONE)? };
/// }
/// assert_eq!(pool.shrink(), pool.stats().growths);        // and gives it all back
/// assert_eq!(pool.stats().sub_pools, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Where growth and shrink may run
///
/// Growth and shrink call the backend and wait (spinning, then yielding with `std`) until
/// every thread inside a lookup of a non-first region has left it. Do not let them run on a
/// CPU that can have interrupted such a lookup (an interrupt handler that maps with growth
/// on, or calls `shrink`, while the interrupted code unmaps from a grown region): it would
/// wait for itself. Such callers turn growth on maps off
/// ([`ElasticConfig::with_grow_on_map`]) and grow and shrink from a worker.
pub struct ElasticPool<R: RawMutex = DefaultRawMutex> {
    /// The first region: never given back, reached without the table or a pin.
    first: SubPool<R>,
    /// No backend: maps go to the first region and its answer is final.
    fixed: bool,
    /// Whether the table holds more than the first region (maps skip the table while not).
    grown: AtomicBool,
    /// What a release must look at, one word read with one load: [`WAITING`],
    /// [`THROTTLED`], [`FIRST_HINT`]. Zero on the fast path.
    watch: AtomicUsize,
    /// Per sub-pool id: the smallest plain map (bytes) found `Full` there since its last
    /// release (`usize::MAX`: none); maps of at least that size try it last.
    hints: Box<[AtomicUsize]>,
    table: AtomicPtr<Table<R>>,
    /// Counts table publications: a map that failed grows only if nothing changed since.
    generation: AtomicUsize,
    epoch: Epoch,
    waiters: Mutex<R, wait::WaitList>,
    grower: Mutex<R, grow::Grower<R>>,
    backend: Option<Box<dyn Backend>>,
    config: ElasticConfig,
    /// The backend's granule (the page size for a fixed pool).
    granule: usize,
    counters: stats::Counters,
}

// SAFETY: the raw pointers inside (the table, the sub-pools it lists, the grower's list)
// point to heap objects the pool owns; the table and sub-pools are shared with readers
// only under an epoch pin and freed only after `Epoch::synchronize` (see `epoch.rs`), and
// the grower's list is behind the growth lock. Every other field is an atomic, immutable
// after construction, or behind a lock, and the regions are `Pool`s, which are `Send` when
// `R` is.
unsafe impl<R: RawMutex + Send> Send for ElasticPool<R> {}
// SAFETY: as for `Send`: `&ElasticPool` gives access to shared state only through atomics,
// the locks (usable from any thread when `R` is `Sync`) and the epoch protocol.
unsafe impl<R: RawMutex + Sync> Sync for ElasticPool<R> {}

impl ElasticPool {
    /// Builds an elastic pool whose first region, of
    /// [`initial`](ElasticConfig::initial) bytes, `backend` shares now.
    ///
    /// # Errors
    ///
    /// [`ElasticError`]: an invalid configuration, a backend that refuses the first region,
    /// or a region the pool cannot use (too small for a slot). Nothing stays shared.
    pub fn new(
        backend: impl Backend + 'static,
        config: ElasticConfig,
    ) -> Result<Self, ElasticError> {
        Self::with_raw_mutex(backend, config)
    }
}

impl<R: RawMutex> ElasticPool<R> {
    /// As [`new`](ElasticPool::new), with `R` as the lock of every area, of growth and of
    /// the wait list (see [`Pool::with_raw_mutex`]).
    ///
    /// # Errors
    ///
    /// As [`new`](ElasticPool::new).
    pub fn with_raw_mutex(
        backend: impl Backend + 'static,
        config: ElasticConfig,
    ) -> Result<Self, ElasticError> {
        let granule = backend.granule();
        config.check(granule)?;
        let size = round_up(config.initial(), granule).ok_or(ElasticError::Sizes {
            initial: config.initial(),
            grow: config.grow(),
            floor: config.min_grow(),
            max: config.max_bytes(),
        })?;
        let range = backend.share(size, region_align(&config, granule, size))?;
        // SAFETY: `Backend`'s implementation safety: the range is ours, valid, and seen by
        // the device at `range.dma`, until we unshare it (in `drop`, after the pool).
        let pool = unsafe { Pool::with_raw_mutex(range.cpu, range.dma, range.size, config.pool()) };
        let pool = match pool {
            Ok(pool) => pool,
            Err(e) => {
                // SAFETY: the range came from `share` just above and nothing uses it.
                if unsafe { backend.unshare(range) }.is_err() {
                    // Nowhere to count it yet: it stays shared and unused, as promised.
                }
                return Err(e.into());
            }
        };
        let first = SubPool::new(pool, Some(range), 0, 0, table::SubPoolKind::First);
        Ok(Self::assemble(
            first,
            Some(Box::new(backend)),
            config,
            granule,
            range.size,
        ))
    }

    /// An elastic pool over one fixed region, `pool`, that never grows or shrinks: the
    /// elastic pool's calls (waiting maps among them) over today's [`Pool`].
    pub fn fixed(pool: Pool<R>) -> Self {
        Self::fixed_with(pool, ElasticConfig::new())
    }

    /// As [`fixed`](Self::fixed), with `config`'s throttling watermarks. Its region
    /// configuration and sizes are ignored (`pool` has its own, and never grows).
    pub fn fixed_with(pool: Pool<R>, config: ElasticConfig) -> Self {
        let bytes = pool.total_slots() * pool.slot_size();
        let granule = pool.page_size();
        // The region's own hint, if it was given one (else the default, which the pool
        // reads without a call).
        let config = match pool.hint() {
            Some(hint) => config.with_pool(config.pool().with_area_hint(hint)),
            None => config,
        };
        let first = SubPool::new(pool, None, 0, 0, table::SubPoolKind::First);
        Self::assemble(first, None, config, granule, bytes)
    }

    fn assemble(
        first: SubPool<R>,
        backend: Option<Box<dyn Backend>>,
        config: ElasticConfig,
        granule: usize,
        first_bytes: usize,
    ) -> Self {
        let max_subs = if backend.is_some() {
            config.max_sub_pools()
        } else {
            1
        };
        let hints: Vec<AtomicUsize> = (0..max_subs)
            .map(|_| AtomicUsize::new(usize::MAX))
            .collect();
        let table = Table::build(
            &first,
            &[Member {
                sub: core::ptr::null(),
                open: true,
            }],
        );
        let readers = crate::sync::default_areas().max(first.pool.areas());
        let counters = stats::Counters::new();
        counters.set_held(first_bytes);
        Self {
            fixed: backend.is_none(),
            grown: AtomicBool::new(false),
            watch: AtomicUsize::new(0),
            hints: hints.into_boxed_slice(),
            table: AtomicPtr::new(Box::into_raw(table)),
            generation: AtomicUsize::new(0),
            epoch: Epoch::new(readers, config.pool().own_area_hint()),
            waiters: Mutex::new(wait::WaitList::new()),
            grower: Mutex::new(grow::Grower::new(max_subs, first_bytes)),
            backend,
            config,
            granule,
            counters,
            first,
        }
    }

    /// The configuration (for a fixed pool: the one given, with its area hint).
    pub fn config(&self) -> &ElasticConfig {
        &self.config
    }

    /// Bytes in a slot (every region has the same).
    pub fn slot_size(&self) -> usize {
        self.first.pool.slot_size()
    }

    /// The page size of every region.
    pub fn page_size(&self) -> usize {
        self.first.pool.page_size()
    }

    /// The largest mapping [`try_map_attrs`](Self::try_map_attrs) accepts under
    /// `constraints` (the same in every region: [`Pool::max_mapping_size`]).
    pub fn max_mapping_size(&self, constraints: &crate::Constraints) -> usize {
        self.first.pool.max_mapping_size(constraints)
    }

    /// Whether the pool can add regions (it has a backend).
    pub fn can_grow(&self) -> bool {
        self.backend.is_some()
    }

    // --- the table ----------------------------------------------------------------------

    /// The current table, for as long as `guard` pins it.
    #[inline]
    fn table<'g>(&'g self, _guard: &'g epoch::Guard<'_>) -> &'g Table<R> {
        // SAFETY: the table pointer is always a live table (built by `Table::build`,
        // published with a SeqCst store), and a table unpublished after this load is freed
        // only after `synchronize`, which waits for `_guard`'s reader (epoch.rs).
        unsafe { &*self.table.load(Ordering::SeqCst) }
    }

    /// The sub-pool of a table entry, for as long as `guard` pins the table.
    #[inline]
    fn resolve<'g>(
        &'g self,
        _guard: &'g epoch::Guard<'_>,
        sub: *const SubPool<R>,
    ) -> &'g SubPool<R> {
        if sub.is_null() {
            &self.first
        } else {
            // SAFETY: a non-null entry is a sub-pool the grower owns; one removed from the
            // table is freed only after `synchronize` waits for `_guard`'s reader.
            unsafe { &*sub }
        }
    }

    /// Publishes `new` as the table and returns the old one. Writer only (growth lock).
    fn publish(&self, new: Box<Table<R>>) -> Box<Table<R>> {
        let grown = new.by_dma.len() > 1;
        // Before the table, so that whoever sees a grown table sees the flag.
        self.grown.store(grown, Ordering::Release);
        let old = self.table.swap(Box::into_raw(new), Ordering::SeqCst);
        self.generation.fetch_add(1, Ordering::Release);
        // SAFETY: `old` was published from `Box::into_raw` and is unpublished now; the
        // caller frees it only after `synchronize`.
        unsafe { Box::from_raw(old) }
    }

    /// Sum of (total, used) slots over the table's regions.
    fn totals(&self, guard: &epoch::Guard<'_>, table: &Table<R>) -> (usize, usize) {
        let (mut total, mut used) = (0, 0);
        for e in table.by_dma.iter() {
            let sub = self.resolve(guard, e.sub);
            total += sub.pool.total_slots();
            used += sub.pool.used_now();
            sub.track.read();
        }
        (total, used)
    }
}

impl<R: RawMutex> Drop for ElasticPool<R> {
    fn drop(&mut self) {
        // SAFETY: the pool is going away: no reader can hold anything, and the table was
        // published from `Box::into_raw`.
        let table = unsafe { Box::from_raw(self.table.load(Ordering::Relaxed)) };
        let backend = self.backend.as_deref();
        let mut grower = self.grower.lock();
        for (sub, _) in core::mem::take(&mut grower.subs) {
            // SAFETY: the grower owns every region it lists, from `Box::into_raw`, listed
            // once; nothing can reach it any more.
            let sub = unsafe { Box::from_raw(sub) };
            grower.give_back(backend, sub, &self.counters);
        }
        grower.retire_table(table);
        grower.drop_graveyard();
        drop(grower);
        if let (Some(range), Some(backend)) = (self.first.range, backend) {
            // SAFETY: the first region's range came from `share`; the pool over it does not
            // touch the region when dropped (right after this), and nothing else can.
            if unsafe { backend.unshare(range) }.is_err() {
                self.counters.leaked(range.size);
            }
        }
    }
}

impl<R: RawMutex> core::fmt::Debug for ElasticPool<R> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ElasticPool")
            .field("slot_size", &self.slot_size())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// `n` rounded up to a multiple of `granule` (a power of two), if that fits.
pub(crate) fn round_up(n: usize, granule: usize) -> Option<usize> {
    Some(n.checked_add(granule - 1)? & !(granule - 1))
}

/// The alignment a region of `size` bytes is asked with: a page (and the granule) at
/// least, and up to a segment, so that a region holds whole segments when it can (a
/// mapping of a whole segment then fits) and a small one is not over-aligned.
pub(crate) fn region_align(config: &ElasticConfig, granule: usize, size: usize) -> usize {
    let pool = config.pool();
    let segment = pool.slot_size().saturating_mul(pool.segment_slots());
    let natural = size.checked_next_power_of_two().unwrap_or(segment);
    natural.min(segment).max(pool.page_size()).max(granule)
}
