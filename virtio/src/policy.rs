//! What `Hal::share` does when the pool is full: it cannot return an error.

use core::time::Duration;
use swiotlb::Wakeup;

/// What a share does when the pool has no room and cannot grow: wait until an unmap or a
/// free (on another thread, or an interrupt handler) makes some, for at most
/// [`max_wait`](Self::max_wait) in all, then panic with the pool's figures.
///
/// The wait is the pool's own ([`ElasticPool::map_wait_with`](swiotlb::ElasticPool::map_wait_with)):
/// the share registers with the pool and is woken by the release that makes room (or by
/// growth), with no polling. Between wake-ups it is in [`park`](Self::park): with `std`
/// the thread parks (woken at once by the release); without, it spins on the wake-up
/// (uncalibrated, about 10 ns a `spin_loop` hint), and a platform with a timer or a
/// wait-for-interrupt instruction should give its own.
///
/// Waiting helps only when another thread (another CPU's driver, an interrupt handler
/// completing requests) will unshare something meanwhile. A driver alone on a full pool
/// cannot free anything while it waits, and will panic after `max_wait`; size the pool for
/// the requests a device can have in flight, or give it a backend to grow from.
///
/// `virtio-drivers` shares a request's buffers one at a time, so two threads that each hold
/// part of a request while waiting for room for the rest can both wait out `max_wait`
/// (hold and wait). Waiting is safe when every request is one buffer, or when the pool can
/// hold every submitting thread's largest request at once; otherwise prefer
/// [`map_sg`](crate::map_sg), which maps a whole list or nothing.
///
/// # Examples
///
/// ```
/// use core::time::Duration;
/// use swiotlb_virtio::FullPolicy;
/// // Give up at once: for single-threaded firmware, where no one else can free room.
/// let strict = FullPolicy::PANIC;
/// // Up to 2 s.
/// let patient = FullPolicy::wait(Duration::from_secs(2));
/// assert_eq!(patient.max_wait, Duration::from_secs(2));
/// # let _ = strict;
/// ```
#[derive(Clone, Copy, Debug)]
pub struct FullPolicy {
    /// Most total wait before giving up (`Duration::ZERO`: panic on the first failure).
    pub max_wait: Duration,
    /// Waits until the [`Wakeup`] is woken, or for at most the given time, and returns how
    /// long it waited (an estimate is fine: it is what the bound counts).
    pub park: fn(&Wakeup, Duration) -> Duration,
}

impl FullPolicy {
    /// Wait up to one second.
    pub const DEFAULT: Self = Self::wait(Duration::from_secs(1));

    /// Panic on the first failure, without waiting.
    pub const PANIC: Self = Self::wait(Duration::ZERO);

    /// Wait up to `max_wait` with the default [`park`](Self::park) (the thread parks with
    /// `std`, spins without).
    pub const fn wait(max_wait: Duration) -> Self {
        Self {
            max_wait,
            park: default_park,
        }
    }

    /// Sets the function that waits between tries.
    pub const fn park_with(mut self, park: fn(&Wakeup, Duration) -> Duration) -> Self {
        self.park = park;
        self
    }

    /// The wait function a waiting map calls: parks until woken or the bound is spent,
    /// adding up the time in `waited`; `false` (give up) once it is.
    pub(crate) fn waiter<'a>(
        &'a self,
        waited: &'a mut Duration,
    ) -> impl FnMut(&Wakeup) -> bool + 'a {
        move |wakeup| {
            let left = self.max_wait.saturating_sub(*waited);
            if left.is_zero() {
                return false;
            }
            // At least a nanosecond a round, so that a park that returns at once (a wake-up
            // that came early) still spends the bound.
            *waited += (self.park)(wakeup, left).max(Duration::from_nanos(1));
            true
        }
    }
}

impl Default for FullPolicy {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Parks the thread until woken (the waking release unparks it) or `most` has passed.
#[cfg(feature = "std")]
fn default_park(wakeup: &Wakeup, most: Duration) -> Duration {
    let start = std::time::Instant::now();
    while !wakeup.is_woken() {
        let spent = start.elapsed();
        if spent >= most {
            break;
        }
        std::thread::park_timeout(most - spent);
    }
    start.elapsed()
}

/// Spins until woken or about `most` has passed (uncalibrated: about 10 ns a hint).
#[cfg(not(feature = "std"))]
fn default_park(wakeup: &Wakeup, most: Duration) -> Duration {
    let rounds = most.as_nanos().div_ceil(10).min(u64::MAX as u128) as u64;
    for spun in 0..rounds {
        if wakeup.is_woken() {
            return Duration::from_nanos(spun.saturating_mul(10));
        }
        core::hint::spin_loop();
    }
    most
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::cell::Cell;

    std::thread_local!(static PARKS: Cell<u32> = const { Cell::new(0) });

    /// Parks for 20 us of pretend time, woken or not.
    fn twenty(_: &Wakeup, most: Duration) -> Duration {
        PARKS.with(|p| p.set(p.get() + 1));
        most.min(Duration::from_micros(20))
    }

    #[test]
    fn gives_up_once_the_bound_is_spent() {
        let policy = FullPolicy::wait(Duration::from_micros(70)).park_with(twenty);
        let mut waited = Duration::ZERO;
        let wakeup = swiotlb_wakeup();
        let mut wait = policy.waiter(&mut waited);
        // 20 + 20 + 20 + 10 = 70: four parks, then give up.
        let rounds = core::iter::from_fn(|| wait(&wakeup).then_some(())).count();
        drop(wait);
        assert_eq!(rounds, 4);
        assert_eq!(PARKS.with(Cell::get), 4);
        assert_eq!(waited, Duration::from_micros(70));
    }

    #[test]
    fn panic_policy_never_parks() {
        let policy = FullPolicy::PANIC.park_with(twenty);
        let mut waited = Duration::ZERO;
        assert!(!policy.waiter(&mut waited)(&swiotlb_wakeup()));
        assert_eq!(PARKS.with(Cell::get), 0);
    }

    /// A `Wakeup` as a waiting map hands it out (its only constructor is the pool's).
    fn swiotlb_wakeup() -> Wakeup {
        use core::ptr::NonNull;
        use swiotlb::{Attrs, Config, Constraints, Direction, ElasticPool, Pool};
        let pool = ElasticPool::fixed(Pool::allocate(4096, Config::new()).unwrap());
        let mut hog = [0u8; 4096];
        let mut buf = [0u8; 1];
        // SAFETY: both buffers outlive their mappings (unmapped below).
        let dma = unsafe {
            pool.try_map(
                NonNull::from(&mut hog[..]),
                Direction::ToDevice,
                &Constraints::NONE,
            )
        }
        .unwrap();
        let mut out = None;
        // SAFETY: as above; the map never succeeds (the wait gives up at once).
        let r = unsafe {
            pool.map_wait_with(
                NonNull::from(&mut buf[..]),
                Direction::ToDevice,
                &Constraints::NONE,
                Attrs::NONE,
                |w| {
                    out = Some(w.clone());
                    false
                },
            )
        };
        assert!(r.is_err());
        // SAFETY: the live mapping of `hog`.
        unsafe { pool.unmap(dma, 4096, Direction::ToDevice, Attrs::NONE) }.unwrap();
        out.expect("the map waited")
    }
}
