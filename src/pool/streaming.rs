//! Streaming mappings: map, unmap, and the two syncs.
//!
//! # Who owns what
//!
//! A mapping belongs to whoever mapped it (or was handed its address by them): only its
//! owner syncs or unmaps it, never two threads at once. Its original buffer is lent to the
//! pool from map to unmap: the pool reads it during map and `sync_for_device`, and writes
//! it during `sync_for_cpu` and unmap. Between those calls the CPU may use the buffer: the
//! device sees what the CPU wrote only after `sync_for_device`, and the CPU sees what the
//! device wrote only after `sync_for_cpu` (or unmap).
//!
//! The pool keeps the pointer it was given at map and copies back through it. A caller
//! that reborrows the buffer between calls (takes a fresh `&mut` to it, as
//! `virtio-drivers` does before `Hal::unshare`) must give that pointer instead, through
//! the `_into` / `_from` variants, which also check that it is the mapping's buffer.

use super::placement::{NewHead, Request, Reserved};
use super::{Found, Pool, Prepare};
use crate::error::{LookupError, MapError};
use crate::request::{Attrs, Constraints, Direction, DmaAddr, Fill};
use crate::shared::{copy_from_shared, copy_to_shared};
use crate::slot::{Head, Use};
use core::ptr::NonNull;
use lock_api::RawMutex;

/// The error for a call that wanted a coherent allocation (`coherent`) or a streaming
/// mapping and found the other.
pub(super) fn wrong_kind(dma: DmaAddr, coherent: bool) -> LookupError {
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

impl<R: RawMutex> Pool<R> {
    /// Maps `buf` for DMA in direction `dir` and returns the device address of its bounce
    /// buffer. Copies `buf` into the bounce buffer whatever the direction, so that a device
    /// that writes only part of a `FromDevice` buffer leaves the rest of `buf` as it was
    /// (Linux CVE-2022-0854). To show the device nothing of a `FromDevice` buffer, map it
    /// with [`Attrs::ZERO_FILL`] through [`map_attrs`](Self::map_attrs).
    ///
    /// The bounce address keeps `buf`'s address bits under `min_align_mask`; the allocation
    /// is aligned to `alloc_align_mask + 1` (a page, for a mapping of a page or more when
    /// neither mask is given), does not cross a segment or `seg_boundary_mask`, and lies
    /// wholly at or below `dma_limit`. The bytes of its slots around the data are zero.
    ///
    /// # Errors
    ///
    /// [`MapError`]: zero length, over [`max_mapping_size`](Self::max_mapping_size), a mask
    /// not of the form `2^k - 1`, constraints no placement in this pool meets, a limit below
    /// the pool, a buffer inside the pool, or no room. Nothing changes on error.
    ///
    /// # Safety
    ///
    /// - `buf` is valid for reads, and for writes unless `dir` is `ToDevice`, from this call
    ///   until the mapping is unmapped;
    /// - nothing else accesses `buf` while a call of this pool on the mapping (this one, a
    ///   sync, the unmap) runs;
    /// - between those calls the caller may use `buf` as the module docs say: it writes it
    ///   only before a `sync_for_device` that publishes the bytes, and reads what the device
    ///   wrote only after a `sync_for_cpu` or the unmap.
    #[inline(always)]
    pub unsafe fn map(
        &self,
        buf: NonNull<[u8]>,
        dir: Direction,
        constraints: &Constraints,
    ) -> Result<DmaAddr, MapError> {
        // SAFETY: the caller's promise, passed on.
        unsafe { self.map_attrs(buf, dir, constraints, Attrs::NONE) }
    }

    /// [`map`](Self::map) with options: `attrs.fill` says what a `FromDevice` bounce buffer
    /// starts as ([`Fill`]); `skip_cpu_sync` is ignored (the copy or fill on map always
    /// happens).
    ///
    /// # Errors
    ///
    /// As [`map`](Self::map).
    ///
    /// # Safety
    ///
    /// As [`map`](Self::map).
    #[inline(always)]
    pub unsafe fn map_attrs(
        &self,
        buf: NonNull<[u8]>,
        dir: Direction,
        constraints: &Constraints,
        attrs: Attrs,
    ) -> Result<DmaAddr, MapError> {
        // The common case first: a buffer with no constraint beyond what every mapping gets,
        // and room in the caller's own area. Kept apart from the general path, which repeats
        // it from the start when it declines (having changed nothing), so that it is small
        // enough to stay in registers.
        let orig = buf.cast::<u8>().as_ptr();
        let len = buf.len();
        if self.plain_buffer(orig.addr(), len) {
            if let Some(req) = self.unconstrained_request(len, constraints) {
                let head = NewHead {
                    use_: Use::Stream(dir),
                    len,
                    orig,
                };
                if let Some(reserved) = self.reserve_here(&req, head) {
                    // SAFETY: the caller's promise, passed on; the buffer was checked, and
                    // the run reserved for it.
                    return Ok(unsafe { self.fill_mapping(reserved, &req, head, dir, attrs) });
                }
            }
        }
        // SAFETY: the caller's promise, passed on.
        unsafe { self.map_any(buf, dir, constraints, attrs) }
    }

    /// Whether a buffer at CPU address `addr` of `len` bytes can be mapped at all: not
    /// empty, not wrapping the address space, outside the pool.
    #[inline(always)]
    fn plain_buffer(&self, addr: usize, len: usize) -> bool {
        match addr.checked_add(len) {
            Some(end) => len != 0 && (addr >= self.cpu_end || end <= self.cpu.as_ptr().addr()),
            None => false,
        }
    }

    /// [`map_attrs`](Self::map_attrs) for any buffer and constraints, with every check and
    /// error.
    ///
    /// # Safety
    ///
    /// As [`map`](Self::map).
    #[inline(never)]
    unsafe fn map_any(
        &self,
        buf: NonNull<[u8]>,
        dir: Direction,
        constraints: &Constraints,
        attrs: Attrs,
    ) -> Result<DmaAddr, MapError> {
        let len = buf.len();
        if len == 0 {
            return Err(MapError::ZeroLength);
        }
        let orig = buf.cast::<u8>().as_ptr();
        let addr = orig.addr();
        if addr.checked_add(len).is_none() {
            return Err(MapError::BufferWraps { addr, len });
        }
        if !self.plain_buffer(addr, len) {
            return Err(MapError::BufferInPool { addr, len });
        }
        let req = self.stream_request(addr, len, constraints)?;
        let head = NewHead {
            use_: Use::Stream(dir),
            len,
            orig,
        };
        let reserved = self.reserve(&req, head)?;
        // SAFETY: the caller's promise, passed on; the buffer was checked, and the run
        // reserved for it.
        Ok(unsafe { self.fill_mapping(reserved, &req, head, dir, attrs) })
    }

    /// Fills the run just reserved for a new mapping (its data copied in or zeroed, the
    /// rest of its slots clean) and returns the mapping's device address.
    ///
    /// # Safety
    ///
    /// As [`map`](Self::map) for the original `head` describes, which is not empty and lies
    /// outside the pool; `reserved` is the run reserved for it with `req`.
    #[inline(always)]
    unsafe fn fill_mapping(
        &self,
        reserved: Reserved<'_, R>,
        req: &Request,
        head: NewHead,
        dir: Direction,
        attrs: Attrs,
    ) -> DmaAddr {
        let Reserved { area, start } = reserved;
        let len = head.len;
        let head_slot = start + req.pad;
        let at = (head_slot << self.slot_shift) + req.offset;
        let zero = dir == Direction::FromDevice && attrs.fill == Fill::Zero;
        let prepare = if zero {
            Prepare::ZeroData
        } else {
            Prepare::Copy
        };
        // SAFETY: the run from `start` is reserved for this mapping (ours until we return
        // its address) and holds `offset + len` bytes from the head slot, inside the pool.
        unsafe { self.prepare_run(area, start, req.placement.slots, at..at + len, prepare) };
        if !zero {
            // SAFETY: the original is readable (caller's promise) and does not overlap the
            // pool; `at..at + len` is this mapping's data, inside the pool.
            unsafe { copy_to_shared(self.cpu_at(at), head.orig, len) };
        }
        self.slot_dma(head_slot) + req.offset as u64
    }

    /// The live run that starts at `dma`, is `len` bytes long, and is a coherent
    /// allocation or a streaming mapping as `coherent` says.
    #[inline]
    pub(super) fn find_whole(
        &self,
        dma: DmaAddr,
        len: usize,
        coherent: bool,
    ) -> Result<Found<'_, R>, LookupError> {
        if coherent {
            if let Some(found) = self.find_exact(dma, len, Use::Coherent) {
                return Ok(found);
            }
        }
        self.find_whole_slow(dma, len, coherent)
    }

    /// [`find_whole`](Self::find_whole) the long way, which tells what is wrong.
    #[cold]
    #[inline(never)]
    fn find_whole_slow(
        &self,
        dma: DmaAddr,
        len: usize,
        coherent: bool,
    ) -> Result<Found<'_, R>, LookupError> {
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

    /// The live streaming mapping that starts at `dma`, is `len` bytes long and was mapped
    /// in direction `dir`.
    #[inline(always)]
    fn find_mapping(
        &self,
        dma: DmaAddr,
        len: usize,
        dir: Direction,
    ) -> Result<Found<'_, R>, LookupError> {
        match self.find_exact(dma, len, Use::Stream(dir)) {
            Some(found) => Ok(found),
            None => self.find_mapping_slow(dma, len, dir),
        }
    }

    /// [`find_mapping`](Self::find_mapping) the long way, which tells what is wrong.
    #[cold]
    #[inline(never)]
    fn find_mapping_slow(
        &self,
        dma: DmaAddr,
        len: usize,
        dir: Direction,
    ) -> Result<Found<'_, R>, LookupError> {
        let found = self.find_whole_slow(dma, len, false)?;
        match found.head.use_ {
            Use::Stream(mapped) if mapped != dir => Err(LookupError::DirectionMismatch {
                dma,
                mapped,
                given: dir,
            }),
            _ => Ok(found),
        }
    }

    /// Unmaps the mapping at `dma`: copies the bounce buffer back to the original for
    /// `FromDevice` and `Bidirectional` (unless `attrs.skip_cpu_sync`), then frees its slots,
    /// front padding included. The copy goes through the pointer given at map; see
    /// [`unmap_into`](Self::unmap_into) for a buffer reborrowed since.
    ///
    /// # Errors
    ///
    /// [`LookupError`] if `dma` is not the start of a live streaming mapping, or `len` or
    /// `dir` are not the mapping's. Nothing changes on error.
    ///
    /// # Safety
    ///
    /// If `dma` is the start of a live mapping, the caller owns it: no other thread syncs or
    /// unmaps it during the call, and its original buffer is still valid through the
    /// pointer given at map, as [`map`](Self::map) requires.
    #[inline(always)]
    pub unsafe fn unmap(
        &self,
        dma: DmaAddr,
        len: usize,
        dir: Direction,
        attrs: Attrs,
    ) -> Result<(), LookupError> {
        let found = self.find_mapping(dma, len, dir)?;
        if dir.from_device() && !attrs.skip_cpu_sync {
            // SAFETY: the mapping is live and ours: its original is writable for `len`
            // bytes through the pointer given at map (caller's promise).
            unsafe { self.copy_out(&found.head, 0, found.head.orig, len) };
        }
        self.release(&found, dma)
    }

    /// [`unmap`](Self::unmap), copying back into `buf`, which must be the mapping's original
    /// buffer (same address, same length): for a caller that holds a fresh pointer to it
    /// (`virtio_drivers::Hal::unshare`'s `buffer`, say), whose use invalidated the one given
    /// at map.
    ///
    /// # Errors
    ///
    /// As [`unmap`](Self::unmap), and [`LookupError::WrongBuffer`] if `buf` is not the
    /// mapping's original. Nothing changes on error.
    ///
    /// # Safety
    ///
    /// As [`unmap`](Self::unmap), with `buf` (rather than the pointer given at map) valid
    /// for writes for its length.
    #[inline(always)]
    pub unsafe fn unmap_into(
        &self,
        dma: DmaAddr,
        buf: NonNull<[u8]>,
        dir: Direction,
        attrs: Attrs,
    ) -> Result<(), LookupError> {
        let len = buf.len();
        let found = self.find_mapping(dma, len, dir)?;
        let dst = buf.cast::<u8>().as_ptr();
        check_buffer(dma, &found.head, 0, dst)?;
        if dir.from_device() && !attrs.skip_cpu_sync {
            // SAFETY: `dst` is writable for `len` bytes (caller's promise) and is the
            // mapping's original (checked), which never overlaps the pool.
            unsafe { self.copy_out(&found.head, 0, dst, len) };
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
    /// If the range lies in a live mapping, the caller owns it (no other thread syncs or
    /// unmaps it during the call), and its original buffer is valid through the pointer
    /// given at map, as [`map`](Self::map) requires.
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
            unsafe { self.copy_in(&head, offset, head.orig.add(offset), len) };
        }
        Ok(())
    }

    /// [`sync_for_device`](Self::sync_for_device) of the bytes of `buf`, which must be the
    /// part of the mapping's original that `dma` corresponds to.
    ///
    /// # Errors
    ///
    /// As [`sync_for_device`](Self::sync_for_device), and [`LookupError::WrongBuffer`] if
    /// `buf` does not start where the original's byte for `dma` is.
    ///
    /// # Safety
    ///
    /// As [`sync_for_device`](Self::sync_for_device), with `buf` valid for reads.
    pub unsafe fn sync_for_device_from(
        &self,
        dma: DmaAddr,
        buf: NonNull<[u8]>,
        dir: Direction,
    ) -> Result<(), LookupError> {
        let (head, offset) = self.find_range(dma, buf.len(), dir)?;
        let src = buf.cast::<u8>().as_ptr();
        check_buffer(dma, &head, offset, src)?;
        if dir.to_device() {
            // SAFETY: `src` is readable for its length (caller's promise), which lies in the
            // mapping (checked); it is part of the original, outside the pool.
            unsafe { self.copy_in(&head, offset, src, buf.len()) };
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
    /// As [`sync_for_device`](Self::sync_for_device), with the original writable.
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
            unsafe { self.copy_out(&head, offset, head.orig.add(offset), len) };
        }
        Ok(())
    }

    /// [`sync_for_cpu`](Self::sync_for_cpu) into `buf`, which must be the part of the
    /// mapping's original that `dma` corresponds to.
    ///
    /// # Errors
    ///
    /// As [`sync_for_device_from`](Self::sync_for_device_from).
    ///
    /// # Safety
    ///
    /// As [`sync_for_cpu`](Self::sync_for_cpu), with `buf` valid for writes.
    pub unsafe fn sync_for_cpu_into(
        &self,
        dma: DmaAddr,
        buf: NonNull<[u8]>,
        dir: Direction,
    ) -> Result<(), LookupError> {
        let (head, offset) = self.find_range(dma, buf.len(), dir)?;
        let dst = buf.cast::<u8>().as_ptr();
        check_buffer(dma, &head, offset, dst)?;
        if dir.from_device() {
            // SAFETY: `dst` is writable for its length (caller's promise), which lies in the
            // mapping (checked); it is part of the original, outside the pool.
            unsafe { self.copy_out(&head, offset, dst, buf.len()) };
        }
        Ok(())
    }

    /// Copies `len` bytes from `src` to the pool at `offset` of mapping `head`.
    ///
    /// # Safety
    ///
    /// `head` is a live mapping of the caller's, `offset + len <= head.len`, and `src` is
    /// readable for `len` bytes and outside the pool.
    #[inline]
    unsafe fn copy_in(&self, head: &Head, offset: usize, src: *const u8, len: usize) {
        debug_assert!(offset + len <= head.len);
        let at = (head.slot << self.slot_shift) + head.offset + offset;
        // SAFETY: the pool range is inside the mapping's slots; `src` as promised.
        unsafe { copy_to_shared(self.cpu_at(at), src, len) };
    }

    /// Copies `len` bytes at `offset` of mapping `head` from the pool to `dst`.
    ///
    /// # Safety
    ///
    /// `head` is a live mapping of the caller's, `offset + len <= head.len`, and `dst` is
    /// writable for `len` bytes and outside the pool.
    #[inline]
    unsafe fn copy_out(&self, head: &Head, offset: usize, dst: *mut u8, len: usize) {
        debug_assert!(offset + len <= head.len);
        let at = (head.slot << self.slot_shift) + head.offset + offset;
        // SAFETY: as in `copy_in`, with `dst` writable. Each pool byte is read once.
        unsafe { copy_from_shared(dst, self.cpu_at(at), len) };
    }
}

/// Refuses a buffer that does not start at byte `offset` of the mapping `head`'s original.
fn check_buffer(
    dma: DmaAddr,
    head: &Head,
    offset: usize,
    given: *const u8,
) -> Result<(), LookupError> {
    let expected = head.orig.addr().wrapping_add(offset);
    if given.addr() != expected {
        return Err(LookupError::WrongBuffer {
            dma,
            expected,
            given: given.addr(),
        });
    }
    Ok(())
}
