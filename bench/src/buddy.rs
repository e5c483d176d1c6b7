//! A buddy allocator under one lock, as Android's protected-VM firmware (pvmfw, through
//! vmbase) bounces virtio buffers: the real `buddy_system_allocator` crate's
//! [`FrameAllocator`] over the pool's bytes (one "frame" per byte), asked for a 16-byte
//! aligned block of each buffer's size (rounded up to a power of two by the buddy system),
//! the buffer copied in on share and back on unshare for device-writable buffers.
//!
//! pvmfw keeps no per-mapping record: virtio-drivers hands the original buffer back on
//! `unshare`, so [`Bounce::unmap`]'s `buf` is what this uses. pvmfw's lock is a spin lock
//! (`spin::Mutex`); this uses a `parking_lot` mutex like every other implementation here,
//! so that preempted lock holders do not decide the multi-thread figures.

use crate::region::Region;
use crate::{Bounce, Direction, DmaAddr, Error, PAGE_SIZE};
use buddy_system_allocator::FrameAllocator;
use core::alloc::Layout;
use core::ptr::NonNull;
use parking_lot::Mutex;

/// Order of the frame allocator: blocks up to 2^31 bytes, as pvmfw's shared pool.
const ORDER: usize = 32;
/// Alignment pvmfw asks of its bounce buffers (that of a `u128`).
const ALIGN: usize = 16;

struct State {
    frames: FrameAllocator<ORDER>,
    /// Bytes in live blocks.
    used: usize,
    high_water: usize,
}

/// The buddy baseline.
pub struct Buddy {
    region: Region,
    state: Mutex<State>,
}

impl core::fmt::Debug for Buddy {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Buddy")
            .field("capacity", &self.region.len())
            .finish_non_exhaustive()
    }
}

impl Buddy {
    /// A pool over `size` bytes.
    ///
    /// # Errors
    ///
    /// If `size` is under a page or over the allocator's reach, or memory cannot be had.
    pub fn new(size: usize) -> Result<Self, String> {
        if !(PAGE_SIZE..1 << (ORDER - 1)).contains(&size) {
            return Err(format!("buddy pool of {size} bytes is not supported"));
        }
        let region = Region::new(size)?;
        let mut frames = FrameAllocator::new();
        // Offsets, not addresses: the region is only page-aligned, and blocks are aligned
        // to their size relative to frame 0, as they would be in a size-aligned pool.
        frames.add_frame(0, size);
        Ok(Self {
            region,
            state: Mutex::new(State {
                frames,
                used: 0,
                high_water: 0,
            }),
        })
    }

    fn layout(len: usize) -> Result<Layout, Error> {
        Layout::from_size_align(len, ALIGN).map_err(|_| Error::Refused)
    }

    /// Bytes the buddy system gives a request of `len` bytes.
    fn block(len: usize) -> usize {
        len.next_power_of_two().max(ALIGN)
    }
}

impl Bounce for Buddy {
    fn name(&self) -> &'static str {
        "buddy"
    }

    fn capacity(&self) -> usize {
        self.region.len()
    }

    fn used_bytes(&self) -> usize {
        self.state.lock().used
    }

    fn high_water_bytes(&self) -> usize {
        self.state.lock().high_water
    }

    #[inline]
    unsafe fn map(&self, buf: NonNull<[u8]>, _dir: Direction) -> Result<DmaAddr, Error> {
        let len = buf.len();
        if len == 0 || len > crate::MAX_MAPPING {
            return Err(Error::Refused);
        }
        let layout = Self::layout(len)?;
        let off = {
            let mut state = self.state.lock();
            let off = state.frames.alloc_aligned(layout).ok_or(Error::Full)?;
            state.used += Self::block(len);
            state.high_water = state.high_water.max(state.used);
            off
        };
        // SAFETY: `buf` is readable and outside the pool (caller's promise); the block at
        // `off` is ours (just allocated) and holds at least `len` bytes inside the region.
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
            // SAFETY: `dma` is a live mapping of `buf` (caller's promise), so its block holds
            // `len` bytes in the region, and `buf` is writable.
            unsafe { crate::copy(self.region.base().add(off), buf.cast::<u8>().as_ptr(), len) };
        }
        let layout = Self::layout(len)?;
        let mut state = self.state.lock();
        state.frames.dealloc_aligned(off, layout);
        state.used -= Self::block(len);
        Ok(())
    }

    fn translate(&self, dma: DmaAddr, len: usize) -> Option<NonNull<u8>> {
        self.region.translate(dma, len)
    }
}
