//! Arrays that own their cache lines.
//!
//! Each area's bitmap and slot metadata are written by whoever maps in that area. Were two
//! areas' arrays to share a cache line (small heap allocations sit side by side), every map
//! in one area would steal the line from the thread mapping in the next: measured, two
//! threads in two areas ran no faster than one. A [`Padded`] array's elements start on a
//! [`LINE`]-byte boundary and are followed by at least a line of padding, so no line holds
//! elements of two arrays.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::ops::Deref;
use core::ptr::NonNull;

/// The unit of isolation: two 64-byte lines, as x86's adjacent-line prefetcher pairs them
/// (crossbeam's `CachePadded` uses the same on x86_64 and aarch64).
pub(crate) const LINE: usize = 128;

/// A fixed-length array whose elements occupy cache lines of their own.
#[derive(Debug)]
pub(crate) struct Padded<T> {
    /// The allocation: padding, the elements, padding.
    _buf: Box<[T]>,
    /// The first element, inside `_buf`.
    start: NonNull<T>,
    len: usize,
}

// SAFETY: `Padded` owns its elements like a `Box<[T]>`; `start` only points into `_buf`.
unsafe impl<T: Send> Send for Padded<T> {}
// SAFETY: shared access gives `&[T]`, as `&Box<[T]>` would.
unsafe impl<T: Sync> Sync for Padded<T> {}

impl<T> Padded<T> {
    /// `len` elements made by `make`, or `None` if the memory cannot be had.
    pub(crate) fn new(len: usize, mut make: impl FnMut() -> T) -> Option<Self> {
        let size = core::mem::size_of::<T>().max(1);
        let pad = LINE.div_ceil(size);
        let total = len.checked_add(2 * pad)?;
        let mut v = Vec::new();
        v.try_reserve_exact(total).ok()?;
        v.resize_with(total, &mut make);
        let mut buf = v.into_boxed_slice();
        let base = buf.as_mut_ptr();
        // Elements to skip so that the first used one starts on a line boundary.
        let skip = ((base as usize).wrapping_neg() % LINE).div_ceil(size);
        debug_assert!(skip <= pad);
        // SAFETY: `skip + len <= total`, so the pointer is inside (or one past) `buf`, and
        // derived from it; not null because `buf`'s pointer is not.
        let start = unsafe { NonNull::new_unchecked(base.add(skip)) };
        Some(Self {
            _buf: buf,
            start,
            len,
        })
    }

    /// Mutable access to the elements.
    pub(crate) fn as_mut_slice(&mut self) -> &mut [T] {
        // SAFETY: `start..start + len` lies inside `_buf`, which `self` owns and which
        // `&mut self` borrows exclusively.
        unsafe { core::slice::from_raw_parts_mut(self.start.as_ptr(), self.len) }
    }
}

impl<T> Deref for Padded<T> {
    type Target = [T];

    #[inline(always)]
    fn deref(&self) -> &[T] {
        // SAFETY: `start..start + len` lies inside `_buf`, owned by `self` and borrowed
        // shared here.
        unsafe { core::slice::from_raw_parts(self.start.as_ptr(), self.len) }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn elements_start_on_a_line_and_leave_a_line_free_after() {
        for len in [0, 1, 7, 64, 1000] {
            let a = Padded::new(len, || 7u16).unwrap();
            let b = Padded::new(len, || 9u64).unwrap();
            assert_eq!(a.len(), len);
            assert!(a.iter().all(|x| *x == 7) && b.iter().all(|x| *x == 9));
            assert_eq!(a.as_ptr() as usize % LINE, 0);
            assert_eq!(b.as_ptr() as usize % LINE, 0);
            // The allocation goes at least a line past the last element.
            let end = a.as_ptr() as usize + 2 * len;
            let alloc_end = a._buf.as_ptr() as usize + 2 * a._buf.len();
            assert!(alloc_end >= end + LINE);
        }
    }
}
