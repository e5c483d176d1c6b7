//! The only place that names atomics, locks or spin hints.
//!
//! Three back ends, chosen at compile time:
//! - `--cfg loom`: loom's atomics and mutex, so the models in `src/tests/` explore every
//!   interleaving of the real code;
//! - feature `std`: `core` atomics and `parking_lot`'s mutex (spins briefly, then parks);
//! - neither: `core` atomics and a test-and-test-and-set spin lock that backs off with
//!   `crossbeam_utils::Backoff`.
//!
//! Every back end offers the same small surface: [`Mutex::new`], [`Mutex::lock`],
//! [`Mutex::try_lock`] (guards deref to the data) and the atomic integer types.
//! [`shared_atomics`] is apart: core's atomics in every back end, for pool memory.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU16, AtomicU32, AtomicUsize, Ordering};

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{AtomicU16, AtomicU32, AtomicUsize, Ordering};

pub(crate) use self::mutex::{Mutex, MutexGuard};

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

#[cfg(loom)]
mod mutex {
    use core::ops::{Deref, DerefMut};
    use loom::sync::atomic::{AtomicUsize, Ordering};

    /// loom's mutex behind the crate's mutex API.
    #[derive(Debug)]
    pub(crate) struct Mutex<T> {
        inner: loom::sync::Mutex<T>,
        /// Touched after every acquire and release, only so that loom explores the window
        /// between one thread's unlock and its next step: loom 0.7 does not treat a release
        /// as a point where another thread may run first.
        epoch: AtomicUsize,
    }

    /// A held [`Mutex`]; unlocks on drop.
    #[derive(Debug)]
    pub(crate) struct MutexGuard<'a, T> {
        guard: Option<loom::sync::MutexGuard<'a, T>>,
        epoch: &'a AtomicUsize,
    }

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Self {
            Self {
                inner: loom::sync::Mutex::new(value),
                epoch: AtomicUsize::new(0),
            }
        }

        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            // A poisoned lock means a model thread panicked: the model has failed already.
            let guard = self.inner.lock().expect("a loom model thread panicked");
            self.epoch.fetch_add(1, Ordering::Relaxed);
            MutexGuard {
                guard: Some(guard),
                epoch: &self.epoch,
            }
        }

        pub(crate) fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
            let guard = self.inner.try_lock().ok()?;
            self.epoch.fetch_add(1, Ordering::Relaxed);
            Some(MutexGuard {
                guard: Some(guard),
                epoch: &self.epoch,
            })
        }
    }

    impl<T> Deref for MutexGuard<'_, T> {
        type Target = T;

        fn deref(&self) -> &T {
            self.guard.as_ref().expect("the guard is held until drop")
        }
    }

    impl<T> DerefMut for MutexGuard<'_, T> {
        fn deref_mut(&mut self) -> &mut T {
            self.guard.as_mut().expect("the guard is held until drop")
        }
    }

    impl<T> Drop for MutexGuard<'_, T> {
        fn drop(&mut self) {
            drop(self.guard.take());
            self.epoch.load(Ordering::Relaxed);
        }
    }
}

#[cfg(all(not(loom), feature = "std"))]
mod mutex {
    /// parking_lot's mutex behind the crate's mutex API.
    #[derive(Debug)]
    pub(crate) struct Mutex<T>(parking_lot::Mutex<T>);

    pub(crate) type MutexGuard<'a, T> = parking_lot::MutexGuard<'a, T>;

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Self {
            Self(parking_lot::Mutex::new(value))
        }

        #[inline]
        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            self.0.lock()
        }

        #[inline]
        pub(crate) fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
            self.0.try_lock()
        }
    }
}

#[cfg(all(not(loom), not(feature = "std")))]
mod mutex {
    use core::cell::UnsafeCell;
    use core::ops::{Deref, DerefMut};
    use core::sync::atomic::{AtomicBool, Ordering};
    use crossbeam_utils::Backoff;

    /// A test-and-test-and-set spin lock for `no_std` builds.
    ///
    /// Waiters spin on a plain load (so the line stays shared while the lock is held) and back
    /// off exponentially between attempts. There is no fairness and no parking: the areas it
    /// guards are held for a bitmap search and a few stores, never across a copy.
    #[derive(Debug)]
    pub(crate) struct Mutex<T> {
        locked: AtomicBool,
        value: UnsafeCell<T>,
    }

    // SAFETY: the lock hands out access to `value` to one thread at a time (acquire on lock,
    // release on unlock), so sharing the mutex is as safe as sending the value.
    unsafe impl<T: Send> Sync for Mutex<T> {}
    // SAFETY: the mutex owns its value; moving it moves the value.
    unsafe impl<T: Send> Send for Mutex<T> {}

    /// Proof of holding a [`Mutex`]; unlocks on drop.
    #[derive(Debug)]
    pub(crate) struct MutexGuard<'a, T> {
        mutex: &'a Mutex<T>,
    }

    impl<T> Mutex<T> {
        pub(crate) const fn new(value: T) -> Self {
            Self {
                locked: AtomicBool::new(false),
                value: UnsafeCell::new(value),
            }
        }

        #[inline]
        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            let backoff = Backoff::new();
            loop {
                if let Some(guard) = self.try_lock() {
                    return guard;
                }
                while self.locked.load(Ordering::Relaxed) {
                    backoff.snooze();
                }
            }
        }

        #[inline]
        pub(crate) fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
            self.locked
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .ok()
                .map(|_| MutexGuard { mutex: self })
        }
    }

    impl<T> Deref for MutexGuard<'_, T> {
        type Target = T;

        fn deref(&self) -> &T {
            // SAFETY: a guard exists only while `locked` is held by this thread (set by the
            // successful compare-exchange in `try_lock`), so no other reference to the value
            // exists.
            unsafe { &*self.mutex.value.get() }
        }
    }

    impl<T> DerefMut for MutexGuard<'_, T> {
        fn deref_mut(&mut self) -> &mut T {
            // SAFETY: as in `deref`; `&mut self` makes this the only use of the guard.
            unsafe { &mut *self.mutex.value.get() }
        }
    }

    impl<T> Drop for MutexGuard<'_, T> {
        fn drop(&mut self) {
            self.mutex.locked.store(false, Ordering::Release);
        }
    }
}

/// The default area hint: a number of the calling thread's own (given out in turn, so
/// threads spread over the areas), or 0 where there are no threads to tell apart.
pub(crate) fn thread_hint() -> usize {
    #[cfg(all(feature = "std", not(loom)))]
    {
        static NEXT: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);
        std::thread_local! {
            static HINT: usize = NEXT.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        }
        HINT.with(|hint| *hint)
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
