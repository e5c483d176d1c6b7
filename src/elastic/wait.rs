//! Maps that wait for room: a `Future` ([`ElasticPool::map_async`], `no_std` + `alloc`),
//! a blocking map with a caller's wait function ([`ElasticPool::map_wait_with`]) and with a
//! timeout ([`ElasticPool::map_wait`], `std`), all woken by unmaps, frees and growth; and
//! throttling.
//!
//! # No lost wake-up, and no cost to unmaps when nobody waits
//!
//! A waiter registers its `Waker` in the wait list (under the list's lock, which also
//! publishes the number of waiters), then takes and drops every area lock of every region
//! ([`order_after_releases`](crate::Pool)), then tries again, and only then returns
//! `Pending`. An unmap or free, after its release (which ends by dropping the area's lock),
//! reads the number of waiters, with no fence and no lock, and wakes the list only when it
//! is not zero.
//!
//! For a release in area `A`: either the waiter's pass over the locks took `A` after the
//! release dropped it, and then its second try sees the room; or the waiter dropped `A`
//! before the release took it, and then its registration happens before the release's
//! read, which sees a waiter and wakes it. Growth and the reopening of regions always wake
//! the list (under its lock, after publishing the table): a waiter registered before sees
//! the wake, one registered after sees the new table. The loom model
//! `waiter_racing_an_unmap_is_always_woken` checks every interleaving.
//!
//! Waking takes every registered waker out of the list and wakes them all (each tries
//! again and registers again if it still finds no room), outside the lock.

use super::{ElasticPool, THROTTLED, WAITING};
use crate::error::MapError;
use crate::request::{Attrs, Constraints, Direction, DmaAddr};
use crate::sync::{AtomicBool, Ordering, WakerArc};
use alloc::vec::Vec;
use core::future::Future;
use core::pin::Pin;
use core::ptr::NonNull;
use core::task::{Context, Poll, Waker};
use lock_api::RawMutex;

/// The registered waiters.
#[derive(Debug, Default)]
pub(crate) struct WaitList {
    next_id: u64,
    entries: Vec<(u64, Waker)>,
    /// A buffer for the next wake-up to swap in, so that waking allocates nothing.
    spare: Vec<(u64, Waker)>,
}

impl WaitList {
    pub(crate) fn new() -> Self {
        Self::default()
    }
}

impl<R: RawMutex> ElasticPool<R> {
    /// Registers (or refreshes) the waker of the waiter `id`.
    fn register(&self, id: &mut Option<u64>, waker: &Waker) {
        let mut list = self.waiters.lock();
        let known = id.and_then(|id| list.entries.iter_mut().find(|(i, _)| *i == id));
        match known {
            Some((_, w)) => {
                if !w.will_wake(waker) {
                    w.clone_from(waker);
                }
            }
            None => {
                let new = list.next_id;
                list.next_id += 1;
                list.entries.push((new, waker.clone()));
                *id = Some(new);
            }
        }
        self.watch.fetch_or(WAITING, Ordering::Relaxed);
    }

    /// Removes the waiter `id`, if it is still registered.
    fn deregister(&self, id: &mut Option<u64>) {
        if let Some(id) = id.take() {
            let mut list = self.waiters.lock();
            list.entries.retain(|(i, _)| *i != id);
            if list.entries.is_empty() {
                self.watch.fetch_and(!WAITING, Ordering::Relaxed);
            }
        }
    }

    /// Wakes every registered waiter (outside the list's lock).
    pub(super) fn wake_all(&self) {
        let mut batch = {
            let mut list = self.waiters.lock();
            let spare = core::mem::take(&mut list.spare);
            let batch = core::mem::replace(&mut list.entries, spare);
            self.watch.fetch_and(!WAITING, Ordering::Relaxed);
            batch
        };
        if batch.is_empty() {
            return;
        }
        for (_, waker) in batch.drain(..) {
            waker.wake();
        }
        let mut list = self.waiters.lock();
        if list.spare.capacity() < batch.capacity() {
            list.spare = batch;
        }
    }

    /// After a release that found waiters registered, or throttling on (`watch`, as the
    /// release read it).
    pub(super) fn wake_after_release(&self, watch: usize) {
        if watch & THROTTLED != 0 {
            if let Some((_, low)) = self.config.throttle() {
                if !self.above(low) {
                    self.watch.fetch_and(!THROTTLED, Ordering::Relaxed);
                    // Always through the list's lock, even with no waiter counted: a
                    // waiter registering now either sees the flag down or is woken.
                    self.wake_all();
                    return;
                }
            }
        }
        if watch & WAITING != 0 {
            self.wake_all();
        }
    }

    /// Whether use is at or above `percent` of the capacity (the ceiling for a pool that
    /// can grow, its one region otherwise).
    fn above(&self, percent: u8) -> bool {
        let capacity = if self.backend.is_some() {
            self.config.max_bytes() / self.slot_size()
        } else {
            self.first.pool.total_slots()
        };
        self.used_now().saturating_mul(100) >= capacity.saturating_mul(percent as usize)
    }

    /// After a waiting map succeeded: throttle if use reached the high watermark.
    fn check_high(&self) {
        let Some((high, low)) = self.config.throttle() else {
            return;
        };
        if self.watch.load(Ordering::Relaxed) & THROTTLED != 0 || !self.above(high) {
            return;
        }
        self.watch.fetch_or(THROTTLED, Ordering::Relaxed);
        // Releases that ran while the flag was down did not look at the watermark: order
        // ourselves after them and look again, so the flag is never left up with use
        // below the low watermark and nobody to lower it.
        self.order_after_releases();
        if !self.above(low) {
            self.watch.fetch_and(!THROTTLED, Ordering::Relaxed);
            self.wake_all();
        }
    }

    /// Takes and drops every area lock of every region (see the module docs).
    fn order_after_releases(&self) {
        let guard = self.epoch.pin();
        let table = self.table(&guard);
        for e in table.by_dma.iter() {
            let sub = self.resolve(&guard, e.sub);
            sub.pool.order_after_releases();
            sub.track.read();
        }
        table.track.read();
    }

    /// Maps `buf` when there is room: a future that tries at once, and otherwise waits to
    /// be woken by an unmap, a free or growth (it registers its waker; there is no
    /// polling). With throttling on, it also waits while use is at or above the high
    /// watermark, until it falls below the low one. Dropping the future gives up (nothing
    /// stays mapped or registered).
    ///
    /// Runs on any executor, `no_std` included. Each try is a
    /// [`try_map_attrs`](Self::try_map_attrs), so the pool grows first when it may.
    ///
    /// # Safety
    ///
    /// As [`Pool::map`](crate::Pool::map), from this call: `buf` is valid from now until
    /// the mapping the future returns is unmapped (or the future is dropped without
    /// returning one).
    pub unsafe fn map_async(
        &self,
        buf: NonNull<[u8]>,
        dir: Direction,
        constraints: &Constraints,
        attrs: Attrs,
    ) -> MapFuture<'_, R> {
        MapFuture {
            pool: self,
            buf,
            dir,
            constraints: *constraints,
            attrs,
            id: None,
            last: None,
            waited: false,
            throttled: false,
            done: false,
        }
    }

    /// Maps `buf`, waiting for room as [`map_async`](Self::map_async) does, on the calling
    /// thread: whenever it must wait it calls `wait`, which returns once the [`Wakeup`] is
    /// woken (or earlier: the map then tries again) and returns `false` to give up. For
    /// `no_std` callers without an executor: `wait` can spin, halt the CPU until an
    /// interrupt, or count time on a platform timer.
    ///
    /// Returns the address and whether it waited.
    ///
    /// # Errors
    ///
    /// As [`try_map_attrs`](Self::try_map_attrs); `Full` once `wait` gives up. A throttled
    /// map that gives up makes one last try first, so it fails only when the pool really
    /// has no room.
    ///
    /// # Safety
    ///
    /// As [`Pool::map`](crate::Pool::map).
    pub unsafe fn map_wait_with(
        &self,
        buf: NonNull<[u8]>,
        dir: Direction,
        constraints: &Constraints,
        attrs: Attrs,
        mut wait: impl FnMut(&Wakeup) -> bool,
    ) -> Result<(DmaAddr, bool), MapError> {
        let wakeup = Wakeup::new();
        let waker = Waker::from(wakeup.flag.clone());
        let mut cx = Context::from_waker(&waker);
        // SAFETY: the caller's promise, passed on.
        let mut future = unsafe { self.map_async(buf, dir, constraints, attrs) };
        loop {
            wakeup.flag.woken.store(false, Ordering::Relaxed);
            if let Poll::Ready(r) = Pin::new(&mut future).poll(&mut cx) {
                return r.map(|dma| (dma, future.waited));
            }
            if !wait(&wakeup) {
                return future.give_up().map(|dma| (dma, true));
            }
        }
    }

    /// Maps `buf`, waiting up to `timeout` for room as [`map_async`](Self::map_async)
    /// does: the thread parks until an unmap, a free or growth wakes it (no polling).
    /// Returns the address and whether it waited.
    ///
    /// # Errors
    ///
    /// As [`map_wait_with`](Self::map_wait_with), `Full` after `timeout`.
    ///
    /// # Safety
    ///
    /// As [`Pool::map`](crate::Pool::map).
    #[cfg(feature = "std")]
    pub unsafe fn map_wait(
        &self,
        buf: NonNull<[u8]>,
        dir: Direction,
        constraints: &Constraints,
        attrs: Attrs,
        timeout: core::time::Duration,
    ) -> Result<(DmaAddr, bool), MapError> {
        let deadline = std::time::Instant::now().checked_add(timeout);
        let wait = |w: &Wakeup| {
            let left = match deadline {
                Some(d) => d.saturating_duration_since(std::time::Instant::now()),
                None => core::time::Duration::MAX,
            };
            if left.is_zero() {
                return false;
            }
            if !w.is_woken() {
                std::thread::park_timeout(left);
            }
            true
        };
        // SAFETY: the caller's promise, passed on.
        unsafe { self.map_wait_with(buf, dir, constraints, attrs, wait) }
    }
}

// === impl Wakeup ===

/// What a waiting map is woken through: given to the wait function of
/// [`ElasticPool::map_wait_with`]. Clones watch the same wake-up.
#[derive(Clone, Debug)]
pub struct Wakeup {
    flag: WakerArc<Flag>,
}

#[derive(Debug)]
struct Flag {
    woken: AtomicBool,
    /// With `std`, the waiting thread, unparked by a wake.
    #[cfg(feature = "std")]
    thread: std::thread::Thread,
}

impl Wakeup {
    fn new() -> Self {
        Self {
            flag: WakerArc::new(Flag {
                woken: AtomicBool::new(false),
                #[cfg(feature = "std")]
                thread: std::thread::current(),
            }),
        }
    }

    /// Whether an unmap, free or growth has woken the map since it last tried.
    pub fn is_woken(&self) -> bool {
        self.flag.woken.load(Ordering::Acquire)
    }
}

impl alloc::task::Wake for Flag {
    fn wake(self: WakerArc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &WakerArc<Self>) {
        self.woken.store(true, Ordering::Release);
        #[cfg(feature = "std")]
        self.thread.unpark();
    }
}

// === impl MapFuture ===

/// A map waiting for room: [`ElasticPool::map_async`]. Resolves to the device address, or
/// to an error waiting cannot cure (a zero length, a size over the maximum, a buffer in the
/// pool, constraints no region can meet...). Polled again after that, it stays pending
/// and maps nothing.
#[must_use = "a future does nothing unless polled"]
#[derive(Debug)]
pub struct MapFuture<'a, R: RawMutex> {
    pool: &'a ElasticPool<R>,
    buf: NonNull<[u8]>,
    dir: Direction,
    constraints: Constraints,
    attrs: Attrs,
    /// Our entry in the wait list, if registered.
    id: Option<u64>,
    /// The last `Full` (for the error when the caller gives up).
    last: Option<MapError>,
    waited: bool,
    throttled: bool,
    /// It returned `Ready`: polled again, it stays pending and maps nothing.
    done: bool,
}

// SAFETY: the future holds the caller's buffer pointer under `map_async`'s contract, which
// lends the buffer to the map wherever it runs (as `Pool::map` does for any thread); the
// pool reference is `Send` when the pool is `Sync`.
unsafe impl<R: RawMutex + Sync> Send for MapFuture<'_, R> {}

impl<R: RawMutex> MapFuture<'_, R> {
    /// One try, unless throttled. `Ready` with a result, or `None` to go on waiting.
    fn attempt(&mut self) -> Option<Result<DmaAddr, MapError>> {
        let pool = self.pool;
        if pool.watch.load(Ordering::Relaxed) & THROTTLED != 0 {
            if !self.throttled {
                self.throttled = true;
                pool.counters.throttled_wait();
            }
            return None;
        }
        // SAFETY: `map_async`'s caller lent `buf` for this map.
        match unsafe { pool.try_map_attrs(self.buf, self.dir, &self.constraints, self.attrs) } {
            Ok(dma) => {
                pool.check_high();
                Some(Ok(dma))
            }
            Err(e @ MapError::Full { .. }) => {
                self.last = Some(e);
                None
            }
            Err(e) => Some(Err(e)),
        }
    }

    /// The caller gives up. If throttling held every try back, one last ordinary try
    /// (throttling delays maps, it does not fail them); otherwise the last `Full`.
    fn give_up(&mut self) -> Result<DmaAddr, MapError> {
        self.pool.deregister(&mut self.id);
        let r = match self.last {
            Some(e) => Err(e),
            // SAFETY: as in `attempt`.
            None => unsafe {
                self.pool
                    .try_map_attrs(self.buf, self.dir, &self.constraints, self.attrs)
            },
        };
        if r.is_err() {
            self.pool.counters.timed_out();
        }
        r
    }
}

impl<R: RawMutex> Future for MapFuture<'_, R> {
    type Output = Result<DmaAddr, MapError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if this.done {
            // Polled after completion: a second mapping would be one nobody unmaps.
            return Poll::Pending;
        }
        if let Some(r) = this.attempt() {
            this.pool.deregister(&mut this.id);
            this.done = true;
            return Poll::Ready(r);
        }
        // Register, order ourselves after every release so far, and look again: a release
        // we do not see now will see us (module docs).
        this.pool.register(&mut this.id, cx.waker());
        this.pool.order_after_releases();
        if let Some(r) = this.attempt() {
            this.pool.deregister(&mut this.id);
            this.done = true;
            return Poll::Ready(r);
        }
        if !this.waited {
            this.waited = true;
            this.pool.counters.waited();
        }
        Poll::Pending
    }
}

impl<R: RawMutex> Drop for MapFuture<'_, R> {
    fn drop(&mut self) {
        self.pool.deregister(&mut self.id);
    }
}
