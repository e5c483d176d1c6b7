//! Binding a pool to a type: the `static` a [`Hal`](virtio_drivers::Hal) without `self` finds
//! its pool in.
//!
//! # Why a marker type per pool
//!
//! `Hal`'s functions are associated functions, so whatever they use must be reachable from
//! the type alone. The choices were a const-generic index into one global table of pools
//! (`SwiotlbHal<0>`, `SwiotlbHal<1>`) or a marker type per pool that names its own `static`.
//! The marker wins: the name says which device's pool it is, two crates cannot both pick
//! "slot 0" by accident, no table has a size to choose, and the lookup is one load from a
//! `static` the compiler sees directly. [`bind_pool!`](crate::bind_pool) writes the marker
//! and its `static` in one line.

use crate::counters::Counters;
use crate::mmio::{overlap, MmioWindow};
use crate::policy::FullPolicy;
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::any::type_name;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicPtr, Ordering};
use swiotlb::{Attrs, Constraints, DefaultRawMutex, Direction, ElasticPool, Fill};
use virtio_drivers::{PhysAddr, PAGE_SIZE};

/// How a binding uses its pool, and where its device's MMIO may be.
///
/// # Examples
///
/// ```
/// use core::time::Duration;
/// use swiotlb::Constraints;
/// use swiotlb_virtio::{FullPolicy, HalOptions};
/// // A device that reaches only the low 4 GiB; shares wait up to 50 ms for room.
/// let options = HalOptions::new()
///     .constraints(Constraints::new().dma_limit(u32::MAX as u64))
///     .when_full(FullPolicy::wait(Duration::from_millis(50)));
/// # let _ = options;
/// ```
#[derive(Clone, Copy, Debug)]
pub struct HalOptions {
    /// The device's addressing constraints, applied to shares and coherent allocations.
    pub constraints: Constraints,
    /// What a share does when the pool has no room.
    pub full: FullPolicy,
    /// What a device-writable (`DeviceToDriver`) buffer's bounce buffer holds when the
    /// device is given it. [`Fill::Zero`] by default: the buffer's old contents are the
    /// guest's, and copying them in would show them to the host. `unshare` copies the whole
    /// buffer back (the `Hal` is not told the used length), so with `Zero` a buffer the
    /// device filled only in part reads zeros past what it wrote, where
    /// [`Fill::Original`] (Linux's rule) would leave the old bytes. The virtio spec forbids
    /// drivers to rely on bytes past the used length, and `virtio-drivers`' drivers do not.
    pub fill: Fill,
    /// Where the device's PCI BARs may lie: the default
    /// [`PoolBinding::mmio_phys_to_virt`] translates a BAR only inside one of these and
    /// panics otherwise. Empty by default, which is right for virtio-mmio (its transport
    /// never asks) and stops a PCI transport at its constructor until windows are given.
    pub mmio_windows: &'static [MmioWindow],
    /// Whether the binding records every share until its unshare (a lock and a B-tree
    /// insert per share, and a removal per unshare, outside the pool), so that
    /// [`PoolSlot::reclaim`] can take back what a dropped driver left shared and `unshare`
    /// refuses an address the binding did not share before touching the pool. Off by
    /// default: it costs about a fifth of a 4 KiB virtio-blk request's throughput on the
    /// test transport. Turn it on for drivers that are dropped with buffers posted
    /// (virtio-drivers 0.13's console, net and input).
    pub track_shares: bool,
}

impl HalOptions {
    /// No constraints; [`FullPolicy::default`]; zero-filled receive buffers; no MMIO
    /// windows.
    pub const fn new() -> Self {
        Self {
            constraints: Constraints::NONE,
            full: FullPolicy::DEFAULT,
            fill: Fill::Zero,
            mmio_windows: &[],
            track_shares: false,
        }
    }

    /// Sets [`track_shares`](Self::track_shares).
    pub const fn track_shares(mut self, on: bool) -> Self {
        self.track_shares = on;
        self
    }

    /// Sets [`fill`](Self::fill).
    pub const fn fill(mut self, fill: Fill) -> Self {
        self.fill = fill;
        self
    }

    /// Sets [`mmio_windows`](Self::mmio_windows): the MMIO the guest mapped for the
    /// device's BARs (checked by [`PoolSlot::register`]).
    pub const fn mmio_windows(mut self, windows: &'static [MmioWindow]) -> Self {
        self.mmio_windows = windows;
        self
    }

    /// Sets [`constraints`](Self::constraints).
    pub const fn constraints(mut self, constraints: Constraints) -> Self {
        self.constraints = constraints;
        self
    }

    /// Sets [`full`](Self::full).
    pub const fn when_full(mut self, policy: FullPolicy) -> Self {
        self.full = policy;
        self
    }
}

impl Default for HalOptions {
    fn default() -> Self {
        Self::new()
    }
}

/// Why a pool could not be registered.
///
/// The MMIO window variants carry the offending [`MmioWindow`] (its physical address, size
/// and CPU address).
#[derive(Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BindError {
    /// The slot already has a pool: registration happens once.
    AlreadyRegistered,
    /// The pool's CPU and device addresses differ by something other than a multiple of
    /// `virtio_drivers::PAGE_SIZE`, so a page-aligned device allocation would not be
    /// page-aligned for the CPU (`Hal::dma_alloc` must return a page-aligned pointer).
    Incongruent {
        /// CPU address of the pool's first slot.
        cpu: usize,
        /// Device address of the pool's first slot.
        dma: u64,
    },
    /// The pool holds device address 0, which `virtio-drivers` reads as a failed
    /// `dma_alloc`.
    HoldsAddressZero,
    /// An MMIO window of zero bytes: a mistake in the list, which would translate nothing.
    EmptyMmioWindow(MmioWindow),
    /// An MMIO window whose physical range wraps `u64`, or whose CPU range does not fit
    /// the address space (its size exceeds `usize`, or it wraps past the top).
    MmioWindowWraps(MmioWindow),
    /// Two MMIO windows overlap in physical or in CPU addresses: a BAR could translate two
    /// ways, or two windows would alias the same memory.
    MmioWindowsOverlap {
        /// The earlier window in the list.
        first: MmioWindow,
        /// The later one.
        second: MmioWindow,
    },
    /// An MMIO window overlaps the pool, in device (physical) or CPU addresses: a BAR
    /// inside it would hand the driver pool memory, which the device writes, as registers.
    MmioWindowOverlapsPool {
        /// The window.
        window: MmioWindow,
        /// Device address of the pool's first slot.
        pool_dma: u64,
        /// CPU address of the pool's first slot.
        pool_cpu: usize,
        /// Bytes of the pool's slots.
        pool_bytes: u64,
    },
}

impl core::fmt::Display for BindError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::AlreadyRegistered => f.write_str("this pool binding is already registered"),
            Self::Incongruent { cpu, dma } => write!(
                f,
                "pool at CPU {cpu:#x} / device {dma:#x}: the two differ by other than a multiple \
                 of {PAGE_SIZE} bytes, so coherent allocations cannot be page-aligned for both"
            ),
            Self::HoldsAddressZero => f.write_str(
                "pool holds device address 0, which virtio-drivers reads as a failed allocation",
            ),
            Self::EmptyMmioWindow(w) => write!(f, "MMIO window of zero bytes: {w}"),
            Self::MmioWindowWraps(w) => write!(
                f,
                "MMIO window wraps the physical or CPU address space: {w}"
            ),
            Self::MmioWindowsOverlap { first, second } => {
                let space = if ranges_overlap(first.phys_range(), second.phys_range()) {
                    "physical"
                } else {
                    "CPU"
                };
                write!(
                    f,
                    "MMIO windows overlap in {space} addresses: {first} and {second}"
                )
            }
            Self::MmioWindowOverlapsPool {
                window,
                pool_dma,
                pool_cpu,
                pool_bytes,
            } => write!(
                f,
                "MMIO window overlaps the pool ({pool_bytes:#x} bytes at device {pool_dma:#x}, \
                 CPU {pool_cpu:#x}): {window}"
            ),
        }
    }
}

impl core::error::Error for BindError {}

/// Addresses in hex, as the messages print them.
impl core::fmt::Debug for BindError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        struct Hex<T>(T);
        impl<T: core::fmt::LowerHex> core::fmt::Debug for Hex<T> {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                write!(f, "{:#x}", self.0)
            }
        }
        match *self {
            Self::AlreadyRegistered => f.write_str("AlreadyRegistered"),
            Self::Incongruent { cpu, dma } => f
                .debug_struct("Incongruent")
                .field("cpu", &Hex(cpu))
                .field("dma", &Hex(dma))
                .finish(),
            Self::HoldsAddressZero => f.write_str("HoldsAddressZero"),
            Self::EmptyMmioWindow(w) => f.debug_tuple("EmptyMmioWindow").field(&w).finish(),
            Self::MmioWindowWraps(w) => f.debug_tuple("MmioWindowWraps").field(&w).finish(),
            Self::MmioWindowsOverlap { first, second } => f
                .debug_struct("MmioWindowsOverlap")
                .field("first", &first)
                .field("second", &second)
                .finish(),
            Self::MmioWindowOverlapsPool {
                window,
                pool_dma,
                pool_cpu,
                pool_bytes,
            } => f
                .debug_struct("MmioWindowOverlapsPool")
                .field("window", &window)
                .field("pool_dma", &Hex(pool_dma))
                .field("pool_cpu", &Hex(pool_cpu))
                .field("pool_bytes", &Hex(pool_bytes))
                .finish(),
        }
    }
}

/// A registered pool and its options; leaked at registration and never freed.
#[derive(Debug)]
pub(crate) struct Registration {
    pub(crate) pool: &'static ElasticPool,
    pub(crate) options: HalOptions,
}

/// A buffer shared through a binding and not unshared yet: its length and direction, by
/// device address.
type Shares = BTreeMap<u64, (usize, Direction)>;

/// What [`PoolSlot::reclaim`] took back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reclaimed {
    /// Shares freed (without copying anything back).
    pub shares: usize,
    /// Their bytes.
    pub bytes: usize,
    /// Shares the pool no longer held (unmapped behind the binding's back): forgotten.
    pub missing: usize,
}

/// Where a binding keeps its pool: a `static`, empty until [`PoolSlot::register`].
///
/// Usually written by [`bind_pool!`](crate::bind_pool); declare one by hand to implement
/// [`PoolBinding`] yourself.
///
/// With [`HalOptions::track_shares`] it also keeps the binding's live shares (address,
/// length, direction), so that `unshare` refuses an address the binding did not share and
/// [`reclaim`](Self::reclaim) can take back what a dropped driver left shared.
#[derive(Debug)]
pub struct PoolSlot {
    registration: AtomicPtr<Registration>,
    shares: lock_api::Mutex<DefaultRawMutex, Shares>,
    pub(crate) counters: Counters,
}

impl PoolSlot {
    /// An empty slot.
    pub const fn new() -> Self {
        Self {
            registration: AtomicPtr::new(ptr::null_mut()),
            shares: lock_api::Mutex::const_new(
                <DefaultRawMutex as lock_api::RawMutex>::INIT,
                BTreeMap::new(),
            ),
            counters: Counters::new(),
        }
    }

    /// Puts `pool` in this slot, to be used with `options` from now on.
    ///
    /// A pool of one fixed region is [`ElasticPool::fixed`] over it; shares that find it
    /// full then wait on the pool itself (see [`FullPolicy`]).
    ///
    /// The [`mmio_windows`](HalOptions::mmio_windows) are checked too: each must be
    /// non-empty and not wrap, and no two may overlap each other, nor any region of the
    /// pool, in physical or in CPU addresses (a quadratic check over what is a handful of
    /// windows). Regions the pool adds later are checked when a BAR is translated.
    ///
    /// # Errors
    ///
    /// [`BindError`]: the slot is taken, the pool cannot serve `virtio-drivers`, or a window
    /// is refused (see the variants). Nothing changes on error.
    pub fn register(
        &self,
        pool: &'static ElasticPool,
        options: HalOptions,
    ) -> Result<(), BindError> {
        for (dma, cpu) in regions(pool) {
            if dma.start == 0 {
                return Err(BindError::HoldsAddressZero);
            }
            if (cpu.start as u64).wrapping_sub(dma.start) & (PAGE_SIZE as u64 - 1) != 0 {
                return Err(BindError::Incongruent {
                    cpu: cpu.start,
                    dma: dma.start,
                });
            }
        }
        check_windows(pool, options.mmio_windows)?;
        if !self.registration.load(Ordering::Acquire).is_null() {
            return Err(BindError::AlreadyRegistered);
        }
        let fresh = Box::into_raw(Box::new(Registration { pool, options }));
        match self.registration.compare_exchange(
            ptr::null_mut(),
            fresh,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => Ok(()),
            Err(_) => {
                // SAFETY: `fresh` came from `Box::into_raw` just above and was never
                // published (the exchange failed), so this is its only owner.
                drop(unsafe { Box::from_raw(fresh) });
                Err(BindError::AlreadyRegistered)
            }
        }
    }

    /// The registered pool, if any.
    pub fn pool(&self) -> Option<&'static ElasticPool> {
        self.get().map(|r| r.pool)
    }

    /// Buffers shared through this slot and not unshared yet, if the binding records them
    /// ([`HalOptions::track_shares`]).
    pub fn outstanding(&self) -> Option<usize> {
        let tracked = self.get()?.options.track_shares;
        tracked.then(|| self.shares.lock().len())
    }

    /// Takes back every buffer still shared through this slot: frees its slots in the
    /// pool *without copying anything back* (the driver's buffers may be gone) and forgets
    /// it. `None` if the binding does not record its shares ([`HalOptions::track_shares`]
    /// off, or no pool registered): then there is nothing it could take back. For drivers that leave receive buffers shared when dropped (virtio-drivers 0.13's
    /// console, net and input drivers never unshare theirs), before the device is created
    /// again. Coherent allocations (rings) are not touched: `virtio-drivers` frees those
    /// itself when a queue is dropped.
    ///
    /// # Safety
    ///
    /// - No driver will ever unshare what it shared through this binding before this call:
    ///   every driver using the binding has been dropped (or leaks its buffers for good).
    ///   A later `unshare` of such an address would find the slot taken back, or given to
    ///   someone else.
    /// - The devices those drivers drove no longer use the buffers: each was reset, or its
    ///   queues unset (virtio-drivers' drivers unset their queues when dropped), so an
    ///   honest device does not write memory that the pool may hand out again. (A hostile
    ///   device may write any pool byte at any time anyway; the pool assumes that and it
    ///   costs nothing but the data of mappings that device was given.)
    pub unsafe fn reclaim(&self) -> Option<Reclaimed> {
        let reg = self.get().filter(|r| r.options.track_shares)?;
        let taken = core::mem::take(&mut *self.shares.lock());
        let mut done = Reclaimed::default();
        for (dma, (len, dir)) in taken {
            // SAFETY: the binding shared it and nothing will unshare it (caller's promise);
            // skipping the copy back, the pool never touches the original, which may be
            // gone.
            match unsafe { reg.pool.unmap(dma, len, dir, Attrs::SKIP_CPU_SYNC) } {
                Ok(()) => {
                    done.shares += 1;
                    done.bytes += len;
                }
                Err(_) => done.missing += 1,
            }
        }
        self.counters.reclaimed(done.shares, done.bytes);
        Some(done)
    }

    /// Records a share.
    pub(crate) fn track(&self, dma: u64, len: usize, dir: Direction) {
        self.shares.lock().insert(dma, (len, dir));
    }

    /// Forgets the share at `dma` if it is `len` bytes in direction `dir`: `false` if the
    /// binding has no such share (a broken `Hal` contract).
    pub(crate) fn untrack(&self, dma: u64, len: usize, dir: Direction) -> bool {
        let mut shares = self.shares.lock();
        match shares.get(&dma) {
            Some(&share) if share == (len, dir) => {
                shares.remove(&dma);
                true
            }
            _ => false,
        }
    }

    /// The registered options, if any.
    pub fn options(&self) -> Option<HalOptions> {
        self.get().map(|r| r.options)
    }

    /// Figures of the shares and copies made through this slot so far (all zero without
    /// the `counters` feature).
    pub fn counters(&self) -> crate::HalCounters {
        self.counters.snapshot()
    }

    pub(crate) fn get(&self) -> Option<&'static Registration> {
        let registration = NonNull::new(self.registration.load(Ordering::Acquire))?;
        // SAFETY: a non-null pointer here was published by `register` from `Box::into_raw`
        // (the Acquire load pairs with its AcqRel exchange, so the contents are visible) and
        // is never freed or written again.
        Some(unsafe { registration.as_ref() })
    }
}

/// Each region of `pool` now: device range, CPU range.
pub(crate) fn regions(pool: &ElasticPool) -> Vec<(core::ops::Range<u64>, core::ops::Range<usize>)> {
    pool.sub_pools()
        .into_iter()
        .map(|r| {
            let bytes = r.dma_range.end - r.dma_range.start;
            // A region holds at least one slot, so its first byte translates; its CPU range
            // does not wrap (`Pool::new` checks), so neither step can fail. Saturating keeps
            // the check conservative anyway.
            let cpu = pool
                .translate(r.dma_range.start, 1)
                .map_or(0, |p| p.as_ptr().addr());
            let cpu_end = usize::try_from(bytes).map_or(usize::MAX, |n| cpu.saturating_add(n));
            (r.dma_range, cpu..cpu_end)
        })
        .collect()
}

/// The registration checks on MMIO windows, in list order: each window alone, then against
/// every region of the pool, then against every earlier window.
fn check_windows(pool: &ElasticPool, windows: &[MmioWindow]) -> Result<(), BindError> {
    let regions = regions(pool);
    for (i, &window) in windows.iter().enumerate() {
        if window.size() == 0 {
            return Err(BindError::EmptyMmioWindow(window));
        }
        let (Some(phys), Some(cpu)) = (window.phys_range(), window.cpu_range()) else {
            return Err(BindError::MmioWindowWraps(window));
        };
        for (dma, pool_cpu) in &regions {
            if overlap(phys, (dma.start, dma.end)) || overlap(cpu, (pool_cpu.start, pool_cpu.end)) {
                return Err(BindError::MmioWindowOverlapsPool {
                    window,
                    pool_dma: dma.start,
                    pool_cpu: pool_cpu.start,
                    pool_bytes: dma.end - dma.start,
                });
            }
        }
        for &earlier in &windows[..i] {
            if ranges_overlap(earlier.phys_range(), Some(phys))
                || ranges_overlap(earlier.cpu_range(), Some(cpu))
            {
                return Err(BindError::MmioWindowsOverlap {
                    first: earlier,
                    second: window,
                });
            }
        }
    }
    Ok(())
}

/// Whether two ranges that are both known (valid) overlap.
fn ranges_overlap<T: Ord + Copy>(a: Option<(T, T)>, b: Option<(T, T)>) -> bool {
    matches!((a, b), (Some(a), Some(b)) if overlap(a, b))
}

impl Default for PoolSlot {
    fn default() -> Self {
        Self::new()
    }
}

/// A type that names a pool: the parameter of [`SwiotlbHal`](crate::SwiotlbHal).
///
/// `Hal`'s functions take no `self`, so the pool must be reachable from the type alone. A
/// marker type per pool that names its own `static` was chosen over a const-generic index
/// into one global table (`SwiotlbHal<0>`): the name says whose pool it is, two crates
/// cannot both pick "slot 0" by accident, no table size has to be fixed in advance, and the
/// lookup is one load from a `static`.
///
/// Write it with [`bind_pool!`](crate::bind_pool), which uses every default and so needs no
/// `unsafe` from you, or by hand:
///
/// ```
/// use swiotlb_virtio::{PoolBinding, PoolSlot};
///
/// struct NetPool;
/// static NET_POOL: PoolSlot = PoolSlot::new();
/// // SAFETY: `slot` returns `NET_POOL`, a static of this binding's own, every time; the
/// // default `mmio_phys_to_virt` is kept.
/// unsafe impl PoolBinding for NetPool {
///     fn slot() -> &'static PoolSlot {
///         &NET_POOL
///     }
/// }
/// ```
///
/// A platform that maps MMIO at an offset, or page by page, describes those mappings as
/// [`MmioWindow`]s rather than overriding [`mmio_phys_to_virt`](Self::mmio_phys_to_virt):
/// the windows are checked at registration and the default confines every BAR to them.
///
/// # Safety
///
/// [`SwiotlbHal<Self>`](crate::SwiotlbHal) is an `unsafe impl Hal` that relies on this
/// trait, so an implementor promises:
///
/// - [`slot`](Self::slot) returns the same `&'static PoolSlot` on every call, a `static` of
///   this binding's own: `unshare` and `dma_dealloc` must find the pool that `share` and
///   `dma_alloc` used.
/// - An override of [`mmio_phys_to_virt`](Self::mmio_phys_to_virt) meets
///   `Hal::mmio_phys_to_virt`'s implementation safety: the pointer it returns is valid for
///   volatile access to `size` bytes and aliases no allocation or reference of the program
///   (not the pool, not other RAM), whatever `paddr` a hostile device put in its BAR. The
///   default does so by translating only through the registered [`MmioWindow`]s, whose
///   constructors' contract vouches for them.
pub unsafe trait PoolBinding: 'static {
    /// The slot that holds this binding's pool.
    fn slot() -> &'static PoolSlot;

    /// Registers `pool` in this binding's slot ([`PoolSlot::register`]).
    ///
    /// # Errors
    ///
    /// As [`PoolSlot::register`].
    fn register(pool: &'static ElasticPool, options: HalOptions) -> Result<(), BindError> {
        Self::slot().register(pool, options)
    }

    /// The registered pool, if any.
    fn pool() -> Option<&'static ElasticPool> {
        Self::slot().pool()
    }

    /// Takes back every buffer still shared through this binding, without copying back
    /// ([`PoolSlot::reclaim`]).
    ///
    /// # Safety
    ///
    /// As [`PoolSlot::reclaim`].
    unsafe fn reclaim() -> Option<Reclaimed> {
        // SAFETY: the caller's promise, passed on.
        unsafe { Self::slot().reclaim() }
    }

    /// Figures of the shares and copies made through this binding.
    fn counters() -> crate::HalCounters {
        Self::slot().counters()
    }

    /// `Hal::mmio_phys_to_virt`: the CPU address of an MMIO region. Only the PCI transport
    /// asks, in its constructor, once for each virtio structure it finds in a BAR.
    ///
    /// The default translates `paddr..paddr + size` through the binding's registered
    /// [`mmio_windows`](HalOptions::mmio_windows): the range must lie entirely inside one
    /// window (an empty range must start inside one). Every step is checked arithmetic, and
    /// `u64` to `usize` conversions are checked, so nothing wraps or truncates on a 32-bit
    /// target.
    ///
    /// # Safety
    ///
    /// As for `Hal::mmio_phys_to_virt`'s callers: `paddr..paddr + size` is an MMIO region
    /// the device described. The default does not rely on it: it checks the range against
    /// the windows, because in a confidential VM the host chose the BAR.
    ///
    /// # Panics
    ///
    /// The default panics, naming the binding, the address, the size and the windows, when
    /// the range lies in no window: `Hal::mmio_phys_to_virt` cannot return an error, so a
    /// hostile BAR stops the PCI transport's constructor instead of handing the driver RAM.
    /// It also panics when the range overlaps a region the pool added after registration
    /// (registration checked the regions there were), and, naming the binding, before a
    /// pool is registered.
    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, size: usize) -> NonNull<u8> {
        mmio_through_windows::<Self>(paddr, size)
    }
}

/// The default [`PoolBinding::mmio_phys_to_virt`]: `paddr..paddr + size` through `B`'s
/// windows, or a panic with the figures.
fn mmio_through_windows<B: PoolBinding + ?Sized>(paddr: PhysAddr, size: usize) -> NonNull<u8> {
    let binding = type_name::<B>();
    let Some(registration) = B::slot().get() else {
        panic!("swiotlb-virtio: {binding} used before a pool was registered for it");
    };
    let windows = registration.options.mmio_windows;
    let Some(virt) = windows.iter().find_map(|w| w.translate(paddr, size)) else {
        panic!(
            "swiotlb-virtio: {binding}: MMIO range of {size:#x} bytes at physical {paddr:#x} \
             (a PCI BAR) lies in no MMIO window; {}",
            WindowList(windows)
        );
    };
    // Regions the pool added since registration were not checked against the windows:
    // a window that now overlaps one would hand the driver pool memory as registers.
    let end = paddr.saturating_add(size.max(1) as u64);
    if let Some((dma, _)) = regions(registration.pool)
        .into_iter()
        .find(|(dma, _)| overlap((paddr, end), (dma.start, dma.end)))
    {
        panic!(
            "swiotlb-virtio: {binding}: MMIO range of {size:#x} bytes at physical {paddr:#x} \
             (a PCI BAR) overlaps the pool's region at {:#x}..{:#x}",
            dma.start, dma.end
        );
    }
    virt
}

/// `windows: [..., ...]`, or a hint when there are none.
struct WindowList(&'static [MmioWindow]);

impl core::fmt::Display for WindowList {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none registered (HalOptions::mmio_windows)");
        }
        f.write_str("windows: [")?;
        for (i, w) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{w}")?;
        }
        f.write_str("]")
    }
}

/// Declares a marker type bound to a pool: `bind_pool!(pub BlkPool);` makes a unit struct
/// `BlkPool` with its own `static` [`PoolSlot`], implementing [`PoolBinding`]. Use it as
/// `SwiotlbHal<BlkPool>`, and register its pool once with `BlkPool::register(pool, options)`.
///
/// The expansion is an `unsafe impl` with its `// SAFETY:` comment (the slot is a `static`
/// of the marker's own; every other function is the default, MMIO windows included), so
/// the caller writes no `unsafe`, and a `#![forbid(unsafe_code)]` crate may use the macro.
#[macro_export]
macro_rules! bind_pool {
    ($(#[$meta:meta])* $vis:vis $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        $vis struct $name;

        // SAFETY: `slot` returns a `static` declared inside it, so the same slot, of this
        // type alone, on every call; every other function is the trait's default.
        unsafe impl $crate::PoolBinding for $name {
            fn slot() -> &'static $crate::PoolSlot {
                static SLOT: $crate::PoolSlot = $crate::PoolSlot::new();
                &SLOT
            }
        }
    };
}
