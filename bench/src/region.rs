//! Zeroed, page-aligned memory that a baseline uses as its pool.

use crate::PAGE_SIZE;
use core::alloc::Layout;
use core::ptr::NonNull;

/// An owned region of pool memory, allocated as [`swiotlb::Pool::allocate`] allocates its
/// own (zeroed and page-aligned, through the global allocator), so that every
/// implementation starts from the same kind of memory. Device addresses are CPU addresses.
#[derive(Debug)]
pub(crate) struct Region {
    ptr: NonNull<u8>,
    layout: Layout,
}

// SAFETY: the region is plain memory owned by this value; the pools built over it hand
// out disjoint parts of it under their own synchronisation.
unsafe impl Send for Region {}
// SAFETY: `&Region` only gives out the base pointer and the size.
unsafe impl Sync for Region {}

impl Region {
    /// Allocates `size` zeroed bytes aligned to a page.
    pub(crate) fn new(size: usize) -> Result<Self, String> {
        if size == 0 {
            return Err("a pool needs at least one byte".into());
        }
        let layout = Layout::from_size_align(size, PAGE_SIZE).map_err(|e| e.to_string())?;
        // SAFETY: the layout's size is not zero.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(ptr).ok_or_else(|| format!("cannot allocate {size} bytes"))?;
        Ok(Self { ptr, layout })
    }

    /// The first byte.
    #[inline]
    pub(crate) fn base(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// The first byte, as a non-null pointer.
    #[inline]
    pub(crate) fn ptr(&self) -> NonNull<u8> {
        self.ptr
    }

    /// Bytes in the region.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.layout.size()
    }

    /// The device (= CPU) address of byte `offset`.
    #[inline]
    pub(crate) fn dma(&self, offset: usize) -> u64 {
        self.ptr.as_ptr() as u64 + offset as u64
    }

    /// The offset of device address `dma`, if it lies in the region.
    #[inline]
    pub(crate) fn offset(&self, dma: u64) -> Option<usize> {
        let off = dma.checked_sub(self.ptr.as_ptr() as u64)? as usize;
        (off < self.len()).then_some(off)
    }

    /// Pointer to `len` bytes at device address `dma`, if they lie in the region.
    pub(crate) fn translate(&self, dma: u64, len: usize) -> Option<NonNull<u8>> {
        let off = self.offset(dma)?;
        if off.checked_add(len)? > self.len() {
            return None;
        }
        // SAFETY: `off` is inside the region, so the pointer is in bounds and not null.
        Some(unsafe { NonNull::new_unchecked(self.base().add(off)) })
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout, and dropped once.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) };
    }
}
