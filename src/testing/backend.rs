//! A backend for tests, fuzzing and benchmarks: heap memory at device addresses of its own,
//! every call recorded, failures on demand.

use crate::backend::{Backend, BackendError, SharedRange};
use crate::request::DmaAddr;
use alloc::vec::Vec;
use core::ptr::NonNull;
use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// One call a [`TestBackend`] received, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendCall {
    /// `share(size, align)` and what it returned: the range's device address, or the
    /// error.
    Share {
        /// Bytes asked.
        size: usize,
        /// Alignment asked.
        align: usize,
        /// Device address of the range given, or the refusal.
        result: Result<DmaAddr, BackendError>,
    },
    /// `unshare` of the range at `dma` and what it returned (an error leaves it shared:
    /// leaked).
    Unshare {
        /// Device address of the range.
        dma: DmaAddr,
        /// Its size.
        size: usize,
        /// Whether it was made private again.
        result: Result<(), BackendError>,
    },
}

/// A backend over heap memory, for tests. Device addresses are its own (a counter from a
/// base, never reused, far from CPU addresses), so a CPU address handed to a device, or a
/// stale device address, is caught. It records every call, can be told to refuse shares
/// or unshares (the next `n`, those over a size, past a total, or at random), and checks at
/// the end that every share was matched by an unshare.
///
/// A handle: clones share one backend, so a test keeps one and gives the other to the
/// pool. Memory of ranges still shared (live or leaked) is freed when the last handle
/// goes.
///
/// # Examples
///
/// ```
/// use swiotlb::testing::TestBackend;
/// use swiotlb::{ElasticConfig, ElasticPool};
/// let backend = TestBackend::new(0x40_0000_0000);
/// let pool = ElasticPool::new(backend.clone(), ElasticConfig::new().with_initial(64 << 10))?;
/// assert_eq!(backend.live().len(), 1);
/// drop(pool);
/// backend.assert_balanced();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct TestBackend {
    inner: Arc<Mutex<Inner>>,
    granule: usize,
}

/// A heap allocation's pointer, kept by the backend between share and unshare.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Block(NonNull<u8>);

// SAFETY: the backend only keeps the pointer to free the block; the memory is the pool's
// (or nobody's, once leaked) meanwhile, reached through the `SharedRange`, never this.
unsafe impl Send for Block {}

#[derive(Debug)]
struct Inner {
    next_dma: DmaAddr,
    /// Shared ranges by device address: the block and its layout.
    live: BTreeMap<DmaAddr, (Block, Layout)>,
    /// Ranges whose unshare failed: still shared, never reused, freed with the backend.
    leaked: Vec<(DmaAddr, Block, Layout)>,
    /// Unshared ranges kept (see `quarantine`).
    quarantined: Vec<(Block, Layout)>,
    calls: Vec<BackendCall>,
    faults: Faults,
}

#[derive(Debug, Default)]
struct Faults {
    /// Keep the memory of unshared ranges (freed with the backend) instead of freeing it.
    quarantine: bool,
    shares: usize,
    unshares: usize,
    over: Option<usize>,
    limit: Option<usize>,
    random: Option<(u64, u8, u8)>,
}

impl Faults {
    /// xorshift64*: whether a random fault with probability `percent` fires.
    fn roll(state: &mut u64, percent: u8) -> bool {
        *state ^= *state >> 12;
        *state ^= *state << 25;
        *state ^= *state >> 27;
        (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) % 100 < u64::from(percent)
    }
}

impl TestBackend {
    /// A backend whose first range is at device address `dma_base` (rounded up to the
    /// first alignment asked); 4 KiB granules; no faults.
    pub fn new(dma_base: DmaAddr) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                next_dma: dma_base,
                live: BTreeMap::new(),
                leaked: Vec::new(),
                quarantined: Vec::new(),
                calls: Vec::new(),
                faults: Faults::default(),
            })),
            granule: 4096,
        }
    }

    /// The granule (a power of two of at least 4 KiB).
    pub fn with_granule(mut self, bytes: usize) -> Self {
        self.granule = bytes.max(4096).next_power_of_two();
        self
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Refuses the next `n` shares (with `BackendError::Refused { code: -12 }`).
    pub fn fail_next_shares(&self, n: usize) {
        self.lock().faults.shares = n;
    }

    /// Fails the next `n` unshares: those ranges stay shared (leaked).
    pub fn fail_next_unshares(&self, n: usize) {
        self.lock().faults.unshares = n;
    }

    /// Refuses every share over `bytes`.
    pub fn refuse_over(&self, bytes: Option<usize>) {
        self.lock().faults.over = bytes;
    }

    /// Gives at most `bytes` in all (live and leaked ranges count).
    pub fn limit(&self, bytes: Option<usize>) {
        self.lock().faults.limit = bytes;
    }

    /// Refuses shares with probability `share_percent` and fails unshares with
    /// `unshare_percent`, from a seeded generator (reproducible).
    pub fn random_failures(&self, seed: u64, share_percent: u8, unshare_percent: u8) {
        self.lock().faults.random = Some((seed | 1, share_percent, unshare_percent));
    }

    /// Keeps the memory of unshared ranges until the backend is dropped instead of freeing
    /// it: for device models that may still hold a view of a range when it is unshared (a
    /// stale access then lands in memory nobody uses, and the model's own checks, against
    /// [`live_ranges`](Self::live_ranges), report it).
    pub fn quarantine(&self, on: bool) {
        self.lock().faults.quarantine = on;
    }

    /// The ranges shared now, with their CPU addresses, in device address order: what a
    /// device model may reach.
    pub fn live_ranges(&self) -> Vec<SharedRange> {
        self.lock()
            .live
            .iter()
            .map(|(&dma, &(block, layout))| SharedRange {
                cpu: block.0,
                dma,
                size: layout.size(),
                token: 0,
            })
            .collect()
    }

    /// Changes whenever a range is shared or unshared (for caching a view of
    /// [`live_ranges`](Self::live_ranges)).
    pub fn generation(&self) -> usize {
        self.lock().calls.len()
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<BackendCall> {
        self.lock().calls.clone()
    }

    /// Successful shares so far.
    pub fn shares(&self) -> usize {
        let inner = self.lock();
        inner
            .calls
            .iter()
            .filter(|c| matches!(c, BackendCall::Share { result: Ok(_), .. }))
            .count()
    }

    /// Unshare calls so far (successful or not).
    pub fn unshares(&self) -> usize {
        let inner = self.lock();
        inner
            .calls
            .iter()
            .filter(|c| matches!(c, BackendCall::Unshare { .. }))
            .count()
    }

    /// The ranges shared now: (device address, size), in address order.
    pub fn live(&self) -> Vec<(DmaAddr, usize)> {
        self.lock()
            .live
            .iter()
            .map(|(&dma, &(_, layout))| (dma, layout.size()))
            .collect()
    }

    /// The ranges whose unshare failed: (device address, size).
    pub fn leaked(&self) -> Vec<(DmaAddr, usize)> {
        self.lock()
            .leaked
            .iter()
            .map(|&(dma, _, layout)| (dma, layout.size()))
            .collect()
    }

    /// Whether `dma..dma + len` lies inside one range shared now.
    pub fn is_shared(&self, dma: DmaAddr, len: usize) -> bool {
        let inner = self.lock();
        let Some((&start, &(_, layout))) = inner.live.range(..=dma).next_back() else {
            return false;
        };
        dma.checked_add(len as u64)
            .is_some_and(|end| end <= start + layout.size() as u64)
    }

    /// Checks that nothing is shared any more and that every successful share was matched
    /// by exactly one unshare of the same range (a failed one, which leaks it, counts: the
    /// pool did give it back).
    ///
    /// # Panics
    ///
    /// When that does not hold, with the calls.
    #[track_caller]
    pub fn assert_balanced(&self) {
        let inner = self.lock();
        assert!(
            inner.live.is_empty(),
            "still shared: {:x?}; calls: {:x?}",
            inner.live.keys().collect::<Vec<_>>(),
            inner.calls
        );
        let mut open: BTreeMap<DmaAddr, usize> = BTreeMap::new();
        for call in &inner.calls {
            match *call {
                BackendCall::Share {
                    size,
                    result: Ok(dma),
                    ..
                } => {
                    assert!(open.insert(dma, size).is_none(), "{dma:#x} shared twice");
                }
                BackendCall::Unshare { dma, size, .. } => {
                    assert_eq!(
                        open.remove(&dma),
                        Some(size),
                        "unshare of {dma:#x} ({size} bytes) matches no share"
                    );
                }
                BackendCall::Share { .. } => {}
            }
        }
        assert!(open.is_empty(), "shares never unshared: {open:x?}");
    }
}

// SAFETY: `share` returns a fresh zeroed heap allocation of exactly `size` bytes aligned to
// `align` (its CPU address), owned by the pool until `unshare`; its device address comes
// from a counter that only grows, aligned to `align`, so live ranges never overlap in
// either space and nothing wraps (checked). A failed unshare keeps the allocation (the
// range stays "shared") until the last handle is dropped, never reusing it.
unsafe impl Backend for TestBackend {
    fn granule(&self) -> usize {
        self.granule
    }

    fn share(&self, size: usize, align: usize) -> Result<SharedRange, BackendError> {
        let mut inner = self.lock();
        let held: usize = inner.live.values().map(|(_, l)| l.size()).sum::<usize>()
            + inner.leaked.iter().map(|l| l.2.size()).sum::<usize>();
        let faults = &mut inner.faults;
        let mut refusal = None;
        if faults.shares > 0 {
            faults.shares -= 1;
            refusal = Some(BackendError::Refused { code: -12 });
        } else if faults.over.is_some_and(|over| size > over) {
            refusal = Some(BackendError::NoMemory { size });
        } else if let Some(limit) = faults.limit.filter(|&l| held + size > l) {
            refusal = Some(BackendError::Exhausted {
                size,
                available: limit.saturating_sub(held),
            });
        } else if let Some((state, percent, _)) = &mut faults.random {
            if Faults::roll(state, *percent) {
                refusal = Some(BackendError::Refused { code: -11 });
            }
        }
        let result = match refusal {
            Some(e) => Err(e),
            None => allocate(&mut inner, size, align),
        };
        inner.calls.push(BackendCall::Share {
            size,
            align,
            result: result.map(|r| r.dma),
        });
        result
    }

    unsafe fn unshare(&self, range: SharedRange) -> Result<(), BackendError> {
        let mut inner = self.lock();
        let fail = {
            let faults = &mut inner.faults;
            if faults.unshares > 0 {
                faults.unshares -= 1;
                true
            } else if let Some((state, _, percent)) = &mut faults.random {
                Faults::roll(state, *percent)
            } else {
                false
            }
        };
        let entry = inner.live.remove(&range.dma);
        let result = match entry {
            Some((block, layout)) if block.0 == range.cpu && layout.size() == range.size => {
                if fail {
                    inner.leaked.push((range.dma, block, layout));
                    Err(BackendError::Refused { code: -16 })
                } else if inner.faults.quarantine {
                    inner.quarantined.push((block, layout));
                    Ok(())
                } else {
                    // SAFETY: allocated by `allocate` with this layout; the pool gave it
                    // back (the caller's promise: nothing uses it any more).
                    unsafe { dealloc(range.cpu.as_ptr(), layout) };
                    Ok(())
                }
            }
            other => {
                // Not a range of ours, or a second unshare: a pool bug the test must see.
                if let Some(entry) = other {
                    inner.live.insert(range.dma, entry);
                }
                inner.calls.push(BackendCall::Unshare {
                    dma: range.dma,
                    size: range.size,
                    result: Err(BackendError::Refused { code: -22 }),
                });
                drop(inner);
                panic!("unshare of a range this backend did not share: {range:x?}");
            }
        };
        inner.calls.push(BackendCall::Unshare {
            dma: range.dma,
            size: range.size,
            result,
        });
        result
    }
}

fn allocate(inner: &mut Inner, size: usize, align: usize) -> Result<SharedRange, BackendError> {
    let no_memory = BackendError::NoMemory { size };
    let layout = Layout::from_size_align(size, align).map_err(|_| no_memory)?;
    if size == 0 {
        return Err(no_memory);
    }
    let align64 = align as u64;
    let dma = inner
        .next_dma
        .checked_add(align64 - 1)
        .map(|d| d & !(align64 - 1))
        .ok_or(no_memory)?;
    let end = dma.checked_add(size as u64).ok_or(no_memory)?;
    // SAFETY: the layout has a non-zero size.
    let cpu = NonNull::new(unsafe { alloc_zeroed(layout) }).ok_or(no_memory)?;
    // A gap of a granule between ranges, so that an off-by-one past a region lands in no
    // region at all.
    inner.next_dma = end + 4096;
    inner.live.insert(dma, (Block(cpu), layout));
    Ok(SharedRange {
        cpu,
        dma,
        size,
        token: 0,
    })
}

impl Drop for Inner {
    fn drop(&mut self) {
        let live = core::mem::take(&mut self.live).into_values();
        let leaked = self
            .leaked
            .drain(..)
            .map(|(_, block, layout)| (block, layout));
        for (block, layout) in live.chain(leaked) {
            // SAFETY: allocated by `allocate` with this layout; the last handle is gone, so
            // no pool holds it (a pool holds a handle), and nothing else knows it.
            unsafe { dealloc(block.0.as_ptr(), layout) };
        }
    }
}
