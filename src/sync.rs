//! The only place that names atomics, locks or spin hints.
//!
//! Locks are `lock_api` mutexes over a raw lock `R` the pool is generic over, so that a
//! `no_std` user can bring one that is safe in their context (one that masks interrupts,
//! say). [`DefaultRawMutex`] is `parking_lot`'s with `std` and [`SpinRawMutex`] (a
//! test-and-test-and-set spin lock with exponential backoff) without.
//!
//! Under `--cfg loom`, the atomics and the mutex are loom's (whatever `R` is), so the
//! models in `src/tests/` explore the interleavings of the real code.
//!
//! Every back end offers the same small surface: `Mutex::new`, `Mutex::lock`,
//! `Mutex::try_lock` (guards deref to the data) and the atomic types.
//! [`shared_atomics`] is apart: core's atomics in every back end, for pool memory.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{
    AtomicBool, AtomicPtr, AtomicU16, AtomicU32, AtomicU8, AtomicUsize, Ordering,
};

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{
    AtomicBool, AtomicPtr, AtomicU16, AtomicU32, AtomicU8, AtomicUsize, Ordering,
};

/// The reference count behind a `Waker` made with `alloc::task::Wake`: `alloc`'s `Arc` in
/// every back end (a `Waker` can only be made from that one; loom's executor brings its
/// own wakers to the models).
pub(crate) use alloc::sync::Arc as WakerArc;

/// Where the elastic pool's reader protocol relies on the single total order of `SeqCst`
/// accesses (a store-buffering pair: a reader's counter increment then its loads, a
/// writer's stores then its counter loads), the real build uses `SeqCst` accesses, which
/// C11 totally orders, and needs nothing more. loom treats `SeqCst` accesses as `AcqRel`
/// (its README, "Unsupported features") but does model `fence(SeqCst)`, so under
/// `--cfg loom` this is that fence, placed where the accesses need the total order: what
/// loom checks is at least as strong as what runs, and the argument for the `SeqCst`
/// accesses is in `elastic/epoch.rs`.
#[inline(always)]
pub(crate) fn seq_cst_point() {
    #[cfg(loom)]
    loom::sync::atomic::fence(Ordering::SeqCst);
}

pub(crate) use self::mutex::{Mutex, MutexGuard};

/// The lock a pool uses when none is named: `parking_lot`'s (spins briefly, then parks the
/// thread) with `std`, [`SpinRawMutex`] without.
#[cfg(feature = "std")]
pub type DefaultRawMutex = parking_lot::RawMutex;

/// The lock a pool uses when none is named: `parking_lot`'s (spins briefly, then parks the
/// thread) with `std`, [`SpinRawMutex`] without.
#[cfg(not(feature = "std"))]
pub type DefaultRawMutex = SpinRawMutex;

/// Atomics for memory shared with a device: `core`'s, in every back end, loom included.
///
/// [`crate::shared`] views raw pool bytes as atomics (`AtomicU8::from_ptr`), which loom's
/// atomics cannot do: they are objects of their own that record their history, not views of
/// existing memory. Nor would loom have anything to model: a device's writes are outside
/// every model, and the models check the crate's metadata, never the bytes in the pool. So
/// under `--cfg loom` the copies still run on `core`'s atomics (or assembly), outside the
/// model, like a memcpy would.
pub(crate) mod shared_atomics {
    #[cfg_attr(miri, allow(unused_imports))] // Under Miri the copies go byte by byte.
    pub(crate) use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
}

/// Tells the scheduler (loom's, or the CPU) that this thread is waiting on another.
#[inline]
#[allow(dead_code)] // Only the spin lock and the loom models wait.
pub(crate) fn spin_hint() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    core::hint::spin_loop();
}

// === impl TrackCell ===

/// A marker for memory that one party frees while others may still read it: the elastic
/// pool's sub-pools and tables. Readers call [`read`](TrackCell::read) when done with the
/// object; the reclaimer calls [`free`](TrackCell::free) just before freeing it.
///
/// In a real build it is empty and both calls compile to nothing. Under `--cfg loom` it is
/// a loom `UnsafeCell` holding "freed": `read` is an immutable access that asserts the
/// object was not freed, `free` a mutable access that records it. loom fails a model in
/// which a reader's access is not ordered before the free (a concurrent read and write),
/// and the assertion fails one in which a read is ordered after it. Either would be a
/// use-after-free in the real build. (Under loom the objects are also kept until the pool
/// is dropped, so such a model fails on the check, not on freed memory.)
#[derive(Debug, Default)]
pub(crate) struct TrackCell {
    #[cfg(loom)]
    freed: loom::cell::UnsafeCell<bool>,
}

// SAFETY: under loom the cell is shared on purpose: every access goes through loom's
// `with` / `with_mut`, which check the accesses against each other and fail the model on a
// race instead of committing it. (Without loom the struct is empty, and `Sync` anyway.)
#[cfg(loom)]
unsafe impl Sync for TrackCell {}

impl TrackCell {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// A reader's use of the object: call it after the last access.
    #[inline(always)]
    pub(crate) fn read(&self) {
        #[cfg(loom)]
        self.freed.with(|freed| {
            // SAFETY: loom checked that no write to the cell is concurrent with this read.
            assert!(!unsafe { *freed }, "use after free of a retired object");
        });
    }

    /// The reclaimer, just before the object is freed.
    #[inline(always)]
    pub(crate) fn free(&self) {
        #[cfg(loom)]
        self.freed.with_mut(|freed| {
            // SAFETY: loom checked that every read of the cell happened before this write.
            unsafe { *freed = true };
        });
    }
}

/// A number no other pool of this program has had: what ties a
/// [`Coherent`](crate::Coherent) handle to the pool that made it. Core's atomics even under
/// loom: the models build their pools outside the threads they explore.
pub(crate) fn next_pool_id() -> usize {
    static NEXT: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(1);
    NEXT.fetch_add(1, core::sync::atomic::Ordering::Relaxed)
}

// === impl SpinRawMutex ===

/// A test-and-test-and-set spin lock, the default without `std`.
///
/// Waiters spin on a plain load (so the line stays shared while the lock is held) and back
/// off exponentially between attempts (`crossbeam_utils::Backoff`). There is no fairness
/// and no parking: a pool holds an area's lock for a bitmap search and a few stores, never
/// across a copy.
///
/// It does not mask interrupts. If an interrupt handler may map or unmap on a CPU that can
/// be holding the same pool's lock (a completion handler calling `unmap`, say), that CPU
/// deadlocks; give such a pool a lock that disables interrupts while held, through
/// [`Pool::with_raw_mutex`](crate::Pool::with_raw_mutex) and your own
/// [`lock_api::RawMutex`].
#[derive(Debug)]
pub struct SpinRawMutex {
    locked: core::sync::atomic::AtomicBool,
}

// SAFETY: `lock` and `try_lock` return only once this context holds the flag (a successful
// Acquire compare-exchange from false to true), so at most one context holds the lock at a
// time; `unlock` (whose caller holds it) releases it with a Release store, ordering the
// critical section before the next acquisition.
unsafe impl lock_api::RawMutex for SpinRawMutex {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = Self {
        locked: core::sync::atomic::AtomicBool::new(false),
    };

    type GuardMarker = lock_api::GuardSend;

    #[inline]
    fn lock(&self) {
        let backoff = crossbeam_utils::Backoff::new();
        while !self.try_lock() {
            while self.locked.load(core::sync::atomic::Ordering::Relaxed) {
                backoff.snooze();
            }
        }
    }

    #[inline]
    fn try_lock(&self) -> bool {
        use core::sync::atomic::Ordering::{Acquire, Relaxed};
        self.locked
            .compare_exchange(false, true, Acquire, Relaxed)
            .is_ok()
    }

    #[inline]
    unsafe fn unlock(&self) {
        self.locked
            .store(false, core::sync::atomic::Ordering::Release);
    }
}

#[cfg(loom)]
mod mutex {
    use core::marker::PhantomData;
    use core::ops::{Deref, DerefMut};
    use loom::sync::atomic::{AtomicUsize, Ordering};

    /// loom's mutex behind the crate's mutex API; the pool's lock type `R` is ignored, so
    /// that loom sees every acquisition.
    #[derive(Debug)]
    pub(crate) struct Mutex<R, T> {
        inner: loom::sync::Mutex<T>,
        /// Touched after every acquire and release, only so that loom explores the window
        /// between one thread's unlock and its next step: loom 0.7 does not treat a release
        /// as a point where another thread may run first.
        epoch: AtomicUsize,
        _lock: PhantomData<fn() -> R>,
    }

    /// A held [`Mutex`]; unlocks on drop.
    #[derive(Debug)]
    pub(crate) struct MutexGuard<'a, R, T> {
        guard: Option<loom::sync::MutexGuard<'a, T>>,
        epoch: &'a AtomicUsize,
        _lock: PhantomData<fn() -> R>,
    }

    impl<R, T> Mutex<R, T> {
        pub(crate) fn new(value: T) -> Self {
            Self {
                inner: loom::sync::Mutex::new(value),
                epoch: AtomicUsize::new(0),
                _lock: PhantomData,
            }
        }

        pub(crate) fn lock(&self) -> MutexGuard<'_, R, T> {
            // A poisoned lock means a model thread panicked: the model has failed already.
            let guard = self.inner.lock().expect("a loom model thread panicked");
            self.epoch.fetch_add(1, Ordering::Relaxed);
            MutexGuard {
                guard: Some(guard),
                epoch: &self.epoch,
                _lock: PhantomData,
            }
        }

        pub(crate) fn try_lock(&self) -> Option<MutexGuard<'_, R, T>> {
            let guard = self.inner.try_lock().ok()?;
            self.epoch.fetch_add(1, Ordering::Relaxed);
            Some(MutexGuard {
                guard: Some(guard),
                epoch: &self.epoch,
                _lock: PhantomData,
            })
        }
    }

    impl<R, T> Deref for MutexGuard<'_, R, T> {
        type Target = T;

        fn deref(&self) -> &T {
            self.guard.as_ref().expect("the guard is held until drop")
        }
    }

    impl<R, T> DerefMut for MutexGuard<'_, R, T> {
        fn deref_mut(&mut self) -> &mut T {
            self.guard.as_mut().expect("the guard is held until drop")
        }
    }

    impl<R, T> Drop for MutexGuard<'_, R, T> {
        fn drop(&mut self) {
            drop(self.guard.take());
            self.epoch.load(Ordering::Relaxed);
        }
    }
}

#[cfg(not(loom))]
mod mutex {
    /// The pool's raw lock `R` around a value: `lock_api`'s mutex.
    pub(crate) type Mutex<R, T> = lock_api::Mutex<R, T>;

    /// A held [`Mutex`]; unlocks on drop.
    pub(crate) type MutexGuard<'a, R, T> = lock_api::MutexGuard<'a, R, T>;
}

/// The default area hint: a number of the calling thread's own (given out in turn, so
/// threads spread over the areas), or 0 where there are no threads to tell apart.
#[inline]
pub(crate) fn thread_hint() -> usize {
    #[cfg(all(feature = "std", not(loom)))]
    {
        use core::cell::Cell;
        static NEXT: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);
        std::thread_local! {
            // Given out on first use; a constant initialiser, so that reading it is one
            // load (a lazily initialised thread-local checks its state on every access).
            static HINT: Cell<usize> = const { Cell::new(usize::MAX) };
        }
        HINT.with(|hint| match hint.get() {
            usize::MAX => {
                let new =
                    NEXT.fetch_add(1, core::sync::atomic::Ordering::Relaxed) & (usize::MAX >> 1);
                hint.set(new);
                new
            }
            known => known,
        })
    }
    #[cfg(not(all(feature = "std", not(loom))))]
    {
        0
    }
}

/// The default number of areas before rounding: one per CPU where that is known.
pub(crate) fn default_areas() -> usize {
    #[cfg(all(feature = "std", not(loom)))]
    {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
    #[cfg(not(all(feature = "std", not(loom))))]
    {
        1
    }
}
