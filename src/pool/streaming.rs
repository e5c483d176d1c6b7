//! Streaming mappings: map, unmap, and the two syncs.

use super::{Found, Pool};
use crate::error::{LookupError, MapError};
use crate::request::{Attrs, Constraints, Direction, DmaAddr};
use crate::slot::{Head, Use};
use core::ptr::{self, NonNull};

/// The error for a call that wanted a coherent allocation (`coherent`) or a streaming
/// mapping and found the other.
fn wrong_kind(dma: DmaAddr, coherent: bool) -> LookupError {
    let (coherent_name, streaming_name) = ("coherent allocation", "streaming mapping");
    let (expected, actual) = if coherent {
        (coherent_name, streaming_name)
    } else {
        (streaming_name, coherent_name)
    };
    LookupError::WrongKind {
        dma,
        expected,
        actual,
    }
}

impl Pool {
    // --- streaming mappings -------------------------------------------------------------

    /// Maps `buf` for DMA in direction `dir` and returns the device address of its bounce
    /// buffer. Copies `buf` into the bounce buffer whatever the direction, so that a device
    /// that writes only part of a `FromDevice` buffer leaves the rest of `buf` as it was
    /// (Linux CVE-2022-0854) and never sees an earlier mapping's bytes.
    ///
    /// The bounce address keeps `buf`'s address bits under `min_align_mask`; the allocation
    /// is aligned to `alloc_align_mask + 1` (a page, for a mapping of a page or more when
    /// neither mask is given), does not cross a segment or `seg_boundary_mask`, and lies
    /// wholly at or below `dma_limit`.
    ///
    /// # Errors
    ///
    /// [`MapError`]: zero length, over [`max_mapping_size`](Self::max_mapping_size), a mask
    /// not of the form `2^k - 1`, constraints no placement in this pool meets, a limit below
    /// the pool, a buffer inside the pool, or no room. Nothing changes on error.
    ///
    /// # Safety
    ///
    /// `buf` is valid for reads, and for writes if `dir` is not `ToDevice`, and nothing else
    /// accesses it, from this call until the mapping is unmapped (syncs and unmap write it).
    pub unsafe fn map(
        &self,
        buf: NonNull<[u8]>,
        dir: Direction,
        constraints: &Constraints,
    ) -> Result<DmaAddr, MapError> {
        let len = buf.len();
        if len == 0 {
            return Err(MapError::ZeroLength);
        }
        let orig = buf.cast::<u8>().as_ptr() as usize;
        let end = orig
            .checked_add(len)
            .ok_or(MapError::BufferWraps { addr: orig, len })?;
        let pool = self.cpu.as_ptr() as usize;
        if orig < pool + (self.slots_total << self.slot_shift) && end > pool {
            return Err(MapError::BufferInPool { addr: orig, len });
        }
        let req = self.stream_request(orig, len, constraints)?;
        let start = self.reserve(&req, |slot| Head {
            slot,
            use_: Use::Stream(dir),
            offset: req.offset,
            len,
            orig,
        })?;
        let head = start + req.pad;
        let at = (head << self.slot_shift) + req.offset;
        // SAFETY: `buf` is readable (caller's promise) and does not overlap the pool
        // (checked above); the run from `start` is reserved for this mapping and holds
        // `offset + len` bytes from the head slot, inside the pool.
        unsafe { ptr::copy_nonoverlapping(orig as *const u8, self.cpu_at(at), len) };
        Ok(self.slot_dma(head) + req.offset as u64)
    }

    /// The live run that starts at `dma`, is `len` bytes long, and is a coherent
    /// allocation or a streaming mapping as `coherent` says.
    pub(super) fn find_whole(
        &self,
        dma: DmaAddr,
        len: usize,
        coherent: bool,
    ) -> Result<Found<'_>, LookupError> {
        let found = self.find(dma)?;
        let Found { head, start, .. } = found;
        if (head.use_ == Use::Coherent) != coherent {
            return Err(wrong_kind(dma, coherent));
        }
        if dma != start {
            return Err(LookupError::NotStart { dma, start });
        }
        if len != head.len {
            return Err(LookupError::LengthMismatch {
                dma,
                mapped: head.len,
                given: len,
            });
        }
        Ok(found)
    }

    /// Unmaps the mapping at `dma`: copies the bounce buffer back to the original for
    /// `FromDevice` and `Bidirectional` (unless `attrs.skip_cpu_sync`), then frees its slots,
    /// front padding included.
    ///
    /// # Errors
    ///
    /// [`LookupError`] if `dma` is not the start of a live streaming mapping, or `len` or
    /// `dir` are not the mapping's. Nothing changes on error.
    ///
    /// # Safety
    ///
    /// If `dma` is the start of a live mapping, its original buffer is still valid as
    /// [`map`](Self::map) requires, and no other thread syncs or unmaps the mapping during
    /// the call.
    pub unsafe fn unmap(
        &self,
        dma: DmaAddr,
        len: usize,
        dir: Direction,
        attrs: Attrs,
    ) -> Result<(), LookupError> {
        let found = self.find_whole(dma, len, false)?;
        let head = &found.head;
        if let Use::Stream(mapped) = head.use_ {
            if dir != mapped {
                return Err(LookupError::DirectionMismatch {
                    dma,
                    mapped,
                    given: dir,
                });
            }
        }
        if dir.from_device() && !attrs.skip_cpu_sync {
            // SAFETY: the mapping is live and ours: its original is writable for `len`
            // bytes (caller's promise, made at map), and its data lies in the pool.
            unsafe { self.copy_out(head, 0, len) };
        }
        self.release(&found, dma)
    }

    /// The live streaming mapping holding `dma..dma + len`, checked against `dir`, and the
    /// offset of `dma` in it.
    fn find_range(
        &self,
        dma: DmaAddr,
        len: usize,
        dir: Direction,
    ) -> Result<(Head, usize), LookupError> {
        if len == 0 {
            return Err(LookupError::ZeroLength { dma });
        }
        let Found { head, start, .. } = self.find(dma)?;
        let Use::Stream(mapped) = head.use_ else {
            return Err(wrong_kind(dma, false));
        };
        let offset = (dma - start) as usize;
        if len > head.len - offset {
            return Err(LookupError::OutOfRange {
                dma,
                len,
                start,
                mapped: head.len,
            });
        }
        if dir != mapped && mapped != Direction::Bidirectional {
            return Err(LookupError::DirectionMismatch {
                dma,
                mapped,
                given: dir,
            });
        }
        Ok((head, offset))
    }

    /// Makes `dma..dma + len` of a mapping current for the device: copies the original to
    /// the bounce buffer for `ToDevice` and `Bidirectional`, nothing for `FromDevice`. `dma`
    /// may be anywhere inside the mapping.
    ///
    /// # Errors
    ///
    /// [`LookupError`] if the range is empty or not inside one live streaming mapping, or
    /// `dir` contradicts the mapping's direction (it must match unless the mapping is
    /// bidirectional). Nothing is copied on error.
    ///
    /// # Safety
    ///
    /// The mapping is live and stays so during the call, and its original buffer is valid as
    /// [`map`](Self::map) requires.
    pub unsafe fn sync_for_device(
        &self,
        dma: DmaAddr,
        len: usize,
        dir: Direction,
    ) -> Result<(), LookupError> {
        let (head, offset) = self.find_range(dma, len, dir)?;
        if dir.to_device() {
            // SAFETY: `offset + len` is within the live mapping (checked), whose original is
            // readable for its whole length (caller's promise).
            unsafe { self.copy_in(&head, offset, len) };
        }
        Ok(())
    }

    /// Makes `dma..dma + len` of a mapping current for the CPU: copies the bounce buffer to
    /// the original for `FromDevice` and `Bidirectional`, nothing for `ToDevice`. `dma` may be
    /// anywhere inside the mapping.
    ///
    /// # Errors
    ///
    /// As [`sync_for_device`](Self::sync_for_device).
    ///
    /// # Safety
    ///
    /// As [`sync_for_device`](Self::sync_for_device).
    pub unsafe fn sync_for_cpu(
        &self,
        dma: DmaAddr,
        len: usize,
        dir: Direction,
    ) -> Result<(), LookupError> {
        let (head, offset) = self.find_range(dma, len, dir)?;
        if dir.from_device() {
            // SAFETY: `offset + len` is within the live mapping (checked), whose original is
            // writable for its whole length (caller's promise).
            unsafe { self.copy_out(&head, offset, len) };
        }
        Ok(())
    }

    /// Copies `len` bytes at `offset` of mapping `head` from the original to the pool.
    ///
    /// # Safety
    ///
    /// `head` is a live mapping whose original is readable, and `offset + len <= head.len`.
    #[inline]
    unsafe fn copy_in(&self, head: &Head, offset: usize, len: usize) {
        debug_assert!(offset + len <= head.len);
        let at = (head.slot << self.slot_shift) + head.offset + offset;
        // SAFETY: the original is readable for `head.len` bytes (caller), the pool range is
        // inside the mapping's slots, and the two never overlap (checked at map).
        unsafe {
            ptr::copy_nonoverlapping((head.orig + offset) as *const u8, self.cpu_at(at), len)
        };
    }

    /// Copies `len` bytes at `offset` of mapping `head` from the pool to the original.
    ///
    /// # Safety
    ///
    /// `head` is a live mapping whose original is writable, and `offset + len <= head.len`.
    #[inline]
    unsafe fn copy_out(&self, head: &Head, offset: usize, len: usize) {
        debug_assert!(offset + len <= head.len);
        let at = (head.slot << self.slot_shift) + head.offset + offset;
        // SAFETY: as in `copy_in`, with the original writable. Each pool byte is read once.
        unsafe { ptr::copy_nonoverlapping(self.cpu_at(at), (head.orig + offset) as *mut u8, len) };
    }
}
