//! Where an elastic pool's memory comes from: a [`Backend`] obtains memory, shares it with
//! the device side and takes it back.
//!
//! A confidential guest's memory is private by default; the device side (the host, or the
//! devices it emulates) can reach only what the guest has shared, granule by granule. A
//! fixed [`Pool`](crate::Pool) is built over memory the user shared beforehand; an
//! [`ElasticPool`](crate::ElasticPool) asks its backend for more when it runs out and gives
//! regions back when they have been idle.
//!
//! # Shipped backends
//!
//! - [`HeapBackend`]: ordinary memory from the global allocator, device address = CPU
//!   address (plus an optional offset). What [`Pool::allocate`](crate::Pool::allocate)
//!   does, for machines where the device can already reach all of memory (tests,
//!   benchmarks, user-space drivers) or as the starting point of a real backend.
//! - `swiotlb::testing::TestBackend` (feature `test-utils`): heap memory at device addresses
//!   of its own, which records every call and fails when told to.
//!
//! # Writing one for a confidential VM
//!
//! A backend is a few lines over the platform's sharing call. Sketches (not compiled or
//! run here; the hypercall names are the platforms', the helpers are the guest's own):
//!
//! ```text
//! // pKVM (Android protected VMs): share each 4 KiB granule with MEM_SHARE. The device
//! // (the host's virtio backend) sees the guest's IPA: dma == physical address.
//! fn share(&self, size, align) {
//!     let pages = self.alloc_pages(size, align)?;            // guest's page allocator
//!     for ipa in (pages.phys..pages.phys + size).step_by(4096) {
//!         if let Err(e) = hvc(ARM_SMCCC_KVM_FUNC_MEM_SHARE, ipa) {
//!             self.unshare_prefix(pages.phys, ipa);            // undo what was shared
//!             self.free_pages(pages);
//!             return Err(BackendError::Refused { code: e });
//!         }
//!     }
//!     Ok(SharedRange { cpu: pages.virt, dma: pages.phys, size, token: 0 })
//! }
//! unsafe fn unshare(&self, r) {
//!     for ipa in (r.dma..r.dma + r.size).step_by(4096) {
//!         hvc(ARM_SMCCC_KVM_FUNC_MEM_UNSHARE, ipa).map_err(|e| BackendError::Refused { code: e })?;
//!     }                                  // an error leaves the rest shared: the pool leaks it
//!     self.free_pages(r.cpu, r.size); Ok(())
//! }
//!
//! // TDX: convert the pages to shared with TDG.VP.VMCALL<MapGPA> on the GPA with the shared
//! // bit set (bit 47 or 51, from TDG.VP.INFO), after accepting nothing (shared pages are
//! // not accepted). The device address carries the shared bit; the CPU maps the same
//! // frames through the shared alias:
//! //   dma = phys | shared_bit,  cpu = direct_map(phys | shared_bit)
//! // Unshare: MapGPA back to private, then TDG.MEM.PAGE.ACCEPT each page before reuse;
//! // a failed MapGPA or accept returns Err (the pages stay shared and are leaked).
//!
//! // SEV-SNP: clear the C-bit in the page tables for the range, PVALIDATE(rescind) each
//! // page, then the GHCB page-state-change request (PSC: private -> shared). dma = phys
//! // (no C-bit). Unshare runs the same steps backwards and re-validates; any failure is
//! // an Err and the range is leaked, never re-validated behind the host's back.
//!
//! // Arm CCA realms: set the range's RIPAS to EMPTY with RSI_IPA_STATE_SET (it no longer
//! // backs protected memory), then reach it through the unprotected alias: the same IPA
//! // with the top IPA bit set, which the host maps. The device address is that alias,
//! // not the private IPA, which is why SharedRange carries the two apart:
//! //   dma = ipa | (1 << (ipa_bits - 1)),  cpu = map_alias(ipa | (1 << (ipa_bits - 1)))
//! // Unshare: unmap the alias, RSI_IPA_STATE_SET back to RIPAS_RAM; on failure, Err.
//! ```
//!
//! The pool asks sizes that are multiples of the backend's [`granule`](Backend::granule)
//! and alignments that are powers of two at least a page; see [`Backend`]'s
//! implementation safety for what a returned range must be.

use crate::request::DmaAddr;
use core::ptr::NonNull;

/// A range of memory shared with the device side: what [`Backend::share`] returns and
/// [`Backend::unshare`] takes back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SharedRange {
    /// Where the CPU reaches the range.
    pub cpu: NonNull<u8>,
    /// Where the device reaches it: may differ from the CPU's address (an IOVA, a shared
    /// alias bit, a fixed offset).
    pub dma: DmaAddr,
    /// Bytes in the range.
    pub size: usize,
    /// The backend's own word about the range (a handle, the alignment it was allocated
    /// with), handed back to it unchanged by `unshare`.
    pub token: usize,
}

// SAFETY: a `SharedRange` is addresses and a size; it gives no access by itself (the pool
// reaches the memory only through the copies of `shared`, as the owner of a mapping).
unsafe impl Send for SharedRange {}
// SAFETY: as for `Send`.
unsafe impl Sync for SharedRange {}

/// Why a backend could not share or unshare a range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// No memory for a range of this size (the allocator refused).
    #[error("no memory for a shared range of {size} bytes")]
    NoMemory {
        /// Bytes asked for.
        size: usize,
    },
    /// The backend has no more to give: a region or a quota is used up.
    #[error("backend exhausted: {size} bytes asked, {available} available")]
    Exhausted {
        /// Bytes asked for.
        size: usize,
        /// Bytes it could still give.
        available: usize,
    },
    /// The platform refused: the hypercall's (or firmware call's) error code.
    #[error("the platform refused to share or unshare: error {code}")]
    Refused {
        /// The platform's error code.
        code: i64,
    },
}

/// Memory that can be shared with the device side: obtained and shared by
/// [`share`](Backend::share), unshared and released by [`unshare`](Backend::unshare).
///
/// An [`ElasticPool`](crate::ElasticPool) calls it when it grows (under its growth lock,
/// never under an area lock, one call at a time) and when it gives an idle region back.
///
/// # Safety
///
/// The pool builds a [`Pool`](crate::Pool) over every range it is given and hands its
/// device addresses to devices, so an implementation promises, for a range that `share`
/// returns, until it is passed to `unshare`:
///
/// - `size` is the size asked for, and `cpu` and `dma` are both multiples of the alignment
///   asked for; `cpu..cpu + size` and `dma..dma + size` do not wrap;
/// - `cpu..cpu + size` is valid for reads and writes, and nothing else in the program (no
///   allocation, no reference, no other range of this backend) uses it: it is the pool's;
/// - the device side reaches that memory at `dma..dma + size`, and no range the backend
///   has given and not taken back overlaps it in CPU or in device addresses;
/// - an `unshare` that returns an error has left the memory shared and has not returned
///   it to private use: the pool then leaks the range (counts it, never uses it again,
///   never hands it back), because shared pages put back into private use would show the
///   host whatever the guest writes there next.
pub unsafe trait Backend: Send + Sync {
    /// The sharing granule in bytes (a power of two, at least 4 KiB on every platform
    /// above): every size the pool asks is a multiple of it.
    fn granule(&self) -> usize;

    /// Obtains `size` bytes (a multiple of the granule) aligned to `align` (a power of two,
    /// at least the granule and a page) in both CPU and device addresses, and shares them
    /// with the device side.
    ///
    /// # Errors
    ///
    /// [`BackendError`]: no memory, nothing left to give, or the platform refused. A
    /// failed share leaves nothing shared.
    fn share(&self, size: usize, align: usize) -> Result<SharedRange, BackendError>;

    /// Unshares `range` and releases its memory.
    ///
    /// # Errors
    ///
    /// [`BackendError`] if the range could not be made private again; it then stays shared
    /// and is not released (the pool leaks it).
    ///
    /// # Safety
    ///
    /// `range` was returned by `share` on this backend and has not been given to
    /// `unshare` since, and nothing in the program uses its memory any more.
    unsafe fn unshare(&self, range: SharedRange) -> Result<(), BackendError>;
}

// === impl HeapBackend ===

/// Ordinary memory from the global allocator, zeroed, at device address = CPU address +
/// a fixed offset (0 unless set): for machines where the device reaches all of memory
/// (tests, benchmarks, user-space drivers whose "device" shares the process) and as a model
/// for real backends. Sharing is allocation; unsharing is freeing.
#[derive(Clone, Copy, Debug)]
pub struct HeapBackend {
    granule: usize,
    dma_offset: u64,
}

impl HeapBackend {
    /// 4 KiB granules, device address = CPU address.
    pub const fn new() -> Self {
        Self {
            granule: 4096,
            dma_offset: 0,
        }
    }

    /// Device addresses are CPU addresses plus `offset` (wrapping), so that a driver that
    /// hands the device a CPU address by mistake is caught.
    pub const fn with_dma_offset(mut self, offset: u64) -> Self {
        self.dma_offset = offset;
        self
    }

    /// The granule: a power of two of at least 4 KiB (other values are rounded up to one).
    pub const fn with_granule(mut self, bytes: usize) -> Self {
        let bytes = if bytes < 4096 { 4096 } else { bytes };
        self.granule = bytes.next_power_of_two();
        self
    }
}

impl Default for HeapBackend {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: `share` returns a fresh zeroed allocation of exactly `size` bytes aligned to
// `align` (so its CPU address is), owned by the pool until `unshare` frees it with the
// same layout (its alignment travels in `token`); allocations never overlap while live;
// the device address is the CPU address plus a fixed offset, so it is aligned whenever
// the offset is a multiple of the alignment (checked: otherwise `share` refuses), and two
// live ranges never overlap there either. Nothing is really shared, so `unshare` never
// fails.
unsafe impl Backend for HeapBackend {
    fn granule(&self) -> usize {
        self.granule
    }

    fn share(&self, size: usize, align: usize) -> Result<SharedRange, BackendError> {
        let refused = BackendError::NoMemory { size };
        if size == 0 || !align.is_power_of_two() || self.dma_offset % align as u64 != 0 {
            return Err(refused);
        }
        let layout = core::alloc::Layout::from_size_align(size, align).map_err(|_| refused)?;
        // SAFETY: the layout has a non-zero size.
        let cpu = NonNull::new(unsafe { alloc::alloc::alloc_zeroed(layout) }).ok_or(refused)?;
        let dma = (cpu.as_ptr().addr() as u64).wrapping_add(self.dma_offset);
        if dma.checked_add(size as u64).is_none() {
            // SAFETY: allocated just above with this layout and never handed out.
            unsafe { alloc::alloc::dealloc(cpu.as_ptr(), layout) };
            return Err(refused);
        }
        Ok(SharedRange {
            cpu,
            dma,
            size,
            token: align,
        })
    }

    unsafe fn unshare(&self, range: SharedRange) -> Result<(), BackendError> {
        // SAFETY: `range` came from `share` (caller's promise), which allocated `size` bytes
        // with the alignment kept in `token`; nobody uses it any more.
        unsafe {
            alloc::alloc::dealloc(
                range.cpu.as_ptr(),
                core::alloc::Layout::from_size_align_unchecked(range.size, range.token),
            )
        };
        Ok(())
    }
}
