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
///
/// The allocation is held as a raw pointer, not a `Box`: a pointer to the first element
/// taken from a `Box` would be invalidated (under both Stacked and Tree Borrows) every time
/// the `Box` itself is moved or reborrowed, since a `Box` asserts unique access. All access
/// goes through `alloc` and pointers derived from it.
#[derive(Debug)]
pub(crate) struct Padded<T> {
    /// The whole allocation (padding, the elements, padding), from `Box::into_raw`; freed
    /// in `drop`.
    alloc: NonNull<[T]>,
    /// The first element, derived from `alloc` (kept, rather than its index, so that an
    /// access is one addition: these arrays are read on every map and unmap).
    start: NonNull<T>,
    len: usize,
}

// SAFETY: `Padded` owns its elements like a `Box<[T]>`; `alloc` is owned, never shared.
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
        let alloc = NonNull::from(Box::leak(v.into_boxed_slice()));
        // Elements to skip so that the first used one starts on a line boundary.
        let skip = (alloc.cast::<T>().as_ptr().addr().wrapping_neg() % LINE).div_ceil(size);
        debug_assert!(skip <= pad && skip + len <= total);
        // SAFETY: `skip + len <= total`, the allocation's length (`skip <= pad` and
        // `len + 2 * pad == total`), so the result is inside (or one past the end of) the
        // allocation it is derived from, and not null.
        let start = unsafe { NonNull::new_unchecked(alloc.cast::<T>().as_ptr().add(skip)) };
        Some(Self { alloc, start, len })
    }

    /// The first element.
    #[inline(always)]
    fn start(&self) -> *mut T {
        self.start.as_ptr()
    }

    /// Mutable access to the elements.
    #[inline(always)]
    pub(crate) fn as_mut_slice(&mut self) -> &mut [T] {
        // SAFETY: `start..start + len` lies inside the allocation, which `self` owns and
        // which `&mut self` borrows exclusively.
        unsafe { core::slice::from_raw_parts_mut(self.start(), self.len) }
    }
}

impl<T> Deref for Padded<T> {
    type Target = [T];

    #[inline(always)]
    fn deref(&self) -> &[T] {
        // SAFETY: `start..start + len` lies inside the allocation, owned by `self` and
        // borrowed shared here.
        unsafe { core::slice::from_raw_parts(self.start(), self.len) }
    }
}

impl<T> Drop for Padded<T> {
    fn drop(&mut self) {
        // SAFETY: `alloc` came from `Box::leak` of a boxed slice in `new` and is freed only
        // here; no reference into it outlives `self`.
        drop(unsafe { Box::from_raw(self.alloc.as_ptr()) });
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
            assert_eq!(a.as_ptr().addr() % LINE, 0);
            assert_eq!(b.as_ptr().addr() % LINE, 0);
            // The allocation goes at least a line past the last element.
            let end = a.as_ptr().addr() + 2 * len;
            let alloc_end = a.alloc.cast::<u16>().as_ptr().addr() + 2 * a.alloc.len();
            assert!(alloc_end >= end + LINE);
        }
    }

    /// The regression of the Miri finding: the pointer to the first element was taken from
    /// a `Box` that was then moved into the struct, which invalidated it (Stacked and Tree
    /// Borrows). Run under Miri, this failed before the fix.
    #[test]
    fn elements_stay_reachable_after_the_array_moves() {
        let mut a = Padded::new(10, || 1u32).unwrap();
        a.as_mut_slice()[3] = 7;
        let mut moved = [a];
        let b = &mut moved[0];
        b.as_mut_slice()[4] = 8;
        let c = core::mem::replace(b, Padded::new(1, || 0).unwrap());
        assert_eq!(&c[2..5], &[1, 7, 8]);
    }
}
