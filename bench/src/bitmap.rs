//! The simplest slot pool one would write in Rust: first fit over a `bitvec` of 2 KiB
//! slots under one `parking_lot` mutex, no segments, no areas, no per-slot metadata (unmap
//! is given the original buffer, as virtio-drivers' `Hal::unshare` is). Mappings of a page
//! or more are page-aligned, as in the others.

use crate::region::Region;
use crate::{Bounce, Direction, DmaAddr, Error, PAGE_SIZE, SLOT_SIZE};
use bitvec::prelude::{BitVec, Lsb0};
use core::ptr::NonNull;
use parking_lot::Mutex;

#[derive(Debug)]
struct State {
    /// One bit a slot, set when in use.
    bits: BitVec<usize, Lsb0>,
    used: usize,
    high_water: usize,
}

/// The bitmap baseline.
#[derive(Debug)]
pub struct MutexBitmap {
    region: Region,
    state: Mutex<State>,
}

impl MutexBitmap {
    /// A pool over `size` bytes (rounded down to whole slots).
    ///
    /// # Errors
    ///
    /// If the size holds no slot, or memory cannot be had.
    pub fn new(size: usize) -> Result<Self, String> {
        let slots = size / SLOT_SIZE;
        if slots == 0 {
            return Err(format!("{size} bytes hold no {SLOT_SIZE}-byte slot"));
        }
        Ok(Self {
            region: Region::new(slots * SLOT_SIZE)?,
            state: Mutex::new(State {
                bits: BitVec::repeat(false, slots),
                used: 0,
                high_water: 0,
            }),
        })
    }
}

/// First fit for `n` slots whose first is a multiple of `align`.
fn first_fit(bits: &bitvec::slice::BitSlice<usize, Lsb0>, n: usize, align: usize) -> Option<usize> {
    let mut from = 0;
    loop {
        let free = from + bits.get(from..)?.first_zero()?;
        let start = free.next_multiple_of(align);
        let run = bits.get(start..start + n)?;
        match run.last_one() {
            None => return Some(start),
            Some(used) => from = start + used + 1,
        }
    }
}

impl Bounce for MutexBitmap {
    fn name(&self) -> &'static str {
        "mutex_bitmap"
    }

    fn capacity(&self) -> usize {
        self.region.len()
    }

    fn used_bytes(&self) -> usize {
        self.state.lock().used * SLOT_SIZE
    }

    fn high_water_bytes(&self) -> usize {
        self.state.lock().high_water * SLOT_SIZE
    }

    #[inline]
    unsafe fn map(&self, buf: NonNull<[u8]>, _dir: Direction) -> Result<DmaAddr, Error> {
        let len = buf.len();
        if len == 0 || len > crate::MAX_MAPPING {
            return Err(Error::Refused);
        }
        let n = len.div_ceil(SLOT_SIZE);
        let align = if len >= PAGE_SIZE {
            PAGE_SIZE / SLOT_SIZE
        } else {
            1
        };
        let start = {
            let mut state = self.state.lock();
            let start = first_fit(&state.bits, n, align).ok_or(Error::Full)?;
            state.bits[start..start + n].fill(true);
            state.used += n;
            state.high_water = state.high_water.max(state.used);
            start
        };
        let off = start * SLOT_SIZE;
        // SAFETY: `buf` is readable and outside the pool (caller's promise); the slots from
        // `start` are ours (just taken) and hold `len` bytes inside the region.
        unsafe { crate::copy(buf.cast::<u8>().as_ptr(), self.region.base().add(off), len) };
        Ok(self.region.dma(off))
    }

    #[inline]
    unsafe fn unmap(
        &self,
        dma: DmaAddr,
        buf: NonNull<[u8]>,
        dir: Direction,
        skip_sync: bool,
    ) -> Result<(), Error> {
        let off = self.region.offset(dma).ok_or(Error::NotMapped)?;
        let len = buf.len();
        if dir.from_device() && !skip_sync {
            // SAFETY: `dma` is a live mapping of `buf` (caller's promise), so its slots hold
            // `len` bytes in the region, and `buf` is writable.
            unsafe { crate::copy(self.region.base().add(off), buf.cast::<u8>().as_ptr(), len) };
        }
        let (start, n) = (off / SLOT_SIZE, len.div_ceil(SLOT_SIZE));
        let mut state = self.state.lock();
        let run = state
            .bits
            .get_mut(start..start + n)
            .ok_or(Error::NotMapped)?;
        if !run.all() {
            return Err(Error::NotMapped);
        }
        run.fill(false);
        state.used -= n;
        Ok(())
    }

    fn translate(&self, dma: DmaAddr, len: usize) -> Option<NonNull<u8>> {
        self.region.translate(dma, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitvec::prelude::bitvec;

    #[test]
    fn first_fit_skips_used_runs_and_aligns() {
        let bits = bitvec![usize, Lsb0; 0, 1, 0, 0, 1, 0, 0, 0, 0];
        assert_eq!(first_fit(&bits, 1, 1), Some(0));
        assert_eq!(first_fit(&bits, 2, 1), Some(2));
        assert_eq!(first_fit(&bits, 2, 2), Some(2));
        assert_eq!(first_fit(&bits, 3, 1), Some(5));
        assert_eq!(first_fit(&bits, 3, 2), Some(6));
        assert_eq!(first_fit(&bits, 5, 1), None);
    }
}
