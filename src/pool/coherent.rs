//! Coherent allocations: long-lived shared memory for rings and tables.

use super::Pool;
use crate::error::{LookupError, MapError};
use crate::request::{Constraints, DmaAddr};
use crate::slot::{Head, Use};
use core::ptr::{self, NonNull};

/// A coherent allocation from a pool: zeroed memory for rings and other structures that the
/// CPU and the device share for a long time. Free it with [`Pool::free`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Coherent {
    /// Device address.
    pub dma: DmaAddr,
    /// CPU address (aligned like `dma` when the pool's CPU and device addresses agree
    /// modulo the alignment, as they do for [`Pool::allocate`]).
    pub cpu: NonNull<u8>,
    /// Bytes asked for (the allocation owns whole slots; the rest of the last one is
    /// zeroed too and shared with nothing).
    pub size: usize,
}

impl Pool {
    // --- coherent allocations -----------------------------------------------------------

    /// Allocates `size` bytes of zeroed pool memory for structures the CPU and the device
    /// share (rings, descriptor tables). Aligned in device space to its size's power-of-two
    /// page order, never sharing a slot with another allocation; obeys `constraints`'
    /// `alloc_align_mask` (when larger), `seg_boundary_mask` and `dma_limit`, and ignores
    /// `min_align_mask`. Placed from the top of the area down, away from streaming
    /// mappings, so that long-lived allocations do not split the free space.
    ///
    /// # Errors
    ///
    /// As [`map`](Self::map); the largest allocation is one segment.
    pub fn alloc(&self, size: usize, constraints: &Constraints) -> Result<Coherent, MapError> {
        let req = self.coherent_request(size, constraints)?;
        let start = self.reserve(&req, |slot| Head {
            slot,
            use_: Use::Coherent,
            offset: 0,
            len: size,
            orig: 0,
        })?;
        let at = start << self.slot_shift;
        // SAFETY: the run is reserved for this allocation and lies in the pool.
        let cpu = unsafe { self.cpu_at(at) };
        // SAFETY: as above; zero whole slots so nothing of an earlier user is left.
        unsafe { ptr::write_bytes(cpu, 0, req.placement.slots << self.slot_shift) };
        Ok(Coherent {
            dma: self.slot_dma(start),
            // SAFETY: inside the region, which does not contain address 0.
            cpu: unsafe { NonNull::new_unchecked(cpu) },
            size,
        })
    }

    /// Frees the coherent allocation of `size` bytes at `dma`.
    ///
    /// # Errors
    ///
    /// [`LookupError`] if `dma` is not the start of a live coherent allocation of `size`
    /// bytes. Nothing changes on error.
    pub fn free(&self, dma: DmaAddr, size: usize) -> Result<(), LookupError> {
        let found = self.find_whole(dma, size, true)?;
        self.release(&found, dma)
    }
}
