//! Per-binding figures: how many shares, how many waited, how many bytes were copied each
//! way. Relaxed atomic adds, compiled in only with the `counters` feature.
//!
//! # Width
//!
//! The counters are 64-bit where the target has 64-bit atomics. Where it has not (32-bit
//! Arm microcontrollers such as `thumbv7em-none-eabihf`, 32-bit RISC-V) they are `usize`
//! and wrap at 2^32: the byte counters after 4 GiB. [`HalCounters::since`] takes its
//! differences modulo 2^32 on those targets, so it stays exact while fewer than 2^32 shares
//! (or bytes) pass between the two snapshots.

#[cfg(feature = "counters")]
use self::word::{add, get, Counter};

/// The counter word and its two operations: 64-bit where the target has 64-bit atomics.
#[cfg(all(feature = "counters", target_has_atomic = "64"))]
mod word {
    use core::sync::atomic::{AtomicU64, Ordering};

    pub(super) type Counter = AtomicU64;

    #[inline]
    pub(super) fn add(counter: &Counter, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    #[inline]
    pub(super) fn get(counter: &Counter) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// The counter word and its two operations: `usize` (wrapping) without 64-bit atomics.
#[cfg(all(feature = "counters", not(target_has_atomic = "64")))]
mod word {
    use core::sync::atomic::{AtomicUsize, Ordering};

    pub(super) type Counter = AtomicUsize;

    #[inline]
    pub(super) fn add(counter: &Counter, n: usize) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    #[inline]
    pub(super) fn get(counter: &Counter) -> u64 {
        counter.load(Ordering::Relaxed) as u64
    }
}

/// A snapshot of one binding's figures ([`PoolSlot::counters`](crate::PoolSlot::counters)).
/// Each field is exact; under load they are not all from one instant. All zero without the
/// `counters` feature. Without 64-bit atomics each field wraps at 2^32 (see the module's
/// `# Width`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HalCounters {
    /// `Hal::share` calls that returned.
    pub shares: u64,
    /// `Hal::unshare` calls.
    pub unshares: u64,
    /// Bytes handed to the device by `share` (the buffers' lengths, every direction).
    pub bytes_shared: u64,
    /// Bytes copied from the driver's buffers into the pool: every driver-readable buffer,
    /// and device-writable ones only with [`Fill::Original`](swiotlb::Fill::Original)
    /// (the default [`Fill::Zero`](swiotlb::Fill::Zero) zero-fills them instead).
    pub bytes_copied_in: u64,
    /// Bytes copied from the pool back to the driver's buffers by `unshare` (the whole
    /// buffer for device-writable ones: the `Hal` is not told the used length).
    pub bytes_copied_out: u64,
    /// Shares that found the pool full and waited at least once.
    pub share_waits: u64,
    /// Pages handed out by `dma_alloc` (rings), ever.
    pub coherent_pages: u64,
    /// `dma_alloc` calls refused (the driver saw `Error::DmaError`).
    pub coherent_failures: u64,
    /// Shares taken back by [`PoolSlot::reclaim`](crate::PoolSlot::reclaim).
    pub reclaimed: u64,
    /// Their bytes.
    pub bytes_reclaimed: u64,
}

#[cfg(feature = "counters")]
#[derive(Debug)]
pub(crate) struct Counters {
    shares: Counter,
    unshares: Counter,
    bytes_shared: Counter,
    bytes_copied_in: Counter,
    bytes_copied_out: Counter,
    share_waits: Counter,
    coherent_pages: Counter,
    coherent_failures: Counter,
    reclaimed: Counter,
    bytes_reclaimed: Counter,
}

#[cfg(feature = "counters")]
impl Counters {
    pub(crate) const fn new() -> Self {
        Self {
            shares: Counter::new(0),
            unshares: Counter::new(0),
            bytes_shared: Counter::new(0),
            bytes_copied_in: Counter::new(0),
            bytes_copied_out: Counter::new(0),
            share_waits: Counter::new(0),
            coherent_pages: Counter::new(0),
            coherent_failures: Counter::new(0),
            reclaimed: Counter::new(0),
            bytes_reclaimed: Counter::new(0),
        }
    }

    #[inline]
    pub(crate) fn reclaimed(&self, shares: usize, bytes: usize) {
        add(&self.reclaimed, shares);
        add(&self.bytes_reclaimed, bytes);
    }

    #[inline]
    pub(crate) fn shared(&self, len: usize, copied_in: usize, waited: bool) {
        add(&self.shares, 1);
        add(&self.bytes_shared, len);
        add(&self.bytes_copied_in, copied_in);
        if waited {
            add(&self.share_waits, 1);
        }
    }

    #[inline]
    pub(crate) fn unshared(&self, copied_out: usize) {
        add(&self.unshares, 1);
        add(&self.bytes_copied_out, copied_out);
    }

    #[inline]
    pub(crate) fn allocated(&self, pages: Option<usize>) {
        match pages {
            Some(n) => add(&self.coherent_pages, n),
            None => add(&self.coherent_failures, 1),
        }
    }

    pub(crate) fn snapshot(&self) -> HalCounters {
        HalCounters {
            shares: get(&self.shares),
            unshares: get(&self.unshares),
            bytes_shared: get(&self.bytes_shared),
            bytes_copied_in: get(&self.bytes_copied_in),
            bytes_copied_out: get(&self.bytes_copied_out),
            share_waits: get(&self.share_waits),
            coherent_pages: get(&self.coherent_pages),
            coherent_failures: get(&self.coherent_failures),
            reclaimed: get(&self.reclaimed),
            bytes_reclaimed: get(&self.bytes_reclaimed),
        }
    }
}

/// Without the feature: nothing stored, nothing counted.
#[cfg(not(feature = "counters"))]
#[derive(Debug)]
pub(crate) struct Counters;

#[cfg(not(feature = "counters"))]
impl Counters {
    pub(crate) const fn new() -> Self {
        Self
    }

    #[inline(always)]
    pub(crate) fn shared(&self, _len: usize, _copied_in: usize, _waited: bool) {}

    #[inline(always)]
    pub(crate) fn unshared(&self, _copied_out: usize) {}

    #[inline(always)]
    pub(crate) fn allocated(&self, _pages: Option<usize>) {}

    #[inline(always)]
    pub(crate) fn reclaimed(&self, _shares: usize, _bytes: usize) {}

    pub(crate) fn snapshot(&self) -> HalCounters {
        HalCounters::default()
    }
}

impl HalCounters {
    /// The figures accumulated since `earlier` (field by field, saturating at zero; modulo
    /// 2^32 on targets without 64-bit atomics, whose counters wrap there).
    pub fn since(&self, earlier: &HalCounters) -> HalCounters {
        HalCounters {
            shares: delta(self.shares, earlier.shares),
            unshares: delta(self.unshares, earlier.unshares),
            bytes_shared: delta(self.bytes_shared, earlier.bytes_shared),
            bytes_copied_in: delta(self.bytes_copied_in, earlier.bytes_copied_in),
            bytes_copied_out: delta(self.bytes_copied_out, earlier.bytes_copied_out),
            share_waits: delta(self.share_waits, earlier.share_waits),
            coherent_pages: delta(self.coherent_pages, earlier.coherent_pages),
            coherent_failures: delta(self.coherent_failures, earlier.coherent_failures),
            reclaimed: delta(self.reclaimed, earlier.reclaimed),
            bytes_reclaimed: delta(self.bytes_reclaimed, earlier.bytes_reclaimed),
        }
    }
}

/// `now - earlier` for one field of [`HalCounters::since`].
#[cfg(target_has_atomic = "64")]
fn delta(now: u64, earlier: u64) -> u64 {
    now.saturating_sub(earlier)
}

/// `now - earlier` for one field of [`HalCounters::since`], modulo the counters' width.
#[cfg(not(target_has_atomic = "64"))]
fn delta(now: u64, earlier: u64) -> u64 {
    now.wrapping_sub(earlier) & usize::MAX as u64
}
