//! Coherent allocations: long-lived shared memory for rings and tables.
//!
//! An allocation is owned by its [`Coherent`] handle, which [`Pool::free`] consumes: a
//! handle cannot be copied, so safe code cannot free an allocation twice, or free one that
//! has since been given to someone else (allocate A, free A, allocate B in the same slots,
//! free A again: that last call would hand B's memory out while B is live). Code that has
//! to keep an allocation as raw parts (a `virtio_drivers::Hal`, whose `dma_dealloc` is
//! given an address and a size) takes the handle apart with [`Coherent::into_raw`] and
//! frees with the `unsafe` [`Pool::free_raw`], whose contract carries the ownership.

use super::placement::Reserved;
use super::{Pool, Prepare};
use crate::error::{LookupError, MapError};
use crate::request::{Constraints, DmaAddr};
use crate::slot::{Head, Use};
use core::ptr::{self, NonNull};
use lock_api::RawMutex;

/// A coherent allocation from a pool: zeroed memory for rings and other structures that the
/// CPU and the device share for a long time. It owns the allocation: give it back with
/// [`Pool::free`].
///
/// Dropping it without freeing leaks the slots (the device may still use them, so they are
/// never freed behind its back).
///
/// The memory is shared with the device, which may write it at any time: reach it only
/// through raw pointers, with the copies of [`shared`](crate::shared), atomics or volatile
/// accesses as the device's protocol needs, never through a reference.
#[must_use = "a coherent allocation holds pool slots until it is given to Pool::free"]
#[derive(PartialEq, Eq)]
pub struct Coherent {
    dma: DmaAddr,
    cpu: NonNull<u8>,
    size: usize,
    /// The pool that made it.
    pool: usize,
}

// SAFETY: the handle is an owned claim on pool memory, like a `Box<[u8]>` of it; moving it
// to another thread moves the claim. The memory itself is shared with the device anyway.
unsafe impl Send for Coherent {}
// SAFETY: `&Coherent` gives only the addresses, never access to the memory.
unsafe impl Sync for Coherent {}

impl Coherent {
    /// Device address of the first byte.
    pub fn dma(&self) -> DmaAddr {
        self.dma
    }

    /// CPU address of the first byte (aligned like [`dma`](Self::dma) when the pool's CPU
    /// and device addresses agree modulo the alignment, as they do for
    /// `Pool::allocate`).
    pub fn cpu(&self) -> NonNull<u8> {
        self.cpu
    }

    /// Bytes asked for. The allocation owns whole slots; the rest of the last one is zeroed
    /// too and shared with nothing.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Takes the handle apart: `(dma, cpu, size)`. The allocation stays live; free it with
    /// [`Pool::free_raw`], whose caller must then own it as the handle did.
    pub fn into_raw(self) -> (DmaAddr, NonNull<u8>, usize) {
        (self.dma, self.cpu, self.size)
    }
}

impl core::fmt::Debug for Coherent {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Coherent")
            .field("dma", &crate::error::Hex(self.dma))
            .field("cpu", &self.cpu)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// [`Pool::free`] was given an allocation of another pool; it is handed back untouched.
#[derive(Debug, PartialEq, Eq)]
pub struct ForeignAllocation(pub Coherent);

impl core::fmt::Display for ForeignAllocation {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "coherent allocation at {:#x} ({} bytes) belongs to another pool",
            self.0.dma, self.0.size
        )
    }
}

impl core::error::Error for ForeignAllocation {}

impl<R: RawMutex> Pool<R> {
    /// Allocates `size` bytes of zeroed pool memory for structures the CPU and the device
    /// share (rings, descriptor tables). Aligned in device space to its size's power-of-two
    /// page order, never sharing a slot with another allocation; obeys `constraints`'
    /// `alloc_align_mask` (when larger), `seg_boundary_mask` and `dma_limit`, and ignores
    /// `min_align_mask`. Placed from the top of the area down, away from streaming
    /// mappings, so that long-lived allocations do not split the free space.
    ///
    /// # Errors
    ///
    /// As [`map`](Self::map); the largest allocation is one segment
    /// ([`MapError::TooLarge`] above it, whatever the size).
    pub fn alloc(&self, size: usize, constraints: &Constraints) -> Result<Coherent, MapError> {
        let req = self.coherent_request(size, constraints)?;
        let Reserved { area, start } = self.reserve(&req, |slot| Head {
            slot,
            use_: Use::Coherent,
            offset: 0,
            len: size,
            orig: ptr::null_mut(),
        })?;
        let at = start << self.slot_shift;
        // SAFETY: the run is reserved for this allocation (ours until we return it) and lies
        // in the pool.
        unsafe {
            self.prepare_run(
                area,
                start,
                req.placement.slots,
                at..at + size,
                Prepare::ZeroAll,
            )
        };
        Ok(Coherent {
            dma: self.slot_dma(start),
            // SAFETY: inside the region, which does not contain address 0.
            cpu: unsafe { NonNull::new_unchecked(self.cpu_at(at)) },
            size,
            pool: self.id,
        })
    }

    /// Frees the coherent allocation `allocation`.
    ///
    /// # Errors
    ///
    /// [`ForeignAllocation`], handing the allocation back, if another pool made it. Nothing
    /// changes then.
    ///
    /// ```compile_fail
    /// # let pool = swiotlb::Pool::allocate(1 << 20, swiotlb::Config::new()).unwrap();
    /// let ring = pool.alloc(4096, &swiotlb::Constraints::NONE).unwrap();
    /// pool.free(ring).unwrap();
    /// pool.free(ring).unwrap(); // use of moved value: a handle frees once
    /// ```
    pub fn free(&self, allocation: Coherent) -> Result<(), ForeignAllocation> {
        if allocation.pool != self.id {
            return Err(ForeignAllocation(allocation));
        }
        // The handle is the only owner of a live allocation of this pool, so it is found
        // and released; a failure here would be a bug of the pool's own bookkeeping.
        let result = self
            .find_whole(allocation.dma, allocation.size, true)
            .and_then(|found| self.release(&found, allocation.dma));
        debug_assert!(result.is_ok(), "live allocation not found: {result:?}");
        Ok(())
    }

    /// Frees the coherent allocation of `size` bytes at `dma`, from the parts
    /// [`Coherent::into_raw`] gave.
    ///
    /// # Errors
    ///
    /// [`LookupError`] if `dma` is not the start of a live coherent allocation of `size`
    /// bytes. Nothing changes on error.
    ///
    /// # Safety
    ///
    /// If `dma` and `size` name a live coherent allocation, the caller owns it (its handle
    /// was taken apart and nothing else frees it), and it gives it up: nobody uses the
    /// memory after this call.
    pub unsafe fn free_raw(&self, dma: DmaAddr, size: usize) -> Result<(), LookupError> {
        let found = self.find_whole(dma, size, true)?;
        self.release(&found, dma)
    }
}
