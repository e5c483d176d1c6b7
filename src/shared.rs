//! Copies into and out of memory the device shares. (Placeholder: replaced by the
//! race-free implementation on the `copy` branch before this lands.)

/// Copies `len` bytes from private memory to shared memory.
///
/// # Safety
///
/// `dst` is valid for writes and `src` for reads of `len` bytes; they do not overlap.
pub unsafe fn copy_to_shared(dst: *mut u8, src: *const u8, len: usize) {
    // SAFETY: the caller's promise.
    unsafe { core::ptr::copy_nonoverlapping(src, dst, len) }
}

/// Copies `len` bytes from shared memory to private memory.
///
/// # Safety
///
/// `dst` is valid for writes and `src` for reads of `len` bytes; they do not overlap.
pub unsafe fn copy_from_shared(dst: *mut u8, src: *const u8, len: usize) {
    // SAFETY: the caller's promise.
    unsafe { core::ptr::copy_nonoverlapping(src, dst, len) }
}

/// Sets `len` bytes of shared memory to `byte`.
///
/// # Safety
///
/// `dst` is valid for writes of `len` bytes.
pub unsafe fn fill_shared(dst: *mut u8, byte: u8, len: usize) {
    // SAFETY: the caller's promise.
    unsafe { core::ptr::write_bytes(dst, byte, len) }
}
