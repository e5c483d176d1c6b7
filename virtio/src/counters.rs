//! Per-binding figures: how many shares, how many waited, how many bytes were copied each
//! way. Relaxed atomic adds, compiled in only with the `counters` feature.

#[cfg(feature = "counters")]
use core::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of one binding's figures ([`PoolSlot::counters`](crate::PoolSlot::counters)).
/// Each field is exact; under load they are not all from one instant. All zero without the
/// `counters` feature.
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
}

#[cfg(feature = "counters")]
#[derive(Debug)]
pub(crate) struct Counters {
    shares: AtomicU64,
    unshares: AtomicU64,
    bytes_shared: AtomicU64,
    bytes_copied_in: AtomicU64,
    bytes_copied_out: AtomicU64,
    share_waits: AtomicU64,
    coherent_pages: AtomicU64,
    coherent_failures: AtomicU64,
}

#[cfg(feature = "counters")]
impl Counters {
    pub(crate) const fn new() -> Self {
        Self {
            shares: AtomicU64::new(0),
            unshares: AtomicU64::new(0),
            bytes_shared: AtomicU64::new(0),
            bytes_copied_in: AtomicU64::new(0),
            bytes_copied_out: AtomicU64::new(0),
            share_waits: AtomicU64::new(0),
            coherent_pages: AtomicU64::new(0),
            coherent_failures: AtomicU64::new(0),
        }
    }

    #[inline]
    pub(crate) fn shared(&self, len: usize, copied_in: usize, waited: bool) {
        self.shares.fetch_add(1, Ordering::Relaxed);
        self.bytes_shared.fetch_add(len as u64, Ordering::Relaxed);
        self.bytes_copied_in
            .fetch_add(copied_in as u64, Ordering::Relaxed);
        if waited {
            self.share_waits.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[inline]
    pub(crate) fn unshared(&self, copied_out: usize) {
        self.unshares.fetch_add(1, Ordering::Relaxed);
        self.bytes_copied_out
            .fetch_add(copied_out as u64, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn allocated(&self, pages: Option<usize>) {
        match pages {
            Some(n) => self.coherent_pages.fetch_add(n as u64, Ordering::Relaxed),
            None => self.coherent_failures.fetch_add(1, Ordering::Relaxed),
        };
    }

    pub(crate) fn snapshot(&self) -> HalCounters {
        HalCounters {
            shares: self.shares.load(Ordering::Relaxed),
            unshares: self.unshares.load(Ordering::Relaxed),
            bytes_shared: self.bytes_shared.load(Ordering::Relaxed),
            bytes_copied_in: self.bytes_copied_in.load(Ordering::Relaxed),
            bytes_copied_out: self.bytes_copied_out.load(Ordering::Relaxed),
            share_waits: self.share_waits.load(Ordering::Relaxed),
            coherent_pages: self.coherent_pages.load(Ordering::Relaxed),
            coherent_failures: self.coherent_failures.load(Ordering::Relaxed),
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

    pub(crate) fn snapshot(&self) -> HalCounters {
        HalCounters::default()
    }
}

impl HalCounters {
    /// The figures accumulated since `earlier` (field by field, saturating at zero).
    pub fn since(&self, earlier: &HalCounters) -> HalCounters {
        HalCounters {
            shares: self.shares.saturating_sub(earlier.shares),
            unshares: self.unshares.saturating_sub(earlier.unshares),
            bytes_shared: self.bytes_shared.saturating_sub(earlier.bytes_shared),
            bytes_copied_in: self.bytes_copied_in.saturating_sub(earlier.bytes_copied_in),
            bytes_copied_out: self
                .bytes_copied_out
                .saturating_sub(earlier.bytes_copied_out),
            share_waits: self.share_waits.saturating_sub(earlier.share_waits),
            coherent_pages: self.coherent_pages.saturating_sub(earlier.coherent_pages),
            coherent_failures: self
                .coherent_failures
                .saturating_sub(earlier.coherent_failures),
        }
    }
}
