//! A test-and-test-and-set spin lock, the kind pvmfw guards its shared-memory allocator
//! with (`spin::Mutex`), for the [`pvmfw`](crate::pvmfw) baseline.
//!
//! pvmfw runs on vCPUs that nothing preempts while they hold it; the threads of a
//! benchmark can be. So that a preempted holder does not make the other thread burn its
//! whole time slice, a waiter yields to the scheduler every [`SPINS_PER_YIELD`] failed
//! looks. That only ever helps the baseline.

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, Ordering};

/// Looks at a held lock between two yields to the scheduler.
pub const SPINS_PER_YIELD: u32 = 256;

/// A value behind a spin lock.
#[derive(Debug, Default)]
pub struct SpinLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the lock hands out `&mut T` to one holder at a time (the `Acquire` swap that takes
// it pairs with the `Release` store that gives it back), so sharing the lock across threads
// shares `T` only as a `Mutex` would: `T: Send` suffices.
unsafe impl<T: Send> Sync for SpinLock<T> {}

impl<T> SpinLock<T> {
    /// `value` behind an unlocked lock.
    pub const fn new(value: T) -> Self {
        Self {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// Takes the lock, spinning (and now and then yielding) while another holds it.
    #[inline]
    pub fn lock(&self) -> SpinGuard<'_, T> {
        loop {
            if self
                .locked
                .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return SpinGuard { lock: self };
            }
            let mut spins = 0u32;
            while self.locked.load(Ordering::Relaxed) {
                core::hint::spin_loop();
                spins += 1;
                if spins.is_multiple_of(SPINS_PER_YIELD) {
                    std::thread::yield_now();
                }
            }
        }
    }
}

/// The holder's access to a [`SpinLock`]'s value; gives the lock back when dropped.
#[derive(Debug)]
pub struct SpinGuard<'a, T> {
    lock: &'a SpinLock<T>,
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: this guard holds the lock, so no other `&mut T` exists until it drops.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: this guard holds the lock and is borrowed mutably, so this is the only
        // reference to the value until it drops.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.locked.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_threads_never_hold_it_at_once() {
        let lock = SpinLock::new((0u64, 0u64));
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    for _ in 0..100_000 {
                        let mut g = lock.lock();
                        // Two writes a racing holder would tear apart.
                        g.0 += 1;
                        g.1 = g.0;
                    }
                });
            }
        });
        let g = lock.lock();
        assert_eq!(*g, (200_000, 200_000));
    }
}
