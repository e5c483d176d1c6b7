//! What `Hal::share` does when the pool is full: it cannot return an error.

use core::time::Duration;

/// What a share does when the pool has no room: wait for other threads to free some, with
/// exponential backoff, for at most [`max_wait`](Self::max_wait), then panic with the pool's
/// figures.
///
/// The bound is the sum of the pauses asked of [`pause`](Self::pause), so real time is
/// bounded as well as `pause` keeps time: with `std` the default sleeps; without it the
/// default spins (uncalibrated, about 10 ns a `spin_loop` hint), and a platform with a timer
/// should give its own.
///
/// Waiting helps only when another thread (another CPU's driver, an interrupt handler
/// completing requests) will unshare something meanwhile. A driver alone on a full pool
/// cannot free anything while it waits, and will panic after `max_wait`; size the pool for
/// the requests a device can have in flight (see the README's sizing notes).
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
/// // Up to 2 s, pausing 50 us at first and at most 5 ms at a time.
/// let patient = FullPolicy::wait(Duration::from_secs(2))
///     .pauses(Duration::from_micros(50), Duration::from_millis(5));
/// assert_eq!(patient.max_wait, Duration::from_secs(2));
/// # let _ = strict;
/// ```
#[derive(Clone, Copy, Debug)]
pub struct FullPolicy {
    /// Most total pause before giving up (`Duration::ZERO`: panic on the first failure).
    pub max_wait: Duration,
    /// The first pause; each later one doubles, up to `max_pause`.
    pub first_pause: Duration,
    /// The longest single pause.
    pub max_pause: Duration,
    /// Waits (at least) the given time.
    pub pause: fn(Duration),
}

impl FullPolicy {
    /// Wait up to one second, pausing 10 us at first and at most 1 ms at a time.
    pub const DEFAULT: Self = Self::wait(Duration::from_secs(1));

    /// Panic on the first failure, without waiting.
    pub const PANIC: Self = Self::wait(Duration::ZERO);

    /// Wait up to `max_wait`, pausing 10 us at first and at most 1 ms at a time, with the
    /// default pause (sleep with `std`, spin without).
    pub const fn wait(max_wait: Duration) -> Self {
        Self {
            max_wait,
            first_pause: Duration::from_micros(10),
            max_pause: Duration::from_millis(1),
            pause: default_pause,
        }
    }

    /// Sets the first and the longest pause.
    pub const fn pauses(mut self, first: Duration, max: Duration) -> Self {
        self.first_pause = first;
        self.max_pause = max;
        self
    }

    /// Sets the function that waits.
    pub const fn pause_with(mut self, pause: fn(Duration)) -> Self {
        self.pause = pause;
        self
    }

    /// Runs `attempt` until it succeeds, pausing between tries under this policy. Returns
    /// the value and whether it had to wait, or the last failure and the total pause once
    /// the bound is spent.
    pub(crate) fn retry<T, E>(
        &self,
        mut attempt: impl FnMut() -> Result<T, E>,
    ) -> Result<(T, bool), (E, Duration)> {
        let mut waited = Duration::ZERO;
        let mut pause = self.first_pause.max(Duration::from_nanos(1));
        let max_pause = self.max_pause.max(Duration::from_nanos(1));
        loop {
            let failure = match attempt() {
                Ok(value) => return Ok((value, !waited.is_zero())),
                Err(e) => e,
            };
            let left = self.max_wait.saturating_sub(waited);
            if left.is_zero() {
                return Err((failure, waited));
            }
            let this = pause.min(left).min(max_pause);
            (self.pause)(this);
            waited += this;
            pause = pause.saturating_mul(2);
        }
    }
}

impl Default for FullPolicy {
    fn default() -> Self {
        Self::DEFAULT
    }
}

#[cfg(feature = "std")]
fn default_pause(d: Duration) {
    std::thread::sleep(d);
}

#[cfg(not(feature = "std"))]
fn default_pause(d: Duration) {
    // Uncalibrated: about 10 ns a hint on current cores.
    for _ in 0..d.as_nanos().div_ceil(10).min(u32::MAX as u128) {
        core::hint::spin_loop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::cell::Cell;

    fn no_pause(_: Duration) {}

    #[test]
    fn gives_up_after_the_bound_with_doubling_pauses() {
        std::thread_local!(static PAUSES: Cell<u32> = const { Cell::new(0) });
        fn count(_: Duration) {
            PAUSES.with(|p| p.set(p.get() + 1));
        }
        let policy = FullPolicy::wait(Duration::from_micros(70))
            .pauses(Duration::from_micros(10), Duration::from_micros(20))
            .pause_with(count);
        let mut tries = 0;
        // 10 + 20 + 20 + 20 = 70: four pauses between five tries, then give up.
        let r = policy.retry(|| -> Result<(), u32> {
            tries += 1;
            Err(tries)
        });
        assert_eq!(r, Err((5, Duration::from_micros(70))));
        assert_eq!(PAUSES.with(Cell::get), 4);
    }

    #[test]
    fn panic_policy_tries_once() {
        let mut tries = 0;
        let r = FullPolicy::PANIC
            .pause_with(no_pause)
            .retry(|| -> Result<(), ()> {
                tries += 1;
                Err(())
            });
        assert_eq!(r, Err(((), Duration::ZERO)));
        assert_eq!(tries, 1);
    }

    #[test]
    fn success_after_waiting_is_reported() {
        let mut tries = 0;
        let r = FullPolicy::wait(Duration::from_secs(1))
            .pause_with(no_pause)
            .retry(|| {
                tries += 1;
                if tries == 3 {
                    Ok(7)
                } else {
                    Err(())
                }
            });
        assert_eq!(r, Ok((7, true)));
        assert_eq!(FullPolicy::PANIC.retry(|| Ok::<_, ()>(1)), Ok((1, false)));
    }
}
