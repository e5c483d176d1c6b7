//! Benchmarks of the `swiotlb` crate against the bounce pools it replaces.
//!
//! Every implementation sits behind one small trait, [`Bounce`], so that every benchmark and
//! every mode of the `swiotlb-bench` tool runs every implementation the same way:
//!
//! | name          | what it is                                                              |
//! |---------------|-------------------------------------------------------------------------|
//! | `swiotlb`     | this project's [`swiotlb::Pool`] ([`ours::Ours`])                       |
//! | `linux_style` | Linux's SWIOTLB before areas (v5.x): one lock, next fit over slots with per-slot free-run counters ([`linux::LinuxSlots`] with one area) |
//! | `linux_areas` | the same with per-CPU areas and a global used / high-water counter, as Linux since 5.19 / 6.3 ([`linux::LinuxSlots`]) |
//! | `buddy`       | `buddy_system_allocator`'s frame allocator at byte granularity under one lock, as Android's pvmfw bounces virtio buffers, copying as Linux does ([`buddy::Buddy`]) |
//! | `pvmfw`       | the same allocator under a spin lock with pvmfw's own copy rules: no copy in for `FromDevice` ([`pvmfw::Pvmfw`]) |
//! | `mutex_bitmap`| first fit over a `bitvec` of 2 KiB slots under one `parking_lot` mutex ([`bitmap::MutexBitmap`]) |
//!
//! The baselines are written here from their published designs, not copied. All of them
//! really copy the bytes: map copies the original into the pool (for every direction but
//! where [`Kind::from_device_start`] says otherwise: `pvmfw` leaves a `FromDevice` bounce
//! buffer as it was), unmap copies back for `FromDevice` and `Bidirectional` unless told to
//! skip.
//! None of them checks constraints (`min_align_mask` and friends) because the benchmarks ask
//! for none; all of them page-align mappings of a page or more, as Linux does.
//!
//! Besides the implementations the crate holds what the criterion benches (in the root
//! package's `benches/`) and the tool share: the realistic size mix ([`mix`]), pool filling
//! ([`fill`]), the timed multi-thread runner ([`runner`]) and the fragmentation experiment
//! ([`fragmentation`]).
#![deny(
    unsafe_op_in_unsafe_fn,
    missing_docs,
    clippy::undocumented_unsafe_blocks,
    rust_2018_idioms
)]

pub mod bitmap;
pub mod buddy;
pub mod fill;
pub mod fragmentation;
pub mod histogram;
pub mod linux;
pub mod mix;
pub mod ours;
pub mod pvmfw;
mod region;
pub mod runner;
pub mod spin;

use core::fmt;
use core::ptr::NonNull;
use core::str::FromStr;

pub use swiotlb::{Direction, DmaAddr};

/// Slot size of every slot-based implementation (Linux's `IO_TLB_SIZE`).
pub const SLOT_SIZE: usize = 2048;
/// Slots in a segment, the longest run one mapping may take (Linux's `IO_TLB_SEGSIZE`).
pub const SEGMENT_SLOTS: usize = 128;
/// Page size: mappings of a page or more are page-aligned.
pub const PAGE_SIZE: usize = 4096;
/// The largest mapping every implementation accepts (one segment).
pub const MAX_MAPPING: usize = SLOT_SIZE * SEGMENT_SLOTS;

/// Why a benchmark operation was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// No room in the pool for the mapping.
    Full,
    /// The mapping is refused for another reason (zero or too large a length).
    Refused,
    /// Unmap of an address that is not a live mapping (only the implementations that keep
    /// per-mapping metadata can tell).
    NotMapped,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::Full => "pool full",
            Error::Refused => "mapping refused",
            Error::NotMapped => "not a live mapping",
        })
    }
}

impl std::error::Error for Error {}

/// A bounce pool under test: map and unmap streaming buffers, copying as SWIOTLB does.
///
/// `unmap` is given the original buffer as well as the device address, as virtio-drivers'
/// `Hal::unshare` is: implementations that keep the original's address in their own metadata
/// (ours and the Linux-style ones) ignore it, the others (the buddy and bitmap baselines, like
/// pvmfw's HAL) use it.
pub trait Bounce: Send + Sync {
    /// Short name, used in reports and benchmark ids.
    fn name(&self) -> &'static str;

    /// Bytes of pool memory.
    fn capacity(&self) -> usize;

    /// Bytes the allocator holds for live mappings (whole slots, or whole buddy blocks).
    fn used_bytes(&self) -> usize;

    /// Most bytes the allocator has held at once.
    fn high_water_bytes(&self) -> usize;

    /// Reserves room for `buf` and copies it in (whatever the direction).
    ///
    /// # Errors
    ///
    /// [`Error::Full`] when there is no room, [`Error::Refused`] for a length the pool
    /// cannot map at all.
    ///
    /// # Safety
    ///
    /// `buf` is valid for reads (and for writes unless `dir` is `ToDevice`) until it is
    /// unmapped, does not overlap the pool, and nothing writes it meanwhile. Several
    /// `ToDevice` mappings may read the same bytes.
    unsafe fn map(&self, buf: NonNull<[u8]>, dir: Direction) -> Result<DmaAddr, Error>;

    /// Copies the bounce buffer back for `FromDevice` and `Bidirectional` unless
    /// `skip_sync`, then frees it.
    ///
    /// # Errors
    ///
    /// [`Error::NotMapped`] where the implementation can tell that `dma` is not a live
    /// mapping.
    ///
    /// # Safety
    ///
    /// `dma` was returned by [`map`](Self::map) of this pool for `buf` and `dir` and has not
    /// been unmapped since; `buf` is still valid as `map` requires.
    unsafe fn unmap(
        &self,
        dma: DmaAddr,
        buf: NonNull<[u8]>,
        dir: Direction,
        skip_sync: bool,
    ) -> Result<(), Error>;

    /// The CPU address of pool bytes `dma..dma + len`, for tests that play the device.
    fn translate(&self, dma: DmaAddr, len: usize) -> Option<NonNull<u8>>;
}

/// Which implementation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// This project's pool.
    Swiotlb,
    /// Linux before areas: one lock, next fit, per-slot free-run counters.
    LinuxStyle,
    /// Linux with per-CPU areas.
    LinuxAreas,
    /// `buddy_system_allocator`'s frame allocator under one lock (pvmfw's allocator),
    /// copying as Linux does.
    Buddy,
    /// pvmfw: the same allocator under a spin lock, with pvmfw's copy rules.
    Pvmfw,
    /// First fit over a `bitvec` under one mutex.
    MutexBitmap,
}

impl Kind {
    /// Every implementation, ours first.
    pub const ALL: [Kind; 6] = [
        Kind::Swiotlb,
        Kind::LinuxStyle,
        Kind::LinuxAreas,
        Kind::Buddy,
        Kind::Pvmfw,
        Kind::MutexBitmap,
    ];

    /// The name used in benchmark ids, reports and on the command line.
    pub const fn name(self) -> &'static str {
        match self {
            Kind::Swiotlb => "swiotlb",
            Kind::LinuxStyle => "linux_style",
            Kind::LinuxAreas => "linux_areas",
            Kind::Buddy => "buddy",
            Kind::Pvmfw => "pvmfw",
            Kind::MutexBitmap => "mutex_bitmap",
        }
    }

    /// The smallest pool [`build`](Self::build) accepts: whole segments for the
    /// Linux-style kinds, a page for the others.
    pub const fn min_pool_size(self) -> usize {
        match self {
            Kind::LinuxStyle | Kind::LinuxAreas => SLOT_SIZE * SEGMENT_SLOTS,
            _ => PAGE_SIZE,
        }
    }

    /// What a `FromDevice` bounce buffer holds when `map` returns, before the device
    /// writes it: the copy rule in which the implementations differ.
    pub const fn from_device_start(self) -> FromDeviceStart {
        match self {
            Kind::Pvmfw => FromDeviceStart::Untouched,
            _ => FromDeviceStart::Original,
        }
    }

    /// Builds a pool of this kind over `size` bytes, with the default number of areas for
    /// the kinds that have areas (one per CPU, rounded up to a power of two).
    ///
    /// # Errors
    ///
    /// A message if the size is too small for the kind or memory cannot be had.
    pub fn build(self, size: usize) -> Result<AnyPool, String> {
        Ok(match self {
            Kind::Swiotlb => AnyPool::Swiotlb(ours::Ours::new(size)?),
            Kind::LinuxStyle => AnyPool::LinuxStyle(linux::LinuxSlots::new(size, 1)?),
            Kind::LinuxAreas => AnyPool::LinuxAreas(linux::LinuxSlots::new(size, default_areas())?),
            Kind::Buddy => AnyPool::Buddy(buddy::Buddy::new(size)?),
            Kind::Pvmfw => AnyPool::Pvmfw(pvmfw::Pvmfw::new(size)?),
            Kind::MutexBitmap => AnyPool::MutexBitmap(bitmap::MutexBitmap::new(size)?),
        })
    }
}

/// What a `FromDevice` mapping's bounce buffer holds before the device writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FromDeviceStart {
    /// A copy of the original buffer, as Linux does (so that bytes the device does not
    /// write come back unchanged).
    Original,
    /// Zeros (the pool's zero fill).
    Zeroed,
    /// Whatever the memory held before: no copy, no fill (pvmfw).
    Untouched,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Kind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.replace('-', "_");
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == s || (s == "ours" && *k == Kind::Swiotlb))
            .ok_or_else(|| {
                let names: Vec<_> = Kind::ALL.iter().map(|k| k.name()).collect();
                format!(
                    "unknown implementation {s:?}; one of: ours, {}",
                    names.join(", ")
                )
            })
    }
}

/// One of the implementations, dispatched by a `match` (which the compiler inlines) rather
/// than through a vtable, so that no implementation pays for an indirect call.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum AnyPool {
    /// See [`Kind::Swiotlb`].
    Swiotlb(ours::Ours),
    /// See [`Kind::LinuxStyle`].
    LinuxStyle(linux::LinuxSlots),
    /// See [`Kind::LinuxAreas`].
    LinuxAreas(linux::LinuxSlots),
    /// See [`Kind::Buddy`].
    Buddy(buddy::Buddy),
    /// See [`Kind::Pvmfw`].
    Pvmfw(pvmfw::Pvmfw),
    /// See [`Kind::MutexBitmap`].
    MutexBitmap(bitmap::MutexBitmap),
}

macro_rules! dispatch {
    ($self:ident, $p:ident => $e:expr) => {
        match $self {
            AnyPool::Swiotlb($p) => $e,
            AnyPool::LinuxStyle($p) | AnyPool::LinuxAreas($p) => $e,
            AnyPool::Buddy($p) => $e,
            AnyPool::Pvmfw($p) => $e,
            AnyPool::MutexBitmap($p) => $e,
        }
    };
}

impl Bounce for AnyPool {
    fn name(&self) -> &'static str {
        match self {
            AnyPool::Swiotlb(_) => Kind::Swiotlb.name(),
            AnyPool::LinuxStyle(_) => Kind::LinuxStyle.name(),
            AnyPool::LinuxAreas(_) => Kind::LinuxAreas.name(),
            AnyPool::Buddy(_) => Kind::Buddy.name(),
            AnyPool::Pvmfw(_) => Kind::Pvmfw.name(),
            AnyPool::MutexBitmap(_) => Kind::MutexBitmap.name(),
        }
    }

    fn capacity(&self) -> usize {
        dispatch!(self, p => p.capacity())
    }

    fn used_bytes(&self) -> usize {
        dispatch!(self, p => p.used_bytes())
    }

    fn high_water_bytes(&self) -> usize {
        dispatch!(self, p => p.high_water_bytes())
    }

    #[inline]
    unsafe fn map(&self, buf: NonNull<[u8]>, dir: Direction) -> Result<DmaAddr, Error> {
        // SAFETY: the caller keeps `map`'s contract, which every variant shares.
        dispatch!(self, p => unsafe { p.map(buf, dir) })
    }

    #[inline]
    unsafe fn unmap(
        &self,
        dma: DmaAddr,
        buf: NonNull<[u8]>,
        dir: Direction,
        skip_sync: bool,
    ) -> Result<(), Error> {
        // SAFETY: the caller keeps `unmap`'s contract, which every variant shares.
        dispatch!(self, p => unsafe { p.unmap(dma, buf, dir, skip_sync) })
    }

    fn translate(&self, dma: DmaAddr, len: usize) -> Option<NonNull<u8>> {
        dispatch!(self, p => p.translate(dma, len))
    }
}

/// The number of areas the kinds with areas use by default: one per CPU, rounded up to a
/// power of two (what both Linux and [`swiotlb::Config::new`] pick).
pub fn default_areas() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .next_power_of_two()
}

/// A small number of the calling thread's own, handed out in turn, so that threads spread
/// over areas: the stand-in for Linux's `raw_smp_processor_id()` in the baselines (ours uses
/// its own default hint, which works the same way).
pub fn thread_hint() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    std::thread_local! {
        static HINT: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    HINT.with(|h| *h)
}

/// A page-aligned, zeroed byte buffer to map from: every benchmark's originals come from
/// one of these, so that no implementation is favoured by its source's alignment.
#[derive(Debug)]
pub struct Buffer(region::Region);

impl Buffer {
    /// A buffer of `len` bytes (at least one), each set to `byte`.
    ///
    /// # Errors
    ///
    /// If `len` is 0 or the memory cannot be had.
    pub fn new(len: usize, byte: u8) -> Result<Self, String> {
        let region = region::Region::new(len)?;
        // SAFETY: the region is `len` writable bytes owned by nothing else yet.
        unsafe { core::ptr::write_bytes(region.base(), byte, len) };
        Ok(Self(region))
    }

    /// Bytes in the buffer.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: a buffer has at least one byte.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The first `len` bytes (all of them if `len` is larger), to pass to
    /// [`Bounce::map`]. The pointer is valid for reads and writes while the buffer lives.
    pub fn slice(&mut self, len: usize) -> NonNull<[u8]> {
        let len = len.min(self.0.len());
        NonNull::slice_from_raw_parts(self.0.ptr(), len)
    }
}

/// A byte count as people write it: `4096` -> "4 KiB", `3000` -> "2.9 KiB", `100` -> "100 B".
pub fn size_text(bytes: usize) -> String {
    for (shift, unit) in [(30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{} {unit}", bytes >> shift);
        }
    }
    if bytes >= 1 << 20 {
        return format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64);
    }
    if bytes >= 1 << 10 {
        return format!("{:.1} KiB", bytes as f64 / 1024.0);
    }
    format!("{bytes} B")
}

/// Copies `len` bytes from `src` to `dst`.
///
/// # Safety
///
/// `src` is readable and `dst` writable for `len` bytes, and they do not overlap.
#[inline(always)]
pub(crate) unsafe fn copy(src: *const u8, dst: *mut u8, len: usize) {
    // SAFETY: the caller's promise.
    unsafe { core::ptr::copy_nonoverlapping(src, dst, len) }
}
