//! The calls any bounce pool offers, as a trait: what code that maps buffers needs, whatever
//! pool it is given (one region's [`Pool`], or a pool made of several regions).

use crate::error::{LookupError, MapError};
use crate::pool::{Coherent, ForeignAllocation, Pool};
use crate::request::{Attrs, Constraints, Direction, DmaAddr};
use core::ptr::NonNull;
use lock_api::RawMutex;

/// A bounce pool: streaming mappings and coherent allocations, with the semantics and the
/// safety contracts of [`Pool`]'s methods of the same names (see there, and
/// `SEMANTICS.md`).
///
/// Code generic over `DmaPool` (the safe mapping types, adapters) uses only these calls;
/// each implementation keeps [`Pool`]'s promises: nothing changes on error, a copy touches
/// only the buffer it is given, and once `unmap_into` returns the pool no longer uses that
/// buffer.
pub trait DmaPool {
    /// [`Pool::map_attrs`].
    ///
    /// # Errors
    ///
    /// As [`Pool::map_attrs`].
    ///
    /// # Safety
    ///
    /// As [`Pool::map_attrs`].
    unsafe fn map_attrs(
        &self,
        buf: NonNull<[u8]>,
        dir: Direction,
        constraints: &Constraints,
        attrs: Attrs,
    ) -> Result<DmaAddr, MapError>;

    /// [`Pool::unmap_into`].
    ///
    /// # Errors
    ///
    /// As [`Pool::unmap_into`].
    ///
    /// # Safety
    ///
    /// As [`Pool::unmap_into`].
    unsafe fn unmap_into(
        &self,
        dma: DmaAddr,
        buf: NonNull<[u8]>,
        dir: Direction,
        attrs: Attrs,
    ) -> Result<(), LookupError>;

    /// [`Pool::sync_for_cpu_into`].
    ///
    /// # Errors
    ///
    /// As [`Pool::sync_for_cpu_into`].
    ///
    /// # Safety
    ///
    /// As [`Pool::sync_for_cpu_into`].
    unsafe fn sync_for_cpu_into(
        &self,
        dma: DmaAddr,
        buf: NonNull<[u8]>,
        dir: Direction,
    ) -> Result<(), LookupError>;

    /// [`Pool::sync_for_device_from`].
    ///
    /// # Errors
    ///
    /// As [`Pool::sync_for_device_from`].
    ///
    /// # Safety
    ///
    /// As [`Pool::sync_for_device_from`].
    unsafe fn sync_for_device_from(
        &self,
        dma: DmaAddr,
        buf: NonNull<[u8]>,
        dir: Direction,
    ) -> Result<(), LookupError>;

    /// [`Pool::alloc`].
    ///
    /// # Errors
    ///
    /// As [`Pool::alloc`].
    fn alloc(&self, size: usize, constraints: &Constraints) -> Result<Coherent, MapError>;

    /// [`Pool::free`].
    ///
    /// # Errors
    ///
    /// As [`Pool::free`].
    fn free(&self, allocation: Coherent) -> Result<(), ForeignAllocation>;
}

impl<R: RawMutex> DmaPool for Pool<R> {
    #[inline]
    unsafe fn map_attrs(
        &self,
        buf: NonNull<[u8]>,
        dir: Direction,
        constraints: &Constraints,
        attrs: Attrs,
    ) -> Result<DmaAddr, MapError> {
        // SAFETY: the caller's promise, passed on.
        unsafe { Pool::map_attrs(self, buf, dir, constraints, attrs) }
    }

    #[inline]
    unsafe fn unmap_into(
        &self,
        dma: DmaAddr,
        buf: NonNull<[u8]>,
        dir: Direction,
        attrs: Attrs,
    ) -> Result<(), LookupError> {
        // SAFETY: the caller's promise, passed on.
        unsafe { Pool::unmap_into(self, dma, buf, dir, attrs) }
    }

    #[inline]
    unsafe fn sync_for_cpu_into(
        &self,
        dma: DmaAddr,
        buf: NonNull<[u8]>,
        dir: Direction,
    ) -> Result<(), LookupError> {
        // SAFETY: the caller's promise, passed on.
        unsafe { Pool::sync_for_cpu_into(self, dma, buf, dir) }
    }

    #[inline]
    unsafe fn sync_for_device_from(
        &self,
        dma: DmaAddr,
        buf: NonNull<[u8]>,
        dir: Direction,
    ) -> Result<(), LookupError> {
        // SAFETY: the caller's promise, passed on.
        unsafe { Pool::sync_for_device_from(self, dma, buf, dir) }
    }

    #[inline]
    fn alloc(&self, size: usize, constraints: &Constraints) -> Result<Coherent, MapError> {
        Pool::alloc(self, size, constraints)
    }

    #[inline]
    fn free(&self, allocation: Coherent) -> Result<(), ForeignAllocation> {
        Pool::free(self, allocation)
    }
}
